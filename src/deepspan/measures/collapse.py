"""Neural collapse metrics (Papyan, Han and Donoho, PNAS 2020).

Papyan, Han, Donoho, "Prevalence of neural collapse during the terminal phase
of deep learning training", PNAS 117 (2020). From class-wise statistics of the
penultimate features h (counts n_c, class means mu_c, within-class scatter),
with the global mean mu_G (of the class means weighted by n_c), centered class
means M = [mu_c - mu_G] (p x C), Sigma_W = (1/n) sum_c sum_{i in c}
(h_i - mu_c)(h_i - mu_c)^T and Sigma_B = (1/C) sum_c (mu_c - mu_G)(mu_c - mu_G)^T:

* NC1 (variability collapse): Tr(Sigma_W Sigma_B^+) / C;
* NC2 (simplex ETF): equinorm = std_c ||mu_c - mu_G|| / mean_c ||mu_c - mu_G||;
  equiangularity = std over pairs c != c' of cos(mu_c - mu_G, mu_c' - mu_G),
  and max-angle = mean over pairs of |cos + 1/(C-1)| (0 for a simplex ETF);
* NC3 (self-duality): || W / ||W||_F - M^T / ||M||_F ||_F with W the C x p
  last-layer weights;
* NC4 (nearest class-center): the fraction of samples whose network prediction
  equals argmin_c ||h - mu_c|| (needs the features themselves, or a second pass).

Everything but NC4 comes from one streaming pass
(:class:`~deepspan.linalg.ClassStatsAccumulator`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from deepspan.errors import InputError
from deepspan.linalg.checks import as_feature_matrix, to_numpy
from deepspan.linalg.streaming import ClassStats, ClassStatsAccumulator

__all__ = ["CollapseResult", "neural_collapse", "nc4_agreement"]


@dataclass(frozen=True)
class CollapseResult:
    """NC1-NC4 (see the module docstring); ``nc3``/``nc4`` are None when W / predictions were not given."""

    nc1: float
    nc2_equinorm: float
    nc2_equiangle: float
    nc2_maxangle: float
    nc3: float | None
    nc4: float | None
    n_classes: int
    n_samples: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def nc4_agreement(Phi: Any, predictions: Any, means: np.ndarray, classes: np.ndarray) -> float:
    """Fraction of rows whose predicted class equals the nearest class mean's class."""
    H = np.asarray(as_feature_matrix(Phi, "Phi", min_samples=1), dtype=np.float64)
    pred = np.asarray(to_numpy(predictions))
    if pred.ndim == 2:
        pred = pred.argmax(1)
    if len(pred) != len(H):
        raise InputError(f"{len(pred)} predictions for {len(H)} samples.")
    d2 = (H * H).sum(1)[:, None] - 2 * H @ means.T + (means * means).sum(1)[None, :]
    nearest = classes[d2.argmin(1)]
    return float((nearest == pred).mean())


def neural_collapse(
    Phi_or_stats: Any,
    labels: Any = None,
    *,
    W: Any = None,
    predictions: Any = None,
) -> CollapseResult:
    """NC1-NC4 of penultimate features ``Phi`` (n x p) with integer ``labels``, or of ClassStats.

    ``W`` (C x p, e.g. ``model.fc.weight``; rows indexed by label, so a classifier over more
    classes than the data holds is restricted to the present ones) enables NC3; ``predictions`` (labels or
    logits, n) with dense features enable NC4. Papyan, Han, Donoho (2020).
    """
    H = None
    if isinstance(Phi_or_stats, ClassStats):
        stats = Phi_or_stats
    else:
        H = np.asarray(as_feature_matrix(Phi_or_stats, "Phi"), dtype=np.float64)
        if labels is None:
            raise InputError("labels are needed with features (one integer class per row).")
        lab = np.asarray(to_numpy(labels)).reshape(-1)
        if len(lab) != len(H):
            raise InputError(f"{len(lab)} labels for {len(H)} samples; pass one label per row of Phi.")
        stats = ClassStatsAccumulator().update(H, lab).finalize()
    C = len(stats.classes)
    if C < 2:
        raise InputError("neural collapse needs at least two classes; the labels hold one.")
    n, p = stats.n_samples, stats.means.shape[1]
    mu_g = stats.global_mean
    M = (stats.means - mu_g).T  # p x C
    sigma_w = stats.within_scatter / n
    sigma_b = M @ M.T / C
    nc1 = float(np.trace(sigma_w @ np.linalg.pinv(sigma_b, rcond=1e-10, hermitian=True)) / C)
    norms = np.linalg.norm(M, axis=0)
    if not (norms > 0).all():
        raise InputError("two classes have identical means; the class-mean geometry (NC2) is undefined.")
    equinorm = float(norms.std() / norms.mean())
    cos = (M.T @ M) / np.outer(norms, norms)
    off = cos[~np.eye(C, dtype=bool)]
    equiangle = float(off.std())
    maxangle = float(np.abs(off + 1.0 / (C - 1)).mean())
    nc3 = None
    if W is not None:
        Wm = np.asarray(to_numpy(W), dtype=np.float64)
        cls = stats.classes
        if Wm.ndim == 2 and Wm.shape[0] > C and Wm.shape[1] == p and cls.dtype.kind in "iu" and cls.max() < len(Wm):
            Wm = Wm[cls]  # a classifier over more classes than the data holds: its rows for the present ones
        if Wm.shape != (C, p):
            raise InputError(f"W has shape {Wm.shape}; NC3 needs the C x p = {(C, p)} last-layer weights "
                             f"(rows in the order of the sorted class labels {stats.classes.tolist()}).")
        nc3 = float(np.linalg.norm(Wm / np.linalg.norm(Wm) - M.T / np.linalg.norm(M)))
    nc4 = None
    if predictions is not None:
        if H is None:
            raise InputError("NC4 needs the features themselves (a second pass): call nc4_agreement(Phi, "
                             "predictions, stats.means, stats.classes) batch by batch.")
        nc4 = nc4_agreement(H, predictions, stats.means, stats.classes)
    return CollapseResult(nc1, equinorm, equiangle, maxangle, nc3, nc4, C, n)
