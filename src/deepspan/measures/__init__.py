"""The science: measures on feature matrices (pure functions and small result dataclasses)."""

from deepspan.measures.pvector import (
    DEGENERACY_THRESHOLD,
    PVector,
    data_pvector,
    energy_table,
    principal_angles,
    pvector,
    pvector_angle_streaming,
    pvector_from_stats,
    reconstruction_errors,
    with_left_vector,
)

__all__ = [
    "DEGENERACY_THRESHOLD",
    "PVector",
    "pvector",
    "data_pvector",
    "pvector_from_stats",
    "with_left_vector",
    "pvector_angle_streaming",
    "principal_angles",
    "energy_table",
    "reconstruction_errors",
]
