"""Benchmark: a linear-CKA permutation test against plain CKA calls (a script, not a test).

A permutation test of linear CKA with n_perm permutations could be run as n_perm plain CKA calls on
row-shuffled copies of Y, each centering both sides and forming three d x d products.
``deepspan.measures.significance.significance`` prepares both sides once and, per permutation, forms only
the cross product ||Y_c[perm]^T X_c||_F^2, in float32 (one row gather into a reused buffer). This script
times, in one run and on the same N x d float64 features (default 10,000 x 512, X seeded Gaussian with
decaying column scales, Y a noisy linear map of X):

(a) ``--calls`` (default 1,000) plain ``deepspan.cka(X, Y)`` calls (linear kernel): to keep the run short
    only ``--timed`` of them (default 20) are timed, and the per-call time is scaled to ``--calls``
    (reported as an extrapolation);
(b) ``significance(X, Y, "linear_cka", n_perm=--perms, n_boot=None)`` (default 1,000 permutations), all of
    it timed: validation, the value, the preparation and every permutation.

It prints both times, the ratio (a)/(b), and the cost of one permutation (all of (b) / n_perm, so the
one-time work is charged to the permutations) relative to one cka call, with PASS/FAIL against the targets
"(b) >= 5x faster than (a)" and "one permutation <= 0.5x one cka call". Times are wall-clock seconds of
one run with numpy's default BLAS threads; the full size takes minutes on a 2-core machine.

Usage:  python bench/significance.py [--n 10000] [--d 512] [--perms 1000] [--calls 1000] [--timed 20]
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

import deepspan
from deepspan.measures.significance import significance

SEED = 20261129
SPEED_TARGET = 5.0  # (a) / (b) at least this
PERM_TARGET = 0.5   # one permutation at most this many cka calls


def make_pair(n: int, d: int, seed: int = SEED) -> tuple[np.ndarray, np.ndarray]:
    """X (n x d float64, decaying column scales) and Y = X W + noise, so CKA is neither 0 nor 1."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d)) * np.geomspace(2.0, 0.2, d)
    W = rng.standard_normal((d, d)) / np.sqrt(d)
    Y = X @ W + 0.5 * rng.standard_normal((n, d))
    return X, Y


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=10_000, help="samples (rows)")
    ap.add_argument("--d", type=int, default=512, help="features of X and of Y")
    ap.add_argument("--perms", type=int, default=1_000, help="permutations of the significance test")
    ap.add_argument("--calls", type=int, default=1_000, help="plain cka calls that (a) stands for")
    ap.add_argument("--timed", type=int, default=20, help="cka calls actually timed (scaled to --calls)")
    args = ap.parse_args()
    timed = max(1, min(args.timed, args.calls))

    print(f"deepspan {deepspan.__version__}, numpy {np.__version__}, {os.cpu_count()} CPU(s)")
    X, Y = make_pair(args.n, args.d)
    print(f"features: X, Y {args.n:,} x {args.d} float64 (Y a noisy linear map of X), seed {SEED}")

    value = deepspan.cka(X, Y)  # warm-up (imports, BLAS threads), not timed
    t = time.perf_counter()
    for _ in range(timed):
        deepspan.cka(X, Y)
    per_call = (time.perf_counter() - t) / timed
    t_a = per_call * args.calls
    print(f"(a) {args.calls:,} x deepspan.cka(X, Y): {t_a:.1f} s  (extrapolated: {timed} calls timed, "
          f"{per_call * 1e3:.1f} ms per call, x {args.calls:,}); CKA = {value:.4f}")

    t = time.perf_counter()
    out = significance(X, Y, "linear_cka", n_perm=args.perms, n_boot=None, seed=0)
    t_b = time.perf_counter() - t
    per_perm = t_b / args.perms
    print(f"(b) significance(X, Y, 'linear_cka', n_perm={args.perms:,}, n_boot=None): {t_b:.1f} s "
          f"(measured); value {out.value:.4f}, p = {out.p_value:.4g}, null mean {out.null_mean:.4f} "
          f"(sd {out.null_sd:.2g}), calibrated {out.calibrated:.4f}")
    if abs(out.value - value) > 1e-10:
        print(f"    note: value differs from deepspan.cka by {abs(out.value - value):.1e}")

    speed = t_a / t_b
    cost = per_perm / per_call
    print(f"ratio (a)/(b): {speed:.1f}x   target >= {SPEED_TARGET:g}x: {verdict(speed >= SPEED_TARGET)}")
    print(f"one permutation: {per_perm * 1e3:.1f} ms = {cost:.2f}x one cka call   target <= {PERM_TARGET:g}x: "
          f"{verdict(cost <= PERM_TARGET)}")
    if args.calls != args.perms:
        print(f"    note: (a) stands for {args.calls:,} calls but (b) runs {args.perms:,} permutations; like for like "
              f"({args.perms:,} cka calls against (b)) the ratio is {per_call * args.perms / t_b:.1f}x")


if __name__ == "__main__":
    main()
