"""Benchmark of ``deepspan.distributed``: one process against two gloo processes (a script, not a test).

N x d float32 features (default 2,000,000 x 512) are generated deterministically in chunks of
``--chunk`` rows (default 50,000), each from a ``torch.Generator`` seeded with the chunk's index, so a
rank can generate exactly its own shard and nothing holds all the data. They are streamed into a
``deepspan.GramAccumulator``

(a) in this process, over all chunks (the reference, torch's default thread count), and
(b) in 2 processes of a gloo group on loopback (spawned here with ``torch.multiprocessing.spawn``,
    1 torch thread each, so both routes use the same cores), each over its contiguous half of the
    chunks, followed by ``deepspan.distributed.all_reduce``.

Both results go through ``deepspan.pvector_from_stats``; the scatter matrices and the singular values
must agree to 1e-12 relative (PASS/FAIL). Also printed: the all_reduce's own time on the ranks (max over
ranks) and what one reduction moves: the pickled small state every rank gathers and the d x d float64
scatter summed by one ring all_reduce, for this d and for d = 2,048 and 8,192 (run with ``--d 2048`` or
``--d 8192`` and fewer ``--rows`` to time the reduction itself at those widths).

Times are wall-clock seconds from one run, generation of the chunks included in both routes; (b) is
timed on the ranks from a barrier to the end of the reduction (max over ranks; a second barrier before
the all_reduce keeps its own time free of waiting for a slower rank); the spawn and process-group
start-up are printed separately.

Usage:  python bench/distributed.py [--rows 2000000] [--d 512] [--chunk 50000] [--world 2]
"""

from __future__ import annotations

import argparse
import os
import pickle
import socket
import tempfile
import time

import numpy as np
import torch

import deepspan

SEED = 20261129
TOL = 1e-12


def chunk_bounds(rows: int, chunk: int) -> list[tuple[int, int]]:
    return [(i, min(chunk, rows - i)) for i in range(0, rows, chunk)]


def mixing(d: int) -> torch.Tensor:
    """The fixed 16 x d map that gives the features a low-rank structure (distinct top singular values)."""
    g = torch.Generator().manual_seed(SEED)
    return torch.randn((16, d), generator=g) / 4


def make_chunk(k: int, m: int, d: int, W: torch.Tensor) -> torch.Tensor:
    """Chunk k (m x d float32): ReLU of a 16-dim latent mapped by W, plus noise; seeded by (SEED, k)."""
    g = torch.Generator().manual_seed(SEED * 1_000_003 + k)
    z = torch.randn((m, 16), generator=g)
    return torch.relu(z @ W + 0.1) + 0.3 * torch.randn((m, d), generator=g)


def stream(chunks: list[tuple[int, tuple[int, int]]], d: int) -> deepspan.GramAccumulator:
    W = mixing(d)
    acc = deepspan.GramAccumulator()
    for k, (_, m) in chunks:
        acc.update(make_chunk(k, m, d, W))
    return acc


