"""Experiment 4 -- beyond the top vector: u_2 and u_3 over training, energy ratios, P-vector entries.

Liu, Xiong, Wang, An, Wu, Dou, "Exploring the Common Principal Subspace of Deep Features in Neural
Networks", Machine Learning 111 (2022), arXiv 2110.02863, and the ICLR 2021 submission "Empirical Studies
on the Convergence of Feature Spaces in Deep Learning": the P-vector u_1 converges during training; the
next singular vectors do not ("No convergence found", Appendix A.7, ResNet-50 on CIFAR-10).

For every zoo model and every checkpoint of its run, on the fixed probe and the feature layer:

* the angle between u_k of the checkpoint and u_k of the final model, k = 1, 2, 3 (arccos |<u, v>|, so
  the sign ambiguity of singular vectors does not matter), the largest principal angle between the
  top-3 left singular subspaces of checkpoint and final model, and whether u_2 of the checkpoint is
  closer to the final u_3 than to the final u_2 (a swap: near-degenerate sigma_2 ~ sigma_3 reorder);
* the singular value ratios sigma_2 / sigma_1 and sigma_3 / sigma_2 (a ratio near 1 makes the vectors
  ill-determined), the cumulative energy ratios r_k = sum_{i<=k} sigma_i^2 / ||F||_F^2 (Liu et al.'s
  "explained variance of the top-k dimensional subspace"), k = 1..10, and the per-component share
  sigma_k^2 / ||F||_F^2 (column ``share``);
* the distribution of the entries of u_1 at initialisation, mid-training and the end (histogram
  counts with their bin edges, and summary statistics including the angle to the constant vector).

The claim is judged on uncentered features (the paper's plain SVD); centered values are in the tables.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from deepspan import angle, principal_angles_between_bases
from deepspan.experiments.base import Experiment
from deepspan.experiments.context import ReproContext
from deepspan.experiments.convergence import position
from deepspan.results import Check, Claim, Condition, ExperimentResult, Measured, Rule

NAME = "beyond_top"
TITLE = "Beyond the top singular vector: u_2, u_3, energy ratios and P-vector entries"

# rule (stated in the claim and the report)
NO_CONV_RATIO = 3.0     # "much larger": the median before-end angle of u_k is at least this x that of u_1 ...
NO_CONV_MIN_DEG = 20.0  # ... and at least this many degrees
N_BINS = 30             # histogram bins of the P-vector entries


def _angle_or_none(u: np.ndarray, v: np.ndarray) -> float | None:
    if np.linalg.norm(u) == 0 or np.linalg.norm(v) == 0:
        return None  # fewer than k singular vectors (a layer narrower than k)
    return angle(u, v)


def subspace_angle(U: np.ndarray, V: np.ndarray) -> float | None:
    """Largest principal angle (degrees) between the spans of two orthonormal N x k blocks (zero columns dropped)."""
    U = U[:, np.linalg.norm(U, axis=0) > 0]
    V = V[:, np.linalg.norm(V, axis=0) > 0]
    if U.shape[1] == 0 or V.shape[1] == 0:
        return None
    return float(np.max(principal_angles_between_bases(U, V)))


def entry_stats(u: np.ndarray) -> dict[str, float]:
    """Summary of the entries of a unit vector u in R^N: mean, sd, min, max, the fraction with the sign of
    sum(u), and the angle to the constant direction 1/sqrt(N)."""
    u = np.asarray(u, dtype=float)
    s = np.sign(u.sum()) or 1.0
    ones = np.ones_like(u)
    return {"mean": float(u.mean()), "sd": float(u.std()), "min": float(u.min()), "max": float(u.max()),
            "frac_sign_of_sum": float(np.mean(np.sign(u) == s)), "angle_to_ones": angle(u, ones)}


def no_convergence(med: dict[int, float]) -> dict[int, bool]:
    """For k = 2, 3: median before-end angle of u_k >= max(NO_CONV_MIN_DEG, NO_CONV_RATIO x that of u_1)."""
    thr = max(NO_CONV_MIN_DEG, NO_CONV_RATIO * med[1])
    return {k: bool(np.isfinite(med[k]) and med[k] >= thr) for k in (2, 3)}


def mid_label(records: list[dict[str, Any]], epochs: int) -> str:
    """The end-of-epoch checkpoint at about half of training (e<max(1, epochs // 2)>), else the middle record."""
    want = f"e{max(1, epochs // 2)}"
    labels = [r["label"] for r in records]
    return want if want in labels else labels[len(labels) // 2]


def run(ctx: ReproContext) -> ExperimentResult:
    names = ctx.cfg.names
    for name in names:
        ctx.runs.ensure_trained(name)
    angles: list[dict[str, Any]] = []
    energy: list[dict[str, Any]] = []
    hists: list[dict[str, Any]] = []
    stats: list[dict[str, Any]] = []
    for name in names:
        records = ctx.runs.checkpoints(name)
        spe = int(ctx.runs.manifest(name)["steps_per_epoch"])
        final = records[-1]["label"]
        for rec in records:
            base = {"model": name, "checkpoint": rec["label"], "epoch": rec["epoch"], "iteration": rec["iteration"],
                    "position": position(rec, spe)}
            for center in (False, True):
                U = ctx.stats.vectors(name, rec["label"], center)
                V = ctx.stats.vectors(name, final, center)
                s = ctx.stats.singular_values(name, rec["label"], center)
                r_cum = ctx.stats.energy(name, rec["label"], center)
                k_have = min(3, U.shape[1], V.shape[1])  # a layer narrower than 3 has fewer vectors
                cos22 = abs(float(U[:, 1] @ V[:, 1])) if k_have >= 2 else 0.0
                cos23 = abs(float(U[:, 1] @ V[:, 2])) if k_have >= 3 else 0.0
                row = {**base, "centered": center,
                       **{f"angle_u{k + 1}": _angle_or_none(U[:, k], V[:, k]) if k < k_have else None
                          for k in range(3)},
                       "subspace_angle": subspace_angle(U, V),
                       "u2_swapped": bool(cos23 > cos22),
                       "s2_over_s1": float(s[1] / s[0]) if len(s) > 1 and s[0] > 0 else None,
                       "s3_over_s2": float(s[2] / s[1]) if len(s) > 2 and s[1] > 0 else None}
                angles.append(row)
                energy += [{**base, "centered": center, "k": k + 1, "sigma": float(s[k]), "r": float(r_cum[k]),
                            "share": float(r_cum[k] - (r_cum[k - 1] if k else 0.0))} for k in range(len(s))]
        stages = {"init": records[0]["label"], "mid": mid_label(records, ctx.cfg.epochs), "final": records[-1]["label"]}
        for center in (False, True):
            vecs = {st: ctx.stats.pvector(name, lab, center) for st, lab in stages.items()}
            lo = min(float(v.min()) for v in vecs.values())
            hi = max(float(v.max()) for v in vecs.values())
            edges = np.linspace(lo, hi, N_BINS + 1) if hi > lo else np.linspace(lo - 0.5, lo + 0.5, N_BINS + 1)
            for st, v in vecs.items():
                counts, _ = np.histogram(v, bins=edges)
                hists += [{"model": name, "centered": center, "stage": st, "checkpoint": stages[st], "bin": b,
                           "lo": float(edges[b]), "hi": float(edges[b + 1]), "count": int(counts[b])}
                          for b in range(N_BINS)]
                stats.append({"model": name, "centered": center, "stage": st, "checkpoint": stages[st],
                              **entry_stats(v)})
    claims = _claims(angles, names, len(ctx.data.probe))
    return ExperimentResult(
        name=NAME, title=TITLE, paper="Liu et al. 2022",
        summary=(f"u_1, u_2, u_3 of the feature layer of {len(names)} models at every checkpoint, compared with "
                 f"the final model's; singular value ratios, cumulative energy ratios r_1..r_10, and histograms of the "
                 f"P-vector entries at initialisation, mid-training and the end, on {len(ctx.data.probe)} probe images."),
        claims=claims, tables={"angles": angles, "energy": energy, "histograms": hists, "entry_stats": stats},
        provenance=ctx.provenance())


def before_end(angles: list[dict[str, Any]], names: list[str], center: bool = False) -> dict[str, dict[str, Any]]:
    """Per model: the row of the last checkpoint before the final one (the convergence test point)."""
    out = {}
    for name in names:
        s = [r for r in angles if r["model"] == name and r["centered"] == center]
        if len(s) >= 2:
            out[name] = s[-2]
    return out


def _median(xs: list[Any]) -> float:
    v = [x for x in xs if x is not None]
    return float(np.median(v)) if v else float("nan")


def _claims(angles: list[dict[str, Any]], names: list[str], n_probe: int) -> list[Claim]:
    be = before_end(angles, names)
    med = {k: _median([r[f"angle_u{k}"] for r in be.values()]) for k in (1, 2, 3)}
    measured = [Measured(f"median_u{k}_before_end", f"median over models: angle of u_{k} to the final u_{k}, "
                         f"last checkpoint before the final one", med[k], "deg") for k in (1, 2, 3)]
    measured.append(Measured("median_subspace_before_end", "median over models: largest principal angle between "
                             "the top-3 subspaces, last checkpoint before the final one",
                             _median([r["subspace_angle"] for r in be.values()]), "deg"))
    last = {r["model"]: r["checkpoint"] for r in angles}  # rows are in training order: the final label wins
    at_final = [r for r in angles if r["centered"] is False and r["checkpoint"] == last[r["model"]]]
    measured.append(Measured("median_s2_over_s1_final", "median over models: sigma_2 / sigma_1 at the final checkpoint",
                             _median([r["s2_over_s1"] for r in at_final]), ""))
    measured.append(Measured("median_s3_over_s2_final", "median over models: sigma_3 / sigma_2 at the final checkpoint",
                             _median([r["s3_over_s2"] for r in at_final]), ""))
    for name, r in be.items():
        measured += [Measured(f"{name}_u{k}_before_end",
                              f"{name}: angle of u_{k} to the final u_{k} ({r['checkpoint']})",
                              r[f"angle_u{k}"], "deg") for k in (1, 2, 3)]
    early = [r for r in angles if r["centered"] is False and r["checkpoint"] != last[r["model"]]]
    swaps = sum(1 for r in early if r["u2_swapped"])
    total = len(early)
    cen = before_end(angles, names, center=True)
    cmed = {k: _median([r[f"angle_u{k}"] for r in cen.values()]) for k in (1, 2, 3)}
    thr = max(NO_CONV_MIN_DEG, NO_CONV_RATIO * med[1])
    return [Claim(
        "c1", quote="No convergence found",
        source=("Liu et al. 2022, Appendix A.7 (singular vectors other than the P-vector, ResNet-50 on CIFAR-10; "
                "which k are shown is not readable)"),
        rule=Rule(f"uncentered feature layer, {len(be)} models; for k = 2 and k = 3: the median over models of the "
                  f"angle between u_k at the last checkpoint before the final one and the final u_k is at least "
                  f"{NO_CONV_MIN_DEG:g} deg and at least {NO_CONV_RATIO:g} x the same median for u_1 "
                  f"(currently {thr:.1f} deg)",
                  tuple(Check(f"u_{k}", (Condition(f"median_u{k}_before_end", ">=", NO_CONV_MIN_DEG),
                                         Condition(f"median_u{k}_before_end", ">=", "median_u1_before_end",
                                                   NO_CONV_RATIO))) for k in (2, 3))),
        measured=measured,
        note=(f"u_2 of a checkpoint was closer to the final u_3 than to the final u_2 (a reordering of near-equal "
              f"singular values) at {swaps} of {total} checkpoints before the final ones. Centered features: median "
              f"before-end angles u_1 {cmed[1]:.1f}, u_2 {cmed[2]:.1f}, u_3 {cmed[3]:.1f} deg. Angles of independent "
              f"random directions in R^{n_probe} are near 90 deg."))]



EXPERIMENT = Experiment(NAME, TITLE, "Liu et al. 2022", run, figures="deepspan.report.fig_beyond_top", claims=("c1",))
