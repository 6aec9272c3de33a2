"""Readers (and a tiny writer) for the on-disk formats the loaders understand.

* IDX (LeCun's MNIST format), plain or gzip-compressed, parsed here with numpy.
* Python pickles of the classic MNIST ``mnist.pkl.gz`` and of the CIFAR
  "python version" batches, read through a restricted unpickler that only
  rebuilds numpy arrays and plain containers (no arbitrary code runs).
"""

from __future__ import annotations

import gzip
import os
import pickle
import struct
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from deepspan.errors import InputError

__all__ = ["read_idx", "idx_bytes", "safe_pickle_load", "open_maybe_gzip"]

# IDX type codes -> big-endian numpy dtypes (http://yann.lecun.com/exdb/mnist/, "THE IDX FILE FORMAT").
_IDX_DTYPES = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_IDX_CODES = {v.newbyteorder("="): k for k, v in _IDX_DTYPES.items()}


def open_maybe_gzip(path: str | os.PathLike) -> BinaryIO:
    """Open ``path`` for binary reading, transparently un-gzipping it (by magic bytes, not name)."""
    path = Path(path)
    with open(path, "rb") as f:
        magic = f.read(2)
    if magic == b"\x1f\x8b":
        return gzip.open(path, "rb")  # type: ignore[return-value]
    return open(path, "rb")


def read_idx(source: str | os.PathLike | bytes) -> np.ndarray:
    """Parse an IDX file (optionally gzip-compressed) into a native-endian numpy array.

    Layout: two zero bytes, a type code (0x08 ubyte, 0x09 byte, 0x0B short,
    0x0C int, 0x0D float, 0x0E double), the number of dimensions n, then n
    big-endian uint32 sizes, then the data in C order, big-endian.
    """
    if isinstance(source, (bytes, bytearray)):
        raw = bytes(source)
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
        where = "<bytes>"
    else:
        where = str(source)
        try:
            with open_maybe_gzip(source) as f:
                raw = f.read()
        except (OSError, EOFError) as exc:
            raise InputError(f"cannot read IDX file {where}: {exc}") from exc
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise InputError(f"{where} is not an IDX file (it must start with two zero bytes)")
    code, ndim = raw[2], raw[3]
    if code not in _IDX_DTYPES:
        raise InputError(f"{where}: unknown IDX type code 0x{code:02x}")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise InputError(f"{where}: truncated IDX header")
    shape = struct.unpack(f">{ndim}I", raw[4:header])
    dtype = _IDX_DTYPES[code]
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(raw) - header != expected:
        raise InputError(
            f"{where}: IDX header says shape {shape} ({expected} data bytes) "
            f"but the file holds {len(raw) - header}; the file is truncated or corrupt"
        )
    arr = np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape)
    return arr.astype(dtype.newbyteorder("="))


def idx_bytes(arr: np.ndarray) -> bytes:
    """Serialise an array in IDX format (used to write test fixtures and by tools)."""
    arr = np.asarray(arr)
    native = arr.dtype.newbyteorder("=")
    if native not in _IDX_CODES:
        raise InputError(f"IDX cannot store dtype {arr.dtype}")
    code = _IDX_CODES[native]
    head = bytes([0, 0, code, arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape)
    return head + np.ascontiguousarray(arr, dtype=_IDX_DTYPES[code]).tobytes()


# Only what numpy arrays (and plain containers) need to be rebuilt.
_ALLOWED = {
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("copy_reg", "_reconstructor"),
    ("copyreg", "_reconstructor"),
    ("__builtin__", "object"),
    ("builtins", "object"),
    ("_codecs", "encode"),  # bytes in protocol-2 pickles written by Python 3
}


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}: only numpy arrays are allowed")
        if module.startswith("numpy.core"):
            # numpy 2 moved numpy.core to numpy._core; avoid its deprecation shim.
            try:
                import numpy._core.multiarray as mod  # type: ignore[import-not-found]
            except ImportError:  # numpy < 2
                import numpy.core.multiarray as mod  # type: ignore[no-redef]
            return getattr(mod, name)
        if module == "copy_reg":
            module = "copyreg"
        if module == "__builtin__":
            module = "builtins"
        return super().find_class(module, name)


def safe_pickle_load(path: str | os.PathLike, *, encoding: str = "latin1") -> Any:
    """Unpickle a data file, allowing only numpy arrays, numbers, strings, lists, tuples and dicts.

    ``encoding="latin1"`` is what Python-2 pickles of numpy arrays (the classic
    ``mnist.pkl.gz``) need; ``encoding="bytes"`` keeps CIFAR's byte-string keys.
    Any other global in the stream (which a malicious pickle would use to run
    code) raises :class:`~deepspan.errors.InputError`.
    """
    try:
        with open_maybe_gzip(path) as f:
            return _RestrictedUnpickler(f, encoding=encoding).load()
    except (pickle.UnpicklingError, EOFError, OSError, ValueError, TypeError) as exc:
        raise InputError(f"cannot unpickle {path}: {exc}") from exc
