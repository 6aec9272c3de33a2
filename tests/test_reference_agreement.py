"""Agreement with reference implementations, and registry metadata that holds.

PWCCA is checked against a transcription, written here, of the steps of Morcos et al.'s published code
(github.com/google/svcca: ``cca_core.get_cca_similarity`` then ``pwcca.compute_pwcca``, data as
neurons x samples): numpy covariance, rescaling by the largest entry, pseudo-inverse, matrix square root by
eigh, SVD of Sigma_xx^{-1/2} Sigma_xy Sigma_yy^{-1/2}, directions u^T (A - m) + m, QR, weights over the raw
activations. deepspan computes the same quantity through a different route (SVD of the centered features,
symmetric whitening basis), so agreement checks the formula, not a copy of it.
"""

from __future__ import annotations

import numpy as np
import pytest

from deepspan import InputError, compare
from deepspan.measures import canonical
from deepspan.measures.compare import MEASURES

pytestmark = pytest.mark.filterwarnings("ignore::deepspan.errors.DeepspanWarning")


def _sqrt_psd(a: np.ndarray) -> np.ndarray:
    w, v = np.linalg.eigh(a)
    return np.dot(v, np.dot(np.diag(np.sqrt(w)), v.T))


def _code_pwcca(acts1: np.ndarray, acts2: np.ndarray) -> float:
    """The published code's steps for its first branch (acts1 has no more neurons than acts2)."""
    assert acts1.shape[0] <= acts2.shape[0] < acts1.shape[1]
    nx = acts1.shape[0]
    cov = np.cov(acts1, acts2)
    sxx, sxy, syy = cov[:nx, :nx].copy(), cov[:nx, nx:].copy(), cov[nx:, nx:].copy()
    xmax, ymax = np.max(np.abs(sxx)), np.max(np.abs(syy))
    sxx /= xmax
    syy /= ymax
    sxy /= np.sqrt(xmax * ymax)
    arr = np.dot(_sqrt_psd(np.linalg.pinv(sxx)), np.dot(sxy, _sqrt_psd(np.linalg.pinv(syy))))
    u, s, _ = np.linalg.svd(arr)
    means = np.mean(acts1, axis=1, keepdims=True)
    dirns = np.dot(u.T, acts1 - means) + means
    P, _ = np.linalg.qr(dirns.T)
    weights = np.sum(np.abs(np.dot(P.T, acts1.T)), axis=1)
    weights = weights / np.sum(weights)
    return float(np.sum(weights * np.abs(s)))


def _pair(seed: int, n: int, p1: int, p2: int, noise: float) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.uniform(size=(n, p1))
    shared = min(p1, p2)
    Y = X[:, :shared] @ rng.normal(size=(shared, p2)) + noise * rng.normal(size=(n, p2)) + 0.7
    return X, Y


@pytest.mark.parametrize("seed,n,p1,p2,noise", [
    (0, 500, 20, 30, 1.0), (1, 300, 10, 10, 0.5), (2, 200, 5, 40, 2.0), (3, 1000, 25, 25, 0.1), (4, 120, 8, 9, 3.0),
])
def test_pwcca_equals_the_published_code_steps(seed, n, p1, p2, noise):
    X, Y = _pair(seed, n, p1, p2, noise)
    expected = _code_pwcca(X.T, Y.T)
    assert canonical.pwcca(X, Y) == pytest.approx(expected, abs=1e-10)
    assert MEASURES["pwcca"](X, Y) == pytest.approx(expected, abs=1e-10)
    assert compare(X, Y, "pwcca")["pwcca"] == pytest.approx(expected, abs=1e-10)


def test_pwcca_weights_the_side_with_fewer_neurons():
    """X wider than Y: the code's rule weights by Y, so pwcca(X, Y) is the code run with Y first."""
    X, Y = _pair(5, 400, 30, 12, 1.0)
    assert canonical.pwcca(X, Y) == pytest.approx(_code_pwcca(Y.T, X.T), abs=1e-10)
    # and it is not the centered, X-weighted form
    assert abs(canonical.pwcca(X, Y) - canonical.pwcca_centered(X, Y)) > 1e-3


