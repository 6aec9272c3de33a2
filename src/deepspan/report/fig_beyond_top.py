"""Figures of experiment 4 (beyond the top vector): u_1..u_3 angles to the final model with the singular
value ratios, cumulative energy ratios r_k over training, and histograms of the P-vector entries.

Drawn from ``results/beyond_top.json`` only (tables ``angles``, ``energy``, ``histograms``). Every
figure has one row of panels per model, so it grows taller, not wider, with the number of models;
training progress is on a log axis of epochs (init = before training).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator

from deepspan.report._base import FIG_WIDTH, FigureContext, FigureInfo, epoch_axis, plt, readable_style

CLAIM = ("Claim (Liu et al. 2022, Appendix A.7, on singular vectors other than the P-vector): \"No convergence "
         "found\".")
READINGS = ((False, "uncentered"), (True, "centered"))
ROW_IN = 2.3  # height of one model's row of panels (inches)


def _models(rows: list[dict[str, Any]]) -> list[str]:
    return list(dict.fromkeys(r["model"] for r in rows))


def _nan(v: Any) -> float:
    return np.nan if v is None else float(v)


def _grid(n_models: int, ncol: int, extra: float = 1.3) -> tuple[Any, Any]:
    fig, axes = plt.subplots(n_models, ncol, figsize=(FIG_WIDTH, ROW_IN * n_models + extra), squeeze=False,
                             sharex=True, layout="constrained")
    return fig, axes


def _row_label(ax: Any, model: str, what: str) -> None:
    ax.set_ylabel(f"{model}\n{what}")


def _angles(result: dict[str, Any], fc: FigureContext) -> FigureInfo:
    rows = result["tables"]["angles"]
    models = _models(rows)
    positions = [r["position"] for r in rows]
    fig, axes = _grid(len(models), 3)
    colors = {1: "C0", 2: "C1", 3: "C2"}
    for m_i, model in enumerate(models):
        for r_i, (centered, rname) in enumerate(READINGS):
            ax = axes[m_i, r_i]
            s = sorted((r for r in rows if r["model"] == model and bool(r["centered"]) == centered),
                       key=lambda r: r["position"])
            x = [r["position"] for r in s]
            for k in (1, 2, 3):
                ax.plot(x, [_nan(r[f"angle_u{k}"]) for r in s], "o-", ms=3, color=colors[k])
            ax.plot(x, [_nan(r["subspace_angle"]) for r in s], "k:", lw=1.2)
            ax.set_ylim(-2, 92)
            ax.set_yticks([0, 30, 60, 90])
            ax.grid(alpha=0.3)
            if m_i == 0:
                ax.set_title(f"{rname}:\nangle to final u_k (°)")
        _row_label(axes[m_i, 0], model, "angle (°)")
        ax = axes[m_i, 2]
        for centered, ls in ((False, "-"), (True, "--")):
            s = sorted((r for r in rows if r["model"] == model and bool(r["centered"]) == centered),
                       key=lambda r: r["position"])
            x = [r["position"] for r in s]
            ax.plot(x, [_nan(r["s2_over_s1"]) for r in s], ls, color="C3")
            ax.plot(x, [_nan(r["s3_over_s2"]) for r in s], ls, color="C4")
        ax.set_ylim(0, 1.05)
        ax.grid(alpha=0.3)
        if m_i == 0:
            ax.set_title("singular value ratios\n(1 = degenerate)")
    for ax in axes[-1]:
        epoch_axis(ax, positions, width_in=0.25 * FIG_WIDTH, label="epochs (log)")
    handles = [Line2D([], [], color=colors[k], marker="o", ms=3, label=f"u_{k}") for k in (1, 2, 3)]
    handles += [Line2D([], [], color="k", ls=":", label="top-3 subspace (largest principal angle)"),
                Line2D([], [], color="C3", label="σ2/σ1"), Line2D([], [], color="C4", label="σ3/σ2"),
                Line2D([], [], color="0.3", ls="-", label="ratios, uncentered"),
                Line2D([], [], color="0.3", ls="--", label="ratios, centered")]
    fig.legend(handles=handles, loc="outside lower center", ncol=3, frameon=False)
    fig.suptitle("u_1, u_2, u_3 against the final model's, and the singular value gaps")
    return fc.save(fig, "beyond_top_angles",
                   "Angle (degrees, arccos|<u,v>|) between the k-th left singular vector of the feature layer at each "
                   "checkpoint and the final model's k-th vector (k = 1, 2, 3), and the largest principal angle "
                   "between the top-3 subspaces, against training progress in epochs (log axis, init = before "
                   "training); one row per model; left uncentered, middle centered; right: the ratios σ2/σ1 and "
                   "σ3/σ2 (near 1, the vectors are ill-determined and may swap). " + CLAIM)


def _energy(result: dict[str, Any], fc: FigureContext) -> FigureInfo:
    rows = result["tables"]["energy"]
    models = _models(rows)
    positions = [r["position"] for r in rows]
    ks = sorted({r["k"] for r in rows})
    colors = plt.get_cmap("plasma")(np.linspace(0.0, 0.85, max(len(ks), 2)))
    fig, axes = _grid(len(models), 2)
    for m_i, model in enumerate(models):
        for r_i, (centered, rname) in enumerate(READINGS):
            ax = axes[m_i, r_i]
            for k_i, k in enumerate(ks):
                s = sorted((r for r in rows if r["model"] == model and bool(r["centered"]) == centered
                            and r["k"] == k), key=lambda r: r["position"])
                ax.plot([r["position"] for r in s], [_nan(r["r"]) for r in s], "-", color=colors[k_i], lw=1.4,
                        label=f"r_{k}")
            ax.set_ylim(0.0, 1.02)
            ax.grid(alpha=0.3)
            if m_i == 0:
                ax.set_title(f"{rname} features")
        _row_label(axes[m_i, 0], model, "r_k")
    for ax in axes[-1]:
        epoch_axis(ax, positions, width_in=0.4 * FIG_WIDTH)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=min(5, len(labels)), frameon=False,
               title="cumulative energy r_k = Σ_{i≤k} σ_i² / ||F||²")
    fig.suptitle(f"Cumulative energy ratios r_{ks[0] if ks else 1}..r_{ks[-1] if ks else 1} of the feature layer "
                 "over training")
    return fc.save(fig, "beyond_top_energy",
                   "Cumulative energy ratio r_k = Σ_{i≤k} σ_i² / ||F||_F² (Liu et al.'s explained variance of the "
                   "top-k subspace) of the feature matrix on the probe, k = 1..10, at every checkpoint, against "
                   "training progress in epochs (log axis); one row per model, left uncentered, right centered. "
                   "The gap between r_1 and r_k is the energy beyond u_1: context for the claim on u_2 and u_3. "
                   + CLAIM)


def _entries(result: dict[str, Any], fc: FigureContext) -> FigureInfo:
    rows = result["tables"]["histograms"]
    models = _models(rows)
    stages = list(dict.fromkeys(r["stage"] for r in rows))
    colors = {"init": "C7", "mid": "C0", "final": "C3"}
    fig, axes = plt.subplots(len(models), 2, figsize=(FIG_WIDTH, ROW_IN * len(models) + 1.0), squeeze=False,
                             layout="constrained")
    for m_i, model in enumerate(models):
        for r_i, (centered, rname) in enumerate(READINGS):
            ax = axes[m_i, r_i]
            for st in stages:
                s = sorted((r for r in rows if r["model"] == model and bool(r["centered"]) == centered
                            and r["stage"] == st), key=lambda r: r["bin"])
                if not s:
                    continue
                edges = [r["lo"] for r in s] + [s[-1]["hi"]]
                ax.stairs([r["count"] for r in s], edges, color=colors.get(st), lw=1.4)
            ax.xaxis.set_major_locator(MaxNLocator(nbins=4))
            ax.set_title(f"{model}, {rname}")
            if m_i == len(models) - 1:
                ax.set_xlabel("entry of u_1 (unit vector)")
            if r_i == 0:
                ax.set_ylabel("probe samples")
    def words(st: str) -> str:
        ckpts = {r["checkpoint"] for r in rows if r["stage"] == st}
        name = {"mid": "mid-training"}.get(st, st)
        return f"{name} ({ckpts.pop()})" if len(ckpts) == 1 and st not in ckpts else name

    handles = [Line2D([], [], color=colors.get(st), lw=1.4, label=words(st)) for st in stages]
    fig.legend(handles=handles, loc="outside lower center", ncol=len(handles), frameon=False, title="checkpoint")
    fig.suptitle("Distribution of the P-vector entries at initialisation, mid-training and the end")
    return fc.save(fig, "beyond_top_entries",
                   "Histograms of the N entries of the P-vector u_1 of the feature layer (sign fixed so that "
                   "sum(u) > 0) at initialisation, mid-training and the final checkpoint, on shared bins per model; "
                   "one row per model; left uncentered (entries near 1/sqrt(N): u_1 is close to the constant "
                   "direction), right centered. Part of the 'beyond the top vector' analysis; " + CLAIM)


def draw(result: dict[str, Any], fc: FigureContext) -> list[FigureInfo]:
    if not result["tables"].get("angles"):
        return []
    with readable_style():
        return [_angles(result, fc), _energy(result, fc), _entries(result, fc)]
