"""Figures of experiment 7 (feature-map spectrum, Nam et al. 2024; neural collapse, Papyan et al. 2020),
drawn from ``results/spectrum.json``.

* ``spectrum_rho``: the top eigenvalues rho_k over training (log axes, epochs labelled), k = C and C+1 marked;
* ``spectrum_pi_curves``: Pi*(k) at the initialisation, the end of epoch 1, the neural-collapse checkpoint and
  the end, with Pi(k) at the end;
* ``spectrum_regimes``: the two numbers of the MF rule (ours) at every checkpoint, with the regime;
* ``spectrum_collapse``: the training error and NC1-NC4 over training, the judged checkpoint marked;
* ``spectrum_heldout``: the MF numbers on training vs held-out images at the epoch ends (no verdict).

Every figure is drawn 7.2 inches wide (at most 7.5 inches once saved with its padding) with text of at least
9 pt, so it reads at a page width of 7.5 inches (``deepspan.report._base.check_readable``).
"""

from __future__ import annotations

import math
from typing import Any

from matplotlib.lines import Line2D
from matplotlib.ticker import FixedLocator, FuncFormatter, LogLocator, NullFormatter, NullLocator

from deepspan.report._base import FigureContext, FigureInfo, plt

__all__ = ["draw", "WIDTH", "MIN_FONT", "epoch_ticks"]

WIDTH = 7.2          # inches: with savefig's padding the saved image stays within a 7.5-inch page width
MIN_FONT = 9.0       # points: the smallest text at that width
RC = {"font.size": MIN_FONT, "axes.titlesize": 9.5, "axes.labelsize": MIN_FONT, "xtick.labelsize": MIN_FONT,
      "ytick.labelsize": MIN_FONT, "legend.fontsize": MIN_FONT, "figure.titlesize": 10.0,
      "legend.title_fontsize": MIN_FONT, "figure.labelsize": MIN_FONT}
REGIME_COLORS = {"MF": "tab:green", "intermediate": "tab:orange", "EF": "tab:red"}
EPOCHS = "training progress in epochs (log scale; init = untrained)"
MODEL_COLORS = ("tab:blue", "tab:purple", "tab:brown", "tab:olive", "tab:cyan")


def _quote(result: dict[str, Any], cid: str) -> str:
    c = next((c for c in result.get("claims", []) if c["id"] == cid), None)
    if c is None:
        return ""
    q = f"\u201c{c['quote']}\u201d" if c.get("quote_kind") == "verbatim" else f"(paraphrase) {c['quote']}"
    return f"{q} ({c['source']}; verdict: {c['verdict']})"


def _verdicts(result: dict[str, Any], ids: tuple[str, ...]) -> str:
    got = {c["id"]: c["verdict"] for c in result.get("claims", [])}
    return ", ".join(f"{i} {got[i]}" for i in ids if i in got) or "none saved"


def _models(rows: list[dict[str, Any]]) -> list[str]:
    return list(dict.fromkeys(r["model"] for r in rows))


def _color(models: list[str], m: str) -> str:
    return MODEL_COLORS[models.index(m) % len(MODEL_COLORS)]


# ----------------------------------------------------------------------------- axes
def init_x(rows: list[dict[str, Any]]) -> float:
    """Where the initialisation sits on the log epoch axis: a third of the first positive position."""
    pos = [r["position"] for r in rows if r["position"] > 0]
    return (min(pos) if pos else 1.0) / 3.0


def _x(r: dict[str, Any], x0: float) -> float:
    return r["position"] if r["position"] > 0 else x0


def epoch_ticks(x0: float, xmax: float) -> list[tuple[float, str]]:
    """Tick positions and labels of a log epoch axis from ``x0`` (the initialisation) to ``xmax``.

    Always "init", 1 (when reached) and the last epoch; then 0.1, 0.01 and round epochs, each only when it
    lies at least ~0.45 decades (labels of several characters) or 0.25 decades (one digit) from every chosen tick.
    """
    chosen: list[tuple[float, str]] = [(x0, "init")]

    def fmt(v: float) -> str:
        return f"{v:g}"

    def far(v: float, label: str) -> bool:
        for u, lab in chosen:
            need = 0.25 if len(lab) == 1 and len(label) == 1 else 0.45
            if abs(math.log10(v) - math.log10(u)) < need:
                return False
        return True

    for v in ([1.0] if xmax >= 1.0 else []) + [xmax]:
        if v > x0 and far(v, fmt(v)):
            chosen.append((v, fmt(v)))
    for v in (0.1, 0.01, 0.001, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0):
        if x0 < v < xmax and far(v, fmt(v)):
            chosen.append((v, fmt(v)))
    return sorted(chosen)