def test_pwcca_on_the_published_uniform_example_is_ill_determined():
    """``np.random.seed(0); X, Y = uniform(30, 25)`` twice: 25 neurons on 30 samples leave 21 of the 25
    canonical correlations equal to 1, and inside that group the directions (hence the L1 weights) are any
    rotation. The code's own value moves by more than 1e-3 when the same matrices are rounded differently, so
    no implementation can be held to one 16-digit value here; deepspan's value lies in the same band."""
    np.random.seed(0)
    X = np.random.uniform(size=(30, 25))
    Y = np.random.uniform(size=(30, 25))
    rho = canonical.canonical_correlations(X, Y)
    assert int(np.sum(rho > 1 - 1e-9)) == 21
    exact = _code_pwcca(X.T, Y.T)
    rounded = _code_pwcca(X.T.astype(np.float32).astype(np.float64), Y.T)
    assert abs(exact - rounded) > 1e-3
    values = [exact, rounded, 0.9588540570969645]
    assert min(values) - 0.01 < canonical.pwcca(X, Y) < max(values) + 0.01


def test_pwcca_well_determined_version_of_the_published_example():
    """The same generator with 300 samples instead of 30: no repeated correlations, one value to 1e-12."""
    np.random.seed(0)
    X = np.random.uniform(size=(300, 25))
    Y = np.random.uniform(size=(300, 25))
    rho = canonical.canonical_correlations(X, Y)
    assert np.min(np.diff(-rho)) > 1e-4
    assert canonical.pwcca(X, Y) == pytest.approx(_code_pwcca(X.T, Y.T), abs=1e-12)


def test_pwcca_invariances_are_the_registered_ones():
    X, Y = _pair(6, 300, 6, 8, 1.0)
    base = canonical.pwcca(X, Y)
    assert MEASURES["pwcca"].invariances == frozenset({"isotropic_scaling"})
    assert canonical.pwcca(3.5 * X, Y) == pytest.approx(base, abs=1e-12)
    assert abs(canonical.pwcca(X + 5.0, Y) - base) > 1e-4          # means are added back: not translation-invariant
    assert abs(canonical.pwcca(X[:, ::-1], Y) - base) > 1e-4       # neuron i gets mean i: not permutation-invariant
    centered = canonical.pwcca_centered(X, Y)
    assert canonical.pwcca_centered(X + 5.0, 2.0 * Y[:, ::-1]) == pytest.approx(centered, abs=1e-12)


def test_pwcca_with_fewer_samples_than_neurons_is_in_range():
    X, Y = _pair(7, 10, 20, 25, 1.0)
    v = canonical.pwcca(X, Y)
    assert 0.0 <= v <= 1.0
    assert canonical.pwcca(X, X) == pytest.approx(1.0, abs=1e-9) or "independent" in MEASURES["pwcca"].identity_when


def test_pwcca_refuses_bad_input_like_every_measure():
    X, Y = _pair(8, 50, 4, 5, 1.0)
    with pytest.raises(InputError):
        canonical.pwcca(X[:, 0], Y)
    with pytest.raises(InputError):
        canonical.pwcca(np.where(X > 0.5, np.nan, X), Y)
    with pytest.raises(InputError):
        canonical.pwcca(X, Y, rank_tol=-1.0)


def test_identity_metadata_holds_for_every_measure():
    """Each registered measure against itself on ReLU features with two dead neurons and one duplicated
    neuron: the registered identity wherever ``identity_when`` is empty, and otherwise the stated exception
    is what happens (max_match: the live fraction; pwcca: below 1 with the duplicated neuron, 1 without)."""
    rng = np.random.default_rng(0)
    X = np.maximum(rng.standard_normal((200, 12)), 0.0)
    X[:, [2, 7]] = 0.0
    Xdup = np.column_stack([X, X[:, 0]])
    for name, spec in MEASURES.items():
        tol = 1e-5 if spec.range[1] == 90.0 else 1e-7
        if not spec.identity_when:
            assert spec(X, X) == pytest.approx(spec.identity, abs=tol), name
            assert spec(Xdup, Xdup) == pytest.approx(spec.identity, abs=tol), name
        elif name == "max_match":
            assert "dead" in spec.identity_when
            assert spec(X, X) == pytest.approx(10 / 12)
        elif name == "pwcca":
            assert "independent" in spec.identity_when
            assert spec(X, X) == pytest.approx(1.0, abs=1e-9)
            assert spec(Xdup, Xdup) < 1.0 - 1e-3
        else:
            raise AssertionError(f"{name} states a condition on its identity that no test checks")
    assert MEASURES["max_match_active"](X, X) == 1.0
