"""Search, recalls, descriptor stores, PCA and the crop-merging rules, on random arrays."""
import numpy as np
import pytest

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


def test_jax_backend_matches_faiss():
    db, q, *_ = _random_problem(2, nq=20, nb=100, d=16)
    d1, i1 = exact_search(_store(db), q, 5, backend="faiss-cpu")
    # 30-row blocks: padded last blocks on both sides, results merged across blocks.
    d2, i2 = exact_search(_store(db), q, 5, backend="jax", chunk_bytes=30 * 16 * 4)
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
