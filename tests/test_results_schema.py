"""The results schema: rules that both word and decide a verdict, claims, typed results and their files."""

from __future__ import annotations

import json

import pytest

from deepspan.errors import InputError
from deepspan.results import (
    Check,
    Claim,
    Condition,
    ExperimentResult,
    Measured,
    Rule,
    combine_verdicts,
    load_result,
    save_result,
)


def _claim(values: dict, rule: Rule, context: dict | None = None) -> Claim:
    return Claim("c", "a quote", "Paper 2020, Sec. 1", rule,
                 [Measured(k, k, v) for k, v in values.items()], context=context or {})


PER_MODEL = Rule("per model: init >= 40 and end <= 0.3 x init",
                 tuple(Check(m, (Condition(f"{m}_init", ">=", 40.0), Condition(f"{m}_end", "<=", f"{m}_init", 0.3)))
                       for m in ("a", "b")))


@pytest.mark.parametrize("values, verdict, passed", [
    ({"a_init": 70.0, "a_end": 10.0, "b_init": 80.0, "b_end": 5.0}, "reproduced", 2),
    ({"a_init": 70.0, "a_end": 30.0, "b_init": 80.0, "b_end": 5.0}, "partly", 1),      # 30 > 0.3 x 70 = 21
    ({"a_init": 39.9, "a_end": 1.0, "b_init": 10.0, "b_end": 1.0}, "not reproduced", 0),
    ({"a_init": 40.0, "a_end": 12.0, "b_init": 40.0, "b_end": 12.0}, "reproduced", 2),  # boundaries hold
    ({"a_init": None, "a_end": 1.0, "b_init": 80.0, "b_end": 5.0}, "partly", 1),       # a missing value fails
])
def test_rule_verdict_follows_its_checks(values, verdict, passed):
    c = _claim(values, PER_MODEL)
    assert c.verdict == verdict
    assert PER_MODEL.passed(c.values()) == passed
    # the words carry every check's numbers and the same count
    assert f"({passed}/2 passed)" in c.rule_text
    for m in ("a", "b"):
        assert f"{m}: " in c.rule_text
    assert c.rule_text.count(": pass") == passed


def test_partial_checks_give_partly_only():
    rule = Rule("strict: rho < 0; weaker: rho below its early value",
                (Check("m", (Condition("rho_last", "<", 0.0),)),),
                partial=(Check("m weak", (Condition("rho_last", "<", "rho_early"), Condition("drop", "<", 0.0)),
                               mode="any"),))
    assert _claim({"rho_last": -0.2, "rho_early": 0.5, "drop": 1.0}, rule).verdict == "reproduced"
    assert _claim({"rho_last": 0.2, "rho_early": 0.5, "drop": 1.0}, rule).verdict == "partly"
    assert _claim({"rho_last": 0.6, "rho_early": 0.5, "drop": -1.0}, rule).verdict == "partly"
    assert _claim({"rho_last": 0.6, "rho_early": 0.5, "drop": 1.0}, rule).verdict == "not reproduced"


def test_condition_arithmetic_and_words():
    c = Condition("x", "<=", "y", 0.8)
    assert c.holds({"x": 8.0, "y": 10.0}) and not c.holds({"x": 8.1, "y": 10.0})
    assert not c.holds({"x": float("nan"), "y": 10.0})
    assert not c.holds({"x": 1.0, "y": None})
    assert c.words() == "x <= 0.8 x y"
    assert c.outcome({"x": 8.0, "y": 10.0}) == "8 <= 8"
    with pytest.raises(InputError, match="operator"):
        Condition("x", "=>", 1.0)


def test_claim_refuses_a_rule_that_reads_unknown_numbers():
    with pytest.raises(InputError, match="neither measured nor in context"):
        _claim({"a_init": 70.0}, PER_MODEL)
    # numbers the rule reads may come from context (shown elsewhere)
    rule = Rule("x below y", (Check("x", (Condition("x", "<", "y"),)),))
    assert _claim({"x": 1.0}, rule, context={"y": 2.0}).verdict == "reproduced"


def test_claim_round_trip_keeps_rule_and_verdict(tmp_path):
    claims = [_claim({"a_init": 70.0, "a_end": 30.0, "b_init": 80.0, "b_end": 5.0}, PER_MODEL)]
    res = ExperimentResult("toy", "Toy", "Paper 2020", "summary", claims, tables={"t": [{"k": 1, "v": None}]},
                           figures="deepspan.report.fig_toy")
    save_result(res, tmp_path)
    d = json.loads((tmp_path / "toy.json").read_text())
    assert d["verdict"] == "partly" and d["claims"][0]["verdict"] == "partly"
    assert d["claims"][0]["rule"] == claims[0].rule_text
    assert [c["passed"] for c in d["claims"][0]["checks"]] == [False, True]
    back = load_result(tmp_path, "toy")
    assert back.claims[0].rule == PER_MODEL
    assert back.to_dict() == res.to_dict()
    assert (tmp_path / "toy__t.csv").read_text() == "k,v\n1,\n"
    # a verdict edited in the file does not survive loading: it is recomputed from the numbers
    d["claims"][0]["verdict"] = "reproduced"
    (tmp_path / "toy.json").write_text(json.dumps(d))
    assert load_result(tmp_path, "toy").claims[0].verdict == "partly"


def test_combine_and_unique_keys():
    assert combine_verdicts(["reproduced", "reproduced"]) == "reproduced"
    assert combine_verdicts(["not reproduced", "not reproduced"]) == "not reproduced"
    assert combine_verdicts(["reproduced", "not reproduced"]) == "partly"
    with pytest.raises(InputError):
        combine_verdicts([])
    c1 = _claim({"a_init": 70.0, "a_end": 1.0, "b_init": 80.0, "b_end": 5.0}, PER_MODEL)
    c2 = _claim({"a_init": 70.0, "a_end": 1.0, "b_init": 80.0, "b_end": 5.0}, PER_MODEL)
    with pytest.raises(InputError, match="unique"):
        ExperimentResult("toy", "Toy", "P", "s", [c1, c2])


def test_load_result_errors_name_the_fix(tmp_path):
    with pytest.raises(InputError, match="--only toy"):
        load_result(tmp_path, "toy")
    (tmp_path / "toy.json").write_text("{not json")
    with pytest.raises(InputError, match="not valid JSON"):
        load_result(tmp_path, "toy")
    (tmp_path / "toy.json").write_text(json.dumps({"format": "something else"}))
    with pytest.raises(InputError, match="not a deepspan experiment result"):
        load_result(tmp_path, "toy")