def _epoch_axis(ax: Any, x0: float, xmax: float, label: bool = False) -> None:
    ax.set_xscale("log")
    ax.set_xlim(x0 / 1.6, xmax * 1.25)
    ticks = epoch_ticks(x0, xmax)
    ax.xaxis.set_major_locator(FixedLocator([t for t, _ in ticks]))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, i: dict(ticks).get(v, "")))
    ax.xaxis.set_minor_locator(NullLocator())
    if label:
        ax.set_xlabel(EPOCHS)


def _gap_share_axes(fig: Any, axes: Any, gaps: list[float], gap_min: float, share_min: float, gap_label: str,
                    x0: float, xmax: float) -> None:
    """Thresholds, scales, labels and epoch axes of a (gap, share) pair of panels."""
    axes[0].axhline(gap_min, color="gray", ls="-.", lw=0.9)
    axes[1].axhline(share_min, color="gray", ls="-.", lw=0.9)
    _log_y(axes[0], gaps + [gap_min])
    axes[0].set_ylabel(gap_label)
    axes[1].set_ylabel("Pi*(C) / Pi*(p)")
    axes[1].set_ylim(-0.02, 1.02)
    axes[0].set_title("eigenvalue gap after C")
    axes[1].set_title("top-C share of what all features reach")
    for ax in axes:
        _epoch_axis(ax, x0, xmax)
    fig.supxlabel(EPOCHS)


def _log_y(ax: Any, values: list[float]) -> None:
    """Log y axis with plain labels: decades (every other one past 6 decades), or 1-2-5 within 2 decades."""
    vals = [v for v in values if v is not None and v > 0 and math.isfinite(v)]
    ax.set_yscale("log")
    ax.yaxis.set_minor_formatter(NullFormatter())
    if not vals:
        return
    span = math.log10(max(vals)) - math.log10(min(vals))
    if span < 2.0:
        ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    elif span > 6:
        ax.yaxis.set_major_locator(LogLocator(base=100))
    else:
        ax.yaxis.set_major_locator(LogLocator(base=10))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, i: f"{v:.0e}" if (v < 1e-3 or v >= 1e4) else f"{v:g}"))


def _rate_y(ax: Any) -> None:
    """A rate in [0, 1] on a symlog axis (linear below 0.001), so 0 and 1 of 1000 images both show."""
    ax.set_yscale("symlog", linthresh=1e-3, linscale=0.5)
    ax.set_ylim(-2e-4, 1.3)
    ticks = [0.0, 1e-3, 1e-2, 1e-1, 1.0]
    ax.yaxis.set_major_locator(FixedLocator(ticks))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, i: f"{v:g}"))
    ax.yaxis.set_minor_locator(NullLocator())


def _k_axis(ax: Any, kmax: int) -> None:
    ax.set_xscale("log")
    ax.set_xlim(0.8, kmax * 1.25)
    ticks = [t for t in (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000) if t <= kmax * 1.25]
    ax.xaxis.set_major_locator(FixedLocator(ticks))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, i: f"{v:g}"))
    ax.xaxis.set_minor_locator(NullLocator())


def _sorted(rows: list[dict[str, Any]], **match: Any) -> list[dict[str, Any]]:
    return sorted((r for r in rows if all(r.get(k) == v for k, v in match.items())), key=lambda r: r["position"])


# ----------------------------------------------------------------------------- figures
def draw(result: dict[str, Any], fc: FigureContext) -> list[FigureInfo]:
    with plt.rc_context(RC):
        reg = result["tables"]["regimes"]
        models = _models(reg)
        x0 = init_x(reg)
        xmax = max(r["position"] for r in reg)
        C = int(reg[0]["C"])
        p = result.get("protocol", {})
        rule = p.get("mf_rule", {})
        gap_min, share_min = rule.get("gap_min", 2.0), rule.get("share_min", 0.9)
        n = p.get("n_samples", "?")
        out = [_fig_rho(result, fc, models, x0, xmax, C, n),
               _fig_pi(result, fc, models, C, share_min, n),
               _fig_regimes(result, fc, models, x0, xmax, C, gap_min, share_min, n),
               _fig_collapse(result, fc, models, x0, xmax, n)]
        if result["tables"].get("regimes_test"):
            out.append(_fig_heldout(result, fc, models, x0, xmax, gap_min, share_min))
    return out


