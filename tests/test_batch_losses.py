"""The batch losses and miners of vgjax.train.batch_losses against pytorch-metric-learning:
loss values, gradients w.r.t. the descriptors (torch autograd through PML) and mined pairs,
on shuffled P x K place batches and on the edge cases (a place with one image, nothing
mined, no positive or no negative pair, a single pair of each kind)."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vgjax.config import ConfigError
from vgjax.train import batch_losses as bl

torch = pytest.importorskip("torch")
pml_losses = pytest.importorskip("pytorch_metric_learning.losses")
pml_miners = pytest.importorskip("pytorch_metric_learning.miners")
pml_distances = pytest.importorskip("pytorch_metric_learning.distances")

VALUE_RTOL = 1e-5
GRAD_RTOL = 1e-4

# name -> (our spec arguments, the PML loss with the same settings)
LOSSES = {
    "multi_similarity": ({}, lambda: pml_losses.MultiSimilarityLoss()),
    "multi_similarity_recipe": (
        dict(alpha=1.0, beta=50.0, base=0.0),
        lambda: pml_losses.MultiSimilarityLoss(alpha=1.0, beta=50, base=0.0,
                                               distance=pml_distances.DotProductSimilarity())),
    "contrastive": ({}, lambda: pml_losses.ContrastiveLoss()),
    "supcon": ({}, lambda: pml_losses.SupConLoss()),
    "circle": ({}, lambda: pml_losses.CircleLoss()),
}


def _ours(name):
    args, _ = LOSSES[name]
    return bl.BATCH_LOSSES.partial(name.replace("_recipe", ""), args)


def place_batch(seed, places, per_place, dim=16, spread=1.0, sizes=None):
    """Shuffled place batch: labels are scattered place ids, descriptors unit-norm around
    one centre per place (`spread` = noise / centre scale)."""
    rng = np.random.default_rng(seed)
    sizes = sizes or [per_place] * places
    ids = rng.choice(1000, size=len(sizes), replace=False)
    labels = np.concatenate([np.full(k, i) for i, k in zip(ids, sizes)])
    centres = rng.normal(size=(len(sizes), dim))
    x = np.concatenate([c + spread * rng.normal(size=(k, dim)) * np.sqrt(dim) / 4
                        for c, k in zip(centres, sizes)])
    order = rng.permutation(len(labels))
    x = x[order] / np.linalg.norm(x[order], axis=1, keepdims=True)
    return x.astype(np.float32), labels[order].astype(np.int32)


def _indices(pairs):
    pos, neg = (np.asarray(m) for m in pairs)
    a1, p = np.nonzero(pos)
    a2, n = np.nonzero(neg)
    return tuple(torch.as_tensor(v, dtype=torch.long) for v in (a1, p, a2, n))


def pml_value_and_grad(name, x, labels, pairs=None):
    emb = torch.tensor(x, requires_grad=True)
    indices = None if pairs is None else _indices(pairs)
    loss = LOSSES[name][1]()(emb, torch.as_tensor(labels, dtype=torch.long),
                             indices_tuple=indices)
    loss.backward()
    grad = emb.grad if emb.grad is not None else torch.zeros_like(emb)
    return float(loss.detach()), grad.numpy()


@functools.lru_cache(maxsize=None)
def _jitted(name):
    """One compilation per loss and batch size: the pairs are always passed as masks."""
    fn = _ours(name)
    return jax.jit(jax.value_and_grad(
        lambda d, l, pos, neg: fn(descriptors=d, labels=l, pairs=bl.Pairs(pos, neg)),
        has_aux=True))


def ours_value_and_grad(name, x, labels, pairs=None):
    pos, neg = bl.all_pairs(labels) if pairs is None else pairs
    (value, stats), grad = _jitted(name)(jnp.asarray(x), jnp.asarray(labels),
                                         jnp.asarray(pos), jnp.asarray(neg))
    return float(value), np.asarray(grad), stats


_miner = jax.jit(bl.BATCH_MINERS.partial("multi_similarity"))


def pml_miner_pairs(x, labels, epsilon=0.1):
    a1, p, a2, n = pml_miners.MultiSimilarityMiner(epsilon=epsilon)(
        torch.tensor(x), torch.as_tensor(labels, dtype=torch.long))
    pos = np.zeros((len(labels),) * 2, bool)
    neg = np.zeros_like(pos)
    pos[a1.numpy(), p.numpy()] = True
    neg[a2.numpy(), n.numpy()] = True
    return pos, neg


def value_rel_diff(ours, ref):
    return abs(ours - ref) / max(abs(ref), 1e-30) if ref != 0 else abs(ours)


def grad_rel_diff(ours, ref):
    scale = np.max(np.abs(ref))
    return np.max(np.abs(ours - ref)) / scale if scale > 0 else np.max(np.abs(ours))


def assert_matches(name, x, labels, pairs=None):
    ref_v, ref_g = pml_value_and_grad(name, x, labels, pairs)
    v, g, _ = ours_value_and_grad(name, x, labels, pairs)
    assert value_rel_diff(v, ref_v) <= VALUE_RTOL, (name, v, ref_v)
    assert grad_rel_diff(g, ref_g) <= GRAD_RTOL, (name, np.max(np.abs(g - ref_g)))
    return v, ref_v


# 16 images (as the edge cases: one compilation per loss), and 32 (cdist's other path)
BATCHES = [(seed, p, k) for seed, (p, k) in enumerate([(4, 4), (4, 4), (8, 2), (2, 8), (8, 4)])]


@pytest.mark.parametrize("seed, places, per_place", BATCHES)
def test_multi_similarity_miner_matches_pml(seed, places, per_place):
    x, labels = place_batch(seed, places, per_place)
    pos, neg = _miner(descriptors=jnp.asarray(x), labels=jnp.asarray(labels))
    ref_pos, ref_neg = pml_miner_pairs(x, labels)
    np.testing.assert_array_equal(np.asarray(pos), ref_pos)
    np.testing.assert_array_equal(np.asarray(neg), ref_neg)
    assert 0 < ref_pos.sum() and 0 < ref_neg.sum() < (labels[:, None] != labels).sum()


@pytest.mark.parametrize("name", list(LOSSES))
@pytest.mark.parametrize("mined", [False, True], ids=["all_pairs", "ms_miner"])
def test_loss_value_and_gradient_match_pml(name, mined):
    for seed, places, per_place in BATCHES:
        x, labels = place_batch(seed, places, per_place)
        pairs = pml_miner_pairs(x, labels) if mined else None
        v, _ = assert_matches(name, x, labels, pairs)
        assert v > 0


@pytest.mark.parametrize("name", list(LOSSES))
def test_edge_cases_match_pml(name):
    # a place with a single image: it is nobody's positive, everybody's negative
    x, labels = place_batch(11, 0, 0, sizes=[6, 6, 1, 3])
    assert_matches(name, x, labels)
    pairs = pml_miner_pairs(x, labels)
    ids, counts = np.unique(labels, return_counts=True)
    assert not pairs[0][labels == ids[counts == 1][0]].any()
    assert_matches(name, x, labels, pairs)
    # a batch where the miner keeps nothing (tight, far apart places): PML's loss is 0
    x, labels = place_batch(12, 4, 4, spread=0.01)
    pairs = pml_miner_pairs(x, labels)
    assert not pairs[0].any() and not pairs[1].any()
    ours = _miner(descriptors=x, labels=labels)
    assert not np.asarray(ours.pos).any() and not np.asarray(ours.neg).any()
    v, _ = assert_matches(name, x, labels, pairs)
    assert v == 0
    # one place only (no negative pair) and all places different (no positive pair)
    for labels in (np.zeros(16, np.int32), np.arange(16, dtype=np.int32)):
        assert_matches(name, x, labels)
    # at most one positive and one negative pair: PML returns 0
    x, labels = place_batch(13, 4, 4)
    pos, neg = np.zeros((16, 16), bool), np.zeros((16, 16), bool)
    a = 0
    pos[a, np.nonzero((labels == labels[a]) & (np.arange(16) != a))[0][0]] = True
    neg[a, np.nonzero(labels != labels[a])[0][0]] = True
    v, _ = assert_matches(name, x, labels, (pos, neg))
    assert v == 0
    neg[a, np.nonzero(labels != labels[a])[0][1]] = True   # two negatives: a real loss
    assert_matches(name, x, labels, (pos, neg))


def test_jitted_training_loss_matches_pml():
    """The miner feeding the loss under one jit, as a train step uses them."""
    fn = bl.make_batch_loss("multi_similarity", miner="multi_similarity")
    step = jax.jit(jax.value_and_grad(lambda d, l: fn(d, l)[0]))
    for seed in (20, 21):
        x, labels = place_batch(seed, 4, 4)
        value, grad = step(jnp.asarray(x), jnp.asarray(labels))
        ref_v, ref_g = pml_value_and_grad("multi_similarity", x, labels,
                                          pml_miner_pairs(x, labels))
        assert value_rel_diff(float(value), ref_v) <= VALUE_RTOL
        assert grad_rel_diff(np.asarray(grad), ref_g) <= GRAD_RTOL


def test_stats_count_the_pairs():
    labels = np.array([3, 3, 3, 7, 7, 9], np.int32)
    x, _ = place_batch(30, 3, 2)
    value, stats = jax.jit(bl.multi_similarity)(x, labels)   # pairs=None: all pairs
    assert int(stats["pos_pairs"]) == 3 * 2 + 2 * 1 and int(stats["neg_pairs"]) == 36 - 6 - 8
    assert int(stats["active_terms"]) == 6
    assert value_rel_diff(float(value), pml_value_and_grad("multi_similarity", x, labels)[0]) \
        <= VALUE_RTOL


def test_registries_refuse_unknown_names_and_bad_arguments():
    assert set(bl.BATCH_LOSSES) == {"multi_similarity", "contrastive", "supcon", "circle"}
    assert set(bl.BATCH_MINERS) == {"multi_similarity", "none"}
    with pytest.raises(ConfigError, match="did you mean 'multi_similarity'"):
        bl.BATCH_LOSSES.check("multi_similarty")
    with pytest.raises(ConfigError, match="no argument 'margin'"):
        bl.BATCH_LOSSES.check("contrastive(margin=1)")
    with pytest.raises(ConfigError, match="set by vgjax itself"):
        bl.BATCH_MINERS.check("multi_similarity(labels=1)")
    x, labels = place_batch(31, 2, 2)
    with pytest.raises(ConfigError, match="temperature"):
        bl.BATCH_LOSSES.partial("supcon(temperature=0)")(descriptors=x, labels=labels)
    with pytest.raises(ConfigError, match="alpha"):
        bl.BATCH_LOSSES.partial("multi_similarity(alpha=-1)")(descriptors=x, labels=labels)
