"""The ordered registry of ``deepspan reproduce``'s experiments: the CLI, the runner, the report and the
tests all read :data:`EXPERIMENTS`.

Adding an experiment is one module (with an ``EXPERIMENT = Experiment(...)``), one figure module
(``deepspan.report.fig_<name>``) and one line in :data:`_MODULES` -- or, at run time,
:func:`register`.
"""

from __future__ import annotations

import importlib

from deepspan.errors import InputError
from deepspan.experiments.base import Experiment

__all__ = ["EXPERIMENTS", "Experiment", "register", "unregister", "get"]

_MODULES = (
    "deepspan.experiments.convergence",
    "deepspan.experiments.common_subspace",
    "deepspan.experiments.layerwise",
    "deepspan.experiments.beyond_top",
    "deepspan.experiments.generalisation",
    "deepspan.experiments.subspace_match",
    "deepspan.experiments.spectrum",
    "deepspan.experiments.baselines",
)

#: name -> Experiment, in the order the experiments run and appear in the report.
EXPERIMENTS: dict[str, Experiment] = {}


def register(experiment: Experiment, *, replace: bool = False) -> Experiment:
    """Add ``experiment`` at the end of the registry (``replace`` an entry of the same name in place)."""
    if not isinstance(experiment, Experiment):
        raise InputError(f"register() takes a deepspan.experiments.Experiment, got {type(experiment).__name__}")
    if experiment.name in EXPERIMENTS and not replace:
        raise InputError(f"an experiment named {experiment.name!r} is already registered; pass replace=True")
    EXPERIMENTS[experiment.name] = experiment
    return experiment


def unregister(name: str) -> None:
    """Remove an experiment from the registry."""
    if name not in EXPERIMENTS:
        raise InputError(f"no experiment {name!r}; registered: {', '.join(EXPERIMENTS)}")
    del EXPERIMENTS[name]


def get(name: str) -> Experiment:
    """The registered experiment ``name`` (a clear error listing the choices otherwise)."""
    if name not in EXPERIMENTS:
        raise InputError(f"unknown experiment {name!r}; choose from {', '.join(EXPERIMENTS)}")
    return EXPERIMENTS[name]


for _m in _MODULES:
    register(importlib.import_module(_m).EXPERIMENT)
