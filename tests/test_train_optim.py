"""Optimizers and schedulers follow torch trajectories (numbers computed once with torch
2.13, float64, and written out here)."""
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from vgjax.train import optim, schedules

GRADS = [[0.3, -0.1, 0.2], [0.1, 0.4, -0.5], [-0.2, 0.2, 0.1], [0.5, 0.0, -0.3],
         [0.05, -0.25, 0.15]]


def _cfg(optimizer_args=None, scheduler_args=None, **kw):
    c = ml_collections.ConfigDict(dict(
        optimizer="adam", lr=0.1, weight_decay=0.0, optimizer_args=optimizer_args or {},
        scheduler="none", scheduler_args=scheduler_args or {}))
    c.update(kw)
    return c


def _run(tx, params, grads, lr_at=None):
    state = tx.init(params)
    out = []
    for i, g in enumerate(grads):
        if lr_at and i in lr_at:
            state = optim.set_learning_rate(state, lr_at[i])
        g = jax.tree.map(lambda p, v: jnp.full_like(p, 0) + jnp.asarray(v, p.dtype), params, g)
        upd, state = tx.update(g, state, params)
        params = optax.apply_updates(params, upd)
        out.append((params, state))
    return out


def test_asgd_matches_torch():
    # torch.optim.ASGD(lr=0.1, lambd=0.05, alpha=0.75, t0=2, weight_decay=0.01); lr set to
    # 0.05 before the 4th step (as a scheduler would).
    tx = optim.make_optimizer(_cfg(optimizer="asgd", lr=0.1, weight_decay=0.01,
                                   optimizer_args={"lambd": 0.05, "t0": 2.0}))
    params = {"w": jnp.array([1.0, -2.0, 0.5])}
    out = _run(tx, params, [{"w": g} for g in GRADS], lr_at={3: 0.05})
    expected_p = [[0.964, -1.978, 0.477],
                  [0.9482749322250956, -2.0060269644350996, 0.5239620023297924],
                  [0.9624788855918165, -2.013931591742516, 0.5109159538792517],
                  [0.9073233557626066, -2.001982182549826, 0.5375513681045481],
                  [0.9021402108912062, -1.98361382717764, 0.5285064663190135]]
    expected_ax_last = [0.9047317833269064, -1.992798004863733, 0.5330289172117808]
    expected_eta = [0.09962663314054993, 0.09925650290240803, 0.09888956541262,
                    0.04962825145120402, 0.04953631888714238]
    expected_mu = [1.0, 1.0, 1.0, 0.5, 1 / 3]
    for (p, state), ep, eta, mu in zip(out, expected_p, expected_eta, expected_mu):
        np.testing.assert_allclose(p["w"], ep, rtol=2e-6)
        inner = state.inner_state
        np.testing.assert_allclose(inner.eta, eta, rtol=2e-6)
        np.testing.assert_allclose(inner.mu, mu, rtol=2e-6)
    p, state = out[-1]
    np.testing.assert_allclose(optim.averaged_params(p, state)["w"], expected_ax_last, rtol=2e-6)


def test_frozen_params_untouched_and_adam_variants():
    params = {"frozen": jnp.array([1.0, 2.0]), "live": jnp.array([1.0, 2.0])}
    mask = {"frozen": False, "live": True}
    grads = [{"frozen": g[:2], "live": g[:2]} for g in GRADS[:3]]
    for name in optim.OPTIMIZERS:
        tx = optim.make_optimizer(_cfg(optimizer=name, weight_decay=0.1), mask)
        p, state = _run(tx, params, grads)[-1]
        np.testing.assert_array_equal(p["frozen"], [1.0, 2.0])
        assert not np.allclose(p["live"], [1.0, 2.0])
        if name == "asgd":
            np.testing.assert_array_equal(optim.averaged_params(p, state)["frozen"], [1.0, 2.0])
    # Adam (coupled wd) vs AdamW (decoupled) after one step from p=1, g=0.3, lr 0.1, wd 0.1:
    # Adam's first step is lr * sign(g + wd p); AdamW's is lr * sign(g) + lr * wd * p.
    one = {"w": jnp.array([1.0])}
    adam = _run(optim.make_optimizer(_cfg(optimizer="adam", weight_decay=0.1)), one,
                [{"w": [0.3]}])[-1][0]
    adamw = _run(optim.make_optimizer(_cfg(optimizer="adamw", weight_decay=0.1)), one,
                 [{"w": [0.3]}])[-1][0]
    np.testing.assert_allclose(adam["w"], [0.9], rtol=1e-6)
    np.testing.assert_allclose(adamw["w"], [1.0 - 0.1 - 0.01], rtol=1e-6)


