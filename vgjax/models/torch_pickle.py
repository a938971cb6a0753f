"""Torch checkpoint files (`torch.save`) read without torch, as numpy arrays.

    obj = load("resnet18-f37072fd.pth")   # e.g. {name: Tensor (an np.ndarray)} for a state_dict

Both of torch's formats are understood:
- the zip archive (torch >= 1.6): `<archive>/data.pkl` is the pickle, `<archive>/data/<key>`
  the raw bytes of each storage, `<archive>/byteorder` their byte order;
- the legacy stream (before 1.6): a pickled magic number, protocol version (1001) and
  sys_info (byte order), the main pickle, a pickled list of storage keys, then each
  storage as an 8-byte little-endian element count followed by its bytes.

In the main pickle a tensor is `torch._utils._rebuild_tensor_v2(storage, offset, size,
stride, ...)`, the storage a persistent id `('storage', torch.<Type>Storage, key, location,
numel[, view])`. The unpickler is restricted as `torch.load(weights_only=True)` is: it
resolves only OrderedDict, the tensor and parameter rebuild functions, the storage types and
the numpy globals that a pickled array or scalar needs; any other global (a class, a
function that could run code) is refused before anything is called. A damaged or truncated
file gives a one-line `CheckpointError` naming it.
"""
from __future__ import annotations

import codecs
import collections
import io
import os
import pickle
import struct
import zipfile
from typing import Any

import ml_dtypes
import numpy as np

from vgjax.safe_npy import numpy_globals

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL = 1001
ZIP_MAGIC = b"PK\x03\x04"

STORAGE_DTYPES = {
    "FloatStorage": np.float32, "DoubleStorage": np.float64, "HalfStorage": np.float16,
    "BFloat16Storage": ml_dtypes.bfloat16, "LongStorage": np.int64, "IntStorage": np.int32,
    "ShortStorage": np.int16, "CharStorage": np.int8, "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
}


class CheckpointError(ValueError):
    """A checkpoint that cannot be read or converted; the message names the file or keys."""


class Tensor(np.ndarray):
    """An array that was a torch tensor in the file (numpy arrays stored beside tensors,
    e.g. a checkpoint's `recalls`, stay plain `np.ndarray`)."""


class _Refused(Exception):
    """Raised by the unpickler for a global that a weights-only load does not resolve."""


class _StorageType:
    def __init__(self, name: str):
        self.name = name
        self.dtype = np.dtype(STORAGE_DTYPES[name])


class _Storage:
    """A storage's elements (1-D), read when the file reaches them (legacy format: after
    the main pickle)."""

    def __init__(self, key: str, dtype: np.dtype, numel: int):
        self.key, self.dtype, self.numel = key, dtype, numel
        self.array: np.ndarray | None = None

    def elements(self) -> np.ndarray:
        if self.array is None:
            raise ValueError(f"storage {self.key!r} has no data in the file")
        return self.array


class _StorageView:
    """A legacy view of a storage: `size` elements from `offset` of `root`."""

    def __init__(self, root: _Storage, offset: int, size: int):
        self.root, self.offset, self.size = root, offset, size
        self.key = f"{root.key}[{offset}:{offset + size}]"

    def elements(self) -> np.ndarray:
        whole = self.root.elements()
        if self.offset < 0 or self.offset + self.size > whole.size:
            raise ValueError(f"storage view {self.key} lies outside its storage "
                             f"({whole.size} elements)")
        return whole[self.offset:self.offset + self.size]


