"""Mining picks exactly what a brute-force NumPy reference picks (random features)."""
import numpy as np
import pytest

from vgjax.train import mining


def _tables(rng, n_db=300, n_q=40, p_max=5, s_extra=6):
    hard = np.full((n_q, p_max), -1, np.int32)
    soft = np.full((n_q, p_max + s_extra), -1, np.int32)
    for i in range(n_q):
        ids = rng.choice(n_db, size=rng.integers(1, p_max + s_extra + 1), replace=False)
        k = rng.integers(1, min(p_max, len(ids)) + 1)
        hard[i, :k] = ids[:k]
        soft[i, :len(ids)] = ids
    return mining.MiningTables(hard=hard, soft=soft, database_size=n_db)


def _sq(a, b):
    a, b = a.astype(np.float64), b.astype(np.float64)
    return ((a[:, None] - b[None]) ** 2).sum(-1)


def _ref_positive(dq, hard_ids):
    ids = hard_ids[hard_ids >= 0]
    return ids[np.argmin(dq[ids])]


def test_partial_mining_matches_bruteforce():
    rng = np.random.default_rng(0)
    tables = _tables(rng)
    d, n_neg = 16, 7
    db = rng.normal(size=(tables.database_size, d)).astype(np.float32)
    qids = rng.choice(len(tables.hard), 30, replace=False)
    query = rng.normal(size=(30, d)).astype(np.float32)
    plan = mining.plan_round("partial", tables, qids, np.random.default_rng(1), 100, pad_to=64)
    assert len(plan.cache_db_ids) % 64 == 0
    cache = np.zeros((len(plan.cache_db_ids), d), np.float32)
    cache[:plan.num_cache] = db[plan.cache_db_ids[:plan.num_cache]]
    pos, neg = mining.mine("partial", None, plan, query, cache, n_neg, 0, tables.database_size)
    sampled = plan.cache_db_ids[plan.sampled_rows]
    assert len(np.unique(sampled)) == 100
    dist = _sq(query, db)
    for i, q in enumerate(qids):
        assert pos[i] == _ref_positive(dist[i], tables.hard[q])
        soft = tables.soft[q][tables.soft[q] >= 0]
        cand = np.setdiff1d(sampled, soft)
        expected = cand[np.argsort(dist[i, cand], kind="stable")[:n_neg]]
        np.testing.assert_array_equal(neg[i], expected)


def test_full_mining_candidates_and_choice():
    rng = np.random.default_rng(2)
    tables = _tables(rng, n_db=200, n_q=20)
    d, n_neg, n_cand = 8, 5, 50
    db = rng.normal(size=(200, d)).astype(np.float32)
    qids = np.arange(20)
    query = rng.normal(size=(20, d)).astype(np.float32)
    plan = mining.plan_round("full", tables, qids, rng, 0)
    import jax
    key = jax.random.key(0)
    prev = np.full((20, n_neg), -1, np.int32)
    pos, neg = mining.mine("full", key, plan, query, db, n_neg, n_cand, 200, prev)
    # Reproduce the candidate draw, then brute force.
    soft_mask = np.asarray(mining.rows_to_mask(plan.soft_rows, 200))
    drawn = np.asarray(mining.random_rows(key, ~soft_mask, n_cand))
    dist = _sq(query, db)
    for i in range(20):
        assert len(np.unique(drawn[i])) == n_cand and not soft_mask[i, drawn[i]].any()
        assert pos[i] == _ref_positive(dist[i], tables.hard[i])
        expected = drawn[i][np.argsort(dist[i, drawn[i]], kind="stable")[:n_neg]]
        np.testing.assert_array_equal(np.sort(neg[i]), np.sort(expected))
    # Previous hardest negatives stay candidates: the far-away first negatives of round one
    # are kept when they are nearer than anything drawn in round two.
    prev = neg.astype(np.int32)
    query2 = query.copy()
    pos2, neg2 = mining.mine("full", jax.random.key(1), plan, query2, db, n_neg, 1, 200, prev)
    for i in range(20):
        drawn2 = np.asarray(mining.random_rows(jax.random.key(1), ~soft_mask, 1))[i]
        cand = np.union1d(prev[i], drawn2)
        expected = cand[np.argsort(dist[i, cand], kind="stable")[:n_neg]]
        np.testing.assert_array_equal(np.sort(neg2[i]), np.sort(expected))


def test_random_mining_avoids_soft_positives():
    import jax
    rng = np.random.default_rng(3)
    tables = _tables(rng, n_db=60, n_q=10)
    qids = np.arange(10)
    plan = mining.plan_round("random", tables, qids, rng, 0)
    db = rng.normal(size=(60, 4)).astype(np.float32)
    cache = np.zeros((len(plan.cache_db_ids), 4), np.float32)
    cache[:plan.num_cache] = db[plan.cache_db_ids[:plan.num_cache]]
    query = rng.normal(size=(10, 4)).astype(np.float32)
    pos, neg = mining.mine("random", jax.random.key(0), plan, query, cache, 6, 0, 60)
    dist = _sq(query, db)
    for i in range(10):
        assert pos[i] == _ref_positive(dist[i], tables.hard[i])
        assert len(np.unique(neg[i])) == 6
        assert not np.isin(neg[i], tables.soft[i]).any()


