"""Experiment 5 of ``deepspan reproduce`` (model-data P-vector angle vs generalisation).

Unit tests of the rank statistics (Spearman, the partial Spearman correlation by hand and its
invariances, the seeded bootstrap and its CI), the verdict rule on planted inputs, the population
design and the seeded label noise; then one tiny-scale run through ``reproduce`` whose tables are
recomputed independently (statistics from the member table, angles from the probe features,
accuracies from the saved model).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

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
    r = stats.rank_pearson(stats._ranks(np.vstack([x, -x])), stats._ranks(np.vstack([y, y])))
    assert r == pytest.approx([expected, -expected], abs=1e-12)


def test_partial_spearman_hand_cases():
    # ranks x = 1..4, y = (2, 1, 4, 3), z = (1.5, 1.5, 3.5, 3.5). Centered: x = (-1.5, -0.5, 0.5, 1.5),
    # y = (-0.5, -1.5, 1.5, 0.5), z = (-1, -1, 1, 1); <x, z> = <y, z> = <z, z> = 4, so both slopes are 1 and
    # the residuals are (-0.5, 0.5, -0.5, 0.5) and (0.5, -0.5, 0.5, -0.5): partial = -1, while rho = 3/5.
    x, y, z = [1, 2, 3, 4], [2, 1, 4, 3], [1, 1, 2, 2]
    assert stats.spearman(x, y) == pytest.approx(0.6, abs=1e-12)
    assert stats.partial_spearman(x, y, z) == pytest.approx(-1.0, abs=1e-12)
    # Spearman by sum of squared rank differences, n = 5: r_xy = 1 - 6*4/120 = 0.8, r_xz = 0.8,
    # r_yz = 1 - 6*14/120 = 0.3  ->  partial = (0.8 - 0.24) / sqrt(0.36 * 0.91)
    x, y, z = [1, 2, 3, 4, 5], [1, 3, 2, 5, 4], [2, 1, 4, 3, 5]
    assert stats.spearman(x, y) == pytest.approx(0.8) and stats.spearman(y, z) == pytest.approx(0.3)
    assert stats.partial_spearman(x, y, z) == pytest.approx(0.56 / np.sqrt(0.36 * 0.91), abs=1e-12)
    # the residualisation itself, by hand: slope 1 on the centered ranks of the first case
    res = stats.rank_residuals(np.array([1.0, 2, 3, 4]), np.array([1.5, 1.5, 3.5, 3.5]))
    assert res == pytest.approx([-0.5, 0.5, -0.5, 0.5], abs=1e-12)


def test_partial_spearman_invariances_and_formula():
    rng = np.random.default_rng(7)
    n = 30
    z = rng.choice([32.0, 128.0, 512.0], n)               # a width-like control with ties
    x = rng.standard_normal(n) + np.log(z)
    y = -0.5 * x + rng.standard_normal(n) + 0.3 * np.log(z)
    p = stats.partial_spearman(x, y, z)
    rxy, rxz, ryz = (spearmanr(a, b).statistic for a, b in ((x, y), (x, z), (y, z)))
    assert p == pytest.approx((rxy - rxz * ryz) / np.sqrt((1 - rxz**2) * (1 - ryz**2)), abs=1e-12)
    # strictly increasing transforms of any argument (width vs log width) change nothing
    assert stats.partial_spearman(np.exp(x), y**3, np.log(z)) == pytest.approx(p, abs=1e-12)
    # a common permutation of the items changes nothing; the measure is symmetric in x and y
    perm = rng.permutation(n)
    assert stats.partial_spearman(x[perm], y[perm], z[perm]) == pytest.approx(p, abs=1e-12)
    assert stats.partial_spearman(y, x, z) == pytest.approx(p, abs=1e-12)
    # reversing x flips the sign; a decreasing transform of z changes nothing
    assert stats.partial_spearman(-x, y, z) == pytest.approx(-p, abs=1e-12)
    assert stats.partial_spearman(x, y, -z) == pytest.approx(p, abs=1e-12)
    # a constant control: the plain Spearman rho
    assert stats.partial_spearman(x, y, np.ones(n)) == pytest.approx(stats.spearman(x, y), abs=1e-12)


def test_partial_spearman_undefined_cases():
    x = np.arange(6.0)
    assert np.isnan(stats.partial_spearman(x, x[::-1], x ** 2))     # x is a monotone function of z
    assert np.isnan(stats.partial_spearman(np.ones(6), x, x[::-1] % 3))
    assert np.isnan(stats.partial_spearman([1.0, 2.0], [2.0, 1.0], [0.0, 1.0]))  # fewer than 3 points
    assert np.isnan(stats.partial_spearman([1.0, np.nan, 3.0], [1.0, 2.0, 3.0], [1.0, 1.0, 2.0]))
    assert np.isnan(stats.partial_spearman([1.0, 2.0, 3.0], [1.0, 2.0], [1.0, 1.0, 2.0]))


def test_bootstrap_rows_equal_scipy_on_each_resample():
    rng = np.random.default_rng(5)
    x, y = rng.standard_normal(25), rng.standard_normal(25)
    boot = stats.bootstrap_spearman(x, y, 30, seed=11)
    idx = np.random.default_rng(11).integers(0, 25, size=(30, 25))
    assert np.array_equal(idx, stats.bootstrap_indices(25, 30, 11))
    for b, i in zip(boot, idx):
        assert b == pytest.approx(spearmanr(x[i], y[i]).statistic, abs=1e-12)


def test_bootstrap_partial_rows_equal_the_scalar_on_each_resample():
    rng = np.random.default_rng(8)
    n = 20
    x, y, z = rng.standard_normal(n), rng.standard_normal(n), rng.choice([1.0, 2.0, 3.0], n)
    boot = stats.bootstrap_partial_spearman(x, y, z, 40, seed=3)
    for b, i in zip(boot, stats.bootstrap_indices(n, 40, 3)):
        want = stats.partial_spearman(x[i], y[i], z[i])
        assert (np.isnan(b) and np.isnan(want)) or b == pytest.approx(want, abs=1e-12)
    # with a constant control the partial bootstrap is the Spearman bootstrap (same resamples)
    assert np.allclose(stats.bootstrap_partial_spearman(x, y, np.zeros(n), 40, 3),
                       stats.bootstrap_spearman(x, y, 40, 3), equal_nan=True, atol=1e-12)


def test_bootstrap_ci_is_reproducible_with_a_seed_and_recomputed_independently():
    rng = np.random.default_rng(12)
    x = rng.standard_normal(18)
    y = -x + rng.standard_normal(18)
    z = rng.choice([32.0, 128.0], 18)
    st, boot = gen.correlation_stats(x, y, 300, seed=9)
    st2, boot2 = gen.correlation_stats(x, y, 300, seed=9)
    assert np.array_equal(boot, boot2) and (st["ci_low"], st["ci_high"]) == (st2["ci_low"], st2["ci_high"])
    assert not np.array_equal(boot, gen.correlation_stats(x, y, 300, seed=10)[1])
    # independent route: scipy on every resample of default_rng(seed), then numpy percentiles
    idx = np.random.default_rng(9).integers(0, 18, size=(300, 18))
    ref = np.array([spearmanr(x[i], y[i]).statistic for i in idx])
    assert st["ci_low"] == pytest.approx(np.percentile(ref, 2.5), abs=1e-12)
    assert st["ci_high"] == pytest.approx(np.percentile(ref, 97.5), abs=1e-12)
    assert st["spearman"] == pytest.approx(spearmanr(x, y).statistic) and st["spearman"] < 0
    p, pboot = gen.partial_stats(x, y, z, 300, seed=9)
    assert np.array_equal(pboot, gen.partial_stats(x, y, z, 300, seed=9)[1])
    ref_p = np.array([stats.partial_spearman(x[i], y[i], z[i]) for i in idx])
    ref_p = ref_p[np.isfinite(ref_p)]
    assert p["ci_low"] == pytest.approx(np.percentile(ref_p, 2.5), abs=1e-12)
    assert p["ci_high"] == pytest.approx(np.percentile(ref_p, 97.5), abs=1e-12)
    assert p["statistic"] == "partial spearman (width)" and p["n_boot_valid"] == ref_p.size


@pytest.mark.parametrize("sign", [1, -1])
def test_bootstrap_ci_collapses_for_a_monotone_relation(sign):
    x = np.linspace(0, 3, 30)
    y = sign * np.exp(x)      # strictly monotone, nonlinear
    st, boot = gen.correlation_stats(x, y, 500, seed=0)
    assert st["spearman"] == pytest.approx(sign) and st["kendall"] == pytest.approx(sign)
    finite = boot[np.isfinite(boot)]
    assert finite.size >= 499 and np.allclose(finite, sign)
    assert st["ci_low"] == pytest.approx(sign) and st["ci_high"] == pytest.approx(sign)
    assert st["verdict"] == ("reproduced" if sign == gen.PAPER_SIGN else "not reproduced")


def test_bootstrap_ci_contains_zero_for_independent_data():
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal(60), rng.standard_normal(60)
    lo, hi = stats.percentile_ci(stats.bootstrap_spearman(x, y, 1000, seed=0))
    assert lo < 0 < hi
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
    assert np.isnan(stats.spearman(np.ones(5), np.arange(5)))
    assert np.isnan(stats.rank_pearson(np.ones((1, 5)), np.arange(5.0)[None])[0])


def test_kendall_matches_scipy():
    x = np.array([3.0, 1.0, 2.0, 5.0, 4.0, 4.0])
    y = np.array([1.0, 2.0, 2.0, 0.0, 1.0, 3.0])
    tau, p = stats.kendall(x, y)
    ref = kendalltau(x, y)
    assert tau == pytest.approx(ref.statistic) and p == pytest.approx(ref.pvalue)


# ----------------------------------------------------------------------------- the rule

@pytest.mark.parametrize("rho, lo, hi, expected", [
    (-0.6, -0.8, -0.2, "reproduced"),        # point estimate and CI below 0 (our reading of the paper's side)
    (-0.3, -0.7, 0.1, "not reproduced"),     # right sign, CI includes 0: nothing detected
    (-0.3, -0.7, 0.0, "not reproduced"),     # CI touching 0 does not exclude it
    (0.0, -0.5, 0.5, "not reproduced"),
    (0.4, 0.1, 0.7, "not reproduced"),       # opposite sign, CI excludes 0
    (float("nan"), -0.5, -0.1, "not reproduced"),
    (-0.5, float("nan"), -0.1, "not reproduced"),
])
def test_verdict_rule(rho, lo, hi, expected):
    assert gen.PAPER_SIGN == -1
    assert gen.verdict_for(rho, lo, hi) == expected
    # the claim's Rule (what the saved verdict is computed by) gives the same verdict from the same numbers
    assert _rule_verdict(rho, lo, hi) == expected


def _rule_verdict(rho: float, lo: float, hi: float) -> str:
    s = {"n": 30, "spearman": rho, "ci_low": lo, "ci_high": hi, "n_boot_valid": 1000, "kendall": 0.0,
         "kendall_p": 1.0}
    claim = Claim("c1", "q", "s", gen._rule(s, 1000, "planted", "all"), gen._measured("all", "planted", s))
    assert claim.values()["all_rho"] == (None if not np.isfinite(rho) else rho)
    return claim.verdict


def test_verdict_rule_follows_the_sign():
    assert gen.verdict_for(0.6, 0.2, 0.8, sign=1) == "reproduced"
    assert gen.verdict_for(0.6, -0.2, 0.8, sign=1) == "not reproduced"


def test_rule_on_planted_populations():
    """A planted population where accuracy falls with the angle (and not through width) is reproduced under
    both statistics; one where width alone drives both is reproduced by rho but not by the partial."""
    rng = np.random.default_rng(0)
    n = 40
    width = rng.choice([32, 128, 512], n).astype(float)
    angle = rng.uniform(5, 30, n)
    acc = 0.99 - 0.004 * angle + 0.002 * rng.standard_normal(n)
    rows = [{"angle": a, "angle_centered": a, "test_accuracy": t, "width": w, "noise": 0.0}
            for a, t, w in zip(angle, acc, width)]
    table, boots = gen.statistics_table(rows, 500, seed=0)
    for s in table:
        assert s["verdict"] == "reproduced", s
    assert set(boots) == {f"{k}_{c}" for k in ("all", "noise0", "partial") for c in ("uncentered", "centered")}
    # width drives both: wider -> smaller angle and higher accuracy; within a width nothing is related
    angle = 40.0 - 8.0 * np.log2(width / 32) + rng.standard_normal(n)
    acc = 0.90 + 0.02 * np.log2(width / 32) + 0.002 * rng.standard_normal(n)
    rows = [{"angle": a, "angle_centered": a, "test_accuracy": t, "width": w, "noise": 0.0}
            for a, t, w in zip(angle, acc, width)]
    table, _ = gen.statistics_table(rows, 500, seed=0)
    by = {(s["population"], s["centered"]): s for s in table}
    assert by[("all", False)]["verdict"] == "reproduced" and by[("all", False)]["spearman"] < -0.8
    assert by[(gen.PARTIAL_POPULATION, False)]["verdict"] == "not reproduced"
    assert abs(by[(gen.PARTIAL_POPULATION, False)]["spearman"]) < 0.4


# ----------------------------------------------------------------------------- population design

@pytest.mark.parametrize("scale, n_members", [("tiny", 8), ("quick", 14), ("full", 24)])
def test_population_design(scale, n_members):
    cfg = config_for(scale)
    base = gen.base_settings(cfg)
    members = gen.population(cfg)
    assert len(members) == n_members
    assert len({m.name for m in members}) == len(members)
    assert members[0].settings() == base and "base" in members[0].roles
    assert base["lr"] == max(cfg.population_lrs) and base["noise"] == 0.0
    assert base["weight_decay"] == 5e-4 and base["n_train"] in cfg.population_sizes
    values = {"width": cfg.population_widths, "depth": cfg.population_depths, "lr": cfg.population_lrs,
              "weight_decay": cfg.population_wds, "noise": cfg.population_noise, "n_train": cfg.population_sizes}
    for m in members:
        differs = [a for a in gen.AXES if m.settings()[a] != base[a]]
        for role in m.roles:
            if role in gen.AXES:          # one at a time: exactly that setting differs from the base
                assert differs == [role]
            elif role == "width x noise":
                assert set(differs) <= {"width", "noise"}
        for a in gen.AXES:
            assert m.settings()[a] in values[a]
    # every value of every axis is reached one at a time; the width x noise grid is complete
    for a in gen.AXES:
        assert {m.settings()[a] for m in members if a in m.roles or "base" in m.roles} == set(values[a])
    grid = {(m.width, m.noise) for m in members if "width x noise" in m.roles}
    assert grid == {(w, n) for w in cfg.population_widths for n in cfg.population_noise}


def test_member_spec_and_name():
    m = gen.Member(64, 3, 0.02, 0.0, 0.5, 2000)
    assert m.name == "pop-w64-d3-lr0.02-wd0-n0.5-N2000"
    spec = m.spec(6)
    assert spec.kind == "mlp" and spec.paradigm == "supervised" and spec.widths == (64, 64, 64)
    assert spec.optimizer == "sgd" and spec.lr == 0.02 and spec.weight_decay == 0.0
    assert spec.schedule == "cosine" and spec.epochs == 6
    assert spec.describe() == "SGD lr 0.02, momentum 0.9, cosine schedule"


def test_one_torch_thread_restores():
    import torch

    before = torch.get_num_threads()
    with gen.one_torch_thread():
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before


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


def test_tiny_members_table(tiny):
    cfg, out, res = tiny
    members = res.tables["members"]
    design = gen.population(cfg)
    assert [r["run"] for r in members] == [m.name for m in design]
    for r, m in zip(members, design):
        assert {a: r[a] for a in gen.AXES} == m.settings() and r["roles"] == "; ".join(m.roles)
        assert r["epoch"] == cfg.population_epochs and r["checkpoint"] == f"e{cfg.population_epochs}"
        assert r["n_train"] == m.n_train
        assert 0.0 <= r["angle"] <= 90.0 and 0.0 <= r["angle_centered"] <= 90.0
        assert 0.0 <= r["test_accuracy"] <= 1.0 and 0.0 <= r["train_accuracy"] <= 1.0
        assert r["train_minus_test"] == pytest.approx(r["train_accuracy"] - r["test_accuracy"])
        assert 0.0 < r["probe_seen"] <= 1.0
        if r["noise"] == 0:
            assert r["noise_realised"] == 0.0
        else:
            assert r["noise_realised"] > 0.0


def test_tiny_statistics_recomputed_from_the_table(tiny):
    cfg, out, res = tiny
    members = res.tables["members"]
    acc = [r["test_accuracy"] for r in members]
    width = [r["width"] for r in members]
    st = {(s["population"], s["centered"]): s for s in res.tables["statistics"]}
    assert set(st) == {(p, c) for p in ("all", "noise=0", gen.PARTIAL_POPULATION) for c in (False, True)}
    clean = [r for r in members if r["noise"] == 0]
    for centered, col in ((False, "angle"), (True, "angle_centered")):
        ang = [r[col] for r in members]
        s = st[("all", centered)]
        assert s["n"] == len(members) and s["n_boot"] == cfg.bootstrap
        assert s["spearman"] == pytest.approx(spearmanr(ang, acc).statistic, abs=1e-12)
        assert s["kendall"] == pytest.approx(kendalltau(ang, acc).statistic, abs=1e-12)
        rxy, rxz, ryz = (spearmanr(a, b).statistic for a, b in ((ang, acc), (ang, width), (acc, width)))
        p = st[(gen.PARTIAL_POPULATION, centered)]
        assert p["spearman"] == pytest.approx((rxy - rxz * ryz) / np.sqrt((1 - rxz**2) * (1 - ryz**2)), abs=1e-9)
        z = st[("noise=0", centered)]
        assert z["n"] == len(clean)
        assert z["spearman"] == pytest.approx(
            spearmanr([r[col] for r in clean], [r["test_accuracy"] for r in clean]).statistic, abs=1e-12)
        for row in (s, p, z):
            assert row["verdict"] == gen.verdict_for(row["spearman"], row["ci_low"], row["ci_high"])


def test_tiny_claims_follow_the_rule(tiny):
    cfg, out, res = tiny
    st = {(s["population"], s["centered"]): s for s in res.tables["statistics"]}
    claims = {c.id: c for c in res.claims}
    assert list(claims) == ["c1", "c2", "c1_centered", "c2_centered"]
    for cid, (pop, centered) in {"c1": ("all", False), "c1_centered": ("all", True),
                                 "c2": (gen.PARTIAL_POPULATION, False),
                                 "c2_centered": (gen.PARTIAL_POPULATION, True)}.items():
        s = st[(pop, centered)]
        c = claims[cid]
        assert c.verdict == gen.verdict_for(s["spearman"], s["ci_low"], s["ci_high"])
        assert c.quote_kind == "paraphrase" and "Appendix A.8" in c.source
        assert "ours" in c.rule_text
        assert f"{s['spearman']:.4g}" in c.rule_text and f"{s['ci_high']:.4g}" in c.rule_text
    m = res.measured()
    assert m["all_rho"] == pytest.approx(st[("all", False)]["spearman"])
    assert m["partial_centered_ci_low"] == pytest.approx(st[(gen.PARTIAL_POPULATION, True)]["ci_low"])
    assert m["all_n"] == len(res.tables["members"])


def test_tiny_protocol(tiny):
    cfg, out, res = tiny
    p = res.protocol
    assert p["split"]["angles"] == "train" and p["split"]["accuracy"] == "test"
    assert p["n_samples"]["angles"] == cfg.n_train_probe and p["n_samples"]["test_accuracy"] == cfg.n_test
    assert "uncentered" in p["centering"] and "centered" in p["centering"]
    assert p["epochs"] == cfg.population_epochs and p["batch_size"] == cfg.batch_size
    assert set(p["schedule"]) == {r["run"] for r in res.tables["members"]}
    assert all("cosine schedule" in v and "momentum 0.9" in v for v in p["schedule"].values())
    assert p["population"]["members"] == len(res.tables["members"])
    assert p["population"]["base"] == gen.base_settings(cfg)
    assert p["statistics"]["bootstrap"]["resamples"] == cfg.bootstrap


def test_tiny_saved_files_and_bootstrap(tiny):
    cfg, out, res = tiny
    d = json.loads((out / "results" / "generalisation.json").read_text())
    assert d["name"] == "generalisation" and d["arrays"]["bootstrap"] == gen.BOOTSTRAP_FILE
    for table in ("members", "statistics"):
        assert (out / "results" / f"generalisation__{table}.csv").is_file()
    with np.load(out / "results" / gen.BOOTSTRAP_FILE) as z:
        assert set(z.files) == {f"{k}_{c}" for k in ("all", "noise0", "partial") for c in ("uncentered", "centered")}
        arrays = {k: z[k] for k in z.files}
    for s in d["tables"]["statistics"]:
        key = f"{gen.SUBSET_KEYS[s['population']]}_{'centered' if s['centered'] else 'uncentered'}"
        boot = arrays[key]
        assert boot.shape == (cfg.bootstrap,)
        b = boot[np.isfinite(boot)]
        assert s["ci_low"] == pytest.approx(np.percentile(b, 2.5))
        assert s["ci_high"] == pytest.approx(np.percentile(b, 97.5))
    # the bootstrap of the whole population, recomputed from the member table with the config's seed
    members = d["tables"]["members"]
    again = stats.bootstrap_spearman([r["angle"] for r in members], [r["test_accuracy"] for r in members],
                                     cfg.bootstrap, cfg.seed)
    assert np.allclose(again, arrays["all_uncentered"], equal_nan=True)


def test_tiny_angle_and_accuracy_recomputed_independently(tiny):
    import torch

    cfg, out, res = tiny
    ctx = ReproContext(cfg, out, progress=False)
    row = res.tables["members"][-1]
    m = next(m for m in gen.population(cfg) if m.name == row["run"])
    ctx.runs.register(m.name, m.spec(cfg.population_epochs))
    F = ctx.stats.features(row["run"], row["checkpoint"], split="train").astype(np.float64)
    assert F.shape == (len(ctx.data.train_probe), row["width"])
    X = ctx.data.train_probe.X.astype(np.float64)
    for center, col in ((False, "angle"), (True, "angle_centered")):
        p_model = deepspan.pvector(F, center=center, method="exact")
        p_data = deepspan.data_pvector(X, center=center, method="exact")
        assert deepspan.angle(p_model, p_data) == pytest.approx(row[col], abs=1e-4)
    for center, col in ((False, "gap"), (True, "gap_centered")):
        sv = np.linalg.svd(F - (F.mean(0) if center else 0.0), compute_uv=False)
        assert row[col] == pytest.approx(sv[1] / sv[0], rel=1e-4)
    # test accuracy: the saved final model's arg-max on every test image, clean labels
    model = ctx.runs.load(row["run"], row["checkpoint"])
    with torch.no_grad():
        pred = model(torch.as_tensor(ctx.data.test.X)).argmax(1).numpy()
    assert row["test_accuracy"] == pytest.approx(float(np.mean(pred == ctx.data.test.y)), abs=1e-9)
    assert ctx.runs.manifest(row["run"])["config"]["lr"] == row["lr"]
    # probe_seen: the share of training-probe images inside the member's training set
    seen = np.isin(ctx.data.train_probe.ids, ctx.data.subset_train(row["n_train"]).ids).mean()
    assert row["probe_seen"] == pytest.approx(seen)


def test_tiny_figures(tiny):
    from deepspan.report._base import FigureContext
    from deepspan.report.fig_generalisation import draw

    cfg, out, res = tiny
    d = json.loads((out / "results" / "generalisation.json").read_text())
    figs = draw(d, FigureContext(out))
    assert [f.stem for f in figs] == ["generalisation_scatter", "generalisation_bootstrap"]
    for f in figs:
        assert (out / f.png).stat().st_size > 1000 and (out / f.svg).is_file()


def test_tiny_rerun_is_skipped(tiny):
    from deepspan.experiments.reproduce import reproduce

    cfg, out, res = tiny
    said: list[str] = []
    again = reproduce(cfg, out, only=["generalisation"], report=False, progress=False, log=said.append)
    assert any("skipped" in s for s in said)
    assert again["generalisation"].measured() == pytest.approx(res.measured(), nan_ok=True)


def test_tiny_member_is_reproducible_in_a_fresh_folder(tiny, tmp_path):
    """Same seed, same numbers: a population member retrained elsewhere (in this other process state)."""
    cfg, out, res = tiny
    row = res.tables["members"][0]
    m = gen.population(cfg)[0]
    ctx = ReproContext(cfg, tmp_path / "again", progress=False)
    man = gen.train_member(ctx, m)
    rec = man["checkpoints"][-1]
    assert rec["label"] == row["checkpoint"]
    assert rec["test_accuracy"] == row["test_accuracy"] and rec["loss"] == pytest.approx(row["loss"], rel=1e-6)
    assert ctx.runs.spec(m.name) == m.spec(cfg.population_epochs)
    u = ctx.stats.pvector(m.name, row["checkpoint"], False, split="train")
    assert deepspan.angle(u, ctx.stats.data_pvector(False, split="train")) == pytest.approx(row["angle"], abs=1e-6)


def test_project_wording():
    """The experiment's text and its saved result avoid words that belong to the project's bookkeeping."""
    import deepspan.experiments.baselines as bl

    banned = re.compile(r"\b(issues?|notes|stored text|summari[sz]ed)\b", re.IGNORECASE)
    for mod in (gen, bl, stats):
        assert not banned.search(Path(mod.__file__).read_text()), mod.__name__


def test_tiny_result_wording(tiny):
    cfg, out, res = tiny
    text = (out / "results" / "generalisation.json").read_text()
    assert not re.search(r"\b(issues?|notes|stored text|summari[sz]ed)\b", text, re.IGNORECASE)
