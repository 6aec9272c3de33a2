"""Experiments 2, 3, 4 and 8 of ``deepspan reproduce`` (common subspace, layer-wise, beyond the top vector,
baselines): their verdict rules and computations on synthetic inputs with known answers, and one tiny
end-to-end run checked against independent recomputations from the run's caches."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.stats import spearmanr

from deepspan.experiments import baselines, beyond_top, common_subspace, layerwise, statistics
from deepspan.results import VERDICTS

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


def _same(got, want) -> bool:
    """Equal numbers; a NaN planted in is read back as missing (None) or NaN."""
    if want is None or not np.isfinite(want):
        return got is None or not np.isfinite(got)
    return got == want


CS_NAMES = ["a", "b", "c"]
CS_PAIRS = [("a", "b"), ("a", "c"), ("b", "c")]


def _cs_rows(unc: tuple[float, ...], cen: tuple[float, ...], untrained: float = 50.0,
             random: float = 40.0) -> list[dict]:
    """The angle table of common_subspace: trained pairs with the planted angles per reading, and context sets."""
    rows = []
    for center, trained in ((False, unc), (True, cen)):
        for s, angles in (("trained", trained), ("untrained", (untrained,) * 3), ("random", (random, random + 2.0))):
            pairs = CS_PAIRS if s != "random" else [("ReLU-8 #1", "ReLU-8 #2"), ("ReLU-8 #1", "Gauss-8")]
            rows += [{"set": s, "centered": center, "a": a, "b": b, "angle": ang,
                      "cosine": float(np.cos(np.radians(ang)))} for (a, b), ang in zip(pairs, angles)]
    return rows


CS_TO_DATA = [{"set": s, "centered": c, "model": m, "split": "train", "angle_to_data": 10.0 * i + (5.0 if c else 0.0)}
              for i, (s, m) in enumerate((s, m) for s in ("trained", "untrained") for m in CS_NAMES)
              for c in (False, True)]


def _cs_claims(rows):
    null = np.array([88.0, 89.0, 90.0])
    claims = common_subspace._claims(rows, CS_TO_DATA, null, 200, CS_NAMES, ["ReLU-8 #1", "ReLU-8 #2", "Gauss-8"])
    assert [c.id for c in claims] == ["c_uncentered", "c_centered", "c_data"]
    return {c.id: c for c in claims}


def _cs(unc, cen, **kw):
    return _cs_claims(_cs_rows(unc, cen, **kw))


@pytest.mark.parametrize("angles,verdict,passed", [
    ((5.0, 9.99, 0.5), "reproduced", 3),
    ((5.0, 10.0, 0.5), "partly", 2),          # 10 deg is not below 10 deg
    ((45.0, 9.0, 30.0), "partly", 1),
    ((10.0, 20.0, 80.0), "not reproduced", 0),
    ((float("nan"), 1.0, 1.0), "partly", 2),  # a missing angle fails its pair
])
def test_common_subspace_rule_per_trained_pair(angles, verdict, passed):
    for center in (False, True):
        claims = _cs(angles if not center else (1.0, 1.0, 1.0), angles if center else (1.0, 1.0, 1.0))
        c = claims["c_centered" if center else "c_uncentered"]
        other = claims["c_uncentered" if center else "c_centered"]
        assert c.verdict == verdict and f"({passed}/3 passed)" in c.rule_text
        assert other.verdict == "reproduced"          # the other reading is judged on its own pairs
        tag = "cen" if center else "unc"
        v = c.values()
        for (a, b), ang in zip(CS_PAIRS, angles):
            assert _same(v[f"{tag}_{a}_{b}"], ang)
        assert [ch.name for ch in c.rule.checks] == ["a–b", "a–c", "b–c"] and c.rule.partial == ()
        assert c.quote_kind == "verbatim" and "cosine > 0.985" in c.rule_text


def test_common_subspace_context_does_not_decide():
    """Untrained and random baselines are shown as context: moving them (even below the trained angles) never
    changes a verdict, and the rule reads only the trained pairs."""
    good, bad = (2.0, 3.0, 4.0), (20.0, 30.0, 40.0)
    for untrained, random in ((50.0, 40.0), (1.0, 0.5), (89.0, 89.0)):
        claims = _cs(good, bad, untrained=untrained, random=random)
        assert claims["c_uncentered"].verdict == "reproduced" and claims["c_centered"].verdict == "not reproduced"
        for tag, cid, trained in (("unc", "c_uncentered", good), ("cen", "c_centered", bad)):
            ctx = claims[cid].context
            assert ctx == {f"{tag}_trained_mean": pytest.approx(np.mean(trained)),
                           f"{tag}_untrained_mean": untrained, f"{tag}_random_mean": random + 1.0,
                           "null_mean": 89.0}
            read = {cond.key for ch in claims[cid].rule.checks for cond in ch.conditions}
            assert read == {f"{tag}_{a}_{b}" for a, b in CS_PAIRS}    # no context key among them
            assert f"untrained (initialisations) {untrained:.1f} deg" in claims[cid].note
    # only the uncentered reading carries the warning about non-negative features
    assert "non-negative" in claims["c_uncentered"].note and "non-negative" not in claims["c_centered"].note
    assert f"(expected about {common_subspace.expected_null_angle(200):.1f})" in claims["c_centered"].note


@pytest.mark.parametrize("center", [False, True])
def test_common_subspace_readings_are_independent(center):
    """Changing every angle of one reading (trained and context sets) leaves the other reading's claim as it was."""
    rows = _cs_rows((1.0, 2.0, 3.0), (4.0, 5.0, 6.0))
    moved = [{**r, "angle": 10.0 * r["angle"] + 5.0} if r["centered"] == center else r for r in rows]
    base, new = _cs_claims(rows), _cs_claims(moved)
    same, changed = ("c_uncentered", "c_centered") if center else ("c_centered", "c_uncentered")
    assert new[same].to_dict() == base[same].to_dict()
    assert base[changed].verdict == "reproduced" and new[changed].verdict == "not reproduced"
    assert new["c_data"].to_dict() == base["c_data"].to_dict()


