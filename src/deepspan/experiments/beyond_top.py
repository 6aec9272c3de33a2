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

The claim is judged over the whole trajectory, not at its end (where any checkpoint is close to the
final one by construction): per model, the mean over the end-of-epoch checkpoints from epoch 1 to the
last one before the final of (a) the angle of u_1 to the final u_1 and (b) the principal angles
between span(u_1, u_2, u_3) of the checkpoint and of the final model -- the principal angles do not
depend on how u_2 and u_3 are ordered, so a swap of near-equal singular values is not counted as
non-convergence. "No convergence" of the vectors beyond the P-vector: the largest principal angle
stays large (thresholds ours). Both readings (uncentered, centered) are judged side by side.
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

# rule (stated in the claim and the report; both thresholds are ours)
NO_CONV_RATIO = 2.0     # the trajectory-mean largest principal angle is at least this x the mean u_1 angle ...
NO_CONV_MIN_DEG = 20.0  # ... and at least this many degrees
N_BINS = 30             # histogram bins of the P-vector entries


def _angle_or_none(u: np.ndarray, v: np.ndarray) -> float | None:
    if np.linalg.norm(u) == 0 or np.linalg.norm(v) == 0:
        return None  # fewer than k singular vectors (a layer narrower than k)
    return angle(u, v)


def subspace_angles(U: np.ndarray, V: np.ndarray) -> list[float]:
    """Principal angles (degrees, ascending) between the spans of two orthonormal N x k blocks (zero columns
    dropped); empty when a block has no column."""
    U = U[:, np.linalg.norm(U, axis=0) > 0]
    V = V[:, np.linalg.norm(V, axis=0) > 0]
    if U.shape[1] == 0 or V.shape[1] == 0:
        return []
    return sorted(float(a) for a in principal_angles_between_bases(U, V))


def subspace_angle(U: np.ndarray, V: np.ndarray) -> float | None:
    """Largest principal angle (degrees) between the spans of two orthonormal N x k blocks (zero columns dropped)."""
    pa = subspace_angles(U, V)
    return pa[-1] if pa else None


def entry_stats(u: np.ndarray) -> dict[str, float]:
    """Summary of the entries of a unit vector u in R^N: mean, sd, min, max, the fraction with the sign of
    sum(u), and the angle to the constant direction 1/sqrt(N)."""
    u = np.asarray(u, dtype=float)
    s = np.sign(u.sum()) or 1.0
    ones = np.ones_like(u)
    return {"mean": float(u.mean()), "sd": float(u.std()), "min": float(u.min()), "max": float(u.max()),
            "frac_sign_of_sum": float(np.mean(np.sign(u) == s)), "angle_to_ones": angle(u, ones)}


def mid_label(records: list[dict[str, Any]], epochs: int) -> str:
    """The end-of-epoch checkpoint at about half of training (e<max(1, epochs // 2)>), else the middle record."""
    want = f"e{max(1, epochs // 2)}"
    labels = [r["label"] for r in records]
    return want if want in labels else labels[len(labels) // 2]


def run(ctx: ReproContext) -> ExperimentResult:
    from deepspan.experiments.convergence import protocol

    names = ctx.cfg.zoo_names
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
                       **{f"principal_angle_{i + 1}": a for i, a in enumerate(subspace_angles(U, V))},
                       "u2_swapped": bool(cos23 > cos22),
                       "s2_over_s1": float(s[1] / s[0]) if len(s) > 1 and s[0] > 0 else None,
                       "s3_over_s2": float(s[2] / s[1]) if len(s) > 2 and s[1] > 0 else None}
                angles.append(row)
                energy += [{**base, "centered": center, "k": k + 1, "sigma": float(s[k]), "r": float(r_cum[k]),
                            "share": float(r_cum[k] - (r_cum[k - 1] if k else 0.0))} for k in range(len(s))]
        stages = {"init": records[0]["label"], "mid": mid_label(records, ctx.cfg.epochs_of(name)),
                  "final": records[-1]["label"]}
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
        provenance=ctx.provenance(),
        protocol=protocol(ctx, names, extra={"vectors": "u_1, u_2, u_3 and the principal angles of their span",
                                             "trajectory": "end-of-epoch checkpoints from epoch 1 to the last "
                                                           "before the final one"}))


def trajectory(angles: list[dict[str, Any]], name: str, center: bool) -> list[dict[str, Any]]:
    """The rows of the end-of-epoch checkpoints from e1 to the last one before the final, in training order."""
    s = [r for r in angles if r["model"] == name and r["centered"] == center]
    ep = [r for r in s[:-1] if r["checkpoint"].startswith("e") and not r["checkpoint"].startswith("e0-")]
    return ep


def _mean(xs: list[Any]) -> float:
    v = [x for x in xs if x is not None]
    return float(np.mean(v)) if v else float("nan")


def _claims(angles: list[dict[str, Any]], names: list[str], n_probe: int) -> list[Claim]:
    claims = []
    for center in (False, True):
        reading = "centered" if center else "uncentered"
        pre = "cen_" if center else ""
        measured: list[Measured] = []
        checks: list[Check] = []
        swaps = total = 0
        for name in names:
            tr = trajectory(angles, name, center)
            if not tr:
                continue
            for k in (1, 2, 3):
                measured.append(Measured(f"{pre}{name}_mean_u{k}", f"{name}: mean angle of u_{k} to the final u_{k} "
                                         f"over epochs {tr[0]['epoch']}-{tr[-1]['epoch']} ({reading})",
                                         _mean([r[f"angle_u{k}"] for r in tr]), "deg"))
            for i in (2, 3):
                measured.append(Measured(f"{pre}{name}_mean_pa{i}", f"{name}: mean principal angle {i} of "
                                         f"span(u_1, u_2, u_3) to the final span ({reading})",
                                         _mean([r.get(f"principal_angle_{i}") for r in tr]), "deg"))
            checks.append(Check(name, (Condition(f"{pre}{name}_mean_pa3", ">=", NO_CONV_MIN_DEG),
                                       Condition(f"{pre}{name}_mean_pa3", ">=", f"{pre}{name}_mean_u1",
                                                 NO_CONV_RATIO))))
            swaps += sum(1 for r in tr if r["u2_swapped"])
            total += len(tr)
        if not checks:
            continue
        claims.append(Claim(
            "c1_centered" if center else "c1", quote="No convergence found", quote_kind="verbatim",
            source=("Liu et al. 2022, Appendix A.7 (singular vectors other than the P-vector, ResNet-50 on CIFAR-10; "
                    "which k are shown is not readable)"),
            rule=Rule(f"{reading} feature layer, per model, over the end-of-epoch checkpoints from epoch 1 to the last "
                      f"before the final one: the mean largest principal angle between span(u_1, u_2, u_3) and the "
                      f"final span is >= {NO_CONV_MIN_DEG:g} deg and >= {NO_CONV_RATIO:g} x the mean angle of u_1 "
                      f"(the P-vector) to the final u_1 (both thresholds ours)", tuple(checks)),
            measured=measured,
            note=(f"u_2 of a checkpoint was closer to the final u_3 than to the final u_2 (a reordering of near-equal "
                  f"singular values) at {swaps} of {total} checkpoints of the trajectories; the principal angles do "
                  f"not depend on that order. Angles of independent random directions in R^{n_probe} are near 90 deg.")))
    return claims


EXPERIMENT = Experiment(NAME, TITLE, "Liu et al. 2022", run, figures="deepspan.report.fig_beyond_top",
                        claims=("c1", "c1_centered"))
