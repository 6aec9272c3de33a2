"""Figures of experiment 1 (P-vector convergence during training; Liu et al. 2022, Sec. 4, Figs. 2-4).

Drawn from ``results/convergence.json`` only (table ``angles``: one row per model, checkpoint,
centering and target, with the checkpoint's training position in epochs):

* ``convergence_own_final`` -- angle to the model's own final P-vector against training position,
  one line per model, uncentered and centered panels, with the paper's 70-80 deg initial band;
* ``convergence_cross_final`` -- angle to the *other* models' final P-vectors, one panel per model;
* ``convergence_data`` -- angle to the data P-vector of the probe images.

The x axis is symmetric-log (linear near 0) so the initialisation (position 0) and the checkpoints
inside epoch 1 are visible beside the end-of-epoch ones.
"""

from __future__ import annotations

import math
from typing import Any

from matplotlib.lines import Line2D
from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator

from deepspan.report._base import FigureContext, FigureInfo, plt

__all__ = ["draw"]

NAME = "convergence"
PAPER_BAND = (70.0, 80.0)  # "the angle decrease from a larger one (70°–80° usually)"
CROSS_QUOTE = ("Small angles (with cosine close to 1.0) have been found in the comparisons between any two DNNs "
               "trained with different algorithms/architectures")
DATA_QUOTE = ("we carry out case studies to measure the angle between the P-vector and the principal subspace "
              "of training dataset, and connect such angle with generalization performance")


def _models(rows: list[dict[str, Any]]) -> list[str]:
    return list(dict.fromkeys(r["model"] for r in rows))


def _series(rows: list[dict[str, Any]], model: str, target: str, centered: bool) -> tuple[list[float], list[float]]:
    sel = sorted((r for r in rows if r["model"] == model and r["target"] == target and bool(r["centered"]) == centered),
                 key=lambda r: float(r["position"]))
    xs = [float(r["position"]) for r in sel]
    ys = [math.nan if r["angle"] is None else float(r["angle"]) for r in sel]
    return xs, ys


def _colors(models: list[str]) -> dict[str, Any]:
    cmap = plt.get_cmap("tab10")
    return {m: cmap(i % 10) for i, m in enumerate(models)}


def _ticks(first: float, last: float) -> list[float]:
    """0, round values from about the first checkpoint up to 1 epoch, then whole epochs (or round ones)."""
    nice = [k * 10.0 ** e for e in range(-4, 4) for k in (1, 2, 5)]
    ticks = [0.0] + [t for t in nice if first / 1.6 <= t < 1.0 and t <= last]
    if last >= 1:
        whole = list(range(1, int(math.floor(last + 1e-9)) + 1))
        if len(whole) > 6:
            whole = [t for t in nice if 1 <= t <= last and t == int(t)]
            if last - whole[-1] > 0.25 * last:
                whole.append(last)
        ticks += [float(t) for t in whole]
    return ticks


def _xaxis(ax: Any, rows: list[dict[str, Any]]) -> None:
    pos = sorted({float(r["position"]) for r in rows if float(r["position"]) > 0})
    if pos:
        ax.set_xscale("symlog", linthresh=pos[0], linscale=0.5)
        ax.set_xlim(-0.05 * pos[0], pos[-1] * 1.15)
        ax.xaxis.set_major_locator(FixedLocator(_ticks(pos[0], pos[-1])))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xlabel("training position (epochs; symlog axis, 0 = initialisation)")
    ax.grid(True, which="major", alpha=0.3)


def _quote(result: dict[str, Any], cid: str) -> str:
    for c in result.get("claims", []):
        if c.get("id") == cid:
            return f"“{c['quote']}” ({c['source']})"
    return ""


