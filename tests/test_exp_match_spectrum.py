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
    six = [("init", 0)] + [(f"e{i}", i) for i in range(1, 7)]
    assert sm.stage_checkpoints(six) == [("init", 0), ("e1", 1), ("e3", 3), ("e6", 6)]      # init, e1, middle, final
    assert sm.stage_checkpoints(six[:3]) == [("init", 0), ("e1", 1), ("e2", 2)]             # middle = e1: no repeat
    assert sm.stage_checkpoints([("init", 0), ("e1", 1)]) == [("init", 0), ("e1", 1)]
    twelve = [("init", 0)] + [(f"e{i}", i) for i in range(1, 13)]
    assert [lab for lab, _ in sm.stage_checkpoints(twelve)] == ["init", "e1", "e6", "e12"]
    assert sm.run_names("vgg", 0) == ("vgg", "vgg@s1") and sm.run_names("cnn", 4) == ("cnn", "cnn@s5")
    assert sm.claim_eps(EPS_GRID) == 0.5 and sm.claim_eps((0.1, 0.3)) == 0.3
    assert sm.informative_eps({0.15: {"a": 0.0, "b": 0.0}, 0.3: {"a": 0.0, "b": 0.1}, 0.5: {"a": 0.2, "b": 0.0}}) \
        == [0.3, 0.5]
    assert sm.conv_mean({"a": 0.2, "b": 0.4, "fc": 1.0}, ["a", "b"]) == pytest.approx(0.3)
    assert sm.first_minus_later({"a": 0.9, "b": 0.2, "c": 0.4}, ["a", "b", "c"]) == pytest.approx(0.6)
    assert sm._alternate(np.array([1, 4, 6]), np.array([2])) == [("a", 1), ("b", 2), ("a", 4), ("a", 6)]


# ---------------------------------------------------------------- subspace match: verdict rules
CNN_LAYERS, CNN_CONV = ["relu1", "relu2", "relu3"], ["relu1", "relu2"]
VGG_LAYERS, VGG_CONV = ["relu1", "relu2", "relu3", "relu4", "relu5", "relu6"], ["relu1", "relu2", "relu3", "relu4"]
STAGES = [("init", 0), ("e1", 1), ("e2", 2)]


def _match_rows(model, layers, conv, trained, untrained, middle=None):
    """Similarity-table rows of one architecture: ``trained(eps)`` / ``untrained(eps)`` -> {layer: similarity};
    A vs B at e1 (and A at each stage vs A final) get ``middle(eps)``, default the untrained values."""
    middle = middle or untrained
    out = []
    for comp, epoch, label, fn in (("A vs B", 0, "init", untrained), ("A vs B", 1, "e1", middle),
                                   ("A vs B", 2, "e2", trained), ("A vs A final", 0, "init", middle),
                                   ("A vs A final", 1, "e1", middle)):
        for eps in EPS_GRID:
            sims = fn(eps)
            for i, layer in enumerate(layers):
                out.append({"model": model, "comparison": comp, "epoch": epoch, "checkpoint_a": label,
                            "layer": layer, "layer_index": i, "conv": layer in conv, "eps": eps,
                            "similarity": sims[layer], "std": 0.01 if layer in conv else 0.0, "draws": 4,
                            "n_a": 8, "n_b": 8, "dead_a": 1.0, "dead_b": 0.5 if layer == "relu1" else 0.0})
    return out


def _match_info(layers, conv):
    return {"runs": ("x", "x@s1"), "layers": layers, "conv": conv, "stages": STAGES, "final_epoch": 2,
            "final_label": "e2", "simple_layer": conv[-1], "simple_sizes": [2, 3, 3, 6], "max_match_size": 12,
            "layer_neurons": 64}


