"""Figure of experiment 3 (layer-wise): angle to the data P-vector vs layer depth, one line per epoch.

Drawn from ``results/layerwise.json`` only (table ``angles``). One row of panels per model (left
uncentered, right centered), so the figure grows taller, not wider, with the number of models.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from deepspan.report._base import FIG_WIDTH, FigureContext, FigureInfo, plt, readable_style, upright_if_crowded

READINGS = ((False, "uncentered"), (True, "centered"))


def draw(result: dict[str, Any], fc: FigureContext) -> list[FigureInfo]:
    with readable_style():
        return _draw(result, fc)


def _draw(result: dict[str, Any], fc: FigureContext) -> list[FigureInfo]:
    rows = result["tables"]["angles"]
    models = list(dict.fromkeys(r["model"] for r in rows))
    if not models:
        return []
    epochs = sorted({r["epoch"] for r in rows})
    colors = plt.get_cmap("viridis")(np.linspace(0.0, 0.9, max(len(epochs), 2)))
    fig, axes = plt.subplots(len(models), 2, figsize=(FIG_WIDTH, 3.7 * len(models) + 1.0), squeeze=False,
                             sharey=True, layout="constrained")
    fig.get_layout_engine().set(wspace=0.06)
    for m_i, model in enumerate(models):
        for r_i, (centered, rname) in enumerate(READINGS):
            ax = axes[m_i, r_i]
            sel = [r for r in rows if r["model"] == model and bool(r["centered"]) == centered]
            layers = sorted({(r["depth"], r["layer"]) for r in sel})
            for e_i, epoch in enumerate(epochs):
                s = sorted((r for r in sel if r["epoch"] == epoch), key=lambda r: r["depth"])
                if not s:
                    continue
                ax.plot([r["depth"] for r in s], [r["angle"] for r in s], "o-", color=colors[e_i], ms=4,
                        label="init" if epoch == 0 else f"epoch {epoch}")
            feat = [r["depth"] for r in sel if r.get("is_feature")]
            if feat:
                ax.axvline(feat[0], color="0.5", ls=":", lw=1)
            ax.set_xticks([d for d, _ in layers], [name for _, name in layers])
            ax.set_title(f"{model} ({rname})")
            ax.set_xlabel("layer (input → output)")
            if r_i == 0:
                ax.set_ylabel("angle to data P-vector (°)")
            ax.grid(alpha=0.3)
    upright_if_crowded(fig, axes)  # long or many layer names stand upright
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=min(len(labels), 4), title="checkpoint",
               frameon=False)
    fig.suptitle("Angle of each layer's P-vector to the data P-vector\n(dotted: the feature layer)")
    return [fc.save(fig, "layerwise_angles",
                    "Angle (degrees) between the P-vector of each block layer (conv outputs flattened) and the data "
                    "P-vector of the probe images, against the layer's position from input to output, one line per "
                    "epoch (init = before training); left uncentered features, right centered; the dotted "
                    "line marks the feature layer (the rule uses the layers up to it). Claim (Liu et al. 2022, "
                    "Appendix A.5, paraphrase): the angle rises through the layers early in training and "
                    "falls late.")]