def _fig_rho(result, fc, models, x0, xmax, C, n) -> FigureInfo:
    rho = result["tables"]["rho"]
    fig, axes = plt.subplots(1, len(models), figsize=(WIDTH, 3.1), squeeze=False, layout="constrained")
    kmax = max((r["k"] for r in rho), default=1)
    for ax, m in zip(axes[0], models):
        ks = sorted({r["k"] for r in rho if r["model"] == m})
        vals = []
        for k in ks:
            s = _sorted(rho, model=m, k=k)
            special = k in (C, C + 1)
            ys = [max(r["rho"], 1e-300) for r in s]
            vals += ys
            col = "black" if special else plt.cm.viridis((k - 1) / max(kmax - 1, 1))
            ax.plot([_x(r, x0) for r in s], ys, color=col,
                    lw=2.0 if special else 0.9, ls="--" if k == C + 1 else "-")
        _log_y(ax, vals)
        _epoch_axis(ax, x0, xmax)
        ax.set_title(m)
    axes[0][0].set_ylabel("eigenvalue rho_k = s_k^2 / n")
    fig.supxlabel(EPOCHS)
    handles = [Line2D([], [], color=plt.cm.viridis(0.0), lw=0.9, label="k = 1"),
               Line2D([], [], color="black", lw=2.0, label=f"k = C = {C}"),
               Line2D([], [], color="black", lw=2.0, ls="--", label=f"k = C+1 = {C + 1}"),
               Line2D([], [], color=plt.cm.viridis(1.0), lw=0.9, label=f"k = {kmax}")]
    fig.legend(handles=handles, loc="outside upper center", ncol=4, frameon=False)
    return fc.save(fig, "spectrum_rho", (
        f"Top {kmax} eigenvalues rho_k of the penultimate feature map over training, on {n} training images "
        f"(uncentered; log axes, epochs labelled, 'init' = untrained). Thick black: k = C = {C}; dashed: k = C+1. "
        f"A gap between the two is the eigenvalue gap of the MF regime. Bears on " + _quote(result, "s1") + "."))


def _fig_pi(result, fc, models, C, share_min, n) -> FigureInfo:
    curves = result["tables"]["pi_curves"]
    reg = result["tables"]["regimes"]
    fig, axes = plt.subplots(1, len(models), figsize=(WIDTH, 3.3), squeeze=False, layout="constrained")
    styles = {}
    for ax, m in zip(axes[0], models):
        labels = list(dict.fromkeys(r["checkpoint"] for r in curves if r["model"] == m))
        final = _sorted(reg, model=m)[-1]["checkpoint"]
        judged = next((r["checkpoint"] for r in reg if r["model"] == m and r.get("nc_checkpoint")), None)
        kmax = max(r["k"] for r in curves if r["model"] == m)
        for i, label in enumerate(labels):
            s = sorted((r for r in curves if r["model"] == m and r["checkpoint"] == label), key=lambda r: r["k"])
            role = ("init" if label == "init" else "final" if label == final else
                    "collapse" if label == judged else "epoch 1")
            col = {"init": "tab:gray", "epoch 1": "tab:orange", "collapse": "tab:purple", "final": "tab:blue"}[role]
            ax.plot([r["k"] for r in s], [r["pi_star"] for r in s], color=col, lw=1.6)
            styles[role] = col
            if label == final:
                ax.plot([r["k"] for r in s], [r["pi"] for r in s], color=col, lw=1.2, ls="--")
                ax.axhline(share_min * s[-1]["pi_star"], color="gray", lw=0.8, ls="-.")
        ax.axvline(C, color="black", lw=0.8, ls=":")
        _k_axis(ax, kmax)
        ax.set_ylim(-0.02, 1.02)
        ax.set_title(m)
    axes[0][0].set_ylabel("Pi*(k): share of the targets")
    fig.supxlabel("k (eigenfunctions by decreasing rho_k; log scale)")
    order = [r for r in ("init", "epoch 1", "collapse", "final") if r in styles]
    names = {"init": "Pi*(k): untrained", "epoch 1": "Pi*(k): epoch 1",
             "collapse": "Pi*(k): NC checkpoint", "final": "Pi*(k): final"}
    handles = [Line2D([], [], color=styles[r], lw=1.6, label=names[r]) for r in order]
    handles += [Line2D([], [], color=styles.get("final", "tab:blue"), lw=1.2, ls="--", label="Pi(k): final"),
                Line2D([], [], color="black", lw=0.8, ls=":", label=f"k = C = {C}"),
                Line2D([], [], color="gray", lw=0.8, ls="-.", label=f"{share_min:g} Pi*(p) (ours)")]
    fig.legend(handles=handles, loc="outside upper center", ncol=3, frameon=False)
    return fc.save(fig, "spectrum_pi_curves", (
        f"Cumulative target quality Pi*(k) (share of the one-hot targets in the top k eigenfunctions) on {n} training "
        f"images at the initialisation, the end of epoch 1, the checkpoint neural collapse is judged at "
        f"(NC checkpoint) "
        f"and the end, and the output utility Pi(k) (share of the logits) at the end. Dotted: k = C; dash-dotted: "
        f"{share_min:g} x Pi*(p), the share the MF rule (ours) asks of the top C eigenfunctions. "
        f"Bears on " + _quote(result, "s1") + "."))


