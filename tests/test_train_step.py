"""The jitted train step: a non-finite loss freezes the state for good (sticky failure)."""
from pathlib import Path

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from vgjax.train.losses import LossTerm
from vgjax.train.state import TrainState
from vgjax.train.step import make_mesh as _mesh, make_train_step

SMOKE = Path(__file__).resolve().parent.parent / "configs" / "smoke.py"


class MeanNet(nn.Module):
    """Descriptor = w * mean pixel of the image (one parameter, one batch statistic)."""

    @nn.compact
    def __call__(self, x, train=False):
        w = self.param("w", nn.initializers.ones, (1, 2))
        seen = self.variable("batch_stats", "seen", lambda: jnp.zeros([]))
        if train:
            seen.value = seen.value + 1
        return x.mean(axis=(1, 2, 3))[:, None] * w


def test_non_finite_loss_freezes_the_state():
    net = MeanNet()
    variables = net.init(jax.random.key(0), jnp.zeros((1, 4, 4, 3)))
    tx = optax.sgd(0.1)

    def loss_fn(q, p, n):  # finite for dark images, NaN for bright ones
        return jnp.where(q.mean() > 1.0, jnp.nan, (q - p).mean() ** 2 + q.mean() ** 2)

    term = LossTerm("custom", lambda outputs: loss_fn(*outputs.groups()))
    step = make_train_step(net, tx, [term], 1, _mesh(1))
    dark = np.zeros((3, 4, 4, 3), np.uint8)
    bright = np.full((3, 4, 4, 3), 255, np.uint8)
    state = TrainState.create(variables, tx)
    state, metrics = step(state, dark)
    loss = metrics["loss"]
    assert np.isfinite(loss) and int(state.step) == 1 and not bool(state.failed)
    after_one = jax.device_get(state.params)
    state, metrics = step(state, bright)
    loss = metrics["loss"]
    assert np.isnan(loss) and int(state.step) == 1 and bool(state.failed)
    state, metrics = step(state, dark)
    loss = metrics["loss"]  # finite again, but the run has failed: no update
    assert np.isfinite(loss) and int(state.step) == 1 and bool(state.failed)
    assert np.array_equal(jax.device_get(state.params)["w"], after_one["w"])
    assert float(state.batch_stats["seen"]) == 1.0


def test_pretrained_of_another_architecture_is_refused(tmp_path):
    import pytest

    from vgjax.cli.config import load_config
    from vgjax.config import ConfigError
    from vgjax.models.io import save_model
    from vgjax.models.network import build_network, init_variables
    from vgjax.eval.evaluators import entry_settings
    from vgjax.train.init import initial_variables

    smoke = load_config(SMOKE)
    other = smoke.model.copy_and_resolve_references()
    with other.unlocked():
        other.resnet_width = 16
    save_model(tmp_path / "r18w16", other, init_variables(other, 0, (48, 64)), (48, 64))
    with pytest.raises(ConfigError, match="width 16.*width 8"):  # when the config loads
        load_config(SMOKE, [f"model.pretrained={tmp_path / 'r18w16'}"])
    cfg = load_config(SMOKE)
    cfg.model.pretrained = str(tmp_path / "r18w16")
    with pytest.raises(ConfigError, match="width 16.*width 8"):  # and when the run starts
        initial_variables(cfg, build_network(cfg.model), None)
    val = entry_settings(load_config(SMOKE, [
        "test.method=five_crops", "test.scales=[0.5,1]", "test.pca_dim=8"]), "val")
    assert (val.method, list(val.scales), val.pca_dim) == ("hard_resize", [1.0], 0)


def test_resumed_run_with_other_options_says_which(tmp_path, caplog):
    from vgjax.cli.config import load_config
    from vgjax.config import to_json
    from vgjax.train.run_dir import note_config_changes as _note_config_changes

    before = load_config(SMOKE)
    (tmp_path / "config.json").write_text(to_json(before))
    with caplog.at_level("WARNING"):
        _note_config_changes(tmp_path / "config.json", before)
        assert caplog.text == ""
        _note_config_changes(tmp_path / "config.json",
                             load_config(SMOKE, ["train.lr=0.5", "data.resize=(32,48)"]))
    assert "train.lr: 0.001 -> 0.5" in caplog.text and "data.resize" in caplog.text
