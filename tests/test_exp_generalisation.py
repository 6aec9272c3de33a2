"""Experiment 5 of ``deepspan reproduce`` (model-data P-vector angle vs generalisation).

Unit tests of the rank statistics, the bootstrap CI and the verdict rule on inputs with known
answers, the seeded label noise, and one tiny-scale run through ``reproduce`` checked against an
independent recomputation from the cached probe features.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.stats import kendalltau, spearmanr

import deepspan
from deepspan.experiments import generalisation as gen
from deepspan.experiments import statistics as stats
from deepspan.experiments.config import config_for
from deepspan.experiments.context import ReproContext
from deepspan.results import Claim


# ----------------------------------------------------------------------------- statistics

def _hand_ranks(a: np.ndarray) -> np.ndarray:
    """Ranks 1..n with ties averaged, by sorting and averaging each block of equal values."""
    order = np.argsort(a, kind="stable")
    ranks = np.empty(len(a))
    i = 0
    while i < len(a):
        j = i
        while j + 1 < len(a) and a[order[j + 1]] == a[order[i]]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2 + 1
        i = j + 1
    return ranks


def test_spearman_is_pearson_of_hand_ranks_with_ties():
    rng = np.random.default_rng(3)
    x = rng.integers(0, 6, 40).astype(float)   # many ties
    y = x + rng.integers(-3, 4, 40)
    expected = np.corrcoef(_hand_ranks(x), _hand_ranks(y))[0, 1]
    assert stats.spearman(x, y) == pytest.approx(expected, abs=1e-12)
    assert stats.spearman(x, y) == pytest.approx(spearmanr(x, y).statistic, abs=1e-12)
    # the vectorised row-wise route agrees too
    r = stats.rank_pearson(stats._ranks(np.vstack([x, -x])), stats._ranks(np.vstack([y, y])))
    assert r == pytest.approx([expected, -expected], abs=1e-12)


def test_bootstrap_rows_equal_scipy_on_each_resample():
    rng = np.random.default_rng(5)
    x, y = rng.standard_normal(25), rng.standard_normal(25)
    boot = stats.bootstrap_spearman(x, y, 30, seed=11)
    idx = np.random.default_rng(11).integers(0, 25, size=(30, 25))
    for b, i in zip(boot, idx):
        assert b == pytest.approx(spearmanr(x[i], y[i]).statistic, abs=1e-12)


@pytest.mark.parametrize("sign", [1, -1])
def test_bootstrap_ci_collapses_for_a_monotone_relation(sign):
    x = np.linspace(0, 3, 30)
    y = sign * np.exp(x)      # strictly monotone, nonlinear
    st, boot = gen.correlation_stats(x, y, 500, seed=0)
    assert st["spearman"] == pytest.approx(sign)
    assert st["kendall"] == pytest.approx(sign)
    finite = boot[np.isfinite(boot)]
    assert finite.size >= 499
    assert np.allclose(finite, sign)
    assert st["ci_low"] == pytest.approx(sign) and st["ci_high"] == pytest.approx(sign)
    assert st["verdict"] == ("reproduced" if sign == gen.PAPER_SIGN else "not reproduced")


def test_bootstrap_ci_contains_zero_for_independent_data():
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal(60), rng.standard_normal(60)
    lo, hi = stats.percentile_ci(stats.bootstrap_spearman(x, y, 1000, seed=0))
    assert lo < 0 < hi
    # and nearly always across independent data sets (nominal coverage 95%)
    covered = 0
    for s in range(40):
        r = np.random.default_rng(100 + s)
        x, y = r.standard_normal(60), r.standard_normal(60)
        lo, hi = stats.percentile_ci(stats.bootstrap_spearman(x, y, 400, seed=s))
        covered += lo < 0 < hi
    assert covered >= 33


def test_bootstrap_is_seeded_and_percentiles_ignore_nan():
    rng = np.random.default_rng(1)
    x, y = rng.standard_normal(20), rng.standard_normal(20)
    a = stats.bootstrap_spearman(x, y, 50, seed=4)
    assert np.array_equal(a, stats.bootstrap_spearman(x, y, 50, seed=4))
    assert not np.array_equal(a, stats.bootstrap_spearman(x, y, 50, seed=5))
    assert stats.percentile_ci(np.array([np.nan, 0.1, 0.2, 0.3]), level=1.0) == pytest.approx((0.1, 0.3))
    assert all(np.isnan(stats.percentile_ci(np.array([np.nan]))))
    assert stats.CI_LEVEL == 0.95
    # a constant column gives NaN, not a spurious number
    assert np.isnan(stats.spearman(np.ones(5), np.arange(5)))
    assert np.isnan(stats.rank_pearson(np.ones((1, 5)), np.arange(5.0)[None])[0])


def test_kendall_matches_scipy():
    x = np.array([3.0, 1.0, 2.0, 5.0, 4.0, 4.0])
    y = np.array([1.0, 2.0, 2.0, 0.0, 1.0, 3.0])
    tau, p = stats.kendall(x, y)
    ref = kendalltau(x, y)
    assert tau == pytest.approx(ref.statistic) and p == pytest.approx(ref.pvalue)


@pytest.mark.parametrize("rho, lo, hi, expected", [
    (-0.6, -0.8, -0.2, "reproduced"),        # CI entirely below 0 (the paper's side)
    (-0.3, -0.7, 0.1, "partly"),             # right sign, CI includes 0
    (-0.3, -0.7, 0.0, "partly"),             # CI touching 0 does not exclude it
    (0.0, -0.5, 0.5, "not reproduced"),      # no sign
    (0.4, 0.1, 0.7, "not reproduced"),       # opposite sign, CI excludes 0
    (0.2, -0.3, 0.6, "not reproduced"),      # opposite sign, CI includes 0
    (float("nan"), -0.5, -0.1, "not reproduced"),
    (-0.5, float("nan"), -0.1, "not reproduced"),
])
def test_verdict_rule(rho, lo, hi, expected):
    assert gen.PAPER_SIGN == -1
    assert gen.verdict_for(rho, lo, hi) == expected
    # the claims' Rule (what the saved verdict is computed by) gives the same verdict from the same numbers
    assert _rule_verdict(rho, lo, hi) == expected


def _rule_verdict(rho: float, lo: float, hi: float) -> str:
    """The verdict of the experiment's claim rule, on a claim built from planted numbers."""
    s = {"n": 30, "spearman": rho, "ci_low": lo, "ci_high": hi, "n_boot_valid": 1000, "kendall": 0.0,
         "kendall_p": 1.0}
    rule = gen._rule(s, 1000, "planted members", "all")
    claim = Claim("c1", "q", "s", rule, gen._measured("all", "planted", s))
    assert claim.values()["all_rho"] == (None if not np.isfinite(rho) else rho)
    return claim.verdict


