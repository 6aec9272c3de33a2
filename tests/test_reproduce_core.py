"""The reproduce framework: configs, the registry, result files, verdict rules, run context, experiment 1's rules."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from deepspan.errors import InputError
from deepspan.experiments import EXPERIMENTS, convergence
from deepspan.experiments.config import SCALES, config_for
from deepspan.experiments.context import ReproContext
from deepspan.experiments.registry import get as get_experiment
from deepspan.experiments.reproduce import is_done
from deepspan.results import (Check, Claim, Condition, ExperimentResult, Measured, Rule, combine_verdicts,
                              load_result, save_result)


# ---------------------------------------------------------------- configs
def test_scales_and_fingerprints():
    fps = {s: config_for(s).fingerprint() for s in SCALES}
    assert len(set(fps.values())) == 3
    assert config_for("quick").fingerprint() == config_for("quick").fingerprint()
    assert config_for("quick", seed=1).fingerprint() != fps["quick"]
    # where the data live does not change the numbers, so not the fingerprint
    assert config_for("quick", data_dir="/x").fingerprint() == fps["quick"]
    assert config_for("tiny").dataset == "digits" and config_for("quick").dataset == "mnist"
    assert config_for("quick", epochs=2).epochs == 2
    assert json.loads(json.dumps(config_for("full").to_dict()))["models"]["cnn"]["kind"] == "cnn"


def test_bad_scale_and_model_names():
    with pytest.raises(InputError, match="unknown scale 'huge'; choose one of tiny, quick, full"):
        config_for("huge")
    with pytest.raises(InputError, match="no model 'vit'"):
        config_for("tiny").model("vit")
    with pytest.raises(InputError, match="unknown experiment 'nope'; choose from convergence"):
        get_experiment("nope")


# ---------------------------------------------------------------- verdicts and result files
def _rule(passed: int, total: int, partial: tuple[bool, ...] = ()) -> tuple[Rule, dict[str, float]]:
    """A rule of ``total`` one-condition checks of which the first ``passed`` hold (and weaker checks that
    hold or not as ``partial`` says), with the values it reads."""
    values = {f"x{i}": (1.0 if i < passed else -1.0) for i in range(total)}
    values.update({f"w{i}": (1.0 if ok else -1.0) for i, ok in enumerate(partial)})
    checks = tuple(Check(f"c{i}", (Condition(f"x{i}", ">", 0.0),)) for i in range(total))
    weak = tuple(Check(f"w{i}", (Condition(f"w{i}", ">", 0.0),)) for i in range(len(partial)))
    return Rule("planted", checks, partial=weak), values


@pytest.mark.parametrize("passed,total,expected", [(3, 3, "reproduced"), (0, 3, "not reproduced"),
                                                   (1, 3, "partly"), (2, 3, "partly"), (1, 1, "reproduced")])
def test_rule_verdict_counts_passed_checks(passed, total, expected):
    rule, values = _rule(passed, total)
    assert rule.passed(values) == passed
    assert rule.verdict(values) == expected
    assert f"({passed}/{total} passed)" in rule.text(values)
    # the claim computes the same verdict from its measured values
    claim = Claim("c", "q", "src", rule, [Measured(k, k, v) for k, v in values.items()])
    assert claim.verdict == expected and claim.rule_text == rule.text(values)


def test_rule_partial_checks_and_missing_values():
    # a weaker check lifts "not reproduced" to "partly", never to "reproduced"
    rule, values = _rule(0, 2, partial=(False, True))
    assert rule.verdict(values) == "partly"
    rule, values = _rule(0, 2, partial=(False, False))
    assert rule.verdict(values) == "not reproduced"
    rule, values = _rule(2, 2, partial=(False,))
    assert rule.verdict(values) == "reproduced"
    # a condition on a missing (None / NaN / inf) value fails; "any" needs one condition, "all" every one
    cond = Condition("a", ">=", "b", 0.5)
    assert cond.holds({"a": 1.0, "b": 2.0}) and not cond.holds({"a": 0.99, "b": 2.0})
    assert cond.outcome({"a": 1.0, "b": 2.0}) == "1 >= 1" and cond.words() == "a >= 0.5 x b"
    for bad in (None, float("nan"), float("inf")):
        assert not cond.holds({"a": bad, "b": 2.0}) and not cond.holds({"a": 1.0, "b": bad})
    both = (Condition("a", ">", 0.0), Condition("b", ">", 0.0))
    assert Check("any", both, mode="any").passed({"a": 1.0, "b": None})
    assert not Check("all", both).passed({"a": 1.0, "b": None})
    assert Condition("a", "<", 3).holds({"a": 2}) and not Condition("a", "<", 3).holds({"a": True})


def test_combine_verdicts():
    assert combine_verdicts(["reproduced", "reproduced"]) == "reproduced"
    assert combine_verdicts(["not reproduced", "not reproduced"]) == "not reproduced"
    assert combine_verdicts(["reproduced", "not reproduced"]) == "partly"
    assert combine_verdicts(["partly"]) == "partly"
    with pytest.raises(InputError):
        combine_verdicts([])
    with pytest.raises(InputError, match="a rule needs at least one check"):
        Rule("no checks", ())


def _result(**kw):
    # c1: every check passes -> reproduced; c2: its measured value is NaN (fails), the context value passes
    c1 = Rule("rule", (Check("a", (Condition("a", ">=", 1.0),)), Check("n", (Condition("n", "<=", "a", 2.0),))))
    c2 = Rule("rule2", (Check("nan", (Condition("nan", ">", 0.0),)), Check("ctx", (Condition("ctx", ">", 0.0),))))
    claims = [Claim("c1", "q", "src", c1, [Measured("a", "A", np.float32(1.5), "deg"), Measured("n", "N", 3)]),
              Claim("c2", "q2", "src2", c2, [Measured("nan", "NaN", float("nan"))], context={"ctx": 1.0})]
    return ExperimentResult("demo_exp", "Demo", "Paper", "summary", claims,
                            tables={"t": [{"x": 1, "y": np.float64(0.25)}, {"x": 2, "z": None}]},
                            provenance={"config_fingerprint": "abc"}, **kw)


def test_result_round_trip(tmp_path):
    res = _result()
    assert [c.verdict for c in res.claims] == ["reproduced", "partly"]
    assert res.verdict == "partly"
    assert res.measured() == {"a": 1.5, "n": 3, "nan": None}
    assert "(1/2 passed)" in res.claim("c2").rule_text
    path = save_result(res, tmp_path)
    d = json.loads(path.read_text())
    assert d["format"] == "deepspan-experiment/1" and d["verdict"] == "partly"
    assert [c["verdict"] for c in d["claims"]] == ["reproduced", "partly"]
    assert d["claims"][1]["context"] == {"ctx": 1.0}
    back = load_result(tmp_path, "demo_exp")
    assert back.to_dict() == res.to_dict()
    assert [c.verdict for c in back.claims] == ["reproduced", "partly"]  # recomputed from the saved rule
    csv = (tmp_path / "demo_exp__t.csv").read_text().splitlines()
    assert csv == ["x,y,z", "1,0.25,", "2,,"]


def test_result_errors(tmp_path):
    rule = Rule("r", (Check("a", (Condition("a", ">", 0.0),)),))
    with pytest.raises(InputError, match="measured keys must be unique, repeated: \\['a'\\]"):
        ExperimentResult("e", "t", "p", "s", [Claim("c1", "q", "s", rule, [Measured("a", "A", 1)]),
                                              Claim("c2", "q", "s", rule, [Measured("a", "B", 2)])])
    with pytest.raises(InputError, match="rule must be a deepspan.results.Rule or None, got str"):
        Claim("c1", "q", "s", "r")
    with pytest.raises(InputError, match="its rule reads \\['a', 'b'\\], which are neither measured nor in context"):
        Claim("c1", "q", "s", Rule("r", (Check("x", (Condition("a", ">", "b"),)),)))
    with pytest.raises(InputError, match="condition operator must be one of"):
        Condition("a", "==", 1.0)
    with pytest.raises(InputError, match="check mode must be 'all' or 'any'"):
        Check("x", (Condition("a", ">", 0.0),), mode="most")
    with pytest.raises(InputError, match="needs at least one condition"):
        Check("x", ())
    with pytest.raises(InputError, match="run `deepspan reproduce --only missing` first"):
        load_result(tmp_path, "missing")
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(InputError, match="not valid JSON"):
        load_result(tmp_path, "bad")
    (tmp_path / "other.json").write_text(json.dumps({"format": "x"}))
    with pytest.raises(InputError, match="not a deepspan experiment result"):
        load_result(tmp_path, "other")


def test_registry_modules_have_the_interface():
    import importlib

    from deepspan.experiments.base import Experiment

    assert list(EXPERIMENTS) == ["convergence", "common_subspace", "layerwise", "beyond_top", "generalisation",
                                 "subspace_match", "spectrum", "baselines"]
    for name, exp in EXPERIMENTS.items():
        assert isinstance(exp, Experiment) and exp.name == name and exp.title and exp.paper and exp.claims
        assert get_experiment(name) is exp
        mod = importlib.import_module(f"deepspan.experiments.{name}")
        assert mod.EXPERIMENT is exp and mod.NAME == name and mod.TITLE == exp.title
        assert callable(mod.run) and exp.run is mod.run
        assert exp.figures == f"deepspan.report.fig_{name}"
        assert callable(importlib.import_module(exp.figures).draw)


# ---------------------------------------------------------------- context
def test_context_refuses_a_folder_with_other_settings(tmp_path):
    ReproContext(config_for("tiny"), tmp_path, progress=False)
    ReproContext(config_for("tiny"), tmp_path, progress=False)  # same settings: fine
    with pytest.raises(InputError, match="holds a reproduction with other settings .*choose another --out"):
        ReproContext(config_for("tiny", seed=3), tmp_path, progress=False)


def test_context_data_and_probe(tmp_path):
    ctx = ReproContext(config_for("tiny"), tmp_path, progress=False)
    data = ctx.data
    assert data.train.X.shape == (1500, 1, 8, 8) and data.train.X.dtype == np.float32
    assert data.image_shape == (1, 8, 8) and data.n_classes == 10
    assert len(data.probe) == 200
    assert np.bincount(data.probe.y).tolist() == [20] * 10
    # the probe is held out: no probe image is a training image
    assert not set(data.probe.ids) & set(data.train.ids)
    # data P-vector: the top left singular vector of the flattened probe images
    X = data.probe.X.reshape(200, -1).astype(np.float64)
    for center, A in ((False, X), (True, X - X.mean(0))):
        U, s, _ = np.linalg.svd(A, full_matrices=False)
        assert abs(abs(U[:, 0] @ ctx.stats.data_pvector(center)) - 1) < 1e-10
        tri = ctx.stats.data_triplets(center)
        assert tri.centered == center and np.array_equal(tri.U[:, 0], ctx.stats.data_pvector(center))
        assert np.allclose(np.abs(np.sum(tri.U * U[:, : tri.k], axis=0)), 1.0, atol=1e-8)
        assert np.allclose(tri.s[: len(s)], s[: len(tri.s)], rtol=1e-9, atol=1e-9 * s[0])
        assert tri.total_energy == pytest.approx(np.sum(A**2), rel=1e-10)


def test_noisy_labels_are_seeded_and_about_the_asked_fraction(tmp_path):
    ctx = ReproContext(config_for("tiny"), tmp_path, progress=False)
    data = ctx.data
    a = data.noisy_train(1500, 0.4, seed=5)
    b = data.noisy_train(1500, 0.4, seed=5)
    assert np.array_equal(a.y, b.y)
    changed = np.mean(a.y != data.train.y)
    # replaced labels keep the true one with probability 1/10: expected fraction 0.4 * 0.9 = 0.36
    assert abs(changed - 0.36) < 0.05
    assert np.array_equal(data.noisy_train(1500, 0.0, seed=5).y, data.train.y)
    with pytest.raises(InputError, match="label noise must lie in \\[0, 1\\]"):
        data.noisy_train(10, 1.5, seed=0)


# ---------------------------------------------------------------- experiment 1 rules on synthetic curves
def _rows(model, curve, centered=False, **extra):
    """Rows of a synthetic convergence table: curve = [(label, angle), ...] in training order."""
    return [{"model": model, "checkpoint": lab, "target": "own final", "centered": centered, "angle": a, **extra}
            for lab, a in curve]


# passes every convergence claim: init >= 70, last before final < 10, monotone epochs, a rise inside epoch 1
GOOD = [("init", 75.0), ("e0-i1", 80.0), ("e0-i3", 78.0), ("e1", 40.0), ("e2", 20.0), ("e3", 5.0), ("e4", 0.0)]
# fails every one: init 30 < 70, e3 35 >= 10; rises of 10 and 15 deg between epochs; no rise inside epoch 1
BAD = [("init", 30.0), ("e0-i1", 29.5), ("e0-i3", 25.0), ("e1", 40.0), ("e2", 20.0), ("e3", 35.0), ("e4", 0.0)]
IDS = ["c1", "c1_centered", "c2", "c2_centered", "c3", "c3_centered"]


def _conv(rows, names):
    claims = convergence._claims(rows, {}, names)
    return {c.id: c for c in claims}


@pytest.mark.parametrize("curves,verdict,passed", [((GOOD, GOOD), "reproduced", 2), ((GOOD, BAD), "partly", 1),
                                                   ((BAD, GOOD), "partly", 1), ((BAD, BAD), "not reproduced", 0)])
def test_convergence_verdicts_on_planted_curves(curves, verdict, passed):
    rows = [r for m, curve in zip("ab", curves) for c in (False, True) for r in _rows(m, curve, c)]
    claims = _conv(rows, ["a", "b"])
    assert list(claims) == IDS
    for c in claims.values():
        assert c.verdict == verdict and f"({passed}/2 passed)" in c.rule_text
        assert [ch.name for ch in c.rule.checks] == ["a", "b"] and c.rule.partial == ()
        assert c.quote_kind == "verbatim" and c.source.startswith("Liu et al.")


def test_convergence_measured_values():
    rows = _rows("a", GOOD) + _rows("b", BAD) + _rows("a", BAD, True) + _rows("b", GOOD, True)
    claims = _conv(rows, ["a", "b"])
    v = {k: x for c in claims.values() for k, x in c.values().items()}
    assert (v["a_init"], v["a_before_end"], v["b_init"], v["b_before_end"]) == (75.0, 5.0, 30.0, 35.0)
    assert (v["centered_a_init"], v["centered_a_before_end"]) == (30.0, 35.0)
    assert (v["a_breaks"], v["b_breaks"], v["centered_a_breaks"], v["centered_b_breaks"]) == (0, 2, 2, 0)
    assert (v["a_peak_epoch1"], v["a_rise"], v["a_e1"]) == (80.0, 5.0, 40.0)
    assert (v["b_peak_epoch1"], v["b_e1"]) == (29.5, 40.0) and v["b_rise"] == pytest.approx(-0.5)
    assert "(e3, uncentered)" in next(m.label for m in claims["c1"].measured if m.key == "a_before_end")
    # the two readings are judged apart: a passes uncentered and fails centered, b the other way round
    for cid in IDS:
        want = [True, False] if "centered" not in cid else [False, True]
        assert [ch.passed(claims[cid].values()) for ch in claims[cid].rule.checks] == want


@pytest.mark.parametrize("center", [False, True])
def test_convergence_readings_are_independent(center):
    """Changing one reading's curves never moves the other reading's claims."""
    base = [r for m in "ab" for c in (False, True) for r in _rows(m, GOOD, c)]
    other = [r for r in base if r["centered"] != center] + [r for m in "ab" for r in _rows(m, BAD, center)]
    a, b = _conv(base, ["a", "b"]), _conv(other, ["a", "b"])
    for cid in IDS:
        moved = cid.endswith("_centered") == center
        assert b[cid].verdict == ("not reproduced" if moved else "reproduced")
        if not moved:
            assert b[cid].to_dict() == a[cid].to_dict()


def test_convergence_reads_only_the_feature_layer_test_split_own_final_rows():
    """Rows of the training probe, the output layer and the other targets do not enter any claim."""
    rows = [r for m in "ab" for c in (False, True) for r in _rows(m, GOOD, c)]
    want = {cid: c.to_dict() for cid, c in _conv(rows, ["a", "b"]).items()}
    noise = [r for m in "ab" for c in (False, True) for r in
             _rows(m, BAD, c, split="train") + _rows(m, BAD, c, layer_role="output") +
             [{**x, "target": "data"} for x in _rows(m, BAD, c)] +
             [{**x, "target": "final b"} for x in _rows(m, BAD, c)]]
    rows_tagged = [{**r, "split": "test", "layer_role": "feature"} for r in rows]
    for mixed in (rows + noise, noise + rows_tagged, rows_tagged[::2] + noise + rows_tagged[1::2]):
        got = {cid: c.to_dict() for cid, c in _conv(_training_order(mixed), ["a", "b"]).items()}
        assert got == want


def _training_order(rows):
    order = [lab for lab, _ in GOOD]
    return sorted(rows, key=lambda r: order.index(r["checkpoint"]))


@pytest.mark.parametrize("init,before_end,ok", [(70.0, 9.99, True), (69.99, 1.0, False), (80.0, 10.0, False),
                                                (90.0, 0.0, True), (float("nan"), 1.0, False)])
def test_convergence_c1_boundaries(init, before_end, ok):
    """The paper's numbers: the initial angle >= 70 deg and the last checkpoint before the final one < 10 deg."""
    c = _conv(_rows("a", [("init", init), ("e1", 30.0), ("e2", before_end), ("e3", 0.0)]), ["a"])["c1"]
    assert c.verdict == ("reproduced" if ok else "not reproduced")


