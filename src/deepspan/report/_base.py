"""Shared plumbing of the figure modules: saving PNG + SVG atomically, reading results and side arrays.

Each experiment ``X`` of ``deepspan reproduce`` has a module ``deepspan.report.fig_X`` with
``draw(result: dict, fc: FigureContext) -> list[FigureInfo]``: it draws from the saved result
(the parsed ``results/X.json``; bulky arrays via :meth:`FigureContext.arrays`) and never recomputes
a measure. Captions state what is plotted and the paper's claim it bears on.

Readability rule
----------------
A figure is shown at most :data:`PAGE_WIDTH_IN` (7.5) inches wide. :func:`check_readable` draws a
figure and lists what breaks the rule:

* every visible text (titles, axis labels, tick labels, legend entries and titles, annotations,
  colour-bar labels) must have an *effective* size of at least :data:`MIN_POINTS` (9) points, where
  ``effective = fontsize x min(1, 7.5 / width)`` and ``width`` is the width in inches of the saved
  image (the tight bounding box plus the save padding, as :meth:`FigureContext.save` writes it);
* no two drawn tick labels of the same axis may overlap (their window extents after a draw).

:meth:`FigureContext.save` runs the check on every figure; problems are logged and collected in
``FigureContext.problems`` (by figure stem), never raised, so a report is always written. Tests
call :func:`check_readable` directly and assert an empty list.
"""

from __future__ import annotations

import io
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from deepspan._io import atomic_write_bytes

__all__ = ["FigureInfo", "FigureContext", "plt", "check_readable", "saved_width", "readable_style", "epoch_axis",
           "epoch_ticks", "upright_if_crowded", "PAGE_WIDTH_IN", "MIN_POINTS", "FIG_WIDTH", "STYLE"]

#: The width (inches) at which report figures are read: a wider figure is scaled down to it.
PAGE_WIDTH_IN = 7.5
#: The smallest effective font size (points) a figure's text may have at page width.
MIN_POINTS = 9.0
#: The width (inches) figure modules give their figures: the saved image (plus padding) stays within the page.
FIG_WIDTH = 7.2
#: matplotlib settings under which figures are drawn (see :func:`readable_style`): no text below 9.5 pt.
STYLE = {"font.size": 10.0, "axes.titlesize": 10.5, "axes.labelsize": 10.0, "xtick.labelsize": 9.5,
         "ytick.labelsize": 9.5, "legend.fontsize": 9.5, "legend.title_fontsize": 9.5, "figure.titlesize": 11.5,
         "figure.labelsize": 10.0}
log = logging.getLogger("deepspan.report")

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.axis import Axis  # noqa: E402
from matplotlib.text import Text  # noqa: E402


def readable_style() -> Any:
    """A context manager with :data:`STYLE`; wrap a figure module's drawing *and* saving in it (tick
    labels take their size when they are drawn)."""
    return plt.rc_context(STYLE)


def _epoch_label(v: float) -> str:
    return "init" if v == 0 else f"{v:g}"


def epoch_ticks(first: float, last: float, width_in: float = 3.0, fontsize: float = 9.5,
                linscale: float = 0.5) -> list[float]:
    """Ticks of a symmetric-log training-progress axis ``width_in`` inches long (linear below ``first``,
    the first checkpoint after initialisation): 0 (initialisation), the last whole epoch, 1, then round
    values (powers of ten first) inside epoch 1 and beyond, each kept only where its label (``fontsize``)
    has room beside those already kept."""
    from matplotlib.scale import SymmetricalLogTransform

    tr = SymmetricalLogTransform(10, first, linscale)
    lo, hi = -0.05 * first, last * 1.15
    per_inch = float(tr.transform(hi) - tr.transform(lo)) / max(width_in, 0.5)
    char = 0.62 * fontsize / 72.0  # inches per character, a little wider than the average glyph

    def room(a: float, b: float) -> bool:
        need = (len(_epoch_label(a)) + len(_epoch_label(b))) / 2 * char + 0.12
        return abs(float(tr.transform(a) - tr.transform(b))) / per_inch >= need

    nice = sorted({k * 10.0 ** e for e in range(-4, 4) for k in (1, 2, 5)})
    whole = [float(t) for t in range(1, int(math.floor(last + 1e-9)) + 1)]
    whole = whole if len(whole) <= 10 else [t for t in nice if 1.0 <= t <= last] + [whole[-1]]
    within = [t for t in nice if first / 1.6 <= t < 1.0]
    beyond = [t for t in nice if 1.0 < t <= last and t == int(t)]
    powers = [t for t in within + beyond if math.isclose(math.log10(t), round(math.log10(t)))]
    candidates = [0.0] + ([whole[-1]] if whole else []) + ([1.0] if last >= 1 else [])
    candidates += powers + [t for t in beyond if t not in powers] + whole + [t for t in within if t not in powers]
    kept: list[float] = []
    for t in candidates:
        if t > last * 1.0001 or t in kept:
            continue
        if all(room(t, k) for k in kept):
            kept.append(t)
    return sorted(kept)


