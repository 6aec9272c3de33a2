"""Benchmark of FeatureSet store checksums (a script, not a test: ratios from one run).

A realistic store -- one 60,000 x 512 float32 layer (123 MB, MNIST's training
split at a 512-wide layer) plus 60,000 int labels -- is saved and loaded

* ``save`` with its SHA-256 checksums against ``save`` with the checksum step
  replaced by a no-op (the cost of hashing each written file once);
* ``load(verify=True)`` against ``load(verify=False)``;
* ``load(mmap=True, verify=True)`` against ``load(mmap=True, verify=False)``
  (the map is lazy; verification reads the whole file once).

Timings are minima over interleaved rounds (this shared VM's speed drifts);
the files stay in the page cache, so disk speed is left out and the ratios are
upper bounds of what a cold disk would show.

Usage:  python bench/featureset_store.py [--rounds 5] [--rows 60000] [--cols 512]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

from deepspan.features import featureset as fsmod
from deepspan.features.featureset import FeatureSet, hash_sample_ids


def timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--rows", type=int, default=60_000)
    ap.add_argument("--cols", type=int, default=512)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    X = rng.standard_normal((args.rows, args.cols), dtype=np.float32)
    ids = np.arange(args.rows)
    fs = FeatureSet({"penultimate": X}, ids, hash_sample_ids(ids), {"penultimate": "flatten"},
                    labels=rng.integers(0, 10, args.rows))
    real = fsmod._file_checksum
    times: dict[str, list[float]] = {k: [] for k in ("save", "save_nosum", "load", "load_noverify", "mmap",
                                                     "mmap_noverify")}
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "store"
        for _ in range(args.rounds):
            times["save"].append(timed(lambda: fs.save(path)))
            fsmod._file_checksum = lambda p: ""
            try:
                times["save_nosum"].append(timed(lambda: fs.save(Path(d) / "plain")))
            finally:
                fsmod._file_checksum = real
            shutil.rmtree(Path(d) / "plain")
            times["load"].append(timed(lambda: FeatureSet.load(path)))
            times["load_noverify"].append(timed(lambda: FeatureSet.load(path, verify=False)))
            times["mmap"].append(timed(lambda: FeatureSet.load(path, mmap=True)))
            times["mmap_noverify"].append(timed(lambda: FeatureSet.load(path, mmap=True, verify=False)))
        # the checksummed store round-trips exactly
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            np.testing.assert_array_equal(FeatureSet.load(path)["penultimate"], X)
    m = {k: min(v) for k, v in times.items()}
    mb = X.nbytes / 1e6
    print(f"store: {args.rows} x {args.cols} float32 ({mb:.0f} MB) + labels; min of {args.rounds} rounds")
    print(f"save           with checksums {m['save']:.3f} s, without {m['save_nosum']:.3f} s: "
          f"ratio {m['save'] / m['save_nosum']:.2f}x")
    print(f"load           verify {m['load']:.3f} s, verify=False {m['load_noverify']:.3f} s: "
          f"ratio {m['load'] / m['load_noverify']:.2f}x")
    print(f"load mmap=True verify {m['mmap']:.3f} s, verify=False {m['mmap_noverify']:.4f} s: "
          f"+{m['mmap'] - m['mmap_noverify']:.3f} s")


if __name__ == "__main__":
    main()