def _regime_markers(ax: Any, xs: list[float], ys: list[Any], regimes: list[str]) -> None:
    ax.scatter(xs, [float("nan") if y is None else y for y in ys], c=[REGIME_COLORS.get(r, "gray") for r in regimes],
               s=22, zorder=3, edgecolors="black", linewidths=0.4)


def _fig_regimes(result, fc, models, x0, xmax, C, gap_min, share_min, n) -> FigureInfo:
    reg = result["tables"]["regimes"]
    fig, axes = plt.subplots(1, 2, figsize=(WIDTH, 3.4), layout="constrained")
    gaps = []
    for m in models:
        s = _sorted(reg, model=m)
        xs = [_x(r, x0) for r in s]
        col = _color(models, m)
        g = [r["gap"] for r in s]
        gaps += [v for v in g if v is not None]
        axes[0].plot(xs, [float("nan") if v is None else v for v in g], color=col, lw=1.2)
        axes[1].plot(xs, [float("nan") if r["share_C"] is None else r["share_C"] for r in s], color=col, lw=1.2)
        _regime_markers(axes[0], xs, g, [r["regime"] for r in s])
        _regime_markers(axes[1], xs, [r["share_C"] for r in s], [r["regime"] for r in s])
    _gap_share_axes(fig, axes, gaps, gap_min, share_min, f"rho_C / rho_C+1 (C = {C})", x0, xmax)
    handles = [Line2D([], [], color=_color(models, m), lw=1.2, label=m) for m in models]
    handles += [Line2D([], [], ls="", marker="o", markerfacecolor=c, markeredgecolor="black", label=k)
                for k, c in REGIME_COLORS.items()]
    handles.append(Line2D([], [], color="gray", ls="-.", lw=0.9, label="MF threshold (ours)"))
    fig.legend(handles=handles, loc="outside upper center", ncol=4, frameon=False)
    return fc.save(fig, "spectrum_regimes", (
        f"The two numbers of the MF rule at every checkpoint, on {n} training images: the eigenvalue gap rho_C / "
        f"rho_C+1 (MF needs >= {gap_min:g}) and Pi*(C) / Pi*(p) (MF needs >= {share_min:g}); thresholds ours, as "
        f"Nam et al. publish none. Marker colour: the regime (green MF, orange intermediate, red EF). Bears on "
        + _quote(result, "s1") + " and " + _quote(result, "s1_early") + "."))


