"""Feature-map spectrum (Nam et al. 2024), neural collapse (Papyan et al. 2020) and their Tracker rows.

Every quantity is checked against an independent computation: scipy's SVD for
rho / Q* / Pi* / eigenfunctions, a direct entropy for d_eff, a direct
re-implementation of the documented regime rule, explicit class statistics for
NC1-NC4; known geometries (a collapsed simplex ETF, targets in the feature
span, isotropic and rank-one features, ReLU random features of a parity task)
fix the expected values. The streaming routes are compared with the dense ones
over several batch splits, numpy and torch.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.linalg

from conftest import orthonormal, reference_svd

import deepspan
import deepspan.data  # a subpackage: not loaded by `import deepspan`
from deepspan import InputError
from deepspan.linalg.streaming import ClassStats, ClassStatsAccumulator, CrossGramAccumulator
from deepspan.measures.collapse import CollapseResult, nc4_agreement, neural_collapse
from deepspan.measures.spectrum import (
    REGIMES,
    SpectrumAccumulator,
    SpectrumResult,
    feature_spectrum,
    feature_spectrum_from_stats,
    targets_matrix,
)

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402
from torch.nn import functional as TF  # noqa: E402
from torch.utils.data import DataLoader, TensorDataset  # noqa: E402


# --------------------------------------------------------------------------- helpers
def one_hot(labels, C=None) -> np.ndarray:
    labels = np.asarray(labels)
    C = int(labels.max()) + 1 if C is None else C
    Y = np.zeros((len(labels), C))
    Y[np.arange(len(labels)), labels] = 1.0
    return Y


def simplex_etf(C: int, p: int, seed=0, scale: float = 1.0) -> np.ndarray:
    """C x p class means forming a simplex ETF: rows of sqrt(C/(C-1)) (I - 11^T/C), embedded in R^p."""
    M = math.sqrt(C / (C - 1)) * (np.eye(C) - np.ones((C, C)) / C)  # C x C, columns are the ETF vectors
    P = orthonormal(p, C, seed)  # p x C orthonormal map
    return scale * (P @ M).T  # C x p: row c is mu_c - mu_G


def collapsed(C: int, p: int, per_class: int, noise: float, means: np.ndarray, seed=1):
    """Balanced classes: every row is its class mean plus N(0, noise^2) noise."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(C), per_class)
    rng.shuffle(labels)
    H = means[labels] + noise * rng.standard_normal((len(labels), p))
    return H, labels


def random_problem(n=240, p=12, C=4, seed=0, offset=3.0, with_outputs=True):
    """Gaussian features with a column offset, random labels with all classes present, outputs F B + noise."""
    rng = np.random.default_rng(seed)
    F = rng.standard_normal((n, p)) * np.linspace(2.0, 0.5, p) + offset * rng.standard_normal(p)
    labels = np.concatenate([np.arange(C), rng.integers(0, C, n - C)])
    rng.shuffle(labels)
    out = F @ rng.standard_normal((p, C)) + 0.1 * rng.standard_normal((n, C)) if with_outputs else None
    return F, labels, out


def prepared(F, Y, center, bias):
    """The matrix actually diagonalised and the targets it is compared with (module docstring)."""
    F = np.asarray(F, dtype=np.float64)
    Y = np.asarray(Y, dtype=np.float64)
    if center:
        F = F - F.mean(0)
        Y = Y - Y.mean(0)
    if bias:
        F = np.hstack([F, np.ones((len(F), 1))])
    return F, Y


def entropy_deff(rho) -> float:
    w = np.asarray(rho, dtype=np.float64)
    w = w[w > 0] / w.sum()
    return float(np.exp(-np.sum(w * np.log(w))))


def expected_regime(res: SpectrumResult, mf_pi=0.9, mf_gap=2.0, ef_factor=2.0) -> str:
    """The documented regime rule, re-implemented from rho, pi_star, pi."""
    C = res.n_targets
    pi_star_C = res.pi_star[min(C, len(res.pi_star)) - 1]
    pi_ok = res.pi is None or res.pi[min(C, len(res.pi)) - 1] >= mf_pi
    gap = res.rho[C - 1] / res.rho[C] if C < len(res.rho) else np.inf
    if pi_star_C >= mf_pi and pi_ok and gap >= mf_gap:
        return "MF"
    hit = np.flatnonzero(res.pi_star >= 0.9 - 1e-12)
    k90 = None if len(hit) == 0 else hit[0] + 1
    if k90 is None or k90 >= ef_factor * C:
        return "EF"
    return "intermediate"


def split_points(n: int, seed: int) -> list[int]:
    rng = np.random.default_rng(seed)
    cuts = np.sort(rng.choice(np.arange(1, n), size=rng.integers(2, 9), replace=False))
    return [0, *cuts.tolist(), n]


SPLITS = {
    "one-batch": lambda n: [0, n],
    "singles-first": lambda n: [0, 1, 2, 3, n],
    "random-a": lambda n: split_points(n, 11),
    "random-b": lambda n: split_points(n, 12),
}


def stream(F, targets, outputs=None, *, n_classes=None, bounds, backend="numpy"):
    acc = SpectrumAccumulator(n_classes=n_classes, with_outputs=outputs is not None)
    for a, b in zip(bounds, bounds[1:]):
        fb, yb = F[a:b], targets[a:b]
        ob = None if outputs is None else outputs[a:b]
        if backend == "torch":
            fb, yb = torch.as_tensor(fb), torch.as_tensor(yb)
            ob = None if ob is None else torch.as_tensor(ob)
        acc.update(fb, yb, ob)
    return acc.finalize()


