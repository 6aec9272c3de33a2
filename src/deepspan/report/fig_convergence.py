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

from deepspan.report._base import FIG_WIDTH, FigureContext, FigureInfo, epoch_axis, plt, readable_style

__all__ = ["draw"]

NAME = "convergence"
PAPER_BAND = (70.0, 80.0)  # "the angle decrease from a larger one (70°–80° usually)"
CROSS_QUOTE = ("Small angles (with cosine close to 1.0) have been found in the comparisons between any two DNNs "
               "trained with different algorithms/architectures")
DATA_QUOTE = ("we carry out case studies to measure the angle between the P-vector and the principal subspace "
              "of training dataset, and connect such angle with generalization performance")
SPLITS = (("test", "-", "held-out test probe"), ("train", "--", "training probe"))


def _feature_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows of the feature layers (the judged reading; older results have no ``layer_role``)."""
    return [r for r in rows if r.get("layer_role", "feature") == "feature"]


def _models(rows: list[dict[str, Any]]) -> list[str]:
    return list(dict.fromkeys(r["model"] for r in rows))


def _series(rows: list[dict[str, Any]], model: str, target: str, centered: bool,
            split: str = "test") -> tuple[list[float], list[float]]:
    sel = sorted((r for r in rows if r["model"] == model and r["target"] == target and bool(r["centered"]) == centered
                  and r.get("split", "test") == split), key=lambda r: float(r["position"]))
    xs = [float(r["position"]) for r in sel]
    ys = [math.nan if r["angle"] is None else float(r["angle"]) for r in sel]
    return xs, ys


def _null_band(rows: list[dict[str, Any]], model: str, target: str,
               centered: bool) -> tuple[tuple[list[float], list[float]] | tuple, tuple[list[float], list[float]] | tuple]:
    """((xs, null_low), (xs, null_high)) of one model's rows that carry a permutation-null band, else ((), ())."""
    sel = sorted((r for r in rows if r["model"] == model and r["target"] == target and bool(r["centered"]) == centered
                  and r.get("split", "test") == "test" and r.get("null_low") is not None),
                 key=lambda r: float(r["position"]))
    if not sel:
        return (), ()
    xs = [float(r["position"]) for r in sel]
    return (xs, [float(r["null_low"]) for r in sel]), (xs, [float(r["null_high"]) for r in sel])


def _colors(models: list[str]) -> dict[str, Any]:
    cmap = plt.get_cmap("tab10")
    return {m: cmap(i % 10) for i, m in enumerate(models)}


def _positions(rows: list[dict[str, Any]]) -> list[float]:
    return [float(r["position"]) for r in rows]


def _quote(result: dict[str, Any], cid: str) -> str:
    for c in result.get("claims", []):
        if c.get("id") == cid:
            return f"“{c['quote']}” ({c['source']})"
    return ""


def _two_panels(rows: list[dict[str, Any]], models: list[str], colors: dict[str, Any], target: str,
                titles: tuple[str, str], ylabel: str, suptitle: str, band: bool = False,
                splits: tuple[tuple[str, str, str], ...] = SPLITS[:1]) -> Any:
    """Angle to ``target`` against training position: uncentered (left) and centered (right) panels,
    one line per model (and per probe split in ``splits``: line style), legend below."""
    fig, axes = plt.subplots(1, 2, figsize=(FIG_WIDTH, 4.6), sharey=True, layout="constrained")
    for ax, centered, title in zip(axes, (False, True), titles):
        if band:
            ax.axhspan(*PAPER_BAND, color="0.85", zorder=0)
        for m in models:
            for split, ls, _ in splits:
                xs, ys = _series(rows, m, target, centered, split)
                if xs:
                    ax.plot(xs, ys, ls=ls, marker="o" if ls == "-" else None, ms=3.5, color=colors[m])
            low, high = _null_band(rows, m, target, centered)
            if low:
                ax.fill_between(low[0], low[1], high[1], color=colors[m], alpha=0.12, lw=0)
        epoch_axis(ax, _positions(rows), width_in=0.4 * FIG_WIDTH)
        ax.set_ylim(0, 90)
        ax.set_yticks(range(0, 91, 15))
        ax.set_title(title)
        ax.grid(True, alpha=0.3)
    axes[0].set_ylabel(ylabel)
    handles = [Line2D([], [], color=colors[m], marker="o", ms=3.5, label=m) for m in models]
    if band:
        handles.append(plt.Rectangle((0, 0), 1, 1, color="0.85", label="paper: initial angle 70-80°"))
    if any(r.get("null_low") is not None for r in rows if r["target"] == target):
        handles.append(plt.Rectangle((0, 0), 1, 1, color="0.5", alpha=0.25,
                                     label="shaded: permutation null, central 95 %"))
    if len(splits) > 1:
        handles += [Line2D([], [], color="k", ls=ls, label=words) for _, ls, words in splits]
    fig.legend(handles=handles, loc="outside lower center", ncol=3, frameon=False)
    fig.suptitle(suptitle)
    return fig


