"""Untrusted files: a checkpoint carrying pickled code is refused without running it, and
vgjax's own files (.npy descriptors, decoded caches, predictions) never unpickle."""
import os

import numpy as np
import pytest
import torch

from vgjax.eval.store import DescriptorStore
from vgjax.models.convert import CheckpointError, load_torch_checkpoint


class Payload:
    """Unpickling this runs os.system: it would create the marker file."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_pickled_code_in_a_checkpoint_is_refused_and_never_runs(tmp_path):
    marker = tmp_path / "owned"
    torch.save({"model_state_dict": {"conv1.weight": torch.zeros(1)},
                "extra": Payload(marker)}, tmp_path / "evil.pth")
    with pytest.raises(CheckpointError, match="weights_only"):
        load_torch_checkpoint(tmp_path / "evil.pth")
    assert not marker.exists()


def test_vgjax_files_never_unpickle(tmp_path):
    marker = tmp_path / "owned"
    path = tmp_path / "descriptors.npy"
    np.save(path, np.array([Payload(marker)], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError):
        DescriptorStore.open(path)
    with open(tmp_path / "predictions.npz", "wb") as f:
        np.savez(f, topk_indices=np.array([Payload(marker)], dtype=object))
    from vgjax.eval.search import recalls_from_predictions
    with pytest.raises(ValueError):
        recalls_from_predictions(tmp_path / "predictions.npz")
    assert not marker.exists()


def test_ground_truth_object_arrays_load_without_running_pickled_code(tmp_path):
    """A ragged ground truth (`<name>_gt.npy`, MSLS's pIdx) is read through NumPy's
    array-rebuilding names only; a file smuggling os.system is refused by name."""
    from vgjax.data.format import DatasetFormatError
    from vgjax.data.readers.npy_gt import read_ground_truth
    from vgjax.safe_npy import load_npy
    gt = np.empty(3, object)
    gt[:] = [np.array([0, 2]), np.array([], np.int64), np.array([1])]
    np.save(tmp_path / "x_gt.npy", gt, allow_pickle=True)
    back = load_npy(tmp_path / "x_gt.npy", allow_objects=True)
    assert back.dtype == object and [list(a) for a in back] == [[0, 2], [], [1]]
    np.testing.assert_array_equal(load_npy(tmp_path / "x_gt.npy", allow_objects=True)[0],
                                  [0, 2])
    marker = tmp_path / "owned"
    evil = np.empty(2, object)
    evil[:] = [np.array([0]), Payload(marker)]
    np.save(tmp_path / "evil_gt.npy", evil, allow_pickle=True)
    with pytest.raises(DatasetFormatError, match=r"evil_gt.npy: .*posix.system|"
                                                 r"evil_gt.npy: .*os.system"):
        read_ground_truth(tmp_path / "evil_gt.npy", 2, 3)
    assert not marker.exists()