def assert_close_rel(a, b, rtol=1e-8, what=""):
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    assert a.shape == b.shape, (what, a.shape, b.shape)
    np.testing.assert_allclose(a, b, rtol=rtol, atol=rtol * max(np.abs(b).max(), 1e-300) * 1e-2, err_msg=what)


def align_signs(A, B):
    """Flip the columns of A to agree in sign with those of B."""
    s = np.sign(np.sum(A * B, axis=0))
    s[s == 0] = 1
    return A * s


# --------------------------------------------------------------------------- collapsed representation
@pytest.mark.parametrize("C,p", [(5, 20), (10, 40)])
def test_collapsed_generic_means_is_minimal_feature(C, p):
    rng = np.random.default_rng(C)
    means = rng.standard_normal((C, p))  # generic: rank C, so the one-hot targets lie in their span
    H, labels = collapsed(C, p, 40, 1e-3, means, seed=C + 1)
    res = feature_spectrum(H, labels)
    assert res.classification and res.n_targets == C and res.n_samples == len(H)
    assert res.regime_numbers["pi_star_C"] > 0.999
    assert res.pi_star[C - 1] == pytest.approx(res.regime_numbers["pi_star_C"], abs=0)
    assert res.regime_numbers["gap_ratio_C"] > 1e3  # noise eigenvalues after the C class directions
    assert res.regime == "MF"
    nc = neural_collapse(H, labels)
    assert nc.nc1 < 1e-4
    assert nc.n_classes == C and nc.n_samples == len(H)


@pytest.mark.parametrize("C,p", [(5, 24), (10, 32)])
def test_collapsed_simplex_etf_neural_collapse(C, p):
    etf = simplex_etf(C, p, seed=C, scale=3.0)
    # a global mean outside the ETF's span makes the one-hot targets reachable (uncentered spectrum)
    P = orthonormal(p, C + 1, seed=C)
    mu_g = 2.0 * P[:, C]
    H, labels = collapsed(C, p, 50, 1e-3, etf + mu_g, seed=C + 7)
    # the construction really is a simplex ETF
    G = etf @ etf.T
    np.testing.assert_allclose(np.diag(G), 9.0, rtol=1e-12)
    np.testing.assert_allclose(G[~np.eye(C, dtype=bool)], -9.0 / (C - 1), rtol=1e-12)

    nc = neural_collapse(H, labels, predictions=labels)
    assert nc.nc1 < 1e-4
    assert nc.nc2_equinorm < 1e-3
    assert nc.nc2_equiangle < 1e-3
    assert nc.nc2_maxangle < 1e-3
    assert nc.nc3 is None
    assert nc.nc4 == 1.0

    # W = M^T: the classifier rows are the (empirical) centered class means -> nc3 = 0
    means = np.stack([H[labels == c].mean(0) for c in range(C)])
    W = means - H.mean(0)
    assert neural_collapse(H, labels, W=W).nc3 == pytest.approx(0.0, abs=1e-12)
    # any positive rescaling of W too; the exact ETF differs from the empirical means only by the noise
    assert neural_collapse(H, labels, W=7.5 * W).nc3 == pytest.approx(0.0, abs=1e-12)
    assert neural_collapse(H, labels, W=etf).nc3 < 1e-3
    # a random classifier is far from self-dual
    assert neural_collapse(H, labels, W=np.random.default_rng(0).standard_normal((C, p))).nc3 > 0.5

    res = feature_spectrum(H, labels)
    assert res.regime_numbers["pi_star_C"] > 0.999
    assert res.regime == "MF"
    # with the logits of an ETF classifier as outputs, the learned function also lives in the top C modes
    res_out = feature_spectrum(H, labels, H @ etf.T)
    assert res_out.regime_numbers["pi_C"] > 0.999
    assert res_out.regime == "MF"


def test_nc4_counts_disagreements_and_accepts_logits():
    C, p = 4, 10
    means = 5.0 * np.random.default_rng(3).standard_normal((C, p))
    H, labels = collapsed(C, p, 25, 1e-2, means, seed=4)
    assert neural_collapse(H, labels, predictions=labels).nc4 == 1.0
    logits = one_hot(labels, C) * 3.0
    assert neural_collapse(H, labels, predictions=torch.as_tensor(logits)).nc4 == 1.0
    wrong = labels.copy()
    wrong[:10] = (wrong[:10] + 1) % C
    assert neural_collapse(H, labels, predictions=wrong).nc4 == pytest.approx(1 - 10 / len(H))
    stats = ClassStatsAccumulator().update(H, labels).finalize()
    assert nc4_agreement(H, wrong, stats.means, stats.classes) == pytest.approx(1 - 10 / len(H))


def test_neural_collapse_matches_an_independent_computation():
    rng = np.random.default_rng(5)
    n, p, C = 300, 8, 4
    labels = rng.integers(0, C, n)
    H = rng.standard_normal((n, p)) + 2.0 * rng.standard_normal((C, p))[labels]
    W = rng.standard_normal((C, p))
    nc = neural_collapse(H, labels, W=W)
    mu_g = H.mean(0)
    mus = np.stack([H[labels == c].mean(0) for c in range(C)])
    M = (mus - mu_g).T
    Sw = sum((H[labels == c] - mus[c]).T @ (H[labels == c] - mus[c]) for c in range(C)) / n
    Sb = M @ M.T / C
    assert nc.nc1 == pytest.approx(np.trace(Sw @ np.linalg.pinv(Sb)) / C, rel=1e-8)
    norms = np.linalg.norm(M, axis=0)
    assert nc.nc2_equinorm == pytest.approx(norms.std() / norms.mean(), rel=1e-10)
    cos = [M[:, a] @ M[:, b] / (norms[a] * norms[b]) for a in range(C) for b in range(C) if a != b]
    assert nc.nc2_equiangle == pytest.approx(np.std(cos), rel=1e-10)
    assert nc.nc2_maxangle == pytest.approx(np.mean(np.abs(np.array(cos) + 1 / (C - 1))), rel=1e-10)
    assert nc.nc3 == pytest.approx(np.linalg.norm(W / np.linalg.norm(W) - M.T / np.linalg.norm(M)), rel=1e-10)
    assert isinstance(nc, CollapseResult) and set(nc.to_dict()) >= {"nc1", "nc2_equinorm", "nc3", "nc4"}