def test_too_few_candidates_is_a_clear_error():
    rng = np.random.default_rng(4)
    tables = _tables(rng, n_db=30, n_q=5)
    plan = mining.plan_round("partial", tables, np.arange(5), rng, 3, pad_to=8)
    cache = np.zeros((len(plan.cache_db_ids), 4), np.float32)
    with pytest.raises(ValueError, match="neg_samples_num"):
        mining.mine("partial", None, plan, np.zeros((5, 4), np.float32), cache, 10, 0, 30)


# Whole-database miners in chunks: same result whatever the chunk size ---------------------

def _full_problem(seed, n_db=203, n_q=20, d=8, n_neg=5):
    rng = np.random.default_rng(seed)
    tables = _tables(rng, n_db=n_db, n_q=n_q)
    plan = mining.plan_round("full", tables, np.arange(n_q), rng, 0)
    db = rng.normal(size=(n_db, d)).astype(np.float32)
    query = rng.normal(size=(n_q, d)).astype(np.float32)
    prev = rng.integers(0, n_db, (n_q, n_neg)).astype(np.int32)
    prev[::2] = -1   # half the queries have no previous round
    return tables, plan, db, query, prev


@pytest.mark.parametrize("rows", [1, 17, 202])  # 17, 202: a last chunk read overlapping
def test_full_mining_in_chunks_equals_one_chunk(rows):
    import jax
    tables, plan, db, query, prev = _full_problem(5)
    n_q = len(query)
    key = jax.random.key(3)
    whole = mining.mine("full", key, plan, query, db, 5, 40, tables.database_size, prev)
    chunk_bytes = rows * n_q * mining.PAIR_BYTES
    assert mining.chunk_rows(n_q, tables.database_size, chunk_bytes) == rows
    chunked = mining.mine("full", key, plan, query, db, 5, 40, tables.database_size, prev,
                          chunk_bytes=chunk_bytes)
    np.testing.assert_array_equal(chunked[0], whole[0])
    np.testing.assert_array_equal(chunked[1], whole[1])
    # the raw device outputs too (candidate counts included)
    a = mining.mine_full(key, query, db, plan.positive_rows, plan.soft_rows, prev,
                         num_candidates=40, num_negatives=5)
    b = mining.mine_full(key, query, db, plan.positive_rows, plan.soft_rows, prev,
                         num_candidates=40, num_negatives=5, chunk_bytes=chunk_bytes)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


@pytest.mark.parametrize("rows", [1, 13])
def test_random_mining_in_chunks_equals_one_chunk(rows):
    import jax
    rng = np.random.default_rng(6)
    tables = _tables(rng, n_db=60, n_q=10)
    plan = mining.plan_round("random", tables, np.arange(10), rng, 0)
    db = rng.normal(size=(60, 4)).astype(np.float32)
    cache = np.zeros((len(plan.cache_db_ids), 4), np.float32)
    cache[:plan.num_cache] = db[plan.cache_db_ids[:plan.num_cache]]
    query = rng.normal(size=(10, 4)).astype(np.float32)
    key = jax.random.key(4)
    a = mining.mine_random(key, query, cache, plan.cache_db_ids, plan.positive_rows,
                           plan.soft_rows, database_size=60, num_negatives=6)
    b = mining.mine_random(key, query, cache, plan.cache_db_ids, plan.positive_rows,
                           plan.soft_rows, database_size=60, num_negatives=6,
                           chunk_bytes=rows * 10 * mining.PAIR_BYTES)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_chunked_full_mining_matches_bruteforce():
    """The chunked path on its own against NumPy: the candidates are the draw of
    `random_rows` plus the previous negatives, minus soft positives; the N nearest win."""
    import jax
    tables, plan, db, query, prev = _full_problem(7, n_db=150, n_q=12)
    key = jax.random.key(8)
    pos, neg = mining.mine("full", key, plan, query, db, 5, 30, 150, prev,
                           chunk_bytes=11 * 12 * mining.PAIR_BYTES)
    soft_mask = np.asarray(mining.rows_to_mask(plan.soft_rows, 150))
    drawn = np.asarray(mining.random_rows(key, ~soft_mask, 30))
    dist = _sq(query, db)
    for i in range(12):
        assert pos[i] == _ref_positive(dist[i], tables.hard[i])
        cand = np.union1d(drawn[i], prev[i][prev[i] >= 0])
        cand = cand[~soft_mask[i, cand]]
        expected = cand[np.argsort(dist[i, cand], kind="stable")[:5]]
        np.testing.assert_array_equal(neg[i], expected)