def test_common_subspace_data_angles_are_descriptive():
    from deepspan.results import ExperimentResult

    claims = _cs((1.0, 2.0, 3.0), (40.0, 50.0, 60.0))
    d = claims["c_data"]
    assert d.rule is None and d.verdict == "descriptive" and d.to_dict()["checks"] == []
    assert d.quote_kind == "verbatim" and "A.4" in d.source
    want = {f"data_{'cen' if r['centered'] else 'unc'}_{r['set']}_{r['model']}": r["angle_to_data"]
            for r in CS_TO_DATA}
    assert d.values() == want and len(want) == 12
    # the experiment's verdict reads the two judged readings only
    res = ExperimentResult("common_subspace", "t", "p", "s", list(claims.values()))
    assert res.verdict == "partly"
    res = ExperimentResult("common_subspace", "t", "p", "s", list(_cs((1.0,) * 3, (2.0,) * 3).values()))
    assert res.verdict == "reproduced"


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


def _trend(model, epoch, rho, deepest=5.0, n=3, centered=False):
    return {"model": model, "epoch": epoch, "centered": centered, "n_layers": n, "rho_depth_angle": rho,
            "first_angle": 1.0, "deepest_angle": deepest}


def test_depth_trends_planted():
    rows = []
    for depth, ang in enumerate([5.0, 7.0, 9.0, 2.0], start=1):  # the 4th layer is after the feature layer
        for center in (False, True):
            rows.append({"model": "m", "epoch": 1, "centered": center, "depth": depth,
                         "angle": ang if not center else 10.0 - ang, "in_path": depth <= 3, "layer": f"l{depth}"})
    t = layerwise.depth_trends(rows)
    assert t == [{"model": "m", "epoch": 1, "centered": False, "n_layers": 3, "rho_depth_angle": 1.0,
                  "first_angle": 5.0, "deepest_angle": 9.0},
                 {"model": "m", "epoch": 1, "centered": True, "n_layers": 3, "rho_depth_angle": -1.0,
                  "first_angle": 5.0, "deepest_angle": 1.0}]
    assert layerwise.epoch_label(0) == "init" and layerwise.epoch_label(3) == "e3"
    assert layerwise.MODELS == ("resnet",) and layerwise.EARLY_EPOCH == 1


def _lw(trends, names=("a", "b", "c")):
    claims = layerwise._claims(trends, list(names))
    return {c.id: c for c in claims}


def _model(m, rho_e1, rho_last, rho_init=0.3, last=4, centered=False, deepest=(9.0, 3.0)):
    return [_trend(m, 0, rho_init, 2.0, centered=centered), _trend(m, 1, rho_e1, deepest[0], centered=centered),
            _trend(m, 2, 0.9, 7.0, centered=centered),          # between early and last: read by neither claim
            _trend(m, last, rho_last, deepest[1], centered=centered)]


@pytest.mark.parametrize("per_model,c1,c2", [
    ({"a": (0.5, -0.5), "b": (1.0, -1.0), "c": (0.1, -0.1)}, ("reproduced", 3), ("reproduced", 3)),
    ({"a": (0.5, -0.5), "b": (1.0, 0.5), "c": (-0.5, 0.5)}, ("partly", 2), ("partly", 1)),
    ({"a": (0.0, 0.0), "b": (-1.0, 1.0), "c": (float("nan"), float("nan"))}, ("not reproduced", 0),
     ("not reproduced", 0)),                                    # rho = 0 is neither a rise nor a fall; NaN fails
    ({"a": (-0.5, -0.5), "b": (-1.0, -0.2), "c": (-0.1, -1.0)}, ("not reproduced", 0), ("reproduced", 3)),
])
def test_layerwise_rules_on_planted_trends(per_model, c1, c2):
    """c1: Spearman(depth, angle) > 0 after epoch 1; c2: < 0 at the last epoch; per model, both readings."""
    for center in (False, True):
        other = [t for m in "abc" for t in _model(m, 0.5, -0.5, centered=not center)]   # passes everything
        trends = other + [t for m, (e1, last) in per_model.items() for t in _model(m, e1, last, centered=center)]
        claims = _lw(trends)
        assert list(claims) == ["c1", "c2", "c1_centered", "c2_centered"]
        suffix = "_centered" if center else ""
        for cid, (verdict, passed) in (("c1", c1), ("c2", c2)):
            c = claims[cid + suffix]
            assert c.verdict == verdict and f"({passed}/3 passed)" in c.rule_text
            assert c.rule.partial == () and [ch.name for ch in c.rule.checks] == ["a", "b", "c"]
            assert c.quote_kind == "paraphrase" and "A.5" in c.source
            # the other reading passes all its checks, whatever this one does
            assert claims[cid + ("" if center else "_centered")].verdict == "reproduced"
        pre = "cen_" if center else ""
        v1, v2 = claims["c1" + suffix].values(), claims["c2" + suffix].values()
        for m, (e1, last) in per_model.items():
            assert _same(v1[f"{pre}{m}_rho_e1"], e1) and _same(v2[f"{pre}{m}_rho_last"], last)
            assert v1[f"{pre}{m}_rho_init"] == 0.3


