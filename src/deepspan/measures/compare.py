"""One interface for every similarity measure: ``compare`` and ``compare_many``.

Each measure is registered with its metadata -- similarity or distance, its
range, the value of a matrix against itself, whether it is symmetric, and the
transformations of one side it claims invariance to (``orthogonal`` X -> X Q,
``isotropic_scaling`` X -> c X, ``translation`` X -> X + 1 b^T,
``invertible_linear`` X -> X M, ``permutation`` of the neurons) -- which the
property tests read.

Prepare + pair, with parameters
-------------------------------
A measure is two steps (DESIGN.md): ``prepare(X)`` computes one network's statistics
(centering, bases, norms, kernels, P-vectors) and ``pair(px, py)`` combines two of them into
the value. Each measure module defines them once, through a *steps factory*
``<measure>_steps(**params) -> (prepare, pair)`` (e.g. ``svcca_steps(dims=None, variance=0.99)``
in :mod:`deepspan.measures.canonical`), and its public function (``svcca(X, Y, dims, variance)``)
is ``pair(prepare(X), prepare(Y))`` of that factory's output: one formula per measure, in one place.

A registry entry :class:`MeasureSpec` holds the factory (``steps``), the parameter values it
was built with (``params``, read-only) and the bound ``prepare`` / ``pair`` (one and two
arguments). ``MEASURES[name].with_params(**kw)`` returns a new entry built by the same factory
with those parameters replaced (unknown names and bad values raise
:class:`~deepspan.errors.InputError` at once); ``compare`` and ``compare_many`` accept such entries
wherever they accept measure names::

    compare(X, Y, [MEASURES["svcca"].with_params(dims=10), "linear_cka"])

``compare_many`` calls ``prepare`` once per model, layer and measure and ``pair`` once per pair.

Measures (default parameters): ``linear_cka``, ``debiased_cka``, ``rbf_cka`` (``sigma_fraction=0.5``
x median distance, or ``sigma``), ``cca`` (mean canonical correlation; ``center``, ``rank_tol``),
``cca_mean_sq`` (same), ``svcca`` (``variance=0.99`` or ``dims``), ``pwcca`` (the published code's rule,
``rank_tol``; its identity needs linearly independent neurons: ``identity_when``), ``pwcca_centered``
(the paper's weights on centered activations, ``rank_tol``),
``procrustes``, ``shape_angle``, ``pvector_angle`` (Liu et al. 2022, ``center=False``),
``principal_angle`` (mean of the principal angles between the top-``k=5`` left singular subspaces,
``center=False``, ``method``), ``max_match`` (Wang et al. 2018 maximum matching similarity,
``eps=0.25``, ``atol``; dead neurons count in the denominator, so its identity needs live neurons:
``identity_when`` says so) and ``max_match_active`` (the same over active neurons only).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import numpy as np

from deepspan.errors import InputError
from deepspan.linalg.checks import check_same_samples
from deepspan.measures.alignment import (
    as_finite_matrix,
    as_finite_pair,
    debiased_cka_steps,
    linear_cka_steps,
    rbf_cka_steps,
)
from deepspan.measures.canonical import (
    RANK_TOL,
    cca_mean_sq_steps,
    cca_steps,
    pwcca_centered_steps,
    pwcca_steps,
    svcca_steps,
)
from deepspan.measures.match import ATOL, max_match_active_steps, max_match_similarity_steps
from deepspan.measures.pvector import principal_angle_steps, pvector_angle_steps
from deepspan.measures.shape import procrustes_steps, shape_angle_steps

__all__ = ["MeasureSpec", "MEASURES", "DEFAULT_MEASURES", "ALL_INVARIANCES", "compare", "compare_many"]

ALL_INVARIANCES = ("orthogonal", "isotropic_scaling", "translation", "invertible_linear", "permutation")


@dataclass(frozen=True)
class MeasureSpec:
    """A registered measure: metadata plus its prepare/pair implementation and parameters.

    ``prepare(X)`` (X a finite float64 samples x features matrix) returns one network's statistics;
    ``pair(px, py)`` returns the value. Both come from ``steps(**params)``, the measure module's
    steps factory; :meth:`with_params` rebuilds them with other parameters. Calling the spec,
    ``spec(A, B)``, validates A and B (finite, same samples) and returns ``pair(prepare(A), prepare(B))``.
    """

    name: str
    kind: str  # "similarity" or "distance"
    range: tuple[float, float]
    identity: float
    symmetric: bool
    invariances: frozenset[str]
    prepare: Callable[[np.ndarray], Any]
    pair: Callable[[Any, Any], float]
    reference: str
    params: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}), hash=False)
    steps: Callable[..., tuple[Callable[[Any], Any], Callable[[Any, Any], float]]] | None = field(
        default=None, repr=False)
    #: "" when ``spec(X, X) == identity`` for every valid X; otherwise the condition it needs, in words
    identity_when: str = ""

    def __call__(self, A: Any, B: Any) -> float:
        Xa, Xb = as_finite_pair(A, B, names=("A", "B"), what=f"the measure {self.name!r}")
        return float(self.pair(self.prepare(Xa), self.prepare(Xb)))

    def with_params(self, **params: Any) -> "MeasureSpec":
        """A copy whose prepare/pair are ``steps(**{**self.params, **params})``; ``params`` records the values.

        Raises :class:`~deepspan.errors.InputError` for a parameter the measure does not have (naming
        the ones it has) and, from the steps factory, for a bad value.
        """
        if not params:
            return self
        unknown = sorted(set(params) - set(self.params))
        if unknown or self.steps is None:
            have = ", ".join(self.params) if self.params else "none"
            raise InputError(f"measure {self.name!r} has no parameter(s) {unknown or sorted(params)}; "
                             f"its parameters are: {have}.")
        merged = {**self.params, **params}
        prepare, pair = self.steps(**merged)
        return dataclasses.replace(self, params=MappingProxyType(merged), prepare=prepare, pair=pair)


def _spec(name: str, kind: str, rng: tuple[float, float], identity: float, symmetric: bool, inv: set[str],
          steps: Callable[..., Any], params: dict[str, Any], ref: str, identity_when: str = "") -> MeasureSpec:
    prepare, pair = steps(**params)
    return MeasureSpec(name, kind, rng, identity, symmetric, frozenset(inv), prepare, pair, ref,
                       MappingProxyType(dict(params)), steps, identity_when)


_CKA_INV = {"orthogonal", "isotropic_scaling", "translation", "permutation"}
MEASURES: dict[str, MeasureSpec] = {
    s.name: s
    for s in [
        _spec("linear_cka", "similarity", (0.0, 1.0), 1.0, True, _CKA_INV, linear_cka_steps, {},
              "Kornblith et al. 2019"),
        _spec("debiased_cka", "similarity", (-1.0, 1.0), 1.0, True, _CKA_INV, debiased_cka_steps, {},
              "Kornblith et al. 2019; unbiased HSIC of Song et al. 2012"),
        _spec("rbf_cka", "similarity", (0.0, 1.0), 1.0, True, _CKA_INV, rbf_cka_steps,
              {"sigma": None, "sigma_fraction": 0.5}, "Kornblith et al. 2019"),
        _spec("cca", "similarity", (0.0, 1.0), 1.0, True, set(ALL_INVARIANCES), cca_steps,
              {"center": True, "rank_tol": RANK_TOL}, "Hotelling 1936; mean canonical correlation"),
        _spec("cca_mean_sq", "similarity", (0.0, 1.0), 1.0, True, set(ALL_INVARIANCES), cca_mean_sq_steps,
              {"center": True, "rank_tol": RANK_TOL}, "Kornblith et al. 2019 (R^2_CCA)"),
        _spec("svcca", "similarity", (0.0, 1.0), 1.0, True, _CKA_INV, svcca_steps,
              {"dims": None, "variance": 0.99}, "Raghu et al. 2017"),
        _spec("pwcca", "similarity", (0.0, 1.0), 1.0, False, {"isotropic_scaling"},
              pwcca_steps, {"rank_tol": RANK_TOL}, "Morcos et al. 2018 (the published code's rule)",
              identity_when="the non-constant neurons are linearly independent: with duplicated or dependent "
                            "neurons the code's weights also fall on directions of correlation 0"),
        _spec("pwcca_centered", "similarity", (0.0, 1.0), 1.0, False,
              {"isotropic_scaling", "translation", "permutation"}, pwcca_centered_steps, {"rank_tol": RANK_TOL},
              "Morcos et al. 2018 (the paper's weights on centered activations)"),
        _spec("procrustes", "distance", (0.0, 2.0), 0.0, True, _CKA_INV, procrustes_steps, {},
              "Williams et al. 2021"),
        _spec("shape_angle", "distance", (0.0, 90.0), 0.0, True, _CKA_INV, shape_angle_steps, {},
              "Williams et al. 2021 (angular shape metric, degrees)"),
        _spec("pvector_angle", "distance", (0.0, 90.0), 0.0, True, {"orthogonal", "isotropic_scaling", "permutation"},
              pvector_angle_steps, {"center": False}, "Liu et al. 2022 (uncentered, degrees)"),
        _spec("principal_angle", "distance", (0.0, 90.0), 0.0, True,
              {"orthogonal", "isotropic_scaling", "permutation"}, principal_angle_steps,
              {"k": 5, "center": False, "method": "auto"},
              "Bjorck and Golub 1973; mean over the top-5 left singular subspaces (uncentered, degrees)"),
        _spec("max_match", "similarity", (0.0, 1.0), 1.0, True, {"isotropic_scaling", "permutation"},
              max_match_similarity_steps, {"eps": 0.25, "atol": ATOL}, "Wang et al. 2018 (eps = 0.25)",
              identity_when="no neuron is dead: dead (all-zero) neurons count in the denominator, as in Wang et "
                            "al.'s code, so a layer against itself scores its live fraction"),
        _spec("max_match_active", "similarity", (0.0, 1.0), 1.0, True, {"isotropic_scaling", "permutation"},
              max_match_active_steps, {"eps": 0.25, "atol": ATOL},
              "Wang et al. 2018 (eps = 0.25), dead neurons left out of the denominator"),
    ]
}

#: What ``compare`` computes when no measures are named (the cheap, standard ones).
DEFAULT_MEASURES = ("linear_cka", "cca_mean_sq", "svcca", "pwcca", "procrustes", "pvector_angle")


def _resolve(measures: Any) -> list[MeasureSpec]:
    """Names (looked up in MEASURES at call time) or MeasureSpec objects, in order."""
    if measures is None:
        items = list(DEFAULT_MEASURES)
    elif isinstance(measures, (str, MeasureSpec)):
        items = [measures]
    else:
        items = list(measures)
    unknown = [m for m in items if not isinstance(m, MeasureSpec) and m not in MEASURES]
    if unknown:
        raise InputError(f"unknown measure(s) {unknown}; available: {', '.join(MEASURES)}.")
    return [m if isinstance(m, MeasureSpec) else MEASURES[m] for m in items]


def _is_featureset(x: Any) -> bool:
    return hasattr(x, "features") and hasattr(x, "sample_hash")


def compare(A: Any, B: Any, measures: Any = None, layers: Any = None, *, n_perm: int | None = None,
            n_boot: int | None = None, ci: float = 0.95, seed: int = 0, groups: Any = None) -> Any:
    """Compare two feature matrices (-> ``{measure: value}``) or two FeatureSets (-> tidy rows per common layer).

    ``measures``: a name, a :class:`MeasureSpec` (e.g. ``MEASURES["svcca"].with_params(dims=10)``) or a
    list of them; default :data:`DEFAULT_MEASURES`. FeatureSets must have the same sample hash; rows are
    ``{layer, measure, kind, value}``.

    With ``n_perm`` and/or ``n_boot`` every value comes with its significance
    (:func:`deepspan.measures.significance.significance`: permutation p-value, null mean/sd, calibrated score,
    bootstrap CI): matrices give ``{measure: Significance}``, FeatureSet rows gain ``"significance"`` (a
    :class:`~deepspan.measures.significance.Significance`; ``"value"`` stays the float). ``groups`` as in
    ``significance``; for a ``channels`` layer of FeatureSets the rows of one image move together by default.
    """
    specs = _resolve(measures)
    stats = n_perm is not None or n_boot is not None
    if _is_featureset(A) or _is_featureset(B):
        if not (_is_featureset(A) and _is_featureset(B)):
            raise InputError("compare two FeatureSets, or two matrices, not one of each.")
        rows = compare_many({"a": A, "b": B}, specs, layers=layers, n_perm=n_perm, n_boot=n_boot, ci=ci, seed=seed,
                            groups=groups)
        keys = ("layer", "measure", "kind", "value") + (("significance",) if stats else ())
        return [{k: r[k] for k in keys} for r in rows if r["model_a"] == "a" and r["model_b"] == "b"]
    Xa, Xb = as_finite_pair(A, B, names=("A", "B"), what="compare")
    if stats:
        from deepspan.measures.significance import check_settings, significance_prepared

        settings = check_settings(n_perm, n_boot, ci, seed)
        return {s.name: significance_prepared(s, Xa, Xb, s.prepare(Xa), s.prepare(Xb), *settings, groups=groups)
                for s in specs}
    return {s.name: float(s.pair(s.prepare(Xa), s.prepare(Xb))) for s in specs}


def _check_featuresets(sets: dict[str, Any], names: list[str], layers: Any) -> list[str]:
    """Same samples (count and hash) in every set, and the layers to compare, with equal rows in every set."""
    first = names[0]
    for n in names[1:]:
        check_same_samples(sets[first].n_samples, sets[n].n_samples,
                           names=(f"feature set {first!r}", f"feature set {n!r}"),
                           hash_a=sets[first].sample_hash, hash_b=sets[n].sample_hash, what="compare_many")
    common = [l for l in sets[first].layers if all(l in sets[n].layers for n in names)]
    use = common if layers is None else ([layers] if isinstance(layers, str) else list(layers))
    missing = [l for l in use if l not in common]
    if missing or not use:
        raise InputError(f"layers {missing or use} are not present in every feature set (common: {common}).")
    for layer in use:  # channels layers: the rows are (image, position) pairs, which must agree too
        for n in names[1:]:
            check_same_samples(
                len(sets[first][layer]), len(sets[n][layer]),
                names=(f"layer {layer!r} of {first!r}", f"layer {layer!r} of {n!r}"),
                hash_a=sets[first].layer_hash(layer), hash_b=sets[n].layer_hash(layer),
                what=(f"comparing layer {layer!r} (its rows are (image, position) pairs for a channels layer: "
                      f"extract it with the same policy, positions_per_image and seed everywhere)"))
    return use


def compare_many(sets: dict[str, Any], measures: Any = None, layers: Any = None, *, n_perm: int | None = None,
                 n_boot: int | None = None, ci: float = 0.95, seed: int = 0,
                 groups: Any = None) -> list[dict[str, Any]]:
    """All pairs of models x common layers x measures as tidy rows, each model's statistics computed once.

    ``sets`` maps model names to FeatureSets (same sample hash required) or to
    plain matrices (one implicit layer ``""``). ``measures`` as in :func:`compare`.
    Symmetric measures give one row per unordered pair; asymmetric ones (PWCCA) one per ordered pair.
    ``prepare`` runs once per model, layer and measure; ``pair`` once per row.
    Rows: ``{model_a, model_b, layer, measure, kind, value}``.

    ``sets`` must be a mapping: the names label the rows, so a list or tuple is refused (with the
    fix ``{"A": A, "B": B}`` or ``dict(enumerate(...))``) rather than named by position silently.

    ``n_perm`` / ``n_boot`` (/ ``ci``, ``seed``, ``groups``): each row also gets ``"significance"``, as in
    :func:`compare` (the prepared statistics are reused; each row's draws use ``seed``). For ``channels``
    layers of FeatureSets, ``groups`` defaults to the image of each row (its positions move together).
    """
    settings = None
    if n_perm is not None or n_boot is not None:
        from deepspan.measures.significance import check_settings, significance_prepared

        settings = check_settings(n_perm, n_boot, ci, seed)
    if not isinstance(sets, Mapping):
        what = f"a {type(sets).__name__} of {len(sets)}" if isinstance(sets, (list, tuple)) else f"a {type(sets).__name__}"
        raise InputError(f"compare_many takes a dict that names each model (the names label the rows), got {what}; "
                         f"pass e.g. compare_many({{'A': A, 'B': B}}), or dict(enumerate(sets)) to name them "
                         f"0, 1, ... by position.")
    specs = _resolve(measures)
    names = list(sets)
    if len(names) < 2:
        raise InputError(f"compare_many needs at least two feature sets, got {len(names)}; pass a dict with two "
                         f"or more entries.")
    fs_mode = all(_is_featureset(sets[n]) for n in names)
    if not fs_mode and any(_is_featureset(sets[n]) for n in names):
        raise InputError("pass only FeatureSets or only matrices to compare_many.")
    if fs_mode:
        use = _check_featuresets(sets, names, layers)
        mats = {(n, l): sets[n][l] for n in names for l in use}
    else:
        use = [""]
        mats = {(n, ""): sets[n] for n in names}
    rows = []
    for layer in use:
        X = {n: as_finite_matrix(mats[(n, layer)], n) for n in names}
        for n in names[1:]:
            check_same_samples(X[names[0]].shape[0], X[n].shape[0], names=(repr(names[0]), repr(n)),
                               what=f"comparing layer {layer!r}" if layer else "compare_many")
        layer_groups = groups
        if layer_groups is None and fs_mode and layer in sets[names[0]].positions:
            layer_groups = sets[names[0]].positions[layer][:, 0]  # the image of each (image, position) row
        for spec in specs:
            prepared = {n: spec.prepare(X[n]) for n in names}
            for i, a in enumerate(names):
                for j, b in enumerate(names):
                    if a == b or (spec.symmetric and j < i):
                        continue
                    row = {"model_a": a, "model_b": b, "layer": layer, "measure": spec.name, "kind": spec.kind,
                           "value": float(spec.pair(prepared[a], prepared[b]))}
                    if settings is not None:
                        row["significance"] = significance_prepared(spec, X[a], X[b], prepared[a], prepared[b],
                                                                    *settings, groups=layer_groups)
                    rows.append(row)
    return rows
