"""Reduce any deepspan accumulator across processes: :func:`all_reduce` and :func:`reduce`.

Both are the accumulator's own exact pairwise merge (Chan, Golub and LeVeque 1979 -- not a sum of raw
moments) of every rank's state, in rank order: ``rank 0 . merge(rank 1) . merge(rank 2) ...``. Two routes:

* deepspan's Gram-family accumulators (``GramAccumulator``, ``CrossGramAccumulator``,
  ``ClassStatsAccumulator``, ``SpectrumAccumulator``; ``NC4Accumulator`` has no matrices) merge their big
  centered-moment matrices *linearly*: ``S = S_a + S_b + c(n_a, n_b, mu_a, mu_b)``. Every rank gathers the
  others' small state (counts, means, classes, settings, row fingerprints: O(d) each) and merges them in
  rank order with zero matrices, which gives the small parts of the result and the sum of the corrections;
  the ranks' own matrices are then summed by one float64 tensor ``all_reduce`` (``reduce``): with a ring,
  about 2x the matrices per rank, whatever the number of ranks, and no rank holds more than a few copies
  of one state (:func:`_reduce_additive`).
* any other accumulator (one of the user's, implementing the protocol): every rank's whole
  ``state_dict()`` is gathered with torch's object collectives and merged in rank order
  (:func:`merge_states`); each rank then holds world states.

Every rank does the same float64 operations on the same numbers in the same order, and the backend's
all_reduce hands every rank the same sums (gloo's and NCCL's do), so the result is bitwise the same on
every rank; it equals one pass over all samples up to float64 rounding.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

import numpy as np

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
    _check_kinds([str(s.get("kind")) if isinstance(s, Mapping) else type(s).__name__ for s in states], cls, what)
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


def _additive_keys(acc: Any) -> tuple[str, ...] | None:
    keys = getattr(type(acc), "_ADDITIVE_KEYS", None)
    return tuple(keys) if isinstance(acc, AccumulatorBase) and keys is not None else None


def _check_kinds(kinds: list[str], cls: type, what: str) -> None:
    if len(set(kinds)) > 1 or kinds[0] != cls.__name__:
        listed = ", ".join(f"rank {r}: {k}" for r, k in enumerate(kinds))
        raise InputError(
            f"{what}: the ranks hold different accumulators ({listed}); every rank must reduce the same kind "
            f"of accumulator, built with the same settings, in the same order of calls."
        )


def _reduce_additive(acc: Any, keys: tuple[str, ...], group: Any, world: int, dst: int | None, what: str) -> Any:
    """The exact reduction of an accumulator whose big matrices merge linearly (``_ADDITIVE_KEYS``).

    The pairwise merge of Chan, Golub and LeVeque (1979) is ``S = S_a + S_b + c(n_a, n_b, mu_a, mu_b)``, linear
    in the big matrices S, so merging every rank's state in rank order gives ``sum_k S_k`` plus corrections that
    depend only on the counts and means. Step 1 gathers every rank's small state (counts, means, classes,
    settings, row-order fingerprints: O(d) per rank) and every rank merges them in rank order with zero
    matrices, which yields the small parts of the result and the sum of the corrections (the same float64
    operations on every rank, so the same numbers). Step 2 sums the ranks' own matrices -- placed in the
    merged layout (a ClassStats shard may lack classes) -- with one ``all_reduce`` (``reduce`` to ``dst``) of a
    float64 tensor: a ring moves about 2x the state per rank, whatever the world size. The result is the
    corrections plus that sum.
    """
    import torch

    dist = dist_or_none()
    state = acc.state_dict()
    small = {k: v for k, v in state.items() if k not in keys}
    small["__shapes__"] = {k: tuple(np.shape(state[k])) for k in keys}
    smalls = all_gather(small, group, world)
    _check_kinds([str(s.get("kind")) for s in smalls], type(acc), what)
    cls = type(acc)

    def zero_filled(s: Mapping[str, Any]) -> Any:
        d = {k: v for k, v in s.items() if k != "__shapes__"}
        d.update({k: np.zeros(shape) for k, shape in s["__shapes__"].items()})
        return cls.from_state_dict(d)  # type: ignore[attr-defined]

    merged = zero_filled(smalls[0])
    for s in smalls[1:]:
        merged.merge(zero_filled(s))
    out = merged.state_dict()
    if not keys:
        return merged if dst is None or dist.get_rank() == dst else None
    # this rank's matrices in the merged layout, flattened into one float64 buffer
    blocks = []
    for k in keys:
        mine, target = np.asarray(state[k], dtype=np.float64), np.asarray(out[k])
        if mine.shape == target.shape and "classes" not in state:
            blocks.append(mine)
            continue
        block = np.zeros(target.shape)
        if "classes" in state and mine.size:
            where = {c: i for i, c in enumerate(np.asarray(out["classes"]).tolist())}
            block[[where[c] for c in np.asarray(state["classes"]).tolist()]] = mine
        elif mine.size:  # pragma: no cover - the merge above refuses other widths
            raise InputError(f"{what}: a matrix of shape {mine.shape} does not fit the reduced {target.shape}.")
        blocks.append(block)
    flat = torch.from_numpy(np.concatenate([b.reshape(-1) for b in blocks]))
    on_gpu = dist.get_backend(group) == "nccl"
    buf = flat.to(torch.cuda.current_device()) if on_gpu else flat
    if dst is None:
        dist.all_reduce(buf, op=dist.ReduceOp.SUM, group=group)
    else:
        dist.reduce(buf, dst=dst, op=dist.ReduceOp.SUM, group=group)
        if dist.get_rank() != dst:
            return None
    total = buf.cpu().numpy() if on_gpu else flat.numpy()
    start = 0
    for k in keys:
        size = int(np.prod(out[k].shape))
        out[k] = out[k] + total[start:start + size].reshape(out[k].shape)
        start += size
    return cls.from_state_dict(out)  # type: ignore[attr-defined]


def all_reduce(acc: A, group: Any = None) -> A:
    """The accumulator of all ranks' samples, on every rank (a collective: call it on every rank of ``group``).

    Every rank's state is merged in rank order with ``acc``'s own exact pairwise merge (the module docstring
    gives the two routes: small states gathered and big matrices summed by one tensor all_reduce for
    deepspan's Gram-family accumulators, whole states gathered for others), so the result is bitwise
    identical on every rank and equals one pass over all samples up to float64 rounding (the merge of Chan,
    Golub and LeVeque 1979; shards differ from batches only in where the pairwise updates happen).

    Returns a *new* accumulator, float64, on the device ``acc``'s state is on (a GPU accumulator's result
    stays on that GPU; host state stays numpy); ``acc`` itself is not changed -- to update it in place,
    ``acc.load_state_dict(all_reduce(acc).state_dict())``. The result keeps working as an accumulator
    (``update``, ``merge``, ``finalize``, ``state_dict``). When torch.distributed is not initialised, or
    the group has one process, returns ``acc`` itself, unchanged.

    Memory: a Gram-family accumulator's reduction holds a few copies of one state per rank (host copies:
    ``state_dict``, the summed buffer, the result; with NCCL the buffer is summed on the current GPU); the
    object route holds world states while merging. A GramAccumulator's row-order fingerprint
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
    keys = _additive_keys(acc)
    if keys is not None:
        return _on_device_of(_reduce_additive(acc, keys, group, world, None, "all_reduce"), acc)
    states = all_gather(acc.state_dict(), group, world)  # type: ignore[attr-defined]
    return _on_device_of(merge_states(type(acc), states, "all_reduce"), acc)


def reduce(acc: A, dst: int = 0, group: Any = None) -> A | None:
    """The accumulator of all ranks' samples on rank ``dst`` only; ``None`` on the other ranks.

    A collective: call it on every rank of ``group`` with the same ``dst`` -- the *global* rank that
    receives, as in ``torch.distributed.reduce`` (with ``group=None`` the global and group ranks are the
    same). The Gram-family route sums the big matrices with ``torch.distributed.reduce`` to ``dst`` (every
    rank still merges the small states, so a mismatch is refused on every rank); the object route gathers
    whole states to ``dst`` only. ``dst``'s result equals :func:`all_reduce`'s up to the order of the sum's
    float64 additions (bitwise equal in the tests' gloo jobs).

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
    keys = _additive_keys(acc)
    if keys is not None:
        reduced = _reduce_additive(acc, keys, group, world, dst, "reduce")
        return None if reduced is None else _on_device_of(reduced, acc)
    states = gather_to(acc.state_dict(), dst, group, rank, world)  # type: ignore[attr-defined]
    if states is None:
        return None
    return _on_device_of(merge_states(type(acc), states, "reduce"), acc)