def test_layerwise_has_no_weak_fall():
    """A fall of rho that stays positive, or a falling deepest angle, is not the paper's fall: no 'partly'."""
    trends = [t for m in "abc" for t in _model(m, 0.9, 0.2, deepest=(9.0, 1.0))]
    claims = _lw(trends)
    j = layerwise.judge(trends, ["a", "b", "c"])
    assert j["fall_weak"] == 3 and j["fall_strict"] == 0          # the weak reading would pass every model ...
    assert claims["c2"].verdict == "not reproduced"               # ... and is no part of the verdict
    assert claims["c1"].verdict == "reproduced"


def test_layerwise_context_does_not_decide():
    """The epoch-0 trend, the middle epochs and the first/deepest angles are shown, never judged."""
    base = _lw([t for m in "abc" for t in _model(m, 0.5, -0.5)])
    for rho_init, deepest in ((-1.0, (1.0, 50.0)), (1.0, (80.0, 0.0)), (float("nan"), (5.0, 5.0))):
        got = _lw([t for m in "abc" for t in _model(m, 0.5, -0.5, rho_init=rho_init, deepest=deepest)])
        assert {k: c.verdict for k, c in got.items()} == {k: c.verdict for k, c in base.items()}
        assert {k: c.rule_text for k, c in got.items()} == {k: c.rule_text for k, c in base.items()}
        read = {cond.key for c in got.values() for ch in c.rule.checks for cond in ch.conditions}
        assert not any("init" in k for k in read)


def test_layerwise_last_epoch_and_unjudged_models():
    # the last epoch is the largest one present, whatever the order of the rows
    trends = [_trend("a", 6, -0.2), _trend("a", 1, 0.4), _trend("a", 3, 0.8)]
    c = _lw(trends, ["a"])
    assert c["c2"].values()["a_rho_last"] == -0.2 and c["c2"].verdict == "reproduced"
    assert "after epoch 6" in c["c2"].measured[0].label
    # a model with no epoch after the first, or fewer than two layers, is not judged (not a failed check)
    trends = ([_trend("a", 1, 0.5), _trend("a", 4, -0.5)] + [_trend("b", 0, 0.5), _trend("b", 1, 0.5)]
              + [_trend("c", 1, 0.5, n=1), _trend("c", 4, -0.5, n=1)])
    c = _lw(trends)
    assert [ch.name for ch in c["c1"].rule.checks] == ["a"] and c["c1"].verdict == "reproduced"
    # a reading with no judged model gives no claims (here: no centered trends at all)
    assert list(c) == ["c1", "c2"]
    assert _lw([_trend("a", 1, 0.5)], ["a"]) == {}


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
    assert beyond_top.subspace_angles(np.zeros((n, 3)), U) == [] and beyond_top.subspace_angle(U, 0 * U) is None


def test_subspace_angles_match_scipy():
    from scipy.linalg import subspace_angles

    rng = np.random.default_rng(4)
    U, _ = np.linalg.qr(rng.standard_normal((40, 3)))
    V, _ = np.linalg.qr(U + 0.4 * rng.standard_normal((40, 3)))
    got = beyond_top.subspace_angles(U, V)
    assert got == sorted(got) and len(got) == 3
    np.testing.assert_allclose(got, np.sort(np.degrees(subspace_angles(U, V))), atol=1e-6)


BT_LABELS = ["init", "e0-i2", "e0-i5", "e1", "e2", "e3", "e4"]   # e4: the final checkpoint


def _bt_rows(model, traj, centered=False, swapped=(), pa3_missing=False, off=(80.0, 75.0)):
    """Angle rows of beyond_top for one model: ``traj`` = [(u1, pa3), ...] for e1, e2, e3; init and the checkpoints
    inside epoch 1 get the angles ``off`` (u1, pa3), the final one zeros."""
    rows = []
    for label in BT_LABELS:
        if label in ("e1", "e2", "e3"):
            u1, pa3 = traj[int(label[1]) - 1]
        elif label == "e4":
            u1, pa3 = 0.0, 0.0
        else:
            u1, pa3 = off
        row = {"model": model, "centered": centered, "checkpoint": label,
               "epoch": 0 if label.startswith(("init", "e0-")) else int(label[1:]),
               "angle_u1": u1, "angle_u2": 2 * pa3, "angle_u3": 3 * pa3, "subspace_angle": pa3,
               "principal_angle_1": u1 / 2, "principal_angle_2": pa3 / 2, "principal_angle_3": pa3,
               "u2_swapped": label in swapped, "s2_over_s1": 0.5, "s3_over_s2": 0.9}
        if pa3_missing:
            del row["principal_angle_3"]
        rows.append(row)
    return rows


