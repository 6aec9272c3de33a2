"""Experiments 2, 3, 4 and 8 of ``deepspan reproduce`` (common subspace, layer-wise, beyond the top vector,
baselines): their verdict rules and computations on synthetic inputs with known answers, and one tiny
end-to-end run checked against independent recomputations from the run's caches."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.stats import spearmanr

from deepspan.experiments import baselines, beyond_top, common_subspace, layerwise, statistics
from deepspan.results import VERDICTS, Claim, Measured

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
    # the experiment's claims judge the same numbers with their Rule objects and reach the same verdicts
    null = np.full(3, 89.0)
    for case, want in ((ok, "reproduced"), (null_like, "partly"), (edge, "partly"), (bad, "not reproduced")):
        for center in (False, True):
            claims = common_subspace._claims({False: case, True: case}, null, 1000, ["a", "b"], ["m"])
            c = claims[int(center)]
            assert c.id == ("c_centered" if center else "c_uncentered") and c.verdict == want
            tag = "cen" if center else "unc"
            v = c.values()
            assert v[f"{tag}_trained_mean_cos"] == pytest.approx(case["mean_cos"])
            assert v[f"{tag}_untrained_mean"] == case["mean_untrained"]
            assert [ch.passed(v) for ch in c.rule.checks] == list(case["checks"].values())
            assert f"({case['passed']}/3 passed)" in c.rule_text


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
    assert statistics.spearman(x, y) == pytest.approx(spearmanr(x, y).statistic, abs=1e-12)


def test_spearman_undefined():
    assert np.isnan(statistics.spearman([1, 2, 3], [5, 5, 5]))
    assert np.isnan(statistics.spearman([1], [2]))
    assert np.isnan(statistics.spearman([1, 2, 3], [1, np.nan, 3]))   # non-finite: NaN, one rule
    assert np.isnan(statistics.spearman([1, 2, 3], [1, 2]))           # unequal lengths
    assert statistics.spearman([1, 2], [3, 9]) == 1.0
    # the depth trend uses that rule: constant angles over the layers give NaN
    rows = [{"model": "m", "epoch": 1, "centered": False, "depth": d, "angle": 5.0, "in_path": True, "layer": f"l{d}"}
            for d in (1, 2, 3)]
    assert np.isnan(layerwise.depth_trends(rows)[0]["rho_depth_angle"])


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
    # the claims' rules on the same trends: c1 (rise) 2 of 3 models, c2 (strict fall) 1 of 3 -> partly
    c1, c2 = layerwise._claims(trends, ["a", "b", "c"])
    assert c1.verdict == "partly" and "(2/3 passed)" in c1.rule_text
    assert c2.verdict == "partly" and "(1/3 passed)" in c2.rule_text
    v = c2.values()
    assert v["a_rho_last"] == -0.5 and v["b_rho_e1"] == 1.0 and v["c_deepest_change"] == pytest.approx(3.0)
    assert [ch.passed(v) for ch in c2.rule.partial] == [True, True, False]   # the weak fall: a and b
    assert layerwise.epoch_label(0) == "init" and layerwise.epoch_label(3) == "e3"


def _fall(trends, names=("a", "b", "c")):
    j = layerwise.judge(trends, list(names))
    c1, c2 = layerwise._claims(trends, list(names))
    return (j["fall_strict"], j["fall_weak"], j["n"]), c1.verdict, c2.verdict


def test_fall_rule_verdicts():
    """c2: reproduced if every model falls strictly at the last epoch; partly if some model passes the strict or
    the weak check; else not reproduced (and not reproduced when no model can be judged)."""
    every = [t for m in "abc" for t in (_trend(m, 1, 0.5, 4.0), _trend(m, 4, -0.5, 3.0))]
    assert _fall(every) == ((3, 3, 3), "reproduced", "reproduced")
    weak_only = [t for m in "abc" for t in (_trend(m, 1, 1.0, 9.0), _trend(m, 4, 1.0, 8.0))]
    assert _fall(weak_only) == ((0, 3, 3), "reproduced", "partly")
    one_weak = ([t for m in "ab" for t in (_trend(m, 1, 0.5, 9.0), _trend(m, 4, 0.5, 12.0))]
                + [_trend("c", 1, 0.5, 9.0), _trend("c", 4, 0.0, 12.0)])   # rho falls 0.5 -> 0, not below 0
    assert _fall(one_weak) == ((0, 1, 3), "reproduced", "partly")
    none = [t for m in "abc" for t in (_trend(m, 1, -0.5, 9.0), _trend(m, 4, 0.5, 12.0))]
    assert _fall(none) == ((0, 0, 3), "not reproduced", "not reproduced")
    # no model has a later epoch: nothing to judge
    early_only = [_trend(m, 1, 0.5, 9.0) for m in "abc"]
    assert _fall(early_only) == ((0, 0, 0), "not reproduced", "not reproduced")


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


def _no_convergence(med: dict[int, float | None]):
    """The beyond_top claim on planted angle rows: three models whose before-end angles have median ``med[k]``
    for u_k (None: no u_k in any model); returns ({k: check passed}, claim)."""
    rows = []
    for i, m in enumerate(("m1", "m2", "m3")):
        spread = (-1.0, 0.0, 2.0)[(i + 1) % 3]   # the models' values straddle the median in another order per model
        ang = {k: (None if med[k] is None else med[k] + spread * (1.0 + k)) for k in (1, 2, 3)}
        base = {"model": m, "centered": False, "u2_swapped": False, "s2_over_s1": 0.5, "s3_over_s2": 0.9}
        rows += [{**base, "checkpoint": "e1", "subspace_angle": 40.0, **{f"angle_u{k}": ang[k] for k in ang}},
                 {**base, "checkpoint": "e2", "subspace_angle": 0.0, **{f"angle_u{k}": 0.0 for k in ang}}]
    (claim,) = beyond_top._claims(rows, ["m1", "m2", "m3"], 200)
    v = claim.values()
    for k in (1, 2, 3):
        if med[k] is None:
            assert v[f"median_u{k}_before_end"] is None
        else:
            assert v[f"median_u{k}_before_end"] == pytest.approx(med[k])
    return {int(c.name[-1]): c.passed(v) for c in claim.rule.checks}, claim


def test_no_convergence_rule():
    passed, c = _no_convergence({1: 2.0, 2: 30.0, 3: 5.0})
    assert passed == {2: True, 3: False} and c.verdict == "partly"
    # the threshold is max(20 deg, 3 x u_1's median): 30 deg here
    passed, c = _no_convergence({1: 10.0, 2: 25.0, 3: 31.0})
    assert passed == {2: False, 3: True} and c.verdict == "partly" and "currently 30.0 deg" in c.rule_text
    passed, c = _no_convergence({1: 1.0, 2: None, 3: 19.9})
    assert passed == {2: False, 3: False} and c.verdict == "not reproduced"
    passed, c = _no_convergence({1: 5.0, 2: 20.0, 3: 45.0})   # at the 20-degree floor counts
    assert passed == {2: True, 3: True} and c.verdict == "reproduced"


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
def _agreement(rho: float, p: float) -> str:
    """The verdict of baselines' agreement rule, through a claim built from the planted numbers."""
    claim = Claim("c", "q", "s", baselines.agreement_rule("linear CKA", 10, "rho", "p"),
                  [Measured("rho", "rho", rho), Measured("p", "p", p)])
    return claim.verdict


