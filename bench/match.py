"""Benchmark of the subspace-match algorithms (a script, not a test: ratios from one run).

Each case runs deepspan's Gram route and the plain least-squares route
(tests/match_reference.py: one ``numpy.linalg.lstsq`` per pruning step) in the
same process and requires identical index sets:

1. maximum match, N = 10,000, 512 + 512 neurons with a planted 64-dim shared
   subspace (target >= 5x);
2. v-minimal match of one neuron, N = 10,000, 128 + 128 hidden ReLU neurons of
   two differently seeded trained MLPs, eps = 0.5 (target >= 20x);
3. all simple matches of that layer pair (deepspan only; the least-squares
   route would take about an hour);
4. a conv layer under the ``channels`` policy with every (image, position)
   pair of 1,000 images (676,000 rows x 32 + 32 channels), accumulated in one
   streaming pass of both networks in lockstep; time and peak memory, measured
   in a fresh subprocess.

Usage:  python bench/match.py [--skip-ls-minimal]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from match_reference import ls_max_match, ls_minimal_match  # noqa: E402

import deepspan  # noqa: E402
from deepspan.measures.match import MatchGram  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from extract import digits28  # noqa: E402


def planted(n: int = 10_000, width: int = 512, shared: int = 64, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    Q = rng.standard_normal((n, shared))

    def mixing() -> np.ndarray:  # a well-conditioned basis change of the shared subspace
        R, _ = np.linalg.qr(rng.standard_normal((shared, shared)))
        return R * rng.uniform(0.5, 2.0, shared)

    A = np.hstack([Q @ mixing(), rng.standard_normal((n, width - shared))])
    B = np.hstack([Q @ mixing(), rng.standard_normal((n, width - shared))])
    A += 0.01 * rng.standard_normal(A.shape)
    B += 0.01 * rng.standard_normal(B.shape)
    pa, pb = rng.permutation(width), rng.permutation(width)
    return A[:, pa], B[:, pb]


def trained_hidden(seed: int, X: torch.Tensor, y: torch.Tensor, probe: torch.Tensor, width: int = 128) -> np.ndarray:
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, width), nn.ReLU(), nn.Linear(width, 10))
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    for _ in range(2):
        for i in range(0, len(X), 128):
            opt.zero_grad()
            nn.functional.cross_entropy(model(X[i : i + 128]), y[i : i + 128]).backward()
            opt.step()
    return deepspan.extract(model, probe, "2", progress=False)["2"].astype(np.float64)


class _Lockstep:
    """Feeds a CrossGramAccumulator with the batches of two hooked layers of one forward pass."""

    def __init__(self, cross: deepspan.CrossGramAccumulator) -> None:
        self.cross, self.pending = cross, None

    def first(self):
        outer = self

        class A:
            def update(self, batch):
                outer.pending = batch

        return A()

    def second(self):
        outer = self

        class B:
            def update(self, batch):
                outer.cross.update(outer.pending, batch)

        return B()


class _Pair(nn.Module):
    def __init__(self, a: nn.Module, b: nn.Module) -> None:
        super().__init__()
        self.a, self.b = a, b

    def forward(self, x):
        return self.a(x), self.b(x)


def conv_child() -> None:
    """Fresh process: stream every (image, position) pair of 1,000 images through two CNNs' first conv block."""
    X, _ = digits28(1000, seed=3)
    nets = []
    for seed in (1, 2):
        torch.manual_seed(seed)
        nets.append(nn.Sequential(nn.Conv2d(1, 32, 3), nn.ReLU()))
    cross = deepspan.CrossGramAccumulator()
    lock = _Lockstep(cross)
    t = time.perf_counter()
    deepspan.extract(_Pair(*nets), X, ["a.1", "b.1"], policy="channels", keep=False, batch_size=100,
                     accumulators={"a.1": lock.first(), "b.1": lock.second()}, progress=False)
    mg = MatchGram.from_stats(cross.finalize())
    sims = {e: mg.max_match(e).similarity for e in (0.15, 0.2, 0.25, 0.3, 0.5)}
    elapsed = time.perf_counter() - t
    with open("/proc/self/status") as f:
        hwm = next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))
    print(json.dumps({"rows": cross.n_samples, "seconds": elapsed, "peak_rss_mb": hwm / 1024, "similarity": sims}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--skip-ls-minimal", action="store_true", help="skip the slow least-squares minimal match")
    ap.add_argument("--conv-child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.conv_child:
        conv_child()
        return
    print(f"deepspan {deepspan.__version__}, numpy {np.__version__}, torch {torch.__version__}")

    # 1. maximum match
    A, B = planted()
    eps = 0.2
    t_gram = t_ls = float("inf")
    for _ in range(3):  # interleaved rounds, minimum of each (the VM's speed drifts)
        t = time.perf_counter()
        m = deepspan.max_match(A, B, eps)
        t_gram = min(t_gram, time.perf_counter() - t)
        t = time.perf_counter()
        ra, rb = ls_max_match(A, B, eps)
        t_ls = min(t_ls, time.perf_counter() - t)
    same = np.array_equal(m.a, ra) and np.array_equal(m.b, rb)
    print(f"\n1. maximum match, N=10,000, 512+512 neurons, planted 64-dim shared subspace, eps={eps}: "
          f"{len(m.a)}+{len(m.b)} matched (similarity {m.similarity:.4f}); identical index sets: {same}")
    print(f"   gram {t_gram:.3f} s | least squares {t_ls:.3f} s | speed-up {t_ls / t_gram:.1f}x")
    assert same

    # 2. v-minimal match on two trained networks
    Xtr, ytr = digits28(10_000, seed=1)
    probe, _ = digits28(10_000, seed=4)
    Ha = trained_hidden(1, Xtr, ytr, probe)
    Hb = trained_hidden(2, Xtr, ytr, probe)
    eps = 0.5
    t = time.perf_counter()
    mg = MatchGram.from_activations(Ha, Hb)
    mm = mg.max_match(eps)
    v = int(mm.a[0]) if len(mm.a) else 0
    vmin = mg.minimal_match("a", v, eps)
    t_gram = time.perf_counter() - t
    print(f"\n2. v-minimal match, N=10,000, 128+128 hidden ReLU neurons of two seeds, eps={eps}: maximum match "
          f"{len(mm.a)}+{len(mm.b)} (dead {mm.dead_a}+{mm.dead_b}); v = A[{v}] -> minimal match "
          f"{None if vmin is None else (vmin.a.tolist(), vmin.b.tolist())}")
    if not args.skip_ls_minimal:
        t = time.perf_counter()
        ref = ls_minimal_match(Ha, Hb, "a", v, eps)
        t_ls = time.perf_counter() - t
        same = ref is not None and vmin is not None and np.array_equal(vmin.a, ref[0]) and np.array_equal(vmin.b, ref[1])
        print(f"   gram {t_gram:.3f} s (Gram + maximum + minimal match) | least squares {t_ls:.1f} s | "
              f"speed-up {t_ls / t_gram:.0f}x | identical: {same}")
        assert same
    else:
        print(f"   gram {t_gram:.3f} s")

    # 3. all simple matches of the layer pair
    t = time.perf_counter()
    simple = mg.simple_matches(eps)
    t_simple = time.perf_counter() - t
    sizes = sorted((s.size for s in simple), reverse=True)
    print(f"\n3. all simple matches of that pair at eps={eps}: {len(simple)} distinct, sizes {sizes[:12]}"
          f"{' ...' if len(sizes) > 12 else ''}; {t_simple:.1f} s")

    # 4. conv layer, every (image, position) pair, streamed
    proc = subprocess.run([sys.executable, __file__, "--conv-child"], capture_output=True, text=True, check=True)
    r = json.loads(proc.stdout.strip().splitlines()[-1])
    sims = ", ".join(f"{k}: {v:.3f}" for k, v in r["similarity"].items())
    print(f"\n4. conv layer (32+32 channels), channels policy, all {r['rows']:,} (image, position) rows of 1,000 "
          f"images, one streaming pass of both nets: {r['seconds']:.2f} s, peak RSS {r['peak_rss_mb']:.0f} MB; "
          f"similarity by eps {{{sims}}}")


if __name__ == "__main__":
    main()
