"""The ``deepspan reproduce`` command (registered on the ``deepspan`` group in :mod:`deepspan.cli`)."""

from __future__ import annotations

import time
from pathlib import Path

import click

EXPERIMENT_NAMES = ("convergence", "common_subspace", "layerwise", "beyond_top", "generalisation",
                    "subspace_match", "spectrum", "baselines")


@click.command("reproduce")
@click.option("--scale", type=click.Choice(["tiny", "quick", "full"]), default="quick", show_default=True,
              help="quick: MNIST 10k images, 6 epochs, ~4 min on 2 cores; full: 50k images, 15 epochs, "
                   "larger population, ~45 min (estimated); tiny: seconds, for tests.")
@click.option("--dataset", default=None,
              help="mnist (default for quick/full), digits (default for tiny), cifar10 (needs --data-dir), "
                   "or a .npz file with images X (N x C x H x W or N x H x W) and labels y.")
@click.option("--out", "out", type=click.Path(file_okay=False, path_type=Path), default=Path("deepspan-reproduce"),
              show_default=True, help="Output folder: runs/, cache/, results/, figures/, report.html.")
@click.option("--only", multiple=True, type=click.Choice(EXPERIMENT_NAMES),
              help="Run only these experiments (repeatable); the report shows every result present in --out.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of training, probe and baselines.")
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Where on-disk datasets are looked for (default $DEEPSPAN_DATA).")
@click.option("--progress/--no-progress", default=None, help="Progress bars (default: when stderr is a terminal).")
@click.option("--force", is_flag=True, help="Recompute the selected experiments' results even if saved "
              "(trained runs and probe caches are still reused).")
def reproduce_cmd(scale: str, dataset: str | None, out: Path, only: tuple[str, ...], seed: int,
                  data_dir: Path | None, progress: bool | None, force: bool) -> None:
    """Reproduce the papers' experiments and write results, figures and report.html.

    Trains the model zoo (MLP, CNN, ResNet-style, conv autoencoder, SimCLR-style), tracks P-vectors,
    subspace matches, feature-map spectra and baselines over checkpoints and layers, and writes
    OUT/results (JSON + CSV), OUT/figures (PNG + SVG) and OUT/report.html: per experiment the
    paper's claim, what was measured and a verdict computed by a stated rule. Re-running the same
    command skips finished experiments and resumes interrupted training.
    """
    from deepspan.errors import DeepspanError
    from deepspan.experiments.config import EXPECTED_MINUTES, config_for
    from deepspan.experiments.reproduce import reproduce

    try:
        cfg = config_for(scale, dataset, seed=seed, data_dir=None if data_dir is None else str(data_dir))
        click.echo(f"deepspan reproduce: scale {scale} (expected ~{EXPECTED_MINUTES[scale]:g} min on 2 CPU cores), "
                   f"dataset {cfg.dataset}, seed {seed}, out {out}", err=True)
        t0 = time.perf_counter()
        results = reproduce(cfg, out, only=list(only) or None, progress=progress,
                            log=lambda s: click.echo(s, err=True), force=force)
    except DeepspanError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"{'experiment':<18}{'verdict':<16}claims")
    for name, res in results.items():
        claims = ", ".join(f"{c.id}: {c.verdict}" for c in res.claims)
        click.echo(f"{name:<18}{res.verdict:<16}{claims}")
    click.echo(f"report: {out / 'report.html'}  ({time.perf_counter() - t0:.0f} s)")
