"""P-vectors and P-vector angles of a sample set sharded across processes.

:func:`pvector` gives every rank the full P-vector u (length N, in global sample order) of the features
of all ranks' samples, equal to single-process :func:`deepspan.pvector` on the concatenated features;
:func:`angle` gives every rank the P-vector angle between two models' features, equal to
:func:`deepspan.pvector_angle_from_stats` of one pass over all samples. Both are collectives: call them on
every rank of the group, in the same order.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from deepspan.distributed._comm import all_gather, gather_outcomes, on_first_rank, rank_and_world, run_everywhere
from deepspan.distributed.reduce import all_reduce
from deepspan.distributed.shard import Shard
from deepspan.errors import InputError, SampleMismatchError
from deepspan.linalg.checks import check_same_samples
from deepspan.linalg.order import RowOrderSketch
from deepspan.linalg.streaming import CrossGramAccumulator, GramAccumulator, prepare_batch
from deepspan.linalg.svd import orient_signs
from deepspan.measures.pvector import PVector, pvector_angle_from_stats, pvector_from_stats

__all__ = ["pvector", "angle"]

_END = object()


def _is_torch(x: Any) -> bool:
    return type(x).__module__.startswith("torch")


def _batch_source(obj: Any, name: str, passes: int) -> Callable[[], Iterator[Any]]:
    """A function returning a fresh iterator over the local batches for each pass (see :func:`pvector`)."""
    if hasattr(obj, "ndim") and hasattr(obj, "shape"):  # one array or tensor: a single batch
        return lambda: iter((obj,))
    if callable(obj):
        def fresh() -> Iterator[Any]:
            it = obj()
            try:
                return iter(it)
            except TypeError:
                raise InputError(f"{name}() must return an iterable of batches, got {type(it).__name__}.") from None
        return fresh
    try:
        first = iter(obj)
    except TypeError:
        raise InputError(
            f"{name} must be a 2-D array or tensor, a re-iterable collection of batches (a list, a DataLoader) or "
            f"a callable returning an iterator of batches; got {type(obj).__name__}."
        ) from None
    if passes > 1 and first is obj:
        raise InputError(
            f"{name} is a one-shot iterator (e.g. a generator), but the P-vector needs two passes over the same "
            f"batches. Pass a list of batches, a DataLoader, or a callable returning a fresh iterator each time "
            f"(e.g. lambda: (model(x) for x, _ in loader))."
        )
    pending = [first]

    def again() -> Iterator[Any]:
        return pending.pop() if pending else iter(obj)
    return again


def _local_ids(local_ids: Any, local_indices: Any) -> tuple[list[Any] | None, np.ndarray | None]:
    if isinstance(local_ids, Shard):
        if local_indices is not None:
            raise InputError("pass either a Shard as local_ids or local_indices, not both (the shard has indices).")
        ids = None if local_ids.ids is None else local_ids.ids.tolist()
        return ids, local_ids.indices.astype(np.int64)
    ids = None
    if local_ids is not None:
        a = np.asarray(local_ids)
        if a.ndim != 1:
            raise InputError(f"local_ids must be 1-D (one id per local sample), got shape {a.shape}.")
        ids = a.tolist()
    indices = None
    if local_indices is not None:
        idx = np.asarray(local_indices)
        if idx.ndim != 1 or (idx.size and idx.dtype.kind not in "iu"):
            raise InputError(f"local_indices must be a 1-D integer array of global positions, got "
                             f"{idx.dtype} of shape {idx.shape}.")
        indices = idx.astype(np.int64)
    return ids, indices


def _check_local_count(n: int, ids: list[Any] | None, indices: np.ndarray | None) -> None:
    if ids is not None and len(ids) != n:
        raise SampleMismatchError(f"this rank's batches hold {n} samples but local_ids has {len(ids)} ids; pass "
                                  f"one id per local sample, in the order of the batches.")
    if indices is not None and len(indices) != n:
        raise SampleMismatchError(f"this rank's batches hold {n} samples but local_indices has {len(indices)} "
                                  f"entries; pass one global position per local sample.")


def _check_some_samples(n: int, world: int, what: str) -> None:
    if n == 0:
        where = f"on any of the {world} ranks" if world > 1 else "in the local batches"
        raise InputError(f"{what}: there are no samples {where} (every batch had 0 rows); pass the features "
                         f"of the probe samples.")


def _global_order(pieces: list[tuple[Any, list[Any] | None, np.ndarray | None]],
                   what: str) -> tuple[np.ndarray | None, list[Any] | None]:
    """The permutation putting the rank-order concatenation into global order (None: rank order is global order),
    and the global ids in that order; checks that ids are unique and indices a permutation of 0..N-1."""
    for k, name in ((1, "local_ids"), (2, "local_indices")):
        given = [p[k] is not None for p in pieces]
        if any(given) and not all(given):
            missing = [r for r, g in enumerate(given) if not g]
            raise InputError(f"{what}: ranks {missing} passed no {name} but others did; pass them on every rank "
                             f"or on none.")
    ranks = np.concatenate([np.full(len(p[0]), r) for r, p in enumerate(pieces)]) if pieces else np.zeros(0, int)
    perm = None
    if pieces[0][2] is not None:
        idx = np.concatenate([p[2] for p in pieces])
        n = idx.shape[0]
        if not (np.sort(idx) == np.arange(n)).all():
            counts = np.bincount(idx[(idx >= 0) & (idx < n)], minlength=n)
            bad = np.flatnonzero(counts != 1)
            outside = idx[(idx < 0) | (idx >= n)]
            detail = (f"position {outside[0]} lies outside 0..{n - 1}" if outside.size else
                      f"position {bad[0]} is held by {counts[bad[0]]} ranks' samples")
            raise SampleMismatchError(f"{what}: the ranks' local_indices are not a permutation of the {n} global "
                                      f"positions ({detail}); every sample must be on exactly one rank.")
        perm = np.argsort(idx, kind="stable")
    ids = None
    if pieces[0][1] is not None:
        ids = [i for p in pieces for i in p[1]]
        seen: dict[Any, int] = {}
        for pos, i in enumerate(ids):
            if i in seen:
                r0, r1 = int(ranks[seen[i]]), int(ranks[pos])
                where = f"appears twice on rank {r0}" if r0 == r1 else f"is on rank {r0} and on rank {r1}"
                raise SampleMismatchError(
                    f"{what}: sample id {i!r} {where}; every sample must be on exactly one rank, once (split them "
                    f"with deepspan.distributed.shard)."
                )
            seen[i] = pos
        if perm is not None:
            ids = [ids[k] for k in perm]
    return perm, ids


def pvector(local_batches: Any, local_ids: Any, center: bool = False, group: Any = None, *,
            local_indices: Any = None, n_values: int = 5) -> PVector:
    """The P-vector of all ranks' samples, on every rank, in global sample order (a collective).

    Each rank passes the features of *its own* samples (a shard, e.g. :func:`shard`); the result equals
    ``deepspan.pvector(F, center)`` of the full feature matrix F (the ranks' rows stacked in global order):
    u to ~1e-13, the singular values to ~1e-15 relative, the same sign rule.

    ``local_batches`` is read twice, so it must be one of

    * a 2-D array or tensor (the local features, one batch);
    * a re-iterable collection of n_b x d batches (a list, a tuple, a ``torch.utils.data.DataLoader`` of
      features), iterated once per pass;
    * a callable returning a fresh iterator of batches, called once per pass -- the way to stream features
      that a model computes on the fly: ``lambda: (model(x) for x, _ in loader)`` (with ``shuffle=False``:
      both passes must give the same samples in the same order, which is checked on every rank).

    A one-shot iterator (a generator object) is refused. Batches may be numpy or torch on any device; the
    first pass accumulates Gram statistics on the batches' device, the second computes this rank's piece
    of u there and moves only those n_r numbers to the host.

    ``local_ids`` are the global ids of this rank's samples, in batch order (or ``None``, or the
    :class:`Shard` from :func:`shard`); with ids on every rank the result's ``sample_hash`` is
    ``hash_sample_ids`` of all ids in global order, and an id found on two ranks is refused. Global order
    is the concatenation of ranks 0, 1, ... unless ``local_indices`` (or a Shard) give every local sample's
    global position (e.g. for a round-robin split; they must form a permutation of 0..N-1).

    Steps: (1) ``GramAccumulator.update`` over the local batches, reduced across the ranks
    (:func:`all_reduce`: the pairwise merge in rank order); (2) ``pvector_from_stats`` on the first rank of the group, v_1 and
    sigma_1 broadcast (so every rank uses bitwise the same v); (3) the local piece
    u_r = (F_r - 1 mu^T) v / sigma (mu = the reduced mean, only when ``center``); (4) the pieces and their
    ids/indices all-gathered, put in global order, the sign rule (:func:`deepspan.linalg.orient_signs`:
    sum(u) > 0, else the largest-magnitude entry positive) applied to u and v together. Three collectives;
    every rank ends up holding u (N float64) and all ids. A failure in a local step on one rank (bad batch,
    other samples in the second pass, mismatched ids) is raised on every rank (:class:`RankFailedError`
    on the others). ``DegenerateSpectrumWarning`` is emitted on the group's first rank only.

    Without torch.distributed initialised (or in a group of one) this is the single-process streamed
    P-vector of the local batches.
    """
    rank, world = rank_and_world(group)
    source = _batch_source(local_batches, "local_batches", passes=2)
    ids, indices = _local_ids(local_ids, local_indices)
    center = bool(center)

    def first_pass() -> GramAccumulator:
        acc = GramAccumulator()
        for batch in source():
            acc.update(batch)
        _check_local_count(acc.n_samples, ids, indices)
        return acc

    local = run_everywhere(first_pass, group, world, "deepspan.distributed.pvector (first pass)")
    merged = all_reduce(local, group)
    _check_some_samples(merged.n_samples, world, "deepspan.distributed.pvector")
    stats = merged.finalize()  # the same on every rank: an empty sample set fails everywhere alike
    p: PVector = on_first_rank(lambda: pvector_from_stats(stats, center, n_values), group, rank, world,
                               "deepspan.distributed.pvector (spectrum)")
    shift = float(stats.mean @ p.v) if center else 0.0
    mine = {"row_order": local._order.state(), "n_samples": local.n_samples}

    def second_pass() -> tuple[np.ndarray, list[Any] | None, np.ndarray | None]:
        first = RowOrderSketch.from_state(mine["row_order"], None)
        order = RowOrderSketch()
        parts = []
        for batch in source():
            x = prepare_batch(batch, "batch")
            if x.shape[1] != p.n_features:
                raise InputError(f"a second-pass batch has {x.shape[1]} features but the first pass had "
                                 f"{p.n_features}; pass the same batches again.")
            if x.shape[0] == 0:
                continue
            if _is_torch(x):
                import torch

                s = (x @ torch.as_tensor(p.v, device=x.device)).cpu().numpy()
            else:
                s = x @ p.v
            parts.append((s - shift) / p.sigma)
            order.update(x)
        u = np.concatenate(parts) if parts else np.zeros(0)
        check_same_samples(u.shape[0], int(mine["n_samples"]), names=("the second pass", "the first pass"),
                           what=f"deepspan.distributed.pvector on rank {rank}")
        first.check_same_rows(order, what=f"deepspan.distributed.pvector on rank {rank}")
        return u, ids, indices

    pieces = gather_outcomes(second_pass, group, world, "deepspan.distributed.pvector (second pass)")
    perm, global_ids = _global_order(pieces, "deepspan.distributed.pvector")
    u = np.concatenate([piece[0] for piece in pieces])
    if perm is not None:
        u = u[perm]
    U, V = orient_signs(u[:, None], p.v[:, None])
    sample_hash = None
    if global_ids is not None:
        from deepspan.features.featureset import hash_sample_ids

        sample_hash = hash_sample_ids(global_ids)
    note = (f"deepspan.distributed: {world} rank(s), Gram statistics merged in rank order, u gathered in global "
            f"sample order")
    return dataclasses.replace(p, u=U[:, 0], v=V[:, 0], sample_hash=sample_hash, notes=(*p.notes, note))


def angle(local_a: Any, local_b: Any, local_ids: Any, center: bool = False, group: Any = None, *,
          local_indices: Any = None) -> float:
    """The angle (degrees) between the P-vectors of two feature sets of all ranks' samples (a collective).

    ``local_a`` and ``local_b`` are this rank's features of the same samples, in the same order, from two
    models (any widths): 2-D arrays/tensors, collections of batches, callables returning iterators, or --
    one pass only -- plain iterators/generators; their batches are taken pairwise (equal row counts, and
    the same number of batches). One pass: :class:`~deepspan.CrossGramAccumulator` over the local batches,
    reduced across the ranks (:func:`all_reduce`), the ranks' ids and indices gathered and checked, then
    :func:`~deepspan.pvector_angle_from_stats` on the group's first rank, broadcast, so every rank returns
    the same float.

    Equals ``deepspan.angle(deepspan.pvector(A), deepspan.pvector(B))`` of the full matrices up to the
    resolution of the cross-Gram route: it obtains the cosine <u_A, u_B> (to ~1e-15), and arccos of a
    cosine cannot resolve angles below ~1e-6 degrees (the dense route uses atan2 and can).

    ``local_ids`` (ids of this rank's samples, ``None``, or a :class:`Shard`) and ``local_indices`` are
    checked -- one id per local sample, no id on two ranks, indices a permutation of 0..N-1 -- but the
    angle does not depend on the order of the samples. A local failure on one rank is raised on every rank;
    ``DegenerateSpectrumWarning`` is emitted on the group's first rank only.
    """
    rank, world = rank_and_world(group)
    source_a = _batch_source(local_a, "local_a", passes=1)
    source_b = _batch_source(local_b, "local_b", passes=1)
    ids, indices = _local_ids(local_ids, local_indices)

    def one_pass() -> CrossGramAccumulator:
        acc = CrossGramAccumulator()
        for k, (a, b) in enumerate(itertools.zip_longest(source_a(), source_b(), fillvalue=_END)):
            if a is _END or b is _END:
                longer = "local_b" if a is _END else "local_a"
                raise SampleMismatchError(f"{longer} gave more batches than the other set ({k} batches matched); "
                                          f"pass the two models' features of the same batches.")
            acc.update(a, b)
        _check_local_count(acc.n_samples, ids, indices)
        return acc

    local = run_everywhere(one_pass, group, world, "deepspan.distributed.angle")
    outs = all_gather((local.n_samples, ids, indices), group, world) if world > 1 else [(local.n_samples, ids,
                                                                                         indices)]
    _global_order([(np.zeros(o[0]), o[1], o[2]) for o in outs], "deepspan.distributed.angle")
    merged = all_reduce(local, group)
    _check_some_samples(merged.n_samples, world, "deepspan.distributed.angle")
    return float(on_first_rank(lambda: pvector_angle_from_stats(merged.finalize(), bool(center)), group, rank,
                               world, "deepspan.distributed.angle"))
