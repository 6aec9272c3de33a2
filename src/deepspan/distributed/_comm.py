"""The collectives under :mod:`deepspan.distributed`: who am I, gather objects, fail on every rank together.

torch.distributed is imported lazily (``import deepspan`` never imports it). Every collective here moves
plain Python objects -- accumulator ``state_dict()`` dicts of numpy arrays, small result records -- with
torch's object collectives (``all_gather_object``, ``gather_object``, ``broadcast_object_list``): pickled on
the host, shipped as a byte tensor (on the current CUDA device for NCCL), unpickled on the host.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from deepspan.errors import DeepspanError, InputError

__all__ = ["RankFailedError", "all_gather", "dist_or_none", "gather_outcomes", "gather_to", "on_first_rank",
           "rank_and_world", "run_everywhere"]


class RankFailedError(DeepspanError, RuntimeError):
    """Another rank of the process group failed inside a :mod:`deepspan.distributed` call.

    Raised on every rank that did *not* fail (the failing rank re-raises its own exception), so no rank
    waits for a peer that will never come. ``failures`` maps the failing ranks (ranks within the group) to
    ``(exception type name, message)``.
    """

    def __init__(self, message: str, failures: dict[int, tuple[str, str]]) -> None:
        super().__init__(message)
        self.failures = failures


def dist_or_none() -> Any:
    """``torch.distributed`` when it is available and a process group is initialised, else ``None``."""
    try:
        import torch.distributed as dist
    except ImportError:  # pragma: no cover - torch is a dependency of deepspan
        return None
    if not dist.is_available() or not dist.is_initialized():
        return None
    return dist


def rank_and_world(group: Any = None) -> tuple[int, int]:
    """(rank within ``group``, size of ``group``); (0, 1) when torch.distributed is not initialised."""
    dist = dist_or_none()
    if dist is None:
        if group is not None:
            raise InputError("a process group was given but torch.distributed is not initialised; call "
                             "torch.distributed.init_process_group first (or pass group=None).")
        return 0, 1
    rank = dist.get_rank(group)
    if rank < 0:
        raise InputError("this process is not a member of the given process group; call deepspan.distributed "
                         "functions with a group this process belongs to (the same group on every rank).")
    return int(rank), int(dist.get_world_size(group))


def all_gather(obj: Any, group: Any, world: int) -> list[Any]:
    """Every rank's ``obj``, indexed by rank within ``group`` (the same list on every rank)."""
    dist = dist_or_none()
    out: list[Any] = [None] * world
    dist.all_gather_object(out, obj, group=group)
    return out


def _global_rank(dist: Any, group: Any, group_rank: int) -> int:
    return group_rank if group is None else int(dist.get_global_rank(group, group_rank))


def gather_to(obj: Any, dst: int, group: Any, rank: int, world: int) -> list[Any] | None:
    """Every rank's ``obj`` on the rank whose *global* rank is ``dst`` (indexed by group rank); None elsewhere."""
    dist = dist_or_none()
    out: list[Any] | None = [None] * world if dist.get_rank() == dst else None
    dist.gather_object(obj, out, dst=dst, group=group)
    return out


def _outcome(fn: Callable[[], Any]) -> tuple[tuple[Any, ...], BaseException | None]:
    try:
        return ("ok", fn()), None
    except Exception as exc:  # noqa: BLE001 - reported to every rank, then re-raised here
        return ("error", type(exc).__name__, str(exc)), exc


def _raise_failures(outcomes: list[tuple[Any, ...]], local: BaseException | None, what: str) -> None:
    failures = {r: (o[1], o[2]) for r, o in enumerate(outcomes) if o[0] == "error"}
    if not failures:
        return
    if local is not None:
        raise local
    listed = "; ".join(f"rank {r}: {name}: {msg}" for r, (name, msg) in failures.items())
    raise RankFailedError(f"{what} failed on {len(failures)} of {len(outcomes)} ranks, so it stops here too -- "
                          f"{listed}", failures)


def gather_outcomes(fn: Callable[[], Any], group: Any, world: int, what: str) -> list[Any]:
    """Run ``fn()`` on every rank and all-gather the results; if it raised on any rank, raise on every rank.

    The failing rank re-raises its own exception; the others raise :class:`RankFailedError` naming the
    failing ranks and their messages. One collective, whatever the outcome, so nobody is left waiting.
    """
    if world == 1:
        return [fn()]
    mine, local = _outcome(fn)
    outcomes = all_gather(mine, group, world)
    _raise_failures(outcomes, local, what)
    return [o[1] for o in outcomes]


def run_everywhere(fn: Callable[[], Any], group: Any, world: int, what: str) -> Any:
    """Run ``fn()`` on every rank and return this rank's result; if it raised on any rank, raise on every rank.

    Like :func:`gather_outcomes`, but only the outcome's status travels (a few bytes), not the result: for
    local steps whose results stay local (this rank's features, its accumulators).
    """
    if world == 1:
        return fn()
    mine, local = _outcome(fn)
    status = mine if mine[0] == "error" else ("ok", None)
    _raise_failures(all_gather(status, group, world), local, what)
    return mine[1]


def on_first_rank(fn: Callable[[], Any], group: Any, rank: int, world: int, what: str) -> Any:
    """Run ``fn()`` on the group's first rank only and broadcast its result (or its failure) to every rank.

    Used for the small dense steps after a reduction (eigendecompositions of d x d matrices), so every
    rank gets bitwise the same numbers even when the machines' LAPACK builds differ.
    """
    if world == 1:
        return fn()
    dist = dist_or_none()
    mine, local = _outcome(fn) if rank == 0 else (None, None)
    box = [mine]
    dist.broadcast_object_list(box, src=_global_rank(dist, group, 0), group=group)
    outcome = box[0]
    if outcome[0] == "error":
        if local is not None:
            raise local
        raise RankFailedError(f"{what} failed on rank 0, so it stops here too -- {outcome[1]}: {outcome[2]}",
                              {0: (outcome[1], outcome[2])})
    return outcome[1]
