"""The ``deepspan`` command line."""

from __future__ import annotations

from pathlib import Path

import click

from deepspan import __version__


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", "-V", prog_name="deepspan")
def main() -> None:
    """deepspan: measure what neural networks learn by the subspaces their features span.

    P-vectors (Liu et al. 2022), subspace match (Wang et al. 2018) and
    feature-map spectra (Nam et al. 2024) on feature matrices of N samples x d features.
    """


@main.command()
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Also write the results as JSON to this file.")
def demo(json_path: Path | None) -> None:
    """P-vector analysis of scikit-learn's embedded 8x8 digits (works offline).

    Prints the data P-vector of the 1,797 flattened images, the P-vectors of two
    seeded random ReLU feature maps, their energy ratios r_k and the angles
    between them (uncentered and centered), next to the null angle of random
    directions in sample space.
    """
    from deepspan.experiments import run_pvector_demo

    res = run_pvector_demo()
    click.echo(f"deepspan {res.version} P-vector demo: {res.dataset}, N = {res.n_samples} samples "
               f"(sample hash {res.sample_hash})")
    for center in (False, True):
        click.echo("")
        click.echo(f"== {'centered' if center else 'uncentered'} features ==")
        click.echo(f"{'features':<28}{'route':>8}{'sigma_1':>11}{'s2/s1':>8}   r_1    r_2    r_3")
        for s in res.summaries:
            if s["centered"] != center:
                continue
            r = "  ".join(f"{x:.3f}" for x in s["energy"][:3])
            click.echo(f"{s['features']:<28}{s['method']:>8}{s['sigma'][0]:>11.4g}{s['gap']:>8.3f}   {r}")
        click.echo("angles between P-vectors (degrees):")
        for a in res.angles:
            if a["centered"] == center:
                click.echo(f"  {a['a']:<28} vs {a['b']:<28} {a['angle_deg']:7.3f}")
    nulls = ", ".join(f"{x:.2f}" for x in res.null_angles_deg)
    click.echo("")
    click.echo(f"null baseline, angles between independent random directions in R^{res.n_samples}: {nulls}")
    if json_path is not None:
        _write_json(json_path, res.to_dict())
        click.echo(f"wrote {json_path}")


@main.command("pvector")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--center/--no-center", default=False, show_default=True,
              help="Subtract column means before the SVD (recorded in the result).")
@click.option("--n-values", default=5, show_default=True, help="How many top singular values to report.")
@click.option("--chunk-rows", default=16384, show_default=True,
              help="Rows read per chunk; memory stays at one chunk whatever the file size.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the full result (including u) as JSON to this file (atomically).")
def pvector_cmd(path: Path, center: bool, n_values: int, chunk_rows: int, json_path: Path | None) -> None:
    """P-vector of a samples x features matrix saved with numpy.save (PATH.npy).

    Streams the file twice in row chunks (Gram statistics, then u = F v / sigma),
    so files larger than memory work.
    """
    from deepspan.errors import DeepspanError
    from deepspan.features import iter_npy_rows
    from deepspan.linalg import GramAccumulator
    from deepspan.measures import pvector_from_stats, with_left_vector

    try:
        acc = GramAccumulator()
        for block in iter_npy_rows(path, chunk_rows):
            acc.update(block)
        stats = acc.finalize()
        p = pvector_from_stats(stats, center=center, n_values=n_values)
        p = with_left_vector(p, iter_npy_rows(path, chunk_rows), mean=stats.mean)
    except DeepspanError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"{path}: N = {p.n_samples}, d = {p.n_features}, {'centered' if p.centered else 'uncentered'}, "
               f"route {p.method}")
    click.echo("sigma:  " + "  ".join(f"{x:.6g}" for x in p.singular_values))
    click.echo("r_k:    " + "  ".join(f"{x:.4f}" for x in p.energy))
    click.echo(f"sigma_2/sigma_1 = {p.gap:.4f}" + ("  (degenerate: the P-vector is not determined)" if p.degenerate else ""))
    if json_path is not None:
        _write_json(json_path, p.to_dict())
        click.echo(f"wrote {json_path}")


def _write_json(path: Path, obj: object) -> None:
    """Write JSON atomically: a temporary file in the same directory, then rename."""
    from deepspan._io import atomic_write_json

    atomic_write_json(path, obj)


if __name__ == "__main__":  # pragma: no cover
    main()
