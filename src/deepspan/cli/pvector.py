"""``deepspan pvector``: the P-vector of a samples x features matrix saved with numpy.save, streamed in chunks."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from deepspan.cli.options import user_errors
from deepspan.errors import InputError
from deepspan.cli.output import write_json

__all__ = ["pvector_cmd", "stream_pvector", "print_pvector"]


def stream_pvector(path: Path, center: bool, n_values: int, chunk_rows: int) -> Any:
    """Two passes over the file in row chunks: Gram statistics, then u = F v / sigma (a ``PVector``)."""
    from deepspan.features import iter_npy_rows
    from deepspan.linalg import GramAccumulator
    from deepspan.measures import pvector_from_stats, with_left_vector

    acc = GramAccumulator()
    rows = 0
    for block in iter_npy_rows(path, chunk_rows):
        acc.update(block)
        rows += len(block)
    if rows == 0:
        raise InputError(f"{path} holds no rows: save a samples x features matrix with at least 2 rows.")
    stats = acc.finalize()
    p = pvector_from_stats(stats, center=center, n_values=n_values)
    return with_left_vector(p, iter_npy_rows(path, chunk_rows), mean=stats.mean)


def print_pvector(path: Path, p: Any) -> None:
    click.echo(f"{path}: N = {p.n_samples}, d = {p.n_features}, {'centered' if p.centered else 'uncentered'}, "
               f"route {p.method}")
    click.echo("sigma:  " + "  ".join(f"{x:.6g}" for x in p.singular_values))
    click.echo("r_k:    " + "  ".join(f"{x:.4f}" for x in p.energy))
    click.echo(f"sigma_2/sigma_1 = {p.gap:.4f}" + ("  (degenerate: the P-vector is not determined)" if p.degenerate else ""))


@click.command("pvector")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--center/--no-center", default=False, show_default=True,
              help="Subtract column means before the SVD (recorded in the result).")
@click.option("--n-values", default=5, show_default=True, type=click.IntRange(min=1),
              help="How many top singular values to report.")
@click.option("--chunk-rows", default=16384, show_default=True, type=click.IntRange(min=1),
              help="Rows read per chunk; memory stays at one chunk whatever the file size.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the full result (including u) as JSON to this file (atomically).")
def pvector_cmd(path: Path, center: bool, n_values: int, chunk_rows: int, json_path: Path | None) -> None:
    """P-vector of a samples x features matrix saved with numpy.save (PATH.npy).

    Streams the file twice in row chunks (Gram statistics, then u = F v / sigma),
    so files larger than memory work.
    """
    with user_errors():
        p = stream_pvector(path, center, n_values, chunk_rows)
    print_pvector(path, p)
    if json_path is not None:
        write_json(json_path, p.to_dict())
