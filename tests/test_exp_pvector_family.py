"""Experiments 2, 3, 4 and 8 of ``deepspan reproduce`` (common subspace, layer-wise, beyond the top vector,
baselines): their verdict rules and computations on synthetic inputs with known answers, and one tiny
end-to-end run checked against independent recomputations from the run's caches."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.stats import spearmanr

from deepspan.experiments import baselines, beyond_top, common_subspace, layerwise
from deepspan.experiments.results import VERDICTS

EXPS = ["common_subspace", "layerwise", "beyond_top", "baselines"]


# ------------------------------------------------------------------ experiment 2: common subspace
def _unit(*coords: float, n: int = 6) -> np.ndarray:
    v = np.zeros(n)
    v[: len(coords)] = coords
    return v


def test_pairwise_angles_planted():
    vecs = {"x": _unit(1.0), "y": _unit(1.0, 1.0), "z": _unit(0.0, 0.0, -3.0)}
    got = {(a, b): (ang, c) for a, b, ang, c in common_subspace.pairwise_angles(vecs)}
    assert list(got) == [("x", "y"), ("x", "z"), ("y", "z")]
    assert got[("x", "y")][0] == pytest.approx(45.0, abs=1e-9)
    assert got[("x", "y")][1] == pytest.approx(np.sqrt(0.5), abs=1e-12)
    assert got[("x", "z")][0] == pytest.approx(90.0, abs=1e-9)
    # sign-invariant: -v is the same direction
    flipped = common_subspace.pairwise_angles({"a": _unit(1.0, 2.0), "b": -_unit(1.0, 2.0)})
    assert flipped[0][2] == pytest.approx(0, abs=1e-6)


def test_reading_checks_rules():
    ok = common_subspace.reading_checks([5.0, 10.0], [40.0, 50.0], [30.0])
    assert ok["checks"] == {"cosine": True, "below_untrained": True, "below_random": True}
    assert ok["verdict"] == "reproduced" and ok["passed"] == 3
    assert ok["mean_cos"] == pytest.approx((np.cos(np.radians(5)) + np.cos(np.radians(10))) / 2)
    # small trained angles, but the baselines are just as small: only (a) passes
    null_like = common_subspace.reading_checks([10.0], [6.0], [6.0])
    assert null_like["checks"] == {"cosine": True, "below_untrained": False, "below_random": False}
    assert null_like["verdict"] == "partly"
    # 0.8 x baseline is the boundary of "clearly below"
    edge = common_subspace.reading_checks([8.0], [10.0], [9.99])
    assert edge["checks"]["below_untrained"] and not edge["checks"]["below_random"]
    bad = common_subspace.reading_checks([80.0], [70.0], [60.0])
    assert bad["verdict"] == "not reproduced"


def test_random_maps_and_null():
    X = np.random.default_rng(0).random((50, 20))
    maps = common_subspace.random_maps(X, (8, 16), seed=3)
    assert len(maps) == 6 and maps["ReLU-8 #1"].shape == (50, 8) and maps["Gauss-16"].shape == (50, 16)
    assert (maps["ReLU-16 #2"] >= 0).all()
    assert not np.allclose(maps["ReLU-8 #1"], maps["ReLU-8 #2"])  # two seeds
    again = common_subspace.random_maps(X, (8, 16), seed=3)
    assert all(np.array_equal(maps[k], again[k]) for k in maps)  # seeded
    # a Gaussian projection is linear: X W
    W = np.random.default_rng(7).standard_normal((20, 5)) / np.sqrt(20)
    assert np.allclose(common_subspace.gaussian_projection(X, 5, 7), X @ W)
    null = common_subspace.null_angles(1000, 200, seed=0)
    assert null.mean() == pytest.approx(common_subspace.expected_null_angle(1000), abs=0.3)
    assert 85.0 < common_subspace.expected_null_angle(1000) < 90.0


# ------------------------------------------------------------------ experiment 3: layer-wise
@pytest.mark.parametrize("x,y", [([1, 2, 3, 4], [10, 20, 25, 40]), ([1, 2, 3, 4, 5], [3, 1, 4, 1, 5]),
                                 ([1, 2, 3], [3, 2, 1]), ([1, 2, 3, 4, 5, 6], [2, 2, 3, 1, 6, 6])])
def test_spearman_matches_scipy(x, y):
    assert layerwise.spearman(x, y) == pytest.approx(spearmanr(x, y).statistic, abs=1e-12)


def test_spearman_undefined():
    assert np.isnan(layerwise.spearman([1, 2, 3], [5, 5, 5]))
    assert np.isnan(layerwise.spearman([1], [2]))
    assert layerwise.spearman([1, 2], [3, 9]) == 1.0


def _trend(model, epoch, rho, deepest, n=3, centered=False):
    return {"model": model, "epoch": epoch, "centered": centered, "n_layers": n, "rho_depth_angle": rho,
            "first_angle": 1.0, "deepest_angle": deepest}


def test_depth_trends_and_judge():
    rows = []
    for depth, ang in enumerate([5.0, 7.0, 9.0, 2.0], start=1):  # the 4th layer is after the feature layer
        rows.append({"model": "m", "epoch": 1, "centered": False, "depth": depth, "angle": ang,
                     "in_path": depth <= 3, "layer": f"l{depth}"})
    t = layerwise.depth_trends(rows)
    assert t == [{"model": "m", "epoch": 1, "centered": False, "n_layers": 3, "rho_depth_angle": 1.0,
                  "first_angle": 5.0, "deepest_angle": 9.0}]
    trends = [_trend("a", 0, 0.5, 4.0), _trend("a", 1, 1.0, 9.0), _trend("a", 4, -0.5, 3.0),   # rise, strict fall
              _trend("b", 1, 1.0, 9.0), _trend("b", 4, 1.0, 8.0),                            # rise, weak (deepest)
              _trend("c", 1, -0.5, 9.0), _trend("c", 4, 0.5, 12.0)]                          # no rise, no fall
    j = layerwise.judge(trends, ["a", "b", "c"])
    assert j["n"] == 3 and j["rise"] == 2 and j["fall_strict"] == 1 and j["fall_weak"] == 2
    assert j["models"]["a"]["rho_init"] == 0.5 and j["models"]["b"]["rho_init"] is None
    assert layerwise.fall_verdict(3, 3, 3) == "reproduced"
    assert layerwise.fall_verdict(1, 2, 3) == "partly"
    assert layerwise.fall_verdict(0, 0, 3) == "not reproduced"
    assert layerwise.epoch_label(0) == "init" and layerwise.epoch_label(3) == "e3"


# ------------------------------------------------------------------ experiment 4: beyond the top vector
def test_subspace_angle_planted():
    n = 8
    U = np.eye(n)[:, :3]
    t = np.radians(30.0)
    V = U.copy()
    V[:, 2] = np.cos(t) * np.eye(n)[:, 2] + np.sin(t) * np.eye(n)[:, 3]
    assert beyond_top.subspace_angle(U, V) == pytest.approx(30.0, abs=1e-9)
    # permuting (swapping) the basis vectors leaves the subspace, and its angle, unchanged
    assert beyond_top.subspace_angle(U, U[:, [1, 0, 2]]) == pytest.approx(0.0, abs=1e-6)
    Z = U.copy()
    Z[:, 2] = 0.0  # a zero column (fewer singular vectors than 3) is dropped
    assert beyond_top.subspace_angle(Z, U) == pytest.approx(0.0, abs=1e-6)
    assert beyond_top._angle_or_none(np.zeros(n), U[:, 0]) is None


def test_no_convergence_rule():
    assert beyond_top.no_convergence({1: 2.0, 2: 30.0, 3: 5.0}) == {2: True, 3: False}
    # the threshold is max(20 deg, 3 x u_1's median): 30 deg here
    assert beyond_top.no_convergence({1: 10.0, 2: 25.0, 3: 31.0}) == {2: False, 3: True}
    assert beyond_top.no_convergence({1: 1.0, 2: float("nan"), 3: 19.9}) == {2: False, 3: False}


def test_entry_stats_and_mid_label():
    n = 16
    s = beyond_top.entry_stats(np.full(n, 1 / np.sqrt(n)))
    assert s["angle_to_ones"] == pytest.approx(0.0, abs=1e-6) and s["frac_sign_of_sum"] == 1.0
    assert s["sd"] == pytest.approx(0.0, abs=1e-12)
    v = np.zeros(n)
    v[0], v[1] = 1.0, -1.0
    assert beyond_top.entry_stats(v / np.sqrt(2))["angle_to_ones"] == pytest.approx(90.0)
    recs = [{"label": x} for x in ("init", "e0-i2", "e1", "e2", "e3", "e4")]
    assert beyond_top.mid_label(recs, 4) == "e2"
    assert beyond_top.mid_label([{"label": "init"}, {"label": "e0-i2"}, {"label": "e3"}], 2) == "e0-i2"


# ------------------------------------------------------------------ experiment 8: baselines
def test_agreement_verdict():
    assert baselines.agreement_verdict(0.51, 0.01) == "reproduced"
    assert baselines.agreement_verdict(0.51, 0.2) == "partly"   # not significant on so few pairs
    assert baselines.agreement_verdict(0.5, 0.001) == "partly"
    assert baselines.agreement_verdict(0.01, 0.9) == "partly"
    assert baselines.agreement_verdict(0.0, 1.0) == "not reproduced"
    assert baselines.agreement_verdict(-0.7, 0.01) == "not reproduced"
    assert baselines.agreement_verdict(float("nan"), float("nan")) == "not reproduced"


def test_rank_agreement_known_and_permutation_p():
    rng = np.random.default_rng(1)
    cos = np.sort(rng.random(10))
    rows = [{"pvector_cos": c, "pvector_cos_centered": -c, "linear_cka": c ** 2, "svcca": 1 - c} for c in cos]
    a = baselines.rank_agreement(rows)
    assert a["rho_pv_cka"] == pytest.approx(1.0) and a["rho_pv_svcca"] == pytest.approx(-1.0)
    assert a["rho_pvc_cka"] == pytest.approx(-1.0) and a["rho_cka_svcca"] == pytest.approx(-1.0)
    # |rho| = 1 on 10 items: only 2 of 10! orders reach it, so p is at the floor 1 / (n_perm + 1)
    assert a["p_pv_cka"] == pytest.approx(1 / (baselines.N_PERM + 1))
    x, y = rng.random(12), rng.random(12)
    p = baselines.permutation_p(x, y, n_perm=4000, seed=0)
    # independent data: the permutation p-value agrees with scipy's asymptotic one
    assert p == pytest.approx(spearmanr(x, y).pvalue, abs=0.06)


def test_pair_table_invariances():
    rng = np.random.default_rng(2)
    A = rng.random((60, 6))
    Q, _ = np.linalg.qr(rng.standard_normal((6, 6)))
    feats = {"a": A, "rot": A @ Q, "other": rng.random((60, 5))}
    from deepspan.linalg import top_singular

    pv = {(k, c): top_singular(F, 1, center=c).U[:, 0] for k, F in feats.items() for c in (False, True)}
    rows = baselines.pair_table(feats, pv, "trained")
    r = next(r for r in rows if (r["a"], r["b"]) == ("a", "rot"))
    assert r["linear_cka"] == pytest.approx(1.0) and r["svcca"] == pytest.approx(1.0)
    assert r["pvector_angle"] == pytest.approx(0.0, abs=1e-5) and r["pvector_cos_centered"] == pytest.approx(1.0)
    assert len(rows) == 3 and all(r["set"] == "trained" for r in rows)


# ------------------------------------------------------------------ tiny end-to-end run
@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from deepspan.experiments.config import config_for
    from deepspan.experiments.context import ReproContext
    from deepspan.experiments.reproduce import reproduce

    out = tmp_path_factory.mktemp("pvfam")
    cfg = config_for("tiny")
    results = reproduce(cfg, out, only=EXPS, report=False, progress=False, log=lambda s: None)
    return out, results, ReproContext(cfg, out, progress=False)


def test_tiny_results_saved(tiny):
    out, results, _ = tiny
    for name in EXPS:
        d = json.loads((out / "results" / f"{name}.json").read_text())
        assert d["name"] == name and d["claims"] and d["verdict"] in VERDICTS
        for c in d["claims"]:
            assert c["verdict"] in VERDICTS and c["rule"] and c["quote"] and c["measured"]
        for table in d["tables"]:
            assert (out / "results" / f"{name}__{table}.csv").is_file()
    cs = results["common_subspace"]
    assert {c.id for c in cs.claims} == {"c_uncentered", "c_centered"}
    assert {r["set"] for r in cs.tables["angles"]} == {"trained", "untrained", "random"}
    assert {r["centered"] for r in cs.tables["angles"]} == {False, True}


def test_tiny_common_subspace_values(tiny):
    _, results, ctx = tiny
    rows = results["common_subspace"].tables["angles"]
    from deepspan.linalg import angle

    lay_a, lay_b = ctx.feature_layer("mlp"), ctx.feature_layer("cnn")
    for center in (False, True):
        ua = ctx.triplets("mlp", ctx.checkpoints("mlp")[-1]["label"])[(lay_a, center)]["u"][:, 0]
        ub = ctx.triplets("cnn", ctx.checkpoints("cnn")[-1]["label"])[(lay_b, center)]["u"][:, 0]
        row = next(r for r in rows if r["set"] == "trained" and r["centered"] == center and r["a"] == "mlp"
                   and r["b"] == "cnn")
        assert row["angle"] == pytest.approx(angle(ua, ub), abs=1e-9)
        assert row["cosine"] == pytest.approx(abs(ua @ ub) / np.linalg.norm(ua) / np.linalg.norm(ub), abs=1e-9)
    # random-map baseline: recompute one P-vector angle independently with a plain SVD
    X = ctx.probe.X.reshape(len(ctx.probe), -1).astype(np.float64)
    maps = common_subspace.random_maps(X, tuple(ctx.cfg.random_widths), ctx.cfg.seed)
    keys = list(maps)
    u = [np.linalg.svd(maps[k], full_matrices=False)[0][:, 0] for k in keys[:2]]
    row = next(r for r in rows if r["set"] == "random" and not r["centered"] and r["a"] == keys[0]
               and r["b"] == keys[1])
    assert row["angle"] == pytest.approx(np.degrees(np.arccos(min(1.0, abs(u[0] @ u[1])))), abs=1e-4)
    m = results["common_subspace"].measured()
    trained = [r["angle"] for r in rows if r["set"] == "trained" and not r["centered"]]
    assert m["unc_trained_mean"] == pytest.approx(np.mean(trained))


def test_tiny_layerwise_values(tiny):
    _, results, ctx = tiny
    res = results["layerwise"]
    rows = res.tables["angles"]
    from deepspan.linalg import angle

    assert {r["epoch"] for r in rows} == set(ctx.cfg.layerwise_epochs) & set(range(ctx.cfg.epochs + 1))
    r = next(r for r in rows if r["model"] == "cnn" and r["checkpoint"] == "e1" and r["depth"] == 2
             and not r["centered"])
    u = ctx.triplets("cnn", "e1")[(r["layer"], False)]["u"][:, 0]
    assert r["angle"] == pytest.approx(angle(u, ctx.data_u(False)[:, 0]), abs=1e-9)
    # the feature layer is the last in-path layer of every model
    for model in ctx.cfg.names:
        path = [x for x in rows if x["model"] == model and x["in_path"] and x["epoch"] == 0 and not x["centered"]]
        assert max(path, key=lambda x: x["depth"])["is_feature"]
    t = next(t for t in res.tables["trends"] if t["model"] == "cnn" and t["epoch"] == 1 and not t["centered"])
    path = sorted((x for x in rows if x["model"] == "cnn" and x["epoch"] == 1 and not x["centered"] and x["in_path"]),
                  key=lambda x: x["depth"])
    assert t["rho_depth_angle"] == pytest.approx(spearmanr([x["depth"] for x in path],
                                                           [x["angle"] for x in path]).statistic)


def test_tiny_beyond_top_values(tiny):
    _, results, ctx = tiny
    res = results["beyond_top"]
    layer = ctx.feature_layer("resnet")
    recs = ctx.checkpoints("resnet")
    U = ctx.triplets("resnet", "e1")[(layer, False)]["u"]
    V = ctx.triplets("resnet", recs[-1]["label"])[(layer, False)]["u"]
    r = next(r for r in res.tables["angles"] if r["model"] == "resnet" and r["checkpoint"] == "e1"
             and not r["centered"])
    for k in range(3):
        want = np.degrees(np.arccos(min(1.0, abs(U[:, k] @ V[:, k]))))
        assert r[f"angle_u{k + 1}"] == pytest.approx(want, abs=1e-4)
    final = [r for r in res.tables["angles"] if r["checkpoint"] == recs[-1]["label"] and r["model"] == "resnet"]
    assert all(r["angle_u1"] == pytest.approx(0.0, abs=1e-6) for r in final)
    for model in ctx.cfg.names:  # every histogram holds all N probe entries
        for st in ("init", "mid", "final"):
            h = [x["count"] for x in res.tables["histograms"] if x["model"] == model and x["stage"] == st
                 and not x["centered"]]
            assert sum(h) == len(ctx.probe)
    e = [x for x in res.tables["energy"] if x["model"] == "mlp" and x["checkpoint"] == "init" and not x["centered"]]
    assert [x["k"] for x in e] == list(range(1, 11))
    assert sum(x["r"] for x in e) <= 1.0 + 1e-9 and all(x["r"] >= 0 for x in e)
    m = res.measured()
    be = beyond_top.before_end(res.tables["angles"], ctx.cfg.names)
    assert m["median_u2_before_end"] == pytest.approx(np.median([b["angle_u2"] for b in be.values()]))


def test_tiny_baselines_values(tiny):
    _, results, ctx = tiny
    from deepspan import cka, compare_many, svcca

    res = results["baselines"]
    fa = ctx.features("mlp", ctx.checkpoints("mlp")[-1]["label"])
    fb = ctx.features("simclr", ctx.checkpoints("simclr")[-1]["label"])
    r = next(r for r in res.tables["pairs"] if r["set"] == "trained" and r["a"] == "mlp" and r["b"] == "simclr")
    assert r["linear_cka"] == pytest.approx(cka(fa, fb), abs=1e-9)
    assert r["svcca"] == pytest.approx(svcca(fa, fb), abs=1e-9)
    # the P-vector angle of the cached triplets equals compare_many's own pvector_angle (uncentered)
    pvr = compare_many({"mlp": fa, "simclr": fb}, ["pvector_angle"])[0]["value"]
    assert r["pvector_angle"] == pytest.approx(pvr, abs=1e-3)
    trained = [x for x in res.tables["pairs"] if x["set"] == "trained"]
    assert len(trained) == len(ctx.cfg.names) * (len(ctx.cfg.names) - 1) // 2
    m = res.measured()
    assert m["rho_pv_cka"] == pytest.approx(spearmanr([x["pvector_cos"] for x in trained],
                                                      [x["linear_cka"] for x in trained]).statistic)
    assert res.claims[0].verdict == baselines.agreement_verdict(m["rho_pv_cka"], m["p_pv_cka"])


def test_tiny_figures(tiny):
    out, _, _ = tiny
    import importlib

    from deepspan.report._base import FigureContext

    fc = FigureContext(out)
    for name in EXPS:
        d = json.loads((out / "results" / f"{name}.json").read_text())
        infos = importlib.import_module(f"deepspan.report.fig_{name}").draw(d, fc)
        assert infos
        for info in infos:
            assert info.stem.startswith(name)
            assert (out / info.png).stat().st_size > 1000 and (out / info.svg).is_file()
            assert len(info.caption) > 80
