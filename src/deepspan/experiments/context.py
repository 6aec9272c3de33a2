"""What one ``deepspan reproduce`` run shares between its experiments, split by job.

* ``ctx.data``  -- :class:`~deepspan.experiments.splits.DataSplits`: training / test splits and the probe;
* ``ctx.runs``  -- :class:`~deepspan.experiments.runstore.RunStore`: trained runs and their checkpoints;
* ``ctx.stats`` -- :class:`~deepspan.experiments.probestats.ProbeStatistics`: per-run trackers
  (P-vectors, spectra, angles over checkpoints) and feature stores on the probe, via the public API.

Layout of the output folder (``out``)::

    deepspan-reproduce.json        the settings (written once they are valid) and the experiment order
    runs/<name>/                   zoo training runs (checkpoints, manifest.json, resume.pt; deepspan.zoo.train)
    cache/track/<name>/            the run's Tracker store (rows.json, rows.csv, u/, U/, refs/)
    cache/features/<name>/<label>  FeatureSet stores of the feature layer
    results/<experiment>.json (+ .csv tables, .npz side files)
    split.json                     how the training / test split was made (for an .npz that deepspan split:
                                   the seed, the fraction and the held-out rows and ids)
    figures/, report.html, report.json   written by deepspan.report

Everything is computed once and reused: training resumes inside ``deepspan.zoo.train``, trackers
resume from their folders, and a run with other settings never reads stale files (the folder is
refused instead). The settings include the content hash of the data (``cfg.data_hash``), so a dataset
file changed at the same path is refused the same way, and the message names the data change.

Models the data cannot feed are skipped, with the reason, before anything is written: vector data
(N x L) runs only through the MLP, so the CNN, ResNet, VGG, autoencoder and SimCLR are dropped from
``ctx.cfg`` (:attr:`ReproContext.skipped_models`); an experiment whose every model is skipped, or that
compares models and is left with fewer than it needs, is skipped too (:meth:`ReproContext.skip_reason`).
Both are stated in the state file and in the provenance of every result (the report's header).
"""

from __future__ import annotations

import json
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from deepspan._io import atomic_write_json
from deepspan._version import __version__
from deepspan.errors import InputError
from deepspan.experiments.config import ReproduceConfig
from deepspan.experiments.probestats import ProbeStatistics
from deepspan.experiments.runstore import RunStore
from deepspan.experiments.splits import DataSplits

__all__ = ["ReproContext", "one_blas_thread", "STATE", "SPLIT_FILE", "experiment_models", "MIN_MODELS"]

STATE = "deepspan-reproduce.json"
SPLIT_FILE = "split.json"


def experiment_models(name: str, cfg: ReproduceConfig) -> list[str] | None:
    """The models of ``cfg`` that the built-in experiment ``name`` trains; None for an experiment that trains
    none of them (the generalisation study trains its own MLP population) or that is not built in."""
    if name in ("convergence", "common_subspace", "beyond_top", "baselines"):
        return list(cfg.zoo_names)
    if name == "spectrum":
        return [n for n in cfg.zoo_names if cfg.model(n).paradigm == "supervised"]
    if name == "layerwise":
        from deepspan.experiments.layerwise import MODELS

        return [n for n in MODELS if n in cfg.zoo_names]
    if name == "subspace_match":
        return list(cfg.match_models)
    return None


#: Built-in experiments that compare models with each other: how many models they need (others need one).
MIN_MODELS = {"common_subspace": 2, "baselines": 2}


