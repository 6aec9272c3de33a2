"""Cache-sized float64 blocks of a float32/float64 matrix.

The fast routes never copy a float32 feature matrix whole into float64: they
walk over it in blocks small enough to stay in the CPU cache, convert each
block into a reused float64 buffer and do all arithmetic on that buffer.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

__all__ = ["BLOCK_BYTES", "block_rows", "block_cols", "row_blocks", "col_blocks"]

#: Target size of one float64 block (bytes). Measured on the 2-core development
#: machine: 4 MiB blocks give the fewest memory passes per fused product
#: B^T (B X) (see bench/pvector.py).
BLOCK_BYTES = 4 * 1024 * 1024


def block_rows(n_features: int, block_bytes: int = BLOCK_BYTES) -> int:
    """Rows per block so that one float64 row block holds about ``block_bytes``."""
    return max(16, block_bytes // (8 * max(1, n_features)))


def block_cols(n_samples: int, block_bytes: int = BLOCK_BYTES) -> int:
    """Columns per block so that one float64 column block holds about ``block_bytes``."""
    return max(8, block_bytes // (8 * max(1, n_samples)))


def row_blocks(F: np.ndarray, rows: int | None = None) -> Iterator[tuple[int, np.ndarray]]:
    """Yield ``(start, block)`` with ``block`` = ``F[start:start+rows]`` as float64.

    A float64 input yields views; any other dtype is converted into one reused
    buffer, so a consumer must not keep a block after the next one is drawn.
    """
    n, d = F.shape
    rows = rows or block_rows(d)
    if F.dtype == np.float64:
        for i in range(0, n, rows):
            yield i, F[i : i + rows]
        return
    buf = np.empty((min(rows, n), d), dtype=np.float64)
    for i in range(0, n, rows):
        part = F[i : i + rows]
        out = buf[: part.shape[0]]
        np.copyto(out, part)
        yield i, out


def col_blocks(F: np.ndarray, cols: int | None = None) -> Iterator[tuple[int, np.ndarray]]:
    """Yield ``(start, block)`` with ``block`` = ``F[:, start:start+cols]`` as a float64 copy.

    The block is always a copy in one reused buffer, so the consumer may modify it in place.
    """
    n, d = F.shape
    cols = cols or block_cols(n)
    buf = np.empty((n, min(cols, d)), dtype=np.float64)
    for j in range(0, d, cols):
        part = F[:, j : j + cols]
        out = buf[:, : part.shape[1]]
        np.copyto(out, part)
        yield j, out