def test_verdict_rule_follows_the_sign():
    assert gen.verdict_for(0.6, 0.2, 0.8, sign=1) == "reproduced"
    assert gen.verdict_for(0.6, -0.2, 0.8, sign=1) == "partly"


def test_population_names_and_specs():
    assert gen.run_name(64, 0.1, 0.5) == "pop-w64-lr0.1-n0.5"
    assert gen.run_name(512, 0.01, 0.0) == "pop-w512-lr0.01-n0"
    spec = gen.member_spec(64, 0.02)
    assert spec.kind == "mlp" and spec.paradigm == "supervised" and spec.widths == (64, 32) and spec.lr == 0.02
    assert [gen.is_epoch_label(s) for s in ("init", "e0-i5", "e1", "e12", "e0")] == [False, False, True, True, False]


# ----------------------------------------------------------------------------- label noise

def test_label_noise_fraction_and_seed(tmp_path):
    from deepspan.data import load

    cfg = config_for("tiny")
    ctx = ReproContext(cfg, tmp_path / "noise", progress=False)
    data = ctx.data
    n, C = 1500, data.n_classes
    clean = data.noisy_train(n, 0.0, 0)
    assert np.array_equal(clean.y, load(cfg.dataset, split="train", data_dir=cfg.data_dir).y[:n])
    for noise in (0.2, 0.5, 1.0):
        d = data.noisy_train(n, noise, 0)
        changed = np.mean(d.y != clean.y)
        expected = noise * (1 - 1 / C)           # a replaced label equals the true one with prob. 1/C
        sd = np.sqrt(expected * (1 - expected) / n)
        assert abs(changed - expected) < 5 * sd + 1e-9, (noise, changed, expected)
        assert np.array_equal(d.X, clean.X) and np.array_equal(d.ids, clean.ids)
        assert np.array_equal(d.y, data.noisy_train(n, noise, 0).y)          # seeded
        assert not np.array_equal(d.y, data.noisy_train(n, noise, 1).y)      # another seed, other labels
        assert d.y.min() >= 0 and d.y.max() < C


