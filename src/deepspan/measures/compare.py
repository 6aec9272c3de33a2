"""One interface for every similarity measure: ``compare`` and ``compare_many``.

Each measure is registered with its metadata -- similarity or distance, its
range, the value of a matrix against itself, whether it is symmetric, and the
transformations of one side it claims invariance to (``orthogonal`` X -> X Q,
``isotropic_scaling`` X -> c X, ``translation`` X -> X + 1 b^T,
``invertible_linear`` X -> X M, ``permutation`` of the neurons) -- which the
property tests read. Each has a ``prepare`` step (per feature set: centering,
bases, norms, P-vectors) and a ``pair`` step, so ``compare_many`` computes
every model's statistics once, not once per pair.

Measures: ``linear_cka``, ``debiased_cka``, ``rbf_cka`` (bandwidth 0.5 x median
distance), ``cca`` (mean canonical correlation), ``cca_mean_sq``, ``svcca``
(99 % variance), ``pwcca``, ``procrustes``, ``shape_angle``, ``pvector_angle``
(Liu et al. 2022, uncentered), ``principal_angle`` (mean of the principal angles
between the top-5 left singular subspaces), ``max_match`` (Wang et al. 2018
maximum matching similarity at eps = 0.25).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from deepspan.errors import InputError, SampleMismatchError
from deepspan.linalg.angles import principal_angles_between_bases, unit_angle
from deepspan.linalg.svd import top_singular
from deepspan.measures import cca as _cca
from deepspan.measures import cka as _cka
from deepspan.measures.match import MatchGram

__all__ = ["MeasureSpec", "MEASURES", "DEFAULT_MEASURES", "compare", "compare_many"]

ALL_INVARIANCES = ("orthogonal", "isotropic_scaling", "translation", "invertible_linear", "permutation")


@dataclass(frozen=True)
class MeasureSpec:
    """A registered measure: metadata plus its prepare/pair implementation."""

    name: str
    kind: str  # "similarity" or "distance"
    range: tuple[float, float]
    identity: float
    symmetric: bool
    invariances: frozenset[str]
    prepare: Callable[[np.ndarray], Any]
    pair: Callable[[Any, Any], float]
    reference: str

    def __call__(self, A: Any, B: Any) -> float:
        Xa, Xb = _matrix(A, "A"), _matrix(B, "B")
        _same_n(Xa, Xb)
        return float(self.pair(self.prepare(Xa), self.prepare(Xb)))


def _matrix(X: Any, name: str) -> np.ndarray:
    return _cka._finite(X, name)


def _same_n(Xa: np.ndarray, Xb: np.ndarray) -> None:
    if Xa.shape[0] != Xb.shape[0]:
        raise SampleMismatchError(f"A has {Xa.shape[0]} samples but B has {Xb.shape[0]}; compare the same samples.")


# ------------------------------------------------------------------ prepare/pair
def _lin_prep(X: np.ndarray) -> tuple[np.ndarray, float]:
    Xc = X - X.mean(0)
    return Xc, float(np.linalg.norm(Xc.T @ Xc))


def _lin_pair(a: tuple[np.ndarray, float], b: tuple[np.ndarray, float]) -> float:
    den = a[1] * b[1]
    return float(np.linalg.norm(b[0].T @ a[0]) ** 2 / den) if den > 0 else 0.0


def _basis_prep(X: np.ndarray) -> tuple[np.ndarray, int]:
    return _cca._basis(X - X.mean(0), _cca.RANK_TOL)[0], X.shape[1]


def _cca_pair(power: int) -> Callable[[Any, Any], float]:
    def pair(a: tuple[np.ndarray, int], b: tuple[np.ndarray, int]) -> float:
        if a[0].shape[1] == 0 or b[0].shape[1] == 0:
            return 0.0
        rho = np.clip(np.linalg.svd(a[0].T @ b[0], compute_uv=False), 0.0, 1.0)
        return float((rho**power).mean())  # over min(rank a, rank b) correlations, as deepspan.cca

    return pair


def _shape_prep(X: np.ndarray) -> np.ndarray | None:
    Xc = X - X.mean(0)
    n = np.linalg.norm(Xc)
    return Xc / n if n > 0 else None


def _nuclear(a: np.ndarray | None, b: np.ndarray | None) -> float | None:
    if a is None or b is None:
        return None
    return min(float(np.linalg.svd(a.T @ b, compute_uv=False).sum()), 1.0)


def _procrustes_pair(a: Any, b: Any) -> float:
    nuc = _nuclear(a, b)
    return float(np.sqrt(2.0)) if nuc is None else float(np.sqrt(max(2.0 - 2.0 * nuc, 0.0)))


def _angle_pair(a: Any, b: Any) -> float:
    nuc = _nuclear(a, b)
    return 90.0 if nuc is None else float(np.degrees(np.arccos(nuc)))


def _pvec_prep(X: np.ndarray) -> np.ndarray:
    return top_singular(X, 1).U[:, 0]


def _principal_prep(X: np.ndarray) -> np.ndarray:
    return top_singular(X, min(5, *X.shape)).U


def _principal_pair(a: np.ndarray, b: np.ndarray) -> float:
    k = min(a.shape[1], b.shape[1])
    return float(np.mean(principal_angles_between_bases(a[:, :k], b[:, :k])))


def _match_pair(a: np.ndarray, b: np.ndarray) -> float:
    return MatchGram.from_activations(a, b).max_match(0.25).similarity


def _spec(name, kind, rng, identity, symmetric, inv, prepare, pair, ref) -> MeasureSpec:
    return MeasureSpec(name, kind, rng, identity, symmetric, frozenset(inv), prepare, pair, ref)


_IDENT = (lambda X: X)
MEASURES: dict[str, MeasureSpec] = {
    s.name: s
    for s in [
        _spec("linear_cka", "similarity", (0.0, 1.0), 1.0, True,
              {"orthogonal", "isotropic_scaling", "translation", "permutation"}, _lin_prep, _lin_pair,
              "Kornblith et al. 2019"),
        _spec("debiased_cka", "similarity", (-1.0, 1.0), 1.0, True,
              {"orthogonal", "isotropic_scaling", "translation", "permutation"}, _IDENT, _cka.debiased_linear_cka,
              "Kornblith et al. 2019; unbiased HSIC of Song et al. 2012"),
        _spec("rbf_cka", "similarity", (0.0, 1.0), 1.0, True,
              {"orthogonal", "isotropic_scaling", "translation", "permutation"}, _IDENT,
              lambda a, b: _cka.rbf_cka(a, b, sigma_fraction=0.5), "Kornblith et al. 2019"),
        _spec("cca", "similarity", (0.0, 1.0), 1.0, True, set(ALL_INVARIANCES), _basis_prep, _cca_pair(1),
              "Hotelling 1936; mean canonical correlation"),
        _spec("cca_mean_sq", "similarity", (0.0, 1.0), 1.0, True, set(ALL_INVARIANCES), _basis_prep, _cca_pair(2),
              "Kornblith et al. 2019 (R^2_CCA)"),
        _spec("svcca", "similarity", (0.0, 1.0), 1.0, True,
              {"orthogonal", "isotropic_scaling", "translation", "permutation"}, _IDENT, _cca.svcca,
              "Raghu et al. 2017"),
        _spec("pwcca", "similarity", (0.0, 1.0), 1.0, False,
              {"isotropic_scaling", "translation", "permutation"}, _IDENT, _cca.pwcca, "Morcos et al. 2018"),
        _spec("procrustes", "distance", (0.0, 2.0), 0.0, True,
              {"orthogonal", "isotropic_scaling", "translation", "permutation"}, _shape_prep, _procrustes_pair,
              "Williams et al. 2021"),
        _spec("shape_angle", "distance", (0.0, 90.0), 0.0, True,
              {"orthogonal", "isotropic_scaling", "translation", "permutation"}, _shape_prep, _angle_pair,
              "Williams et al. 2021 (angular shape metric, degrees)"),
        _spec("pvector_angle", "distance", (0.0, 90.0), 0.0, True,
              {"orthogonal", "isotropic_scaling", "permutation"}, _pvec_prep, unit_angle,
              "Liu et al. 2022 (uncentered, degrees)"),
        _spec("principal_angle", "distance", (0.0, 90.0), 0.0, True,
              {"orthogonal", "isotropic_scaling", "permutation"}, _principal_prep, _principal_pair,
              "Bjorck and Golub 1973; mean over the top-5 left singular subspaces (uncentered, degrees)"),
        _spec("max_match", "similarity", (0.0, 1.0), 1.0, True, {"isotropic_scaling", "permutation"}, _IDENT,
              _match_pair, "Wang et al. 2018 (eps = 0.25)"),
    ]
}

#: What ``compare`` computes when no measures are named (the cheap, standard ones).
DEFAULT_MEASURES = ("linear_cka", "cca_mean_sq", "svcca", "pwcca", "procrustes", "pvector_angle")


def _resolve(measures: Any) -> list[MeasureSpec]:
    names = list(DEFAULT_MEASURES) if measures is None else ([measures] if isinstance(measures, str) else list(measures))
    unknown = [m for m in names if m not in MEASURES]
    if unknown:
        raise InputError(f"unknown measure(s) {unknown}; available: {', '.join(MEASURES)}.")
    return [MEASURES[m] for m in names]


def _is_featureset(x: Any) -> bool:
    return hasattr(x, "features") and hasattr(x, "sample_hash")


def compare(A: Any, B: Any, measures: Any = None, layers: Any = None) -> Any:
    """Compare two feature matrices (-> ``{measure: value}``) or two FeatureSets (-> tidy rows per common layer).

    FeatureSets must have the same sample hash; rows are
    ``{layer, measure, kind, value}``.
    """
    specs = _resolve(measures)
    if _is_featureset(A) or _is_featureset(B):
        if not (_is_featureset(A) and _is_featureset(B)):
            raise InputError("compare two FeatureSets, or two matrices, not one of each.")
        rows = compare_many({"a": A, "b": B}, [s.name for s in specs], layers=layers)
        return [{k: r[k] for k in ("layer", "measure", "kind", "value")} for r in rows
                if r["model_a"] == "a" and r["model_b"] == "b"]
    Xa, Xb = _matrix(A, "A"), _matrix(B, "B")
    _same_n(Xa, Xb)
    return {s.name: float(s.pair(s.prepare(Xa), s.prepare(Xb))) for s in specs}


def compare_many(sets: dict[str, Any], measures: Any = None, layers: Any = None) -> list[dict[str, Any]]:
    """All pairs of models x common layers x measures as tidy rows, each model's statistics computed once.

    ``sets`` maps model names to FeatureSets (same sample hash required) or to
    plain matrices (one implicit layer ``""``). Symmetric measures give one row
    per unordered pair; asymmetric ones (PWCCA) one per ordered pair.
    Rows: ``{model_a, model_b, layer, measure, kind, value}``.
    """
    specs = _resolve(measures)
    names = list(sets)
    if len(names) < 2:
        raise InputError("compare_many needs at least two feature sets.")
    fs_mode = all(_is_featureset(sets[n]) for n in names)
    if not fs_mode and any(_is_featureset(sets[n]) for n in names):
        raise InputError("pass only FeatureSets or only matrices to compare_many.")
    if fs_mode:
        hashes = {sets[n].sample_hash for n in names}
        if len(hashes) != 1:
            raise SampleMismatchError(
                f"the feature sets were computed on different samples (sample hashes {sorted(hashes)}); "
                f"extract all of them on one probe set."
            )
        common = [l for l in sets[names[0]].layers if all(l in sets[n].layers for n in names)]
        use = common if layers is None else ([layers] if isinstance(layers, str) else list(layers))
        missing = [l for l in use if l not in common]
        if missing or not use:
            raise InputError(f"layers {missing or use} are not present in every feature set (common: {common}).")
        for layer in use:  # channels layers: the rows are (image, position) pairs, which must agree too
            row_hashes = {sets[n].layer_hash(layer) for n in names}
            if len(row_hashes) != 1:
                raise SampleMismatchError(
                    f"layer {layer!r} has different rows across the feature sets (row hashes {sorted(row_hashes)}): "
                    f"extract it with the same policy, positions_per_image and seed everywhere."
                )
        mats = {(n, l): sets[n][l] for n in names for l in use}
    else:
        use = [""]
        mats = {(n, ""): sets[n] for n in names}
    rows = []
    for layer in use:
        X = {n: _matrix(mats[(n, layer)], n) for n in names}
        ns = {X[n].shape[0] for n in names}
        if len(ns) != 1:
            raise SampleMismatchError(f"layer {layer!r} has different numbers of rows across models: {sorted(ns)}.")
        for spec in specs:
            prepared = {n: spec.prepare(X[n]) for n in names}
            for i, a in enumerate(names):
                for j, b in enumerate(names):
                    if a == b or (spec.symmetric and j < i):
                        continue
                    rows.append({"model_a": a, "model_b": b, "layer": layer, "measure": spec.name,
                                 "kind": spec.kind, "value": float(spec.pair(prepared[a], prepared[b]))})
    return rows
