"""Figures of experiment 6 (subspace match, Wang et al. 2018), drawn from ``results/subspace_match.json``.

* similarity vs eps per layer, trained pair vs untrained pair;
* similarity over the epochs (A vs B at the same epoch; A vs A final);
* the size distribution of the simple matches;
* the top-activating probe images of the neurons of a few simple matches (from the ``.npz`` side file).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from deepspan.report._base import FigureContext, FigureInfo, plt

__all__ = ["draw"]


def _claim(result: dict[str, Any], cid: str) -> dict[str, Any] | None:
    return next((c for c in result.get("claims", []) if c["id"] == cid), None)


def _quote(result: dict[str, Any], cid: str) -> str:
    c = _claim(result, cid)
    return f"\u201c{c['quote']}\u201d ({c['source']}; verdict: {c['verdict']})" if c else ""


def _layers(rows: list[dict[str, Any]]) -> list[str]:
    return [r["layer"] for r in sorted({r["layer"]: r for r in rows}.values(), key=lambda r: r["layer_index"])]


def _claim_eps(rows: list[dict[str, Any]]) -> float:
    grid = sorted({float(r["eps"]) for r in rows})
    return 0.5 if any(math.isclose(e, 0.5) for e in grid) else grid[-1]


def draw(result: dict[str, Any], fc: FigureContext) -> list[FigureInfo]:
    rows = result["tables"]["similarity"]
    layers = _layers(rows)
    ab = [r for r in rows if r["comparison"] == "A vs B"]
    last = max(r["epoch"] for r in ab)
    colors = {layer: plt.cm.viridis(i / max(len(layers) - 1, 1)) for i, layer in enumerate(layers)}
    out: list[FigureInfo] = []

    # 1. similarity vs eps, trained vs untrained
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for layer in layers:
        for epoch, style, what in ((last, "-", "trained"), (0, "--", "untrained")):
            s = sorted((r for r in ab if r["layer"] == layer and r["epoch"] == epoch), key=lambda r: r["eps"])
            ax.errorbar([r["eps"] for r in s], [r["similarity"] for r in s], yerr=[r["std"] for r in s],
                        color=colors[layer], ls=style, marker="o" if what == "trained" else "s", ms=4, capsize=2,
                        label=f"{layer} ({what})")
    ax.set_xlabel("eps (relative distance to the other network's span)")
    ax.set_ylabel("maximum matching similarity (fraction of neurons)")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title("Subspace match of two seeds: similarity vs eps")
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    out.append(fc.save(fig, "subspace_match_eps", (
        "Maximum matching similarity (|X*|+|Y*|)/(n_a+n_b) of each layer between networks A and B (two seeds), "
        "against eps; solid: both trained (final epoch), dashed: both untrained (initialisation); error bars: "
        "standard deviation over the row samples. Bears on " + _quote(result, "c1") + " and on the layer trend "
        + _quote(result, "c2") + ".")))

    # 2. over the epochs at the claim eps
    e = _claim_eps(rows)
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for layer in layers:
        for comp, style in (("A vs B", "-"), ("A vs A final", "--")):
            s = sorted((r for r in rows if r["comparison"] == comp and r["layer"] == layer
                        and math.isclose(r["eps"], e)), key=lambda r: r["epoch"])
            if s:
                ax.plot([r["epoch"] for r in s], [r["similarity"] for r in s], color=colors[layer], ls=style,
                        marker="o", ms=4, label=f"{layer}: {comp}")
    ax.set_xlabel("training epoch (0 = initialisation)")
    ax.set_ylabel(f"maximum matching similarity at eps = {e:g}")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title("Subspace match over training")
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    out.append(fc.save(fig, "subspace_match_epochs", (
        f"Maximum matching similarity at eps = {e:g} over training: solid, network A vs network B at the same epoch; "
        "dashed, network A at each epoch vs A at its final epoch. Bears on " + _quote(result, "c3") + ".")))

    # 3. simple-match sizes
    sm = result["tables"].get("simple_matches", [])
    prov = result.get("provenance", {})
    sm_layer, sm_eps = prov.get("simple_match_layer", "?"), prov.get("simple_match_eps", e)
    fig, ax = plt.subplots(figsize=(5.6, 3.8))
    if sm:
        sizes = np.array([r["size"] for r in sm])
        bins = np.arange(sizes.min() - 0.5, sizes.max() + 1.5, 1.0)
        ax.hist(sizes, bins=bins, color="tab:blue", edgecolor="black", label=f"{len(sm)} simple matches")
        ax.axvline(float(np.median(sizes)), color="tab:red", ls="--", label=f"median {np.median(sizes):g}")
        ax.legend(fontsize=8)
    else:
        ax.text(0.5, 0.5, f"no simple match of {sm_layer}\nat eps = {sm_eps:g}\n(the maximum match is empty)",
                ha="center", va="center", transform=ax.transAxes)
        ax.set_xlim(0, 10)
    ax.set_xlabel("simple-match size (neurons of A + neurons of B)")
    ax.set_ylabel("number of simple matches")
    ax.set_title(f"Simple matches of {sm_layer} (eps = {sm_eps:g}, trained pair)")
    out.append(fc.save(fig, "subspace_match_simple_sizes", (
        f"Distribution of the sizes of the simple matches (distinct v-minimal matches) of layer {sm_layer} between "
        f"the trained networks A and B at eps = {sm_eps:g}. Bears on " + _quote(result, "c4") + ".")))

    # 4. top-activating images of the neurons of a few simple matches
    if "top_images" in result.get("arrays", {}):
        z = fc.arrays(result, "top_images")
        imgs, match, side, neuron = z["images"], z["match"], z["side"], z["neuron"]
        acts, labels = z["activations"], z["labels"]
        n_rows, k = imgs.shape[0], imgs.shape[1]
        fig, axes = plt.subplots(n_rows, k, figsize=(1.0 * k + 1.2, 1.05 * n_rows + 0.8), squeeze=False,
                                 layout="constrained")
        for i in range(n_rows):
            for j in range(k):
                ax = axes[i, j]
                img = imgs[i, j]
                img = img[0] if img.shape[0] == 1 else np.moveaxis(img, 0, -1)
                ax.imshow(img, cmap="gray_r" if img.ndim == 2 else None)
                ax.set_xticks([])
                ax.set_yticks([])
                ax.set_title(f"y={labels[i, j]} a={acts[i, j]:.2g}", fontsize=6)
            axes[i, 0].set_ylabel(f"match {match[i]}\n{'A' if side[i] == 'a' else 'B'} ch {neuron[i]}",
                                  fontsize=7, rotation=0, ha="right", va="center")
        fig.suptitle(f"Top-{k} probe images of the neurons of simple matches ({sm_layer}, eps = {sm_eps:g})",
                     fontsize=9)
        fig.supxlabel("rank by spatially max-pooled activation (1 = highest)", fontsize=8)
        out.append(fc.save(fig, "subspace_match_top_images", (
            f"For the smallest simple matches of {sm_layer} (eps = {sm_eps:g}), each row is one neuron (A or B "
            f"network, channel index) and shows its top-{k} probe images by spatially max-pooled activation "
            "(y: label, a: activation). Neurons of one match that respond to the same images share a representation; "
            "bears on " + _quote(result, "c4") + ".")))
    return out
