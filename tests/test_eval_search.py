"""Search, recalls, descriptor stores, PCA and the crop-merging rules, on random arrays."""
import numpy as np
import pytest

from vgjax.eval import search as search_mod
from vgjax.eval.extract import DescriptorStore
from vgjax.eval.methods import merge_crop_rankings, voting_bonus
from vgjax.eval.search import (
    PCA,
    compute_recalls,
    exact_search,
    ivfpq_search,
    recalls_from_predictions,
)


def _random_problem(seed=0, nq=60, nb=300, d=24):
    rng = np.random.default_rng(seed)
    db = rng.standard_normal((nb, d)).astype(np.float32)
    q = rng.standard_normal((nq, d)).astype(np.float32)
    db_utm = rng.uniform(0, 400, (nb, 2))
    q_utm = rng.uniform(0, 400, (nq, 2))
    q_utm[:7] += 10_000.0  # far from everything: no positive, must count as misses
    return db, q, db_utm, q_utm


def _bruteforce_recalls(db, q, db_utm, q_utm, recall_values, radius):
    dist = ((q[:, None, :].astype(np.float64) - db[None].astype(np.float64)) ** 2).sum(-1)
    ranking = np.argsort(dist, axis=1, kind="stable")
    geo = np.sqrt(((q_utm[:, None] - db_utm[None]) ** 2).sum(-1))
    out = {}
    for n in recall_values:
        hits = 0
        for i in range(len(q)):
            positives = set(np.flatnonzero(geo[i] <= radius))
            hits += any(int(j) in positives for j in ranking[i, :n])
        out[f"R@{n}"] = 100.0 * hits / len(q)
    return out, ranking


@pytest.mark.parametrize("recall_values", [(1, 5, 10, 20), (1, 3, 50)])
def test_recalls_match_bruteforce(recall_values):
    db, q, db_utm, q_utm = _random_problem()
    expected, ranking = _bruteforce_recalls(db, q, db_utm, q_utm, recall_values, 25.0)
    k = max(recall_values)
    _dist, idx = exact_search(_store(db), q, k)
    assert idx.shape == (len(q), k)
    np.testing.assert_array_equal(idx, ranking[:, :k])
    got = compute_recalls(idx, q_utm, db_utm, recall_values, 25.0)
    assert got.keys() == expected.keys()
    for key in expected:
        assert got[key] == pytest.approx(expected[key], abs=1e-9)
    # The far-away queries are misses whatever was retrieved.
    assert compute_recalls(idx[:7], q_utm[:7], db_utm, recall_values, 25.0)[f"R@{k}"] == 0.0


def _store(x, path=None, dtype=np.float32):
    s = DescriptorStore(x.shape, dtype, path)
    s.write(0, x)
    return s


