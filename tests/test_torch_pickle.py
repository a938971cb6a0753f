"""Reading torch checkpoint files without torch: both formats give what torch.load gives;
damaged files and pickled code are one-line CheckpointErrors."""
from __future__ import annotations

import collections
import io
import os
import pickle
import shutil
import struct

import numpy as np
import pytest
import torch

from vgjax.models import torch_pickle
from vgjax.models.pretrained import locate_imagenet_weights
from vgjax.models.torch_pickle import CheckpointError, Tensor


def as_numpy(obj):
    """torch.load's result with every tensor as a numpy array (bfloat16 as float32)."""
    if isinstance(obj, torch.Tensor):
        t = obj.detach()
        return t.float().numpy() if t.dtype == torch.bfloat16 else t.numpy()
    if isinstance(obj, dict):
        return {k: as_numpy(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(as_numpy(v) for v in obj)
    return obj


def assert_same(ours, theirs, where="root"):
    if isinstance(theirs, np.ndarray):
        assert isinstance(ours, np.ndarray), where
        if ours.dtype.name == "bfloat16":
            ours = ours.astype(np.float32)
        assert ours.dtype == theirs.dtype and ours.shape == theirs.shape, where
        np.testing.assert_array_equal(ours, theirs, err_msg=where)
    elif isinstance(theirs, dict):
        assert list(ours) == list(theirs), where
        for k in theirs:
            assert_same(ours[k], theirs[k], f"{where}.{k}")
    elif isinstance(theirs, (list, tuple)):
        assert type(ours) is type(theirs) and len(ours) == len(theirs), where
        for i, (a, b) in enumerate(zip(ours, theirs)):
            assert_same(a, b, f"{where}[{i}]")
    else:
        assert ours == theirs and type(ours) is type(theirs), where


def sample_checkpoint():
    base = torch.arange(24, dtype=torch.float32).reshape(4, 6)
    return {
        "model_state_dict": collections.OrderedDict([
            ("transposed", base.t()),                    # strides (1, 6)
            ("view", base.reshape(-1)[5:11]),            # offset into a shared storage
            ("param", torch.nn.Parameter(torch.linspace(-1, 1, 7))),
            ("half", torch.tensor([1.5, -2.25], dtype=torch.float16)),
            ("bf16", torch.tensor([3.0, 0.1], dtype=torch.bfloat16)),
            ("double", torch.tensor([[1e-300]], dtype=torch.float64)),
            ("tracked", torch.tensor(7)),               # 0-d int64
            ("mask", torch.tensor([True, False])),
            ("empty", torch.zeros(0, 3)),
        ]),
        "recalls": np.array([80.5, 90.25]), "best_r5": np.float64(90.25), "epoch_num": 3,
        "nested": [(1, "a"), {"lr": 1e-5}],
    }


@pytest.mark.parametrize("zip_format", [True, False], ids=["zip", "legacy"])
def test_small_checkpoint_reads_as_torch_load_does(tmp_path, zip_format):
    obj = sample_checkpoint()
    path = tmp_path / "ckpt.pth"
    torch.save(obj, path, _use_new_zipfile_serialization=zip_format)
    ours = torch_pickle.load(path)
    assert_same(ours, as_numpy(torch.load(path, weights_only=False)))  # written here
    sd = ours["model_state_dict"]
    assert all(isinstance(v, Tensor) for v in sd.values())
    assert not isinstance(ours["recalls"], Tensor) and sd["bf16"].dtype.name == "bfloat16"


def test_bundled_legacy_file_reads_as_torch_load_does():
    path = locate_imagenet_weights("efficientnet_lite0")
    with open(path, "rb") as f:
        assert f.read(2) == b"\x80\x02" and pickle.load(f) == torch_pickle.LEGACY_MAGIC
    ours = torch_pickle.load(path)
    theirs = as_numpy(torch.load(path, weights_only=True))
    assert len(theirs) == 296
    assert_same(ours, theirs)


def test_damaged_files_are_one_line_errors_naming_them(tmp_path):
    bundled = locate_imagenet_weights("efficientnet_lite0")
    data = bundled.read_bytes()
    torch.save(sample_checkpoint(), tmp_path / "zip.pth")
    zipped = (tmp_path / "zip.pth").read_bytes()
    cases = {"cut_in_storages.pth": data[:len(data) // 2],
             "cut_in_pickle.pth": data[:3000],
             "cut_zip.pth": zipped[:len(zipped) - 200],
             "empty.pth": b"",
             "text.pth": b"not a checkpoint at all"}
    for name, content in cases.items():
        (tmp_path / name).write_bytes(content)
        with pytest.raises(CheckpointError) as e:
            torch_pickle.load(tmp_path / name)
        message = str(e.value)
        assert "\n" not in message and str(tmp_path / name) in message, message
    with pytest.raises(FileNotFoundError, match="missing.pth"):
        torch_pickle.load(tmp_path / "missing.pth")
    shutil.copy(bundled, tmp_path / "intact.pth")  # a copy reads
    assert len(torch_pickle.load(tmp_path / "intact.pth")) == 296


class Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("zip_format", [True, False], ids=["zip", "legacy"])
def test_pickled_code_is_refused_without_running(tmp_path, zip_format):
    marker = tmp_path / "owned"
    torch.save({"w": torch.zeros(2), "extra": Payload(marker)}, tmp_path / "evil.pth",
               _use_new_zipfile_serialization=zip_format)
    with pytest.raises(CheckpointError, match=r"evil\.pth: refused: .*(posix|os)\.system.*"
                                              r"weights_only"):
        torch_pickle.load(tmp_path / "evil.pth")
    assert not marker.exists()


class _StorageRef:
    pass


class _OutOfBounds:
    """Pickles as a tensor of 10 elements on a storage of 4."""

    def __init__(self, storage):
        self.storage = storage

    def __reduce__(self):
        return (torch._utils._rebuild_tensor_v2,
                (self.storage, 0, (10,), (1,), False, collections.OrderedDict()))


def test_a_tensor_reading_past_its_storage_is_refused(tmp_path):
    """A crafted legacy file whose tensor layout runs past the end of its storage."""
    storage = _StorageRef()

    class Writer(pickle.Pickler):
        def persistent_id(self, obj):
            if obj is storage:
                return ("storage", torch.FloatStorage, "0", "cpu", 4, None)
            return None

    buf = io.BytesIO()
    for header in (torch_pickle.LEGACY_MAGIC, torch_pickle.LEGACY_PROTOCOL,
                   {"protocol_version": 1001, "little_endian": True}):
        pickle.dump(header, buf, protocol=2)
    Writer(buf, protocol=2).dump({"w": _OutOfBounds(storage)})
    pickle.dump(["0"], buf, protocol=2)
    buf.write(struct.pack("<q", 4) + np.arange(4, dtype=np.float32).tobytes())
    (tmp_path / "crafted.pth").write_bytes(buf.getvalue())
    with pytest.raises(CheckpointError, match=r"crafted\.pth: .*past the end of storage"):
        torch_pickle.load(tmp_path / "crafted.pth")
