"""Figures of experiment 8 (baselines): cross-model matrices of linear CKA, SVCCA and the P-vector |cos|,
and the scatter of the model pairs.

Drawn from ``results/baselines.json`` only (tables ``pairs`` and ``agreement``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from deepspan.report._base import FigureContext, FigureInfo, plt

PANELS = (("linear_cka", "linear CKA"), ("svcca", "SVCCA (99 % var.)"),
          ("pvector_cos", "P-vector |cos| (uncentered)"), ("pvector_cos_centered", "P-vector |cos| (centered)"))
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


def _heatmaps(result: dict[str, Any], fc: FigureContext) -> FigureInfo:
    rows = [r for r in result["tables"]["pairs"] if r["set"] == "trained"]
    fig, axes = plt.subplots(1, len(PANELS), figsize=(3.6 * len(PANELS), 4.0), layout="constrained")
    im = None
    for ax, (key, title) in zip(axes, PANELS):
        labels, M = matrix(rows, key)
        cmap = plt.get_cmap("magma").with_extremes(bad="0.85")
        im = ax.imshow(np.ma.masked_where(np.eye(len(labels), dtype=bool), M), vmin=0.0, vmax=1.0, cmap=cmap)
        ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right", fontsize=7)
        ax.set_yticks(range(len(labels)), labels, fontsize=7)
        for i in range(len(labels)):
            for j in range(len(labels)):
                if i != j:
                    ax.text(j, i, f"{M[i, j]:.2f}", ha="center", va="center", fontsize=6.5,
                            color="black" if M[i, j] > 0.5 else "white")
        ax.set_title(title, fontsize=9)
    cb = fig.colorbar(im, ax=axes, shrink=0.8)
    cb.set_label("similarity (1 = identical)")
    fig.suptitle("Cross-model similarity of the trained models' feature layers")
    return fc.save(fig, "baselines_matrices",
                   "Similarity of every pair of final models' feature layers on the probe set: linear CKA, SVCCA "
                   "(99 % variance kept), and the |cos| of the P-vector angle, uncentered (Liu et al.'s plain SVD) and "
                   "column-centered. " + QUESTION)


def _scatter(result: dict[str, Any], fc: FigureContext) -> FigureInfo:
    rows = [r for r in result["tables"]["pairs"] if r["set"] == "trained"]
    agree = {r["set"]: r for r in result["tables"].get("agreement", [])}.get("trained", {})
    fig, axes = plt.subplots(1, 2, figsize=(10.5, 4.3), layout="constrained")
    for ax, (xkey, xname, tag) in zip(axes, (("pvector_cos", "uncentered", "pv"),
                                            ("pvector_cos_centered", "centered", "pvc"))):
        x = np.array([r[xkey] for r in rows], dtype=float)
        for ykey, yname, color, marker in (("linear_cka", "linear CKA", "C0", "o"), ("svcca", "SVCCA", "C1", "s")):
            rho = agree.get(f"rho_{tag}_{'cka' if ykey == 'linear_cka' else 'svcca'}")
            lab = f"{yname} (Spearman ρ = {rho:.2f})" if rho is not None else yname
            ax.scatter(x, [r[ykey] for r in rows], color=color, marker=marker, label=lab)
        for r, xi in zip(rows, x):
            ax.annotate(f"{r['a']}–{r['b']}", (xi, r["linear_cka"]), fontsize=6, alpha=0.7,
                        xytext=(3, 3), textcoords="offset points")
        ax.set_xlabel(f"P-vector |cos| ({xname})")
        ax.set_ylabel("baseline similarity")
        ax.set_ylim(-0.02, 1.25)
        ax.set_title(f"Model pairs: P-vector ({xname}) vs CKA and SVCCA", fontsize=9)
        ax.legend(fontsize=7.5, loc="upper left")
        ax.grid(alpha=0.3)
    return fc.save(fig, "baselines_pairs",
                   "Each point is one pair of trained models: the |cos| of their P-vector angle (left uncentered, "
                   "right centered) against their linear CKA and SVCCA; the legend gives the Spearman rank correlation "
                   "over the pairs (the rule's number). Labels mark the pairs at their CKA value. " + QUESTION)


def draw(result: dict[str, Any], fc: FigureContext) -> list[FigureInfo]:
    if not result["tables"].get("pairs"):
        return []
    return [_heatmaps(result, fc), _scatter(result, fc)]
