"""Figures (matplotlib) and a self-contained HTML report, drawn from saved results only (no torch here)."""
