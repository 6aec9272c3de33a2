"""``deepspan reproduce``: run the registered experiments, save results, then write figures and the report.

The experiments come from :data:`deepspan.experiments.EXPERIMENTS` in registry order. A finished
experiment's ``results/<name>.json`` carries the config fingerprint; re-running the same command
skips it (and training resumes inside the trainer), so an interrupted reproduction continues where
it stopped. ``only`` restricts the run to some experiments.

Models the data cannot feed (vector data: every model but the MLP) are skipped with their reason, and
so is an experiment whose every model is skipped (``ReproContext.skip_reason``); both are said in the log
and recorded in every result's provenance (the report's header).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any, Callable

from deepspan.experiments.config import ReproduceConfig, config_for
from deepspan.experiments.context import ReproContext, one_blas_thread
from deepspan.experiments.registry import EXPERIMENTS, get
from deepspan.results import ExperimentResult, load_result, result_path, save_result

__all__ = ["reproduce", "is_done", "write_models", "MODELS_FILE"]


def is_done(ctx: ReproContext, name: str) -> bool:
    """Whether ``results/<name>.json`` exists and was computed with this configuration."""
    path = result_path(ctx.results_dir, name)
    if not path.is_file():
        return False
    try:
        d = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return False
    return d.get("provenance", {}).get("config_fingerprint") == ctx.cfg.fingerprint() and "quote_kind" in \
        ((d.get("claims") or [{}])[0])


def reproduce(cfg: ReproduceConfig | None = None, out: str | Path = "deepspan-reproduce", *,
              only: list[str] | None = None, progress: bool | None = None, report: bool = True,
              log: Callable[[str], Any] | None = None, force: bool = False,
              report_workers: int = 1) -> dict[str, ExperimentResult]:
    """Run the experiments of ``cfg`` (default: quick scale) into ``out``; return the results by name.

    Completed experiments are loaded, not recomputed, unless ``force`` (then the selected experiments
    are recomputed; trained runs and probe caches are still reused). With ``report`` the figures and
    ``report.html`` are (re)written from all results present in ``out/results``, in registry order.
    ``report_workers`` > 1 draws the report's sections in that many spawned processes (the CLI uses one
    per core, at most 2); spawned processes import the caller's ``__main__``, so a script that passes
    it must guard its entry point with ``if __name__ == "__main__":``.
    """
    cfg = cfg or config_for("quick")
    names = list(EXPERIMENTS) if not only else list(dict.fromkeys(only))
    for n in names:
        get(n)  # validates the name before any work
    ctx = ReproContext(cfg, out, progress=progress, experiments=list(EXPERIMENTS))
    say = log or (lambda s: print(s, file=sys.stderr, flush=True))
    say(f"data: {ctx.cfg.dataset}, content hash {ctx.cfg.data_hash}; split {ctx.data.split['text']}")
    for name, why in ctx.skipped_models.items():
        say(f"model {name} skipped: {why}")
    with one_blas_thread():
        results = _run_all(ctx, names, say, force)
    write_models(ctx)
    if report:
        from deepspan.report import write_report

        path = write_report(ctx.out, order=list(EXPERIMENTS), workers=report_workers)
        say(f"report: {path}")
    return results


MODELS_FILE = "models.json"


def write_models(ctx: ReproContext) -> Path:
    """Write ``OUT/models.json``: one record per trained zoo run (:meth:`RunStore.model_record`), in config
    order, then the second seeds; the generalisation population is described in its own result."""
    from deepspan._io import atomic_write_json
    from deepspan.results import clean_json

    names = [n for n in ctx.cfg.names] + [f"{m}@s{ctx.cfg.seed + 1}" for m in ctx.cfg.match_models]
    records = [ctx.runs.model_record(n) for n in names if (ctx.runs.runs_dir / n / "manifest.json").is_file()]
    path = ctx.out / MODELS_FILE
    atomic_write_json(path, {"format": "deepspan-models/1", "models": clean_json(records)})
    return path


def _run_all(ctx: ReproContext, names: list[str], say: Callable[[str], Any],
             force: bool = False) -> dict[str, ExperimentResult]:
    results: dict[str, ExperimentResult] = {}
    from tqdm.auto import tqdm

    bar = tqdm(names, desc="deepspan reproduce", disable=not ctx.progress, file=sys.stderr)
    for n in bar:
        bar.set_postfix_str(n)
        why = ctx.skip_reason(n)
        if why is not None:
            say(f"[{n}] skipped: {why}")
            continue
        if not force and is_done(ctx, n):
            results[n] = load_result(ctx.results_dir, n)
            say(f"[{n}] done before, skipped ({result_path(ctx.results_dir, n)})")
            continue
        exp = get(n)
        t0 = time.perf_counter()
        say(f"[{n}] running ...")
        res = exp.run(ctx)
        res.figures = exp.figures
        res.provenance["seconds"] = round(time.perf_counter() - t0, 2)
        save_result(res, ctx.results_dir)
        results[n] = res
        say(f"[{n}] {res.verdict} ({res.provenance['seconds']:.1f} s)")
    bar.close()
    return results
