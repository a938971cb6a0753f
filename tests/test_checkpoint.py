"""Checkpoints: one earlier copy of `last`; a damaged checkpoint never blocks a resume, a
checkpoint of another config is refused; a failed save leaves the previous one intact."""
import errno
import json
import shutil
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp
import pytest

from vgjax.config import load_config_file
from vgjax.train import checkpoint as ck
from vgjax.train.state import Progress, TrainState

# A failed orbax read leaves callbacks behind that complain once its event loop is closed:
# noise from orbax, not an error of the code under test.
pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")

REPO = Path(__file__).resolve().parents[1]
TX = optax.sgd(0.1, momentum=0.9)


def variables(width=4):
    return {"params": {"w": jnp.ones((3, width)), "b": jnp.zeros(width)}, "batch_stats": {}}


def abstract(width=4, tx=TX):
    return jax.eval_shape(lambda: TrainState.create(variables(width), tx))


@pytest.fixture(scope="module")
def model_cfg():
    return load_config_file(REPO / "configs" / "default.py").model


def _light_save_model(directory, model_cfg, variables, image_size=(480, 640)):
    """Stands in for `save_model` (the layout without the orbax write: faster)."""
    (Path(directory) / "variables").mkdir(parents=True)
    (Path(directory) / "model.json").write_text(json.dumps({"format": "vgjax-model"}))


@pytest.fixture
def run(tmp_path, model_cfg, monkeypatch):
    """A run folder and `save(name, step, epoch, round)` writing a tiny checkpoint."""
    monkeypatch.setattr(ck, "save_model", _light_save_model)
    def save(name, step, epoch=0, round_=0):
        state = TrainState.create(variables(), TX).replace(step=jnp.asarray(step, jnp.int32))
        state = state.replace(params={"w": jnp.full((3, 4), float(step)), "b": jnp.zeros(4)})
        return ck.save(tmp_path, name, state, Progress(epoch=epoch, round=round_), model_cfg,
                       model_variables={"params": {}, "batch_stats": {}})
    save.dir = tmp_path
    return save


def ckpt(run, name) -> Path:
    return run.dir / "checkpoints" / name


def step_of(path) -> int:
    return json.loads((path / "progress.json").read_text())["step"]


@pytest.fixture
def three(run):
    """best at step 1 (epoch 1), last.prev at step 2, last at step 3."""
    run("best", 1, epoch=1)
    run("last", 1, epoch=1)
    run("last", 2, epoch=1, round_=1)
    run("last", 3, epoch=1, round_=2)
    return run


def test_save_keeps_one_previous_last(three):
    names = sorted(p.name for p in (three.dir / "checkpoints").iterdir())
    assert names == ["best", "last", "last.prev"]
    assert step_of(ckpt(three, "last")) == 3 and step_of(ckpt(three, "last.prev")) == 2
    restored = ck.restore_latest(three.dir, abstract())
    assert restored.path == ckpt(three, "last") and restored.warnings == ()
    assert int(restored.state.step) == 3 and restored.progress.round == 2
    np.testing.assert_array_equal(restored.state.params["w"], np.full((3, 4), 3.0))
    assert restored.negative_cache.shape == (1, 1)
    # the existing API still works
    state, progress, _ = ck.restore(ck.find(three.dir, "last"), abstract())
    assert int(state.step) == 3 and progress.epoch == 1


def test_save_writes_the_model_dir(tmp_path, model_cfg):
    from vgjax.models.io import read_model_info
    state = TrainState.create(variables(), TX)
    ck.save(tmp_path, "last", state, Progress(), model_cfg,
            model_variables={"params": {"w": np.zeros(2)}, "batch_stats": {}})
    folder = tmp_path / "checkpoints" / "last"
    assert read_model_info(folder)["model"]
    restored = ck.restore_latest(tmp_path, abstract())
    assert restored.path == folder and int(restored.state.step) == 0


def test_every_process_runs_the_same_orbax_saves(tmp_path, model_cfg, monkeypatch):
    """Only process 0 writes the model dir, but orbax numbers each process's saves and pairs
    the processes' signals of a multi-process save by that number: the other processes run
    the same model save into a scratch folder, so the numbers never drift apart (they did,
    and two-process runs raced on the next checkpoint)."""
    sync = pytest.importorskip("orbax.checkpoint._src.futures.synchronization")
    state = TrainState.create(variables(), TX)
    kwargs = dict(model_variables={"params": {"w": np.zeros(2)}, "batch_stats": {}})

    def saves_counted(run_dir):
        before = int(sync.OperationIdGenerator.get_current_operation_id())
        ck.save(run_dir, "last", state, Progress(), model_cfg, **kwargs)
        return int(sync.OperationIdGenerator.get_current_operation_id()) - before

    primary = saves_counted(tmp_path / "p0")
    monkeypatch.setattr(ck.multihost, "is_primary", lambda: False)
    assert saves_counted(tmp_path / "p1") == primary >= 2
    assert not (tmp_path / "p1" / "checkpoints" / "last").exists()  # process 0 writes it


def test_no_checkpoint_is_a_new_run(tmp_path):
    assert ck.restore_latest(tmp_path, abstract()) is None
    assert ck.find(tmp_path, "last") is None


def damage_progress(path):
    (path / "progress.json").write_text('{"epoch": 1, "rou')