@pytest.mark.parametrize("epochs,breaks", [
    ([60.0, 40.0, 42.0, 10.0, 0.0], 0),        # a rise of exactly 2 deg is within the tolerance
    ([60.0, 40.0, 42.01, 10.0, 0.0], 1),       # just above: one break, still quasi-monotone
    ([60.0, 40.0, 45.0, 10.0, 13.0, 0.0], 2),  # two breaks
    ([10.0, 40.0, 80.0, 85.0, 0.0], 3),
])
def test_convergence_c2_breaks_over_epoch_ends(epochs, breaks):
    curve = [("init", epochs[0])] + [(f"e{i}", a) for i, a in enumerate(epochs[1:], start=1)]
    # checkpoints inside epoch 1 with wild jumps are not part of the epoch-to-epoch series
    curve[1:1] = [("e0-i1", 5.0), ("e0-i2", 89.0), ("e0-i3", 1.0)]
    c = _conv(_rows("a", curve), ["a"])
    assert c["c2"].values()["a_breaks"] == breaks
    assert c["c2"].verdict == ("reproduced" if breaks <= 1 else "not reproduced")


@pytest.mark.parametrize("within,e1,ok", [((61.0,), 40.0, False),    # a rise of exactly 1 deg: not more than 1
                                          ((61.01,), 40.0, True), ((60.5, 61.0), 40.0, False),
                                          ((70.0,), 70.0, False),    # end of epoch 1 not below the peak
                                          ((50.0, 75.0, 30.0), 74.9, True),
                                          ((59.0, 55.0), 10.0, False)])  # falls from the start: no rise