class _LazyTensor:
    """A tensor whose storage bytes may not have been read yet."""

    def __init__(self, storage, offset, size, stride):
        if not isinstance(storage, (_Storage, _StorageView)):
            raise ValueError(f"a tensor rebuilt from {type(storage).__name__}, not a storage")
        if not (isinstance(offset, int) and all(isinstance(v, int) for v in (*size, *stride))
                and len(size) == len(stride)):
            raise ValueError(f"a tensor with a malformed layout: offset {offset!r}, size "
                             f"{size!r}, stride {stride!r}")
        self.storage, self.offset = storage, offset
        self.size, self.stride = tuple(size), tuple(stride)

    def resolve(self) -> Tensor:
        flat = self.storage.elements()
        if self.offset < 0 or any(v < 0 for v in (*self.size, *self.stride)):
            raise ValueError(f"a tensor of storage {self.storage.key!r} with a negative "
                             f"offset, size or stride")
        if 0 in self.size:
            return np.zeros(self.size, flat.dtype).view(Tensor)
        last = self.offset + sum((n - 1) * s for n, s in zip(self.size, self.stride))
        if last >= flat.size:
            raise ValueError(f"a tensor of shape {self.size} reads past the end of storage "
                             f"{self.storage.key!r} ({flat.size} elements)")
        view = np.lib.stride_tricks.as_strided(
            flat[self.offset:], self.size, [s * flat.itemsize for s in self.stride],
            writeable=False)
        return np.array(view).view(Tensor)


def _rebuild_tensor(storage, storage_offset, size, stride):
    return _LazyTensor(storage, storage_offset, size, stride)


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False,
                       backward_hooks=None, metadata=None):
    return _LazyTensor(storage, storage_offset, size, stride)


def _rebuild_parameter(data, requires_grad=False, backward_hooks=None):
    return data


def _rebuild_parameter_with_state(data, requires_grad, backward_hooks, state):
    return data