def test_trajectory_is_the_epoch_ends_before_the_final():
    rows = _bt_rows("m", [(1, 2), (3, 4), (5, 6)]) + _bt_rows("m", [(7, 8), (9, 9), (9, 9)], centered=True) + \
        _bt_rows("n", [(0, 0)] * 3)
    tr = beyond_top.trajectory(rows, "m", False)
    assert [r["checkpoint"] for r in tr] == ["e1", "e2", "e3"]
    assert [r["angle_u1"] for r in tr] == [1, 3, 5]
    assert [r["angle_u1"] for r in beyond_top.trajectory(rows, "m", True)] == [7, 9, 9]
    # a run whose only epoch end is the final checkpoint has no trajectory
    short = [r for r in _bt_rows("s", [(1, 2)] * 3) if r["checkpoint"] in ("init", "e0-i2", "e1")]
    assert beyond_top.trajectory(short, "s", False) == []


def _bt(rows, names=("m1", "m2")):
    return {c.id: c for c in beyond_top._claims(rows, list(names), 200)}


PASS_TRAJ = [(5.0, 40.0), (3.0, 30.0), (1.0, 20.0)]    # mean u1 3, mean pa3 30 >= max(20, 6)
FAIL_FLOOR = [(1.0, 15.0), (1.0, 20.0), (1.0, 24.0)]   # mean pa3 19.67 < 20 deg
FAIL_RATIO = [(20.0, 40.0), (10.0, 30.0), (16.0, 20.0)]  # mean pa3 30 < 2 x mean u1 15.33


@pytest.mark.parametrize("trajs,verdict,passed", [
    ((PASS_TRAJ, PASS_TRAJ), "reproduced", 2),
    ((PASS_TRAJ, FAIL_FLOOR), "partly", 1),
    ((FAIL_RATIO, PASS_TRAJ), "partly", 1),
    ((FAIL_RATIO, FAIL_FLOOR), "not reproduced", 0),
    (([(10.0, 20.0)] * 3, [(5.0, 20.0), (15.0, 20.0), (10.0, 20.0)]), "reproduced", 2),   # both boundaries hold
])
def test_beyond_top_rule_on_planted_trajectories(trajs, verdict, passed):
    for center in (False, True):
        rows = [r for m, tr in zip(("m1", "m2"), trajs) for r in _bt_rows(m, tr, centered=center)]
        rows += [r for m in ("m1", "m2") for r in _bt_rows(m, PASS_TRAJ, centered=not center)]
        claims = _bt(rows)
        assert list(claims) == ["c1", "c1_centered"]
        c = claims["c1_centered" if center else "c1"]
        assert c.verdict == verdict and f"({passed}/2 passed)" in c.rule_text
        assert claims["c1" if center else "c1_centered"].verdict == "reproduced"
        assert c.rule.partial == () and c.quote == "No convergence found" and c.quote_kind == "verbatim"
        pre = "cen_" if center else ""
        v = c.values()
        for m, tr in zip(("m1", "m2"), trajs):
            assert v[f"{pre}{m}_mean_u1"] == pytest.approx(np.mean([a for a, _ in tr]))
            assert v[f"{pre}{m}_mean_pa3"] == pytest.approx(np.mean([b for _, b in tr]))
            assert v[f"{pre}{m}_mean_pa2"] == pytest.approx(np.mean([b / 2 for _, b in tr]))
            assert v[f"{pre}{m}_mean_u2"] == pytest.approx(np.mean([2 * b for _, b in tr]))
            assert v[f"{pre}{m}_mean_u3"] == pytest.approx(np.mean([3 * b for _, b in tr]))


def test_beyond_top_reads_only_the_trajectory():
    """init, the checkpoints inside epoch 1 and the final one never move the verdict; nor do u_2 and u_3 alone."""
    want = {k: c.to_dict() for k, c in _bt(_bt_rows("m1", PASS_TRAJ) + _bt_rows("m2", FAIL_FLOOR)).items()}
    for off in ((0.0, 0.0), (89.0, 89.0), (float("nan"), float("nan"))):
        got = _bt(_bt_rows("m1", PASS_TRAJ, off=off) + _bt_rows("m2", FAIL_FLOOR, off=off))
        assert {k: c.to_dict() for k, c in got.items()} == want
    # huge u_2 / u_3 angles (a reordering of near-equal singular values) with a small principal angle: no verdict
    rows = _bt_rows("m1", FAIL_FLOOR) + _bt_rows("m2", FAIL_FLOOR)
    for r in rows:
        r["angle_u2"], r["angle_u3"] = 85.0, 88.0
    c = _bt(rows)["c1"]
    assert c.verdict == "not reproduced" and c.values()["m1_mean_u2"] == 85.0
    read = {cond.key for ch in c.rule.checks for cond in ch.conditions} | \
        {cond.ref for ch in c.rule.checks for cond in ch.conditions if isinstance(cond.ref, str)}
    assert read == {"m1_mean_pa3", "m1_mean_u1", "m2_mean_pa3", "m2_mean_u1"}


