"""Benchmark: all-pairs linear CKA among 20 feature sets of 10,000 x 512 (a script, not a test).

deepspan's ``compare_many`` centers each set once and computes every pair from
a d x d cross product, ||Y_c^T X_c||_F^2 / (||X_c^T X_c|| ||Y_c^T Y_c||). The
naive route builds the two N x N Gram matrices of every pair, centers them
and takes HSIC ratios. Both run in this process; the naive route is timed on
``--naive-pairs`` pairs (default 3; its values must agree with deepspan's) and
its all-pairs time is that per-pair time x 190, reported as an extrapolation.

Features are float32 ReLU maps of a shared 64-dim latent with per-set random
projections and noise, so the CKA values are neither 0 nor 1.

Usage:  python bench/compare.py [--sets 20] [--n 10000] [--d 512] [--naive-pairs 3]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import deepspan


def make_sets(k: int, n: int, d: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    Z = rng.standard_normal((n, 64), dtype=np.float32)
    out = {}
    for i in range(k):
        W = (rng.standard_normal((64, d)) / 8).astype(np.float32)
        out[f"m{i:02d}"] = np.maximum(Z @ W + 0.1, 0) + 0.3 * rng.standard_normal((n, d), dtype=np.float32)
    return out


def naive_linear_cka(X: np.ndarray, Y: np.ndarray) -> float:
    """N x N Gram matrices, centered, HSIC ratio (float64)."""
    def centered_gram(A: np.ndarray) -> np.ndarray:
        A = A.astype(np.float64)
        K = A @ A.T
        r = K.mean(0)
        K -= r[None, :]
        K -= r[:, None]
        K += r.mean()
        return K

    K = centered_gram(X)
    L = centered_gram(Y)
    return float((K * L).sum() / np.sqrt((K * K).sum() * (L * L).sum()))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sets", type=int, default=20)
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--d", type=int, default=512)
    ap.add_argument("--naive-pairs", type=int, default=3)
    args = ap.parse_args()
    sets = make_sets(args.sets, args.n, args.d)
    n_pairs = args.sets * (args.sets - 1) // 2
    print(f"deepspan {deepspan.__version__}: {args.sets} feature sets of {args.n:,} x {args.d} float32, {n_pairs} pairs")

    t = time.perf_counter()
    rows = deepspan.compare_many(sets, ["linear_cka"])
    t_fast = time.perf_counter() - t
    value = {(r["model_a"], r["model_b"]): r["value"] for r in rows}
    vals = np.array(list(value.values()))
    print(f"compare_many (per-set statistics + d x d cross products): {t_fast:.1f} s for all {len(rows)} pairs; "
          f"CKA range {vals.min():.3f}-{vals.max():.3f}")

    names = list(sets)
    t = time.perf_counter()
    worst = 0.0
    for a, b in list(value)[: args.naive_pairs]:
        worst = max(worst, abs(naive_linear_cka(sets[a], sets[b]) - value[(a, b)]))
    per_pair = (time.perf_counter() - t) / args.naive_pairs
    t_naive = per_pair * n_pairs
    print(f"naive N x N Gram route: {per_pair:.2f} s per pair (timed on {args.naive_pairs} pairs, max |difference| "
          f"{worst:.1e}); all {n_pairs} pairs ~ {t_naive:.0f} s (extrapolated)")
    print(f"speed-up: {t_naive / t_fast:.0f}x")
    assert worst < 1e-8, "the two routes disagree"
    del names


if __name__ == "__main__":
    main()
