"""Settings of ``deepspan reproduce``: one :class:`ReproduceConfig` per scale.

Three scales share one code path and differ only in numbers:

* ``tiny``  -- the test suite's end-to-end run (8x8 digits, 2 epochs, small widths; seconds).
* ``quick`` -- the README's main job: MNIST, 10,000 training images, 6 epochs, a 1,000-image probe;
  about 4 minutes on 2 CPU cores (measured).
* ``full``  -- 50,000 training images, 15 epochs, a 2,000-image probe and a 48-run population; about
  45 minutes on 2 CPU cores (estimated from the quick run's training time and a reduced full-settings
  run's probe statistics; not run end to end here).

A config is plain data (``to_dict``); its :meth:`~ReproduceConfig.fingerprint` (a hash of the
dict) tags every saved result, so re-running with other settings never reuses stale results.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, replace
from typing import Any

from deepspan.errors import InputError

__all__ = ["ModelSpec", "ReproduceConfig", "SCALES", "config_for", "EXPECTED_MINUTES"]

SCALES = ("tiny", "quick", "full")
EXPECTED_MINUTES = {"tiny": 0.5, "quick": 4, "full": 45}


@dataclass(frozen=True)
class ModelSpec:
    """One zoo model: ``kind`` is a key of :data:`deepspan.zoo.MODELS`, trained with ``paradigm``."""

    kind: str
    paradigm: str
    widths: tuple[int, ...]
    optimizer: str = "sgd"
    lr: float | None = None
    extra: tuple[tuple[str, Any], ...] = ()

    def kwargs(self) -> dict[str, Any]:
        return {"widths": tuple(self.widths), **dict(self.extra)}


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
    iterations: tuple[int, ...]
    models: tuple[tuple[str, ModelSpec], ...]
    layerwise_epochs: tuple[int, ...]
    # generalisation population (experiment 5): MLPs over widths x learning rates x label noise,
    # each checkpointed at every epoch in population_epochs
    population_widths: tuple[int, ...]
    population_lrs: tuple[float, ...]
    population_noise: tuple[float, ...]
    population_epochs: int
    population_n_train: int
    bootstrap: int
    # subspace match (experiment 6): a second seed of this model
    match_model: str
    match_rows: int
    match_repeats: int
    match_eps: tuple[float, ...] = (0.15, 0.2, 0.25, 0.3, 0.5)
    # random-feature null baseline (experiment 2)
    random_widths: tuple[int, ...] = (256, 1024)
    data_dir: str | None = None

    def model(self, name: str) -> ModelSpec:
        for n, spec in self.models:
            if n == name:
                return spec
        raise InputError(f"no model {name!r} in this configuration; have {', '.join(self.names)}")

    @property
    def names(self) -> list[str]:
        return [n for n, _ in self.models]

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
        return (
            ("mlp", ModelSpec("mlp", "supervised", (64, 32))),
            ("cnn", ModelSpec("cnn", "supervised", (8, 16, 32))),
            ("resnet", ModelSpec("resnet", "supervised", (8, 16))),
            ("autoencoder", ModelSpec("autoencoder", "autoencoder", (8, 16), "adam", extra=(("latent_dim", 16),))),
            ("simclr", ModelSpec("simclr", "simclr", (8, 16, 32), "adam", extra=(("proj_dim", 16),))),
        )
    return (
        ("mlp", ModelSpec("mlp", "supervised", (256, 128))),
        ("cnn", ModelSpec("cnn", "supervised", (16, 32, 128))),
        ("resnet", ModelSpec("resnet", "supervised", (16, 32, 64))),
        ("autoencoder", ModelSpec("autoencoder", "autoencoder", (16, 32), "adam", extra=(("latent_dim", 32),))),
        ("simclr", ModelSpec("simclr", "simclr", (32, 64, 128), "adam", extra=(("proj_dim", 64),))),
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
            batch_size=64, iterations=(2, 5, 10), models=_models(scale), layerwise_epochs=(0, 1, 2),
            population_widths=(16, 64), population_lrs=(0.02, 0.1), population_noise=(0.0, 0.5),
            population_epochs=2, population_n_train=600, bootstrap=200,
            match_model="cnn", match_rows=200, match_repeats=2, random_widths=(64, 256), data_dir=data_dir)
    elif scale == "quick":
        cfg = ReproduceConfig(
            scale=scale, dataset=dataset, seed=seed, n_train=10_000, n_test=5_000, n_probe=1_000, epochs=6,
            batch_size=128, iterations=(2, 5, 10, 20, 40), models=_models(scale), layerwise_epochs=(0, 1, 2, 4, 6),
            population_widths=(32, 128, 512), population_lrs=(0.01, 0.1), population_noise=(0.0, 0.2, 0.5),
            population_epochs=3, population_n_train=4_000, bootstrap=2_000,
            match_model="cnn", match_rows=1_000, match_repeats=4, data_dir=data_dir)
    else:
        cfg = ReproduceConfig(
            scale=scale, dataset=dataset, seed=seed, n_train=50_000, n_test=10_000, n_probe=2_000, epochs=15,
            batch_size=128, iterations=(2, 5, 10, 20, 50, 100, 200), models=_models(scale),
            layerwise_epochs=(0, 1, 2, 5, 10, 15),
            population_widths=(32, 128, 512, 1024), population_lrs=(0.003, 0.01, 0.1),
            population_noise=(0.0, 0.2, 0.4, 0.6), population_epochs=6, population_n_train=10_000,
            bootstrap=5_000, match_model="cnn", match_rows=10_000, match_repeats=8, data_dir=data_dir)
    return replace(cfg, **overrides) if overrides else cfg