def worker(rank: int, world: int, port: int, rows: int, d: int, chunk: int, out: str) -> None:
    import torch.distributed as dist

    from deepspan import distributed as dd

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        allc = list(enumerate(chunk_bounds(rows, chunk)))
        per = -(-len(allc) // world)
        mine = allc[rank * per:(rank + 1) * per]  # contiguous shard of chunks
        dist.barrier()
        t0 = time.perf_counter()
        acc = stream(mine, d)
        t1 = time.perf_counter()
        dist.barrier()  # so that the reduction's time below is not the wait for a slower rank
        t1b = time.perf_counter()
        merged = dd.all_reduce(acc)
        t2 = time.perf_counter()
        info = {"rank": rank, "rows": acc.n_samples, "stream_s": t1 - t0, "wait_s": t1b - t1, "reduce_s": t2 - t1b,
                "total_s": t2 - t0, "threads": torch.get_num_threads()}
        infos = [None] * world
        dist.all_gather_object(infos, info)
        if rank == 0:
            with open(out, "wb") as f:
                pickle.dump({"infos": infos, "merged": merged.state_dict()}, f)
    finally:
        dist.destroy_process_group()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def state_bytes(d: int) -> tuple[int, int]:
    """(the pickled small state every rank gathers: counts, mean, row fingerprint; the summed d x d float64)."""
    acc = deepspan.GramAccumulator()
    acc.update(np.random.default_rng(0).standard_normal((4, d)).astype(np.float32))
    state = acc.state_dict()
    small = {k: v for k, v in state.items() if k != "scatter"}
    return len(pickle.dumps(small)), int(state["scatter"].nbytes)


def rel(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.max(np.abs(a - b)) / np.max(np.abs(a)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=2_000_000)
    ap.add_argument("--d", type=int, default=512)
    ap.add_argument("--chunk", type=int, default=50_000)
    ap.add_argument("--world", type=int, default=2)
    args = ap.parse_args()
    rows, d, world = args.rows, args.d, args.world
    chunks = chunk_bounds(rows, args.chunk)
    print(f"deepspan {deepspan.__version__}, torch {torch.__version__}: {rows:,} x {d} float32 features in "
          f"{len(chunks)} chunks of {args.chunk:,} rows (generated per chunk, seeded by the chunk index), "
          f"{os.cpu_count()} CPU cores")

    # (a) one process, all chunks
    threads_a = torch.get_num_threads()
    t = time.perf_counter()
    acc_a = stream(list(enumerate(chunks)), d)
    t_a = time.perf_counter() - t
    print(f"(a) 1 process, {threads_a} torch threads: {t_a:.2f} s  ({acc_a.n_samples:,} rows)")

    # (b) `world` gloo processes on loopback, each its contiguous half of the chunks, then all_reduce
    import torch.multiprocessing as mp

    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "rank0.pkl")
        t = time.perf_counter()
        mp.spawn(worker, args=(world, free_port(), rows, d, args.chunk, out), nprocs=world, join=True)
        t_spawned = time.perf_counter() - t
        with open(out, "rb") as f:
            res = pickle.load(f)
    infos = res["infos"]
    acc_b = deepspan.GramAccumulator.from_state_dict(res["merged"])
    t_b = max(i["total_s"] for i in infos)
    t_red = max(i["reduce_s"] for i in infos)
    for i in infos:
        print(f"    rank {i['rank']}: {i['rows']:,} rows, {i['threads']} torch thread(s), "
              f"stream {i['stream_s']:.2f} s, "
              f"wait at barrier {i['wait_s']:.2f} s, all_reduce {i['reduce_s']:.3f} s")
    print(f"(b) {world} gloo processes x 1 torch thread, stream + all_reduce (max over ranks): {t_b:.2f} s; "
          f"with spawn and process-group start-up: {t_spawned:.2f} s")
    print(f"ratio (a)/(b): {t_a / t_b:.2f}x  (with start-up: {t_a / t_spawned:.2f}x)")

    # the same answer?
    sa, sb = acc_a.finalize(), acc_b.finalize()
    pa, pb = deepspan.pvector_from_stats(sa), deepspan.pvector_from_stats(sb)
    assert sa.n_samples == sb.n_samples == rows
    r_scatter = rel(sa.scatter, sb.scatter)
    r_gram = rel(sa.scatter + sa.n_samples * np.outer(sa.mean, sa.mean),
                 sb.scatter + sb.n_samples * np.outer(sb.mean, sb.mean))
    r_sv = float(np.max(np.abs(pa.singular_values - pb.singular_values) / pa.singular_values))
    ok = max(r_scatter, r_gram, r_sv) <= TOL
    print(f"identical to {TOL:.0e} relative: scatter {r_scatter:.1e}, Gram F^T F {r_gram:.1e}, top "
          f"{len(pa.singular_values)} singular values {r_sv:.1e}, "
          f"bitwise equal scatter: {bool(np.array_equal(sa.scatter, sb.scatter))} -> {'PASS' if ok else 'FAIL'}")
    print(f"    sigma_1 = {pa.singular_values[0]:.6f} (a), {pb.singular_values[0]:.6f} (b)")

    # the reduction's cost
    print(f"reduction: all_reduce alone {t_red:.3f} s (max over ranks), {t_red / t_b:.2%} of (b)")
    print("what one reduction moves per rank: the small state (count, mean, row fingerprint) to every rank, and "
          "the d x d float64 scatter through one ring all_reduce, about 2 (world - 1) / world x its size sent")
    for dd_ in sorted({d, 2048, 8192}):
        small, big = state_bytes(dd_)
        ring = 2 * (world - 1) / world * big
        print(f"    d = {dd_:,}: small state {small:,} bytes; scatter {big:,} bytes ({big / 2**20:.1f} MiB); "
              f"sent by one rank in the ring, world = {world}: {ring / 2**20:.1f} MiB")


if __name__ == "__main__":
    main()