# --------------------------------------------------------------------------- extended-feature regime
@pytest.mark.parametrize("n_bits", [1, 2])
def test_relu_random_features_of_a_parity_task_is_extended_feature(n_bits):
    """Labels are parities of the signs of many input directions: no few eigenfunctions carry them."""
    rng = np.random.default_rng(20 + n_bits)
    n, d, width = 1000, 20, 200
    X = rng.standard_normal((n, d))
    Wf, bf = rng.standard_normal((d, width)) / math.sqrt(d), 0.1 * rng.standard_normal(width)
    Phi = np.maximum(X @ Wf + bf, 0.0)
    labels = np.zeros(n, dtype=np.int64)
    for bit in range(n_bits):
        dirs = rng.standard_normal((d, 6))
        parity = (np.prod(np.sign(X @ dirs), axis=1) > 0).astype(np.int64)
        labels = 2 * labels + parity
    C = 2**n_bits
    assert len(np.unique(labels)) == C
    res = feature_spectrum(Phi, labels)
    assert res.n_targets == C
    assert res.regime == "EF"
    k90 = res.regime_numbers["k90"]
    assert k90 is None or k90 >= res.regime_numbers["ef_factor"] * C
    assert k90 == res.k_for["90"]
    # not MF: the top C modes carry far less than 90 % of the targets
    assert res.regime_numbers["pi_star_C"] < res.regime_numbers["mf_pi"]
    assert res.d_eff > 1.0


def test_regime_follows_the_documented_rule_for_many_problems():
    rng = np.random.default_rng(8)
    seen = set()
    for trial in range(40):
        n, C = 120, int(rng.integers(2, 5))
        p = int(rng.integers(C, 3 * C + 4))
        labels = np.concatenate([np.arange(C), rng.integers(0, C, n - C)])
        signal = rng.uniform(0, 6)
        F = signal * one_hot(labels, C) @ rng.standard_normal((C, p)) + rng.standard_normal((n, p)) * rng.uniform(0.05, 3)
        if trial % 3 == 0:  # a strong nuisance direction ranked among the class directions
            F = np.hstack([F, rng.uniform(1, 20) * rng.standard_normal((n, 1))])
        kw = dict(mf_pi=float(rng.uniform(0.5, 0.99)), mf_gap=float(rng.uniform(1.0, 4.0)),
                  ef_factor=float(rng.uniform(1.0, 3.0)))
        res = feature_spectrum(F, labels, **kw)
        assert res.regime == expected_regime(res, **kw), (trial, res.regime_numbers)
        assert res.regime in REGIMES
        for key, value in kw.items():
            assert res.regime_numbers[key] == value
        seen.add(res.regime)
    assert seen == set(REGIMES)  # the sweep exercises all three branches


# --------------------------------------------------------------------------- quantities
@pytest.mark.parametrize("center", [False, True])
@pytest.mark.parametrize("bias", [False, True])
def test_quantities_match_scipy_svd(center, bias):
    F, labels, out = random_problem(n=150, p=9, C=3, seed=2)
    res = feature_spectrum(F, labels, out, center=center, bias=bias)
    Fp, Y = prepared(F, one_hot(labels), center, bias)
    U, s, _ = scipy.linalg.svd(Fp, full_matrices=False)
    np.testing.assert_allclose(res.rho, s**2 / len(F), rtol=1e-10)
    q_star = ((U.T @ Y) ** 2).sum(1) / (Y**2).sum()
    np.testing.assert_allclose(res.q_star, q_star, rtol=1e-8, atol=1e-14)
    np.testing.assert_allclose(res.pi_star, np.cumsum(q_star), rtol=1e-8, atol=1e-14)
    f = out - out.mean(0) if center else out
    q = ((U.T @ f) ** 2).sum(1) / (f**2).sum()
    np.testing.assert_allclose(res.q, q, rtol=1e-8, atol=1e-14)
    np.testing.assert_allclose(res.pi, np.cumsum(q), rtol=1e-8, atol=1e-14)
    assert res.centered is center and res.bias is bias and res.method == "svd"
    assert np.all(np.diff(res.rho) <= 0)
    assert res.d_eff == pytest.approx(entropy_deff(s**2), rel=1e-10)
    assert res.regime == expected_regime(res)


@pytest.mark.parametrize("seed", range(4))
def test_q_star_and_pi_star_properties(seed):
    rng = np.random.default_rng(seed)
    n, p, C = 80, int(rng.integers(4, 30)), 3
    F = rng.standard_normal((n, p)) ** 2
    labels = np.concatenate([np.arange(C), rng.integers(0, C, n - C)])
    res = feature_spectrum(F, labels)
    assert np.all(res.q_star >= 0)
    assert res.q_star.sum() <= 1 + 1e-9
    np.testing.assert_allclose(res.pi_star, np.cumsum(res.q_star), rtol=1e-12, atol=1e-15)
    assert np.all(np.diff(res.pi_star) >= -1e-15)
    assert len(res.q_star) == len(res.pi_star) == len(res.rho)
    assert res.q is None and res.pi is None
    # k_for: the smallest k reaching each level, computed here directly
    for key, level in (("90", 0.90), ("95", 0.95), ("99", 0.99)):
        ks = [k for k in range(1, len(res.pi_star) + 1) if res.pi_star[k - 1] >= level - 1e-12]
        assert res.k_for[key] == (ks[0] if ks else None), (key, res.pi_star)
        if res.k_for[key] is not None and res.k_for[key] > 1:
            assert res.pi_star[res.k_for[key] - 2] < level


