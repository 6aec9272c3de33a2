"""Benchmark: one training epoch of each zoo model on 10,000 MNIST-size (28x28) images, on CPU.

The images are the embedded 8x8 digits upsampled to 28x28 (``digits28`` from
bench/extract.py: bilinear ``torch.nn.functional.interpolate`` plus small seeded
noise), so nothing is downloaded. Each model trains for one epoch with its
paradigm (batch 128, no evaluation, no checkpoints); the time is the minimum
over ``--rounds`` runs (this shared VM's speed drifts). A script, not a test.

``train`` runs conv nets in the channels-last memory layout; ``--layout`` also times the same epoch in
the default (NCHW) layout in the same process, as the reference, and prints the ratio.

Usage:  python bench/zoo_epochs.py [--n 10000] [--rounds 1] [--batch-size 128] [--layout]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import importlib

import torch

train_mod = importlib.import_module("deepspan.zoo.train")  # the module (deepspan.zoo.train is also the function)

sys.path.insert(0, str(Path(__file__).resolve().parent))
from extract import digits28  # noqa: E402

from deepspan.zoo import MLP, Augment, ConvAutoencoder, ResNetStyle, SimCLR, SmallCNN, train  # noqa: E402

CASES = [
    ("MLP (256,128)", MLP, "supervised", "sgd"),
    ("SmallCNN", SmallCNN, "supervised", "sgd"),
    ("ResNetStyle (16,32,64)", ResNetStyle, "supervised", "sgd"),
    ("ConvAutoencoder", ConvAutoencoder, "autoencoder", "adam"),
    ("SimCLR (2 views)", SimCLR, "simclr", "adam"),
]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--layout", action="store_true", help="also time the default NCHW layout (the reference)")
    args = ap.parse_args()
    X, y = digits28(args.n)
    X = X.clamp(0, 1)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {args.n} images 1x28x28, "
          f"batch {args.batch_size}, min of {args.rounds} round(s)\n")
    extra = f" {'NCHW s':>8} {'speed-up':>8}" if args.layout else ""
    print(f"{'model':<24} {'paradigm':<12} {'params':>9} {'epoch s':>8} {'img/s':>8} {'loss':>8}{extra}")

    def epoch(cls, paradigm, opt):
        best, loss, model = float("inf"), None, None
        for _ in range(args.rounds):
            torch.manual_seed(0)
            model = cls(1, 28, 10)
            t = time.perf_counter()
            r = train(model, (X, y), paradigm, epochs=1, batch_size=args.batch_size, optimizer=opt, seed=0,
                      checkpoint_iterations=(), eval_size=0, progress=False,
                      augment=Augment(max_shift=3) if paradigm == "simclr" else None)
            best = min(best, time.perf_counter() - t)
            loss = r.records[-1]["loss"]
        return best, loss, model

    for name, cls, paradigm, opt in CASES:
        best, loss, model = epoch(cls, paradigm, opt)
        n_params = sum(p.numel() for p in model.parameters())
        line = f"{name:<24} {paradigm:<12} {n_params:>9,} {best:>8.2f} {args.n / best:>8.0f} {loss:>8.4f}"
        if args.layout:
            enter = train_mod.enter_channels_last
            train_mod.enter_channels_last = lambda m: None  # the reference: the model's own (NCHW) layout
            try:
                ref, _, _ = epoch(cls, paradigm, opt)
            finally:
                train_mod.enter_channels_last = enter
            line += f" {ref:>8.2f} {ref / best:>7.2f}x"
        print(line, flush=True)


if __name__ == "__main__":
    main()
