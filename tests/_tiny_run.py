"""One tiny ``deepspan reproduce`` run through the command line, shared by the report tests.

``tiny_run(tmp_path_factory)`` runs ``deepspan reproduce --scale tiny --out DIR --no-progress``
through click's test runner once per pytest process (``test_report.py`` and
``test_report_browser.py`` both use it) and returns a :class:`TinyRun` with the output folder, the
command's stdout/stderr and a byte snapshot of ``results/`` right after the run.

Every experiment of the registry ``deepspan.experiments.EXPERIMENTS`` is required. While
experiments are being written, ``DEEPSPAN_TEST_ONLY=convergence,common_subspace`` restricts the run
(and the checks) to the listed ones; the default suite never sets it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

def _registry() -> tuple[str, ...]:
    from deepspan.experiments import EXPERIMENTS

    return tuple(EXPERIMENTS)


EXPECTED = _registry()


@dataclass
class TinyRun:
    out: Path
    names: list[str]
    exit_code: int
    stdout: str = field(repr=False)
    stderr: str = field(repr=False)
    snapshot: dict[str, bytes] = field(default_factory=dict, repr=False)


_CACHE: dict[str, TinyRun] = {}


def expected_names() -> list[str]:
    only = [n.strip() for n in os.environ.get("DEEPSPAN_TEST_ONLY", "").split(",") if n.strip()]
    return [n for n in EXPECTED if n in only] if only else list(EXPECTED)


def cli_args(out: Path, names: list[str]) -> list[str]:
    args = ["reproduce", "--scale", "tiny", "--out", str(out), "--no-progress"]
    if set(names) != set(EXPECTED):
        for n in names:
            args += ["--only", n]
    return args


def invoke(args: list[str]):
    from click.testing import CliRunner

    from deepspan.cli import main

    return CliRunner().invoke(main, args, catch_exceptions=False)


def snapshot(results_dir: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(results_dir.iterdir()) if p.is_file()}


def tiny_run(tmp_path_factory) -> TinyRun:
    """The shared tiny run (made on first use in this process)."""
    if "run" not in _CACHE:
        names = expected_names()
        out = tmp_path_factory.mktemp("tiny_reproduce")
        res = invoke(cli_args(out, names))
        assert res.exit_code == 0, f"deepspan reproduce failed ({res.exit_code}):\n{res.output}"
        _CACHE["run"] = TinyRun(out, names, res.exit_code, res.stdout, res.stderr, snapshot(out / "results"))
    return _CACHE["run"]