def test_uniform_block_is_jax_uniform():
    """The chunk-invariant random scores are jax.random.uniform's, block by block, also
    past 2**32 flat indices."""
    import jax
    import jax.numpy as jnp
    key = jax.random.key(11)
    full = np.asarray(jax.random.uniform(key, (37, 101)))
    block = mining.uniform_block(key, jnp.arange(5, 20), jnp.arange(40, 77), 101)
    np.testing.assert_array_equal(np.asarray(block), full[5:20, 40:77])
    legacy = mining.uniform_block(jax.random.PRNGKey(11), jnp.arange(37), jnp.arange(101), 101)
    np.testing.assert_array_equal(np.asarray(legacy), full)
    rows, cols, m = np.array([0, 70_000, 99_999]), np.array([0, 5, 99_999]), 100_000
    from vgjax.train.mining_ops import _flat_index_words
    hi, lo = _flat_index_words(jnp.asarray(rows), jnp.asarray(cols), m)
    flat = rows[:, None].astype(np.uint64) * m + cols[None].astype(np.uint64)
    got = np.asarray(hi).astype(np.uint64) << np.uint64(32) | np.asarray(lo).astype(np.uint64)
    np.testing.assert_array_equal(got, flat)


def test_mining_distances_use_highest_precision():
    """float32 distances on every device: the matmul asks for HIGHEST (no TF32)."""
    import jax
    text = str(jax.make_jaxpr(mining.pairwise_sq_dists)(np.ones((3, 4), np.float32),
                                                        np.ones((5, 4), np.float32)))
    assert "precision=(Precision.HIGHEST, Precision.HIGHEST)" in text, text


def _msls_names(notes):
    from vgjax.data.format import make_filename
    return [make_filename(500000.0 + i, 4100000.0, pano_id=f"q{i}", note=n)
            for i, n in enumerate(notes)]


def test_msls_weights_favour_night_and_sideways_queries():
    notes = ["day_forward", "night_forward", "day_sideways", "night_sideways", "day_forward",
             "day_forward"]
    w = mining.msls_query_weights(_msls_names(notes))
    # 1 each, + 6/2 for the 2 night, + 6/2 for the 2 sideways, normalised (the reference's)
    raw = np.array([1, 4, 4, 7, 1, 1], np.float64)
    np.testing.assert_allclose(w, raw / raw.sum())
    assert mining.get_miner("msls_weighted").query_weights(_msls_names(notes)) is not None
    assert mining.get_miner("partial").query_weights(_msls_names(notes)) is None
    with pytest.raises(ValueError, match=r"msls_weighted: 1 of the 2 training queries have no "
                                         r"'<day\|night>_<view>' note"):
        mining.msls_query_weights(_msls_names(["night_sideways", "day"]))
    with pytest.raises(ValueError, match="0 night and 1 sideways images; it needs both"):
        mining.msls_query_weights(_msls_names(["day_sideways", "day_forward"]))


def test_weighted_rounds_draw_without_repetition_and_follow_the_weights():
    from vgjax.train.state import epoch_queries
    weights = np.full(100, 1.0)
    weights[:10] = 20.0  # 10 queries hold 2/3 of the mass
    weights /= weights.sum()
    q = epoch_queries(0, 0, 100, 60, weights, per_round=20)
    assert len(q) == 60
    for r in range(3):  # each round of 20 has no repeated query
        assert len(set(q[20 * r:20 * (r + 1)])) == 20
    np.testing.assert_array_equal(q, epoch_queries(0, 0, 100, 60, weights, per_round=20))
    assert not np.array_equal(q, epoch_queries(0, 1, 100, 60, weights, per_round=20))
    # the heavy queries are in nearly every round; uniformly they would be 20% of a round
    assert np.isin(q, np.arange(10)).sum() >= 24
    assert len(epoch_queries(0, 0, 100, 60)) == 60  # no weights: the plain subset


def test_msls_weighted_refused_before_training_without_msls_names(tmp_path):
    from conftest import write_dataset
    from vgjax.cli.config import load_config, validate_training
    from vgjax.config import ConfigError
    from pathlib import Path
    smoke = Path(__file__).resolve().parent.parent / "configs" / "smoke.py"
    write_dataset(tmp_path / "plain", name="pitts30k")
    with pytest.raises(ConfigError, match="train.mining=msls_weighted: 5 of the 5 training"):
        validate_training(load_config(smoke, [f"data.root={tmp_path / 'plain'}",
                                              "data.test_datasets=[pitts30k]",
                                              "train.mining=msls_weighted"]))
    notes = ["night_sideways", "day_forward", "day_sideways", "night_forward", "day_forward"]
    write_dataset(tmp_path / "msls", name="pitts30k", query_note=lambda j: notes[j])
    validate_training(load_config(smoke, [f"data.root={tmp_path / 'msls'}",
                                          "data.test_datasets=[pitts30k]",
                                          "train.mining=msls_weighted"]))
