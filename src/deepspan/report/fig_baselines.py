"""Figures of experiment 8 (baselines): cross-model matrices of linear CKA, SVCCA and the P-vector |cos|,
and the scatter of the model pairs.

Drawn from ``results/baselines.json`` only (tables ``pairs`` and ``agreement``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from matplotlib.lines import Line2D

from deepspan.report._base import FIG_WIDTH, FigureContext, FigureInfo, plt, readable_style

PANELS = (("linear_cka", "linear CKA"), ("svcca", "SVCCA (99 % var.)"),
          ("pvector_cos", "P-vector |cos| (uncentered)"), ("pvector_cos_centered", "P-vector |cos| (centered)"))
DISTANCE_PANELS = (("procrustes", "Procrustes distance"),)
QUESTION = ("Do the measures agree on which model pairs are most alike? Kornblith et al. 2019: CKA identifies "
            "correspondences between networks from different initialisations; Liu et al. 2022: small P-vector "
            "angles between any two trained networks.")


def matrix(rows: list[dict[str, Any]], key: str) -> tuple[list[str], np.ndarray]:
    """Symmetric matrix of ``key`` over the models (diagonal 1: every measure here is 1 for identical sets)."""
    labels: list[str] = []
    for r in rows:
        for k in ("a", "b"):
            if r[k] not in labels:
                labels.append(r[k])
    M = np.eye(len(labels))
    for r in rows:
        i, j = labels.index(r["a"]), labels.index(r["b"])
        M[i, j] = M[j, i] = np.nan if r[key] is None else r[key]
    return labels, M


#: cells are annotated with their value up to this many models per matrix (beyond, the colour bar reads them)
ANNOTATE_UP_TO = 7


def _heatmaps(result: dict[str, Any], fc: FigureContext) -> FigureInfo:
    rows = [r for r in result["tables"]["pairs"] if r["set"] == "trained"]
    panels = [p for p in PANELS if rows and all(p[0] in r for r in rows)]
    panels += [p for p in DISTANCE_PANELS if rows and all(p[0] in r for r in rows)]
    ncol = 2
    nrow = -(-len(panels) // ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(FIG_WIDTH, 3.7 * nrow + 0.9), layout="constrained",
                             squeeze=False)
    im = None
    for ax, (key, title) in zip(axes.flat, panels):
        labels, M = matrix(rows, key)
        distance = key in dict(DISTANCE_PANELS)
        if distance:
            np.fill_diagonal(M, 0.0)
        top = float(np.nanmax(M)) if distance and np.isfinite(M).any() and np.nanmax(M) > 0 else 1.0
        cmap = plt.get_cmap("magma_r" if distance else "magma").with_extremes(bad="0.85")
        shown = ax.imshow(np.ma.masked_where(np.eye(len(labels), dtype=bool), M), vmin=0.0, vmax=top, cmap=cmap)
        ax.set_xticks(range(len(labels)), labels, rotation=90)
        ax.set_yticks(range(len(labels)), labels)
        if len(labels) <= ANNOTATE_UP_TO:
            for i in range(len(labels)):
                for j in range(len(labels)):
                    if i != j:
                        dark = (M[i, j] / top > 0.5) != distance
                        ax.text(j, i, f"{M[i, j]:.2f}", ha="center", va="center", fontsize=9.5,
                                color="black" if dark else "white")
        ax.set_title(title)
        if distance:
            fig.colorbar(shown, ax=ax, shrink=0.8).set_label("distance (0 = identical)")
        else:
            im = shown
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    if im is not None:
        cb = fig.colorbar(im, ax=axes, shrink=0.5, location="bottom", aspect=30)
        cb.set_label("similarity (1 = identical; grey diagonal: a model with itself)")
    fig.suptitle("Cross-model similarity of the trained models' feature layers")
    return fc.save(fig, "baselines_matrices",
                   "Similarity of every pair of final models' feature layers on the probe set: linear CKA, SVCCA "
                   "(99 % variance kept), and the |cos| of the P-vector angle, uncentered (Liu et al.'s plain SVD) and "
                   "column-centered" + (", and the Procrustes shape distance (0 = identical, its own colour scale)"
                                        if any(p[0] == "procrustes" for p in panels) else "") + ". " + QUESTION)


def _scatter(result: dict[str, Any], fc: FigureContext) -> FigureInfo:
    rows = [r for r in result["tables"]["pairs"] if r["set"] == "trained"]
    agree = {r["set"]: r for r in result["tables"].get("agreement", [])}.get("trained", {})
    fig, axes = plt.subplots(2, 1, figsize=(FIG_WIDTH, 8.6 + 0.25 * len(rows) / 3), layout="constrained")
    for ax, (xkey, xname, tag) in zip(axes, (("pvector_cos", "uncentered", "pv"),
                                            ("pvector_cos_centered", "centered", "pvc"))):
        x = np.array([np.nan if r[xkey] is None else r[xkey] for r in rows], dtype=float)
        for ykey, yname, color, marker in (("linear_cka", "linear CKA", "C0", "o"), ("svcca", "SVCCA", "C1", "s")):
            rho = agree.get(f"rho_{tag}_{'cka' if ykey == 'linear_cka' else 'svcca'}")
            lab = f"{yname} (Spearman ρ = {rho:.2f})" if rho is not None else yname
            y = np.array([np.nan if r[ykey] is None else r[ykey] for r in rows], dtype=float)
            ax.scatter(x, y, color=color, marker=marker, label=lab, s=28, zorder=2)
            # each point is a model pair: its number (key below the panels) beside it
            for i, (xi, yi) in enumerate(zip(x, y), 1):
                if np.isfinite(xi) and np.isfinite(yi):
                    ax.annotate(str(i), (xi, yi), fontsize=9.5, color=color, xytext=(4, 2),
                                textcoords="offset points")
        ax.set_xlabel(f"P-vector |cos| ({xname})")
        ax.set_ylabel("baseline similarity")
        ax.set_ylim(-0.02, 1.22)  # room for the legend above the points (similarities are at most 1)
        ax.set_title(f"Model pairs: P-vector |cos| ({xname}) against CKA and SVCCA")
        ax.legend(loc="upper left", ncol=2)
        ax.grid(alpha=0.3)
    key = [Line2D([], [], ls="", label=f"{i}  {r['a']}–{r['b']}") for i, r in enumerate(rows, 1)]
    fig.legend(handles=key, loc="outside lower center", ncol=3, frameon=False, handlelength=0, handletextpad=0,
               title="model pairs (number beside each point)")
    return fc.save(fig, "baselines_pairs",
                   "Each point is one pair of trained models (its number beside it; the key below names the two "
                   "models): the |cos| of their P-vector angle (top uncentered, bottom centered) against their "
                   "linear CKA (blue) and SVCCA (orange); the legend gives the Spearman rank correlation over the "
                   "pairs (the rule's number). " + QUESTION)


def draw(result: dict[str, Any], fc: FigureContext) -> list[FigureInfo]:
    if not result["tables"].get("pairs"):
        return []
    with readable_style():
        return [_heatmaps(result, fc), _scatter(result, fc)]
