"""Split a sample set across processes: each rank a contiguous slice, with global indices and ids."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from deepspan.distributed._comm import rank_and_world
from deepspan.errors import InputError

__all__ = ["Shard", "shard"]


@dataclass(frozen=True)
class Shard:
    """One rank's part of N samples: the global positions ``start .. stop - 1``.

    Attributes: ``rank``, ``world``, ``n_total`` (N), ``start``, ``stop``, ``indices`` (the global
    indices, ``np.arange(start, stop)``) and ``ids`` (the sample ids of those positions when ids were
    given, else ``None``). ``slice`` selects the rows of a length-N array; ``len(shard)`` is the count.
    Pass the shard itself as ``local_ids`` to :func:`deepspan.distributed.pvector` or ``angle``.
    """

    rank: int
    world: int
    n_total: int
    start: int
    stop: int
    indices: np.ndarray = field(repr=False)
    ids: np.ndarray | None = field(default=None, repr=False)

    @property
    def slice(self) -> slice:
        return slice(self.start, self.stop)

    def __len__(self) -> int:
        return self.stop - self.start


def _as_int(x: Any, name: str) -> int:
    if isinstance(x, bool) or not isinstance(x, (int, np.integer)):
        raise InputError(f"{name} must be an integer, got {x!r}.")
    return int(x)


def shard(n_or_ids: Any, rank: int | None = None, world: int | None = None, *, group: Any = None,
          align: int = 1) -> Shard:
    """This rank's contiguous slice of N samples: global indices ``[rank*N//world, (rank+1)*N//world)``.

    ``n_or_ids`` is N, or the N sample ids in global order (a 1-D sequence or array), whose slice is
    returned as ``ids``. Shard sizes differ by at most one (a rank may get no samples when N < world).
    Concatenating the shards of ranks 0, 1, ... gives the samples in global order, the order
    :func:`deepspan.distributed.pvector` puts u in.

    ``align`` > 1 splits whole blocks of ``align`` samples instead (the last block may be shorter): with
    B = ceil(N / align) blocks, rank r gets blocks ``[r*B//world, (r+1)*B//world)``. With ``align`` = the
    batch size, every rank's batches are exactly batches of the single-process run (the same samples in
    the same forward passes), which is how :func:`deepspan.extract` and the Tracker split a probe.

    ``rank`` and ``world`` default to this process's rank and the size of ``group`` (the default group)
    when torch.distributed is initialised, else to 0 and 1 (everything on one process).
    """
    if isinstance(n_or_ids, (int, np.integer)) and not isinstance(n_or_ids, bool):
        n, ids = int(n_or_ids), None
        if n < 0:
            raise InputError(f"the number of samples must be >= 0, got {n}.")
    else:
        try:
            ids = np.asarray(n_or_ids)
        except Exception as exc:  # noqa: BLE001
            raise InputError(f"n_or_ids must be a sample count or a 1-D sequence of sample ids: {exc}") from None
        if ids.ndim != 1:
            raise InputError(f"the sample ids must be 1-D (one id per sample), got shape {ids.shape}.")
        n = int(ids.shape[0])
    if rank is None or world is None:
        r0, w0 = rank_and_world(group)
        rank = r0 if rank is None else rank
        world = w0 if world is None else world
    rank, world, align = _as_int(rank, "rank"), _as_int(world, "world"), _as_int(align, "align")
    if world < 1 or not 0 <= rank < world:
        raise InputError(f"need 0 <= rank < world with world >= 1, got rank={rank}, world={world}.")
    if align < 1:
        raise InputError(f"align must be a positive number of samples per block, got {align}.")
    blocks = -(-n // align)
    start, stop = min(n, rank * blocks // world * align), min(n, (rank + 1) * blocks // world * align)
    return Shard(rank, world, n, start, stop, np.arange(start, stop),
                 None if ids is None else ids[start:stop].copy())