def test_convergence_c3_rise_inside_epoch1(within, e1, ok):
    curve = [("init", 60.0)] + [(f"e0-i{i}", a) for i, a in enumerate(within, start=1)] + [("e1", e1), ("e2", 0.0)]
    c = _conv(_rows("a", curve), ["a"])["c3"]
    v = c.values()
    assert v["a_peak_epoch1"] == max(within) and v["a_e1"] == e1
    assert v["a_rise"] == pytest.approx(max(within) - 60.0)
    assert c.verdict == ("reproduced" if ok else "not reproduced")


def test_convergence_claims_need_their_checkpoints():
    # no checkpoint inside epoch 1: no c3 claims; a single checkpoint: no c1 claims (c2 is still judged)
    no_within = [(lab, a) for lab, a in GOOD if not lab.startswith("e0-")]
    assert list(_conv(_rows("a", no_within) + _rows("a", no_within, True), ["a"])) == IDS[:4]
    assert list(_conv(_rows("a", [("init", 80.0)]) + _rows("a", [("init", 80.0)], True), ["a"])) == \
        ["c2", "c2_centered"]
    # one model without the checkpoints drops the claim for all (it cannot be judged on the others alone)
    rows = _rows("a", GOOD) + _rows("b", no_within)
    assert "c3" not in _conv(rows, ["a", "b"]) and _conv(rows, ["a"])["c3"].verdict == "reproduced"


