"""Figures of experiment 6 (subspace match, Wang et al. 2018), drawn from ``results/subspace_match.json``.

* per-layer similarity (mean +- std over the draws) of the trained and the untrained pair, one panel per
  architecture, one colour per eps;
* similarity over the training stages (A vs B at the same stage; A vs A final);
* the size distribution of the simple matches, per architecture;
* the top-activating probe images of the neurons of a few simple matches, per architecture.

Every text is at least 9 pt when the figure is shown at a page width of 7.5 inches: figures are 7.5
inches wide with 9-10 pt text, and a wider one (the image grids) scales its text by width / 7.5.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from deepspan.report._base import FigureContext, FigureInfo, plt

__all__ = ["draw"]

PAGE_WIDTH = 7.5   # inches: the width at which every text must read >= MIN_PT
MIN_PT = 9.0
BASE_PT = 10.0     # text size of figures PAGE_WIDTH wide


def font_for(width: float) -> float:
    """Text size (pt) of a figure ``width`` inches wide: BASE_PT, scaled up by width / PAGE_WIDTH when wider."""
    return BASE_PT * max(1.0, width / PAGE_WIDTH)


def _rc(width: float) -> dict[str, Any]:
    fs = font_for(width)
    return {"font.size": fs, "axes.titlesize": fs, "axes.labelsize": fs, "xtick.labelsize": fs,
            "ytick.labelsize": fs, "legend.fontsize": fs, "legend.title_fontsize": fs, "figure.titlesize": fs,
            "figure.labelsize": fs}


def _claim(result: dict[str, Any], cid: str) -> dict[str, Any] | None:
    return next((c for c in result.get("claims", []) if c["id"] == cid), None)


def _quote(result: dict[str, Any], cid: str) -> str:
    c = _claim(result, cid)
    return f"\u201c{c['quote']}\u201d ({c['source']}; verdict: {c['verdict']})" if c else ""


def _models(rows: list[dict[str, Any]]) -> list[str]:
    return list(dict.fromkeys(r["model"] for r in rows))


def _layers(rows: list[dict[str, Any]], model: str) -> list[dict[str, Any]]:
    """One row per layer of ``model`` (its name, index and kind), in forward order."""
    seen = {r["layer"]: r for r in rows if r["model"] == model}
    return sorted(seen.values(), key=lambda r: r["layer_index"])


def _shown_eps(rows: list[dict[str, Any]]) -> float:
    grid = sorted({float(r["eps"]) for r in rows})
    return 0.5 if any(math.isclose(e, 0.5) for e in grid) else grid[-1]


def _num(x: Any) -> float:
    return float("nan") if x is None else float(x)


def _tick_names(layer_rows: list[dict[str, Any]]) -> list[str]:
    return [f"{r['layer']}\n{'conv' if r['conv'] else 'fc'}" for r in layer_rows]


def draw(result: dict[str, Any], fc: FigureContext) -> list[FigureInfo]:
    rows = result["tables"]["similarity"]
    models = _models(rows)
    eps_grid = sorted({float(r["eps"]) for r in rows})
    e_show = _shown_eps(rows)
    out: list[FigureInfo] = []
    W = PAGE_WIDTH
    n_draws = max((r["draws"] for r in rows if r["conv"]), default=1)
    n_rows = max((r["n_rows"] for r in rows if r["conv"]), default=0)

    # 1. per-layer similarity, trained and untrained pair, every eps, one panel per architecture
    eps_colors = {e: plt.cm.plasma(0.85 * i / max(len(eps_grid) - 1, 1)) for i, e in enumerate(eps_grid)}
    with plt.rc_context(_rc(W)):
        fig, axes = plt.subplots(1, len(models), figsize=(W, 4.4), squeeze=False, layout="constrained", sharey=True)
        for ax, model in zip(axes[0], models):
            lrows = _layers(rows, model)
            final = max(r["epoch"] for r in rows if r["model"] == model and r["comparison"] == "A vs B")
            x = np.arange(len(lrows))
            for e in eps_grid:
                for epoch, style, marker in ((final, "-", "o"), (0, "--", "s")):
                    s = {r["layer"]: r for r in rows if r["model"] == model and r["comparison"] == "A vs B"
                         and r["epoch"] == epoch and math.isclose(r["eps"], e)}
                    ax.errorbar(x, [s[r["layer"]]["similarity"] for r in lrows],
                                yerr=[_num(s[r["layer"]]["std"]) for r in lrows], color=eps_colors[e], ls=style,
                                marker=marker, ms=4, capsize=2, lw=1.3)
            ax.set_xticks(x, _tick_names(lrows))
            ax.set_xlim(-0.4, len(lrows) - 0.6)
            ax.set_ylim(-0.03, 1.03)
            ax.set_title(model)
            ax.grid(alpha=0.3)
        axes[0, 0].set_ylabel("max-match similarity")
        handles = [plt.Line2D([], [], color=eps_colors[e], lw=2) for e in eps_grid]
        handles += [plt.Line2D([], [], color="black", ls="-", marker="o"),
                    plt.Line2D([], [], color="black", ls="--", marker="s")]
        labels = [f"eps {e:g}" for e in eps_grid] + ["trained pair", "untrained pair"]
        fig.legend(handles, labels, loc="outside lower center", ncols=4)
        out.append(fc.save(fig, "subspace_match_layers", (
            "Maximum matching similarity (|X*|+|Y*|)/(n_a+n_b) of each layer between two networks of one architecture "
            "trained from different initialisations, on all test images; colour: eps; solid: both trained (final "
            "checkpoints); dashed: both untrained (initialisation). Conv layers: mean over "
            f"{n_draws} independent draws of {n_rows} (image, position) rows, error bars one standard deviation over "
            "the draws; fc layers: every test image once (no error bar). Neurons that are 0 on every row never match "
            "and count in the denominator, as in the paper's code. Bears on " + _quote(result, "c1")
            + " and shows the per-layer profile " + _quote(result, "c2") + ".")))

    # 2. over the training stages at the shown eps
    with plt.rc_context(_rc(W)):
        fig, axes = plt.subplots(1, len(models), figsize=(W, 5.0), squeeze=False, layout="constrained", sharey=True)
        for ax, model in zip(axes[0], models):
            lrows = _layers(rows, model)
            colors = {r["layer"]: plt.cm.viridis(0.9 * i / max(len(lrows) - 1, 1)) for i, r in enumerate(lrows)}
            for r0 in lrows:
                for comp, style in (("A vs B", "-"), ("A vs A final", "--")):
                    s = sorted((r for r in rows if r["model"] == model and r["comparison"] == comp
                                and r["layer"] == r0["layer"] and math.isclose(r["eps"], e_show)),
                               key=lambda r: r["epoch"])
                    if s:
                        ax.plot([r["epoch"] for r in s], [r["similarity"] for r in s], color=colors[r0["layer"]],
                                ls=style, marker="o", ms=4, label=f"{r0['layer']}" if comp == "A vs B" else None)
            epochs = sorted({r["epoch"] for r in rows if r["model"] == model})
            ax.set_xticks(epochs)
            ax.set_ylim(-0.03, 1.03)
            ax.set_xlabel("epoch (0 = init)")
            ax.set_title(model)
            ax.grid(alpha=0.3)
            ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.2), ncols=3, handlelength=1.2, columnspacing=0.8)
        axes[0, 0].set_ylabel(f"similarity at eps {e_show:g}")
        fig.legend([plt.Line2D([], [], color="black", ls="-"), plt.Line2D([], [], color="black", ls="--")],
                   ["A vs B (same stage)", "A vs A final"], loc="outside upper center", ncols=2)
        out.append(fc.save(fig, "subspace_match_stages", (
            f"Maximum matching similarity at eps = {e_show:g} over training, per layer (colour): solid, network A vs "
            "network B at the same stage (epoch 0: both untrained); dashed, network A at each stage vs A at its final "
            "epoch. Bears on " + _quote(result, "c3") + ".")))

    # 3. simple-match sizes
    sm = result["tables"].get("simple_matches", [])
    prov = result.get("provenance", {})
    sm_layers = prov.get("simple_match_layers", {})
    sm_eps = prov.get("simple_match_eps", e_show)
    with plt.rc_context(_rc(W)):
        fig, axes = plt.subplots(1, len(models), figsize=(W, 3.6), squeeze=False, layout="constrained")
        for ax, model in zip(axes[0], models):
            sizes = np.array([r["size"] for r in sm if r["model"] == model])
            layer = sm_layers.get(model, "?")
            if len(sizes):
                bins = np.arange(sizes.min() - 0.5, sizes.max() + 1.5, 1.0)
                ax.hist(sizes, bins=bins, color="tab:blue", edgecolor="black")
                ax.axvline(float(np.median(sizes)), color="tab:red", ls="--",
                           label=f"median {np.median(sizes):g}")
                ax.legend(loc="upper right")
                ax.xaxis.set_major_locator(plt.MaxNLocator(integer=True, nbins=6))
                ax.yaxis.set_major_locator(plt.MaxNLocator(integer=True))
            else:
                ax.text(0.5, 0.5, "no simple match\n(empty maximum match)", ha="center", va="center",
                        transform=ax.transAxes)
                ax.set_xlim(0, 10)
            ax.set_xlabel("size (neurons of A + B)")
            ax.set_title(f"{model}, {layer} ({len(sizes)} matches)")
        axes[0, 0].set_ylabel("simple matches")
        out.append(fc.save(fig, "subspace_match_simple_sizes", (
            f"Sizes of the simple matches (distinct v-minimal matches) of the trained pair at eps = {sm_eps:g}, in the "
            "last conv layer with a non-empty maximum match, on the rows of draw 0. Bears on "
            + _quote(result, "c4") + ".")))

    # 4. top-activating images of the neurons of a few simple matches, per architecture
    if "top_images" in result.get("arrays", {}):
        z = fc.arrays(result, "top_images")
        for model in models:
            if f"{model}__images" not in z:
                continue
            out.append(_image_grid(fc, result, z, model, sm_layers.get(model, "?"), sm_eps))
    return out


def _image_grid(fc: FigureContext, result: dict[str, Any], z: dict[str, np.ndarray], model: str, layer: str,
                eps: float) -> FigureInfo:
    imgs, match, side, neuron = (z[f"{model}__{k}"] for k in ("images", "match", "side", "neuron"))
    labels = z[f"{model}__labels"]
    n, k = imgs.shape[0], imgs.shape[1]
    width = 0.8 * k + 1.7
    with plt.rc_context(_rc(width)):
        fig, axes = plt.subplots(n, k, figsize=(width, 0.95 * n + 1.0), squeeze=False, layout="constrained")
        for i in range(n):
            for j in range(k):
                ax = axes[i, j]
                img = imgs[i, j]
                img = img[0] if img.shape[0] == 1 else np.moveaxis(img, 0, -1)
                ax.imshow(img, cmap="gray_r" if img.ndim == 2 else None)
                ax.set_xticks([])
                ax.set_yticks([])
                ax.set_title(f"{labels[i, j]}", pad=2)
            axes[i, 0].set_ylabel(f"m{match[i]} {'A' if side[i] == 'a' else 'B'}{neuron[i]}", rotation=0,
                                  ha="right", va="center")
        fig.suptitle(f"{model}, {layer}: top-{k} probe images per neuron")
        fig.supxlabel(f"rank 1 (left) to {k} by max-pooled activation; title: the image's label")
    return fc.save(fig, f"subspace_match_top_images_{model}", (
        f"{model}: for the smallest simple matches of {layer} (eps = {eps:g}, trained pair), each row is one neuron "
        "(mK = simple match K; A or B network and its channel index) and shows its top probe images by spatially "
        "max-pooled activation, with each image's label above it. Neurons of one match that respond to the same "
        "images share a representation; bears on " + _quote(result, "c4") + "."))
