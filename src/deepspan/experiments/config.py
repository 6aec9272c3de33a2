"""Settings of ``deepspan reproduce``: one :class:`ReproduceConfig` per scale.

Three scales share one code path and differ only in numbers:

* ``tiny``  -- the test suite's end-to-end run (8x8 digits, 2 epochs, small widths; seconds).
* ``quick`` -- the README's main job: MNIST, 20,000 training images, 6 epochs (MLP 10, VGG 4, autoencoder and
  SimCLR 3), SGD with momentum, weight decay and a cosine schedule, so the supervised models converge (test
  accuracy on all 10,000 test images: CNN and ResNet >= 98.5 %, MLP >= 97 %); 7 min 18 s on 2 CPU cores
  (measured 2026-11-29), plus the install from a fresh clone.
* ``full``  -- all 50,000 training images of the bundled MNIST (the original 60,000 less the 10,000 of its
  validation split), 12 epochs (MLP 25, CNN 15 with random shifts of up to 2 px, VGG 10, autoencoder 8,
  SimCLR 4), 16 subspace-match draws of 10,000 rows, a 24-member generalisation population; 34 minutes on
  2 CPU cores (measured 2026-11-29).

Training protocol (``ModelSpec``): the papers' models were trained to convergence ("well-trained
models (model of epoch 200 in our case)", Liu et al. 2022, A.1); their optimiser settings are not
readable except in Wang et al.'s code (SGD, momentum 0.9, weight decay 5e-4, lr x0.1 at 50 % and
75 % of training). Supervised models here use SGD (momentum 0.9, weight decay 5e-4) with a per-step
cosine schedule [ours]; the VGG-style pair of the subspace match uses Wang et al.'s step schedule;
the autoencoder and SimCLR use Adam with a cosine schedule [ours].

Checkpoints: ``init``, ``iterations_in_epoch1`` evenly spaced steps inside epoch 1 (Liu et al. follow
every iteration of epoch 1, A.2; we keep a dense subset), then the end of every epoch.

A config is plain data (``to_dict``); its :meth:`~ReproduceConfig.fingerprint` (a hash of the
dict) tags every saved result, so re-running with other settings never reuses stale results. The run's
own config (``ReproContext.cfg``) also carries ``data_hash``, the content hash of the loaded data, so a
file changed at the same path is other settings too; and it lists only the models the data can feed
(vector data: the MLP).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np

from deepspan.errors import InputError

__all__ = ["ModelSpec", "ReproduceConfig", "SCALES", "config_for", "EXPECTED_MINUTES"]

SCALES = ("tiny", "quick", "full")
EXPECTED_MINUTES = {"tiny": 1, "quick": 8, "full": 35}


@dataclass(frozen=True)
class ModelSpec:
    """One zoo model: ``kind`` is a key of :data:`deepspan.zoo.MODELS`, trained with ``paradigm``."""

    kind: str
    paradigm: str
    widths: tuple[int, ...]
    optimizer: str = "sgd"
    lr: float | None = None
    extra: tuple[tuple[str, Any], ...] = ()
    weight_decay: float = 0.0
    schedule: str = "constant"
    epochs: int | None = None  # None: the config's epochs
    #: random crop at training time (supervised only): zero-pad by ``shift`` pixels, take a random window
    #: (:func:`deepspan.zoo.augment.random_translate`); 0 = no augmentation. Extraction never augments.
    shift: int = 0

    def augment(self):
        """The training augmentation of this spec (a :class:`~deepspan.zoo.augment.Augment`), or None."""
        if not self.shift or self.paradigm != "supervised":
            return None
        from deepspan.zoo.augment import Augment

        return Augment(max_shift=int(self.shift), degrees=0.0, scale=(1.0, 1.0), noise_std=0.0)

    def kwargs(self) -> dict[str, Any]:
        return {"widths": tuple(self.widths), **dict(self.extra)}

    def describe(self) -> str:
        """The optimiser and schedule in words, e.g. ``SGD lr 0.1, momentum 0.9, weight decay 0.0005, cosine schedule``."""
        lr = self.lr if self.lr is not None else (0.05 if self.optimizer == "sgd" else 1e-3)
        parts = [f"{'SGD' if self.optimizer == 'sgd' else 'Adam'} lr {lr:g}"]
        if self.optimizer == "sgd":
            parts.append("momentum 0.9")
        if self.weight_decay:
            parts.append(f"weight decay {self.weight_decay:g}")
        parts.append({"constant": "constant rate", "cosine": "cosine schedule",
                      "steps": "x0.1 at 50 % and 75 % of training"}[self.schedule])
        if self.augment() is not None:
            parts.append(f"random shifts of up to {self.shift} px in training")
        return ", ".join(parts)


@dataclass(frozen=True)
class ReproduceConfig:
    """Everything ``deepspan reproduce`` needs to know; see the module docstring for the scales."""

    scale: str
    dataset: str
    seed: int
    n_train: int
    n_test: int
    n_probe: int
    epochs: int
    batch_size: int
    iterations_in_epoch1: int
    models: tuple[tuple[str, ModelSpec], ...]
    layerwise_epochs: tuple[int, ...]
    # generalisation population (experiment 5): MLP members varying one setting at a time around a
    # base member, plus a grid of width x label noise; each trained to the end of population_epochs
    population_widths: tuple[int, ...]
    population_depths: tuple[int, ...]
    population_lrs: tuple[float, ...]
    population_wds: tuple[float, ...]
    population_noise: tuple[float, ...]
    population_sizes: tuple[int, ...]
    population_epochs: int
    bootstrap: int
    # subspace match (experiment 6): a second seed of each of these models
    match_models: tuple[str, ...]
    match_rows: int
    match_repeats: int
    # the training-set probe: a fixed class-balanced subset of the training split (model-vs-data angles,
    # the layer-wise study, the spectrum and neural collapse)
    n_train_probe: int = 1000
    match_only: tuple[str, ...] = ("vgg",)
    match_eps: tuple[float, ...] = (0.15, 0.2, 0.25, 0.3, 0.5)
    # random-feature null baseline (experiment 2)
    random_widths: tuple[int, ...] = (256, 1024)
    # significance of the headline angles and similarities (deepspan.significance): permutations of the
    # samples for the p-value and the null band, bootstrap resamples for the 95 % interval
    n_perm: int = 1000
    n_boot: int = 200
    data_dir: str | None = None
    #: content hash of the training and test data (:attr:`DataSplits.content_hash`), set by ``ReproContext``:
    #: part of the fingerprint, so the same path with other contents is another run ("" before it is known)
    data_hash: str = ""

    def model(self, name: str) -> ModelSpec:
        for n, spec in self.models:
            if n == name:
                return spec
        raise InputError(f"no model {name!r} in this configuration; have {', '.join(self.names)}")

    @property
    def names(self) -> list[str]:
        return [n for n, _ in self.models]

    @property
    def zoo_names(self) -> list[str]:
        """The models of the P-vector and spectrum experiments: all but the ``match_only`` architectures."""
        return [n for n in self.names if n not in self.match_only]

    def epochs_of(self, name: str) -> int:
        spec = self.model(name.split("@")[0])
        return self.epochs if spec.epochs is None else int(spec.epochs)

    def iterations(self, steps_per_epoch: int) -> tuple[int, ...]:
        """``iterations_in_epoch1`` global steps spread evenly over epoch 1 (excluding its end)."""
        n = min(self.iterations_in_epoch1, max(steps_per_epoch - 1, 0))
        if n <= 0:
            return ()
        pts = np.unique(np.round(np.linspace(1, steps_per_epoch - 1, n)).astype(int))
        return tuple(int(p) for p in pts)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["models"] = {n: asdict(s) for n, s in self.models}
        return json.loads(json.dumps(d))

    def fingerprint(self) -> str:
        """Hash of the settings that change results (``data_dir`` is where files are, not what they hold)."""
        d = self.to_dict()
        d.pop("data_dir", None)
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]


def _models(scale: str) -> tuple[tuple[str, ModelSpec], ...]:
    if scale == "tiny":
        sgd = dict(lr=0.05, weight_decay=5e-4, schedule="cosine")
        return (
            ("mlp", ModelSpec("mlp", "supervised", (64, 32), **sgd)),
            ("cnn", ModelSpec("cnn", "supervised", (8, 16, 32), **sgd)),
            ("resnet", ModelSpec("resnet", "supervised", (8, 16), **sgd)),
            ("autoencoder", ModelSpec("autoencoder", "autoencoder", (8, 16), "adam", extra=(("latent_dim", 16),),
                                      schedule="cosine")),
            ("simclr", ModelSpec("simclr", "simclr", (8, 16, 32), "adam", extra=(("proj_dim", 16),),
                                 schedule="cosine")),
            ("vgg", ModelSpec("vgg", "supervised", (8, 8, 16, 16, 32), lr=0.05, weight_decay=5e-4, schedule="steps")),
        )
    sgd = dict(lr=0.1, weight_decay=5e-4, schedule="cosine")
    # epochs per model where they differ from the config's (quick 6, full 12): cheap models train longer, the
    # costly self-supervised one shorter; every supervised model's accuracy is in the report's models table
    quick = scale == "quick"
    return (
        ("mlp", ModelSpec("mlp", "supervised", (256, 128), epochs=10 if quick else 25, **sgd)),
        # full: random shifts of <= 2 px lift the CNN from 99.16 % to 99.37 % test accuracy (15 epochs, measured)
        ("cnn", ModelSpec("cnn", "supervised", (16, 32, 128), epochs=None if quick else 15, shift=0 if quick else 2,
                          **sgd)),
        ("resnet", ModelSpec("resnet", "supervised", (16, 32, 64), extra=(("stem_stride", 2),), **sgd)),
        # quick: the autoencoder's linear probe levels off after 2 epochs (83.8 % at epoch 2, 83.4 % at epoch 6)
        ("autoencoder", ModelSpec("autoencoder", "autoencoder", (16, 32), "adam", extra=(("latent_dim", 32),),
                                  schedule="cosine", epochs=3 if quick else 8)),
        ("simclr", ModelSpec("simclr", "simclr", (32, 64, 128), "adam", extra=(("proj_dim", 64), ("stem_stride", 2)),
                             schedule="cosine", epochs=3 if quick else 4)),
        ("vgg", ModelSpec("vgg", "supervised", (8, 16, 32, 32, 128), lr=0.05, weight_decay=5e-4, schedule="steps",
                          epochs=4 if quick else 10)),
    )


def config_for(scale: str = "quick", dataset: str | None = None, seed: int = 0,
               data_dir: str | None = None, **overrides: Any) -> ReproduceConfig:
    """The configuration of ``scale`` (``tiny``, ``quick`` or ``full``) on ``dataset``.

    ``dataset`` defaults to ``digits`` for ``tiny`` and ``mnist`` otherwise; sizes are capped by what
    the dataset holds. ``overrides`` replace single fields (for experiments with other settings).
    """
    if scale not in SCALES:
        raise InputError(f"unknown scale {scale!r}; choose one of {', '.join(SCALES)}")
    dataset = dataset or ("digits" if scale == "tiny" else "mnist")
    if scale == "tiny":
        cfg = ReproduceConfig(
            scale=scale, dataset=dataset, seed=seed, n_train=1500, n_test=297, n_probe=200, epochs=2,
            batch_size=64, iterations_in_epoch1=5, models=_models(scale), layerwise_epochs=(0, 1, 2),
            population_widths=(16, 64), population_depths=(1, 2), population_lrs=(0.02, 0.1),
            population_wds=(0.0, 5e-4), population_noise=(0.0, 0.5), population_sizes=(400, 800),
            population_epochs=2, bootstrap=200, match_models=("cnn", "vgg"), match_rows=200, match_repeats=2,
            n_train_probe=200, random_widths=(64, 256), n_perm=100, n_boot=30, data_dir=data_dir)
    elif scale == "quick":
        cfg = ReproduceConfig(
            scale=scale, dataset=dataset, seed=seed, n_train=20_000, n_test=10_000, n_probe=1_000, epochs=6,
            batch_size=128, iterations_in_epoch1=20, models=_models(scale), layerwise_epochs=(0, 1, 2, 4, 6),
            population_widths=(32, 128, 512), population_depths=(1, 2, 3), population_lrs=(0.02, 0.1),
            population_wds=(0.0, 5e-4), population_noise=(0.0, 0.2, 0.5), population_sizes=(2_000, 8_000),
            population_epochs=6, bootstrap=2_000, match_models=("cnn", "vgg"), match_rows=10_000, match_repeats=4,
            n_train_probe=1_000, n_perm=1000, n_boot=100, data_dir=data_dir)
    else:
        cfg = ReproduceConfig(
            scale=scale, dataset=dataset, seed=seed, n_train=50_000, n_test=10_000, n_probe=2_000, epochs=12,
            batch_size=128, iterations_in_epoch1=40, models=_models(scale),
            layerwise_epochs=(0, 1, 2, 4, 8, 12),
            population_widths=(32, 128, 512, 1024), population_depths=(1, 2, 3), population_lrs=(0.01, 0.03, 0.1),
            population_wds=(0.0, 5e-4, 5e-3), population_noise=(0.0, 0.2, 0.4, 0.6),
            population_sizes=(2_000, 8_000, 30_000), population_epochs=8, bootstrap=5_000,
            match_models=("cnn", "vgg"), match_rows=10_000, match_repeats=16, n_train_probe=1_000,
            data_dir=data_dir)
    return replace(cfg, **overrides) if overrides else cfg
