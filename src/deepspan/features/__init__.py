"""Activations from any torch.nn.Module, feature sets and their stores, and chunked .npy reading."""

from deepspan.features.extract import (
    POLICIES,
    LayerInfo,
    extract,
    extract_distributed,
    gather_featureset,
    iterate_batches,
    list_layers,
    resolve_device,
)
from deepspan.features.featureset import FeatureSet, check_same_featuresets, hash_sample_ids
from deepspan.features.npy import iter_npy_rows, npy_shape
from deepspan.features.rows import RowDraws, draw_indices, draw_rows

__all__ = [
    "POLICIES",
    "LayerInfo",
    "extract",
    "extract_distributed",
    "gather_featureset",
    "list_layers",
    "iterate_batches",
    "resolve_device",
    "FeatureSet",
    "check_same_featuresets",
    "hash_sample_ids",
    "iter_npy_rows",
    "npy_shape",
    "RowDraws",
    "draw_rows",
    "draw_indices",
]
