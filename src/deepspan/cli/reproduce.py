"""``deepspan reproduce``: the papers' experiments, their results, figures and report.html."""

from __future__ import annotations

import contextlib
import errno
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click

from deepspan.cli.options import user_errors
from deepspan.errors import FileAccessError, describe_os_error

#: errors that mean "this folder cannot be written", as opposed to a full disk or a bad path
_NOT_WRITABLE = {errno.EACCES, errno.EPERM, errno.EROFS}


@contextlib.contextmanager
def _where_to_write(out: Path) -> Iterator[None]:
    """A folder that cannot be written (read-only, another user's): say that its results are untouched, where
    to read them, and how to redraw or continue them in a folder that can be written."""
    try:
        yield
    except OSError as exc:
        if exc.errno not in _NOT_WRITABLE:
            raise
        message = str(exc) if isinstance(exc, FileAccessError) else describe_os_error(exc, "write")
        raise click.ClickException(
            f"{message}. The results already in {out} are intact (every write is atomic): the finished ones can "
            f"be read in {out / 'report.html'} and {out / 'results'}; to redraw or continue them, copy the folder somewhere you can write and run "
            f"there: cp -r {out} NEW && deepspan reproduce ... --out NEW (finished experiments are reused)."
        ) from exc


__all__ = ["reproduce_cmd", "ExperimentChoice", "print_verdicts"]


class ExperimentChoice(click.Choice):
    """``click.Choice`` of the names in :data:`deepspan.experiments.EXPERIMENTS`, read whenever they are needed.

    The registry is read when a value is checked and when ``--help`` is shown, not when this module is
    imported, so an experiment registered at run time is a valid choice (and is listed).
    """

    def __init__(self, case_sensitive: bool = True) -> None:  # no super().__init__: ``choices`` is computed
        self.case_sensitive = case_sensitive

    @property
    def choices(self) -> tuple[str, ...]:  # type: ignore[override]
        import deepspan.experiments as experiments

        return tuple(list(experiments.EXPERIMENTS))


def print_verdicts(results: dict[str, Any]) -> None:
    """One line per experiment: its verdict and the verdict of each claim."""
    click.echo(f"{'experiment':<18}{'verdict':<16}claims")
    for name, res in results.items():
        claims = ", ".join(f"{c.id}: {c.verdict}" for c in res.claims)
        click.echo(f"{name:<18}{res.verdict:<16}{claims}")


@click.command("reproduce")
@click.option("--scale", type=click.Choice(["tiny", "quick", "full"]), default="quick", show_default=True,
              help="quick: MNIST 20k training images, 3-10 epochs per model, converged models, about 8 min on "
                   "2 cores; full: all 50k training images, 4-25 epochs, 16 subspace-match draws, a larger "
                   "population, about 35 min; tiny: about a minute, for tests.")
@click.option("--dataset", default=None,
              help="mnist (default for quick/full), digits (default for tiny), cifar10 or cifar100 (need "
                   "--data-dir), mnist1d (1-D signals, from the mnist1d package), or a .npz file: X_train, y_train, X_test, y_test (its own split; optional ids_train, "
                   "ids_test), or X and y (optional ids), split by deepspan: a seeded (seed 0), stratified "
                   "1/6 of each class held out as the test set (our choice; OUT/split.json lists it). X holds "
                   "images (N x C x H x W or N x H x W) or vectors (N x L): vectors run the MLP only, the "
                   "models and experiments that need images are skipped with the reason. The data's content "
                   "hash is part of the run's settings: a changed file makes OUT refuse the run.")
@click.option("--out", "out", type=click.Path(file_okay=False, path_type=Path), default=Path("deepspan-reproduce"),
              show_default=True, help="Output folder: runs/, cache/, results/, figures/, report.html.")
@click.option("--only", multiple=True, type=ExperimentChoice(),
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
    from deepspan.experiments import config_for, reproduce
    from deepspan.experiments.config import EXPECTED_MINUTES

    with user_errors(), _where_to_write(out):
        cfg = config_for(scale, dataset, seed=seed, data_dir=None if data_dir is None else str(data_dir))
        click.echo(f"deepspan reproduce: scale {scale} (expected ~{EXPECTED_MINUTES[scale]:g} min on 2 CPU cores), "
                   f"dataset {cfg.dataset}, seed {seed}, out {out}", err=True)
        t0 = time.perf_counter()
        # the report's sections are drawn in parallel, one process per core (at most 2: the sections are few)
        results = reproduce(cfg, out, only=list(only) or None, progress=progress,
                            log=lambda s: click.echo(s, err=True), force=force,
                            report_workers=min(2, os.cpu_count() or 1))
    print_verdicts(results)
    click.echo(f"report: {out / 'report.html'}  ({time.perf_counter() - t0:.0f} s)")