def _match_claims(cnn_trained, vgg_trained, cnn_untrained=None, vgg_untrained=None, middle=None):
    zero = lambda eps: {layer: 0.0 for layer in VGG_LAYERS}  # noqa: E731
    rows = (_match_rows("cnn", CNN_LAYERS, CNN_CONV, cnn_trained, cnn_untrained or zero, middle)
            + _match_rows("vgg", VGG_LAYERS, VGG_CONV, vgg_trained, vgg_untrained or zero, middle))
    info = {"cnn": _match_info(CNN_LAYERS, CNN_CONV), "vgg": _match_info(VGG_LAYERS, VGG_CONV)}
    return sm._claims(rows, info, ["cnn", "vgg"], EPS_GRID, 0.5, 10_000, 4, 10_000)


def _grow(base):
    """Similarities growing with eps: ``base[layer] * eps / 0.5``, all 0 at eps 0.15."""
    return lambda eps: {layer: (0.0 if eps == 0.15 else v * eps / 0.5) for layer, v in base.items()}


def test_low_similarity_claim_reads_every_informative_eps_of_both_architectures():
    cnn = _grow({"relu1": 0.6, "relu2": 0.2, "relu3": 0.5})                       # conv mean 0.4 at eps 0.5
    vgg = _grow({"relu1": 0.5, "relu2": 0.3, "relu3": 0.3, "relu4": 0.2, "relu5": 0.4, "relu6": 0.6})  # 0.325
    c1, c2, c3, c4 = _match_claims(cnn, vgg)
    assert c1.verdict == "reproduced" and c1.quote_kind == "verbatim" and "Abstract" in c1.source
    # eps 0.15 (every layer 0) is left out for both: 2 architectures x 4 eps
    assert [ch.name for ch in c1.rule.checks] == [f"{m}, eps {e:g}" for m in ("cnn", "vgg") for e in EPS_GRID[1:]]
    assert "left out as uninformative (cnn: eps 0.15; vgg: eps 0.15)" in c1.rule_text
    assert "(8/8 passed)" in c1.rule_text and "is ours" in c1.rule_text
    v = c1.values()
    assert v["cnn_trained_conv_mean_eps_0.5"] == pytest.approx(0.4)
    assert v["vgg_trained_conv_mean_eps_0.25"] == pytest.approx(0.325 * 0.5)
    # dead conv neurons (context): cnn 1 + 0.5 (relu1) + 1 (relu2) of 2 layers x 2 networks x 8 neurons
    assert v["cnn_trained_dead_conv_fraction"] == pytest.approx(2.5 / 32)
    assert v["vgg_trained_dead_conv_fraction"] == pytest.approx(4.5 / 64)
    assert v["vgg_trained_relu4_eps_0.5"] == pytest.approx(0.2) and "relu3_eps" not in "".join(
        k for k in v if k.startswith("cnn_trained_relu"))                       # per conv layer only
    assert [c.verdict for c in (c2, c3, c4)] == ["descriptive"] * 3
    assert all(c.quote_kind == "paraphrase" and c.rule is None for c in (c2, c3, c4))


def test_low_similarity_claim_partly_and_not_reproduced():
    cnn = _grow({"relu1": 0.6, "relu2": 0.2, "relu3": 0.5})
    # vgg's conv mean is 0.5 at eps 0.5 (not below: strict), 0.3 at eps 0.3
    vgg = _grow({"relu1": 0.8, "relu2": 0.4, "relu3": 0.4, "relu4": 0.4, "relu5": 0.0, "relu6": 0.0})
    c1 = _match_claims(cnn, vgg)[0]
    assert c1.verdict == "partly" and "(7/8 passed)" in c1.rule_text
    assert [ch.passed(c1.values()) for ch in c1.rule.checks][-1] is False
    high = lambda eps: {layer: 0.9 for layer in VGG_LAYERS}  # noqa: E731
    assert _match_claims(high, high)[0].verdict == "not reproduced"


