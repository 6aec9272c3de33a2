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


# ---------------------------------------------------------------- quote kinds, sources, descriptive claims, protocol
JUDGED = Rule("x > 0", (Check("x", (Condition("x", ">", 0.0),)),))


def _judged(x: float, id_: str = "j", key: str = "x") -> Claim:
    rule = Rule(f"{key} > 0", (Check(key, (Condition(key, ">", 0.0),)),))
    return Claim(id_, "a quote", "Paper 2020, Sec. 1", rule, [Measured(key, key, x)])


def _descriptive(id_: str = "d", key: str = "y") -> Claim:
    return Claim(id_, "the paper's words", "Paper 2020, App. A.4", None, [Measured(key, "y", 3.5, "deg")],
                 quote_kind="verbatim", note="no number to judge by")


def test_quote_kind_default_allowed_and_refused():
    assert _judged(1.0).quote_kind == "paraphrase"
    assert _descriptive().quote_kind == "verbatim"
    for bad in ("exact", "Verbatim", "", None):
        with pytest.raises(InputError, match="claim c: quote_kind must be one of \\('verbatim', 'paraphrase'\\)"):
            Claim("c", "q", "Paper, Sec. 1", JUDGED, [Measured("x", "x", 1.0)], quote_kind=bad)


@pytest.mark.parametrize("source", ["", "   ", "\n"])
def test_source_must_not_be_empty(source):
    with pytest.raises(InputError, match="claim c: source must name the paper and the location of the quote"):
        Claim("c", "q", source, JUDGED, [Measured("x", "x", 1.0)])
    with pytest.raises(InputError, match="source must name"):
        Claim("c", "q", source, None, [Measured("x", "x", 1.0)])


def test_descriptive_claim_has_no_verdict_and_no_checks():
    c = _descriptive()
    assert c.rule is None and c.verdict == "descriptive"
    assert c.rule_text.startswith("descriptive: ")
    d = c.to_dict()
    assert d["verdict"] == "descriptive" and d["rule_spec"] is None and d["checks"] == []
    assert d["quote_kind"] == "verbatim" and d["measured"][0]["value"] == 3.5
    back = Claim.from_dict(d)
    assert back.rule is None and back.verdict == "descriptive" and back.to_dict() == d
    # a descriptive claim reads nothing, so any measured keys (or none) are accepted
    assert Claim("e", "q", "P, Sec. 2", None).verdict == "descriptive"


@pytest.mark.parametrize("verdicts,want", [
    (["descriptive"], "descriptive"),
    (["descriptive", "descriptive"], "descriptive"),
    (["descriptive", "reproduced"], "reproduced"),
    (["reproduced", "descriptive", "reproduced"], "reproduced"),
    (["not reproduced", "descriptive"], "not reproduced"),
    (["partly", "descriptive"], "partly"),
    (["reproduced", "descriptive", "not reproduced"], "partly"),
])
def test_combine_verdicts_ignores_descriptive(verdicts, want):
    assert combine_verdicts(verdicts) == want


@pytest.mark.parametrize("xs,want", [((1.0,), "reproduced"), ((-1.0,), "not reproduced"),
                                     ((1.0, -1.0), "partly"), ((), "descriptive")])
def test_experiment_verdict_reads_judged_claims_only(xs, want, tmp_path):
    claims = [_judged(x, f"j{i}", f"x{i}") for i, x in enumerate(xs)]
    assert [c.verdict for c in claims] == ["reproduced" if x > 0 else "not reproduced" for x in xs]
    res = ExperimentResult("toy", "Toy", "P", "s", claims + [_descriptive()])
    assert res.verdict == want
    save_result(res, tmp_path)
    d = json.loads((tmp_path / "toy.json").read_text())
    assert d["verdict"] == want and d["claims"][-1]["verdict"] == "descriptive"
    assert load_result(tmp_path, "toy").verdict == want


def test_protocol_round_trips(tmp_path):
    protocol = {"layers": {"mlp": "relu2", "resnet": ["stem_relu", "blocks.0", "pool"]},
                "centering": "both readings", "split": "train", "n_samples": 200,
                "epochs": {"mlp": 10, "cnn": 6}, "schedule": {"mlp": "SGD lr 0.1, cosine schedule"},
                "rows_per_draw": 10_000, "draws": 4, "note": None}
    res = ExperimentResult("toy", "Toy", "P", "s", [_judged(1.0), _descriptive()], protocol=protocol)
    assert res.to_dict()["protocol"] == protocol
    save_result(res, tmp_path)
    assert json.loads((tmp_path / "toy.json").read_text())["protocol"] == protocol
    back = load_result(tmp_path, "toy")
    assert back.protocol == protocol and back.to_dict() == res.to_dict()
    assert [c.quote_kind for c in back.claims] == ["paraphrase", "verbatim"]
    # no protocol: an empty record, also after loading
    plain = ExperimentResult("plain", "Plain", "P", "s", [_judged(1.0)])
    save_result(plain, tmp_path)
    assert plain.protocol == {} and load_result(tmp_path, "plain").protocol == {}


def test_claims_saved_without_quote_kind_are_refused(tmp_path):
    d = _judged(1.0).to_dict()
    del d["quote_kind"]
    with pytest.raises(InputError, match="claim 'j' has no rule_spec or quote_kind: .*re-run that experiment with "
                                         "--force"):
        Claim.from_dict(d)
    res = ExperimentResult("toy", "Toy", "P", "s", [_judged(1.0)])
    save_result(res, tmp_path)
    f = json.loads((tmp_path / "toy.json").read_text())
    del f["claims"][0]["quote_kind"]
    (tmp_path / "toy.json").write_text(json.dumps(f))
    with pytest.raises(InputError, match="has no rule_spec or quote_kind"):
        load_result(tmp_path, "toy")
