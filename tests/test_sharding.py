"""`train.param_sharding=fsdp`: on two CPU devices the state's larger arrays are split over
the `data` axis, stay split through the jitted step, and the step computes what the
replicated one computes."""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parent.parent

SCRIPT = r"""
import sys
import jax, numpy as np
from jax.sharding import Mesh
from vgjax.cli.config import load_config
from vgjax.models.network import build_network, init_variables, trainable_mask
from vgjax.train import optim, sharding
from vgjax.train.losses import make_term
from vgjax.train.state import TrainState
from vgjax.train.step import make_train_step
assert len(jax.devices()) == 2
sharding.FSDP_MIN_SIZE = 256  # the smoke network's arrays are small
cfg = load_config(sys.argv[1], ["train.param_sharding=fsdp"])
net = build_network(cfg.model)
variables = init_variables(cfg.model, jax.random.key(0), (48, 64))
tx = optim.make_optimizer(cfg.train, trainable_mask(variables["params"], cfg.model))
images = np.random.default_rng(0).integers(0, 256, (2 * 5, 48, 64, 3), dtype=np.uint8)
mesh = Mesh(np.array(jax.devices()), ("data",))
out = {}
for mode in ("replicated", "fsdp"):
    fresh = TrainState.create(jax.tree.map(np.array, variables), tx)
    placement = sharding.state_shardings(mesh, fresh, mode)
    state = jax.device_put(fresh, placement)
    step = make_train_step(net, tx, [make_term("triplet", {"margin": 0.1})], 3, mesh,
                           state_sharding=sharding.shardings_of(state))
    losses = []
    for _ in range(3):
        state, metrics = step(state, images)
        losses.append(float(metrics["loss"]))
    split = [x for x in jax.tree.leaves(state.params) if "data" in tuple(x.sharding.spec)]
    out[mode] = (losses, len(split), len(jax.tree.leaves(state.params)),
                 np.concatenate([np.asarray(x).ravel() for x in jax.tree.leaves(state.params)]))
    if mode == "fsdp":
        moments = [x for x in jax.tree.leaves(state.opt_state)
                   if hasattr(x, "sharding") and "data" in tuple(x.sharding.spec)]
        out["moments_split"] = len(moments)
np.savez(sys.argv[2], loss_r=out["replicated"][0], loss_f=out["fsdp"][0],
         split_r=out["replicated"][1], split_f=out["fsdp"][1], leaves=out["fsdp"][2],
         params_r=out["replicated"][3], params_f=out["fsdp"][3],
         moments_split=out["moments_split"])
"""


def test_fsdp_splits_the_state_and_computes_the_replicated_step(tmp_path):
    script = tmp_path / "fsdp.py"
    script.write_text(SCRIPT)
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2",
               JAX_PLATFORMS="cpu", PYTHONPATH=str(REPO))
    proc = subprocess.run([sys.executable, str(script), str(REPO / "configs" / "smoke.py"),
                           str(tmp_path / "out.npz")], env=env, capture_output=True,
                          text=True, timeout=600, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    r = np.load(tmp_path / "out.npz")
    assert int(r["split_r"]) == 0 and int(r["split_f"]) >= 5  # split, and still split
    assert int(r["moments_split"]) >= 5  # the trained arrays' Adam moments are split too
    np.testing.assert_allclose(r["loss_f"], r["loss_r"], rtol=1e-5)
    np.testing.assert_allclose(r["params_f"], r["params_r"], rtol=1e-4, atol=1e-6)


def test_fsdp_rule_and_the_option_check():
    from jax.sharding import Mesh
    import jax
    from vgjax.cli.config import load_config
    from vgjax.config import ConfigError
    from vgjax.train import sharding
    mesh = Mesh(np.array(jax.devices()[:1]), ("data",))  # one device: nothing to split
    assert sharding.fsdp(mesh, (4096, 64)).spec == sharding.replicated(mesh, (1,)).spec
    with pytest.raises(ConfigError, match=r"^train.param_sharding: unknown value 'zero'"):
        load_config(REPO / "configs" / "smoke.py", ["train.param_sharding=zero"])