def draw(result: dict[str, Any], fc: FigureContext) -> list[FigureInfo]:
    with readable_style():
        return _draw(result, fc)


def _draw(result: dict[str, Any], fc: FigureContext) -> list[FigureInfo]:
    rows = _feature_rows(result["tables"]["angles"])
    models = _models(rows)
    colors = _colors(models)
    out: list[FigureInfo] = []

    # A: angle to own final P-vector
    fig = _two_panels(rows, models, colors, "own final",
                      ("uncentered (c1, c2, c3)", "centered (c1_centered ...)"),
                      "angle to own final P-vector (°)",
                      "Angle to the model's own final P-vector during training", band=True)
    caption = ("Angle (degrees) between each model's P-vector at every checkpoint and the P-vector of its own final "
               "checkpoint, against training position in epochs on a log axis (init = before training; left: "
               "uncentered features, on which c1, c2 and c3 are judged; right: column-centered, on which the "
               "_centered claims are judged). The grey band is the paper's usual initial angle; the band in each "
               "model's colour is the central 95 % of the permutation null of its angle (the checkpoint's and the "
               "final P-vector with the probe images shuffled against each other): an angle inside it is one that "
               "unrelated samples would give. Claims: "
               + " ".join(q for q in (_quote(result, "c1"), _quote(result, "c2"), _quote(result, "c3")) if q))
    out.append(fc.save(fig, f"{NAME}_own_final", caption))

    # B: angle to the other models' final P-vectors: one panel per model, two columns
    n = len(models)
    ncol = 2 if n > 1 else 1
    nrow = max(1, math.ceil(n / ncol))
    spare = n < nrow * ncol
    fig, axes = plt.subplots(nrow, ncol, figsize=(FIG_WIDTH, 2.6 * nrow + (0.6 if spare else 1.6)), sharey=True,
                             squeeze=False, layout="constrained")
    for i, m in enumerate(models):
        ax = axes[i // ncol][i % ncol]
        for other in models:
            if other == m:
                continue
            for centered, ls in ((False, "-"), (True, ":")):
                xs, ys = _series(rows, m, f"final {other}", centered)
                if xs:
                    ax.plot(xs, ys, ls=ls, marker=None if centered else "o", ms=3, color=colors[other])
        bottom = i + ncol >= n  # no panel below: this one carries the x axis labels
        epoch_axis(ax, _positions(rows), width_in=0.4 * FIG_WIDTH, label=None if bottom else "")
        if not bottom:
            ax.tick_params(axis="x", labelbottom=False)
        ax.set_ylim(0, 90)
        ax.set_yticks(range(0, 91, 30))
        ax.set_title(f"{m} during training")
        ax.grid(True, alpha=0.3)
        if i % ncol == 0:
            ax.set_ylabel("angle (°)")
    handles = [Line2D([], [], color=colors[o], marker="o", ms=3, label=f"final P-vector of {o}") for o in models]
    handles += [Line2D([], [], color="k", ls="-", label="uncentered features"),
                Line2D([], [], color="k", ls=":", label="centered features")]
    if spare:
        for j in range(n, nrow * ncol):
            axes[j // ncol][j % ncol].axis("off")
        axes[nrow - 1][ncol - 1].legend(handles=handles, loc="center", frameon=False, title="lines")
    else:
        fig.legend(handles=handles, loc="outside lower center", ncol=2, frameon=False)
    fig.suptitle("Angle to the final P-vectors of the other models during training")
    caption = ("Angle (degrees) between each model's P-vector during training (panel) and the final P-vectors of "
               "the other models (lines coloured by the other model; solid uncentered, dotted centered), against "
               f"training position in epochs on a log axis. Paper (Liu et al. 2022, Abstract): “{CROSS_QUOTE}” — the "
               "across-model claim is judged in the common-subspace experiment.")
    out.append(fc.save(fig, f"{NAME}_cross_final", caption))

    # C: angle to the data P-vector (held-out test probe solid, training probe dashed)
    splits = tuple(s for s in SPLITS if any(r.get("split", "test") == s[0] and r["target"] == "data" for r in rows))
    fig = _two_panels(rows, models, colors, "data", ("uncentered", "centered"),
                      "angle to data P-vector (°)",
                      "Angle to the data P-vector of the probe images during training", splits=splits or SPLITS[:1])
    caption = ("Angle (degrees) between each model's P-vector and the data P-vector (top left singular vector of the "
               "probe images), against training position in epochs on a log axis; left uncentered, right centered"
               + ("; solid lines: the held-out test probe, dashed: a probe of training images" if len(splits) > 1
                  else "")
               + f". Paper (Liu et al. 2022, Abstract): “{DATA_QUOTE}” (the link to generalisation is judged in the "
               "generalisation experiment).")
    out.append(fc.save(fig, f"{NAME}_data", caption))
    return out