def test_untrained_pair_is_context_not_a_condition():
    cnn = _grow({"relu1": 0.3, "relu2": 0.2, "relu3": 0.5})
    vgg = _grow({"relu1": 0.3, "relu2": 0.3, "relu3": 0.3, "relu4": 0.2, "relu5": 0.4, "relu6": 0.6})
    low = lambda eps: {layer: 0.0 for layer in VGG_LAYERS}  # noqa: E731
    high = lambda eps: {layer: 0.95 for layer in VGG_LAYERS}  # noqa: E731
    a, b = _match_claims(cnn, vgg, low, low)[0], _match_claims(cnn, vgg, high, high)[0]
    assert a.verdict == b.verdict == "reproduced"
    assert b.values()["vgg_untrained_conv_mean_eps_0.5"] == pytest.approx(0.95)
    assert not any("untrained" in c.key for ch in b.rule.checks for c in ch.conditions)
    assert "context, not as a condition" in b.rule_text


def test_all_zero_similarities_cannot_be_judged():
    zero = lambda eps: {layer: 0.0 for layer in VGG_LAYERS}  # noqa: E731
    c1 = _match_claims(zero, zero)[0]
    assert c1.rule is None and c1.verdict == "descriptive" and "cannot be judged" in c1.note


def test_descriptive_claims_hold_the_profile_stages_and_simple_matches():
    cnn = _grow({"relu1": 0.6, "relu2": 0.2, "relu3": 0.5})
    vgg = _grow({"relu1": 0.7, "relu2": 0.3, "relu3": 0.2, "relu4": 0.1, "relu5": 0.4, "relu6": 0.6})
    mid = lambda eps: {layer: 0.25 for layer in VGG_LAYERS}  # noqa: E731
    _, c2, c3, c4 = _match_claims(cnn, vgg, mid, mid, middle=mid)
    v2 = c2.values()
    # the per-layer profile only for the architecture with >= 4 conv layers
    assert sm.DEEP_CONV == 4 and not any(k.startswith("cnn") for k in v2)
    assert v2["vgg_first_minus_later_conv_eps_0.5"] == pytest.approx(0.7 - 0.2)
    assert v2["vgg_first_minus_later_conv_eps_0.15"] == 0.0
    assert v2["vgg_profile_relu6_eps_0.5"] == pytest.approx(0.6)
    v3 = c3.values()
    assert v3["cnn_ab_init"] == pytest.approx(0.25) and v3["cnn_ab_e2"] == pytest.approx(0.4)
    assert v3["vgg_a_final_e1"] == pytest.approx(0.25) and "vgg_a_final_e2" not in v3
    v4 = c4.values()
    assert v4["vgg_n_simple_matches"] == 4 and v4["vgg_median_simple_size"] == 3.0 and v4["cnn_max_simple_size"] == 6


# ---------------------------------------------------------------- subspace match: the tiny run
def test_tiny_match_tables_and_protocol(tiny):
    out, cfg, results = tiny
    res = results["subspace_match"]
    t = res.tables
    n_test = len(ReproContext(cfg, out, progress=False).data.test)
    assert {r["model"] for r in t["similarity"]} == set(cfg.match_models) == {"cnn", "vgg"}
    assert {r["comparison"] for r in t["similarity"]} == {"A vs B", "A vs A final"}
    assert {r["eps"] for r in t["similarity"]} == set(cfg.match_eps)
    for r in t["similarity"]:
        if r["conv"]:     # independent draws of match_rows (image, position) rows
            assert r["draws"] == cfg.match_repeats and r["n_rows"] == cfg.match_rows
            assert r["std"] >= 0 and r["sem"] == pytest.approx(r["std"] / np.sqrt(r["draws"]))
        else:             # fully connected: every test image once, exact
            assert r["draws"] == 1 and r["n_rows"] == n_test and r["std"] == 0.0
    conv = {m: sorted({r["layer"] for r in t["similarity"] if r["model"] == m and r["conv"]}) for m in ("cnn", "vgg")}
    assert conv == {"cnn": ["relu1", "relu2"], "vgg": ["relu1", "relu2", "relu3", "relu4"]}
    assert {(r["model"], r["checkpoint_a"]) for r in t["similarity"] if r["comparison"] == "A vs B"} == {
        (m, lab) for m in ("cnn", "vgg") for lab in ("init", "e1", "e2")}
    p = res.protocol
    assert p["centering"] == "none (raw post-ReLU activations)" and p["split"] == "test" and p["n_samples"] == n_test
    assert p["rows_per_draw"] == cfg.match_rows and p["draws"] == cfg.match_repeats and p["independent_draws"] is True
    assert p["fc_layers"] == "all test images" and p["eps_grid"] == list(cfg.match_eps)
    assert p["layers"]["vgg"] == ["relu1", "relu2", "relu3", "relu4", "relu5", "relu6"]
    assert set(p["epochs"]) == set(p["schedule"]) == {"cnn", "cnn@s1", "vgg", "vgg@s1"}
    assert "x0.1 at 50 % and 75 %" in p["schedule"]["vgg"] and "(ours)" in p["low_similarity_threshold"]
    assert [c.id for c in res.claims] == ["c1", "c2", "c3", "c4"]
    assert res.claims[0].rule is not None and all(c.rule is None for c in res.claims[1:])
    # the simple matches and their top images, per architecture
    assert {r["model"] for r in t["simple_matches"]} <= {"cnn", "vgg"} and t["simple_matches"]
    from deepspan.report._base import FigureContext

    z = FigureContext(out).arrays(res.to_dict(), "top_images")
    for m in {r["model"] for r in t["top_images"]}:
        assert z[f"{m}__images"].shape[1:] == (sm.TOP_K, 1, 8, 8) and z[f"{m}__indices"].shape[1] == sm.TOP_K
        assert len([r for r in t["top_images"] if r["model"] == m]) == z[f"{m}__images"].shape[0] * sm.TOP_K


