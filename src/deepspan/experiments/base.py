"""What an experiment of ``deepspan reproduce`` is: a registry entry (see :mod:`deepspan.experiments.registry`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from deepspan.errors import InputError

if TYPE_CHECKING:  # pragma: no cover
    from deepspan.experiments.context import ReproContext
    from deepspan.results import ExperimentResult

__all__ = ["Experiment"]


@dataclass(frozen=True)
class Experiment:
    """One experiment: its name (CLI ``--only`` value, result file stem, report anchor ``exp-<name>``),
    title, paper, ``run(ctx) -> ExperimentResult``, the module whose ``draw(result, FigureContext)``
    draws its figures (None: no figures) and the ids of the claims it states."""

    name: str
    title: str
    paper: str
    run: Callable[["ReproContext"], "ExperimentResult"]
    figures: str | None = None
    claims: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        if not self.name.isidentifier():
            raise InputError(f"an experiment name must be a Python identifier (it names files and anchors), "
                             f"got {self.name!r}")
