"""The science: measures on feature matrices (pure functions and small result dataclasses)."""

# the functions cka() and cca() are exported at the top level (deepspan.cka, deepspan.cca): here the
# names stay the submodules deepspan.measures.cka and deepspan.measures.cca
from deepspan.measures.cca import canonical_correlations, cca_mean_sq, procrustes, pwcca, shape_angle, svcca
from deepspan.measures.cka import debiased_linear_cka, linear_cka, linear_cka_gram, rbf_cka, streaming_linear_cka
from deepspan.measures.compare import MEASURES, MeasureSpec, compare, compare_many
from deepspan.measures.collapse import CollapseResult, nc4_agreement, neural_collapse
from deepspan.measures.spectrum import (
    SpectrumAccumulator,
    SpectrumResult,
    feature_spectrum,
    feature_spectrum_from_stats,
)
from deepspan.measures.match import (
    Match,
    MatchGram,
    is_match,
    layer_match_similarity,
    max_epsilon,
    max_match,
    min_epsilon_for_size,
    minimal_match,
    relative_distance,
    simple_matches,
)
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
    "linear_cka",
    "linear_cka_gram",
    "debiased_linear_cka",
    "rbf_cka",
    "streaming_linear_cka",
    "cca_mean_sq",
    "canonical_correlations",
    "svcca",
    "pwcca",
    "procrustes",
    "shape_angle",
    "compare",
    "compare_many",
    "MEASURES",
    "MeasureSpec",
    "feature_spectrum",
    "feature_spectrum_from_stats",
    "SpectrumAccumulator",
    "SpectrumResult",
    "neural_collapse",
    "nc4_agreement",
    "CollapseResult",
    "Match",
    "MatchGram",
    "relative_distance",
    "is_match",
    "max_match",
    "max_epsilon",
    "min_epsilon_for_size",
    "minimal_match",
    "simple_matches",
    "layer_match_similarity",
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
