"""PyTorch checkpoints (``torch.save`` zip files) read as numpy arrays, without PyTorch.

A ``torch.save`` file since PyTorch 1.6 is a zip archive: ``<name>/data.pkl`` pickles the saved
object, whose tensors refer to raw storages ``<name>/data/<key>`` by persistent id and are
rebuilt by ``torch._utils._rebuild_tensor_v2(storage, offset, size, stride, ...)``.
:func:`read_state_dict` unpickles with only those names resolved (an ``OrderedDict``, tensors,
parameters; anything else is refused, so a checkpoint cannot run code) and returns each
tensor as a numpy array. A state dict nested under ``"state_dict"`` or ``"model"`` is
unwrapped. The pre-1.6 format is refused with a message.
"""

from __future__ import annotations

import collections
import os
import pickle
import zipfile

import numpy as np

from cxrkit.errors import InputError

_DTYPES = {"FloatStorage": np.float32, "DoubleStorage": np.float64, "HalfStorage": np.float16,
           "BFloat16Storage": None, "LongStorage": np.int64, "IntStorage": np.int32,
           "ShortStorage": np.int16, "CharStorage": np.int8, "ByteStorage": np.uint8,
           "BoolStorage": np.bool_}


class _StorageType:
    def __init__(self, name: str):
        self.name = name


def _rebuild_tensor(storage, offset, size, stride, *_):
    if not size:
        return np.array(storage[offset], copy=True)
    item = storage.itemsize
    view = np.lib.stride_tricks.as_strided(storage[offset:], shape=tuple(size),
                                           strides=tuple(s * item for s in stride))
    return np.array(view, copy=True)


def _rebuild_parameter(data, *_):
    return data


class _Unpickler(pickle.Unpickler):
    def __init__(self, handle, archive: zipfile.ZipFile, prefix: str, path: str):
        super().__init__(handle)
        self.archive, self.prefix, self.path = archive, prefix, path

    def find_class(self, module, name):
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return _rebuild_tensor
        if (module, name) == ("torch._utils", "_rebuild_parameter"):
            return _rebuild_parameter
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if module == "torch" and name in _DTYPES:
            return _StorageType(name)
        raise InputError(self.path, f"the checkpoint holds {module}.{name}, which is not part "
                                    "of a plain state dict")

    def persistent_load(self, pid):
        kind, storage_type, key, _location, _numel = pid
        if kind != "storage" or not isinstance(storage_type, _StorageType):
            raise InputError(self.path, f"unexpected storage reference {pid!r}")
        dtype = _DTYPES[storage_type.name]
        if dtype is None:
            raise InputError(self.path, f"{storage_type.name} tensors are not supported")
        data = self.archive.read(f"{self.prefix}/data/{key}")
        return np.frombuffer(data, dtype=dtype)


def read_state_dict(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """The tensors of a ``torch.save`` zip checkpoint, by name, as numpy arrays."""
    path = os.fspath(path)
    if not zipfile.is_zipfile(path):
        raise InputError(path, "not a PyTorch zip checkpoint (files saved by PyTorch before "
                               "1.6 are not supported: re-save it with a recent PyTorch)")
    with zipfile.ZipFile(path) as archive:
        pickles = [n for n in archive.namelist() if n.endswith("/data.pkl")]
        if len(pickles) != 1:
            raise InputError(path, "no single data.pkl in the archive")
        prefix = pickles[0][: -len("/data.pkl")]
        with archive.open(pickles[0]) as handle:
            try:
                loaded = _Unpickler(handle, archive, prefix, path).load()
            except (pickle.UnpicklingError, EOFError, KeyError, ValueError, TypeError) as err:
                raise InputError(path, f"the checkpoint does not unpickle: {err}") from None
    for key in ("state_dict", "model"):
        if isinstance(loaded, dict) and isinstance(loaded.get(key), dict):
            loaded = loaded[key]
    if not isinstance(loaded, dict) or not all(isinstance(v, np.ndarray)
                                               for v in loaded.values()):
        raise InputError(path, "the checkpoint is not a state dict of tensors")
    return {k.removeprefix("module."): v for k, v in loaded.items()}