def test_sgd_momentum_matches_torch_formula():
    # torch SGD(lr=0.1, momentum=0.9, weight_decay=0.1): buf = 0.9 buf + (g + 0.1 p).
    tx = optim.make_optimizer(_cfg(optimizer="sgd", lr=0.1, weight_decay=0.1,
                                   optimizer_args={"momentum": 0.9}))
    p, buf, out = 1.0, 0.0, _run(tx, {"w": jnp.array([1.0])}, [{"w": [g[0]]} for g in GRADS])
    for (params, _), g in zip(out, GRADS):
        buf = 0.9 * buf + g[0] + 0.1 * p
        p = p - 0.1 * buf
        np.testing.assert_allclose(params["w"], [p], rtol=1e-6)


def test_plateau_matches_torch():
    def trajectory(s, metrics, lr=1.0):
        out = []
        for m in metrics:
            lr = s.step(m, lr)
            out.append(lr)
        return out

    s = schedules.ReduceLROnPlateau(1.0, factor=0.5, patience=1, threshold=0.01,
                                    threshold_mode="rel", cooldown=1, min_lr=0.2)
    metrics = [50, 50.4, 50.6, 51, 51, 51, 60, 59, 58, 57, 56, 55, 54, 53]
    assert trajectory(s, metrics) == [1.0, 1.0, 1.0, 1.0, 0.5, 0.5, 0.5, 0.5, 0.25, 0.25,
                                      0.25, 0.2, 0.2, 0.2]
    s = schedules.ReduceLROnPlateau(1.0, factor=0.1, patience=0, threshold=0.5,
                                    threshold_mode="abs")
    got = trajectory(s, [10, 10.4, 10.6, 11.0, 11.2, 20])
    np.testing.assert_allclose(got, [1.0, 0.1, 0.1, 0.01, 0.01, 0.01])
    restored = schedules.ReduceLROnPlateau(1.0)
    restored.load_state_dict(s.state_dict())
    assert restored.state_dict() == s.state_dict()


def test_cosine_matches_torch_and_rises_after_t_max():
    s = schedules.CosineAnnealingLR(1e-3, t_max=4, eta_min=1e-5)
    got = [s.rate()] + [s.step() for _ in range(11)]
    expected = [0.001, 0.000855017856687341, 0.000505, 0.000154982143312659, 1e-05,
                0.00015498214331265896, 0.0005050000000000001, 0.0008550178566873414,
                0.0010000000000000005, 0.0008550178566873415, 0.0005050000000000005,
                0.0001549821433126595]
    np.testing.assert_allclose(got, expected, rtol=1e-12)
    with pytest.raises(ValueError, match="train.scheduler"):
        schedules.make_scheduler(_cfg(scheduler="step"))


@pytest.mark.parametrize("name", ["sgd", "adam", "asgd"])
def test_a_parameter_group_at_its_own_learning_rate(name):
    """Multipliers train each group as a torch param group with lr * multiplier: the
    same trajectory as a separate optimizer at that lr, and a scheduler's change of lr
    moves both groups."""
    params = {"a": jnp.array([1.0, 2.0, 3.0]), "b": jnp.array([1.0, 2.0, 3.0]),
              "c": jnp.array([1.0, 2.0, 3.0])}
    cfg = _cfg(optimizer=name, lr=0.1, weight_decay=0.01)
    run = _run(optim.make_optimizer(cfg, {"a": 1.0, "b": 10.0, "c": 0.0}),
               params, [{"a": g, "b": g, "c": g} for g in GRADS], lr_at={3: 0.05})
    alone = _run(optim.make_optimizer(_cfg(optimizer=name, lr=1.0, weight_decay=0.01)),
                 {"b": params["b"]}, [{"b": g} for g in GRADS], lr_at={3: 0.5})
    plain = _run(optim.make_optimizer(cfg), {"a": params["a"]}, [{"a": g} for g in GRADS],
                 lr_at={3: 0.05})
    for (p, _), (pa, _), (pp, _) in zip(run, alone, plain):
        np.testing.assert_allclose(p["b"], pa["b"], rtol=1e-6)
        np.testing.assert_allclose(p["a"], pp["a"], rtol=1e-6)
        np.testing.assert_array_equal(p["c"], params["c"])


def test_lr_scales_put_the_crn_filters_at_train_crn_lr():
    from configs.default import get_config
    from vgjax.models.network import abstract_variables, trainable_mask
    c = get_config("smoke")
    c.model.aggregation, c.train.lr, c.train.crn_lr = "crn", 5e-4, 5e-3
    mask = trainable_mask(abstract_variables(c.model)["params"], c.model)
    scales = optim.lr_scales(mask, c.model, c.train)
    crn = scales["aggregation"]["crn"]
    assert crn["acc_w"] == {"kernel": 0.0, "bias": 0.0}   # never trains, as the reference's
    assert jax.tree.leaves(crn["filter_3_3"]) == [10.0, 10.0]
    assert scales["aggregation"]["centroids"] == 1.0
    assert set(jax.tree.leaves(scales["backbone"])) == {0.0, 1.0}