def delete_state(path):
    shutil.rmtree(path / "state")


def truncate_largest_state_file(path):
    files = sorted((f.stat().st_size, f) for f in (path / "state").rglob("*") if f.is_file())
    largest = files[-1][1]
    largest.write_bytes(largest.read_bytes()[: largest.stat().st_size // 2])


def truncate_array_files(path):
    """Every file of the stored arrays (all but the tree's _METADATA) cut in half."""
    for f in (path / "state").rglob("*"):
        if f.is_file() and f.name != "_METADATA":
            f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])


def delete_model(path):
    shutil.rmtree(path / "model")


@pytest.mark.parametrize("damage, file", [
    (damage_progress, "last/progress.json is not valid JSON"),
    (delete_state, "last/state is missing"),
    (truncate_largest_state_file, "last/state"),
    (truncate_array_files, "last/state cannot be restored"),
    (delete_model, "last/model/model.json is missing"),
])
def test_damaged_last_falls_back_to_prev(three, damage, file, caplog):
    damage(ckpt(three, "last"))
    restored = ck.restore_latest(three.dir, abstract())
    assert restored.path == ckpt(three, "last.prev") and int(restored.state.step) == 2
    (warning,) = restored.warnings
    assert "\n" not in warning and file in warning
    assert f"resuming from {ckpt(three, 'last.prev')}" in warning
    assert "the last saved mining round is lost" in warning
    assert warning in caplog.text
    with pytest.raises(ck.CheckpointDamagedError, match=file.split(" ")[0]):
        ck.restore(ckpt(three, "last"), abstract())


def test_last_and_prev_damaged_fall_back_to_best(three):
    damage_progress(ckpt(three, "last"))
    truncate_largest_state_file(ckpt(three, "last.prev"))
    restored = ck.restore_latest(three.dir, abstract())
    assert restored.path == ckpt(three, "best") and int(restored.state.step) == 1
    assert len(restored.warnings) == 2
    assert "last/progress.json" in restored.warnings[0]
    assert "last.prev/state" in restored.warnings[1]
    assert all(f"resuming from {ckpt(three, 'best')} (epoch 1" in w and
               "the mining rounds since are lost and will be redone" in w
               for w in restored.warnings)


def test_interrupted_save_leaves_prev(three):
    shutil.rmtree(ckpt(three, "last"))  # as a crash between the renames leaves it
    assert ck.find(three.dir, "last") == ckpt(three, "last.prev")
    restored = ck.restore_latest(three.dir, abstract())
    assert restored.path == ckpt(three, "last.prev")
    assert "last is missing" in restored.warnings[0]


def test_all_damaged_is_a_clear_error(three):
    damage_progress(ckpt(three, "last"))
    delete_state(ckpt(three, "last.prev"))
    damage_progress(ckpt(three, "best"))
    with pytest.raises(ck.CheckpointError) as e:
        ck.restore_latest(three.dir, abstract())
    message = str(e.value)
    assert "\n" not in message
    for name in ("last/progress.json", "last.prev/state", "best/progress.json"):
        assert name in message
    assert f"Delete {three.dir / 'checkpoints'} to start the run over" in message
    assert "another --workdir" in message


@pytest.mark.parametrize("target, what", [
    (lambda: abstract(width=5), "is (3, 4) there, (3, 5) here"),
    (lambda: abstract(tx=optax.adam(0.1)), "only here"),
])
def test_other_config_is_a_mismatch_not_a_fallback(three, target, what):
    damage_progress(ckpt(three, "last"))  # last.prev reads fine: its mismatch stops the resume
    with pytest.raises(ck.CheckpointMismatchError) as e:
        ck.restore_latest(three.dir, target())
    message = str(e.value)
    assert f"checkpoint {ckpt(three, 'last.prev')} was written by a run with another " \
           f"model/optimizer" in message
    assert what in message and "use a new --workdir or the original config" in message
    with pytest.raises(ck.CheckpointMismatchError):
        ck.restore(ckpt(three, "best"), target())


def test_negative_cache_shape_checked(run):
    run("last", 1)
    with pytest.raises(ck.CheckpointMismatchError, match="negative_cache is"):
        ck.restore_latest(run.dir, abstract(), negative_cache_shape=(5, 3))


def _no_space(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


@pytest.mark.parametrize("where", ["progress", "orbax"])
def test_full_disk_leaves_previous_checkpoint(three, monkeypatch, where):
    if where == "progress":
        monkeypatch.setattr(ck, "_write_json", _no_space)
    else:
        monkeypatch.setattr(ocp.StandardCheckpointer, "save", _no_space)
    with pytest.raises(OSError) as e:
        three("last", 4, epoch=2)
    assert e.value.errno == errno.ENOSPC
    monkeypatch.undo()
    assert not (three.dir / "checkpoints" / ".last.tmp").exists()
    assert step_of(ckpt(three, "last")) == 3 and step_of(ckpt(three, "last.prev")) == 2
    restored = ck.restore_latest(three.dir, abstract())
    assert restored.path == ckpt(three, "last") and restored.warnings == ()


def test_saving_over_a_damaged_last_keeps_the_good_prev(three):
    damage_progress(ckpt(three, "last"))
    three("last", 4, epoch=2)
    assert step_of(ckpt(three, "last")) == 4 and step_of(ckpt(three, "last.prev")) == 2
