"""Read a 2-D ``.npy`` feature matrix in row chunks with bounded memory.

``numpy.load(mmap_mode="r")`` would map the whole file; the pages it touches
stay resident and count towards the process's memory, so a 4 GB file read
through a memory map grows the resident set to 4 GB. This reader instead
``readinto``-s each chunk into one reused buffer: peak memory is one chunk,
whatever the file size.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from deepspan.errors import InputError

__all__ = ["npy_shape", "iter_npy_rows"]


def _read_header(f, path: Path) -> tuple[tuple[int, ...], np.dtype, bool]:
    try:
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
        elif version in ((2, 0), (3, 0)):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
        else:  # pragma: no cover - numpy raises first
            raise ValueError(f"unsupported .npy version {version}")
    except ValueError as exc:
        raise InputError(f"{path} is not a readable .npy file ({exc}); save features with numpy.save.") from exc
    return shape, dtype, fortran


def npy_shape(path: str | Path) -> tuple[tuple[int, ...], np.dtype]:
    """Shape and dtype of a ``.npy`` file, from its header only."""
    path = Path(path)
    with open(path, "rb") as f:
        shape, dtype, _ = _read_header(f, path)
    return shape, dtype


def iter_npy_rows(path: str | Path, chunk_rows: int = 65536) -> Iterator[np.ndarray]:
    """Yield consecutive row blocks of a 2-D C-order ``.npy`` file (each at most ``chunk_rows`` rows).

    The yielded array is a view of one reused buffer: copy it if you keep it
    beyond the next iteration. A truncated file raises an error naming the
    missing rows.
    """
    path = Path(path)
    if chunk_rows < 1:
        raise InputError(f"chunk_rows must be >= 1, got {chunk_rows}.")
    with open(path, "rb") as f:
        shape, dtype, fortran = _read_header(f, path)
        if len(shape) != 2:
            raise InputError(
                f"{path} holds an array of shape {shape}; a samples x features matrix must be 2-D. "
                f"Save it as arr.reshape(len(arr), -1)."
            )
        if fortran and shape[1] > 1:
            raise InputError(
                f"{path} is stored in Fortran (column-major) order, which cannot be read row by row; "
                f"re-save it with numpy.save(path, np.ascontiguousarray(arr))."
            )
        if dtype.hasobject:
            raise InputError(f"{path} holds Python objects, not numbers; save a numeric array.")
        n, d = shape
        rows = max(1, min(chunk_rows, n))
        buf = np.empty((rows, d), dtype=dtype)
        done = 0
        while done < n:
            take = min(rows, n - done)
            view = buf[:take]
            got = f.readinto(memoryview(view).cast("B"))
            if got != view.nbytes:
                raise InputError(
                    f"{path} is truncated: expected {n} rows of {d} {dtype} values, the data ends near row "
                    f"{done + got // max(1, d * dtype.itemsize)}. Re-create the file."
                )
            done += take
            yield view
