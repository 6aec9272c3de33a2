"""Experiment 2 -- a common principal subspace across trained models, against null baselines.

Liu, Xiong, Wang, An, Wu, Dou, "Exploring the Common Principal Subspace of Deep Features in Neural
Networks", Machine Learning 111 (2022), arXiv 2110.02863 (Abstract; Sec. 4): "Small angles (with cosine
close to 1.0) have been found in the comparisons between any two DNNs trained with different
algorithms/architectures."

deepspan computes the pairwise angle matrix of the P-vectors (top left singular vectors on the fixed
probe) of the feature layers of

* ``trained``   -- every zoo model at its final checkpoint (the paper's comparison),
* ``untrained`` -- the same models at initialisation (their ``init`` checkpoints),
* ``random``    -- seeded random-feature maps of the flattened probe images: random ReLU maps
  phi(x) = max(0, W x + b) (two seeds per width in ``cfg.random_widths``) and Gaussian random
  projections x -> W x (no ReLU), see :func:`deepspan.experiments.pvector_demo.random_relu_features`,

and, as the reference point of "no relation", the angle between independent random unit vectors of
R^N (concentrated near 90 degrees: E|cos| ~ sqrt(2 / (pi N))).

The paper does not say whether the features are column-centered before the SVD. Both readings are
computed and judged separately: an uncentered P-vector of non-negative (ReLU) features lies close to
the mean feature direction, so untrained networks and random maps give small angles too -- the null
baselines expose how much of a small angle is due to training at all.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from deepspan import angle, top_singular
from deepspan.experiments.base import Experiment
from deepspan.experiments.context import ReproContext
from deepspan.experiments.pvector_demo import random_relu_features
from deepspan.results import Check, Claim, Condition, ExperimentResult, Measured, Rule

NAME = "common_subspace"
TITLE = "Common principal subspace across models, against untrained and random baselines"

# rules (stated in the claims and the report)
COS_MIN = 0.9             # "cosine close to 1.0": the trained models' mean pairwise |cos| is at least this
BELOW_FRACTION = 0.8      # "clearly below a baseline": mean trained angle <= this x the baseline's mean angle
N_NULL_PAIRS = 200        # independent random unit-vector pairs for the 90-degree reference
SETS = ("trained", "untrained", "random")


def gaussian_projection(X: np.ndarray, width: int, seed: int) -> np.ndarray:
    """Linear random features X W with W ~ N(0, 1/D) (D = input dim), seeded, float64 (no ReLU)."""
    rng = np.random.default_rng(seed)
    W = rng.standard_normal((X.shape[1], width)) / np.sqrt(X.shape[1])
    return np.asarray(X, dtype=np.float64) @ W


def random_maps(X: np.ndarray, widths: tuple[int, ...], seed: int) -> dict[str, np.ndarray]:
    """The random-feature baselines: per width two random ReLU maps (two seeds) and one Gaussian projection."""
    out: dict[str, np.ndarray] = {}
    for i, w in enumerate(widths):
        out[f"ReLU-{w} #1"] = random_relu_features(X, w, seed + 1000 + 2 * i)
        out[f"ReLU-{w} #2"] = random_relu_features(X, w, seed + 1001 + 2 * i)
        out[f"Gauss-{w}"] = gaussian_projection(X, w, seed + 2000 + i)
    return out


def pairwise_angles(vectors: dict[str, np.ndarray]) -> list[tuple[str, str, float, float]]:
    """(a, b, angle in degrees, |cos|) for every unordered pair a < b in insertion order."""
    names = list(vectors)
    out = []
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            ang = angle(vectors[a], vectors[b])
            out.append((a, b, ang, float(np.cos(np.radians(ang)))))
    return out


def null_angles(n: int, pairs: int, seed: int) -> np.ndarray:
    """Angles (degrees) between ``pairs`` pairs of independent standard Gaussian vectors of R^n."""
    rng = np.random.default_rng(seed)
    return np.array([angle(rng.standard_normal(n), rng.standard_normal(n)) for _ in range(pairs)])


def expected_null_angle(n: int) -> float:
    """90 deg - asin(E|cos|) with E|cos| ~ sqrt(2 / (pi n)): the typical angle of two random directions in R^n."""
    return float(90.0 - np.degrees(np.arcsin(min(1.0, np.sqrt(2.0 / (np.pi * n))))))


def reading_checks(trained: list[float], untrained: list[float], random: list[float]) -> dict[str, Any]:
    """The three checks of one reading from the pairwise angles (degrees) of each set.

    (a) mean |cos| of the trained pairs >= COS_MIN; (b) mean trained angle <= BELOW_FRACTION x mean
    untrained angle; (c) mean trained angle <= BELOW_FRACTION x mean random-map angle.
    """
    t = np.asarray(trained, dtype=float)
    mean_cos = float(np.mean(np.cos(np.radians(t))))
    mt, mu, mr = float(t.mean()), float(np.mean(untrained)), float(np.mean(random))
    checks = {"cosine": mean_cos >= COS_MIN, "below_untrained": mt <= BELOW_FRACTION * mu,
              "below_random": mt <= BELOW_FRACTION * mr}
    passed = int(sum(checks.values()))
    verdict = "reproduced" if passed == len(checks) else "partly" if passed else "not reproduced"
    return {"mean_cos": mean_cos, "mean_trained": mt, "mean_untrained": mu, "mean_random": mr,
            "checks": checks, "passed": passed, "verdict": verdict}


def run(ctx: ReproContext) -> ExperimentResult:
    names = ctx.cfg.names
    for name in names:
        ctx.runs.ensure_trained(name)
    X = ctx.data.probe.X.reshape(len(ctx.data.probe), -1).astype(np.float64)
    maps = random_maps(X, tuple(ctx.cfg.random_widths), ctx.cfg.seed)
    rows: list[dict[str, Any]] = []
    to_data: list[dict[str, Any]] = []
    per_reading: dict[bool, dict[str, Any]] = {}
    for center in (False, True):
        vecs: dict[str, dict[str, np.ndarray]] = {s: {} for s in SETS}
        for name in names:
            vecs["trained"][name] = ctx.stats.pvector(name, ctx.runs.final_label(name), center)
            vecs["untrained"][name] = ctx.stats.pvector(name, "init", center)
        for label, F in maps.items():
            vecs["random"][label] = top_singular(F, 1, center=center).U[:, 0]
        data_u = ctx.stats.data_pvector(center)
        angles: dict[str, list[float]] = {}
        for s in SETS:
            pairs = pairwise_angles(vecs[s])
            angles[s] = [p[2] for p in pairs]
            rows += [{"set": s, "centered": center, "a": a, "b": b, "angle": ang, "cosine": c}
                     for a, b, ang, c in pairs]
            to_data += [{"set": s, "centered": center, "model": m, "angle_to_data": angle(u, data_u)}
                        for m, u in vecs[s].items()]
        per_reading[center] = reading_checks(angles["trained"], angles["untrained"], angles["random"])
    null = null_angles(len(ctx.data.probe), N_NULL_PAIRS, ctx.cfg.seed)
    summary_rows = []
    for center in (False, True):
        for s in SETS:
            a = np.array([r["angle"] for r in rows if r["set"] == s and r["centered"] == center])
            summary_rows.append({"set": s, "centered": center, "pairs": len(a), "mean_angle": float(a.mean()),
                                 "min_angle": float(a.min()), "max_angle": float(a.max()),
                                 "mean_cosine": float(np.mean(np.cos(np.radians(a))))})
    summary_rows.append({"set": "random unit vectors", "centered": None, "pairs": N_NULL_PAIRS,
                         "mean_angle": float(null.mean()), "min_angle": float(null.min()),
                         "max_angle": float(null.max()), "mean_cosine": float(np.mean(np.cos(np.radians(null))))})
    claims = _claims(per_reading, null, len(ctx.data.probe), names, list(maps))
    return ExperimentResult(
        name=NAME, title=TITLE, paper="Liu et al. 2022",
        summary=(f"Pairwise P-vector angles of the feature layers of {len(names)} models ({', '.join(names)}) on "
                 f"{len(ctx.data.probe)} probe images: trained (final checkpoints), untrained (init checkpoints) and "
                 f"{len(maps)} seeded random-feature maps of the pixels (ReLU and Gaussian, widths "
                 f"{', '.join(str(w) for w in ctx.cfg.random_widths)}); each uncentered and column-centered. "
                 f"Independent random unit vectors in R^{len(ctx.data.probe)} meet at {null.mean():.1f} deg on average."),
        claims=claims, tables={"angles": rows, "summary": summary_rows, "to_data": to_data},
        provenance=ctx.provenance(random_maps=list(maps), null_pairs=N_NULL_PAIRS))


def _claims(per: dict[bool, dict[str, Any]], null: np.ndarray, n: int, names: list[str],
            maps: list[str]) -> list[Claim]:
    quote = ("Small angles (with cosine close to 1.0) have been found in the comparisons between any two DNNs "
             "trained with different algorithms/architectures.")
    reading = {False: "uncentered", True: "centered"}
    good = [reading[c] for c in (False, True) if per[c]["verdict"] == "reproduced"]
    cos_ok = [reading[c] for c in (False, True) if per[c]["checks"]["cosine"]]
    which = ((" and ".join(good) + " reading(s) reproduce the claim in full") if good else
             "neither reading reproduces the claim in full")
    which += ("; the paper's numbers (cosines close to 1 between trained models) are matched by the "
              + " and ".join(cos_ok) + " reading" + ("s" if len(cos_ok) > 1 else "")) if cos_ok else \
        "; neither reading gives cosines close to 1 between trained models"
    claims = []
    for center in (False, True):
        p = per[center]
        tag = "cen" if center else "unc"
        measured = [
            Measured(f"{tag}_trained_mean_cos", f"{reading[center]}: mean |cos| over trained pairs", p["mean_cos"]),
            Measured(f"{tag}_trained_mean", f"{reading[center]}: mean angle, trained models", p["mean_trained"], "deg"),
            Measured(f"{tag}_untrained_mean", f"{reading[center]}: mean angle, untrained models",
                     p["mean_untrained"], "deg"),
            Measured(f"{tag}_random_mean", f"{reading[center]}: mean angle, random-feature maps", p["mean_random"],
                     "deg"),
        ]
        if not center:
            measured.append(Measured("null_mean", f"independent random unit vectors in R^{n}: mean angle",
                                     float(null.mean()), "deg"))
        note = (f"Both readings are judged; {which}. ")
        if not center:
            note += ("Uncentered P-vectors of non-negative (ReLU) features point near the mean feature vector, so "
                     "untrained networks and random ReLU maps of the pixels also give small angles; a small trained "
                     "angle means something only where it is clearly below these baselines. ")
        note += (f"Random maps: {', '.join(maps)}. The 90-degree reference: {N_NULL_PAIRS} pairs of independent "
                 f"random unit vectors, mean {null.mean():.1f} deg (expected about {expected_null_angle(n):.1f}).")
        claims.append(Claim(
            f"c_{reading[center]}", quote=quote,
            source=f"Liu et al. 2022, Abstract; Sec. 4 (read with {reading[center]} features)",
            rule=Rule(f"{reading[center]} features, {len(names)} models ({len(names) * (len(names) - 1) // 2} pairs): "
                      f"(a) the mean |cos| of the trained models' pairwise P-vector angles is at least {COS_MIN:g}; "
                      f"(b) the mean trained angle is at most {BELOW_FRACTION:g} x the mean untrained-model angle; "
                      f"(c) the mean trained angle is at most {BELOW_FRACTION:g} x the mean random-map angle",
                      (Check("(a) cosine", (Condition(f"{tag}_trained_mean_cos", ">=", COS_MIN),)),
                       Check("(b) below untrained", (Condition(f"{tag}_trained_mean", "<=", f"{tag}_untrained_mean",
                                                               BELOW_FRACTION),)),
                       Check("(c) below random", (Condition(f"{tag}_trained_mean", "<=", f"{tag}_random_mean",
                                                            BELOW_FRACTION),)))),
            measured=measured, note=note))
    return claims


EXPERIMENT = Experiment(NAME, TITLE, "Liu et al. 2022", run, figures="deepspan.report.fig_common_subspace",
                        claims=("c_uncentered", "c_centered"))
