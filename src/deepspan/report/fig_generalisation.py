"""Figures of experiment 5 (model-data P-vector angle vs generalisation), from ``results/generalisation.json``.

* ``generalisation_scatter``: test accuracy against the model-data angle, one point per population
  member (colour = label noise, marker = width, thin lines join the epochs of one run), uncentered
  (the primary measure) and centered side by side, with Spearman's rho and its bootstrap CI.
* ``generalisation_bootstrap``: the bootstrap distributions of rho with the point estimate and the CI.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from deepspan.report._base import FigureContext, FigureInfo, plt

__all__ = ["draw"]

MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
# population of a statistics row -> key prefix of its bootstrap arrays (as written by the experiment)
SUBSET_KEYS = {"all": "all", "noise=0": "noise0", "final epoch": "final"}


def _stat(result: dict[str, Any], population: str, centered: bool) -> dict[str, Any] | None:
    for s in result["tables"].get("statistics", []):
        if s["population"] == population and bool(s["centered"]) == centered:
            return s
    return None


def _fmt(s: dict[str, Any] | None) -> str:
    if s is None or s.get("spearman") is None:
        return "rho = n/a"
    lo, hi = s.get("ci_low"), s.get("ci_high")
    ci = f"[{lo:.2f}, {hi:.2f}]" if lo is not None and hi is not None else "[n/a]"
    return f"rho = {s['spearman']:.2f}, {100 * s.get('ci_level', 0.95):.0f}% CI {ci} (n = {s['n']})"


def _scatter(result: dict[str, Any], fc: FigureContext) -> FigureInfo:
    rows = result["tables"]["members"]
    noises = sorted({r["noise"] for r in rows})
    widths = sorted({r["width"] for r in rows})
    cmap = plt.get_cmap("viridis")
    colour = {n: cmap(0.0 if len(noises) == 1 else 0.85 * i / (len(noises) - 1)) for i, n in enumerate(noises)}
    marker = {w: MARKERS[i % len(MARKERS)] for i, w in enumerate(widths)}
    fig, axes = plt.subplots(1, 2, figsize=(13.5, 4.6), sharey=True)
    for ax, (col, centered, label) in zip(axes, (("angle", False, "uncentered (primary)"),
                                                 ("angle_centered", True, "centered"))):
        runs = sorted({r["run"] for r in rows})
        for run in runs:
            rs = sorted((r for r in rows if r["run"] == run), key=lambda r: r["epoch"])
            if len(rs) > 1:
                ax.plot([r[col] for r in rs], [100 * r["test_accuracy"] for r in rs], "-", color="0.8", lw=0.8,
                        zorder=1)
        for r in rows:
            ax.scatter(r[col], 100 * r["test_accuracy"], color=colour[r["noise"]], marker=marker[r["width"]],
                       s=18 + 10 * r["epoch"], edgecolor="black", linewidth=0.4, zorder=2)
        s_all, s_0 = _stat(result, "all", centered), _stat(result, "noise=0", centered)
        ax.set_title(f"{label}\nall: {_fmt(s_all)}\nnoise 0: {_fmt(s_0)}", fontsize=9)
        ax.set_xlabel(f"angle between model and data P-vectors, {label.split(' ')[0]} (deg)")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("test accuracy, clean labels (%)")
    handles = [plt.Line2D([], [], ls="", marker="o", color=colour[n], markeredgecolor="black",
                          label=f"label noise {n:g}") for n in noises]
    handles += [plt.Line2D([], [], ls="", marker=marker[w], color="0.6", markeredgecolor="black",
                           label=f"width ({w}, {max(1, w // 2)})") for w in widths]
    handles.append(plt.Line2D([], [], color="0.8", label="epochs of one run (marker size grows with epoch)"))
    axes[1].legend(handles=handles, fontsize=7.5, loc="upper left", bbox_to_anchor=(1.02, 1.0), frameon=False)
    fig.suptitle("Generalisation vs model-data P-vector angle over the MLP population")
    fig.tight_layout()
    s = _stat(result, "all", False)
    claim = next((c for c in result.get("claims", []) if c["id"] == "c1"), None)
    verdict = f" Verdict on the uncentered angle: {claim['verdict']}." if claim else ""
    caption = (f"Clean-label test accuracy against the angle between each member's feature-layer P-vector and "
               f"the data P-vector on the probe; one point per end-of-epoch checkpoint of each MLP (colour: "
               f"label noise, marker: width). Liu et al. (2022) connect this angle with generalisation (a "
               f"smaller angle going with better generalisation, i.e. rho(angle, accuracy) < 0). Spearman "
               f"{_fmt(s)} on uncentered angles.{verdict}")
    return fc.save(fig, "generalisation_scatter", caption)


def _bootstrap(result: dict[str, Any], fc: FigureContext) -> FigureInfo:
    arrays = fc.arrays(result, "bootstrap")
    panels = [(p, k) for p, k in SUBSET_KEYS.items() if f"{k}_uncentered" in arrays]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.6 * len(panels), 4.2), sharex=True, squeeze=False)
    axes = axes[0]
    for ax, (population, key) in zip(axes, panels):
        label = {"all": "all members", "noise=0": "clean-label members (noise 0)",
                 "final epoch": "last-epoch members"}.get(population, population)
        for centered, colour in ((False, "tab:blue"), (True, "tab:orange")):
            name = f"{key}_{'centered' if centered else 'uncentered'}"
            b = np.asarray(arrays.get(name, []), float)
            b = b[np.isfinite(b)]
            s = _stat(result, population, centered)
            tag = "centered" if centered else "uncentered"
            if b.size:
                ax.hist(b, bins=np.linspace(-1, 1, 41), color=colour, alpha=0.45,
                        label=f"{tag}: bootstrap rho ({b.size} resamples)")
            if s is not None and s.get("spearman") is not None:
                ax.axvline(s["spearman"], color=colour, lw=2, label=f"{tag}: rho = {s['spearman']:.2f}")
                for end in ("ci_low", "ci_high"):
                    if s.get(end) is not None:
                        ax.axvline(s[end], color=colour, lw=1, ls="--")
        ax.axvline(0, color="black", lw=0.8)
        ax.set_title(label)
        ax.set_xlabel("Spearman rho(angle, test accuracy)")
        ax.set_ylabel("resamples (count)")
        ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=1, frameon=False)
    fig.suptitle("Bootstrap distribution of the rank correlation (dashed: percentile CI)")
    fig.tight_layout()
    caption = ("Percentile-bootstrap distributions of Spearman's rho between the model-data P-vector angle and "
               "clean-label test accuracy (members resampled with replacement), for all members, the "
               "clean-label members and the last-epoch checkpoints; solid lines mark the point estimates, "
               "dashed lines the CI ends. The claim "
               "(Liu et al. 2022: the angle is connected with generalisation, smaller angle with better "
               "accuracy) is reproduced when the uncentered CI lies entirely below 0.")
    return fc.save(fig, "generalisation_bootstrap", caption)


def draw(result: dict[str, Any], fc: FigureContext) -> list[FigureInfo]:
    """The scatter and the bootstrap histogram of experiment 5 (see the module docstring)."""
    if not result.get("tables", {}).get("members"):
        return []
    figs = [_scatter(result, fc)]
    if "bootstrap" in result.get("arrays", {}):
        figs.append(_bootstrap(result, fc))
    return figs
