"""The experiment registry: one ordered list that the CLI, the runner, the report and the tests read.

A toy experiment registered at run time -- with no other edit anywhere -- appears among
``deepspan reproduce --only`` choices, runs, and gets its own report section after the others.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from deepspan import angle
from deepspan.cli import main
from deepspan.errors import InputError
from deepspan.experiments import EXPERIMENTS, Experiment, register, unregister
from deepspan.results import Check, Claim, Condition, ExperimentResult, Measured, Rule

TOY = "toy_data_pvector"


def _toy_run(ctx) -> ExperimentResult:
    """Angle between the uncentered and the centered data P-vector of the probe (no training needed)."""
    a = angle(ctx.stats.data_pvector(False), ctx.stats.data_pvector(True))
    claim = Claim("t1", quote="the two readings differ", source="a toy claim (paraphrase)",
                  rule=Rule("the angle between the readings exceeds 1 deg",
                            (Check("angle", (Condition("readings_angle", ">", 1.0),)),)),
                  measured=[Measured("readings_angle", "angle between the readings", a, "deg")])
    return ExperimentResult(TOY, "A toy experiment", "nobody 2026", f"{len(ctx.data.probe)} probe images", [claim],
                            tables={"angle": [{"angle": a}]}, provenance=ctx.provenance())


@pytest.fixture
def toy():
    exp = register(Experiment(TOY, "A toy experiment", "nobody 2026", _toy_run, figures=None, claims=("t1",)))
    try:
        yield exp
    finally:
        unregister(TOY)
    assert TOY not in EXPERIMENTS


def test_registry_order_and_entries():
    assert list(EXPERIMENTS)[:8] == ["convergence", "common_subspace", "layerwise", "beyond_top", "generalisation",
                                     "subspace_match", "spectrum", "baselines"]
    for name, exp in EXPERIMENTS.items():
        assert exp.name == name and exp.title and exp.paper and callable(exp.run) and exp.claims
        assert exp.figures == f"deepspan.report.fig_{name}"


def test_register_refuses_duplicates_and_bad_names(toy):
    with pytest.raises(InputError, match="already registered"):
        register(toy)
    with pytest.raises(InputError, match="identifier"):
        Experiment("no spaces", "t", "p", _toy_run)
    with pytest.raises(InputError, match="unknown experiment"):
        from deepspan.experiments.registry import get

        get("nope")


def test_toy_experiment_runs_through_the_cli_and_gets_a_report_section(toy, tmp_path):
    runner = CliRunner()
    help_text = runner.invoke(main, ["reproduce", "--help"]).output
    assert TOY in help_text
    out = tmp_path / "run"
    res = runner.invoke(main, ["reproduce", "--scale", "tiny", "--only", TOY, "--out", str(out), "--no-progress"])
    assert res.exit_code == 0, res.output
    saved = json.loads((out / "results" / f"{TOY}.json").read_text())
    assert saved["claims"][0]["verdict"] in ("reproduced", "not reproduced")
    value = saved["claims"][0]["measured"][0]["value"]
    assert 0.0 <= value <= 90.0 and np.isfinite(value)
    assert not (out / "runs").exists()  # nothing else ran: no model was trained
    html = (out / "report.html").read_text()
    assert f'id="exp-{TOY}"' in html and "A toy experiment" in html
    index = json.loads((out / "report.json").read_text())
    assert [s["name"] for s in index["sections"]] == [TOY]
    order = json.loads((out / "deepspan-reproduce.json").read_text())["experiments"]
    assert order[-1] == TOY and order[:-1] == [n for n in EXPERIMENTS if n != TOY]
    # an unknown name is refused by the CLI, naming the choices
    bad = runner.invoke(main, ["reproduce", "--scale", "tiny", "--only", "nope", "--out", str(out)])
    assert bad.exit_code != 0 and TOY in bad.output and "Traceback" not in bad.output