def epoch_axis(ax: Any, positions: Any, *, label: str | None = None, width_in: float | None = None) -> None:
    """A training-progress x axis in epochs: symmetric log (linear up to the first checkpoint after
    initialisation, so position 0 is shown), ticks from :func:`epoch_ticks` labelled with plain epoch
    numbers and "init" at 0, and the label "epochs (log scale; init = before training)".

    ``width_in``: the axes' width in inches (default: its current width, less a fifth for the layout)."""
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator

    pos = sorted({float(p) for p in positions if p is not None and float(p) > 0})
    if pos:
        if width_in is None:
            width_in = 0.8 * ax.get_position().width * ax.figure.get_figwidth()
        size = float(matplotlib.rcParams["xtick.labelsize"]) if not isinstance(
            matplotlib.rcParams["xtick.labelsize"], str) else 10.0
        ax.set_xscale("symlog", linthresh=pos[0], linscale=0.5)
        ax.set_xlim(-0.05 * pos[0], pos[-1] * 1.15)
        ax.xaxis.set_major_locator(FixedLocator(epoch_ticks(pos[0], pos[-1], width_in, size)))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: _epoch_label(v)))
        ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xlabel("epochs (log scale; init = before training)" if label is None else label)


def _drawn_tick_labels(axis: Axis) -> list[Text]:
    """The tick labels ``axis`` draws: ticks inside the view interval, visible, with text."""
    try:
        ticks = axis._update_ticks()  # the ticks a draw would show (matplotlib's own selection)
    except Exception:  # pragma: no cover - a future matplotlib without it
        ticks = axis.get_major_ticks() + axis.get_minor_ticks()
    labels = []
    for tick in ticks:
        for lab in (tick.label1, tick.label2):
            if lab.get_visible() and lab.get_text().strip():
                labels.append(lab)
    return labels


def _visible_texts(artist: Any, out: list[Text], axes_of: dict[int, Any], owner: Any = None) -> None:
    """Collect the visible, non-empty Text artists under ``artist`` (skipping hidden subtrees); an
    Axis contributes only the tick labels it draws, plus its label."""
    if not artist.get_visible():
        return
    if isinstance(artist, Axis):
        if not getattr(artist.axes, "axison", True):  # ax.axis("off"): the axis is not drawn
            return
        for t in _drawn_tick_labels(artist) + [artist.label, artist.offsetText]:
            if t.get_visible() and t.get_text().strip():
                out.append(t)
                axes_of[id(t)] = owner
        return
    if isinstance(artist, Text):
        if artist.get_text().strip():
            out.append(artist)
            axes_of[id(artist)] = owner
        return
    from matplotlib.axes import Axes

    for child in artist.get_children():
        _visible_texts(child, out, axes_of, artist if isinstance(artist, Axes) else owner)


def _where(t: Text, ax: Any) -> str:
    if ax is None:
        return "figure"
    title = ax.get_title() or ax.get_label() or ""
    return f"axes {title!r}" if title and not title.startswith("<") else "axes"


def _overlapping(axis: Axis, renderer: Any) -> list[tuple[Text, Text]]:
    """Pairs of drawn tick labels of ``axis`` whose window extents overlap by more than half a pixel."""
    boxes = [(lab, lab.get_window_extent(renderer)) for lab in _drawn_tick_labels(axis)]
    pairs = []
    for i in range(len(boxes)):
        for j in range(i + 1, len(boxes)):
            (a, ba), (b, bb) = boxes[i], boxes[j]
            dx = min(ba.x1, bb.x1) - max(ba.x0, bb.x0)
            dy = min(ba.y1, bb.y1) - max(ba.y0, bb.y0)
            if dx > 0.5 and dy > 0.5:
                pairs.append((a, b))
    return pairs


