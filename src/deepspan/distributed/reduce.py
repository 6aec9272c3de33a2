"""Reduce any deepspan accumulator across processes: :func:`all_reduce` and :func:`reduce`.

Route: every rank's ``acc.state_dict()`` (numpy arrays and Python scalars; GPU state is copied to the host
by ``state_dict``) is gathered with torch's object collectives, restored with ``from_state_dict`` and merged
with the accumulator's own exact pairwise merge (Chan, Golub and LeVeque 1979 -- not a sum of raw moments)
in rank order: ``rank 0 . merge(rank 1) . merge(rank 2) ...``. Every rank that merges does the same float64
operations on the same numbers in the same order, so the result is bitwise the same on every rank.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

from deepspan.distributed._comm import all_gather, dist_or_none, gather_to, rank_and_world
from deepspan.errors import InputError
from deepspan.linalg.streaming import Accumulator, AccumulatorBase

__all__ = ["all_reduce", "reduce", "merge_states"]

A = TypeVar("A")


def _check_accumulator(acc: Any, what: str) -> None:
    if not isinstance(acc, Accumulator):
        raise InputError(
            f"{what} needs a deepspan accumulator (GramAccumulator, CrossGramAccumulator, ClassStatsAccumulator, "
            f"SpectrumAccumulator, NC4Accumulator, ...: anything with update/merge/finalize/state_dict), "
            f"got {type(acc).__name__}."
        )


def merge_states(cls: type[A], states: Sequence[Mapping[str, Any]], what: str = "the reduction") -> A:
    """Restore each state with ``cls.from_state_dict`` and merge them left to right (rank order).

    Refuses, with one message naming every rank's kind, states of different kinds (e.g. ranks that reduced
    different accumulators, or the same ones in another order).
    """
    kinds = [str(s.get("kind")) if isinstance(s, Mapping) else type(s).__name__ for s in states]
    if len(set(kinds)) > 1 or kinds[0] != cls.__name__:
        listed = ", ".join(f"rank {r}: {k}" for r, k in enumerate(kinds))
        raise InputError(
            f"{what}: the ranks hold different accumulators ({listed}); every rank must reduce the same kind "
            f"of accumulator, built with the same settings, in the same order of calls."
        )
    merged = cls.from_state_dict(states[0])  # type: ignore[attr-defined]
    for state in states[1:]:
        merged.merge(cls.from_state_dict(state))  # type: ignore[attr-defined]
    return merged


def _on_device_of(merged: A, acc: Any) -> A:
    """``merged`` moved to the torch device ``acc``'s state is on (nothing to do for host state)."""
    if isinstance(acc, AccumulatorBase) and isinstance(merged, AccumulatorBase):
        device = acc._state_device()
        if device is not None:
            merged._to_device(device)
    return merged


def all_reduce(acc: A, group: Any = None) -> A:
    """The accumulator of all ranks' samples, on every rank (a collective: call it on every rank of ``group``).

    Every rank's state is gathered (``torch.distributed.all_gather_object`` on ``acc.state_dict()``) and
    merged in rank order with ``acc``'s own exact pairwise merge, so the result is bitwise identical on
    every rank and equals one pass over all samples up to float64 rounding (the merge of Chan, Golub and
    LeVeque 1979; shards differ from batches only in where the pairwise updates happen).

    Returns a *new* accumulator, float64, on the device ``acc``'s state is on (a GPU accumulator's result
    stays on that GPU; host state stays numpy); ``acc`` itself is not changed -- to update it in place,
    ``acc.load_state_dict(all_reduce(acc).state_dict())``. The result keeps working as an accumulator
    (``update``, ``merge``, ``finalize``, ``state_dict``). When torch.distributed is not initialised, or
    the group has one process, returns ``acc`` itself, unchanged.

    Memory: while merging, each rank holds every rank's state (world x the accumulator's size, e.g.
    world x d^2 float64 for a :class:`~deepspan.GramAccumulator`). A GramAccumulator's row-order fingerprint
    (``row_order``) records that shards were merged (their intended order is unknown), so
    :func:`~deepspan.with_left_vector` then checks the samples but not their order; use
    :func:`deepspan.distributed.pvector` for a distributed second pass.

    Raises :class:`~deepspan.errors.InputError` on every rank when the ranks hold different kinds of
    accumulator, or ones that cannot merge (other widths, classes, settings).
    """
    _check_accumulator(acc, "all_reduce")
    if dist_or_none() is None and group is None:
        return acc
    _, world = rank_and_world(group)
    if world == 1:
        return acc
    states = all_gather(acc.state_dict(), group, world)  # type: ignore[attr-defined]
    return _on_device_of(merge_states(type(acc), states, "all_reduce"), acc)


def reduce(acc: A, dst: int = 0, group: Any = None) -> A | None:
    """The accumulator of all ranks' samples on rank ``dst`` only; ``None`` on the other ranks.

    A collective: call it on every rank of ``group`` with the same ``dst`` -- the *global* rank that
    receives, as in ``torch.distributed.gather_object`` (with ``group=None`` the global and group ranks are
    the same). States are gathered to ``dst`` only (``gather_object``) and merged there in group-rank order,
    exactly as :func:`all_reduce` merges them, so ``dst``'s result is bitwise equal to what
    :func:`all_reduce` would give. Only ``dst`` holds the world x state-size buffer.

    On every rank ``acc`` is left unchanged; the other ranks get ``None`` back (not their local
    accumulator, so that a local partial result is never mistaken for the global one). When
    torch.distributed is not initialised, or the group has one process, returns ``acc`` itself.
    """
    _check_accumulator(acc, "reduce")
    if isinstance(dst, bool) or not isinstance(dst, int):
        raise InputError(f"dst must be an integer rank, got {dst!r}.")
    if dist_or_none() is None and group is None:
        if dst != 0:
            raise InputError(f"dst={dst} but torch.distributed is not initialised: the only rank is 0.")
        return acc
    rank, world = rank_and_world(group)
    dist = dist_or_none()
    members = list(range(world)) if group is None else [int(dist.get_global_rank(group, r)) for r in range(world)]
    if dst not in members:
        raise InputError(f"dst={dst} is not a (global) rank of the group, whose ranks are {members}.")
    if world == 1:
        return acc
    states = gather_to(acc.state_dict(), dst, group, rank, world)  # type: ignore[attr-defined]
    if states is None:
        return None
    return _on_device_of(merge_states(type(acc), states, "reduce"), acc)
