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
    figures/, report.html, report.json   written by deepspan.report

Everything is computed once and reused: training resumes inside ``deepspan.zoo.train``, trackers
resume from their folders, and a run with other settings never reads stale files (the folder is
refused instead).
"""

from __future__ import annotations

import json
import sys
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

__all__ = ["ReproContext", "one_blas_thread", "STATE"]

STATE = "deepspan-reproduce.json"


class ReproContext:
    """Data, runs and probe statistics of a reproduction in ``out`` (see the module docstring)."""

    def __init__(self, cfg: ReproduceConfig, out: str | Path, progress: bool | None = None,
                 experiments: list[str] | None = None) -> None:
        self.cfg = cfg
        self.out = Path(out)
        self.progress = sys.stderr.isatty() if progress is None else bool(progress)
        self.results_dir = self.out / "results"
        self.data = DataSplits(cfg)
        self.runs = RunStore(cfg, self.data, self.out / "runs", progress=self.progress)
        self.stats = ProbeStatistics(self.runs, self.data, self.out / "cache")
        old = self._check_folder()
        self.data.validate()  # a dataset that cannot be used is refused before anything is written
        self._write_state(old, experiments)

    def _check_folder(self) -> dict[str, Any]:
        """The folder's saved state ({} when new); refuses a folder that holds a run with other settings."""
        state = self.out / STATE
        old: dict[str, Any] = {}
        if state.is_file():
            try:
                old = json.loads(state.read_text())
            except (OSError, json.JSONDecodeError):
                old = {}
            if old.get("fingerprint") not in (None, self.cfg.fingerprint()):
                conf = old.get("config", {})
                raise InputError(
                    f"{self.out} holds a reproduction with other settings (scale {conf.get('scale')}, "
                    f"dataset {conf.get('dataset')}, seed {conf.get('seed')}); "
                    f"choose another --out or delete that folder.")
        return old

    def _write_state(self, old: dict[str, Any], experiments: list[str] | None) -> None:
        state = self.out / STATE
        order = list(dict.fromkeys(list(old.get("experiments") or []) + list(experiments or [])))
        self.out.mkdir(parents=True, exist_ok=True)
        atomic_write_json(state, {"format": "deepspan-reproduce/1", "fingerprint": self.cfg.fingerprint(),
                                  "config": self.cfg.to_dict(), "version": __version__, "experiments": order})

    def provenance(self, **extra: Any) -> dict[str, Any]:
        """Config fingerprint, dataset, probe hash and size, versions and, when the dataset is smaller than the
        settings ask, its caps -- for every result."""
        import platform

        import scipy
        import torch

        probe = self.data.probe
        return {"config_fingerprint": self.cfg.fingerprint(), "scale": self.cfg.scale, "dataset": self.cfg.dataset,
                "seed": self.cfg.seed, "probe_hash": probe.sample_hash, "n_probe": len(probe),
                "deepspan": __version__, "numpy": np.__version__, "scipy": scipy.__version__,
                "torch": torch.__version__, "python": platform.python_version(),
                **({"caps": dict(self.data.caps)} if self.data.caps else {}), **extra}


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
