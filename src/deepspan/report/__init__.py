"""Figures (matplotlib) and a self-contained HTML report, drawn from saved results only (no torch here).

``write_report(out)`` draws every experiment's figures (``deepspan.report.fig_<name>``) and writes
``out/report.html`` and ``out/report.json`` from ``out/results``; ``python -m deepspan.report OUT``
does the same from the command line.
"""

from deepspan.report.html import main, write_report

__all__ = ["write_report", "main"]