def test_beyond_top_swaps_missing_angles_and_empty_runs():
    rows = _bt_rows("m1", PASS_TRAJ, swapped=("e2", "init", "e4")) + _bt_rows("m2", PASS_TRAJ, swapped=("e1",))
    c = _bt(rows)["c1"]
    assert "at 2 of 6 checkpoints of the trajectories" in c.note       # init and the final are not counted
    assert "R^200" in c.note
    # a layer narrower than 3 has no third principal angle: the mean is missing and the check fails
    c = _bt(_bt_rows("m1", PASS_TRAJ, pa3_missing=True) + _bt_rows("m2", PASS_TRAJ))["c1"]
    assert c.values()["m1_mean_pa3"] is None and c.verdict == "partly"
    # a model without a trajectory is left out; with none at all there is no claim
    short = [r for r in _bt_rows("m2", PASS_TRAJ) if r["checkpoint"] in ("init", "e1")]
    c = _bt(_bt_rows("m1", PASS_TRAJ) + short)["c1"]
    assert [ch.name for ch in c.rule.checks] == ["m1"] and c.verdict == "reproduced"
    assert _bt(short, ["m2"]) == {}


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
def test_baselines_claims_are_descriptive():
    """No paper states how the P-vector angle relates to CKA, SVCCA or Procrustes: every claim has no rule, and the
    null baselines are context numbers, never conditions."""
    agree = {f"{k}_{s}": 0.5 for k in ("rho_pv", "p_pv", "rho_pvc", "p_pvc") for s in ("cka", "svcca", "procrustes")}
    lv = [{"set": s, "n_pairs": 3, **{f"mean_{k}": 0.3 for k in (*baselines.MEASURES, "pvector_angle",
                                                                  "pvector_angle_centered")}}
          for s in baselines.SETS]
    own = [{"model": "m", "linear_cka": 0.2, "svcca": 0.3, "procrustes": 1.1, "pvector_angle": 5.0,
            "pvector_angle_centered": 60.0}]
    claims = baselines._claims(agree, agree, lv, own, 10)
    assert [c.id for c in claims] == ["c1", "c2", "c3", "c4"]
    for c in claims:
        assert c.rule is None and c.verdict == "descriptive" and c.quote_kind == "paraphrase"
        assert c.rule_text.startswith("descriptive")
    m = {k: v for c in claims for k, v in c.values().items()}
    assert m["rho_pv_procrustes"] == 0.5 and m["mean_cka_untrained"] == 0.3 and m["mean_procrustes_own_init"] == 1.1
    assert m["mean_pvector_angle_cen_trained_vs_random"] == 0.3 and m["n_pairs"] == 10


def test_rank_agreement_known_and_permutation_p():
    rng = np.random.default_rng(1)
    cos = np.sort(rng.random(10))
    rows = [{"pvector_cos": c, "pvector_cos_centered": -c, "linear_cka": c ** 2, "svcca": 1 - c,
             "procrustes": 2 - c} for c in cos]
    a = baselines.rank_agreement(rows)
    assert a["rho_pv_cka"] == pytest.approx(1.0) and a["rho_pv_svcca"] == pytest.approx(-1.0)
    assert a["rho_pvc_cka"] == pytest.approx(-1.0) and a["rho_cka_svcca"] == pytest.approx(-1.0)
    # the Procrustes distance falls as |cos| rises: negated, it ranks the pairs alike (rho = +1)
    assert a["rho_pv_procrustes"] == pytest.approx(1.0) and a["rho_cka_procrustes"] == pytest.approx(1.0)
    assert a["rho_pv_pvc"] == pytest.approx(-1.0)
    # |rho| = 1 on 10 items: only 2 of 10! orders reach it, so p is at the floor 1 / (n_perm + 1)
    assert a["p_pv_cka"] == pytest.approx(1 / (baselines.N_PERM + 1))
    # rows without a measure's column: that measure is left out
    assert "rho_pv_procrustes" not in baselines.rank_agreement([{k: v for k, v in r.items() if k != "procrustes"}
                                                                for r in rows])
    x, y = rng.random(12), rng.random(12)
    p = statistics.permutation_p(x, y, n_perm=4000, seed=0)
    # independent data: the permutation p-value agrees with scipy's asymptotic one
    assert p == pytest.approx(spearmanr(x, y).pvalue, abs=0.06)


def test_pair_table_invariances_and_cross_pairs():
    rng = np.random.default_rng(2)
    A = rng.random((60, 6))
    Q, _ = np.linalg.qr(rng.standard_normal((6, 6)))
    feats = {"a": A, "rot": A @ Q, "other": rng.random((60, 5))}
    from deepspan.linalg import top_singular

    pv = {(k, c): top_singular(F, 1, center=c).U[:, 0] for k, F in feats.items() for c in (False, True)}
    rows = baselines.pair_table(feats, pv, "trained")
    r = next(r for r in rows if (r["a"], r["b"]) == ("a", "rot"))
    assert r["linear_cka"] == pytest.approx(1.0) and r["svcca"] == pytest.approx(1.0)
    assert r["procrustes"] == pytest.approx(0.0, abs=1e-6)
    assert r["pvector_angle"] == pytest.approx(0.0, abs=1e-5) and r["pvector_cos_centered"] == pytest.approx(1.0)
    assert len(rows) == 3 and all(r["set"] == "trained" for r in rows)
    cross = baselines.pair_table(feats, pv, "trained vs random", pairs=[("a", "other"), ("rot", "other")])
    assert [(x["a"], x["b"]) for x in cross] == [("a", "other"), ("rot", "other")]
    # rotating one side changes none of the measures
    for k in ("linear_cka", "svcca", "procrustes", "pvector_angle", "pvector_angle_centered"):
        assert cross[0][k] == pytest.approx(cross[1][k], abs=1e-6)