def test_position_in_epochs():
    assert convergence.position({"iteration": 30}, 60) == 0.5
    assert math.isclose(convergence.position({"iteration": 180}, 60), 3.0)


def test_is_done_depends_on_the_fingerprint(tmp_path):
    ctx = ReproContext(config_for("tiny"), tmp_path, progress=False)
    res = _result()
    res.name = "convergence"
    res.provenance["config_fingerprint"] = ctx.cfg.fingerprint()
    assert not is_done(ctx, "convergence")
    save_result(res, ctx.results_dir)
    assert is_done(ctx, "convergence")
    # a result saved before claims carried their quote kind is stale: computed again
    path = ctx.results_dir / "convergence.json"
    d = json.loads(path.read_text())
    for c in d["claims"]:
        del c["quote_kind"]
    path.write_text(json.dumps(d))
    assert not is_done(ctx, "convergence")
    save_result(res, ctx.results_dir)
    assert is_done(ctx, "convergence")
    res.provenance["config_fingerprint"] = "other"
    save_result(res, ctx.results_dir)
    assert not is_done(ctx, "convergence")


# ---------------------------------------------------------------- shared-product triplets == top_singular
@pytest.mark.parametrize("shape", [(120, 30), (40, 300), (50, 50)])
def test_top_singular_both_equals_top_singular(shape):
    from deepspan import top_singular, top_singular_both

    rng = np.random.default_rng(sum(shape))
    F = np.maximum(rng.standard_normal(shape) + 0.3 * rng.standard_normal(shape[1]), 0).astype(np.float32)
    got = dict(zip((False, True), top_singular_both(F, 3, n_values=10)))
    for center in (False, True):
        ref = top_singular(F, k=3, center=center, n_values=10, method="exact")
        tri = got[center]
        assert tri.centered == center and tri.U.shape == (shape[0], 3) and tri.s.shape == (10,)
        assert np.allclose(tri.s, ref.s, rtol=1e-9, atol=1e-9 * ref.s[0])
        assert np.allclose(tri.U, ref.U, atol=1e-7)          # same vectors, same sign rule
        assert tri.total_energy == pytest.approx(ref.total_energy, rel=1e-10)
        # and both equal a plain float64 SVD of (centered) F
        A = F.astype(np.float64) - (F.astype(np.float64).mean(0) if center else 0.0)
        s = np.linalg.svd(A, compute_uv=False)
        assert np.allclose(tri.s, s[:10], rtol=1e-9, atol=1e-9 * s[0])
        assert tri.total_energy == pytest.approx(np.sum(A**2), rel=1e-10)


