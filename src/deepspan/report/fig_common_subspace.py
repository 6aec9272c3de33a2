"""Figures of experiment 2 (common subspace): angle heatmaps per set and reading, and the set means.

Drawn from ``results/common_subspace.json`` only (tables ``angles`` and ``summary``; the trained pairs'
``null_low`` / ``null_high`` give the permutation-null band).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from deepspan.report._base import FIG_WIDTH, FigureContext, FigureInfo, plt, readable_style

SETS = ("trained", "untrained", "random")
READINGS = ((False, "uncentered"), (True, "centered"))
CLAIM = ("Liu et al. 2022 (Abstract): \"Small angles (with cosine close to 1.0) have been found in the comparisons "
         "between any two DNNs trained with different algorithms/architectures.\"")


def angle_matrix(rows: list[dict[str, Any]], set_: str, centered: bool) -> tuple[list[str], np.ndarray]:
    """Symmetric angle matrix (degrees, zero diagonal) of one set and reading from the long-format rows."""
    sel = [r for r in rows if r["set"] == set_ and bool(r["centered"]) == centered]
    labels: list[str] = []
    for r in sel:
        for k in ("a", "b"):
            if r[k] not in labels:
                labels.append(r[k])
    M = np.zeros((len(labels), len(labels)))
    for r in sel:
        i, j = labels.index(r["a"]), labels.index(r["b"])
        M[i, j] = M[j, i] = r["angle"]
    return labels, M


#: cells are annotated with their angle up to this many models per heat map (beyond, the colour bar reads them)
ANNOTATE_UP_TO = 8


def _heatmap(ax: Any, labels: list[str], M: np.ndarray, title: str) -> Any:
    cmap = plt.get_cmap("viridis_r").with_extremes(bad="0.85")
    shown = np.ma.masked_where(np.eye(len(labels), dtype=bool), M)
    im = ax.imshow(shown, vmin=0.0, vmax=90.0, cmap=cmap)
    ax.set_xticks(range(len(labels)), labels, rotation=90)
    ax.set_yticks(range(len(labels)), labels)
    if len(labels) <= ANNOTATE_UP_TO:
        for i in range(len(labels)):
            for j in range(len(labels)):
                if i != j:
                    ax.text(j, i, f"{M[i, j]:.0f}", ha="center", va="center", fontsize=9.5,
                            color="white" if M[i, j] > 45 else "black")
    ax.set_title(title)
    return im


def draw(result: dict[str, Any], fc: FigureContext) -> list[FigureInfo]:
    with readable_style():
        return _draw(result, fc)


def _draw(result: dict[str, Any], fc: FigureContext) -> list[FigureInfo]:
    rows = result["tables"]["angles"]
    out = []
    # one row per set, one column per reading: tall and narrow, so the labels keep their size at page width
    fig, axes = plt.subplots(len(SETS), 2, figsize=(FIG_WIDTH, 3.6 * len(SETS) + 0.6), layout="constrained",
                             squeeze=False)
    im = None
    for r, s in enumerate(SETS):
        for c, (centered, rname) in enumerate(READINGS):
            labels, M = angle_matrix(rows, s, centered)
            ax = axes[r, c]
            if not labels:
                ax.axis("off")
                continue
            off = M[np.triu_indices(len(labels), 1)]
            im = _heatmap(ax, labels, M, f"{s}, {rname} (mean {off.mean():.1f}°)")
    if im is not None:
        cb = fig.colorbar(im, ax=axes, shrink=0.5, location="bottom", aspect=30)
        cb.set_label("P-vector angle (degrees; grey diagonal: a model with itself)")
    fig.suptitle("Pairwise P-vector angles: trained vs untrained models vs random maps")
    out.append(fc.save(fig, "common_subspace_heatmaps",
                       "Pairwise angles (degrees, arccos|<u,v>|) between P-vectors on the probe set, per set "
                       "(rows: trained final models, the same models at initialisation, seeded random ReLU maps and "
                       "Gaussian projections of the pixels) and per reading (left: uncentered features, right: "
                       "column-centered). " + CLAIM + " Small angles count as evidence only where they are clearly "
                       "below the untrained and random baselines."))

    summ = [r for r in result["tables"]["summary"] if r["set"] in SETS]
    null = [r for r in result["tables"]["summary"] if r["set"] not in SETS]
    fig, ax = plt.subplots(figsize=(FIG_WIDTH, 4.4), layout="constrained")
    width = 0.38
    x = np.arange(len(SETS))
    for k, (centered, rname) in enumerate(READINGS):
        sel = {r["set"]: r for r in summ if bool(r["centered"]) == centered}
        mean = np.array([sel[s]["mean_angle"] if s in sel else np.nan for s in SETS])
        lo = np.array([sel[s]["min_angle"] if s in sel else np.nan for s in SETS])
        hi = np.array([sel[s]["max_angle"] if s in sel else np.nan for s in SETS])
        ax.bar(x + (k - 0.5) * width, mean, width, label=f"{rname} (mean; bars: min-max)",
               yerr=[mean - lo, hi - mean], capsize=3, alpha=0.85)
    for k, (centered, rname) in enumerate(READINGS):  # the trained pairs' permutation null (central 95 %)
        lows = [r["null_low"] for r in rows if r["set"] == "trained" and bool(r["centered"]) == centered
                and r.get("null_low") is not None]
        highs = [r["null_high"] for r in rows if r["set"] == "trained" and bool(r["centered"]) == centered
                 and r.get("null_high") is not None]
        if lows:
            left = x[0] + (k - 1) * width
            ax.fill_between([left, left + width], min(lows), max(highs), color=f"C{k}", alpha=0.3, hatch="//", zorder=3,
                            lw=0, label=f"trained pairs, {rname}: permutation null (central 95 %)")
    if null:
        ax.axhline(null[0]["mean_angle"], color="k", ls="--", lw=1,
                   label=f"independent random unit vectors ({null[0]['mean_angle']:.1f}°)")
    ax.set_xticks(x, SETS)
    ax.set_ylabel("pairwise P-vector angle (°)")
    ax.set_xlabel("set of feature maps")
    ax.set_ylim(0, 95)
    fig.legend(loc="outside lower center", ncol=2, frameon=False)
    ax.set_title("Mean pairwise P-vector angle per set and reading")
    out.append(fc.save(fig, "common_subspace_summary",
                       "Mean (bars) and range (error bars) of the pairwise P-vector angles within each set, "
                       "uncentered and centered; hatched bands over the trained bars: the range of the central 95 % "
                       "of the trained pairs' permutation nulls (the angle when one model's probe images are "
                       "shuffled against the other's); dashed: the mean angle of independent random unit vectors in "
                       "R^N. " + CLAIM))
    return out