def test_baselines_random_maps_and_levels():
    X = np.random.default_rng(0).random((40, 12))
    maps = baselines.random_maps(X, (8, 16), seed=3)
    assert list(maps) == ["ReLU-8 #1", "ReLU-8 #2", "ReLU-16 #1", "ReLU-16 #2"]
    assert maps["ReLU-16 #2"].shape == (40, 16) and (maps["ReLU-8 #1"] >= 0).all()
    assert not np.allclose(maps["ReLU-8 #1"], maps["ReLU-8 #2"])
    assert np.array_equal(maps["ReLU-8 #1"], baselines.random_maps(X, (8, 16), seed=3)["ReLU-8 #1"])  # seeded
    rows = [{"set": s, "linear_cka": v, "svcca": v, "procrustes": 1 - v, "pvector_angle": 10 * v,
             "pvector_angle_centered": 20 * v} for s, v in (("trained", 0.2), ("trained", 0.4), ("random", 0.9))]
    lv = {r["set"]: r for r in baselines.levels(rows)}
    assert set(lv) == {"trained", "random"} and lv["trained"]["n_pairs"] == 2
    assert lv["trained"]["mean_linear_cka"] == pytest.approx(0.3)
    assert lv["trained"]["mean_procrustes"] == pytest.approx(0.7)
    assert lv["random"]["mean_pvector_angle_centered"] == pytest.approx(18.0)


# ------------------------------------------------------------------ tiny end-to-end run
def _run_exps() -> list[str]:
    """The experiments of the tiny run: all of EXPS, or those named in DEEPSPAN_TEST_ONLY (see tests/_tiny_run.py)."""
    import os

    only = [n.strip() for n in os.environ.get("DEEPSPAN_TEST_ONLY", "").split(",") if n.strip()]
    return [n for n in EXPS if n in only] if only else list(EXPS)


RUN_EXPS = _run_exps()


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from deepspan.experiments.config import config_for
    from deepspan.experiments.context import ReproContext
    from deepspan.experiments.reproduce import reproduce

    out = tmp_path_factory.mktemp("pvfam")
    cfg = config_for("tiny")
    results = reproduce(cfg, out, only=RUN_EXPS, report=False, progress=False, log=lambda s: None)
    return out, results, ReproContext(cfg, out, progress=False)


def test_tiny_results_saved(tiny):
    out, results, ctx = tiny
    for name in RUN_EXPS:
        d = json.loads((out / "results" / f"{name}.json").read_text())
        assert d["name"] == name and d["claims"] and d["verdict"] in VERDICTS + ("descriptive",)
        for c in d["claims"]:
            assert c["verdict"] in VERDICTS + ("descriptive",) and c["rule"] and c["quote"] and c["measured"]
            assert c["quote_kind"] in ("verbatim", "paraphrase") and c["source"].strip()
            assert (c["verdict"] == "descriptive") == (c["rule_spec"] is None)
        for table in d["tables"]:
            assert (out / "results" / f"{name}__{table}.csv").is_file()
        if name not in ("common_subspace", "layerwise", "beyond_top"):
            continue
        # the protocol names the sample set every number was read on
        assert d["verdict"] in VERDICTS
        p = d["protocol"]
        split = "train" if name == "layerwise" else "test"
        assert p["split"] == split and p["n_samples"] == len(ctx.data.probe_of(split))
        assert p["train_probe"] == {"split": "train", "n_samples": len(ctx.data.train_probe)}
        assert set(p["epochs"]) == set(p["layers"]) and p["batch_size"] == ctx.cfg.batch_size
        assert all(p["schedule"][n] == ctx.runs.spec(n).describe() for n in p["schedule"])
    if "common_subspace" in results:
        cs = results["common_subspace"]
        assert [c.id for c in cs.claims] == ["c_uncentered", "c_centered", "c_data"]
        assert cs.claim("c_data").verdict == "descriptive"
        assert {r["set"] for r in cs.tables["angles"]} == {"trained", "untrained", "random"}
        assert {r["centered"] for r in cs.tables["angles"]} == {False, True}
        assert {r["a"] for r in cs.tables["angles"] if r["set"] != "random"} | \
            {r["b"] for r in cs.tables["angles"] if r["set"] != "random"} == set(ctx.cfg.zoo_names)
    if "layerwise" in results:
        assert [c.id for c in results["layerwise"].claims] == ["c1", "c2", "c1_centered", "c2_centered"]
        assert {r["model"] for r in results["layerwise"].tables["angles"]} == {"resnet"}
    if "beyond_top" in results:
        assert [c.id for c in results["beyond_top"].claims] == ["c1", "c1_centered"]