def test_averaged_weights_of_every_parameter_group():
    params = {"a": jnp.array([1.0, 2.0]), "b": jnp.array([3.0, 4.0]), "c": jnp.array([5.0])}
    cfg = _cfg(optimizer="asgd", lr=0.1, optimizer_args={"t0": 0.0})
    steps = _run(optim.make_optimizer(cfg, {"a": 1.0, "b": 10.0, "c": 0.0}), params,
                 [{"a": [0.5, -0.5], "b": [0.5, -0.5], "c": [0.5]}] * 3)
    (p2, _), (p3, state) = steps[1], steps[2]
    avg = optim.averaged_params(p3, state)
    for k in ("a", "b"):  # with t0=0 the third step averages the last two weights
        np.testing.assert_allclose(avg[k], (p2[k] + p3[k]) / 2, rtol=1e-6)
        assert not np.allclose(avg[k], p3[k])
    assert float(avg["c"][0]) == 5.0


def test_multistep_matches_torch():
    # torch MultiStepLR(milestones=[2, 4], gamma=0.5) on lr 1.0, stepped once per epoch
    s = schedules.MultiStepLR(1.0, milestones=[2, 4], gamma=0.5)
    got = [s.rate()] + [s.step(None, 0.0) for _ in range(6)]
    np.testing.assert_allclose(got, [1.0, 1.0, 0.5, 0.5, 0.25, 0.25, 0.25], rtol=1e-12)
    restored = schedules.MultiStepLR(1.0, milestones=[2, 4], gamma=0.5)
    restored.load_state_dict(s.state_dict())
    assert restored.rate() == s.rate()
    for bad in ({"milestones": [3, 2]}, {"milestones": [0]}, {"gamma": 1.5},
                {"warmup_steps": -1}, {"warmup_steps": 2.5}):
        with pytest.raises(ValueError):
            schedules.MultiStepLR(1.0, **bad)


def test_linear_matches_torch_and_starts_the_optimizer_at_its_first_rate():
    # torch LinearLR(start_factor, end_factor, total_iters) on lr 1.0, stepped per epoch
    s = schedules.LinearLR(1.0, start_factor=1.0, end_factor=0.2, total_epochs=4)
    got = [s.rate()] + [s.step() for _ in range(5)]
    np.testing.assert_allclose(got, [1.0, 0.8, 0.6, 0.4, 0.2, 0.2], rtol=1e-12)
    s = schedules.LinearLR(1.0, start_factor=0.5, end_factor=1.0, total_epochs=2)
    np.testing.assert_allclose([s.rate()] + [s.step() for _ in range(3)],
                               [0.5, 0.75, 1.0, 1.0], rtol=1e-12)
    cfg = _cfg(scheduler="linear", scheduler_args={"start_factor": 0.5, "end_factor": 1.0,
                                                   "total_epochs": 2})
    state = optim.make_optimizer(cfg).init({"w": jnp.zeros(1)})
    assert optim.learning_rate(state) == pytest.approx(0.05)
    assert schedules.initial_lr(_cfg()) == pytest.approx(0.1)


@pytest.mark.parametrize("scheduler", ["multistep", "linear"])
def test_warmup_scales_each_step_linearly(scheduler):
    # SGD without momentum, lr 0.1, gradient 1: the step-s update is 0.1 * min(1, (s+1)/4);
    # a rate set between epochs (set_learning_rate) is scaled the same way
    args = {"warmup_steps": 4}
    if scheduler == "linear":
        args.update(start_factor=1.0, end_factor=1.0)
    cfg = _cfg(optimizer="sgd", optimizer_args={"momentum": 0.0}, scheduler=scheduler,
               scheduler_args=args)
    assert schedules.warmup_steps(cfg) == 4
    out = _run(optim.make_optimizer(cfg), {"w": jnp.array([0.0])}, [{"w": [1.0]}] * 6,
               lr_at={3: 0.2})
    ws = [0.0] + [float(p["w"][0]) for p, _ in out]
    np.testing.assert_allclose(np.diff(ws), [-0.025, -0.05, -0.075, -0.2, -0.2, -0.2],
                               rtol=1e-6)
    assert optim.learning_rate(out[-1][1]) == pytest.approx(0.2)
    # no warmup: the optimizer state of the other schedulers is unchanged
    assert schedules.warmup_steps(_cfg(scheduler="multistep")) == 0


def test_scheduler_arguments_refused_in_one_line():
    from vgjax.config import ConfigError
    with pytest.raises(ConfigError, match="train.scheduler"):
        optim.make_optimizer(_cfg(scheduler="multistep", scheduler_args={"milestones": [5, 2]}))