def test_chunked_disk_search_equals_single_block(tmp_path):
    db, q, *_ = _random_problem(1, nq=33, nb=257, d=16)
    ref_d, ref_i = exact_search(_store(db), q, 10)
    disk = _store(db, tmp_path / "db.npy")
    # 20 rows per block on both sides: many database and query blocks, merged top-k.
    d, i = exact_search(disk, _store(q, tmp_path / "q.npy"), 10, chunk_bytes=20 * 16 * 4)
    np.testing.assert_array_equal(i, ref_i)
    np.testing.assert_allclose(d, ref_d, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(np.load(tmp_path / "db.npy"), db)  # a normal .npy file


def test_jax_blocks_backend_matches_faiss():
    db, q, *_ = _random_problem(2, nq=20, nb=100, d=16)
    d1, i1 = exact_search(_store(db), q, 5, backend="faiss-cpu")
    # 30-row blocks: padded last blocks on both sides, results merged across blocks.
    d2, i2 = exact_search(_store(db), q, 5, backend="jax-blocks", chunk_bytes=30 * 16 * 4)
    np.testing.assert_array_equal(i1, i2)
    np.testing.assert_allclose(d1, d2, rtol=1e-4, atol=1e-4)


def test_k_larger_than_database_pads():
    db, q, *_ = _random_problem(3, nq=4, nb=6, d=8)
    d, i = exact_search(_store(db), q, 10)
    assert (i[:, :6] >= 0).all() and (i[:, 6:] == -1).all()
    assert np.isinf(d[:, 6:]).all()
    assert sorted(i[0, :6].tolist()) == list(range(6))


def test_float16_store_and_rows(tmp_path):
    x = np.random.default_rng(0).standard_normal((10, 6)).astype(np.float32)
    s = DescriptorStore(x.shape, np.float16, tmp_path / "h.npy")
    s.write_rows([0, 1, 2, 7, 8, 9, 3, 4, 5, 6], x[[0, 1, 2, 7, 8, 9, 3, 4, 5, 6]])
    np.testing.assert_allclose(s.read(), x, atol=2e-3)
    assert s.read().dtype == np.float32
    reopened = DescriptorStore.open(tmp_path / "h.npy")
    np.testing.assert_array_equal(reopened.read(2, 5), s.read(2, 5))
    with pytest.raises(ValueError, match="cannot write"):
        s.write(8, x[:3])


def test_ivfpq_finds_itself():
    rng = np.random.default_rng(0)
    db = rng.standard_normal((2000, 16)).astype(np.float32)
    _d, i = ivfpq_search(_store(db), db[:50], 5, nlist=8, m=4, nprobe=8)
    assert i.shape == (50, 5)
    assert (i[:, 0] == np.arange(50)).mean() > 0.8
    with pytest.raises(ValueError, match="ivfpq_m"):
        ivfpq_search(_store(db), db[:5], 5, nlist=8, m=5)


@pytest.mark.parametrize("n", [30, 200])  # n < D (Gram matrix) and n > D (covariance)
def test_pca_matches_svd(n):
    rng = np.random.default_rng(n)
    x = (rng.standard_normal((n, 64)) * np.linspace(3, 0.1, 64)).astype(np.float32)
    pca = PCA.fit(x, 8)
    centred = x - x.mean(0)
    _, _, vt = np.linalg.svd(centred.astype(np.float64), full_matrices=False)
    expected = centred @ vt[:8].T
    got = pca.transform(x)
    signs = np.sign((got * expected).sum(0))  # components are defined up to sign
    np.testing.assert_allclose(got * signs, expected, rtol=1e-3, atol=1e-3)
    with pytest.raises(ValueError, match="test.pca_dim"):
        PCA.fit(x, 1000)


def test_merge_crop_rankings_dedupes_by_distance():
    # One query, two crops, k=3. Index 7 is found by both crops; keep its closer distance.
    idx = np.array([[[7, 3, 5], [2, 7, -1]]])
    dist = np.array([[[0.5, 0.9, 2.0], [0.1, 0.3, np.inf]]], np.float32)
    d, i = merge_crop_rankings(dist, idx, 3)
    assert i.tolist() == [[2, 7, 3]]
    np.testing.assert_allclose(d, [[0.1, 0.3, 0.9]])
    d, i = merge_crop_rankings(dist, idx, 6)  # fewer unique results than k: padded
    assert i.tolist() == [[2, 7, 3, 5, -1, -1]]
    assert np.isinf(d[0, 4:]).all()


def test_majority_voting_rewards_agreement():
    # Crop 0 ranks 1 first (closest overall); the other four crops all rank 9 first.
    idx = np.array([[[1, 9, 4], [9, 2, 3], [9, 5, 6], [9, 7, 8], [9, 10, 11]]])
    dist = np.array([[[0.10, 0.30, 0.9], [0.20, 0.5, 0.9], [0.21, 0.5, 0.9],
                      [0.22, 0.5, 0.9], [0.23, 0.5, 0.9]]], np.float32)
    _, nearest = merge_crop_rankings(dist, idx, 3)
    assert nearest[0, 0] == 1
    weight = 0.1
    bonus = voting_bonus(idx, weight)
    # 9 appears 4 times in the first ranks (window 1: 4/1) and 5 times in windows 5 and 10
    # (k=3 caps them at 3 ranks, divided by n as in the protocol).
    assert bonus[0, 1, 0] == pytest.approx(weight * (4 / 1 + 5 / 5 + 5 / 10))
    assert bonus[0, 0, 1] == pytest.approx(weight * (5 / 5 + 5 / 10))
    assert bonus[0, 0, 0] == 0.0  # 1 appears once
    _, voted = merge_crop_rankings(dist, idx, 3, bonus)
    assert voted[0, 0] == 9
    assert voting_bonus(np.full((1, 5, 3), -1), 1.0).sum() == 0  # missing results never vote


def test_recalls_from_predictions_roundtrip(tmp_path):
    db, q, db_utm, q_utm = _random_problem(4)
    dist, idx = exact_search(_store(db), q, 20)
    np.savez(tmp_path / "p.npz", topk_indices=idx, topk_distances=dist, query_utm=q_utm,
             db_utm=db_utm)
    assert recalls_from_predictions(tmp_path / "p.npz", (1, 5, 10, 20), 25.0) == \
        compute_recalls(idx, q_utm, db_utm, (1, 5, 10, 20), 25.0)
    with pytest.raises(ValueError, match="R@50"):
        recalls_from_predictions(tmp_path / "p.npz", (1, 50))


# The device search (backend "jax"): whole database on the device, queries in chunks --------

def _assert_same_knn(ref_d, ref_i, d, i, db, q):
    """Equal to faiss: distances within 1e-5 relative, indices equal except where two
    database rows are at the same distance (a float tie)."""
    assert d.shape == ref_d.shape and i.shape == ref_i.shape
    assert i.dtype == np.int64 and d.dtype == np.float32
    np.testing.assert_array_equal(np.isinf(d), np.isinf(ref_d))
    np.testing.assert_array_equal(i < 0, ref_i < 0)
    finite = np.isfinite(ref_d)
    scale = float(np.abs(ref_d[finite]).max())
    np.testing.assert_allclose(d[finite], ref_d[finite], rtol=1e-5, atol=1e-5 * scale)
    exact = ((q[:, None].astype(np.float64) - db[None].astype(np.float64)) ** 2).sum(-1)
    rows, ranks = np.nonzero((i != ref_i) & (ref_i >= 0))
    for r, c in zip(rows, ranks):
        a, b = exact[r, i[r, c]], exact[r, ref_i[r, c]]
        assert abs(a - b) <= 1e-5 * max(abs(b), 1e-12), (r, c, a, b)
    return len(rows)


@pytest.mark.parametrize("nq, nb, d, k, chunk_rows", [
    (60, 300, 24, 20, None),     # one query chunk
    (61, 300, 24, 20, 7),        # query chunks of 7 (last one padded), database read in blocks
    (5, 6, 8, 10, None),         # k larger than the database: -1 / inf padding
    (33, 257, 16, 257, 4),       # k = database size, database just past a 256-row pad
])
def test_device_search_equals_faiss(nq, nb, d, k, chunk_rows):
    rng = np.random.default_rng(nq * nb)
    db = rng.standard_normal((nb, d)).astype(np.float32)
    q = rng.standard_normal((nq, d)).astype(np.float32)
    ref_d, ref_i = exact_search(_store(db), q, k, backend="faiss-cpu")
    kwargs = {}
    if chunk_rows:  # chunk_rows query rows per chunk (the distances of a chunk dominate)
        padded = search_mod._padded_rows(nb)
        kwargs["chunk_bytes"] = chunk_rows * (padded + d) * 4
        assert search_mod.query_chunk_rows(nb, d, nq, kwargs["chunk_bytes"]) == chunk_rows
    got_d, got_i = exact_search(_store(db), q, k, backend="jax", **kwargs)
    assert _assert_same_knn(ref_d, ref_i, got_d, got_i, db, q) == 0  # random data: no ties
    if k > nb:
        assert (got_i[:, nb:] == -1).all() and np.isinf(got_d[:, nb:]).all()


def test_device_search_ties_and_disk_store(tmp_path):
    """Duplicated database rows (exact ties) and a database streamed from disk."""
    rng = np.random.default_rng(9)
    base = rng.standard_normal((40, 12)).astype(np.float32)
    db = np.concatenate([base, base[:15], base[5:10]])  # 60 rows, 20 duplicates
    q = np.concatenate([base[:6] + 0.01, rng.standard_normal((20, 12)).astype(np.float32)])
    ref_d, ref_i = exact_search(_store(db), q, 8, backend="faiss-cpu")
    disk = _store(db, tmp_path / "db.npy")
    got_d, got_i = exact_search(disk, _store(q, tmp_path / "q.npy"), 8, backend="jax",
                                chunk_bytes=9 * 12 * 4)   # database read 9 rows at a time
    _assert_same_knn(ref_d, ref_i, got_d, got_i, db, q)
    for r in range(5):  # a query beside base row r: its two copies first, in either order
        assert set(got_i[r, :2].tolist()) == {r, 40 + r}
    assert set(got_i[5, :3].tolist()) == {5, 45, 55}


def test_backend_choice(monkeypatch, caplog):
    import jax
    import logging
    assert search_mod.choose_backend(1000, 64, 10)[0] == "faiss-cpu"   # CPU, faiss installed
    monkeypatch.setattr(jax, "default_backend", lambda: "gpu")         # an accelerator ...
    need = search_mod.device_search_bytes(1000, 64, 10)
    monkeypatch.setattr(search_mod, "device_free_bytes", lambda device=None: (4 * need, None))
    backend, why = search_mod.choose_backend(1000, 64, 10)
    assert backend == "jax" and "MB" in why                            # ... where it fits
    monkeypatch.setattr(search_mod, "device_free_bytes", lambda device=None: (need, None))
    backend, why = search_mod.choose_backend(1000, 64, 10)
    assert backend == "jax-blocks" and ">" in why                      # no room, no faiss-gpu
    monkeypatch.setattr(search_mod, "_faiss_gpus", lambda faiss: 1)
    assert search_mod.choose_backend(1000, 64, 10)[0] == "faiss-gpu"
    monkeypatch.setattr(search_mod, "device_free_bytes",
                        lambda device=None: (8 * need, need // 2))     # fragmented
    assert search_mod.choose_backend(1000, 64, 10)[0] == "faiss-gpu"
    monkeypatch.setattr(search_mod, "device_free_bytes", lambda device=None: (None, None))
    assert search_mod.choose_backend(1000, 64, 10)[0] == "jax"         # small, no stats
    assert search_mod.choose_backend(10 ** 6, 4096, 10)[0] == "faiss-gpu"
    monkeypatch.undo()
    db, q, *_ = _random_problem(5, nq=8, nb=50, d=8)
    with caplog.at_level(logging.INFO, logger="vgjax.eval.search"):
        exact_search(_store(db), q, 5)
    lines = [r.getMessage() for r in caplog.records if "exact search" in r.getMessage()]
    assert len(lines) == 1 and "backend faiss-cpu" in lines[0] and "50 x 8" in lines[0]
    with pytest.raises(ValueError, match="unknown search backend"):
        exact_search(_store(db), q, 5, backend="gpu")


def test_search_distances_use_highest_precision():
    """float32 distances on every device: the search matmuls ask for HIGHEST (no TF32)."""
    _, _, knn = search_mod._device_fns()
    x = np.ones((256, 4), np.float32)
    text = knn.lower(np.ones((3, 4), np.float32), x, x.sum(1), 256, k=2).as_text()
    assert "HIGHEST" in text
    text = search_mod._jax_knn_fn().lower(np.ones((3, 4), np.float32), x, 256, k=2).as_text()
    assert "HIGHEST" in text


# Matmul precision of the descriptors the search compares ----------------------------------

def _tf32(a):
    """float32 -> TF32 (10 mantissa bits, round to nearest even), as float32."""
    bits = np.asarray(a, np.float32).view(np.uint32).astype(np.uint64)
    bits = (bits + 0xFFF + ((bits >> 13) & 1)) & ~np.uint64(0x1FFF)
    return bits.astype(np.uint32).view(np.float32)


def _netvlad_f64(x, kernel, centroids, round_conv=None, round_einsum=None):
    """NetVLAD in float64; `round_*` round the operands of that matmul first (TF32)."""
    keep = lambda a: a  # noqa: E731
    r1, r2 = round_conv or keep, round_einsum or keep
    n, d = x.shape[0], x.shape[-1]
    x = x.reshape(n, -1, d).astype(np.float64)
    x = x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)
    logits = np.einsum("nid,dk->nik", r1(x).astype(np.float64), r1(kernel).astype(np.float64))
    a = np.exp(logits - logits.max(-1, keepdims=True))
    a /= a.sum(-1, keepdims=True)
    vlad = (np.einsum("nik,nid->nkd", r2(a).astype(np.float64), r2(x).astype(np.float64))
            - a.sum(1)[:, :, None] * centroids.astype(np.float64))
    vlad /= np.maximum(np.linalg.norm(vlad, axis=-1, keepdims=True), 1e-12)
    vlad = vlad.reshape(n, -1)
    return vlad / np.linalg.norm(vlad, axis=-1, keepdims=True)


def _rel(a, b):
    return float(np.max(np.linalg.norm(a - b, axis=-1) / np.linalg.norm(b, axis=-1)))


def test_netvlad_precision_tf32_simulation():
    """A k-means-initialised NetVLAD-64 on 30x40x256 local features (conv4 of a 480x640
    image): TF32-rounded matmul inputs (what XLA's default precision does on A100/H100
    GPUs) move descriptors by more than the 1e-4 parity target; "highest" on the CPU is
    the float64 result to < 1e-5."""
    import jax

    from vgjax.models.aggregation import NetVLAD
    from vgjax.models.netvlad_init import netvlad_params_from_descriptors

    rng = np.random.default_rng(0)
    n, h, w, d, k = 3, 30, 40, 256, 64
    words = np.maximum(rng.standard_normal((k, d)), 0)   # ReLU features around visual words
    x = np.maximum(words[rng.integers(0, k, (n, h, w))]
                   + 0.5 * rng.standard_normal((n, h, w, d)), 0).astype(np.float32)
    flat = x.reshape(-1, d) / np.linalg.norm(x.reshape(-1, d), axis=1, keepdims=True)
    centroids, kernel, _ = netvlad_params_from_descriptors(flat, k, iterations=20)
    variables = {"params": {"centroids": centroids, "conv": {"kernel": kernel}}}
    exact = _netvlad_f64(x, kernel[0, 0], centroids)
    got = np.asarray(jax.jit(NetVLAD(k, precision="highest").apply)(variables, x))
    assert _rel(got, exact) < 1e-5
    errors = {name: _rel(_netvlad_f64(x, kernel[0, 0], centroids, **rounding), exact)
              for name, rounding in [("einsum", {"round_einsum": _tf32}),
                                     ("conv", {"round_conv": _tf32}),
                                     ("both", {"round_einsum": _tf32, "round_conv": _tf32})]}
    print("relative descriptor error with TF32 matmul inputs:",
          ", ".join(f"{k} {v:.2e}" for k, v in errors.items()),
          f"; highest on the CPU {_rel(got, exact):.2e}")
    assert errors["einsum"] > 1e-4 and errors["both"] > 1e-4
    assert errors["conv"] > 1e-5   # smaller, also above what "highest" leaves


def test_netvlad_precision_field():
    import jax

    from vgjax.models.aggregation import NetVLAD

    x = np.ones((1, 2, 2, 4), np.float32)
    variables = NetVLAD(3).init(jax.random.key(0), x)
    for name in ("highest", "high", "default"):
        text = jax.jit(NetVLAD(3, precision=name).apply).lower(variables, x).as_text()
        upper = name.upper()
        assert f"precision = [{upper}, {upper}]" in text                     # the einsum
        assert f"#stablehlo<precision {upper}>, #stablehlo<precision {upper}>" in text or (
            name == "default" and "precision_config" not in text)           # the 1x1 conv
    with pytest.raises(ValueError, match="model.matmul_precision"):
        NetVLAD(3, precision="tf32").apply(variables, x)


def test_chance_recalls_match_random_rankings():
    """The closed form equals the mean recall of many random rankings, and its edge cases."""
    from vgjax.eval.recalls import chance_recalls, compute_recalls

    rng = np.random.default_rng(0)
    db = rng.uniform(0, 200, (120, 2))
    queries = np.concatenate([rng.uniform(0, 200, (30, 2)), [[5000.0, 5000.0]]])  # one far away
    expected = chance_recalls(queries, db, (1, 5, 20))
    draws = [compute_recalls(np.stack([rng.permutation(len(db))[:20] for _ in queries]),
                             queries, db, (1, 5, 20), 25.0) for _ in range(3000)]
    for key, value in expected.items():
        simulated = np.mean([d[key] for d in draws])
        assert abs(simulated - value) < 0.6, (key, simulated, value)
    assert expected["R@1"] < expected["R@5"] < expected["R@20"] < 100.0
    near = np.zeros((3, 2))
    assert chance_recalls(near[:1], near, (1, 5)) == {"R@1": 100.0, "R@5": 100.0}  # all in range
    assert chance_recalls([[0.0, 0.0]], [[100.0, 0.0]], (1,)) == {"R@1": 0.0}  # none in range
    assert chance_recalls([[0.0, 0.0]], np.zeros((0, 2)), (1,)) == {"R@1": 0.0}
    assert np.isnan(chance_recalls(np.zeros((0, 2)), near, (1,))["R@1"])
    one = chance_recalls([[0.0, 0.0]], [[0.0, 0.0], [100.0, 0.0], [200.0, 0.0], [300.0, 0.0]],
                         (1, 2, 10))
    assert one == pytest.approx({"R@1": 25.0, "R@2": 50.0, "R@10": 100.0})
