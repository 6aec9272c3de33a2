"""Pure float64 linear algebra on feature matrices: singular triplets, angles, streaming statistics.

No torch import at module level (DESIGN.md): torch tensors are accepted and
handled lazily.
"""

from deepspan.linalg.angles import angle, angle_from_cosine, principal_angles_between_bases
from deepspan.linalg.checks import as_feature_matrix, as_vector, check_same_samples
from deepspan.linalg.streaming import (
    Accumulator,
    AccumulatorBase,
    ClassStats,
    ClassStatsAccumulator,
    CrossGramAccumulator,
    CrossGramStats,
    GramAccumulator,
    GramStats,
    prepare_batch,
)
from deepspan.linalg.svd import METHODS, SingularTriplets, choose_method, orient_signs, top_singular, top_singular_both

__all__ = [
    "METHODS",
    "SingularTriplets",
    "top_singular",
    "top_singular_both",
    "choose_method",
    "orient_signs",
    "angle",
    "angle_from_cosine",
    "principal_angles_between_bases",
    "GramAccumulator",
    "GramStats",
    "CrossGramAccumulator",
    "CrossGramStats",
    "ClassStats",
    "ClassStatsAccumulator",
    "Accumulator",
    "AccumulatorBase",
    "prepare_batch",
    "as_feature_matrix",
    "as_vector",
    "check_same_samples",
]