def test_tiny_common_subspace_values(tiny):
    _, results, ctx = tiny
    if "common_subspace" not in results:
        pytest.skip("common_subspace not in DEEPSPAN_TEST_ONLY")
    res = results["common_subspace"]
    rows = res.tables["angles"]
    from deepspan.linalg import angle

    for center in (False, True):
        ua = ctx.stats.pvector("mlp", ctx.runs.checkpoints("mlp")[-1]["label"], center)
        ub = ctx.stats.pvector("cnn", ctx.runs.checkpoints("cnn")[-1]["label"], center)
        row = next(r for r in rows if r["set"] == "trained" and r["centered"] == center and r["a"] == "mlp"
                   and r["b"] == "cnn")
        assert row["angle"] == pytest.approx(angle(ua, ub), abs=1e-9)
        assert row["cosine"] == pytest.approx(abs(ua @ ub) / np.linalg.norm(ua) / np.linalg.norm(ub), abs=1e-9)
        # the claim judges exactly that number, against 10 deg
        c = res.claim("c_centered" if center else "c_uncentered")
        key = f"{'cen' if center else 'unc'}_mlp_cnn"
        assert c.values()[key] == row["angle"]
        assert next(ch for ch in c.rule.checks if ch.name == "mlp–cnn").passed(c.values()) == (row["angle"] < 10.0)
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
    # context: mean angles of each set (not measured values of the claim)
    ctx_unc = res.claim("c_uncentered").context
    for s in ("trained", "untrained", "random"):
        want = np.mean([r["angle"] for r in rows if r["set"] == s and not r["centered"]])
        assert ctx_unc[f"unc_{s}_mean"] == pytest.approx(want)
    assert "unc_trained_mean" not in res.measured()
    # model-vs-data angles on the training probe, the data P-vector by a plain SVD of the training-probe images
    Xt = ctx.data.train_probe.X.reshape(len(ctx.data.train_probe), -1).astype(np.float64)
    for center in (False, True):
        d = np.linalg.svd(Xt - Xt.mean(0) if center else Xt, full_matrices=False)[0][:, 0]
        u = ctx.stats.pvector("cnn", ctx.runs.final_label("cnn"), center, split="train")
        assert len(u) == len(ctx.data.train_probe)
        r = next(r for r in res.tables["to_data"] if r["model"] == "cnn" and r["set"] == "trained"
                 and r["centered"] == center)
        assert r["split"] == "train"
        assert r["angle_to_data"] == pytest.approx(np.degrees(np.arccos(min(1.0, abs(u @ d)))), abs=1e-4)
        key = f"data_{'cen' if center else 'unc'}_trained_cnn"
        assert res.claim("c_data").values()[key] == r["angle_to_data"]


def test_tiny_layerwise_values(tiny):
    _, results, ctx = tiny
    if "layerwise" not in results:
        pytest.skip("layerwise not in DEEPSPAN_TEST_ONLY")
    res = results["layerwise"]
    rows = res.tables["angles"]
    from deepspan.linalg import angle

    assert {r["epoch"] for r in rows} == set(ctx.cfg.layerwise_epochs) & set(range(ctx.cfg.epochs_of("resnet") + 1))
    assert [r["layer"] for r in rows if r["epoch"] == 0 and not r["centered"]] == ctx.runs.layers("resnet")
    r = next(r for r in rows if r["model"] == "resnet" and r["checkpoint"] == "e1" and r["depth"] == 2
             and not r["centered"])
    # the resnet's block output and the data, both on the training probe
    u = ctx.stats.pvector("resnet", "e1", False, layer=r["layer"], split="train")
    assert len(u) == len(ctx.data.train_probe)
    assert r["angle"] == pytest.approx(angle(u, ctx.stats.data_pvector(False, split="train")), abs=1e-9)
    # the block output's P-vector by a plain SVD of its flattened training-probe features
    F = ctx.stats.features("resnet", "e1", split="train", layer=r["layer"]).astype(np.float64)
    assert F.shape[0] == len(ctx.data.train_probe)
    assert abs(np.linalg.svd(F, full_matrices=False)[0][:, 0] @ u) == pytest.approx(1.0, abs=1e-5)
    # the data P-vector itself, by a plain SVD of the flattened training-probe images
    X = ctx.data.train_probe.X.reshape(len(ctx.data.train_probe), -1).astype(np.float64)
    d = np.linalg.svd(X, full_matrices=False)[0][:, 0]
    assert abs(d @ ctx.stats.data_pvector(False, split="train")) == pytest.approx(1.0, abs=1e-9)
    # the feature layer is the last in-path layer
    path = [x for x in rows if x["in_path"] and x["epoch"] == 0 and not x["centered"]]
    assert max(path, key=lambda x: x["depth"])["is_feature"]
    for center in (False, True):
        t = next(t for t in res.tables["trends"] if t["model"] == "resnet" and t["epoch"] == 1
                 and t["centered"] == center)
        path = sorted((x for x in rows if x["epoch"] == 1 and x["centered"] == center and x["in_path"]),
                      key=lambda x: x["depth"])
        rho = spearmanr([x["depth"] for x in path], [x["angle"] for x in path]).statistic
        assert t["rho_depth_angle"] == pytest.approx(rho)
        c1 = res.claim("c1_centered" if center else "c1")
        assert c1.values()[f"{'cen_' if center else ''}resnet_rho_e1"] == pytest.approx(rho)
        assert c1.verdict == ("reproduced" if rho > 0 else "not reproduced")


