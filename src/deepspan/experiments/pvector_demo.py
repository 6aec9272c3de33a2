"""A small, real P-vector analysis on embedded data (scikit-learn's 8x8 digits).

Computes the data P-vector of the 1,797 flattened images (Liu et al. 2022)
and the P-vectors of seeded random ReLU feature maps phi(x) = max(0, W x + b)
of two widths, then their pairwise angles and energy ratios, centered and
uncentered, beside the null baseline of independent random directions in R^N
(whose angle concentrates near 90 degrees). This is what ``deepspan demo``
prints.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from deepspan import __version__
from deepspan.data import load_digits
from deepspan import angle
from deepspan.measures import PVector, data_pvector, pvector

__all__ = ["random_relu_features", "PVectorDemoResult", "run_pvector_demo"]


def random_relu_features(X: np.ndarray, width: int, seed: int) -> np.ndarray:
    """phi(X) = max(0, X W + b), W ~ N(0, 1/D) (D = input dim), b ~ N(0, 0.1^2); seeded, float64."""
    rng = np.random.default_rng(seed)
    D = X.shape[1]
    W = rng.standard_normal((D, width)) / np.sqrt(D)
    b = 0.1 * rng.standard_normal(width)
    return np.maximum(X @ W + b, 0.0)


@dataclass
class PVectorDemoResult:
    """Results of :func:`run_pvector_demo`: one summary per feature set and the angle matrix, per centering."""

    dataset: str
    sample_hash: str
    n_samples: int
    summaries: list[dict[str, Any]] = field(default_factory=list)
    angles: list[dict[str, Any]] = field(default_factory=list)
    null_angles_deg: list[float] = field(default_factory=list)
    version: str = __version__

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _summary(name: str, p: PVector, width: int) -> dict[str, Any]:
    return {
        "features": name,
        "width": width,
        "centered": p.centered,
        "method": p.method,
        "sigma": p.singular_values.tolist(),
        "gap": p.gap,
        "energy": p.energy.tolist(),
    }


def run_pvector_demo(widths: tuple[int, int] = (256, 2048), seeds: tuple[int, int] = (1, 2),
                     null_seed: int = 0) -> PVectorDemoResult:
    """Data P-vector of the digits and P-vectors of two random ReLU feature maps, with angles."""
    data = load_digits()
    X = data.X.reshape(len(data), -1)
    feats = {
        "data (64 pixels)": (X, X.shape[1]),
        f"random ReLU, width {widths[0]}": (random_relu_features(X, widths[0], seeds[0]), widths[0]),
        f"random ReLU, width {widths[1]}": (random_relu_features(X, widths[1], seeds[1]), widths[1]),
    }
    result = PVectorDemoResult(dataset=data.name, sample_hash=data.sample_hash, n_samples=len(data))
    for center in (False, True):
        pvs: dict[str, PVector] = {}
        for name, (F, width) in feats.items():
            if name.startswith("data"):
                pvs[name] = data_pvector(data.X, center=center, sample_hash=data.sample_hash)
            else:
                pvs[name] = pvector(F, center=center, sample_hash=data.sample_hash)
            result.summaries.append(_summary(name, pvs[name], width))
        names = list(pvs)
        for i, a in enumerate(names):
            for b in names[i + 1 :]:
                result.angles.append({"a": a, "b": b, "centered": center, "angle_deg": angle(pvs[a], pvs[b])})
    rng = np.random.default_rng(null_seed)
    result.null_angles_deg = [
        angle(rng.standard_normal(len(data)), rng.standard_normal(len(data))) for _ in range(5)
    ]
    return result
