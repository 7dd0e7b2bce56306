"""Read a PyTorch ``state_dict`` file into numpy arrays, without importing torch.

A ``torch.save`` file holds a pickle whose tensors point at *storages* (flat typed buffers) through
pickle's persistent ids. Two on-disk layouts exist and both are read here:

- **zip** (torch >= 1.6, the default): ``<root>/data.pkl`` is the pickle, storage ``k`` is the raw
  member ``<root>/data/k``, ``<root>/byteorder`` says ``little`` or ``big`` (little when absent);
  a storage's persistent id is ``('storage', StorageType, key, location, numel)``.
- **legacy** (older torch, or ``_use_new_zipfile_serialization=False``): five pickles in a row
  (magic number, protocol version 1001, system info with ``little_endian``, the object, the list of
  storage keys in file order), then for each listed key an int64 element count and the raw bytes;
  a storage's persistent id is ``('storage', StorageType, key, location, numel, view)``.

A tensor is rebuilt by ``torch._utils._rebuild_tensor_v2(storage, offset, size, stride, ...)``:
element ``(i_0, ..., i_n)`` is ``storage[offset + sum_d i_d * stride_d]`` (strides in elements, so
a channels-last or transposed tensor reads correctly). Each tensor comes back as its own C-contiguous
numpy array with the tensor's shape and dtype (bfloat16 as ``ml_dtypes.bfloat16``).

Only the globals a tensor state_dict needs are resolved (``collections.OrderedDict``, the typed
storage classes, ``_rebuild_tensor_v2``); any other global means the file is not a plain state_dict
(a pickled ``nn.Module``, optimizer objects, ...) and is refused rather than executed.
"""
from __future__ import annotations

import collections
import dataclasses
import pickle
import zipfile
from pathlib import Path

import ml_dtypes
import numpy as np

from lossmooth.errors import ConfigError

LEGACY_MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL_VERSION = 1001

STORAGE_DTYPES = {
    "DoubleStorage": np.float64, "FloatStorage": np.float32, "HalfStorage": np.float16,
    "BFloat16Storage": ml_dtypes.bfloat16, "LongStorage": np.int64, "IntStorage": np.int32,
    "ShortStorage": np.int16, "CharStorage": np.int8, "ByteStorage": np.uint8, "BoolStorage": np.bool_,
}


@dataclasses.dataclass(frozen=True)
class _StorageType:
    dtype: np.dtype


@dataclasses.dataclass(frozen=True)
class _TensorRef:
    """A tensor whose storage bytes may not have been read yet (legacy files store them last)."""

    key: str
    offset: int
    size: tuple[int, ...]
    stride: tuple[int, ...]


def _rebuild_tensor_v2(storage_key, storage_offset, size, stride, requires_grad=False, backward_hooks=None,
                       metadata=None):
    return _TensorRef(storage_key, int(storage_offset), tuple(size), tuple(stride))


class _StateDictUnpickler(pickle.Unpickler):
    """Unpickles a state_dict into ``{name: _TensorRef}``; ``storage_dtypes`` maps storage keys to dtypes."""

    def __init__(self, file, path: Path):
        super().__init__(file)
        self.path = path
        self.storage_dtypes: dict[str, np.dtype] = {}

    def find_class(self, module, name):
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return _rebuild_tensor_v2
        if module == "torch" and name in STORAGE_DTYPES:
            return _StorageType(np.dtype(STORAGE_DTYPES[name]))
        raise ConfigError(f"{self.path}: holds {module}.{name}, not a plain tensor state_dict; "
                          "save it with torch.save(model.state_dict(), path)")

    def persistent_load(self, pid):
        typename, storage_type, key, _location, _numel, *view = pid
        if typename != "storage" or any(v is not None for v in view):
            raise ConfigError(f"{self.path}: uses a storage view or persistent id {typename!r} this "
                              "reader does not handle; re-save it with a recent torch.save")
        self.storage_dtypes[str(key)] = storage_type.dtype
        return str(key)


def _as_array(ref: _TensorRef, flat: np.ndarray) -> np.ndarray:
    item = flat.dtype.itemsize
    view = np.lib.stride_tricks.as_strided(flat[ref.offset:], shape=ref.size,
                                           strides=tuple(s * item for s in ref.stride))
    return np.array(view, order="C", copy=True)


def _native(raw: bytes, dtype: np.dtype, little: bool) -> np.ndarray:
    """Decode a storage's bytes written in the file's byte order into a native-order array."""
    return np.frombuffer(raw, dtype=dtype.newbyteorder("<" if little else ">")).astype(dtype)


def _read_zip(path: Path):
    with zipfile.ZipFile(path) as zf:
        names = zf.namelist()
        pickles = [n for n in names if n.endswith("/data.pkl")]
        if len(pickles) != 1:
            raise ConfigError(f"{path}: a zip without exactly one */data.pkl is not a torch.save file")
        root = pickles[0][: -len("data.pkl")]
        little = (zf.read(root + "byteorder").decode().strip() != "big"
                  if root + "byteorder" in names else True)
        with zf.open(pickles[0]) as f:
            unpickler = _StateDictUnpickler(f, path)
            obj = unpickler.load()
        storages = {key: _native(zf.read(f"{root}data/{key}"), dtype, little)
                    for key, dtype in unpickler.storage_dtypes.items()}
    return obj, storages


def _read_legacy(path: Path):
    with open(path, "rb") as f:
        try:
            magic = pickle.load(f)
        except Exception:
            magic = None
        if magic != LEGACY_MAGIC_NUMBER:
            raise ConfigError(f"{path}: not a torch.save file (neither a zip nor a legacy torch pickle)")
        if pickle.load(f) != LEGACY_PROTOCOL_VERSION:
            raise ConfigError(f"{path}: legacy torch file with an unknown protocol version")
        little = pickle.load(f).get("little_endian", True)
        unpickler = _StateDictUnpickler(f, path)
        obj = unpickler.load()
        storages = {}
        for key in map(str, pickle.load(f)):
            # each storage: its int64 element count, then the elements, in the file's byte order
            dtype = unpickler.storage_dtypes[key]
            numel = int(np.frombuffer(f.read(8), dtype="<i8" if little else ">i8")[0])
            storages[key] = _native(f.read(numel * dtype.itemsize), dtype, little)
    return obj, storages


def load_torch_state_dict(path) -> dict[str, np.ndarray]:
    """The ``{name: numpy array}`` mapping saved by ``torch.save(model.state_dict(), path)``.

    Raises :class:`ConfigError` naming the file when it is missing or is not a tensor state_dict.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"weights file {path} does not exist; pass the path of a torch state_dict (.pth)")
    obj, storages = _read_zip(path) if zipfile.is_zipfile(path) else _read_legacy(path)
    if not isinstance(obj, dict) or not all(isinstance(v, _TensorRef) for v in obj.values()):
        raise ConfigError(f"{path}: not a flat {{name: tensor}} state_dict; "
                          "save it with torch.save(model.state_dict(), path)")
    return {name: _as_array(ref, storages[ref.key]) for name, ref in obj.items()}