def test_tiny_match_figures_are_readable(tiny):
    """Every text >= 9 pt at a page width of 7.5 in (scaled by width / 7.5 when wider); no overlapping tick labels."""
    import matplotlib.text as mtext

    from deepspan.report import fig_subspace_match
    from deepspan.report._base import FigureContext

    out, _cfg, results = tiny
    fc = FigureContext(out)
    save, seen = fc.save, []

    def checked_save(fig, stem, caption, dpi=110):
        fig.draw_without_rendering()
        renderer = fig.canvas.get_renderer()
        width = fig.get_tightbbox(renderer).width
        need = 9.0 * max(width, 7.5) / 7.5
        small = [(t.get_text(), t.get_fontsize()) for t in fig.findobj(mtext.Text)
                 if t.get_visible() and t.get_text().strip() and t.get_fontsize() < need - 1e-9]
        assert not small, f"{stem}: text below {need:.2f} pt: {small[:5]}"
        for ax in fig.axes:
            for labels in (ax.get_xticklabels(), ax.get_yticklabels()):
                boxes = [t.get_window_extent(renderer) for t in labels if t.get_visible() and t.get_text().strip()]
                assert not any(a.overlaps(b) for i, a in enumerate(boxes) for b in boxes[:i]), f"{stem}: tick overlap"
        seen.append(stem)
        return save(fig, stem, caption, dpi)

    fc.save = checked_save
    infos = fig_subspace_match.draw(results["subspace_match"].to_dict(), fc)
    assert seen[:3] == ["subspace_match_layers", "subspace_match_stages", "subspace_match_simple_sizes"]
    assert all((out / i.png).is_file() and i.caption for i in infos)


