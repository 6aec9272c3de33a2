"""The papers' experiments, composed from the layers below; each returns results (data, not prints)."""

from deepspan.experiments.pvector_demo import PVectorDemoResult, run_pvector_demo

__all__ = ["PVectorDemoResult", "run_pvector_demo"]
