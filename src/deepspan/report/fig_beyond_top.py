"""Figures of experiment 4 (beyond the top vector): u_1..u_3 angles to the final model with the singular
value ratios, cumulative energy ratios r_k over training, and histograms of the P-vector entries.

Drawn from ``results/beyond_top.json`` only (tables ``angles``, ``energy``, ``histograms``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from deepspan.report._base import FigureContext, FigureInfo, plt

CLAIM = ("Claim (Liu et al. 2022, Appendix A.7, on singular vectors other than the P-vector): \"No convergence "
         "found\".")
READINGS = ((False, "uncentered"), (True, "centered"))


def _models(rows: list[dict[str, Any]]) -> list[str]:
    return list(dict.fromkeys(r["model"] for r in rows))


def _angles(result: dict[str, Any], fc: FigureContext) -> FigureInfo:
    rows = result["tables"]["angles"]
    models = _models(rows)
    fig, axes = plt.subplots(3, len(models), figsize=(3.3 * len(models), 8.4), squeeze=False, layout="constrained")
    colors = {1: "C0", 2: "C1", 3: "C2"}
    for m_i, model in enumerate(models):
        for r_i, (centered, rname) in enumerate(READINGS):
            ax = axes[r_i, m_i]
            s = [r for r in rows if r["model"] == model and bool(r["centered"]) == centered]
            x = [r["position"] for r in s]
            for k in (1, 2, 3):
                y = [np.nan if r[f"angle_u{k}"] is None else r[f"angle_u{k}"] for r in s]
                ax.plot(x, y, "o-", ms=3, color=colors[k], label=f"u_{k}")
            ax.plot(x, [np.nan if r["subspace_angle"] is None else r["subspace_angle"] for r in s], "k:", lw=1,
                    label="top-3 subspace (max principal angle)")
            ax.set_ylim(-2, 92)
            ax.set_title(f"{model} ({rname})", fontsize=9)
            if m_i == 0:
                ax.set_ylabel("angle to final model's u_k (degrees)", fontsize=8)
            ax.set_xlabel("training progress (epochs)", fontsize=8)
            ax.grid(alpha=0.3)
        ax = axes[2, m_i]
        for centered, ls in ((False, "-"), (True, "--")):
            s = [r for r in rows if r["model"] == model and bool(r["centered"]) == centered]
            x = [r["position"] for r in s]
            tag = "centered" if centered else "uncentered"
            ax.plot(x, [np.nan if r["s2_over_s1"] is None else r["s2_over_s1"] for r in s], ls, color="C3",
                    label=f"σ2/σ1 ({tag})")
            ax.plot(x, [np.nan if r["s3_over_s2"] is None else r["s3_over_s2"] for r in s], ls, color="C4",
                    label=f"σ3/σ2 ({tag})")
        ax.set_ylim(0, 1.05)
        ax.set_title(f"{model}: singular value ratios", fontsize=9)
        ax.set_xlabel("training progress (epochs)", fontsize=8)
        if m_i == 0:
            ax.set_ylabel("ratio (1 = degenerate)", fontsize=8)
        ax.grid(alpha=0.3)
    h0, l0 = axes[0, 0].get_legend_handles_labels()
    h2, l2 = axes[2, 0].get_legend_handles_labels()
    fig.legend(h0 + h2, l0 + l2, loc="outside lower center", ncol=4, fontsize=8)
    fig.suptitle("Angle of u_1, u_2, u_3 at each checkpoint to the final model's, and the singular value gaps")
    return fc.save(fig, "beyond_top_angles",
                   "Angle (degrees, arccos|<u,v>|) between the k-th left singular vector of the feature layer at each "
                   "checkpoint and the final model's k-th vector (k = 1, 2, 3), and the largest principal angle "
                   "between the top-3 subspaces, against training progress; top row uncentered, middle row centered; "
                   "bottom row: the ratios σ2/σ1 and σ3/σ2 (near 1, the vectors are ill-determined and may swap). "
                   + CLAIM)


def _energy(result: dict[str, Any], fc: FigureContext) -> FigureInfo:
    rows = result["tables"]["energy"]
    models = _models(rows)
    ks = sorted({r["k"] for r in rows})
    colors = plt.get_cmap("plasma")(np.linspace(0.0, 0.85, max(len(ks), 2)))
    fig, axes = plt.subplots(2, len(models), figsize=(3.3 * len(models), 5.8), squeeze=False, layout="constrained")
    for m_i, model in enumerate(models):
        for r_i, (centered, rname) in enumerate(READINGS):
            ax = axes[r_i, m_i]
            for k_i, k in enumerate(ks):
                s = [r for r in rows if r["model"] == model and bool(r["centered"]) == centered and r["k"] == k]
                y = [np.nan if r["r"] is None else r["r"] for r in s]
                ax.plot([r["position"] for r in s], y, "-", color=colors[k_i], lw=1.2, label=f"r_{k}")
            ax.set_ylim(0.0, 1.02)
            ax.set_title(f"{model} ({rname})", fontsize=9)
            ax.set_xlabel("training progress (epochs)", fontsize=8)
            if m_i == 0:
                ax.set_ylabel("cumulative energy r_k = Σ_{i≤k} σ_i² / ||F||²", fontsize=8)
            ax.grid(alpha=0.3, which="both")
    axes[0, -1].legend(fontsize=6.5, ncol=2)
    fig.suptitle("Cumulative energy ratios r_1..r_10 of the feature layer over training")
    return fc.save(fig, "beyond_top_energy",
                   "Cumulative energy ratio r_k = Σ_{i≤k} σ_i² / ||F||_F² (Liu et al.'s explained variance of the "
                   "top-k subspace) of the feature matrix on the probe, k = 1..10, at every checkpoint; top row "
                   "uncentered, bottom row centered. The gap between r_1 and r_k is the energy beyond u_1: "
                   "context for the claim on u_2 and u_3. " + CLAIM)


def _entries(result: dict[str, Any], fc: FigureContext) -> FigureInfo:
    rows = result["tables"]["histograms"]
    models = _models(rows)
    stages = list(dict.fromkeys(r["stage"] for r in rows))
    colors = {"init": "C7", "mid": "C0", "final": "C3"}
    fig, axes = plt.subplots(2, len(models), figsize=(3.3 * len(models), 5.8), squeeze=False, layout="constrained")
    for m_i, model in enumerate(models):
        for r_i, (centered, rname) in enumerate(READINGS):
            ax = axes[r_i, m_i]
            for st in stages:
                s = sorted((r for r in rows if r["model"] == model and bool(r["centered"]) == centered
                            and r["stage"] == st), key=lambda r: r["bin"])
                if not s:
                    continue
                edges = [r["lo"] for r in s] + [s[-1]["hi"]]
                ax.stairs([r["count"] for r in s], edges, color=colors.get(st), lw=1.4,
                          label=f"{st} ({s[0]['checkpoint']})")
            ax.set_title(f"{model} ({rname})", fontsize=9)
            ax.set_xlabel("entry of u_1 (unit vector)", fontsize=8)
            if m_i == 0:
                ax.set_ylabel("number of probe samples", fontsize=8)
            ax.tick_params(axis="x", labelsize=7)
            ax.legend(fontsize=6.5)
    fig.suptitle("Distribution of the P-vector entries at initialisation, mid-training and the end")
    return fc.save(fig, "beyond_top_entries",
                   "Histograms of the N entries of the P-vector u_1 of the feature layer (sign fixed so that "
                   "sum(u) > 0) at initialisation, mid-training and the final checkpoint, on shared bins per model; "
                   "top row uncentered (entries near 1/sqrt(N): u_1 is close to the constant direction), bottom row "
                   "centered. Part of the 'beyond the top vector' analysis; " + CLAIM)


def draw(result: dict[str, Any], fc: FigureContext) -> list[FigureInfo]:
    if not result["tables"].get("angles"):
        return []
    return [_angles(result, fc), _energy(result, fc), _entries(result, fc)]
