"""Benchmark of feature extraction and tracking (a script, not a test: ratios from one run).

1. Extraction with streaming statistics -- ``extract(..., accumulators={layer:
   GramAccumulator()}, keep=False)`` at two layers (a conv block, global-average
   pooled, and the penultimate layer) -- against the bare forward pass
   ``model(x)`` over the same 10,000 28x28 images in the same batches.
   Target: <= 1.3x.
2. Tracking every epoch -- one ``Tracker.step`` on a 5,000-sample probe set
   (forward pass, P-vectors with a top-5 spectrum, angles to the data and the
   previous checkpoint, atomic table write) -- against one training epoch
   (SGD, cross-entropy) on 50,000 images (the size of MNIST's training split).
   Target: <= 10 % overhead.

The images are the 1,797 embedded 8x8 digits upsampled to 28x28 (bilinear),
repeated with small seeded noise: real digit shapes at MNIST's size, offline.
Timings are minima over interleaved rounds (this shared VM's speed drifts).

Usage:  python bench/extract.py [--rounds 5]
"""

from __future__ import annotations

import argparse
import tempfile
import time

import numpy as np
import torch
from torch import nn

import deepspan
from deepspan.data import Dataset, load_digits


class SmallCNN(nn.Module):
    """conv(1->16) relu pool conv(16->32) relu pool -> fc(800->128) relu -> fc(128->10)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, 3)
        self.relu1 = nn.ReLU()
        self.pool1 = nn.MaxPool2d(2)
        self.conv2 = nn.Conv2d(16, 32, 3)
        self.relu2 = nn.ReLU()
        self.pool2 = nn.MaxPool2d(2)
        self.fc1 = nn.Linear(32 * 5 * 5, 128)
        self.relu3 = nn.ReLU()
        self.fc2 = nn.Linear(128, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool1(self.relu1(self.conv1(x)))
        x = self.pool2(self.relu2(self.conv2(x)))
        return self.fc2(self.relu3(self.fc1(x.flatten(1))))


def digits28(n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    d = load_digits()
    base = torch.nn.functional.interpolate(torch.tensor(d.X[:, None], dtype=torch.float32), size=(28, 28),
                                           mode="bilinear", align_corners=False)
    g = torch.Generator().manual_seed(seed)
    idx = torch.arange(n) % len(base)
    X = base[idx] + 0.05 * torch.randn((n, 1, 28, 28), generator=g)
    return X, torch.as_tensor(d.y)[idx]


def bare_forward(model: nn.Module, X: torch.Tensor, batch_size: int) -> float:
    model.eval()
    t = time.perf_counter()
    with torch.no_grad():
        for i in range(0, len(X), batch_size):
            model(X[i : i + batch_size])
    return time.perf_counter() - t


def streamed_extract(model: nn.Module, X: torch.Tensor, batch_size: int) -> float:
    accs = {"relu2": deepspan.GramAccumulator(), "relu3": deepspan.GramAccumulator()}
    t = time.perf_counter()
    deepspan.extract(model, X, ["relu2", "relu3"], policy={"relu2": "gap"}, accumulators=accs, keep=False,
                     batch_size=batch_size, progress=False)
    for acc in accs.values():
        acc.finalize()
    return time.perf_counter() - t


def train_epoch(model: nn.Module, X: torch.Tensor, y: torch.Tensor, batch_size: int = 128) -> float:
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    model.train()
    t = time.perf_counter()
    for i in range(0, len(X), batch_size):
        opt.zero_grad()
        nn.functional.cross_entropy(model(X[i : i + batch_size]), y[i : i + batch_size]).backward()
        opt.step()
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    torch.manual_seed(0)
    print(f"deepspan {deepspan.__version__}, torch {torch.__version__}, {torch.get_num_threads()} threads")

    model = SmallCNN()
    X, _ = digits28(10_000)
    bs = 256
    bare_forward(model, X[:512], bs)  # warm up
    t_bare = t_ext = float("inf")
    for _ in range(args.rounds):
        t_bare = min(t_bare, bare_forward(model, X, bs))
        t_ext = min(t_ext, streamed_extract(model, X, bs))
    print(f"\nextraction, 10,000 x 1x28x28, SmallCNN, batch {bs}, streaming Gram statistics at relu2 (gap, 32) "
          f"and relu3 (128):")
    print(f"  bare forward {t_bare:.3f} s | extract + accumulate {t_ext:.3f} s | ratio {t_ext / t_bare:.2f}x")

    Xtr, ytr = digits28(50_000, seed=1)
    Xp, yp = digits28(5_000, seed=2)
    probe = Dataset("digits28-probe", Xp.numpy(), yp.numpy(), np.array([f"p{i}" for i in range(5_000)]))
    with tempfile.TemporaryDirectory() as tmp:
        tracker = deepspan.Tracker(model, probe, ["relu2", "relu3"], policy={"relu2": "gap"}, out_dir=tmp)
        tracker.step(epoch=0)
        t_epoch = t_step = float("inf")
        for epoch in range(1, args.rounds + 1):
            t_epoch = min(t_epoch, train_epoch(model, Xtr, ytr))
            t = time.perf_counter()
            tracker.step(epoch=epoch)
            t_step = min(t_step, time.perf_counter() - t)
    print(f"\ntracking every epoch: one Tracker.step on a 5,000-sample probe (2 layers, top-5 spectrum, angles, "
          f"atomic table) vs one training epoch on 50,000 images (SGD, batch 128):")
    print(f"  epoch {t_epoch:.2f} s | step {t_step:.3f} s | overhead {100 * t_step / t_epoch:.1f} %")


if __name__ == "__main__":
    main()