def _two_panels(rows: list[dict[str, Any]], models: list[str], colors: dict[str, Any], target: str,
                titles: tuple[str, str], ylabel: str, suptitle: str, band: bool = False) -> Any:
    """Angle to ``target`` against training position: uncentered (left) and centered (right) panels."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
    for ax, centered, title in zip(axes, (False, True), titles):
        if band:
            ax.axhspan(*PAPER_BAND, color="0.85", zorder=0, label="paper: initial angle (70-80°)")
        for m in models:
            xs, ys = _series(rows, m, target, centered)
            ax.plot(xs, ys, marker="o", ms=4, color=colors[m], label=m)
        _xaxis(ax, rows)
        ax.set_ylim(0, 90)
        ax.set_title(title)
    axes[0].set_ylabel(ylabel)
    axes[0].legend(fontsize=8, loc="upper right")
    fig.suptitle(suptitle)
    fig.tight_layout()
    return fig


def draw(result: dict[str, Any], fc: FigureContext) -> list[FigureInfo]:
    rows = result["tables"]["angles"]
    models = _models(rows)
    colors = _colors(models)
    out: list[FigureInfo] = []

    # A: angle to own final P-vector
    fig = _two_panels(rows, models, colors, "own final",
                      ("uncentered features (c1, c2, c3)", "centered features (c1_centered)"),
                      "angle to own final P-vector (deg)",
                      "P-vector angle to the model's own final P-vector during training", band=True)
    caption = ("Angle (degrees) between each model's P-vector at every checkpoint and the P-vector of its own final "
               "checkpoint, against training position in epochs (left: uncentered features, on which c1, c2 and c3 "
               "are judged; right: column-centered, on which c1_centered is judged). The grey band is the "
               "paper's usual initial angle. Claims: "
               + " ".join(q for q in (_quote(result, "c1"), _quote(result, "c2"), _quote(result, "c3")) if q))
    out.append(fc.save(fig, f"{NAME}_own_final", caption))

    # B: angle to the other models' final P-vectors
    n = len(models)
    ncol = min(3, n) or 1
    nrow = max(1, math.ceil(n / ncol))
    fig, axes = plt.subplots(nrow, ncol, figsize=(4.2 * ncol, 3.3 * nrow), sharey=True, squeeze=False)
    for i, m in enumerate(models):
        ax = axes[i // ncol][i % ncol]
        for other in models:
            if other == m:
                continue
            for centered, ls in ((False, "-"), (True, ":")):
                xs, ys = _series(rows, m, f"final {other}", centered)
                if xs:
                    ax.plot(xs, ys, ls=ls, marker=None if centered else "o", ms=3, color=colors[other])
        _xaxis(ax, rows)
        ax.set_ylim(0, 90)
        ax.set_title(f"{m} during training")
        ax.set_ylabel("angle to other final (deg)")
    handles = [Line2D([], [], color=colors[o], marker="o", ms=3, label=f"final P-vector of {o}") for o in models]
    handles += [Line2D([], [], color="k", ls="-", label="uncentered features"),
                Line2D([], [], color="k", ls=":", label="centered features")]
    if n < nrow * ncol:
        spare = axes[nrow - 1][ncol - 1]
        spare.axis("off")
        spare.legend(handles=handles, loc="center", fontsize=9, title="lines", title_fontsize=9)
        for j in range(n, nrow * ncol - 1):
            axes[j // ncol][j % ncol].set_visible(False)
    else:
        fig.legend(handles=handles, loc="lower center", ncol=min(4, len(handles)), fontsize=8,
                   bbox_to_anchor=(0.5, -0.02))
    fig.suptitle("P-vector angle to the final P-vectors of the other models during training")
    fig.tight_layout()
    caption = ("Angle (degrees) between each model's P-vector during training (panel) and the final P-vectors of "
               "the other models (lines coloured by the other model; solid uncentered, dotted centered), against "
               f"training position in epochs. Paper (Liu et al. 2022, Abstract): “{CROSS_QUOTE}” — the "
               "across-model claim is judged in the common-subspace experiment.")
    out.append(fc.save(fig, f"{NAME}_cross_final", caption))

    # C: angle to the data P-vector
    fig = _two_panels(rows, models, colors, "data", ("uncentered features and data", "centered features and data"),
                      "angle to data P-vector (deg)",
                      "P-vector angle to the data P-vector of the probe images during training")
    caption = ("Angle (degrees) between each model's P-vector and the data P-vector (top left singular vector of the "
               "probe images), against training position in epochs; left uncentered, right centered. Paper (Liu et "
               f"al. 2022, Abstract): “{DATA_QUOTE}” (the link to generalisation is judged in the generalisation "
               "experiment).")
    out.append(fc.save(fig, f"{NAME}_data", caption))
    return out