class ReproContext:
    """Data, runs and probe statistics of a reproduction in ``out`` (see the module docstring).

    ``requested`` is the config as given; ``cfg`` the run's own: ``data_hash`` set and the models the data
    cannot feed left out (:attr:`skipped_models`). Its fingerprint is the run's identity.
    """

    def __init__(self, cfg: ReproduceConfig, out: str | Path, progress: bool | None = None,
                 experiments: list[str] | None = None) -> None:
        self.requested = cfg
        self.out = Path(out)
        self.progress = sys.stderr.isatty() if progress is None else bool(progress)
        self.results_dir = self.out / "results"
        self.data = DataSplits(cfg)
        self.data.validate()  # a dataset that cannot be used is refused before anything is written
        #: model name -> why it is skipped (e.g. it needs images and the data are vectors)
        self.skipped_models: dict[str, str] = self._skip_models(cfg)
        self.cfg = replace(cfg, data_hash=self.data.content_hash,
                           models=tuple((n, s) for n, s in cfg.models if n not in self.skipped_models),
                           match_models=tuple(m for m in cfg.match_models if m not in self.skipped_models))
        self.data.cfg = self.cfg
        self.runs = RunStore(self.cfg, self.data, self.out / "runs", progress=self.progress)
        self.stats = ProbeStatistics(self.runs, self.data, self.out / "cache")
        old = self._check_folder()
        self._write_state(old, experiments)

    def _skip_models(self, cfg: ReproduceConfig) -> dict[str, str]:
        from deepspan.zoo.models import image_only_reason

        out = {}
        for name, spec in cfg.models:
            why = image_only_reason(spec.kind, self.data.input_shape)
            if why is not None:
                out[name] = why
        return out

    def skip_reason(self, experiment: str) -> str | None:
        """Why ``experiment`` is skipped on this data, or None: every model it trains is skipped, or fewer
        remain than it compares (:data:`MIN_MODELS`)."""
        names = experiment_models(experiment, self.requested)
        gone = [n for n in names or [] if n in self.skipped_models]
        if not gone:
            return None
        left = [n for n in names if n not in self.skipped_models]
        need = MIN_MODELS.get(experiment, 1)
        if len(left) >= need:
            return None
        # one reason for all (a model's reason starts with its class name): "cnn, vgg: each needs images ..."
        tails = {self.skipped_models[n].split(" ", 1)[-1] for n in gone}
        if len(tails) == 1:
            why = f"{', '.join(gone)}: {'' if len(gone) == 1 else 'each '}{tails.pop()}"
        else:
            why = "; ".join(f"{n}: {self.skipped_models[n]}" for n in gone)
        if not left:
            return f"every model it trains is skipped ({why})"
        return (f"it compares models with each other and needs at least {need}, but only {', '.join(left)} can run "
                f"on this data ({why})")

    @property
    def skipped_experiments(self) -> dict[str, str]:
        """Registered experiment -> why it is skipped on this data (only those that are)."""
        from deepspan.experiments.registry import EXPERIMENTS

        return {n: why for n in EXPERIMENTS if (why := self.skip_reason(n)) is not None}

    def _check_folder(self) -> dict[str, Any]:
        """The folder's saved state ({} when new); refuses a folder that holds a run with other settings
        (the data's content hash among them)."""
        state = self.out / STATE
        old: dict[str, Any] = {}
        if state.is_file():
            try:
                old = json.loads(state.read_text())
            except (OSError, json.JSONDecodeError):
                old = {}
            if old.get("fingerprint") not in (None, self.cfg.fingerprint()):
                conf = old.get("config", {})
                was = conf.get("data_hash") or old.get("data_hash")
                if not was:
                    data = " (it was written before runs recorded the data's content hash)"
                elif was != self.cfg.data_hash:
                    data = (f"; the data changed: {self.cfg.dataset} now has content hash {self.cfg.data_hash}, "
                            f"the folder's results were computed on data with content hash {was}")
                else:
                    data = ""
                raise InputError(
                    f"{self.out} holds a reproduction with other settings (scale {conf.get('scale')}, "
                    f"dataset {conf.get('dataset')}, seed {conf.get('seed')}){data}; "
                    f"choose another --out or delete that folder.")
        return old

    def _write_state(self, old: dict[str, Any], experiments: list[str] | None) -> None:
        state = self.out / STATE
        order = list(dict.fromkeys(list(old.get("experiments") or []) + list(experiments or [])))
        self.out.mkdir(parents=True, exist_ok=True)
        split = dict(self.data.split)
        if split.get("made_by") == "deepspan" and "test_rows" in split:
            split["test_ids"] = [str(i) for i in self.data.held_out.ids.tolist()]
        atomic_write_json(self.out / SPLIT_FILE, {"format": "deepspan-split/1", "dataset": self.cfg.dataset,
                                                  "data_hash": self.cfg.data_hash, **split})
        atomic_write_json(state, {"format": "deepspan-reproduce/1", "fingerprint": self.cfg.fingerprint(),
                                  "config": self.cfg.to_dict(), "version": __version__, "experiments": order,
                                  "data_hash": self.cfg.data_hash, "split": split.get("text"),
                                  "skipped_models": self.skipped_models,
                                  "skipped_experiments": self.skipped_experiments})

    def provenance(self, **extra: Any) -> dict[str, Any]:
        """Config fingerprint, dataset, its content hash, how its split was made, the input shape, probe hash and
        size, versions and, when they apply, the dataset's caps (sizes it could not give) and the skipped models
        and experiments with their reasons -- for every result."""
        import platform

        import scipy
        import torch

        probe = self.data.probe
        shape = self.data.input_shape
        skipped = self.skipped_experiments
        return {"config_fingerprint": self.cfg.fingerprint(), "scale": self.cfg.scale, "dataset": self.cfg.dataset,
                "seed": self.cfg.seed, "data_hash": self.cfg.data_hash, "split": self.data.split["text"],
                "split_made_by": self.data.split["made_by"],
                "input": f"vectors of length {shape[0]}" if self.data.is_vector else
                         "images " + " x ".join(str(s) for s in shape) + " (C x H x W)",
                "probe_hash": probe.sample_hash, "n_probe": len(probe),
                "deepspan": __version__, "numpy": np.__version__, "scipy": scipy.__version__,
                "torch": torch.__version__, "python": platform.python_version(),
                **({"caps": dict(self.data.caps)} if self.data.caps else {}),
                **({"skipped_models": dict(self.skipped_models)} if self.skipped_models else {}),
                **({"skipped_experiments": skipped} if skipped else {}), **extra}


def one_blas_thread():
    """A context that runs numpy/scipy BLAS on one thread while torch keeps its own pool.

    Measured here: with torch's OpenMP pool and OpenBLAS's pool both on 2 cores, the small LAPACK
    calls between forward passes (SVDs of CCA, eigh, matching) ran 10-100x slower (busy-waiting
    pools fighting for the cores); one BLAS thread removes that. threadpoolctl comes with
    scikit-learn; without it this is a no-op.
    """
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover
        import contextlib

        return contextlib.nullcontext()
    return threadpool_limits(limits=1, user_api="blas")
