"""Figures of experiment 7 (feature-map spectrum, Nam et al. 2024), drawn from ``results/spectrum.json``.

* rho_k trajectories over training (log scale), k = C marked;
* Pi*(k) and Pi(k) curves at initialisation, after epoch 1 and at the end, k = C marked;
* NC1-NC4 over training;
* the regime per checkpoint with the numbers that decide it (Pi*(C), Pi(C), rho_C / rho_C+1).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from matplotlib.ticker import LogFormatter

from deepspan.report._base import FigureContext, FigureInfo, plt

__all__ = ["draw"]

REGIME_COLORS = {"MF": "tab:green", "intermediate": "tab:orange", "EF": "tab:red"}
MODEL_COLORS = ("tab:blue", "tab:purple", "tab:brown", "tab:olive")


def _quote(result: dict[str, Any], cid: str) -> str:
    c = next((c for c in result.get("claims", []) if c["id"] == cid), None)
    return f"\u201c{c['quote']}\u201d ({c['source']}; verdict: {c['verdict']})" if c else ""


def _models(rows: list[dict[str, Any]]) -> list[str]:
    return list(dict.fromkeys(r["model"] for r in rows))


def _xaxis(ax: Any, xmax: float) -> None:
    ax.set_xscale("symlog", linthresh=0.1, linscale=0.6)
    ax.set_xlim(0.0, xmax * 1.08 if xmax > 0 else 1.0)
    ax.set_xlabel("training progress (epochs; symlog scale)")


def draw(result: dict[str, Any], fc: FigureContext) -> list[FigureInfo]:
    reg = result["tables"]["regimes"]
    rho = result["tables"]["rho"]
    curves = result["tables"]["pi_curves"]
    models = _models(reg)
    C = int(reg[0]["C"])
    xmax = max(r["position"] for r in reg)
    out: list[FigureInfo] = []

    # 1. rho_k trajectories
    fig, axes = plt.subplots(1, len(models), figsize=(5.2 * len(models), 4.0), squeeze=False, layout="constrained")
    for ax, m in zip(axes[0], models):
        ks = sorted({r["k"] for r in rho if r["model"] == m})
        cmap = plt.cm.viridis
        for k in ks:
            s = sorted((r for r in rho if r["model"] == m and r["k"] == k), key=lambda r: r["position"])
            special = k in (C, C + 1)
            ax.plot([r["position"] for r in s], [max(r["rho"], 1e-300) for r in s],
                    color="black" if special else cmap((k - 1) / max(len(ks) - 1, 1)),
                    lw=2.2 if special else 0.9, ls="--" if k == C + 1 else "-",
                    label=(f"k = C = {C}" if k == C else f"k = C+1 = {C + 1}" if k == C + 1 else
                           ("k = 1" if k == 1 else (f"k = {ks[-1]}" if k == ks[-1] else None))))
        ax.set_yscale("log")
        _xaxis(ax, xmax)
        ax.set_ylabel("eigenvalue rho_k = s_k^2 / n (feature units^2)")
        ax.set_title(f"{m}: top-{len(ks)} eigenvalues of the feature map")
        ax.legend(fontsize=7)
    out.append(fc.save(fig, "spectrum_rho", (
        f"Eigenvalues rho_k of the penultimate feature map on the probe over training (log scale), "
        f"k = 1..{_k_max(rho)}; "
        f"thick black: k = C = {C}, dashed: k = C+1. A gap between them is the eigen-gap of the MF regime. Bears on "
        + _quote(result, "s1") + ".")))

    # 2. Pi*(k), Pi(k) curves
    fig, axes = plt.subplots(1, len(models), figsize=(5.2 * len(models), 4.0), squeeze=False, layout="constrained")
    for ax, m in zip(axes[0], models):
        labels = list(dict.fromkeys(r["checkpoint"] for r in curves if r["model"] == m))
        for i, label in enumerate(labels):
            s = sorted((r for r in curves if r["model"] == m and r["checkpoint"] == label), key=lambda r: r["k"])
            col = plt.cm.plasma(i / max(len(labels) - 1, 1) * 0.85)
            ax.plot([r["k"] for r in s], [r["pi_star"] for r in s], color=col, lw=1.8, label=f"Pi*(k), {label}")
            ax.plot([r["k"] for r in s], [r["pi"] for r in s], color=col, lw=1.2, ls="--", label=f"Pi(k), {label}")
        ax.axvline(C, color="black", lw=0.8, ls=":", label=f"k = C = {C}")
        ax.axhline(reg[0].get("mf_pi", 0.9), color="gray", lw=0.8, ls="-.", label="MF threshold")
        ax.set_xscale("log")
        ax.set_ylim(-0.02, 1.02)
        ax.set_xlabel("k (eigenfunctions, by decreasing rho_k; log scale)")
        ax.set_ylabel("cumulative fraction of ||y||^2 (Pi*) or ||f||^2 (Pi)")
        ax.set_title(f"{m}: target quality Pi*(k) and output utility Pi(k)")
        ax.legend(fontsize=6.5, ncol=2)
    out.append(fc.save(fig, "spectrum_pi_curves", (
        "Cumulative quality Pi*(k) (solid: share of the one-hot targets in the top-k eigenfunctions) and utility "
        "Pi(k) (dashed: share of the network's logits) at initialisation, after epoch 1 and at the end; dotted: k = C. "
        "In the MF regime both reach ~1 at k = C. Bears on " + _quote(result, "s1") + ".")))

    # 3. NC1-NC4
    fig, axes = plt.subplots(2, 2, figsize=(10.0, 7.0), layout="constrained")
    panels = [("nc1", "NC1 = Tr(Sigma_W Sigma_B^+)/C (log)", True),
              ("nc2_equinorm", "NC2 equinorm (std/mean of norms)", False),
              ("nc3", "NC3 ||W/||W|| - M^T/||M|| ||_F", False), ("nc4", "NC4 agreement with nearest class mean", False)]
    for ax, (key, ylabel, logy) in zip(axes.flat, panels):
        for i, m in enumerate(models):
            s = sorted((r for r in reg if r["model"] == m and r.get(key) is not None), key=lambda r: r["position"])
            ax.plot([r["position"] for r in s], [r[key] for r in s], marker="o", ms=3, color=MODEL_COLORS[i % 4],
                    label=m)
            if key == "nc2_equinorm":
                ax.plot([r["position"] for r in s], [r["nc2_equiangle"] for r in s], marker="s", ms=3, ls="--",
                        color=MODEL_COLORS[i % 4], label=f"{m}: NC2 equiangle (std of cosines)")
        if logy:
            ax.set_yscale("log")
            ax.yaxis.set_major_formatter(LogFormatter(labelOnlyBase=False))
            ax.yaxis.set_minor_formatter(LogFormatter(labelOnlyBase=False, minor_thresholds=(2, 0.5)))
        _xaxis(ax, xmax)
        ax.set_ylabel(ylabel, fontsize=8)
        ax.legend(fontsize=7)
    fig.suptitle("Neural collapse metrics over training (probe features)")
    out.append(fc.save(fig, "spectrum_collapse", (
        "Neural collapse metrics of Papyan et al. (2020) on the probe features over training: NC1 within-class "
        "variability (log scale), NC2 equinorm/equiangularity of the class means, NC3 distance of the normalised "
        "classifier to the normalised class means, NC4 agreement of the prediction with the nearest class mean. "
        "Bears on " + _quote(result, "s2") + ".")))

    # 4. regime per checkpoint
    fig, axes = plt.subplots(1, 2, figsize=(11.0, 4.2), layout="constrained")
    mf_pi, mf_gap = reg[0].get("mf_pi", 0.9), reg[0].get("mf_gap", 2.0)
    for i, m in enumerate(models):
        s = sorted((r for r in reg if r["model"] == m), key=lambda r: r["position"])
        x = [r["position"] for r in s]
        col = MODEL_COLORS[i % 4]
        axes[0].plot(x, [r["pi_star_C"] for r in s], color=col, label=f"{m}: Pi*(C)")
        axes[0].plot(x, [r["pi_C"] for r in s], color=col, ls="--", label=f"{m}: Pi(C)")
        gaps = [r["gap_ratio_C"] if r["gap_ratio_C"] is not None else np.nan for r in s]
        axes[1].plot(x, gaps, color=col, label=m)
        for ax, ys in ((axes[0], [r["pi_star_C"] for r in s]), (axes[1], gaps)):
            ax.scatter(x, ys, c=[REGIME_COLORS.get(r["regime"], "gray") for r in s], s=28, zorder=3,
                       edgecolors="black", linewidths=0.4)
    axes[0].axhline(mf_pi, color="gray", ls="-.", lw=0.8, label=f"MF threshold {mf_pi:g}")
    axes[1].axhline(mf_gap, color="gray", ls="-.", lw=0.8, label=f"MF threshold {mf_gap:g}")
    for reg_name, col in REGIME_COLORS.items():
        axes[1].scatter([], [], c=col, s=28, edgecolors="black", linewidths=0.4, label=f"regime {reg_name}")
    axes[0].set_ylim(-0.02, 1.02)
    axes[0].set_ylabel(f"Pi*(C), Pi(C) (C = {C})")
    axes[1].set_yscale("log")
    axes[1].yaxis.set_major_formatter(LogFormatter(labelOnlyBase=False))
    axes[1].yaxis.set_minor_formatter(LogFormatter(labelOnlyBase=False, minor_thresholds=(2, 0.5)))
    axes[1].set_ylabel("eigen-gap rho_C / rho_C+1")
    for ax in axes:
        _xaxis(ax, xmax)
        ax.legend(fontsize=7)
    axes[0].set_title("Share of targets / outputs in the top-C eigenfunctions")
    axes[1].set_title("Eigen-gap after C; marker colour = regime")
    out.append(fc.save(fig, "spectrum_regimes", (
        f"The numbers that decide the regime at every checkpoint: Pi*(C) and Pi(C) (MF needs both >= {mf_pi:g}) and "
        f"the eigen-gap rho_C / rho_C+1 (MF needs >= {mf_gap:g}); marker colours give the regime (green MF, orange "
        "intermediate, red EF). Bears on " + _quote(result, "s1") + ".")))
    return out


def _k_max(rho: list[dict[str, Any]]) -> int:
    return max((r["k"] for r in rho), default=0)
