"""Losses against plain NumPy formulas."""
import numpy as np
import pytest

from vgjax.train import losses


def _data(b=3, n=4, d=8, seed=0):
    rng = np.random.default_rng(seed)
    q, p = rng.normal(size=(b, d)), rng.normal(size=(b, d))
    neg = rng.normal(size=(b, n, d))
    return [x.astype(np.float32) for x in (q, p, neg)]


def test_triplet_matches_numpy():
    q, p, n = _data()
    margin = 0.5
    dp = np.linalg.norm(q - p + 1e-6, axis=1)
    expected = np.mean([max(0.0, dp[i] - np.linalg.norm(q[i] - n[i, j] + 1e-6) + margin)
                        for i in range(3) for j in range(4)])
    got = float(losses.triplet_loss(q, p, n, margin))
    np.testing.assert_allclose(got, expected, rtol=1e-5)


def test_sare_ind_and_joint_match_numpy():
    q, p, n = _data(d=3)
    dp = ((q - p) ** 2).sum(1)
    dn = ((q[:, None] - n) ** 2).sum(2)
    ind = np.mean([-np.log(np.exp(-dp[i]) / (np.exp(-dp[i]) + np.exp(-dn[i, j])))
                   for i in range(3) for j in range(4)])
    joint = sum(-np.log(np.exp(-dp[i]) / (np.exp(-dp[i]) + np.exp(-dn[i]).sum()))
                for i in range(3)) / (3 * 4)
    np.testing.assert_allclose(float(losses.sare_ind_loss(q, p, n)), ind, rtol=1e-5)
    np.testing.assert_allclose(float(losses.sare_joint_loss(q, p, n)), joint, rtol=1e-5)


def test_split_groups_layout_and_unknown_loss():
    desc = np.arange(2 * 5 * 3, dtype=np.float32).reshape(10, 3)   # 2 queries, 3 negatives
    q, p, n = losses.split_groups(desc, 3)
    np.testing.assert_array_equal(q, desc[[0, 5]])
    np.testing.assert_array_equal(p, desc[[1, 6]])
    np.testing.assert_array_equal(n[1], desc[7:10])
    with pytest.raises(ValueError, match="train.loss"):
        losses.make_term("contrastive")
