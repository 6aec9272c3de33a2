"""The papers' experiments, composed from the layers below; each returns results (data, not prints).

``reproduce(config_for("quick"), out)`` runs all of them (see :mod:`deepspan.experiments.reproduce`);
each experiment module (``convergence``, ``common_subspace``, ``layerwise``, ``beyond_top``,
``generalisation``, ``subspace_match``, ``spectrum``, ``baselines``) has ``run(ctx)``.
"""

from deepspan.experiments.config import ModelSpec, ReproduceConfig, config_for
from deepspan.experiments.context import ReproContext
from deepspan.experiments.pvector_demo import PVectorDemoResult, run_pvector_demo
from deepspan.experiments.reproduce import EXPERIMENTS, reproduce
from deepspan.experiments.results import Claim, ExperimentResult, Measured, load_result, save_result

__all__ = ["PVectorDemoResult", "run_pvector_demo", "reproduce", "EXPERIMENTS", "config_for", "ReproduceConfig",
           "ModelSpec", "ReproContext", "ExperimentResult", "Claim", "Measured", "load_result", "save_result"]