@pytest.mark.parametrize("center", [False, True])
def test_targets_in_the_feature_span_give_pi_star_one(center):
    rng = np.random.default_rng(9)
    n, C = 90, 4
    labels = np.concatenate([np.arange(C), rng.integers(0, C, n - C)])
    # the one-hot targets are columns of F (mixed with noise features)
    F = np.hstack([one_hot(labels, C), rng.standard_normal((n, 6))]) @ orthonormal(C + 6, C + 6, 1)
    res = feature_spectrum(F, labels, center=center)
    assert res.pi_star[-1] == pytest.approx(1.0, abs=1e-10)
    assert res.k_for["99"] is not None and res.k_for["99"] <= len(res.rho)


def test_isotropic_features_have_d_eff_p_and_rank_one_has_d_eff_one():
    n, p = 60, 7
    F = 3.0 * orthonormal(n, p, 4)  # orthogonal, equal-norm columns
    labels = np.arange(n) % 3
    res = feature_spectrum(F, labels)
    np.testing.assert_allclose(res.rho, 9.0 / n, rtol=1e-12)
    assert res.d_eff == pytest.approx(p, rel=1e-10)
    assert res.d_eff == pytest.approx(entropy_deff(res.rho), rel=1e-12)

    rng = np.random.default_rng(0)
    R = np.outer(rng.standard_normal(n), rng.standard_normal(p))
    res1 = feature_spectrum(R, labels)
    assert len(res1.rho) == 1  # the rank cut drops the round-off singular values
    assert res1.d_eff == pytest.approx(1.0, abs=1e-12)
    np.testing.assert_allclose(res1.rho, np.linalg.norm(R, 2) ** 2 / n, rtol=1e-12)


def test_d_eff_is_exp_entropy_on_a_planted_spectrum():
    n, p = 100, 6
    s = np.array([5.0, 4.0, 2.0, 1.0, 0.5, 0.1])
    F = (orthonormal(n, p, 2) * s) @ orthonormal(p, p, 3).T
    res = feature_spectrum(F, np.arange(n) % 2)
    w = s**2 / (s**2).sum()
    assert res.d_eff == pytest.approx(math.exp(-sum(w * np.log(w))), rel=1e-10)
    np.testing.assert_allclose(res.rho, s**2 / n, rtol=1e-10)


# --------------------------------------------------------------------------- eigenfunctions
@pytest.mark.parametrize("center", [False, True])
@pytest.mark.parametrize("bias", [False, True])
def test_eigenfunctions_orthonormal_and_nystrom_reproduces_them(center, bias):
    F, labels, _ = random_problem(n=130, p=10, C=3, seed=4, with_outputs=False)
    res = feature_spectrum(F, labels, center=center, bias=bias)
    n = len(F)
    E = res.eigenfunctions_train
    assert E.shape == (n, len(res.rho))
    np.testing.assert_allclose(E.T @ E / n, np.eye(E.shape[1]), atol=1e-10)
    np.testing.assert_allclose(E, math.sqrt(n) * res.U, rtol=0, atol=0)
    # Nystrom on the training points reproduces sqrt(n) U
    np.testing.assert_allclose(res.eigenfunctions(F), E, rtol=1e-8, atol=1e-8)
    np.testing.assert_allclose(res.eigenfunctions(torch.as_tensor(F)), E, rtol=1e-8, atol=1e-8)
    np.testing.assert_allclose(res.eigenfunctions(F, k=2), E[:, :2], rtol=1e-8, atol=1e-8)
    # and agrees with scipy's left singular vectors up to sign
    Fp, _ = prepared(F, one_hot(labels), center, bias)
    U, _, _ = reference_svd(Fp)
    np.testing.assert_allclose(align_signs(E, U), math.sqrt(n) * U[:, : E.shape[1]], atol=1e-8)
    # a single new point works too (min one sample)
    np.testing.assert_allclose(res.eigenfunctions(F[:1]), E[:1], atol=1e-8)


def test_to_dict_drops_the_matrices():
    F, labels, out = random_problem(n=60, p=6, C=3, seed=1)
    d = feature_spectrum(F, labels, out).to_dict()
    assert not {"V", "U", "mean"} & set(d)
    assert isinstance(d["rho"], list) and isinstance(d["pi"], list)
    assert d["regime"] in REGIMES


# --------------------------------------------------------------------------- outputs
def test_outputs_in_the_feature_span_give_pi_one():
    F, labels, _ = random_problem(n=100, p=8, C=3, seed=6, with_outputs=False)
    B = np.random.default_rng(6).standard_normal((8, 3))
    res = feature_spectrum(F, labels, F @ B)
    assert res.pi[-1] == pytest.approx(1.0, abs=1e-10)
    assert np.all(np.diff(res.pi) >= -1e-15)
    assert res.q.sum() == pytest.approx(1.0, abs=1e-10)
    assert res.regime_numbers["pi_C"] == pytest.approx(res.pi[2], abs=0)
    res_none = feature_spectrum(F, labels)
    assert res_none.q is None and res_none.pi is None
    assert res_none.regime_numbers["pi_C"] is None
    # with centering, a centered output in the span still reaches 1
    res_c = feature_spectrum(F, labels, F @ B + 4.0, center=True)
    assert res_c.pi[-1] == pytest.approx(1.0, abs=1e-10)