def upright_if_crowded(fig: Any, axes: Any) -> None:
    """Draw ``fig`` and turn the x tick labels of each of ``axes`` vertical where they overlap side by side."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    crowded = [ax for ax in np.ravel(axes) if ax.get_visible() and _overlapping(ax.xaxis, renderer)]
    for ax in crowded:
        ax.tick_params(axis="x", labelrotation=90)


def saved_width(fig: Any, renderer: Any | None = None) -> float:
    """Width in inches of the image :meth:`FigureContext.save` writes (tight bounding box + padding)."""
    if renderer is None:
        fig.canvas.draw()
        renderer = fig.canvas.get_renderer()
    pad = float(matplotlib.rcParams["savefig.pad_inches"])
    return float(fig.get_tightbbox(renderer).width) + 2 * pad


def check_readable(fig: Any, *, page_width: float = PAGE_WIDTH_IN, min_points: float = MIN_POINTS) -> list[str]:
    """Problems that make ``fig`` hard to read at ``page_width`` inches (module docstring); [] when none.

    Draws the figure once. Each problem is one line naming the text (or the two tick labels), where it
    is, and the numbers: ``fontsize x min(1, page_width / width) = effective < min_points``.
    """
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    width = saved_width(fig, renderer)
    scale = min(1.0, page_width / width)
    texts: list[Text] = []
    axes_of: dict[int, Any] = {}
    _visible_texts(fig, texts, axes_of)
    problems: list[str] = []
    seen: set[int] = set()
    for t in texts:
        if id(t) in seen:
            continue
        seen.add(id(t))
        size = float(t.get_fontsize())
        eff = size * scale
        if eff < min_points - 1e-9:
            text = t.get_text().replace("\n", " ")
            text = text if len(text) <= 50 else text[:47] + "..."
            problems.append(f"text {text!r} in {_where(t, axes_of.get(id(t)))}: {size:g} pt x "
                            f"min(1, {page_width:g} / {width:.2f} in) = {eff:.1f} pt < {min_points:g} pt")
    from matplotlib.axes import Axes

    for ax in fig.findobj(Axes):
        if not ax.get_visible() or not ax.axison:
            continue
        for name, axis in (("x", ax.xaxis), ("y", ax.yaxis)):
            if not axis.get_visible():
                continue
            for a, b in _overlapping(axis, renderer):
                problems.append(f"tick labels {a.get_text()!r} and {b.get_text()!r} of the {name} axis of "
                                f"{_where(a, ax)} overlap")
    return problems


@dataclass
class FigureInfo:
    """One saved figure: ``png`` / ``svg`` paths relative to the output folder, and its caption."""

    stem: str
    png: str
    svg: str
    caption: str


class FigureContext:
    """Where figures go (``out/figures``) and where results come from (``out/results``)."""

    def __init__(self, out: str | Path) -> None:
        self.out = Path(out)
        self.results_dir = self.out / "results"
        self.fig_dir = self.out / "figures"
        #: readability problems (:func:`check_readable`) of the figures saved so far, by stem
        self.problems: dict[str, list[str]] = {}

    def save(self, fig: Any, stem: str, caption: str, dpi: int = 110) -> FigureInfo:
        """Write ``figures/<stem>.png`` and ``.svg`` atomically, close ``fig``, return its info.

        The figure is checked with :func:`check_readable` first; problems are logged as warnings and
        kept in ``self.problems[stem]``, and never stop the save."""
        self.fig_dir.mkdir(parents=True, exist_ok=True)
        try:
            problems = check_readable(fig)
        except Exception as exc:  # the check must never cost a figure
            problems = [f"readability check failed: {type(exc).__name__}: {exc}"]
        self.problems[stem] = problems
        for p in problems:
            log.warning("figure %s: %s", stem, p)
        for ext in ("png", "svg"):
            buf = io.BytesIO()
            fig.savefig(buf, format=ext, dpi=dpi, bbox_inches="tight", metadata=None if ext == "png" else {"Date": None})
            atomic_write_bytes(self.fig_dir / f"{stem}.{ext}", buf.getvalue())
        plt.close(fig)
        return FigureInfo(stem, f"figures/{stem}.png", f"figures/{stem}.svg", caption)

    def arrays(self, result: dict[str, Any], key: str) -> dict[str, np.ndarray]:
        """The ``.npz`` side file ``result['arrays'][key]`` (path relative to the results folder)."""
        with np.load(self.results_dir / result["arrays"][key]) as z:
            return {k: z[k] for k in z.files}
