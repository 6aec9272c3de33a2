"""``deepspan demo``: the P-vector analysis of scikit-learn's embedded 8x8 digits (works offline)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from deepspan.cli.output import write_json

__all__ = ["demo_cmd", "print_demo"]


def print_demo(res: Any) -> None:
    """Per centering: the P-vector summaries and the angles between them; then the null angles."""
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


@click.command("demo")
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Also write the results as JSON to this file.")
def demo_cmd(json_path: Path | None) -> None:
    """P-vector analysis of scikit-learn's embedded 8x8 digits (works offline).

    Prints the data P-vector of the 1,797 flattened images, the P-vectors of two
    seeded random ReLU feature maps, their energy ratios r_k and the angles
    between them (uncentered and centered), next to the null angle of random
    directions in sample space.
    """
    from deepspan.experiments import run_pvector_demo

    res = run_pvector_demo()
    print_demo(res)
    if json_path is not None:
        write_json(json_path, res.to_dict())