def _latin1_encode(text, encoding="latin1"):
    """`_codecs.encode` as protocol-2 pickles use it for bytes (numpy's array data)."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise _Refused("_codecs.encode other than of a str to latin1")
    return codecs.encode(text, "latin1")


ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter_with_state,
    ("_codecs", "encode"): _latin1_encode,
    **{("torch", name): _StorageType(name) for name in STORAGE_DTYPES},
    **numpy_globals(),
}


class _Unpickler(pickle.Unpickler):
    """Resolves only ALLOWED_GLOBALS; storages come from `storage(pid)`."""

    def __init__(self, file, storage):
        super().__init__(file, encoding="utf-8")
        self._storage = storage

    def find_class(self, module, name):
        found = ALLOWED_GLOBALS.get((module, name))
        if found is None:
            raise _Refused(f"{module}.{name}")
        return found

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) in (5, 6) and pid[0] == "storage"
                and isinstance(pid[1], _StorageType) and isinstance(pid[4], int)
                and pid[4] >= 0):
            raise ValueError(f"unexpected persistent id {str(pid)[:80]}")
        return self._storage(pid)


def _resolve(obj):
    """`obj` with every _LazyTensor replaced by its array (containers rebuilt)."""
    if isinstance(obj, _LazyTensor):
        return obj.resolve()
    if isinstance(obj, dict):
        out = type(obj)() if isinstance(obj, collections.OrderedDict) else {}
        for k, v in obj.items():
            out[k] = _resolve(v)
        return out
    if isinstance(obj, list):
        return [_resolve(v) for v in obj]
    if isinstance(obj, tuple):
        return tuple(_resolve(v) for v in obj)
    return obj


def _read_zip(f) -> Any:
    with zipfile.ZipFile(f) as archive:
        names = archive.namelist()
        pickles = [n for n in names if n.endswith("/data.pkl") and n.count("/") == 1]
        if len(pickles) != 1:
            raise ValueError("a zip archive without one <archive>/data.pkl")
        prefix = pickles[0][:-len("data.pkl")]
        order = "little"
        if prefix + "byteorder" in names:
            order = archive.read(prefix + "byteorder").decode("ascii", "replace").strip()
        if order not in ("little", "big"):
            raise ValueError(f"unknown byte order {order!r}")
        storages: dict[str, _Storage] = {}

        def storage(pid):
            _, storage_type, key, _location, numel = pid[:5]
            key = str(key)
            if key not in storages:
                dtype = storage_type.dtype.newbyteorder("<" if order == "little" else ">")
                entry = f"{prefix}data/{key}"
                if entry not in names:
                    raise ValueError(f"storage {key!r} is missing from the archive")
                data = archive.read(entry)
                if len(data) < numel * dtype.itemsize:
                    raise ValueError(f"storage {key!r} has {len(data)} bytes, its "
                                     f"{numel} elements need {numel * dtype.itemsize}")
                s = _Storage(key, dtype, numel)
                s.array = np.frombuffer(data, dtype, numel).astype(dtype.newbyteorder("="))
                storages[key] = s
            return storages[key]

        obj = _Unpickler(io.BytesIO(archive.read(pickles[0])), storage).load()
    return _resolve(obj)


def _no_storage(pid):
    raise ValueError("a storage in the header of a legacy file")


def _read_legacy(f) -> Any:
    def header():
        return _Unpickler(f, _no_storage).load()

    magic = header()
    if magic != LEGACY_MAGIC:
        raise ValueError("no torch magic number at the start: not a file torch.save wrote")
    protocol = header()
    if protocol != LEGACY_PROTOCOL:
        raise ValueError(f"legacy protocol version {protocol!r} (readable: "
                         f"{LEGACY_PROTOCOL})")
    sys_info = header()
    little = bool(sys_info.get("little_endian", True)) if isinstance(sys_info, dict) else True
    storages: dict[str, _Storage] = {}
    views: dict[str, _StorageView] = {}

    def storage(pid):
        if len(pid) != 6:
            raise ValueError(f"unexpected persistent id {str(pid)[:80]}")
        _, storage_type, key, _location, numel, view = pid
        key = str(key)
        root = storages.setdefault(key, _Storage(key, storage_type.dtype, numel))
        if view is None:
            return root
        view_key, offset, size = view
        return views.setdefault(str(view_key), _StorageView(root, int(offset), int(size)))

    obj = _Unpickler(f, storage).load()
    keys = _Unpickler(f, storage).load()
    if not isinstance(keys, list) or set(map(str, keys)) != set(storages):
        raise ValueError("the list of storage keys does not match the storages of the pickle")
    for key in map(str, keys):
        s = storages[key]
        dtype = s.dtype.newbyteorder("<" if little else ">")
        head = f.read(8)
        if len(head) < 8:
            raise ValueError(f"truncated: the file ends before storage {key!r}")
        count = struct.unpack("<q" if little else ">q", head)[0]
        if count != s.numel:
            raise ValueError(f"storage {key!r} holds {count} elements, its tensors say "
                             f"{s.numel}")
        data = f.read(count * dtype.itemsize)
        if len(data) < count * dtype.itemsize:
            raise ValueError(f"truncated: storage {key!r} has {len(data)} of its "
                             f"{count * dtype.itemsize} bytes")
        s.array = np.frombuffer(data, dtype, count).astype(dtype.newbyteorder("="))
    return _resolve(obj)


def load(path: str | os.PathLike) -> Any:
    """The object `torch.save` wrote to `path`, every tensor as a `Tensor` (an
    np.ndarray of the tensor's dtype and shape, contiguous). Raises FileNotFoundError,
    or CheckpointError (one line naming the file) for a damaged file or a global that a
    weights-only load refuses."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: checkpoint file not found")
    try:
        with open(path, "rb") as f:
            if f.read(4) == ZIP_MAGIC:
                f.seek(0)
                try:
                    return _read_zip(f)
                except zipfile.BadZipFile as e:
                    raise ValueError(f"a damaged zip archive ({e})") from None
            f.seek(0)
            return _read_legacy(f)
    except _Refused as e:
        raise CheckpointError(
            f"{path}: refused: the pickle asks for {e}, which a weights-only load does not "
            "run (only tensors, numpy arrays and plain containers are read, as with "
            "torch.load(weights_only=True))") from None
    except (pickle.UnpicklingError, EOFError, zipfile.BadZipFile, ValueError, TypeError,
            KeyError, IndexError, AttributeError, struct.error, OverflowError,
            MemoryError, UnicodeDecodeError) as e:
        reason = " ".join(str(e).split()) or type(e).__name__
        raise CheckpointError(f"{path}: not a readable torch checkpoint (damaged or "
                              f"truncated?): {reason}") from None
