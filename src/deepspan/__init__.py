"""deepspan: measure what neural networks learn by the subspaces their features span.

Feature matrices are N samples x d features; vectors in sample space (P-vectors,
left singular vectors) compare across models of any width on the same samples.
"""

from deepspan._version import __version__
from deepspan.errors import (
    ConvergenceWarning,
    DeepspanError,
    DeepspanWarning,
    DegenerateSpectrumWarning,
    InputError,
    SampleMismatchError,
    TrivialSpanWarning,
)
from deepspan.linalg import (
    Accumulator,
    ClassStatsAccumulator,
    CrossGramAccumulator,
    GramAccumulator,
    SingularTriplets,
    angle,
    principal_angles_between_bases,
    top_singular,
    top_singular_both,
)
from deepspan.measures import (
    cca,
    cka,
    MEASURES,
    compare,
    compare_many,
    significance,
    Significance,
    procrustes,
    pwcca,
    pwcca_centered,
    svcca,
    CollapseResult,
    SpectrumAccumulator,
    SpectrumResult,
    SpectrumStats,
    feature_spectrum,
    feature_spectrum_from_stats,
    neural_collapse,
    neural_collapse_from_stats,
    NC4Accumulator,
    NC4Stats,
    nc4_from_stats,
    Match,
    MatchGram,
    PVector,
    data_pvector,
    energy_table,
    principal_angles,
    is_match,
    layer_match_similarity,
    max_epsilon,
    max_match,
    min_epsilon_for_size,
    minimal_match,
    pvector,
    pvector_angle,
    pvector_angle_from_stats,
    relative_distance,
    simple_matches,
    pvector_from_stats,
    reconstruction_errors,
    with_left_vector,
)

__all__ = [
    "cka",
    "svcca",
    "pwcca",
    "pwcca_centered",
    "cca",
    "procrustes",
    "compare",
    "compare_many",
    "significance",
    "Significance",
    "MEASURES",
    "feature_spectrum",
    "feature_spectrum_from_stats",
    "SpectrumAccumulator",
    "SpectrumResult",
    "SpectrumStats",
    "neural_collapse",
    "neural_collapse_from_stats",
    "NC4Accumulator",
    "NC4Stats",
    "nc4_from_stats",
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
    "draw_rows", "RowDraws",
    "extract",
    "list_layers",
    "FeatureSet",
    "Tracker",
    "CheckpointSeries",
    "Checkpoint",
    "track_checkpoints",
    "ClassStatsAccumulator",
    "Accumulator",
    "__version__",
    "pvector",
    "PVector",
    "data_pvector",
    "top_singular",
    "top_singular_both",
    "SingularTriplets",
    "angle",
    "principal_angles_between_bases",
    "principal_angles",
    "energy_table",
    "reconstruction_errors",
    "GramAccumulator",
    "CrossGramAccumulator",
    "pvector_from_stats",
    "with_left_vector",
    "pvector_angle",
    "pvector_angle_from_stats",
    "DeepspanError",
    "InputError",
    "SampleMismatchError",
    "DegenerateSpectrumWarning",
    "ConvergenceWarning",
    "DeepspanWarning",
    "TrivialSpanWarning",
]


def __getattr__(name: str):
    """Torch-backed parts (extraction, tracking) load on first use, so ``import deepspan`` stays light."""
    if name in ("extract", "list_layers", "FeatureSet", "draw_rows", "RowDraws"):
        from deepspan import features

        return getattr(features, name)
    if name in ("Tracker", "CheckpointSeries", "Checkpoint", "track_checkpoints"):
        from deepspan import track

        return getattr(track, name)
    if name in ("data", "features", "track", "experiments", "distributed"):
        import importlib

        return importlib.import_module(f"deepspan.{name}")
    raise AttributeError(f"module 'deepspan' has no attribute {name!r}")
