"""``deepspan reproduce``: run the papers' experiments, save results, then write figures and the report.

Each experiment is a module of :mod:`deepspan.experiments` with ``NAME``, ``TITLE`` and
``run(ctx) -> ExperimentResult``. A finished experiment's ``results/<name>.json`` carries the config
fingerprint; re-running the same command skips it (and training resumes inside the trainer), so an
interrupted reproduction continues where it stopped. ``only`` restricts the run to some experiments.
"""

from __future__ import annotations

import importlib
import json
import sys
import time
from pathlib import Path
from typing import Any, Callable

from deepspan.errors import InputError
from deepspan.experiments.config import ReproduceConfig, config_for
from deepspan.experiments.context import ReproContext, one_blas_thread
from deepspan.experiments.results import ExperimentResult, load_result, result_path, save_result

__all__ = ["EXPERIMENTS", "reproduce", "experiment_module", "is_done"]

# experiment name -> module (in the order they run and appear in the report)
EXPERIMENTS: dict[str, str] = {
    "convergence": "deepspan.experiments.convergence",
    "common_subspace": "deepspan.experiments.common_subspace",
    "layerwise": "deepspan.experiments.layerwise",
    "beyond_top": "deepspan.experiments.beyond_top",
    "generalisation": "deepspan.experiments.generalisation",
    "subspace_match": "deepspan.experiments.subspace_match",
    "spectrum": "deepspan.experiments.spectrum",
    "baselines": "deepspan.experiments.baselines",
}


def experiment_module(name: str):
    if name not in EXPERIMENTS:
        raise InputError(f"unknown experiment {name!r}; choose from {', '.join(EXPERIMENTS)}")
    return importlib.import_module(EXPERIMENTS[name])


def is_done(ctx: ReproContext, name: str) -> bool:
    path = result_path(ctx.results_dir, name)
    if not path.is_file():
        return False
    try:
        d = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return False
    return d.get("provenance", {}).get("config_fingerprint") == ctx.cfg.fingerprint()


def reproduce(cfg: ReproduceConfig | None = None, out: str | Path = "deepspan-reproduce", *,
              only: list[str] | None = None, progress: bool | None = None, report: bool = True,
              log: Callable[[str], Any] | None = None, force: bool = False) -> dict[str, ExperimentResult]:
    """Run the experiments of ``cfg`` (default: quick scale) into ``out``; return the results by name.

    Completed experiments are loaded, not recomputed, unless ``force`` (then the selected experiments
    are recomputed; trained runs and probe caches are still reused). With ``report`` the figures and
    ``report.html`` are (re)written from all results present in ``out/results``.
    """
    cfg = cfg or config_for("quick")
    names = list(EXPERIMENTS) if not only else list(dict.fromkeys(only))
    for n in names:
        experiment_module(n)  # validates the name before any work
    ctx = ReproContext(cfg, out, progress=progress)
    say = log or (lambda s: print(s, file=sys.stderr, flush=True))
    with one_blas_thread():
        results = _run_all(ctx, names, say, force)
    if report:
        from deepspan.report import write_report

        path = write_report(ctx.out)
        say(f"report: {path}")
    return results


def _run_all(ctx: ReproContext, names: list[str], say: Callable[[str], Any],
             force: bool = False) -> dict[str, ExperimentResult]:
    results: dict[str, ExperimentResult] = {}
    from tqdm.auto import tqdm

    bar = tqdm(names, desc="deepspan reproduce", disable=not ctx.progress, file=sys.stderr)
    for n in bar:
        bar.set_postfix_str(n)
        if not force and is_done(ctx, n):
            results[n] = load_result(ctx.results_dir, n)
            say(f"[{n}] done before, skipped ({result_path(ctx.results_dir, n)})")
            continue
        t0 = time.perf_counter()
        say(f"[{n}] running ...")
        res = experiment_module(n).run(ctx)
        res.provenance["seconds"] = round(time.perf_counter() - t0, 2)
        save_result(res, ctx.results_dir)
        results[n] = res
        say(f"[{n}] {res.verdict} ({res.provenance['seconds']:.1f} s)")
    bar.close()
    return results
