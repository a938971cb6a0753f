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
