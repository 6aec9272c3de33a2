"""Orthogonal Procrustes distance and the angular shape metric.

Williams, Kunz, Kornblith, Linderman, "Generalized shape metrics on neural
representations", NeurIPS 2021. With X, Y column-centered, scaled to unit
Frobenius norm and zero-padded to a common width,

    min_Q ||X - Y Q||_F^2 over orthogonal Q  =  2 - 2 ||X^T Y||_*   (nuclear norm),

so ``procrustes`` returns sqrt(2 - 2 ||X^T Y||_*) (a metric in [0, 2]) and ``shape_angle``
the angular shape metric arccos(||X^T Y||_*) in degrees (in [0, 90]). Zero-padding does not
change X^T Y's singular values, so it is never formed. A constant side has no shape: the
stated values are sqrt(2) and 90 degrees.

Prepare + pair (DESIGN.md): ``procrustes_steps()`` and ``shape_angle_steps()`` return
``(prepare, pair)``; prepare centers and normalises one network's features once
(:class:`UnitShape`), pair takes the nuclear norm of X^T Y. The public functions and the
``MEASURES`` entries are the same two steps. Prepare starts from
:func:`~deepspan.measures.alignment.as_unit_matrix` (X times the exact power of two that puts max|X|
in [0.5, 1)), so ||X_c||_F never over- or underflows and the values are the same at any feature scale.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from deepspan.linalg.checks import check_same_samples
from deepspan.measures.alignment import Steps, apply_steps, as_unit_matrix

__all__ = ["UnitShape", "procrustes", "shape_angle", "procrustes_steps", "shape_angle_steps"]


@dataclass(frozen=True, eq=False)
class UnitShape:
    """Per-network statistics of the shape metrics: X_c / ||X_c||_F, or ``None`` for a constant side."""

    Z: np.ndarray | None
    n_samples: int


def _prepare_shape(X: Any) -> UnitShape:
    A = as_unit_matrix(X)
    Ac = A - A.mean(0)
    n = np.linalg.norm(Ac)
    return UnitShape(Ac / n if n > 0 else None, int(A.shape[0]))


def _nuclear(a: UnitShape, b: UnitShape) -> float | None:
    """||X^T Y||_* of the two unit shapes, capped at 1 (Cauchy-Schwarz), or None when a side is constant."""
    check_same_samples(a.n_samples, b.n_samples, names=("X", "Y"), what="the shape metrics")
    if a.Z is None or b.Z is None:
        return None
    return min(float(np.linalg.svd(a.Z.T @ b.Z, compute_uv=False).sum()), 1.0)


def _pair_procrustes(a: UnitShape, b: UnitShape) -> float:
    nuc = _nuclear(a, b)
    return float(np.sqrt(2.0)) if nuc is None else float(np.sqrt(max(2.0 - 2.0 * nuc, 0.0)))


def _pair_shape_angle(a: UnitShape, b: UnitShape) -> float:
    nuc = _nuclear(a, b)
    return 90.0 if nuc is None else float(np.degrees(np.arccos(np.clip(nuc, 0.0, 1.0))))


def procrustes_steps() -> Steps:
    """Procrustes distance as (prepare, pair): prepare X_c / ||X_c||_F, pair sqrt(2 - 2 ||X^T Y||_*)."""
    return _prepare_shape, _pair_procrustes


def shape_angle_steps() -> Steps:
    """Angular shape metric as (prepare, pair): prepare X_c / ||X_c||_F, pair arccos(||X^T Y||_*) in degrees."""
    return _prepare_shape, _pair_shape_angle


def procrustes(X: Any, Y: Any) -> float:
    """Orthogonal Procrustes distance sqrt(2 - 2 ||X^T Y||_*) of centered, unit-norm X and Y (a metric in [0, 2]).

    Williams et al., NeurIPS 2021; sqrt(2) against a constant side (stated rule).
    """
    return apply_steps(procrustes_steps(), X, Y, what="the Procrustes distance")


def shape_angle(X: Any, Y: Any) -> float:
    """Angular shape metric arccos(||X^T Y||_*) in degrees (Williams et al. 2021), in [0, 90]; 90 against a constant side."""
    return apply_steps(shape_angle_steps(), X, Y, what="the shape angle")
