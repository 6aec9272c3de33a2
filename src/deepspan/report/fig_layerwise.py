"""Figure of experiment 3 (layer-wise): angle to the data P-vector vs layer depth, one line per epoch.

Drawn from ``results/layerwise.json`` only (table ``angles``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from deepspan.report._base import FigureContext, FigureInfo, plt


def draw(result: dict[str, Any], fc: FigureContext) -> list[FigureInfo]:
    rows = result["tables"]["angles"]
    models = list(dict.fromkeys(r["model"] for r in rows))
    if not models:
        return []
    epochs = sorted({r["epoch"] for r in rows})
    colors = plt.get_cmap("viridis")(np.linspace(0.0, 0.9, max(len(epochs), 2)))
    fig, axes = plt.subplots(2, len(models), figsize=(3.3 * len(models), 6.6), squeeze=False, layout="constrained")
    for r_i, (centered, rname) in enumerate(((False, "uncentered"), (True, "centered"))):
        for m_i, model in enumerate(models):
            ax = axes[r_i, m_i]
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
            ax.set_xticks([d for d, _ in layers], [name for _, name in layers], rotation=45, ha="right", fontsize=7)
            ax.set_title(f"{model} ({rname})", fontsize=9)
            ax.set_xlabel("layer (input → output)", fontsize=8)
            if m_i == 0:
                ax.set_ylabel("angle to data P-vector (degrees)", fontsize=8)
            ax.grid(alpha=0.3)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=len(labels), fontsize=8, title="checkpoint",
               title_fontsize=8)
    fig.suptitle("Angle between each layer's P-vector and the data P-vector, per epoch (dotted: feature layer)")
    return [fc.save(fig, "layerwise_angles",
                    "Angle (degrees) between the P-vector of each block layer (conv outputs flattened) and the data "
                    "P-vector of the probe images, against the layer's position from input to output, one line per "
                    "epoch (init = before training); top row uncentered features, bottom row centered; the dotted "
                    "line marks the feature layer (the rule uses the layers up to it). Claim (Liu et al. 2022, "
                    "Appendix A.5, paraphrase): the angle rises through the layers early in training and "
                    "falls late.")]
