"""``deepspan track``: P-vectors of a model's layers over a series of checkpoints, post hoc (Liu et al. 2022)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from deepspan.cli.models import FactorySpec, check_layers, load_factory_spec, parse_kwargs
from deepspan.cli.options import ProbeOptions, probe_options, torchrun_job, user_errors
from deepspan.cli.output import format_table

__all__ = ["track_cmd", "checkpoint_series", "track_layers", "resumable", "print_table", "TRACK_OPTIONS"]

#: The settings a resumed run must share with the one in --out, and the options that set them.
TRACK_OPTIONS = {"sample_hash": "probe (--data, --split, --n, --seed, --input-shape)", "layers": "--layer",
                 "policy": "--policy", "center": "--center", "k": "--k", "bootstrap": "--bootstrap"}


def checkpoint_series(spec: FactorySpec, checkpoints: tuple[Path, ...]) -> Any:
    """A :class:`~deepspan.track.CheckpointSeries` of state_dict files (labels = stems) or of one run directory."""
    from deepspan.errors import InputError
    from deepspan.track import CheckpointSeries

    dirs = [c for c in checkpoints if c.is_dir()]
    if dirs:
        if len(checkpoints) != 1:
            raise InputError(f"{dirs[0]} is a directory; give either one training run directory (with manifest.json) "
                             f"or state_dict files, not both.")
        return CheckpointSeries.from_manifest(dirs[0], spec.build)
    labels = [c.stem for c in checkpoints]
    repeated = sorted({label for label in labels if labels.count(label) > 1})
    if repeated:
        raise InputError(f"checkpoint labels are the file stems and {', '.join(repeated)} appears more than once; "
                         f"rename the files so each stem is unique.")
    return CheckpointSeries.from_files(spec.build, dict(zip(labels, checkpoints)))


def track_layers(layers: tuple[str, ...], first: Any, spec: FactorySpec) -> list[str]:
    """``--layer`` (each once), else the first checkpoint's ``block_layers``."""
    from deepspan.errors import InputError

    names = list(layers) or list(getattr(first, "block_layers", None) or [])
    if not names:
        raise InputError(f"name the layers to track with --layer NAME; `deepspan layers {spec.spec}` lists them.")
    if len(set(names)) != len(names):
        raise InputError(f"a --layer is repeated ({', '.join(names)}); name each layer once.")
    return names


def resumable(out_dir: Path, series: Any, now: dict) -> int:
    """How many of the series' checkpoints ``out_dir`` already holds; other settings there raise InputError.

    So does another checkpoint list: the checkpoints recorded there must be the first ones of ``series``, same
    labels and weights in the same order (:func:`deepspan.track.tracker.check_checkpoint_list`).
    """
    import json

    from deepspan.errors import InputError
    from deepspan.track.tracker import check_checkpoint_list

    path = out_dir / "rows.json"
    try:
        saved = json.loads(path.read_text())
        config = saved["config"]
        recorded = [c[0] for c in saved["checkpoints"]]
        ids = dict(saved.get("checkpoint_ids") or {})
        labels = set(recorded)
    except (ValueError, KeyError, TypeError, IndexError) as exc:
        raise InputError(f"{path} is not a readable tracking table ({type(exc).__name__}: {exc}); use another --out "
                         f"or delete {out_dir}.") from exc
    diff = [f"{TRACK_OPTIONS[key]}: {config.get(key)!r} there, {value!r} now" for key, value in now.items()
            if config.get(key) != value]
    if diff:
        raise InputError(f"{out_dir} holds a tracking run with other settings ({'; '.join(diff)}); use another --out, "
                         f"or the same options to resume it.")
    check_checkpoint_list(out_dir, recorded, ids, series, option="--out")
    return sum(c.label in labels for c in series.checkpoints)


def print_table(tracker: Any, names: list[str]) -> None:
    """Per checkpoint and layer: the angles to the data, previous and final P-vectors, r_1 and the gap (and the
    interval of the angle to the data when the Tracker bootstraps it)."""
    by = {(r["checkpoint"], r["layer"], r["quantity"]): r["value"] for r in tracker.rows}
    interval = getattr(tracker, "bootstrap", None) is not None
    rows = []
    for label in tracker.order:
        epoch, iteration = tracker.meta[label]
        for layer in names:
            rows.append([label, epoch, iteration, layer, by.get((label, layer, "angle_to_data"))]
                        + ([by.get((label, layer, "angle_to_data_ci_low")), by.get((label, layer, "angle_to_data_ci_high"))]
                           if interval else [])
                        + [by.get((label, layer, "angle_to_previous")), by.get((label, layer, "angle_to_final")),
                           by.get((label, layer, "energy_r1")), by.get((label, layer, "gap"))])
    head = ["checkpoint", "epoch", "iter", "layer", "to_data"] + (["ci_low", "ci_high"] if interval else []) + [
        "to_previous", "to_final", "r_1", "s2/s1"]
    click.echo("angles in degrees between P-vectors" + (f" (to_data with its {tracker.ci:.0%} bootstrap interval, "
                                                       f"{tracker.bootstrap} resamples):" if interval else ":"))
    click.echo(format_table(head, rows, right=[False, True, True, False] + [True] * (len(head) - 4)))