def test_tiny_beyond_top_values(tiny):
    _, results, ctx = tiny
    if "beyond_top" not in results:
        pytest.skip("beyond_top not in DEEPSPAN_TEST_ONLY")
    from scipy.linalg import subspace_angles

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
    # principal angles of span(u_1, u_2, u_3), by scipy
    pa = np.sort(np.degrees(subspace_angles(U, V)))
    assert [r[f"principal_angle_{i}"] for i in (1, 2, 3)] == pytest.approx(pa, abs=1e-4)
    assert r["subspace_angle"] == pytest.approx(pa[-1], abs=1e-4)
    final = [r for r in res.tables["angles"] if r["checkpoint"] == recs[-1]["label"] and r["model"] == "resnet"]
    assert all(r["angle_u1"] == pytest.approx(0.0, abs=1e-6) for r in final)
    assert {r["model"] for r in res.tables["angles"]} == set(ctx.cfg.zoo_names)
    for model in ctx.cfg.zoo_names:  # every histogram holds all N probe entries
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
    # the claim's means: over the epoch ends before the final checkpoint (tiny: 2 epochs, so e1 only)
    m = res.measured()
    for model in ctx.cfg.zoo_names:
        for center in (False, True):
            tr = [x for x in res.tables["angles"] if x["model"] == model and x["centered"] == center
                  and x["checkpoint"].startswith("e") and not x["checkpoint"].startswith("e0-")
                  and x["checkpoint"] != ctx.runs.final_label(model)]
            assert [x["checkpoint"] for x in tr] == [f"e{i}" for i in range(1, ctx.cfg.epochs_of(model))]
            pre = "cen_" if center else ""
            assert m[f"{pre}{model}_mean_pa3"] == pytest.approx(np.mean([x["principal_angle_3"] for x in tr]))
            assert m[f"{pre}{model}_mean_u1"] == pytest.approx(np.mean([x["angle_u1"] for x in tr]))


def test_tiny_baselines_values(tiny):
    _, results, ctx = tiny
    from deepspan import cka, compare_many, procrustes, svcca

    res = results["baselines"]
    names = ctx.cfg.zoo_names
    fa = ctx.stats.features("mlp", ctx.runs.checkpoints("mlp")[-1]["label"])
    fb = ctx.stats.features("simclr", ctx.runs.checkpoints("simclr")[-1]["label"])
    r = next(r for r in res.tables["pairs"] if r["set"] == "trained" and r["a"] == "mlp" and r["b"] == "simclr")
    assert r["linear_cka"] == pytest.approx(cka(fa, fb), abs=1e-9)
    assert r["svcca"] == pytest.approx(svcca(fa, fb), abs=1e-9)
    assert r["procrustes"] == pytest.approx(procrustes(fa, fb), abs=1e-9)
    # the P-vector angle of the cached triplets equals compare_many's own pvector_angle (uncentered)
    pvr = compare_many({"mlp": fa, "simclr": fb}, ["pvector_angle"])[0]["value"]
    assert r["pvector_angle"] == pytest.approx(pvr, abs=1e-3)
    sets = {s: [x for x in res.tables["pairs"] if x["set"] == s] for s in baselines.SETS}
    n_maps = 2 * len(ctx.cfg.random_widths)
    assert len(sets["trained"]) == len(sets["untrained"]) == len(names) * (len(names) - 1) // 2
    assert len(sets["random"]) == n_maps * (n_maps - 1) // 2
    assert len(sets["trained vs random"]) == len(names) * n_maps
    assert {x["a"] for x in sets["trained"]} | {x["b"] for x in sets["trained"]} == set(names)
    # a random-feature pair, recomputed from the seeded maps of the probe images
    X = ctx.data.probe.X.reshape(len(ctx.data.probe), -1).astype(np.float64)
    maps = baselines.random_maps(X, tuple(ctx.cfg.random_widths), ctx.cfg.seed)
    a, b = list(maps)[:2]
    x = next(x for x in sets["random"] if (x["a"], x["b"]) == (a, b))
    assert x["linear_cka"] == pytest.approx(cka(maps[a], maps[b]), abs=1e-9)
    trained = sets["trained"]
    m = res.measured()
    cos = [x["pvector_cos"] for x in trained]
    assert m["rho_pv_cka"] == pytest.approx(spearmanr(cos, [x["linear_cka"] for x in trained]).statistic)
    assert m["rho_pv_procrustes"] == pytest.approx(spearmanr(cos, [-x["procrustes"] for x in trained]).statistic)
    assert m["p_pv_cka"] == pytest.approx(statistics.permutation_p(cos, [x["linear_cka"] for x in trained],
                                                                   n_perm=baselines.N_PERM, seed=ctx.cfg.seed))
    assert m["mean_cka_untrained"] == pytest.approx(np.mean([x["linear_cka"] for x in sets["untrained"]]))
    assert m["mean_pvector_angle_unc_trained_vs_random"] == pytest.approx(
        np.mean([x["pvector_angle"] for x in sets["trained vs random"]]))
    assert [c.id for c in res.claims] == ["c1", "c2", "c3", "c4"]
    assert all(c.verdict == "descriptive" for c in res.claims) and res.verdict == "descriptive"
    p = res.protocol
    assert p["split"] == "test" and p["n_samples"] == len(ctx.data.probe)
    assert set(p["layers"]) == set(names) and "context" in p["null_baselines"]["role"]


def test_tiny_figures(tiny):
    out, _, _ = tiny
    import importlib

    from deepspan.report._base import FigureContext

    fc = FigureContext(out)
    for name in RUN_EXPS:
        d = json.loads((out / "results" / f"{name}.json").read_text())
        infos = importlib.import_module(f"deepspan.report.fig_{name}").draw(d, fc)
        assert infos
        for info in infos:
            assert info.stem.startswith(name)
            assert (out / info.png).stat().st_size > 1000 and (out / info.svg).is_file()
            assert len(info.caption) > 80