def _agreement_by_hand(rho, p) -> str:
    """The documented rule, re-implemented: rho > 0.5 with p < 0.05 reproduced; else rho > 0 partly."""
    if rho is None or not np.isfinite(rho) or rho <= 0:
        return "not reproduced"
    return "reproduced" if rho > 0.5 and p is not None and np.isfinite(p) and p < 0.05 else "partly"


def test_agreement_verdict():
    assert baselines.AGREE_RHO == 0.5 and baselines.AGREE_P == 0.05
    assert _agreement(0.51, 0.01) == "reproduced"
    assert _agreement(0.51, 0.2) == "partly"   # not significant on so few pairs
    assert _agreement(0.5, 0.001) == "partly"
    assert _agreement(0.01, 0.9) == "partly"
    assert _agreement(0.0, 1.0) == "not reproduced"
    assert _agreement(-0.7, 0.01) == "not reproduced"
    assert _agreement(float("nan"), float("nan")) == "not reproduced"
    assert _agreement(0.9, float("nan")) == "partly"
    for rho, p in ((0.51, 0.01), (0.51, 0.2), (0.5, 0.001), (0.0, 1.0), (-0.7, 0.01), (0.9, float("nan"))):
        assert _agreement(rho, p) == _agreement_by_hand(rho, p)


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
    p = statistics.permutation_p(x, y, n_perm=4000, seed=0)
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

    for center in (False, True):
        ua = ctx.stats.pvector("mlp", ctx.runs.checkpoints("mlp")[-1]["label"], center)
        ub = ctx.stats.pvector("cnn", ctx.runs.checkpoints("cnn")[-1]["label"], center)
        row = next(r for r in rows if r["set"] == "trained" and r["centered"] == center and r["a"] == "mlp"
                   and r["b"] == "cnn")
        assert row["angle"] == pytest.approx(angle(ua, ub), abs=1e-9)
        assert row["cosine"] == pytest.approx(abs(ua @ ub) / np.linalg.norm(ua) / np.linalg.norm(ub), abs=1e-9)
    # the cached P-vector is the top left singular vector of the feature layer's probe features (plain SVD)
    final = ctx.runs.final_label("mlp")
    F = ctx.stats.features("mlp", final).astype(np.float64)
    for center in (False, True):
        u = np.linalg.svd(F - F.mean(0) if center else F, full_matrices=False)[0][:, 0]
        assert abs(u @ ctx.stats.pvector("mlp", final, center)) == pytest.approx(1.0, abs=1e-5)
    # random-map baseline: recompute one P-vector angle independently with a plain SVD
    X = ctx.data.probe.X.reshape(len(ctx.data.probe), -1).astype(np.float64)
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
    u = ctx.stats.pvector("cnn", "e1", False, layer=r["layer"])
    assert r["angle"] == pytest.approx(angle(u, ctx.stats.data_pvector(False)), abs=1e-9)
    # the data P-vector itself, by a plain SVD of the flattened probe images
    X = ctx.data.probe.X.reshape(len(ctx.data.probe), -1).astype(np.float64)
    assert abs(np.linalg.svd(X, full_matrices=False)[0][:, 0] @ ctx.stats.data_pvector(False)) == \
        pytest.approx(1.0, abs=1e-9)
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
    recs = ctx.runs.checkpoints("resnet")
    U = ctx.stats.vectors("resnet", "e1", False)
    V = ctx.stats.vectors("resnet", recs[-1]["label"], False)
    assert U.shape == (len(ctx.data.probe), 3)
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
            assert sum(h) == len(ctx.data.probe)
    # energy: cumulative r_k = sum_{i<=k} sigma_i^2 / ||F||_F^2 and the per-component share sigma_k^2 / ||F||_F^2,
    # recomputed by a plain SVD of the feature layer's probe features (column-centered for the centered rows)
    for center in (False, True):
        e = [x for x in res.tables["energy"] if x["model"] == "mlp" and x["checkpoint"] == "init"
             and x["centered"] == center]
        assert [x["k"] for x in e] == list(range(1, 11))
        r = np.array([x["r"] for x in e])
        share = np.array([x["share"] for x in e])
        assert np.all(np.diff(r) >= -1e-12) and r[-1] <= 1.0 + 1e-9 and np.all(share >= -1e-12)
        assert np.allclose(np.cumsum(share), r, atol=1e-12)
        F = ctx.stats.features("mlp", "init").astype(np.float64)
        A = F - F.mean(0) if center else F
        s = np.linalg.svd(A, compute_uv=False)
        total = np.sum(A**2)
        np.testing.assert_allclose([x["sigma"] for x in e], s[:10], rtol=1e-4, atol=1e-6 * s[0])
        np.testing.assert_allclose(r, np.cumsum(s[:10] ** 2) / total, rtol=1e-4, atol=1e-7)
        np.testing.assert_allclose(share, s[:10] ** 2 / total, rtol=1e-4, atol=1e-7)
        np.testing.assert_allclose(r, ctx.stats.energy("mlp", "init", center), rtol=1e-12)
    m = res.measured()
    be = beyond_top.before_end(res.tables["angles"], ctx.cfg.names)
    assert m["median_u2_before_end"] == pytest.approx(np.median([b["angle_u2"] for b in be.values()]))


def test_tiny_baselines_values(tiny):
    _, results, ctx = tiny
    from deepspan import cka, compare_many, svcca

    res = results["baselines"]
    fa = ctx.stats.features("mlp", ctx.runs.checkpoints("mlp")[-1]["label"])
    fb = ctx.stats.features("simclr", ctx.runs.checkpoints("simclr")[-1]["label"])
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
    assert m["p_pv_cka"] == pytest.approx(statistics.permutation_p([x["pvector_cos"] for x in trained],
                                                                   [x["linear_cka"] for x in trained],
                                                                   n_perm=baselines.N_PERM, seed=ctx.cfg.seed))
    c1, c2 = res.claims
    assert c1.verdict == _agreement_by_hand(m["rho_pv_cka"], m["p_pv_cka"])
    assert c2.verdict == _agreement_by_hand(m["rho_pv_svcca"], m["p_pv_svcca"])


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
