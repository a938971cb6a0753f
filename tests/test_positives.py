import numpy as np

from vgjax.data.positives import positives_within, to_padded


def brute_force(db, q, r):
    d = np.sqrt(((q[:, None, :] - db[None, :, :]) ** 2).sum(-1))
    return [np.flatnonzero(row <= r) for row in d]


def test_positives_match_brute_force():
    rng = np.random.default_rng(0)
    db = rng.uniform(0, 300, (2000, 2)) + [585000, 4477000]
    q = rng.uniform(0, 300, (300, 2)) + [585000, 4477000]
    for r in (10.0, 25.0):
        got = positives_within(db, q, r)
        want = brute_force(db, q, r)
        assert all(np.array_equal(g, w) for g, w in zip(got, want))
    assert any(len(g) == 0 for g in positives_within(db, q, 1.0))


def test_positives_empty_database_and_padding():
    assert [len(x) for x in positives_within(np.zeros((0, 2)), np.zeros((3, 2)), 5)] == [0, 0, 0]
    padded = to_padded([np.array([3, 1]), np.array([], np.int64), np.array([7])])
    assert padded.tolist() == [[3, 1], [-1, -1], [7, -1]]