# --------------------------------------------------------------------------- regression
@pytest.mark.parametrize("center", [False, True])
def test_regression_targets(center):
    rng = np.random.default_rng(12)
    n, p = 110, 9
    F = rng.standard_normal((n, p)) + 1.0
    Y = np.column_stack([np.sin(F[:, 0]), F[:, 1] * F[:, 2], rng.standard_normal(n)])
    res = feature_spectrum(F, Y, center=center)
    assert res.classification is False
    assert res.n_targets == 3
    Fp, Yp = prepared(F, Y, center, False)
    U, _, _ = scipy.linalg.svd(Fp, full_matrices=False)
    q = ((U.T @ Yp) ** 2).sum(1) / np.linalg.norm(Yp, "fro") ** 2
    np.testing.assert_allclose(res.q_star, q, rtol=1e-8, atol=1e-14)
    np.testing.assert_allclose(res.pi_star, np.cumsum(q), rtol=1e-8, atol=1e-14)
    assert res.regime_numbers["C"] == 3
    # torch target matrices are accepted as well
    res_t = feature_spectrum(torch.as_tensor(F), torch.as_tensor(Y), center=center)
    np.testing.assert_allclose(res_t.q_star, res.q_star, rtol=1e-12)


def test_targets_matrix_conversions():
    Y, cls = targets_matrix(np.array([0, 2, 1, 2]), 4)
    assert cls and Y.shape == (4, 3) and np.array_equal(Y.argmax(1), [0, 2, 1, 2])
    Y, cls = targets_matrix(np.array([0.0, 1.0, 1.0]), 3)  # integer-valued floats are labels
    assert cls and Y.shape == (3, 2)
    Y, cls = targets_matrix(np.array([0, 1, 1]), 3, n_classes=5)
    assert Y.shape == (3, 5) and Y[:, 2:].sum() == 0
    R = np.arange(6.0).reshape(3, 2)
    Y, cls = targets_matrix(R, 3)
    assert not cls and np.array_equal(Y, R)
    Y, cls = targets_matrix(np.zeros(3, dtype=int), 3, require_two_classes=False)
    assert cls and Y.shape == (3, 1)


