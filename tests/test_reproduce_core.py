"""The reproduce framework: configs, result files, verdict rules, run context, experiment 1's rules."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from deepspan.errors import InputError
from deepspan.experiments import convergence
from deepspan.experiments.config import SCALES, config_for
from deepspan.experiments.context import ReproContext
from deepspan.experiments.reproduce import EXPERIMENTS, experiment_module, is_done
from deepspan.experiments.results import (Claim, ExperimentResult, Measured, combine_verdicts, load_result,
                                          save_result, verdict_from)


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
        experiment_module("nope")


# ---------------------------------------------------------------- verdicts and result files
@pytest.mark.parametrize("passed,total,expected", [(3, 3, "reproduced"), (0, 3, "not reproduced"),
                                                   (1, 3, "partly"), (2, 3, "partly"), (1, 1, "reproduced")])
def test_verdict_from(passed, total, expected):
    assert verdict_from(passed, total) == expected


def test_combine_verdicts():
    assert combine_verdicts(["reproduced", "reproduced"]) == "reproduced"
    assert combine_verdicts(["not reproduced", "not reproduced"]) == "not reproduced"
    assert combine_verdicts(["reproduced", "not reproduced"]) == "partly"
    assert combine_verdicts(["partly"]) == "partly"
    with pytest.raises(InputError):
        combine_verdicts([])
    with pytest.raises(InputError):
        verdict_from(0, 0)


def _result(**kw):
    claims = [Claim("c1", "q", "src", "rule", "reproduced", [Measured("a", "A", np.float32(1.5), "deg"),
                                                             Measured("n", "N", 3)]),
              Claim("c2", "q2", "src2", "rule2", "partly", [Measured("nan", "NaN", float("nan"))])]
    return ExperimentResult("demo_exp", "Demo", "Paper", "summary", claims,
                            tables={"t": [{"x": 1, "y": np.float64(0.25)}, {"x": 2, "z": None}]},
                            provenance={"config_fingerprint": "abc"}, **kw)


def test_result_round_trip(tmp_path):
    res = _result()
    assert res.verdict == "partly"
    assert res.measured() == {"a": 1.5, "n": 3, "nan": None}
    path = save_result(res, tmp_path)
    d = json.loads(path.read_text())
    assert d["format"] == "deepspan-experiment/1" and d["verdict"] == "partly"
    back = load_result(tmp_path, "demo_exp")
    assert back.to_dict() == res.to_dict()
    csv = (tmp_path / "demo_exp__t.csv").read_text().splitlines()
    assert csv == ["x,y,z", "1,0.25,", "2,,"]


def test_result_errors(tmp_path):
    with pytest.raises(InputError, match="measured keys must be unique, repeated: \\['a'\\]"):
        ExperimentResult("e", "t", "p", "s", [Claim("c1", "q", "s", "r", "partly", [Measured("a", "A", 1)]),
                                              Claim("c2", "q", "s", "r", "partly", [Measured("a", "B", 2)])])
    with pytest.raises(InputError, match="verdict must be one of"):
        Claim("c1", "q", "s", "r", "maybe")
    with pytest.raises(InputError, match="run `deepspan reproduce --only missing` first"):
        load_result(tmp_path, "missing")
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(InputError, match="not valid JSON"):
        load_result(tmp_path, "bad")
    (tmp_path / "other.json").write_text(json.dumps({"format": "x"}))
    with pytest.raises(InputError, match="not a deepspan experiment result"):
        load_result(tmp_path, "other")


def test_registry_modules_have_the_interface():
    for name in EXPERIMENTS:
        mod = experiment_module(name)
        assert mod.NAME == name and callable(mod.run) and mod.TITLE


# ---------------------------------------------------------------- context
def test_context_refuses_a_folder_with_other_settings(tmp_path):
    ReproContext(config_for("tiny"), tmp_path, progress=False)
    ReproContext(config_for("tiny"), tmp_path, progress=False)  # same settings: fine
    with pytest.raises(InputError, match="holds a reproduction with other settings .*choose another --out"):
        ReproContext(config_for("tiny", seed=3), tmp_path, progress=False)


def test_context_data_and_probe(tmp_path):
    ctx = ReproContext(config_for("tiny"), tmp_path, progress=False)
    assert ctx.train.X.shape == (1500, 1, 8, 8) and ctx.train.X.dtype == np.float32
    assert ctx.image_shape == (1, 8, 8) and ctx.n_classes == 10
    assert len(ctx.probe) == 200
    assert np.bincount(ctx.probe.y).tolist() == [20] * 10
    # the probe is held out: no probe image is a training image
    assert not set(ctx.probe.ids) & set(ctx.train.ids)
    # data P-vector: the top left singular vector of the flattened probe images
    X = ctx.probe.X.reshape(200, -1).astype(np.float64)
    u = np.linalg.svd(X, full_matrices=False)[0][:, 0]
    assert abs(abs(u @ ctx.data_u(False)[:, 0]) - 1) < 1e-10
    uc = np.linalg.svd(X - X.mean(0), full_matrices=False)[0][:, 0]
    assert abs(abs(uc @ ctx.data_u(True)[:, 0]) - 1) < 1e-10


def test_noisy_labels_are_seeded_and_about_the_asked_fraction(tmp_path):
    ctx = ReproContext(config_for("tiny"), tmp_path, progress=False)
    a = ctx.noisy_train(1500, 0.4, seed=5)
    b = ctx.noisy_train(1500, 0.4, seed=5)
    assert np.array_equal(a.y, b.y)
    changed = np.mean(a.y != ctx.train.y)
    # replaced labels keep the true one with probability 1/10: expected fraction 0.4 * 0.9 = 0.36
    assert abs(changed - 0.36) < 0.05
    assert np.array_equal(ctx.noisy_train(1500, 0.0, seed=5).y, ctx.train.y)
    with pytest.raises(InputError, match="label noise must lie in \\[0, 1\\]"):
        ctx.noisy_train(10, 1.5, seed=0)


# ---------------------------------------------------------------- experiment 1 rules on synthetic curves
def _rows(model, curve):
    """Rows of a synthetic convergence table: curve = [(label, angle), ...] in training order."""
    return [{"model": model, "checkpoint": lab, "target": "own final", "centered": False, "angle": a}
            for lab, a in curve]


def test_convergence_rules_on_planted_curves():
    good = [("init", 75.0), ("e0-i2", 80.0), ("e0-i5", 60.0), ("e1", 30.0), ("e2", 12.0), ("e3", 5.0), ("e4", 0.0)]
    flat = [("init", 20.0), ("e0-i2", 19.0), ("e1", 18.0), ("e2", 25.0), ("e3", 15.0), ("e4", 0.0)]
    rows = _rows("a", good) + _rows("b", flat)
    claims = {c.id: c for c in convergence._claims(rows, {}, ["a", "b"])}
    m = {x.key: x.value for c in claims.values() for x in c.measured}
    assert m["a_init"] == 75.0 and m["a_before_end"] == 5.0
    assert claims["c1"].verdict == "partly" and "1/2 passed" in claims["c1"].rule
    # b rises by 7 deg from e1 to e2: one break, allowed ("quasi"-monotone); a has none
    assert m["a_breaks"] == 0 and m["b_breaks"] == 1 and claims["c2"].verdict == "reproduced"
    assert m["a_rise"] == pytest.approx(5.0) and m["b_rise"] == pytest.approx(-1.0)
    assert claims["c3"].verdict == "partly"
    two_breaks = [("init", 80.0), ("e1", 10.0), ("e2", 20.0), ("e3", 5.0), ("e4", 9.0), ("e5", 0.0)]
    c = {c.id: c for c in convergence._claims(_rows("c", two_breaks), {}, ["c"])}
    assert c["c2"].verdict == "not reproduced" and "c3" not in c  # no checkpoints inside epoch 1


def test_convergence_c1_is_judged_under_both_readings():
    unc = [("init", 12.0), ("e1", 8.0), ("e2", 4.0), ("e3", 0.0)]
    cen = [("init", 75.0), ("e1", 40.0), ("e2", 10.0), ("e3", 0.0)]
    rows = _rows("a", unc) + [{**r, "centered": True} for r in _rows("a", cen)]
    claims = {c.id: c for c in convergence._claims(rows, {}, ["a"])}
    assert claims["c1"].verdict == "not reproduced"          # 12 deg < 40 deg at initialisation
    assert claims["c1_centered"].verdict == "reproduced"     # 75 deg -> 10 deg <= 0.3 x 75
    m = {x.key: x.value for x in claims["c1_centered"].measured}
    assert m == {"centered_a_init": 75.0, "centered_a_before_end": 10.0}


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
    res.provenance["config_fingerprint"] = "other"
    save_result(res, ctx.results_dir)
    assert not is_done(ctx, "convergence")


# ---------------------------------------------------------------- shared-product triplets == top_singular
@pytest.mark.parametrize("shape", [(120, 30), (40, 300), (50, 50)])
def test_layer_triplets_equal_top_singular(shape):
    from deepspan.experiments.context import layer_triplets
    from deepspan.linalg import top_singular

    rng = np.random.default_rng(sum(shape))
    F = np.maximum(rng.standard_normal(shape) + 0.3 * rng.standard_normal(shape[1]), 0).astype(np.float32)
    got = layer_triplets(F, n_vectors=3, n_values=10)
    for center in (False, True):
        ref = top_singular(F, k=3, center=center, n_values=10, method="exact")
        u, s, total = got[center]
        assert np.allclose(s, ref.s, rtol=1e-9, atol=1e-9 * ref.s[0])
        assert np.allclose(u, ref.U, atol=1e-7)          # same vectors, same sign rule
        assert total == pytest.approx(ref.total_energy, rel=1e-10)


def test_layer_triplets_pad_small_matrices():
    from deepspan.experiments.context import layer_triplets

    F = np.array([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0], [3.0, 0.0]])
    u, s, total = layer_triplets(F, n_vectors=3, n_values=10)[False]
    ref = np.linalg.svd(F, compute_uv=False)
    assert u.shape == (4, 3) and s.shape == (10,)
    assert np.allclose(s[:2], ref) and np.all(s[2:] == 0) and np.all(u[:, 2] == 0)
    assert total == pytest.approx(np.sum(F**2))


def test_force_recomputes_a_saved_result(tmp_path, monkeypatch):
    """A saved result is skipped unless force=True (then the experiment's run() is called again)."""
    import importlib

    rp = importlib.import_module("deepspan.experiments.reproduce")

    calls = []

    def fake_run(ctx):
        calls.append(1)
        res = _result()
        res.name = "convergence"
        res.provenance = ctx.provenance()
        return res

    monkeypatch.setattr(rp.experiment_module("convergence"), "run", fake_run)
    cfg = config_for("tiny")
    rp.reproduce(cfg, tmp_path, only=["convergence"], report=False, progress=False, log=lambda s: None)
    rp.reproduce(cfg, tmp_path, only=["convergence"], report=False, progress=False, log=lambda s: None)
    assert len(calls) == 1
    rp.reproduce(cfg, tmp_path, only=["convergence"], report=False, progress=False, log=lambda s: None, force=True)
    assert len(calls) == 2