# ----------------------------------------------------------------------------- tiny end to end

@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from deepspan.experiments.reproduce import reproduce

    out = tmp_path_factory.mktemp("gen_tiny")
    cfg = config_for("tiny")
    res = reproduce(cfg, out, only=["generalisation"], report=False, progress=False, log=lambda s: None)
    return cfg, out, res["generalisation"]


def test_tiny_tables_and_claims(tiny):
    cfg, out, res = tiny
    members = res.tables["members"]
    n_runs = len(cfg.population_widths) * len(cfg.population_lrs) * len(cfg.population_noise)
    assert len(members) == n_runs * cfg.population_epochs
    assert {r["epoch"] for r in members} == set(range(1, cfg.population_epochs + 1))
    assert {r["noise"] for r in members} == set(cfg.population_noise)
    for r in members:
        assert 0.0 <= r["angle"] <= 90.0 and 0.0 <= r["angle_centered"] <= 90.0
        assert 0.0 <= r["test_accuracy"] <= 1.0 and 0.0 <= r["train_accuracy"] <= 1.0
        if r["noise"] == 0:
            assert r["noise_realised"] == 0.0
    # statistics recomputed from the member table
    st = {(s["population"], s["centered"]): s for s in res.tables["statistics"]}
    assert set(st) == {(p, c) for p in ("all", "noise=0", "final epoch") for c in (False, True)}
    last = [r for r in members if r["epoch"] == cfg.population_epochs]
    assert st[("final epoch", False)]["n"] == n_runs
    assert st[("final epoch", False)]["spearman"] == pytest.approx(
        spearmanr([r["angle"] for r in last], [r["test_accuracy"] for r in last]).statistic)
    acc = [r["test_accuracy"] for r in members]
    s = st[("all", False)]
    assert s["n"] == len(members) and s["n_boot"] == cfg.bootstrap
    assert s["spearman"] == pytest.approx(spearmanr([r["angle"] for r in members], acc).statistic)
    assert s["kendall"] == pytest.approx(kendalltau([r["angle"] for r in members], acc).statistic)
    assert s["ci_low"] <= s["ci_high"]
    clean = [r for r in members if r["noise"] == 0]
    assert st[("noise=0", False)]["n"] == len(clean)
    assert st[("noise=0", True)]["spearman"] == pytest.approx(
        spearmanr([r["angle_centered"] for r in clean], [r["test_accuracy"] for r in clean]).statistic)
    # verdicts follow the rule from the stated numbers
    claims = {c.id: c for c in res.claims}
    assert set(claims) == {"c1", "c2"}
    assert claims["c1"].verdict == gen.verdict_for(s["spearman"], s["ci_low"], s["ci_high"])
    z = st[("noise=0", False)]
    assert claims["c2"].verdict == gen.verdict_for(z["spearman"], z["ci_low"], z["ci_high"])
    m = res.measured()
    assert m["all_rho"] == pytest.approx(s["spearman"]) and m["all_n"] == len(members)
    assert m["noise0_ci_low"] == pytest.approx(z["ci_low"])
    # the rule text states the numbers it judged (formatted to 4 significant digits)
    assert f"{s['spearman']:.4g}" in claims["c1"].rule_text and f"{s['ci_high']:.4g}" in claims["c1"].rule_text
    assert f"{z['spearman']:.4g}" in claims["c2"].rule_text