# --------------------------------------------------------------------------- streaming
def compare_stream_dense(dense: SpectrumResult, st: SpectrumResult, outputs: bool):
    assert st.method == "gram-stream" and st.U is None and st.eigenfunctions_train is None
    assert len(st.rho) == len(dense.rho)
    assert_close_rel(st.rho, dense.rho, what="rho")
    assert_close_rel(st.q_star, dense.q_star, what="q_star")
    assert_close_rel(st.pi_star, dense.pi_star, what="pi_star")
    if outputs:
        assert_close_rel(st.q, dense.q, what="q")
        assert_close_rel(st.pi, dense.pi, what="pi")
    else:
        assert st.q is None and st.pi is None
    assert st.d_eff == pytest.approx(dense.d_eff, rel=1e-8)
    assert st.n_samples == dense.n_samples and st.n_targets == dense.n_targets
    assert st.classification == dense.classification
    assert st.regime == dense.regime and st.k_for == dense.k_for
    assert (st.centered, st.bias) == (dense.centered, dense.bias)
    np.testing.assert_allclose(st.mean, dense.mean, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("backend", ["numpy", "torch"])
@pytest.mark.parametrize("split", sorted(SPLITS))
@pytest.mark.parametrize("center", [False, True])
@pytest.mark.parametrize("bias", [False, True])
def test_streaming_classification_matches_dense(backend, split, center, bias):
    F, labels, out = random_problem(n=240, p=12, C=4, seed=3)
    bounds = SPLITS[split](len(F))
    dense = feature_spectrum(F, labels, out, center=center, bias=bias)
    stats = stream(F, labels, out, n_classes=4, bounds=bounds, backend=backend)
    st = feature_spectrum_from_stats(stats, center=center, bias=bias)
    compare_stream_dense(dense, st, outputs=True)
    # the Nystrom extension from the streamed V and mean agrees with the dense eigenfunctions
    E = dense.eigenfunctions_train
    np.testing.assert_allclose(align_signs(st.eigenfunctions(F), E), E, atol=1e-7)
    # without outputs
    stats2 = stream(F, labels, n_classes=4, bounds=bounds, backend=backend)
    compare_stream_dense(feature_spectrum(F, labels, center=center, bias=bias),
                         feature_spectrum_from_stats(stats2, center=center, bias=bias), outputs=False)


@pytest.mark.parametrize("backend", ["numpy", "torch"])
@pytest.mark.parametrize("center", [False, True])
@pytest.mark.parametrize("bias", [False, True])
def test_streaming_regression_matches_dense(backend, center, bias):
    rng = np.random.default_rng(21)
    n, p = 200, 10
    F = rng.standard_normal((n, p)) * np.linspace(1.5, 0.4, p) + 2.0
    Y = np.column_stack([F[:, 0] ** 2, np.tanh(F[:, 1] - F[:, 2]), rng.standard_normal(n) + 3.0])
    out = F @ rng.standard_normal((p, 3))
    dense = feature_spectrum(F, Y, out, center=center, bias=bias)
    for seed in (31, 32):
        stats = stream(F, Y, out, bounds=split_points(n, seed), backend=backend)
        assert stats.n_targets == 3 and stats.classification is False
        st = feature_spectrum_from_stats(stats, center=center, bias=bias)
        assert st.classification is False and st.n_targets == 3
        compare_stream_dense(dense, st, outputs=True)


def test_streaming_batch_may_hold_a_single_class():
    F, labels, _ = random_problem(n=60, p=6, C=3, seed=5, with_outputs=False)
    order = np.argsort(labels, kind="stable")  # sorted: every batch below holds one class
    F, labels = F[order], labels[order]
    bounds = [0] + [int(np.flatnonzero(labels == c)[-1]) + 1 for c in range(3)]
    st = feature_spectrum_from_stats(stream(F, labels, n_classes=3, bounds=bounds))
    compare_stream_dense(feature_spectrum(F, labels), st, outputs=False)


def test_spectrum_accumulator_skips_empty_batches_like_the_gram_accumulators():
    """CrossGramAccumulator/GramAccumulator accept 0-row batches as no-ops; SpectrumAccumulator should too."""
    F, labels, _ = random_problem(n=50, p=5, C=3, seed=7, with_outputs=False)
    acc = SpectrumAccumulator(n_classes=3)
    acc.update(F[:20], labels[:20])
    acc.update(F[20:20], labels[20:20])  # an empty batch (e.g. a filtered shard)
    acc.update(F[20:], labels[20:])
    st = feature_spectrum_from_stats(acc.finalize())
    compare_stream_dense(feature_spectrum(F, labels), st, outputs=False)


def test_streaming_rank_deficient_features_match_dense():
    """Duplicated and dead (all-zero) feature columns: the rank cut drops the same directions in both routes."""
    F, labels, out = random_problem(n=90, p=6, C=3, seed=8)
    G = np.hstack([F, F[:, :2] * 2.0, np.zeros((len(F), 2))])
    for center in (False, True):
        dense = feature_spectrum(G, labels, out, center=center)
        assert len(dense.rho) == 6
        st = feature_spectrum_from_stats(stream(G, labels, out, n_classes=3, bounds=[0, 17, 50, 90]), center=center)
        compare_stream_dense(dense, st, outputs=True)


def test_spectrum_accumulator_refuses_transposed_outputs():
    """Outputs of shape (C, n) instead of (n, C) must be refused like in feature_spectrum, not reshaped silently."""
    F, labels, out = random_problem(n=40, p=6, C=3, seed=0)
    with pytest.raises(InputError, match="outputs have 3 rows for 40 samples"):
        feature_spectrum(F, labels, out.T)
    with pytest.raises(InputError, match="outputs"):
        SpectrumAccumulator(n_classes=3, with_outputs=True).update(F, labels, out.T)


def test_spectrum_accumulator_outputs_with_too_few_rows_is_an_input_error():
    F, labels, out = random_problem(n=40, p=6, C=3, seed=0)
    with pytest.raises(InputError, match="outputs"):
        SpectrumAccumulator(n_classes=3, with_outputs=True).update(F, labels, out[:39])


def test_spectrum_accumulator_refuses_mixing_labels_and_target_matrices():
    """Labels in one batch and a real target matrix in the next cannot both be right; the kind must not flip."""
    F, labels, _ = random_problem(n=40, p=6, C=3, seed=0)
    acc = SpectrumAccumulator(n_classes=3)
    acc.update(F[:20], labels[:20])
    with pytest.raises(InputError):
        acc.update(F[20:], 5.0 * one_hot(labels[20:], 3))


@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_class_stats_neural_collapse_matches_dense(backend):
    rng = np.random.default_rng(13)
    n, p, C = 210, 9, 5
    labels = np.concatenate([np.arange(C), rng.integers(0, C, n - C)])
    H = rng.standard_normal((n, p)) + 3.0 * rng.standard_normal((C, p))[labels] + 1.5
    W = rng.standard_normal((C, p))
    dense = neural_collapse(H, labels, W=W)
    for seed in (41, 42):
        acc = ClassStatsAccumulator()
        bounds = split_points(n, seed)
        for a, b in zip(bounds, bounds[1:]):
            hb, lb = H[a:b], labels[a:b]
            if backend == "torch":
                hb, lb = torch.as_tensor(hb), torch.as_tensor(lb)
            acc.update(hb, lb)
        stats = acc.finalize()
        assert isinstance(stats, ClassStats)
        st = neural_collapse(stats, W=W)
        for name in ("nc1", "nc2_equinorm", "nc2_equiangle", "nc2_maxangle", "nc3"):
            assert getattr(st, name) == pytest.approx(getattr(dense, name), rel=1e-8), name
        assert st.nc4 is None and st.n_classes == C and st.n_samples == n


# --------------------------------------------------------------------------- Tracker
SPEC_LAYER, OUT_LAYER = "2", "3"  # Sequential(Flatten, Linear, ReLU, Linear): the hidden ReLU, the logits


def make_mlp() -> nn.Sequential:
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))


@pytest.fixture(scope="module")
def digits():
    return deepspan.data.load_digits()


@pytest.fixture(scope="module")
def tracked(digits):
    torch.manual_seed(0)
    model = make_mlp()
    X = torch.as_tensor(digits.X, dtype=torch.float32)
    y = torch.as_tensor(digits.y)
    loader = DataLoader(TensorDataset(X, y), batch_size=64, shuffle=True, generator=torch.Generator().manual_seed(0))
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    tracker = deepspan.Tracker(model, digits, [SPEC_LAYER], spectrum_layer=SPEC_LAYER, output_layer=OUT_LAYER,
                               classifier=OUT_LAYER)
    tracker.step(epoch=0)
    for epoch in range(1, 7):
        model.train()
        for xb, yb in loader:
            opt.zero_grad()
            TF.cross_entropy(model(xb), yb).backward()
            opt.step()
        tracker.step(epoch=epoch)
    return tracker, model


