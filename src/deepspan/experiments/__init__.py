"""The papers' experiments, composed from the public API; each returns results (data, not prints).

``reproduce(config_for("quick"), out)`` runs every experiment of the ordered registry
:data:`EXPERIMENTS` (name -> :class:`Experiment`); see :mod:`deepspan.experiments.registry` for how
to add one.
"""

from deepspan.experiments.base import Experiment
from deepspan.experiments.config import ModelSpec, ReproduceConfig, config_for
from deepspan.experiments.context import ReproContext
from deepspan.experiments.pvector_demo import PVectorDemoResult, run_pvector_demo
from deepspan.experiments.registry import EXPERIMENTS, register, unregister
from deepspan.experiments.reproduce import reproduce
from deepspan.results import Check, Claim, Condition, ExperimentResult, Measured, Rule, load_result, save_result

__all__ = ["PVectorDemoResult", "run_pvector_demo", "reproduce", "EXPERIMENTS", "Experiment", "register",
           "unregister", "config_for", "ReproduceConfig", "ModelSpec", "ReproContext", "ExperimentResult", "Claim",
           "Measured", "Rule", "Check", "Condition", "load_result", "save_result"]
