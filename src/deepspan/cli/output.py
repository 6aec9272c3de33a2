"""What the commands print and write: aligned text tables, and JSON / CSV files written atomically."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from typing import Any

import click

__all__ = ["format_cell", "format_table", "format_shape", "per_sample", "write_json", "write_csv"]


def format_cell(v: Any, digits: int = 4) -> str:
    """One table cell: ``None`` -> ``-``, finite floats with ``digits`` decimals, anything else ``str``."""
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.{digits}f}" if math.isfinite(v) else str(v)
    return str(v)


def format_table(header: Sequence[str], rows: Sequence[Sequence[Any]], right: Sequence[bool] | None = None) -> str:
    """Columns padded to their widest cell; ``right`` marks right-aligned (numeric) columns."""
    cells = [[str(h) for h in header]] + [[format_cell(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    right = list(right) if right is not None else [False] * len(header)
    lines = []
    for k, r in enumerate(cells):
        parts = [c.rjust(w) if right[i] else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths))]
        lines.append("  ".join(parts).rstrip())
        if k == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def format_shape(shape: Any) -> str:
    """A hooked output shape for display: the example batch axis is shown as N."""
    if shape is None:
        return "-"
    if isinstance(shape, tuple):
        return "(" + ", ".join(["N", *map(str, shape[1:])]) + ")" if shape else "()"
    if isinstance(shape, list):
        return "[" + ", ".join(format_shape(s) for s in shape) + "]"
    if isinstance(shape, dict):
        return "{" + ", ".join(f"{k}: {format_shape(v)}" for k, v in shape.items()) + "}"
    return str(shape)


def per_sample(shape: Any) -> Any:
    """A hooked output shape without the example batch axis (JSON-friendly)."""
    if isinstance(shape, tuple):
        return list(shape[1:])
    if isinstance(shape, list):
        return [per_sample(s) for s in shape]
    if isinstance(shape, dict):
        return {k: per_sample(v) for k, v in shape.items()}
    return shape


def write_json(path: str | os.PathLike, obj: object) -> None:
    """Write JSON atomically (a temporary file in the same directory, then rename) and say so."""
    from deepspan._io import atomic_write_json

    atomic_write_json(path, obj)
    click.echo(f"wrote {path}")


def write_csv(path: str | os.PathLike, rows: Sequence[Mapping[str, Any]], fields: Sequence[str]) -> None:
    """Tidy rows as CSV (these ``fields``, None as an empty cell), written atomically, and say so."""
    from deepspan._io import atomic_write_csv

    atomic_write_csv(path, rows, fields)
    click.echo(f"wrote {path}")
