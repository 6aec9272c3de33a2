"""Figures of experiment 5 (model-data P-vector angle vs generalisation), from ``results/generalisation.json``.

* ``generalisation_scatter``: test accuracy against the model-data angle, one point per population
  member (colour = label noise, marker = width, thin lines join the epochs of one run where a run has
  several rows), uncentered (the primary measure, top) and centered (bottom), with Spearman's rho and
  its bootstrap CI.
* ``generalisation_bootstrap``: the bootstrap distributions of rho with the point estimate and the CI,
  one panel per population of the statistics table that has bootstrap draws.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from deepspan.report._base import FIG_WIDTH, FigureContext, FigureInfo, plt, readable_style

__all__ = ["draw"]

MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
# population of a statistics row -> key prefix of its bootstrap arrays (as written by the experiment)
SUBSET_KEYS = {"all": "all", "noise=0": "noise0", "final epoch": "final", "all, width partialled out": "partial"}
POPULATION_WORDS = {"all": "all members", "noise=0": "clean-label members (noise 0)",
                    "final epoch": "last-epoch members", "all, width partialled out": "all members, width partialled out"}


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
    return f"rho = {s['spearman']:.2f}, {100 * (s.get('ci_level') or 0.95):.0f}% CI {ci} (n = {s['n']})"


def _scatter(result: dict[str, Any], fc: FigureContext) -> FigureInfo:
    rows = [r for r in result["tables"]["members"] if r.get("test_accuracy") is not None]
    noises = sorted({r["noise"] for r in rows})
    widths = sorted({r["width"] for r in rows})
    cmap = plt.get_cmap("viridis")
    colour = {n: cmap(0.0 if len(noises) == 1 else 0.85 * i / (len(noises) - 1)) for i, n in enumerate(noises)}
    marker = {w: MARKERS[i % len(MARKERS)] for i, w in enumerate(widths)}
    several = any(sum(1 for q in rows if q["run"] == r["run"]) > 1 for r in rows)
    fig, axes = plt.subplots(2, 1, figsize=(FIG_WIDTH, 9.0), sharey=True, layout="constrained")
    for ax, (col, centered, label) in zip(axes, (("angle", False, "uncentered (primary)"),
                                                 ("angle_centered", True, "centered"))):
        if several:
            for run in sorted({r["run"] for r in rows}):
                rs = sorted((r for r in rows if r["run"] == run), key=lambda r: r["epoch"])
                if len(rs) > 1:
                    ax.plot([r[col] for r in rs], [100 * r["test_accuracy"] for r in rs], "-", color="0.8", lw=0.8,
                            zorder=1)
        for r in rows:
            if r.get(col) is None:
                continue
            size = 18 + 10 * r["epoch"] if several else 40
            ax.scatter(r[col], 100 * r["test_accuracy"], color=colour[r["noise"]], marker=marker[r["width"]],
                       s=size, edgecolor="black", linewidth=0.4, zorder=2)
        s_all, s_0 = _stat(result, "all", centered), _stat(result, "noise=0", centered)
        ax.set_title(f"{label}\nall members: {_fmt(s_all)}\nnoise 0: {_fmt(s_0)}")
        ax.set_xlabel(f"angle between model and data P-vectors, {label.split(' ')[0]} (°)")
        ax.set_ylabel("test accuracy, clean labels (%)")
        ax.grid(alpha=0.3)
    handles = [plt.Line2D([], [], ls="", marker="o", color=colour[n], markeredgecolor="black",
                          label=f"label noise {n:g}") for n in noises]
    handles += [plt.Line2D([], [], ls="", marker=marker[w], color="0.6", markeredgecolor="black",
                           label=f"width {w}") for w in widths]
    if several:
        handles.append(plt.Line2D([], [], color="0.8", label="epochs of one run (marker grows with epoch)"))
    fig.legend(handles=handles, loc="outside lower center", ncol=3, frameon=False)
    fig.suptitle("Generalisation against the model-data P-vector angle over the MLP population")
    s = _stat(result, "all", False)
    claim = next((c for c in result.get("claims", []) if c["id"] == "c1"), None)
    verdict = f" Verdict on the uncentered angle: {claim['verdict']}." if claim else ""
    caption = (f"Clean-label test accuracy against the angle between each member's feature-layer P-vector and "
               f"the data P-vector on the probe; one point per "
               f"{'end-of-epoch checkpoint of each MLP' if several else 'trained MLP (its final checkpoint)'} "
               f"(colour: label noise, marker: width; the population's other settings are not encoded); top "
               f"uncentered, bottom centered. Liu et al. (2022) connect "
               f"this angle with generalisation (a smaller angle going with better generalisation, i.e. "
               f"rho(angle, accuracy) < 0). Spearman {_fmt(s)} on uncentered angles.{verdict}")
    return fc.save(fig, "generalisation_scatter", caption)


def _bootstrap(result: dict[str, Any], fc: FigureContext) -> FigureInfo | None:
    arrays = fc.arrays(result, "bootstrap")
    populations = list(dict.fromkeys(s["population"] for s in result["tables"].get("statistics", [])))
    panels = [(p, SUBSET_KEYS[p]) for p in populations
              if p in SUBSET_KEYS and f"{SUBSET_KEYS[p]}_uncentered" in arrays]
    if not panels:
        return None
    fig, axes = plt.subplots(len(panels), 1, figsize=(FIG_WIDTH, 2.3 * len(panels) + 1.4), sharex=True,
                             squeeze=False, layout="constrained")
    colours = {False: "tab:blue", True: "tab:orange"}
    for ax, (population, key) in zip(axes[:, 0], panels):
        rhos = []
        for centered in (False, True):
            colour = colours[centered]
            b = np.asarray(arrays.get(f"{key}_{'centered' if centered else 'uncentered'}", []), float)
            b = b[np.isfinite(b)]
            s = _stat(result, population, centered)
            if b.size:
                ax.hist(b, bins=np.linspace(-1, 1, 41), color=colour, alpha=0.45)
            if s is not None and s.get("spearman") is not None:
                ax.axvline(s["spearman"], color=colour, lw=2)
                rhos.append(f"{'centered' if centered else 'uncentered'} {s['spearman']:.2f}")
                for end in ("ci_low", "ci_high"):
                    if s.get(end) is not None:
                        ax.axvline(s[end], color=colour, lw=1, ls="--")
        ax.axvline(0, color="black", lw=0.8)
        ax.set_title(f"{POPULATION_WORDS.get(population, population)}: rho " + ", ".join(rhos))
        ax.set_ylabel("resamples")
    axes[-1, 0].set_xlabel("Spearman rho(angle, test accuracy)")
    handles = [plt.Rectangle((0, 0), 1, 1, color=colours[c], alpha=0.45,
                             label=f"{'centered' if c else 'uncentered'}: bootstrap rho") for c in (False, True)]
    handles += [plt.Line2D([], [], color="0.3", lw=2, label="point estimate"),
                plt.Line2D([], [], color="0.3", lw=1, ls="--", label="percentile CI ends")]
    fig.legend(handles=handles, loc="outside lower center", ncol=2, frameon=False)
    fig.suptitle("Bootstrap distribution of the rank correlation")
    caption = ("Percentile-bootstrap distributions of Spearman's rho between the model-data P-vector angle and "
               "clean-label test accuracy (members resampled with replacement), one panel per population of the "
               "statistics table (" + "; ".join(POPULATION_WORDS.get(p, p) for p, _ in panels) + "); solid lines "
               "mark the point estimates, dashed lines the CI ends. The claim (Liu et al. 2022: the angle is "
               "connected with generalisation, smaller angle with better accuracy) is reproduced when the "
               "uncentered CI lies entirely below 0.")
    return fc.save(fig, "generalisation_bootstrap", caption)


def draw(result: dict[str, Any], fc: FigureContext) -> list[FigureInfo]:
    """The scatter and the bootstrap histogram of experiment 5 (see the module docstring)."""
    if not result.get("tables", {}).get("members"):
        return []
    with readable_style():
        figs = [_scatter(result, fc)]
        if "bootstrap" in result.get("arrays", {}):
            boot = _bootstrap(result, fc)
            if boot is not None:
                figs.append(boot)
    return figs