def test_tiny_match_values_recomputed_independently(tiny):
    out, cfg, results = tiny
    ctx = ReproContext(cfg, out, progress=False)
    res = results["subspace_match"]
    rows = res.tables["similarity"]
    test = ctx.data.test
    # 1. a fully connected layer: every test image once (trained pair, cnn relu3)
    A = deepspan.extract(ctx.runs.load("cnn", "e2"), test, "relu3").features["relu3"]
    B = deepspan.extract(ctx.runs.load("cnn@s1", "e2"), test, "relu3").features["relu3"]
    got = next(r for r in rows if r["model"] == "cnn" and r["comparison"] == "A vs B" and r["epoch"] == 2
               and r["layer"] == "relu3" and r["eps"] == 0.5)
    assert got["draws"] == 1 and got["similarity"] == pytest.approx(deepspan.max_match(A, B, 0.5).similarity, abs=1e-12)
    # 2. a conv layer: the draws by hand -- default_rng([seed, r]) over all images x positions, the same rows for
    #    both networks -- from a full channels extraction; the mean and std (ddof=1) over the draws
    fa = deepspan.extract(ctx.runs.load("vgg", "init"), test, "relu3", policy="channels").features["relu3"]
    fb = deepspan.extract(ctx.runs.load("vgg@s1", "init"), test, "relu3", policy="channels").features["relu3"]
    sims = []
    for r in range(cfg.match_repeats):
        idx = np.sort(np.random.default_rng([cfg.seed, r]).choice(len(fa), size=cfg.match_rows, replace=False))
        sims.append(deepspan.max_match(fa[idx], fb[idx], 0.3).similarity)
    got = next(r for r in rows if r["model"] == "vgg" and r["comparison"] == "A vs B" and r["epoch"] == 0
               and r["layer"] == "relu3" and r["eps"] == 0.3)
    assert got["similarity"] == pytest.approx(np.mean(sims), abs=1e-9)
    assert got["std"] == pytest.approx(np.std(sims, ddof=1), abs=1e-9)
    dead = [int((~np.any(fb[np.sort(np.random.default_rng([cfg.seed, r]).choice(len(fb), size=cfg.match_rows,
                                                                                 replace=False))] != 0, axis=0)).sum())
            for r in range(cfg.match_repeats)]
    assert got["dead_b"] == pytest.approx(np.mean(dead))
    # 3. the top-activating images of one neuron, from a plain forward hook (max over the feature map)
    top = res.tables["top_images"]
    first = top[0]
    model_name, layer = first["model"], first["layer"]
    assert layer == res.provenance["simple_match_layers"][model_name]
    run = model_name if first["side"] == "a" else f"{model_name}@s1"
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
    got_idx = [r["probe_index"] for r in top if r["model"] == model_name and r["match"] == first["match"]
               and r["side"] == first["side"] and r["neuron"] == first["neuron"]]
    assert got_idx == hand.tolist()


# ---------------------------------------------------------------- spectrum: known answers and rules
# (the MF rule's calibration, the collapse checkpoint and the claim verdicts: tests/test_spectrum_rules.py)
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
    row, res = sp_exp.reading(Phi, y, 5.0 * Y, None, 4)
    assert row["regime"] == "MF" and row["share_C"] == pytest.approx(1.0, abs=1e-5) and row["gap"] > 1e4
    assert res.pi_star[3] == pytest.approx(1.0, abs=1e-5) and res.pi[3] == pytest.approx(1.0, abs=1e-5)
    assert row["nc1"] < 1e-4 and row["nc4_mismatch"] == 0.0 and row["error"] == 0.0


def test_random_features_are_extended_feature_regime():
    rng = np.random.default_rng(6)
    y = np.repeat(np.arange(4), 50)
    row, _ = sp_exp.reading(rng.standard_normal((200, 40)), y, rng.standard_normal((200, 4)), None, 4)
    assert row["regime"] == "EF"
    # NC4 is Papyan et al.'s mismatch rate: 1 - deepspan.neural_collapse's agreement
    assert 0.0 < row["nc4_mismatch"] <= 1.0


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
    for name, mod, n_claims in (("subspace_match", fig_subspace_match, 4), ("spectrum", fig_spectrum, 8)):
        d = json.loads((out / "results" / f"{name}.json").read_text())
        assert d["verdict"] in ("reproduced", "partly", "not reproduced")
        ids = (["c1", "c2", "c3", "c4"] if name == "subspace_match" else
               ["s1", "s1_early", "s1_fc", "s2", "nc1", "nc2", "nc3", "nc4"])
        assert [c["id"] for c in d["claims"]] == ids
        assert len(d["claims"]) == n_claims and all(c["measured"] for c in d["claims"])
        for table, rows in d["tables"].items():
            assert (out / "results" / f"{name}__{table}.csv").is_file()
        infos = mod.draw(d, fc)
        assert infos and all((out / i.png).is_file() and (out / i.svg).is_file() and i.caption for i in infos)
    # (the subspace match's tables, protocol and figures: test_tiny_match_* above)
    sp = results["spectrum"].tables
    assert {r["model"] for r in sp["regimes"]} == {"mlp", "cnn", "resnet"}
    assert {r["split"] for r in sp["regimes"]} == {"train"} and {r["split"] for r in sp["regimes_test"]} == {"test"}
    assert {r["checkpoint"] for r in sp["pi_curves"] if r["model"] == "cnn"} >= {"init", "e1", "e2"}
    assert {r["checkpoint"] for r in sp["regimes_test"] if r["model"] == "cnn"} == {"init", "e1", "e2"}
    assert fc.problems.get("spectrum_rho") == [] and all(fc.problems[s] == [] for s in fc.problems
                                                         if s.startswith("spectrum"))
    proto = results["spectrum"].protocol
    assert proto["split"] == "train" and proto["n_samples"] == cfg.n_train_probe
    assert proto["layers"] == {"mlp": "relu2", "cnn": "relu3", "resnet": "pool"}
    assert "ours" in proto["mf_rule"]["source"] and proto["mf_rule"]["gap_min"] == sp_exp.MF_GAP