def test_tracker_records_spectrum_and_collapse_rows(tracked, digits):
    tracker, model = tracked
    assert len(tracker.order) == 7
    expected = [f"rho_{i}" for i in range(1, 21)] + ["pi_star_C", "pi_C", "d_eff", "regime", "eigengap_C", "nc1",
                                                     "nc2_equinorm", "nc2_equiangle", "nc2_maxangle", "nc3", "nc4"]
    for q in expected:
        series = tracker.series(q, SPEC_LAYER)
        assert len(series) == 7, q
        assert all(np.isfinite(v) for v in series), q
    assert set(tracker.series("regime", SPEC_LAYER)) <= {0.0, 1.0, 2.0}
    for v in tracker.series("nc4", SPEC_LAYER) + tracker.series("pi_star_C", SPEC_LAYER):
        assert 0.0 <= v <= 1.0 + 1e-9
    # the last step's rows are the library functions applied to the extracted features
    Xf = torch.as_tensor(digits.X, dtype=torch.float32).reshape(len(digits.X), -1)
    with torch.no_grad():
        h = model[2](model[1](Xf))
        logits = model[3](h)
    sp = feature_spectrum(h.numpy(), digits.y, logits.numpy())
    nc = neural_collapse(h.numpy(), digits.y, W=model[3].weight.detach().numpy(), predictions=logits.numpy())
    last = {r["quantity"]: r["value"] for r in tracker.table(layer=SPEC_LAYER) if r["checkpoint"] == tracker.order[-1]}
    assert last["pi_star_C"] == pytest.approx(sp.regime_numbers["pi_star_C"], rel=1e-6)
    assert last["pi_C"] == pytest.approx(sp.regime_numbers["pi_C"], rel=1e-6)
    assert last["d_eff"] == pytest.approx(sp.d_eff, rel=1e-6)
    assert last["regime"] == REGIMES.index(sp.regime)
    assert last["rho_1"] == pytest.approx(sp.rho[0], rel=1e-6)
    assert last["nc1"] == pytest.approx(nc.nc1, rel=1e-5)
    assert last["nc3"] == pytest.approx(nc.nc3, rel=1e-6)
    assert last["nc4"] == pytest.approx(nc.nc4, abs=1e-12)


def test_tracker_training_aligns_features_with_targets(tracked):
    tracker, _ = tracked
    pi_star = tracker.series("pi_star_C", SPEC_LAYER)
    nc1 = tracker.series("nc1", SPEC_LAYER)
    assert pi_star[-1] > pi_star[0]
    assert nc1[-1] < nc1[0]
    nc4 = tracker.series("nc4", SPEC_LAYER)
    assert nc4[-1] > 0.8  # the trained net mostly predicts the nearest class mean


def test_tracker_spectrum_needs_labels_and_spectrum_layer(digits):
    model = make_mlp()
    X = torch.as_tensor(digits.X[:100], dtype=torch.float32)
    with pytest.raises(InputError, match="labels"):
        deepspan.Tracker(model, X, [SPEC_LAYER], spectrum_layer=SPEC_LAYER).step(epoch=0)
    with pytest.raises(InputError, match="spectrum_layer"):
        deepspan.Tracker(model, digits, [SPEC_LAYER], output_layer=OUT_LAYER)
    with pytest.raises(InputError, match="spectrum_layer"):
        deepspan.Tracker(model, digits, [SPEC_LAYER], classifier=OUT_LAYER)


def test_tracker_spectrum_with_a_dataloader_probe_and_resume(digits, tmp_path):
    torch.manual_seed(1)
    model = make_mlp()
    X = torch.as_tensor(digits.X[:300], dtype=torch.float32)
    y = torch.as_tensor(digits.y[:300])
    probe = DataLoader(TensorDataset(X, y), batch_size=100, shuffle=False)
    kw = dict(spectrum_layer=SPEC_LAYER, output_layer=OUT_LAYER, classifier=OUT_LAYER, out_dir=tmp_path)
    tr = deepspan.Tracker(model, probe, [SPEC_LAYER], **kw)
    tr.step(epoch=0)
    h = model[2](model[1](X.reshape(300, -1))).detach().numpy()
    sp = feature_spectrum(h, digits.y[:300])
    assert tr.series("pi_star_C", SPEC_LAYER)[0] == pytest.approx(sp.regime_numbers["pi_star_C"], rel=1e-6)
    # a second Tracker on the same out_dir resumes the run, spectrum rows included
    again = deepspan.Tracker(model, probe, [SPEC_LAYER], **kw)
    assert "e0" in again and again.series("nc3", SPEC_LAYER) == tr.series("nc3", SPEC_LAYER)
    assert again.step(epoch=0) == []
    # other spectrum settings do not resume it
    with pytest.raises(InputError, match="different settings"):
        deepspan.Tracker(model, probe, [SPEC_LAYER], spectrum_layer=SPEC_LAYER, out_dir=tmp_path)


# --------------------------------------------------------------------------- bad input
@pytest.fixture(scope="module")
def small():
    F, labels, out = random_problem(n=40, p=6, C=3, seed=0)
    return F, labels, out


def test_labels_not_matching_n(small):
    F, labels, _ = small
    with pytest.raises(InputError, match=r"39 labels for 40 samples"):
        feature_spectrum(F, labels[:-1])
    with pytest.raises(InputError, match=r"39 labels for 40 samples"):
        neural_collapse(F, labels[:-1])
    with pytest.raises(InputError, match=r"39 rows for 40 samples"):
        feature_spectrum(F, one_hot(labels)[:-1])
    with pytest.raises(InputError, match=r"outputs have 39 rows for 40 samples"):
        feature_spectrum(F, labels, np.ones((39, 3)))
    with pytest.raises(InputError, match=r"labels"):
        neural_collapse(F)


def test_single_class(small):
    F, labels, _ = small
    with pytest.raises(InputError, match="single class"):
        feature_spectrum(F, np.zeros(len(F), dtype=int))
    with pytest.raises(InputError, match="at least two classes"):
        neural_collapse(F, np.full(len(F), 2))


