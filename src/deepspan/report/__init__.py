"""Figures (matplotlib) and a self-contained HTML report, drawn from saved results only (no torch here).

``write_report(out)`` draws every experiment's figures (``deepspan.report.fig_<name>``) and writes
``out/report.html`` and ``out/report.json`` from ``out/results`` (and the models table from
``out/models.json``); ``python -m deepspan.report [--redraw] OUT`` does the same from the command line.
:func:`check_readable` lists what makes a figure hard to read at page width (7.5 inches).
"""

from deepspan.report._base import check_readable
from deepspan.report.html import main, write_report

__all__ = ["write_report", "main", "check_readable"]
