"""Angles between vectors and between subspaces of sample space, in degrees."""

from __future__ import annotations

from typing import Any

import numpy as np

from deepspan.errors import InputError, SampleMismatchError
from deepspan.linalg.checks import as_vector, scale_to_unit

__all__ = ["angle", "unit_angle", "angle_from_cosine", "principal_angles_between_bases"]


def angle_from_cosine(c: Any) -> Any:
    """arccos(|c|) in degrees, with |c| clipped to [0, 1] (so rounding never gives NaN)."""
    return np.degrees(np.arccos(np.clip(np.abs(c), 0.0, 1.0)))


def _sample_vector(x: Any, name: str) -> np.ndarray:
    u = getattr(x, "u", x)
    if u is None:
        raise InputError(
            f"{name} has no left singular vector u (it was computed from streaming statistics). "
            f"Compute u with a second pass (deepspan.measures.pvector.with_left_vector) or compare "
            f"two streamed sets with pvector_angle_from_stats."
        )
    return as_vector(u, name)


def angle(p: Any, q: Any) -> float:
    """Sign-invariant angle between two directions in sample space, in degrees.

        angle(u, v) = arccos( |<u, v>| / (||u|| ||v||) ),  clipped to [0, 90]

    (Liu et al. 2022, the angle between P-vectors). ``p`` and ``q`` are P-vector
    results (anything with a ``.u``) or plain 1-D vectors of the same length
    (normalised here: each is first multiplied by the exact power of two that puts
    its largest |entry| in [0.5, 1), then divided by its norm, so the norms never
    over- or underflow and the angle is the same for c u as for u at any finite c > 0). Vectors of different lengths, or results carrying
    different ``sample_hash`` values, describe different sample sets and are
    refused with :class:`~deepspan.errors.SampleMismatchError`.
    """
    hp, hq = getattr(p, "sample_hash", None), getattr(q, "sample_hash", None)
    if hp is not None and hq is not None and hp != hq:
        raise SampleMismatchError(
            f"p was computed on samples with hash {hp} but q on samples with hash {hq}: P-vectors are "
            f"only comparable on the same samples in the same order. Recompute both on one probe set."
        )
    u = _sample_vector(p, "p")
    v = _sample_vector(q, "q")
    if u.shape != v.shape:
        raise SampleMismatchError(
            f"p has {u.shape[0]} entries but q has {v.shape[0]}: P-vectors live in sample space and "
            f"are only comparable on the same samples in the same order. Compute both on one probe set."
        )
    u, v = scale_to_unit(u)[0], scale_to_unit(v)[0]
    return unit_angle(u / np.linalg.norm(u), v / np.linalg.norm(v))


def unit_angle(u: np.ndarray, v: np.ndarray) -> float:
    """Sign-invariant angle (degrees) between two unit vectors, accurate at every angle.

    theta = atan2(||u - c v||, |c|) with c = <u, v>: unlike arccos|c|, which
    cannot resolve angles below ~1e-6 degrees in float64, this keeps full
    relative precision near 0 and near 90 degrees.
    """
    c = float(u @ v)
    s = float(np.linalg.norm(u - c * v))
    return float(np.degrees(np.arctan2(s, abs(c))))


def principal_angles_between_bases(QA: np.ndarray, QB: np.ndarray) -> np.ndarray:
    """Principal angles (degrees, ascending) between span(QA) and span(QB), both orthonormal N x k.

    Bjorck and Golub (1973): the cosines are the singular values of QA^T QB.
    Small angles are taken from the sines instead -- the singular values of
    QB - QA (QA^T QB) -- because arccos is ill-conditioned near 0.
    """
    if QA.shape[0] != QB.shape[0]:
        raise SampleMismatchError(
            f"the two bases have {QA.shape[0]} and {QB.shape[0]} samples; principal angles need the "
            f"same samples in the same order."
        )
    C = QA.T @ QB
    cos = np.linalg.svd(C, compute_uv=False)
    sin = np.linalg.svd(QB - QA @ C, compute_uv=False)
    m = min(QA.shape[1], QB.shape[1])
    cos = np.clip(cos[:m], 0.0, 1.0)  # descending -> angles ascending
    sin = np.clip(np.sort(sin)[:m], 0.0, 1.0)  # ascending -> angles ascending
    from_cos = np.degrees(np.arccos(cos))
    from_sin = np.degrees(np.arcsin(sin))
    return np.where(cos**2 > 0.5, from_sin, from_cos)