def test_nan_features(small):
    F, labels, _ = small
    G = F.copy()
    G[3, 2] = np.nan
    with pytest.raises(InputError, match=r"non-finite.*row 3, column 2"):
        feature_spectrum(G, labels)
    with pytest.raises(InputError, match=r"non-finite.*row 3, column 2"):
        neural_collapse(G, labels)
    with pytest.raises(InputError, match="non-finite"):
        SpectrumAccumulator(n_classes=3).update(G, labels)
    with pytest.raises(InputError, match="NaN"):
        feature_spectrum(F, np.where(np.arange(len(F))[:, None] == 0, np.nan, one_hot(labels)))


def test_more_classes_than_features():
    rng = np.random.default_rng(0)
    F = rng.standard_normal((50, 5))
    labels = np.arange(50) % 10
    with pytest.raises(InputError, match=r"10 target dimensions \(classes\) but only 5 features"):
        feature_spectrum(F, labels)
    with pytest.raises(InputError, match=r"10 target dimensions .*only 5 features"):
        feature_spectrum_from_stats(SpectrumAccumulator(n_classes=10).update(F, labels).finalize())
    with pytest.raises(InputError, match=r"with the bias column"):
        feature_spectrum(F[:, :4], labels % 5 + 0, bias=True, n_classes=6)


def test_one_d_float_targets_refused(small):
    F, _, _ = small
    y = np.linspace(0, 1, len(F))
    with pytest.raises(InputError, match=r"1-D targets must be integer class labels.*reshape\(-1, 1\)"):
        feature_spectrum(F, y)
    with pytest.raises(InputError, match=r"1-D targets must be integer class labels"):
        SpectrumAccumulator(n_classes=2).update(F, y)


def test_label_range_checks(small):
    F, labels, _ = small
    bad = labels.copy()
    bad[0] = -1
    with pytest.raises(InputError, match="0..C-1"):
        feature_spectrum(F, bad)
    with pytest.raises(InputError, match="out of range for n_classes=2"):
        feature_spectrum(F, labels, n_classes=2)
    with pytest.raises(InputError, match=r"labels \(n,\) or a matrix"):
        feature_spectrum(F, np.zeros((len(F), 2, 2)))


def test_nc3_wrong_w_shape(small):
    F, labels, _ = small
    with pytest.raises(InputError, match=r"W has shape \(6, 3\); NC3 needs the C x p = \(3, 6\)"):
        neural_collapse(F, labels, W=np.ones((6, 3)))


def test_nc4_from_stats_needs_features(small):
    F, labels, _ = small
    stats = ClassStatsAccumulator().update(F, labels).finalize()
    with pytest.raises(InputError, match="NC4 needs the features"):
        neural_collapse(stats, predictions=labels)
    with pytest.raises(InputError, match="39 predictions for 40 samples"):
        nc4_agreement(F, labels[:-1], stats.means, stats.classes)


def test_spectrum_accumulator_input_errors(small):
    F, labels, out = small
    with pytest.raises(InputError, match=r"n_classes=C\) is needed"):
        SpectrumAccumulator().update(F, labels)
    with pytest.raises(InputError, match="with_outputs=True"):
        SpectrumAccumulator(n_classes=3, with_outputs=True).update(F, labels)
    with pytest.raises(InputError, match="seen no samples"):
        SpectrumAccumulator(n_classes=3).finalize()


def test_boolean_labels_are_class_labels(small):
    """targets_matrix documents integer/unsigned/bool labels (dtype kinds 'iub'): bool labels are classes 0/1."""
    F, _, _ = small
    lab = np.arange(len(F)) % 2
    expected = feature_spectrum(F, lab)
    res = feature_spectrum(F, lab.astype(bool))
    assert res.n_targets == 2 and res.classification
    np.testing.assert_allclose(res.q_star, expected.q_star, rtol=1e-12)


def test_centered_constant_features_are_an_input_error():
    """Every column constant: the centered features are zero, there is no spectrum -- an InputError, not IndexError."""
    F = np.tile(np.arange(1.0, 7.0), (40, 1))
    labels = np.arange(40) % 2
    feature_spectrum(F, labels)  # uncentered it has one direction
    with pytest.raises(InputError):
        feature_spectrum(F, labels, center=True)


def test_streamed_all_zero_features_are_an_input_error():
    """The dense route refuses all-zero features with an InputError; the streamed route must too."""
    Z = np.zeros((40, 6))
    labels = np.arange(40) % 2
    with pytest.raises(InputError, match="all zeros"):
        feature_spectrum(Z, labels)
    with pytest.raises(InputError):
        feature_spectrum_from_stats(SpectrumAccumulator(n_classes=2).update(Z, labels).finalize())


def test_eigenfunctions_wrong_width(small):
    F, labels, _ = small
    res = feature_spectrum(F, labels, bias=True)
    with pytest.raises(InputError, match=r"Phi has 5 features \(after the bias column\), the spectrum 7"):
        res.eigenfunctions(F[:, :4])


def test_nc3_uses_the_rows_of_the_classes_present():
    rng = np.random.default_rng(3)
    y = np.repeat([0, 2, 3], 30)  # a 5-class classifier, data with 3 of the classes
    means = rng.standard_normal((5, 8)) * 4
    Phi = means[y] + 1e-3 * rng.standard_normal((len(y), 8))
    W = rng.standard_normal((5, 8))
    full = neural_collapse(Phi, y, W=W)
    sub = neural_collapse(Phi, y, W=W[[0, 2, 3]])
    assert full.nc3 == pytest.approx(sub.nc3, rel=1e-12)


def test_subpackages_are_attributes_of_the_package():
    import subprocess
    import sys

    code = "import deepspan; print(deepspan.data.load_digits().X.shape, deepspan.track.Tracker.__name__)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "(1797, 8, 8) Tracker" in out
