"""The trained runs of one ``deepspan reproduce``: train or load checkpoints under ``OUT/runs/<name>``.

A run is named by its zoo model (``cnn``), a second seed (``cnn@s1``), or an experiment's own member
name (the generalisation population) with the :class:`~deepspan.experiments.config.ModelSpec` it
was registered with. Each run's model is built once to read its layers; checkpoints are loaded
through the public :class:`~deepspan.track.CheckpointSeries`.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from deepspan.data import Dataset
from deepspan.errors import InputError
from deepspan.experiments.config import ModelSpec, ReproduceConfig
from deepspan.experiments.splits import DataSplits

__all__ = ["RunStore", "EVAL_SIZE"]

EVAL_SIZE = 2000  # training images of the evaluation loss, the training accuracy and the linear probe's fit


class RunStore:
    """Train (or find) the runs of a reproduction in ``runs_dir`` and hand out their checkpoints."""

    def __init__(self, cfg: ReproduceConfig, data: DataSplits, runs_dir: str | Path,
                 progress: bool | None = None) -> None:
        self.cfg = cfg
        self.data = data
        self.runs_dir = Path(runs_dir)
        self.progress = sys.stderr.isatty() if progress is None else bool(progress)
        self._specs: dict[str, ModelSpec] = {}
        self._layers: dict[str, tuple[list[str], str]] = {}

    # ------------------------------------------------------------------ specs and models
    def spec(self, name: str) -> ModelSpec:
        """The spec run ``name`` was registered with (a zoo model of the config by default)."""
        if name not in self._specs:
            self._specs[name] = self.cfg.model(name.split("@")[0])
        return self._specs[name]

    def register(self, name: str, spec: ModelSpec) -> None:
        """Name a run that is not a zoo model of the config (e.g. a population member)."""
        old = self._specs.get(name)
        if old is not None and old != spec:
            raise InputError(f"run {name!r} is already registered with another model spec")
        self._specs[name] = spec

    def seed_of(self, name: str) -> int:
        return int(name.split("@s")[1]) if "@s" in name else self.cfg.seed

    def factory(self, name: str):
        """A function that builds a fresh (untrained) model of run ``name``: for images of their shape, for
        vectors (N x L) an MLP with ``in_features=L`` (a model that needs images is refused, naming why)."""
        from deepspan.zoo.models import MODELS, image_only_reason

        spec = self.spec(name)
        n_classes = self.data.n_classes
        if self.data.is_vector:
            why = image_only_reason(spec.kind, self.data.input_shape)
            if why is not None:
                raise InputError(f"run {name!r} cannot be built: {why}")
            shape = {"in_features": self.data.input_shape[0]}
        else:
            c, h, w = self.data.image_shape
            shape = {"in_channels": c, "image_size": (h, w)}

        def build():
            return MODELS[spec.kind](n_classes=n_classes, **shape, **spec.kwargs())

        return build

    def _layer_info(self, name: str) -> tuple[list[str], str]:
        if name not in self._layers:
            m = self.factory(name)()
            layers = list(m.block_layers)
            if m.feature_layer not in layers:
                layers.append(m.feature_layer)
            self._layers[name] = (layers, m.feature_layer)
        return self._layers[name]

    def layers(self, name: str) -> list[str]:
        """Block layers of run ``name``'s model, input to output (its feature layer among them)."""
        return list(self._layer_info(name)[0])

    def output_layer(self, name: str) -> str | None:
        """The model's output module read as a sensitivity layer: a classifier's logits (``classifier``),
        SimCLR's projection head (``head``); None for the autoencoder (its output is the image)."""
        m = self.factory(name)()
        for candidate in ("classifier", "head"):
            if hasattr(m, candidate):
                return candidate
        return None

    def feature_layer(self, name: str) -> str:
        """The layer whose features the papers study (penultimate / bottleneck / encoder output)."""
        return self._layer_info(name)[1]

    # ------------------------------------------------------------------ training
    def ensure_trained(self, name: str, spec: ModelSpec | None = None, *, data: Dataset | None = None,
                       epochs: int | None = None, iterations: tuple[int, ...] | None = None,
                       seed: int | None = None) -> dict[str, Any]:
        """Train run ``name`` into ``runs/<name>`` unless its manifest says it is complete; return the manifest.

        Interrupted runs resume from their last complete epoch (``deepspan.zoo.train``). The initial
        weights are seeded (``seed``, default the run's seed) without touching the caller's RNG state.
        """
        import torch

        import math

        from deepspan.zoo.train import read_manifest, train

        if spec is not None:
            self.register(name, spec)
        spec = self.spec(name)
        folder = self.runs_dir / name
        epochs = (spec.epochs if spec.epochs is not None else self.cfg.epochs) if epochs is None else epochs
        if (folder / "manifest.json").is_file():
            m = read_manifest(folder)
            if m.get("complete") and m.get("epochs") == epochs:
                return m
        seed = self.seed_of(name) if seed is None else seed
        train_data = self.data.train if data is None else data
        if iterations is None:
            iterations = self.cfg.iterations(math.ceil(len(train_data) / self.cfg.batch_size))
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            model = self.factory(name)()
        train(model, train_data, paradigm=spec.paradigm, epochs=epochs, batch_size=self.cfg.batch_size,
              optimizer=spec.optimizer, lr=spec.lr, weight_decay=spec.weight_decay, schedule=spec.schedule,
              seed=seed, out_dir=folder, checkpoint_iterations=iterations, test_data=self.data.test,
              progress=self.progress, eval_size=EVAL_SIZE, augment=spec.augment())
        return read_manifest(folder)

    def model_record(self, name: str) -> dict[str, Any]:
        """One row of the report's models table: architecture, paradigm, parameters, epochs, optimiser and
        schedule, training images, final train / test (or linear-probe) accuracy and the chance level."""
        m = self.manifest(name)
        spec = self.spec(name)
        model = self.factory(name)()
        final = m["checkpoints"][-1]
        supervised = spec.paradigm == "supervised"
        return {"name": name, "architecture": type(model).__name__, "widths": list(spec.widths),
                "paradigm": spec.paradigm, "parameters": int(sum(p.numel() for p in model.parameters())),
                "epochs": int(m["epochs"]), "optimizer": spec.describe(), "batch_size": self.cfg.batch_size,
                "n_train": int(m["config"]["n_samples"]), "seed": self.seed_of(name),
                "checkpoints": len(m["checkpoints"]), "feature_layer": self.feature_layer(name),
                "train_accuracy": final.get("train_accuracy"),
                "test_accuracy": final.get("test_accuracy") if supervised else None,
                "probe_accuracy": None if supervised else final.get("probe_accuracy"),
                "n_test": len(self.data.test), "chance": 1.0 / self.data.n_classes,
                "accuracy_note": ("arg-max accuracy on the test split" if supervised else
                                  f"linear probe (ridge) on the {self.feature_layer(name)} features: fit on "
                                  f"{EVAL_SIZE} training images, scored on the test split")}

    # ------------------------------------------------------------------ checkpoints
    def manifest(self, name: str) -> dict[str, Any]:
        from deepspan.zoo.train import read_manifest

        return read_manifest(self.runs_dir / name)

    def checkpoints(self, name: str) -> list[dict[str, Any]]:
        """Checkpoint records of run ``name`` in training order (label, epoch, iteration, loss, accuracies)."""
        return list(self.manifest(name)["checkpoints"])

    def final_label(self, name: str) -> str:
        return self.checkpoints(name)[-1]["label"]

    def series(self, name: str):
        """The run's checkpoints as a public :class:`~deepspan.track.CheckpointSeries`."""
        from deepspan.track import CheckpointSeries

        return CheckpointSeries.from_manifest(self.runs_dir / name, self.factory(name))

    def load(self, name: str, label: str):
        """The model of run ``name`` at checkpoint ``label``, in eval mode."""
        from deepspan.track import load_state_dict

        return load_state_dict(self.factory(name)(), self.runs_dir / name / f"{label}.pt").eval()