def _fig_collapse(result, fc, models, x0, xmax, n) -> FigureInfo:
    reg = result["tables"]["regimes"]
    nc4_max = result.get("protocol", {}).get("nc_rules", {}).get("nc4_max")
    fig, axes = plt.subplots(2, 3, figsize=(WIDTH, 5.6), layout="constrained")
    panels = [("train_error", "training error", False), ("nc1", "NC1 = Tr(Sw Sb+)/C", True),
              ("nc2_equinorm", "NC2 equinorm", False), ("nc2_equiangle", "NC2 equiangularity", False),
              ("nc3", "NC3 self-duality", False), ("nc4_mismatch", "NC4 mismatch rate", False)]
    for ax, (key, title, logy) in zip(axes.flat, panels):
        vals = []
        for m in models:
            s = [r for r in _sorted(reg, model=m) if r.get(key) is not None]
            col = _color(models, m)
            xs, ys = [_x(r, x0) for r in s], [r[key] for r in s]
            vals += ys
            ax.plot(xs, ys, color=col, lw=1.2, marker="o", ms=2.5)
            if key == "nc2_equiangle":
                ax.plot(xs, [r["nc2_maxangle"] for r in s], color=col, lw=1.0, ls="--")
            J = next((r for r in s if r.get("nc_checkpoint")), None)
            if J is not None:
                ax.plot([_x(J, x0)], [J[key]], marker="*", ms=11, color=col, markeredgecolor="black", zorder=4)
        if logy:
            _log_y(ax, vals)
        if key in ("train_error", "nc4_mismatch"):
            _rate_y(ax)
        if key == "nc4_mismatch" and nc4_max is not None:
            ax.axhline(nc4_max, color="gray", ls="-.", lw=0.9)
        ax.set_title(title)
        _epoch_axis(ax, x0, xmax)
    fig.supxlabel(EPOCHS)
    handles = [Line2D([], [], color=_color(models, m), lw=1.2, label=m) for m in models]
    handles += [Line2D([], [], ls="", marker="*", ms=11, color="gray", markeredgecolor="black",
                       label="judged checkpoint"),
                Line2D([], [], color="gray", lw=1.0, ls="--", label="NC2 max-angle deviation")]
    if nc4_max is not None:
        handles.append(Line2D([], [], color="gray", ls="-.", lw=0.9, label=f"NC4 bound {nc4_max:g} (ours)"))
    fig.legend(handles=handles, loc="outside upper center", ncol=4, frameon=False)
    return fc.save(fig, "spectrum_collapse", (
        f"Training error and the neural-collapse metrics of Papyan et al. (2020) on {n} training images over "
        f"training; all fall towards 0 under collapse. Training error and NC4 on a scale that is linear below 0.001 "
        f"and logarithmic above. NC1 within-class variability (log scale); NC2 equinorm "
        f"(std/mean of the centred class-mean norms), equiangularity (std of their cosines, solid) and max-angle "
        f"deviation (dashed); NC3 distance of the normalised classifier to the normalised class means; NC4 the "
        f"mismatch rate between the network's decision and the nearest class mean. Stars: the checkpoint "
        f"collapse is judged at (first with training error 0, else the final one). Bears on the paraphrased "
        f"claims of Papyan et al. (2020): " + _verdicts(result, ("nc1", "nc2", "nc3", "nc4")) + "."))


def _fig_heldout(result, fc, models, x0, xmax, gap_min, share_min) -> FigureInfo:
    reg = result["tables"]["regimes"]
    test = result["tables"]["regimes_test"]
    labels = {(r["model"], r["checkpoint"]) for r in test}
    fig, axes = plt.subplots(1, 2, figsize=(WIDTH, 3.4), layout="constrained")
    gaps = []
    for m in models:
        col = _color(models, m)
        for rows, ls in ((_sorted([r for r in reg if (r["model"], r["checkpoint"]) in labels], model=m), "-"),
                         (_sorted(test, model=m), "--")):
            xs = [_x(r, x0) for r in rows]
            g = [float("nan") if r["gap"] is None else r["gap"] for r in rows]
            gaps += [v for v in g if v == v]
            axes[0].plot(xs, g, color=col, ls=ls, lw=1.2, marker="o", ms=2.5)
            axes[1].plot(xs, [float("nan") if r["share_C"] is None else r["share_C"] for r in rows], color=col,
                         ls=ls, lw=1.2, marker="o", ms=2.5)
    _gap_share_axes(fig, axes, gaps, gap_min, share_min, "rho_C / rho_C+1", x0, xmax)
    handles = [Line2D([], [], color=_color(models, m), lw=1.2, label=m) for m in models]
    handles += [Line2D([], [], color="gray", lw=1.2, label="training images"),
                Line2D([], [], color="gray", lw=1.2, ls="--", label="held-out images"),
                Line2D([], [], color="gray", ls="-.", lw=0.9, label="MF threshold (ours)")]
    fig.legend(handles=handles, loc="outside upper center", ncol=3, frameon=False)
    n_test = result.get("protocol", {}).get("n_samples_extra", "?")
    return fc.save(fig, "spectrum_heldout", (
        f"The MF numbers at the initialisation and every epoch end on training images (solid) and on {n_test} "
        f"held-out test images (dashed, no verdict): on new inputs Pi*(C) / Pi*(p) and the gap describe how the "
        f"feature map generalises, which the training-input reading of the verdicts does not ask."))