@click.command("track")
@click.argument("model")
@click.argument("checkpoints", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option("--layer", "layers", multiple=True, metavar="NAME",
              help="Layer to track (repeatable). Default: the model's block_layers (deepspan zoo models).")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Output directory for rows.csv, rows.json and the P-vectors. A run already there resumes if "
                   "its checkpoints are the first ones given (same files' contents, same order): the same list "
                   "skips what is recorded, a longer list appends; any other list is refused.")
@click.option("--center/--no-center", default=False, show_default=True,
              help="Center features before the SVD (recorded).")
@click.option("--k", "k", default=5, show_default=True, type=click.IntRange(min=1),
              help="How many singular values / energy ratios to record.")
@click.option("--bootstrap", "n_boot", type=click.IntRange(min=1), default=None, metavar="N",
              help="Also record a 95 % percentile interval of the angle to the data P-vector from N bootstrap "
                   "resamples of the probe (about N times the SVD work of each checkpoint).")
@probe_options
def track_cmd(model: str, checkpoints: tuple[Path, ...], layers: tuple[str, ...], out_dir: Path, center: bool,
              k: int, n_boot: int | None, **probe: Any) -> None:
    """Track P-vectors of MODEL's layers over CHECKPOINT files, post hoc (Liu et al. 2022).

    MODEL is module:factory or path/to/file.py:factory (as in `deepspan layers`),
    called with --kwargs to build the network each checkpoint is loaded into.

    CHECKPOINT... are state_dict files in training order (labels = file stems;
    e3 or e0-i50 also set epoch / iteration), or one training run directory with
    a manifest.json (deepspan.zoo.train). Each is loaded into a fresh model from
    MODEL and run on a fixed seeded probe; per checkpoint and layer the Tracker
    records sigma_k, energy r_k, the gap and the angles to the data P-vector, to
    the previous and to the final checkpoint (degrees). Results go to
    OUT/rows.csv and OUT/rows.json, rewritten after every checkpoint; running
    again on the same --out skips the checkpoints already recorded.

    An --out that already holds a run accepts only the same checkpoint list or
    one that extends it: the checkpoints recorded there (labels and SHA-256 of
    the files, in order) must be the first ones given. Then the new ones are
    appended and the angles to the final checkpoint are recomputed against the
    new last one. Any other list (other files, order, fewer checkpoints, or the
    same names with other weights) is refused before anything is written,
    naming both lists: choose another --out, or delete the folder.

    Under torchrun --nproc_per_node K each checkpoint's forward passes over the
    probe are split across the K processes; rank 0 gathers the features,
    computes, writes OUT and prints: the same output as one process.
    """

    popts = ProbeOptions(**probe)
    with torchrun_job(popts.device) as (rank, _world):
        _track(model, checkpoints, layers, out_dir, center, k, popts, rank, n_boot)


def _track(model: str, checkpoints: tuple[Path, ...], layers: tuple[str, ...], out_dir: Path, center: bool, k: int,
           popts: ProbeOptions, rank: int, n_boot: int | None = None) -> None:
    """The body of ``deepspan track`` (``rank``: this process's rank in a torchrun job; rank 0 prints)."""
    from deepspan.track import track_checkpoints

    with user_errors(quiet=rank != 0):
        spec = load_factory_spec(model, parse_kwargs(popts.kwargs_json))
        series = checkpoint_series(spec, checkpoints)
        probe_set = popts.build_probe()
        first = series.load(0)
        names = track_layers(layers, first, spec)
        check_layers(first, probe_set.X[:2], names, popts.policy, f"{spec.spec} with {series.checkpoints[0].source}",
                     spec.spec)
        done = 0
        if (out_dir / "rows.json").is_file():
            done = resumable(out_dir, series, {"sample_hash": probe_set.sample_hash, "layers": names,
                                               "policy": popts.policy, "center": center, "k": k,
                                               "bootstrap": n_boot})
        tracker = track_checkpoints(series, probe_set, names, policy=popts.policy, center=center, k=k,
                                    out_dir=out_dir, batch_size=popts.batch_size, device=popts.device,
                                    bootstrap=n_boot)
    if rank != 0:  # a torchrun process other than rank 0: rank 0 wrote the table and prints
        return
    click.echo(f"{spec.call_text}: {len(series)} checkpoint(s) x {len(names)} layer(s) on {probe_set.name} "
               f"{popts.split}, N = {tracker.n_samples} probe samples (sample hash {tracker.sample_hash}), "
               f"{'centered' if center else 'uncentered'}" + (f", policy {popts.policy}" if popts.policy else ""))
    if done:
        click.echo(f"resumed: {done} of {len(series)} checkpoints were already recorded in {out_dir}")
    print_table(tracker, names)
    click.echo(f"wrote {out_dir / 'rows.csv'} and {out_dir / 'rows.json'} ({len(tracker.rows)} rows)")
