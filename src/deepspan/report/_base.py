"""Shared plumbing of the figure modules: saving PNG + SVG atomically, reading results and side arrays.

Each experiment ``X`` of ``deepspan reproduce`` has a module ``deepspan.report.fig_X`` with
``draw(result: dict, fc: FigureContext) -> list[FigureInfo]``: it draws from the saved result
(the parsed ``results/X.json``; bulky arrays via :meth:`FigureContext.arrays`) and never recomputes
a measure. Captions state what is plotted and the paper's claim it bears on.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from deepspan._io import atomic_write_bytes

__all__ = ["FigureInfo", "FigureContext", "plt"]

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


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

    def save(self, fig: Any, stem: str, caption: str, dpi: int = 110) -> FigureInfo:
        """Write ``figures/<stem>.png`` and ``.svg`` atomically, close ``fig``, return its info."""
        self.fig_dir.mkdir(parents=True, exist_ok=True)
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