def test_tiny_saved_files_and_bootstrap(tiny):
    cfg, out, res = tiny
    d = json.loads((out / "results" / "generalisation.json").read_text())
    assert d["name"] == "generalisation" and d["arrays"]["bootstrap"] == gen.BOOTSTRAP_FILE
    for table in ("members", "statistics"):
        assert (out / "results" / f"generalisation__{table}.csv").is_file()
    with np.load(out / "results" / gen.BOOTSTRAP_FILE) as z:
        assert set(z.files) == {f"{k}_{c}" for k in ("all", "noise0", "final") for c in ("uncentered", "centered")}
        boot = z["all_uncentered"]
    assert boot.shape == (cfg.bootstrap,)
    s = next(r for r in d["tables"]["statistics"] if r["population"] == "all" and not r["centered"])
    assert s["ci_low"] == pytest.approx(np.percentile(boot[np.isfinite(boot)], 2.5))
    assert s["ci_high"] == pytest.approx(np.percentile(boot[np.isfinite(boot)], 97.5))


def test_tiny_angle_recomputed_independently(tiny):
    cfg, out, res = tiny
    ctx = ReproContext(cfg, out, progress=False)
    row = res.tables["members"][-1]
    ctx.runs.register(row["run"], gen.member_spec(row["width"], row["lr"]))
    F = ctx.stats.features(row["run"], row["checkpoint"])
    assert F.shape == (len(ctx.data.probe), max(1, row["width"] // 2))
    for center, col in ((False, "angle"), (True, "angle_centered")):
        p_model = deepspan.pvector(F.astype(np.float64), center=center, method="exact")
        p_data = deepspan.data_pvector(ctx.data.probe.X.astype(np.float64), center=center, method="exact")
        assert deepspan.angle(p_model, p_data) == pytest.approx(row[col], abs=1e-4)
    # sigma_2 / sigma_1 of the feature matrix, by a plain SVD
    for center, col in ((False, "gap"), (True, "gap_centered")):
        A = F.astype(np.float64) - (F.astype(np.float64).mean(0) if center else 0.0)
        sv = np.linalg.svd(A, compute_uv=False)
        assert row[col] == pytest.approx(sv[1] / sv[0], rel=1e-4)
    # accuracy is the manifest's (clean-label test split)
    rec = next(r for r in ctx.runs.checkpoints(row["run"]) if r["label"] == row["checkpoint"])
    assert row["test_accuracy"] == rec["test_accuracy"]
    assert ctx.runs.manifest(row["run"])["config"]["lr"] == row["lr"]


def test_tiny_figures(tiny):
    from deepspan.report._base import FigureContext
    from deepspan.report.fig_generalisation import draw

    cfg, out, res = tiny
    d = json.loads((out / "results" / "generalisation.json").read_text())
    figs = draw(d, FigureContext(out))
    assert [f.stem for f in figs] == ["generalisation_scatter", "generalisation_bootstrap"]
    for f in figs:
        assert (out / f.png).stat().st_size > 1000 and (out / f.svg).is_file()
        assert "Liu et al." in f.caption
    assert "rho =" in figs[0].caption


def test_tiny_rerun_is_skipped(tiny):
    from deepspan.experiments.reproduce import reproduce

    cfg, out, res = tiny
    said: list[str] = []
    again = reproduce(cfg, out, only=["generalisation"], report=False, progress=False, log=said.append)
    assert any("skipped" in s for s in said)
    assert again["generalisation"].measured() == pytest.approx(res.measured(), nan_ok=True)


def test_tiny_member_is_reproducible_in_a_fresh_folder(tiny, tmp_path):
    """Same seed, same numbers: a population run retrained elsewhere (in this other process state)."""
    cfg, out, res = tiny
    row = res.tables["members"][0]
    ctx = ReproContext(cfg, tmp_path / "again", progress=False)
    man = gen.train_member(ctx, row["width"], row["lr"], row["noise"])
    rec = next(r for r in man["checkpoints"] if r["label"] == row["checkpoint"])
    assert rec["test_accuracy"] == row["test_accuracy"] and rec["loss"] == pytest.approx(row["loss"], rel=1e-6)
    assert ctx.runs.spec(row["run"]) == gen.member_spec(row["width"], row["lr"])
    u = ctx.stats.pvector(row["run"], row["checkpoint"], False)
    assert deepspan.angle(u, ctx.stats.data_pvector(False)) == pytest.approx(row["angle"], abs=1e-6)
