"""Experiments 6 (subspace match, Wang et al. 2018) and 7 (feature-map spectrum, Nam et al. 2024).

Known answers on synthetic data for the computations and verdict rules, then one tiny-scale run of
both experiments through ``reproduce`` whose saved numbers are recomputed independently.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

import deepspan
from deepspan.experiments import spectrum as sp_exp
from deepspan.experiments import subspace_match as sm
from deepspan.experiments.config import config_for
from deepspan.experiments.context import ReproContext
from deepspan.experiments.reproduce import reproduce
from deepspan.measures.collapse import neural_collapse
from deepspan.measures.spectrum import feature_spectrum

EPS_GRID = (0.15, 0.2, 0.25, 0.3, 0.5)


# ---------------------------------------------------------------- subspace match: known answers
def test_planted_shared_span_matches_completely_at_every_eps():
    rng = np.random.default_rng(0)
    Z = rng.standard_normal((600, 6))                       # a 6-dim shared span in R^600
    A = Z @ rng.standard_normal((6, 6))                     # 6 neurons each, different bases of it
    B = Z @ rng.standard_normal((6, 6))
    for eps in (0.0,) + EPS_GRID:
        m = deepspan.max_match(A, B, eps)
        assert m.similarity == 1.0 and len(m.a) == 6 and len(m.b) == 6
    # the experiment's row-sampled Gram (rows of repeat 0) keeps the exact match
    g = sm._gram(A, B, n_rows=200, seed=0)
    assert g.max_match(0.15).similarity == 1.0


def test_independent_random_activations_do_not_match():
    rng = np.random.default_rng(1)
    A, B = rng.standard_normal((2000, 10)), rng.standard_normal((2000, 10))
    # a random vector lies at relative distance ~sqrt(1 - 10/2000) ~ 0.997 from a random 10-dim span
    for eps in EPS_GRID:
        assert deepspan.max_match(A, B, eps).similarity < 0.05


def test_partly_planted_match_counts_only_the_shared_neurons():
    rng = np.random.default_rng(2)
    Z = rng.standard_normal((800, 3))
    A = np.hstack([Z @ rng.standard_normal((3, 3)), rng.standard_normal((800, 5))])
    B = np.hstack([rng.standard_normal((800, 4)), Z @ rng.standard_normal((3, 3))])
    m = deepspan.max_match(A, B, 0.2)
    assert m.a.tolist() == [0, 1, 2] and m.b.tolist() == [4, 5, 6]
    assert m.similarity == pytest.approx(6 / 15)
    simple = deepspan.simple_matches(A, B, 0.2)
    assert simple and all(s.size <= 6 for s in simple)


def test_top_activating_equals_a_hand_argsort():
    act = np.array([[0.1, 5.0],
                    [0.9, 1.0],
                    [0.5, 1.0],
                    [0.9, 3.0],
                    [0.0, 2.0]])
    assert sm.top_activating(act, 0, 3).tolist() == [1, 3, 2]      # tie 0.9: lower index first
    assert sm.top_activating(act, 1, 8).tolist() == [0, 3, 4, 1, 2]  # k larger than the rows: all, descending
    rng = np.random.default_rng(3)
    big = rng.standard_normal((50, 4))
    for j in range(4):
        hand = sorted(range(50), key=lambda i: -big[i, j])[:8]
        assert sm.top_activating(big, j, 8).tolist() == hand


def test_pooled_activations_is_the_max_over_positions():
    rng = np.random.default_rng(4)
    maps = rng.standard_normal((3, 5, 4))                    # images x positions x channels
    rows = maps.reshape(15, 4)                               # the channels policy's (image, position) rows
    np.testing.assert_array_equal(sm.pooled_activations(rows, 3), maps.max(axis=1))
    np.testing.assert_array_equal(sm.pooled_activations(rows[:3], 3), rows[:3])  # one row per image: as is


def test_match_helpers():
    recs = [{"label": "init", "epoch": 0}, {"label": "e0-i2", "epoch": 0}, {"label": "e1", "epoch": 1},
            {"label": "e2", "epoch": 2}]
    assert sm.epoch_checkpoints(recs) == [("init", 0), ("e1", 1), ("e2", 2)]
    assert sm.intermediate_layers(["a", "b", "c", "d"]) == ["b", "c"]
    assert sm.intermediate_layers(["a", "b"]) == ["b"]
    assert sm.claim_eps(EPS_GRID) == 0.5 and sm.claim_eps((0.1, 0.3)) == 0.3
    assert sm.positions_per_image(1000, 4, 1000, 196) == 4
    assert sm.positions_per_image(200, 2, 200, 16) == 2
    assert sm.positions_per_image(10_000, 8, 100, 16) == 16   # capped by the smallest map
    assert sm.positions_per_image(10, 1, 1000, 16) == 1


# ---------------------------------------------------------------- subspace match: verdict rules
def test_low_similarity_rule():
    sims = {"l1": 0.9, "l2": 0.25, "l3": 0.5, "l4": 0.95}
    ok, mean = sm.low_similarity_rule(sims, ["l2", "l3"])
    assert ok and mean == 0.375
    assert not sm.low_similarity_rule(sims, ["l2", "l3"], threshold=0.375)[0]   # strict: equal is not below
    assert not sm.low_similarity_rule(sims, ["l1", "l4"])[0]


def test_layer_trend_rule_counts_eps_values():
    by_eps = {0.2: {"l1": 0.5, "l2": 0.1, "l3": 0.2},   # first above the later mean 0.15: pass
              0.3: {"l1": 0.2, "l2": 0.1, "l3": 0.5},   # later mean 0.3: fail
              0.5: {"l1": 0.3, "l2": 0.3, "l3": 0.3}}   # equal: fail
    assert sm.layer_trend_rule(by_eps, ["l1", "l2", "l3"]) == (1, 3)


def test_training_gain_and_small_matches_rules():
    ok, gain = sm.training_gain_rule({"a": 0.7, "b": 0.5}, {"a": 0.4, "b": 0.5}, ["a", "b"])
    assert not ok and gain == pytest.approx(0.15)
    ok, gain = sm.training_gain_rule({"a": 0.3}, {"a": 0.6}, ["a"])
    assert ok and gain == pytest.approx(-0.3)
    assert sm.small_matches_rule([2, 2, 4, 10, 27]) == (True, 4.0)
    assert sm.small_matches_rule([6, 8]) == (False, 7.0)
    assert sm.small_matches_rule([]) == (False, None)


# ---------------------------------------------------------------- spectrum: known answers and rules
def _collapsed_features(n_per=30, C=4, p=12, noise=1e-3, seed=5):
    """Features whose top-C eigenfunctions are the class indicators: Phi = onehot(y) diag(s) Q^T + tiny noise."""
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(C), n_per)
    Y = np.eye(C)[y]
    Q, _ = np.linalg.qr(rng.standard_normal((p, p)))
    Phi = Y @ np.diag(np.linspace(3.0, 2.0, C)) @ Q[:, :C].T + noise * rng.standard_normal((len(y), p))
    return Phi, y, Y


def test_class_indicator_features_are_minimal_feature_regime():
    Phi, y, Y = _collapsed_features()
    res = feature_spectrum(Phi, y, outputs=5.0 * Y, mf_pi=sp_exp.MF_PI, mf_gap=sp_exp.MF_GAP,
                           ef_factor=sp_exp.EF_FACTOR)
    assert res.regime == "MF"
    assert res.pi_star[3] == pytest.approx(1.0, abs=1e-5) and res.pi[3] == pytest.approx(1.0, abs=1e-5)
    assert res.regime_numbers["gap_ratio_C"] > 1e4
    nc = neural_collapse(Phi, y)
    assert nc.nc1 < 1e-4


def test_random_features_are_extended_feature_regime():
    rng = np.random.default_rng(6)
    y = np.repeat(np.arange(4), 50)
    res = feature_spectrum(rng.standard_normal((200, 40)), y)
    assert res.regime == "EF"


def test_nc1_rule_and_mf_reached():
    assert sp_exp.nc1_rule(0.2, 1.0) and not sp_exp.nc1_rule(0.5, 1.0) and not sp_exp.nc1_rule(0.6, 1.0)
    rows = [{"regime": r, "position": p} for r, p in (("EF", 0), ("MF", 0.5), ("EF", 1), ("MF", 2), ("MF", 3))]
    assert sp_exp.mf_reached_epoch(rows) == 2
    assert sp_exp.mf_reached_epoch(rows[:3]) is None


# the regime numbers behind each label (MF: Pi*(C), Pi(C) >= 0.9 and rho_C / rho_C+1 >= 2; EF: far from it)
_REGIME_NUMBERS = {"MF": {"pi_star_C": 0.95, "pi_C": 0.97, "gap_ratio_C": 3.0, "k90": 4},
                   "EF": {"pi_star_C": 0.55, "pi_C": 0.6, "gap_ratio_C": 1.1, "k90": 9}}


def _reg_row(model, label, regime, nc1):
    return {"model": model, "checkpoint": label, "regime": regime, "nc1": nc1, **_REGIME_NUMBERS[regime],
            "d_eff": 4.0, "position": {"init": 0, "e1": 1, "e2": 2}[label],
            "nc2_equinorm": 0.1, "nc3": 0.5, "nc4": 0.9}


def test_spectrum_claim_verdicts():
    rows = [_reg_row("cnn", "init", "EF", 2.0), _reg_row("cnn", "e1", "MF", 1.0), _reg_row("cnn", "e2", "MF", 0.4),
            _reg_row("mlp", "init", "EF", 2.0), _reg_row("mlp", "e1", "EF", 1.0), _reg_row("mlp", "e2", "EF", 0.6)]
    s1, s2 = sp_exp._claims(rows, ["cnn", "mlp"])
    # cnn ends MF, mlp EF: one of the two MF checks passes
    assert s1.verdict == "partly" and "(1/2 passed)" in s1.rule_text
    assert [c.passed(s1.values()) for c in s1.rule.checks] == [True, False]
    # cnn: 0.4 < 0.5*2 and 0.4 < 0.5*1 -> 2 passes; mlp: 0.6 < 1.0 passes, 0.6 < 0.5 fails
    assert s2.verdict == "partly" and "(3/4 passed)" in s2.rule_text
    assert [c.passed(s2.values()) for c in s2.rule.checks] == [True, True, True, False]
    got = {m.key: m.value for m in s1.measured}
    assert got["cnn_mf_from"] == 1 and got["mlp_mf_from"] is None
    assert got["cnn_pi_star_C"] == 0.95 and got["mlp_gap"] == 1.1
    # both MF and both collapsing -> reproduced; no MF and no collapse -> not reproduced
    mf = [_reg_row(m, lab, "MF" if lab != "init" else "EF", nc) for m in ("cnn", "mlp")
          for lab, nc in (("init", 2.0), ("e1", 1.0), ("e2", 0.1))]
    assert [c.verdict for c in sp_exp._claims(mf, ["cnn", "mlp"])] == ["reproduced", "reproduced"]
    ef = [_reg_row(m, lab, "EF", nc) for m in ("cnn", "mlp") for lab, nc in (("init", 2.0), ("e1", 1.0), ("e2", 1.5))]
    assert [c.verdict for c in sp_exp._claims(ef, ["cnn", "mlp"])] == ["not reproduced", "not reproduced"]
    # the MF check is the regime of feature_spectrum with the experiment's thresholds, boundaries included
    edge = [_reg_row("cnn", "init", "EF", 2.0), {**_reg_row("cnn", "e1", "MF", 0.1), "pi_star_C": sp_exp.MF_PI,
                                                "pi_C": sp_exp.MF_PI, "gap_ratio_C": sp_exp.MF_GAP}]
    assert sp_exp._claims(edge, ["cnn"])[0].verdict == "reproduced"
    below = [edge[0], {**edge[1], "gap_ratio_C": sp_exp.MF_GAP - 1e-9}]
    assert sp_exp._claims(below, ["cnn"])[0].verdict == "not reproduced"


def test_spectrum_train_claim_verdicts():
    def row(model, regime):
        return {"model": model, "regime": regime, "nc1": 0.3, **_REGIME_NUMBERS[regime]}

    c = sp_exp._claim_train([row("cnn", "MF"), row("mlp", "EF")], ["cnn", "mlp"])
    assert c.id == "s1_train" and c.verdict == "partly" and "(1/2 passed)" in c.rule_text
    assert c.values()["train_mlp_pi_star_C"] == 0.55 and "cnn: MF, mlp: EF" in c.rule_text
    assert sp_exp._claim_train([row("cnn", "MF")], ["cnn"]).verdict == "reproduced"
    assert sp_exp._claim_train([row("cnn", "EF")], ["cnn"]).verdict == "not reproduced"


# ---------------------------------------------------------------- tiny end-to-end run
@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from threadpoolctl import threadpool_limits

    out = tmp_path_factory.mktemp("match_spectrum")
    cfg = config_for("tiny")
    with threadpool_limits(limits=1, user_api="blas"):  # small matrices: one BLAS thread is fastest, also under load
        results = reproduce(cfg, out, only=["subspace_match", "spectrum"], report=False, progress=False)
    return out, cfg, results


def test_tiny_run_writes_results_arrays_and_figures(tiny):
    from deepspan.report import fig_spectrum, fig_subspace_match
    from deepspan.report._base import FigureContext

    out, cfg, results = tiny
    fc = FigureContext(out)
    for name, mod, n_claims in (("subspace_match", fig_subspace_match, 4), ("spectrum", fig_spectrum, 3)):
        d = json.loads((out / "results" / f"{name}.json").read_text())
        assert d["verdict"] in ("reproduced", "partly", "not reproduced")
        ids = ["c1", "c2", "c3", "c4"] if name == "subspace_match" else ["s1", "s1_train", "s2"]
        assert [c["id"] for c in d["claims"]] == ids
        assert len(d["claims"]) == n_claims and all(c["measured"] for c in d["claims"])
        for table, rows in d["tables"].items():
            assert (out / "results" / f"{name}__{table}.csv").is_file()
        infos = mod.draw(d, fc)
        assert infos and all((out / i.png).is_file() and (out / i.svg).is_file() and i.caption for i in infos)
    d = json.loads((out / "results" / "subspace_match.json").read_text())
    t = d["tables"]
    assert {r["comparison"] for r in t["similarity"]} == {"A vs B", "A vs A final"}
    assert {r["eps"] for r in t["similarity"]} == set(cfg.match_eps)
    assert t["simple_matches"] and d["arrays"] == {"top_images": sm.ARRAYS_FILE}
    z = fc.arrays(d, "top_images")
    assert z["images"].shape[1:] == (sm.TOP_K, 1, 8, 8) and z["indices"].shape[1] == sm.TOP_K
    assert len(t["top_images"]) == z["images"].shape[0] * sm.TOP_K
    sp = results["spectrum"].tables
    assert {r["model"] for r in sp["regimes"]} == {"cnn", "mlp"}
    assert {r["checkpoint"] for r in sp["pi_curves"] if r["model"] == "cnn"} == {"init", "e1", "e2"}


def test_tiny_values_recomputed_independently(tiny):
    out, cfg, results = tiny
    ctx = ReproContext(cfg, out, progress=False)
    res = results["subspace_match"]
    rows = res.tables["similarity"]
    # 1. one max-match similarity: trained pair, fully connected layer relu3 (every probe image, one repeat)
    A = deepspan.extract(ctx.runs.load("cnn", "e2"), ctx.data.probe, "relu3").features["relu3"]
    B = deepspan.extract(ctx.runs.load("cnn@s1", "e2"), ctx.data.probe, "relu3").features["relu3"]
    want = deepspan.max_match(A, B, 0.5).similarity
    got = next(r for r in rows if r["comparison"] == "A vs B" and r["epoch"] == 2 and r["layer"] == "relu3"
               and r["eps"] == 0.5)
    assert got["repeats"] == 1 and got["similarity"] == pytest.approx(want, abs=1e-12)
    # 2. the top-activating images of one neuron, from a plain forward hook (max over the feature map)
    top = res.tables["top_images"]
    first = top[0]
    layer = res.provenance["simple_match_layer"]
    run = "cnn" if first["side"] == "a" else "cnn@s1"
    import torch

    model = ctx.runs.load(run, "e2")
    captured = []
    handle = model.get_submodule(layer).register_forward_hook(lambda _m, _i, o: captured.append(o))
    with torch.no_grad():
        model(torch.as_tensor(ctx.data.probe.X))
    handle.remove()
    maps = captured[0]
    pooled = (maps.amax(dim=(2, 3)) if maps.ndim == 4 else maps).numpy()
    hand = np.argsort(-pooled[:, first["neuron"]].astype(np.float64), kind="stable")[: sm.TOP_K]
    got_idx = [r["probe_index"] for r in top if r["match"] == first["match"] and r["side"] == first["side"]
               and r["neuron"] == first["neuron"]]
    assert got_idx == hand.tolist()
    # 3. one rho vector and one NC1 from the cached features
    sp = results["spectrum"].tables
    Phi = ctx.stats.features("cnn", "e1")
    spec = feature_spectrum(Phi, ctx.data.probe.y)
    got_rho = [r["rho"] for r in sorted((r for r in sp["rho"] if r["model"] == "cnn" and r["checkpoint"] == "e1"),
                                        key=lambda r: r["k"])]
    np.testing.assert_allclose(got_rho, spec.rho[: len(got_rho)], rtol=1e-9)
    nc1 = next(r["nc1"] for r in sp["regimes"] if r["model"] == "cnn" and r["checkpoint"] == "e1")
    assert nc1 == pytest.approx(neural_collapse(Phi, ctx.data.probe.y).nc1, rel=1e-9)
    # 4. the training-image reading (s1_train): NC1 of the final CNN on the seeded training subset
    from deepspan.data import probe_subset
    from deepspan.features import extract

    n = min(len(ctx.data.probe), int(np.bincount(ctx.data.train.y).min()) * 10)
    sub = probe_subset(ctx.data.train, n, seed=ctx.cfg.seed)
    final = ctx.runs.checkpoints("cnn")[-1]["label"]
    layer = ctx.runs.feature_layer("cnn")
    Phi_tr = extract(ctx.runs.load("cnn", final), sub.X, layer, policy="flatten", progress=False).features[layer]
    row = next(r for r in sp["train_probe"] if r["model"] == "cnn")
    assert row["checkpoint"] == final and row["n_samples"] == len(sub)
    assert row["nc1"] == pytest.approx(neural_collapse(Phi_tr, sub.y).nc1, rel=1e-9)
    assert row["pi_star_C"] == pytest.approx(feature_spectrum(Phi_tr, sub.y).regime_numbers["pi_star_C"], rel=1e-9)