def test_top_singular_both_small_matrices():
    """A matrix with fewer singular vectors than asked is refused (no silent padding); at full rank the values
    are exact and total_energy is ||F_c||_F^2."""
    from deepspan import top_singular, top_singular_both

    F = np.array([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0], [3.0, 0.0]])
    unc, cen = top_singular_both(F, 2, n_values=2)
    assert unc.U.shape == (4, 2) and unc.s.shape == (2,)
    assert np.allclose(unc.s, np.linalg.svd(F, compute_uv=False), rtol=1e-12)
    assert np.allclose(cen.s, np.linalg.svd(F - F.mean(0), compute_uv=False), rtol=1e-12)
    assert unc.total_energy == pytest.approx(np.sum(F**2)) and cen.total_energy == pytest.approx(7.5)
    assert np.allclose(unc.U, top_singular(F, 2, method="exact").U, atol=1e-10)
    with pytest.raises(InputError, match="k=3 exceeds min\\(N, d\\) = min\\(4, 2\\) = 2"):
        top_singular_both(F, 3)
    with pytest.raises(InputError, match="n_values=10 exceeds min\\(N, d\\)"):
        top_singular_both(F, 2, n_values=10)


def test_force_recomputes_a_saved_result(tmp_path, monkeypatch):
    """A saved result is skipped unless force=True (then the experiment's run() is called again)."""
    import dataclasses
    import importlib

    rp = importlib.import_module("deepspan.experiments.reproduce")

    calls = []

    def fake_run(ctx):
        calls.append(1)
        res = _result()
        res.name = "convergence"
        res.provenance = ctx.provenance()
        return res

    # the registry entry is what reproduce() runs: replace it in place (restored after the test)
    monkeypatch.setitem(EXPERIMENTS, "convergence", dataclasses.replace(EXPERIMENTS["convergence"], run=fake_run))
    cfg = config_for("tiny")
    rp.reproduce(cfg, tmp_path, only=["convergence"], report=False, progress=False, log=lambda s: None)
    rp.reproduce(cfg, tmp_path, only=["convergence"], report=False, progress=False, log=lambda s: None)
    assert len(calls) == 1
    rp.reproduce(cfg, tmp_path, only=["convergence"], report=False, progress=False, log=lambda s: None, force=True)
    assert len(calls) == 2
    # every reproduce writes the models table; no run was trained here, so it lists none
    assert json.loads((tmp_path / rp.MODELS_FILE).read_text()) == {"format": "deepspan-models/1", "models": []}