def test_tiny_values_recomputed_independently(tiny):
    out, cfg, results = tiny
    ctx = ReproContext(cfg, out, progress=False)
    # (the subspace match's values are recomputed in test_tiny_match_values_recomputed_independently)
    import torch

    # 3. the spectrum reads the training probe: features by a plain forward hook at every checkpoint, the
    #    training error from the model's own outputs, collapse judged at the first checkpoint with error 0
    sp = results["spectrum"].tables
    X, y = torch.as_tensor(ctx.data.train_probe.X), np.asarray(ctx.data.train_probe.y)
    for name in ("cnn", "resnet"):
        layer = ctx.runs.feature_layer(name)
        rows = [r for r in sp["regimes"] if r["model"] == name]
        assert [r["checkpoint"] for r in rows] == [c["label"] for c in ctx.runs.checkpoints(name)]
        errors, feats = [], {}
        for r in rows:
            model = ctx.runs.load(name, r["checkpoint"])
            grabbed = []
            handle = model.get_submodule(layer).register_forward_hook(lambda _m, _i, o: grabbed.append(o))
            with torch.no_grad():
                logits = model(X).double().numpy()
            handle.remove()
            feats[r["checkpoint"]] = (grabbed[0].reshape(len(X), -1).double().numpy(), logits)
            errors.append(float(np.mean(logits.argmax(1) != y)))
        np.testing.assert_allclose([r["train_error"] for r in rows], errors, atol=1e-12)
        zero = [r["checkpoint"] for r, e in zip(rows, errors) if e == 0]
        judged = next(r for r in rows if r["nc_checkpoint"])
        assert judged["checkpoint"] == (zero[0] if zero else rows[-1]["checkpoint"])
        Phi, logits = feats[judged["checkpoint"]]
        spec = feature_spectrum(Phi, y)
        got_rho = [r["rho"] for r in sorted((r for r in sp["rho"] if r["model"] == name
                                             and r["checkpoint"] == judged["checkpoint"]), key=lambda r: r["k"])]
        np.testing.assert_allclose(got_rho, spec.rho[: len(got_rho)], rtol=1e-6)
        assert judged["gap"] == pytest.approx(spec.rho[9] / spec.rho[10], rel=1e-6)
        assert judged["share_C"] == pytest.approx(spec.pi_star[9] / spec.pi_star[-1], rel=1e-6)
        nc = neural_collapse(Phi, y, predictions=logits)
        assert judged["nc1"] == pytest.approx(nc.nc1, rel=1e-6)
        assert judged["nc4_mismatch"] == pytest.approx(1.0 - nc.nc4, abs=1e-12)
        values = {m.key: m.value for c in results["spectrum"].claims for m in c.measured}
        assert values[f"{name}_nc1"] == judged["nc1"] and values[f"{name}_nc_train_error"] == judged["train_error"]
