"""Subspace match (Wang et al. 2018): deepspan.measures.match against the least-squares reference and the theory.

* Equality of index sets with ``tests/match_reference.py`` (one lstsq per
  pruning step, the definitions as written) on random Gaussian, planted,
  dead/duplicated-neuron and trained-MLP activations.
* Planted values (same subspace -> similarity 1; independent -> 0) and the
  similarity bookkeeping of dead neurons.
* The theory as hypothesis properties on small cases built to have partial
  matches: unions of matches are matches, the maximum match contains every
  match, monotonicity in eps, invariances (scale, sign, permutation, swap,
  invertible mixing at eps = 0), v-minimal matches, simple matches.
* The eps helpers, the layer-wise similarity on FeatureSets, the streaming
  (from_stats) route, and bad input.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import deepspan
from deepspan import CrossGramAccumulator, InputError, SampleMismatchError
from deepspan.data import load_digits
from deepspan.measures.match import (
    ATOL,
    DEFAULT_EPS_GRID,
    Match,
    MatchGram,
    TrivialSpanWarning,
    is_match,
    layer_match_similarity,
    max_epsilon,
    max_match,
    min_epsilon_for_size,
    minimal_match,
    relative_distance,
    simple_matches,
)
from match_reference import ls_distances, ls_is_match, ls_max_match, ls_minimal_match

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402
from torch.nn import functional as F  # noqa: E402

SETTINGS = settings(deadline=None)  # max_examples from the profile in conftest (30)
seeds = st.integers(min_value=0, max_value=2**32 - 1)
EPS_PLANTED = (0.05, 0.15, 0.3, 0.5, 0.8)


# --------------------------------------------------------------------------- helpers
def key(pair) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """((X...), (Y...)) of a Match or of an (X, Y) pair of index arrays, sorted."""
    if isinstance(pair, Match):
        return pair.key()
    X, Y = pair
    return tuple(sorted(int(i) for i in X)), tuple(sorted(int(i) for i in Y))


def assert_same_as_reference(A, B, eps, gram=None):
    m = (gram or MatchGram.from_activations(A, B)).max_match(eps)
    ref = ls_max_match(A, B, eps)
    assert key(m) == key(ref), f"eps={eps}: deepspan {key(m)} != least squares {key(ref)}"
    return m


def planted_pair(seed, n=200, shared=4, extra_a=3, extra_b=3, noise=0.05, mix_a=5, mix_b=5):
    """A = [Q Ma + noise, independent], B = [Q Mb + noise, independent] with a shared random Q (n x shared),
    columns permuted. Returns (A, B, shared columns of A, shared columns of B)."""
    rng = np.random.default_rng(seed)
    Q = rng.standard_normal((n, shared))
    Sa = Q @ rng.standard_normal((shared, mix_a)) / math.sqrt(shared)
    Sb = Q @ rng.standard_normal((shared, mix_b)) / math.sqrt(shared)
    Sa += noise * rng.standard_normal(Sa.shape)
    Sb += noise * rng.standard_normal(Sb.shape)
    A = np.hstack([Sa, rng.standard_normal((n, extra_a))])
    B = np.hstack([Sb, rng.standard_normal((n, extra_b))])
    pa, pb = rng.permutation(A.shape[1]), rng.permutation(B.shape[1])
    inv_a, inv_b = np.argsort(pa), np.argsort(pb)
    return A[:, pa], B[:, pb], np.sort(inv_a[:mix_a]), np.sort(inv_b[:mix_b])


@st.composite
def partial_cases(draw, max_n=200):
    """(A, B, eps): columns from a shared low-rank factor (each on a random subset of its factors, plus
    noise) and independent columns on each side, permuted; N in [30, max_n], 2-12 neurons per side."""
    seed = draw(seeds)
    n = draw(st.integers(30, max_n))
    r = draw(st.integers(1, 4))
    ka, kb = draw(st.integers(1, 7)), draw(st.integers(1, 7))
    ja, jb = draw(st.integers(0, 4)), draw(st.integers(0, 4))
    if ka + ja < 2:
        ja = 1
    if kb + jb < 2:
        jb = 1
    noise = draw(st.sampled_from([0.0, 0.02, 0.1, 0.3, 0.6]))
    eps = draw(st.floats(0.05, 0.95, exclude_max=True))
    rng = np.random.default_rng(seed)
    Fac = rng.standard_normal((n, r))

    def side(k, j):
        mask = rng.random((r, k)) < 0.6
        mask[rng.integers(r, size=k), np.arange(k)] = True
        S = Fac @ (rng.standard_normal((r, k)) * mask)
        S /= np.linalg.norm(S, axis=0)
        S += noise * rng.standard_normal((n, k)) / math.sqrt(n)
        M = np.hstack([S, rng.standard_normal((n, j)) / math.sqrt(n)])
        return M[:, rng.permutation(k + j)]

    return side(ka, ja), side(kb, jb), float(eps)


def some_matches(gram: MatchGram, eps: float, rng: np.random.Generator, n_restricted: int = 3) -> list[Match]:
    """Matches found several ways: all simple matches and max matches restricted to random subsets."""
    found = list(gram.simple_matches(eps))
    for _ in range(n_restricted):
        X = np.flatnonzero(rng.random(gram.n_a) < 0.6)
        Y = np.flatnonzero(rng.random(gram.n_b) < 0.6)
        m = gram.max_match(eps, X, Y)
        assert set(m.a) <= set(X) and set(m.b) <= set(Y)
        found.append(m)
    return found


# --------------------------------------------------------------------------- equality with the reference
@pytest.mark.parametrize("seed,n,n_a,n_b", [(0, 30, 12, 12), (1, 40, 10, 12), (2, 50, 12, 8), (3, 100, 12, 12)])
@pytest.mark.parametrize("eps", [0.3, 0.6, 0.75, 0.8, 0.85, 0.9])
def test_gaussian_cases_equal_reference(seed, n, n_a, n_b, eps):
    rng = np.random.default_rng(seed)
    A, B = rng.standard_normal((n, n_a)), rng.standard_normal((n, n_b))
    assert_same_as_reference(A, B, eps)


@SETTINGS
@given(seeds, st.integers(30, 60), st.integers(2, 12), st.integers(2, 12), st.floats(0.05, 0.95, exclude_max=True))
def test_gaussian_cases_equal_reference_property(seed, n, n_a, n_b, eps):
    rng = np.random.default_rng(seed)
    A, B = rng.standard_normal((n, n_a)), rng.standard_normal((n, n_b))
    assert_same_as_reference(A, B, eps)


def test_gaussian_cases_are_not_all_trivial():
    """The Gaussian cases above include partial matches (neither empty nor everything)."""
    rng = np.random.default_rng(0)
    A, B = rng.standard_normal((30, 12)), rng.standard_normal((30, 12))
    m = max_match(A, B, 0.85)
    assert 0 < m.similarity < 1


@SETTINGS
@given(partial_cases(max_n=120), st.data())
def test_partial_cases_equal_reference(case, data):
    """Maximum, restricted maximum and index-order minimal matches equal the least-squares route."""
    A, B, eps = case
    gram = MatchGram.from_activations(A, B)
    M = assert_same_as_reference(A, B, eps, gram)
    rng = np.random.default_rng(data.draw(seeds))
    X = np.flatnonzero(rng.random(A.shape[1]) < 0.6)
    Y = np.flatnonzero(rng.random(B.shape[1]) < 0.6)
    assert key(gram.max_match(eps, X, Y)) == key(ls_max_match(A, B, eps, X, Y))
    members = [("a", int(i)) for i in M.a] + [("b", int(i)) for i in M.b]
    if members:
        side, v = data.draw(st.sampled_from(members))
        assert key(gram.minimal_match(side, v, eps, order="index")) == key(ls_minimal_match(A, B, side, v, eps))


@pytest.mark.parametrize("noise", [0.0, 0.01, 0.1, 0.3])
@pytest.mark.parametrize("seed", [0, 1])
def test_planted_cases_equal_reference_over_eps_grid(seed, noise):
    A, B, sa, sb = planted_pair(seed, noise=noise)
    gram = MatchGram.from_activations(A, B)
    for eps in EPS_PLANTED:
        m = assert_same_as_reference(A, B, eps, gram)
        # the noise-only neurons (far from everything at N = 200) never match below eps = 0.8
        if eps <= 0.5:
            assert set(m.a) <= set(sa) and set(m.b) <= set(sb)
    if noise <= 0.01:
        m = gram.max_match(0.05)
        assert key(m) == key((sa, sb))


def _dead_and_duplicates(seed, n=80):
    A, B, sa, sb = planted_pair(seed, n=n, shared=3, extra_a=2, extra_b=2, noise=0.05, mix_a=4, mix_b=4)
    rng = np.random.default_rng(seed + 100)
    A = np.hstack([A, np.zeros((n, 1)), A[:, [sa[0]]], -2.5 * A[:, [sa[1]]], A[:, [5]]])
    B = np.hstack([np.zeros((n, 1)), B, 1e3 * B[:, [sb[2]]], B[:, [sb[0]]], np.zeros((n, 1))])
    pa, pb = rng.permutation(A.shape[1]), rng.permutation(B.shape[1])
    return A[:, pa], B[:, pb]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_dead_and_duplicated_neurons_equal_reference(seed):
    A, B = _dead_and_duplicates(seed)
    dead_a = np.flatnonzero(np.linalg.norm(A, axis=0) == 0)
    dead_b = np.flatnonzero(np.linalg.norm(B, axis=0) == 0)
    gram = MatchGram.from_activations(A, B)
    for eps in (0.0, *EPS_PLANTED, 0.95):
        m = assert_same_as_reference(A, B, eps, gram)
        assert not set(m.a) & set(dead_a) and not set(m.b) & set(dead_b)
        assert (m.dead_a, m.dead_b) == (1, 2)


def test_duplicates_match_each_other_exactly():
    """A column and its copy / multiple in B: at eps = 0 they form a match, dead columns never do."""
    rng = np.random.default_rng(5)
    A = rng.standard_normal((60, 4))
    B = np.column_stack([A[:, 0], A[:, 0], -3.0 * A[:, 0], np.zeros(60), rng.standard_normal(60)])
    m = max_match(A, B, 0.0)
    assert key(m) == ((0,), (0, 1, 2))
    assert key(m) == key(ls_max_match(A, B, 0.0))
    assert not is_match(A, B, [0], [0, 3], 0.5)  # a dead neuron is never in a match


# trained MLPs on scikit-learn digits --------------------------------------------------------------
def _trained_hidden(seed: int, X: torch.Tensor, y: torch.Tensor, probe: torch.Tensor, width: int = 16) -> np.ndarray:
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(64, width), nn.ReLU(), nn.Linear(width, 10))
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(4):
        perm = torch.randperm(len(X), generator=gen)
        for i in range(0, len(X), 64):
            idx = perm[i : i + 64]
            opt.zero_grad()
            F.cross_entropy(model(X[idx]), y[idx]).backward()
            opt.step()
    acc = (model(X).argmax(1) == y).float().mean().item()
    assert acc > 0.5, f"the MLP did not train (accuracy {acc:.2f})"
    return deepspan.extract(model, probe, "1", progress=False)["1"].astype(np.float64)


@pytest.fixture(scope="module")
def mlp_pair() -> tuple[np.ndarray, np.ndarray]:
    """Hidden ReLU activations (500 x 16) of two MLPs trained from different seeds on the digits."""
    d = load_digits()
    X = torch.as_tensor(d.X.reshape(len(d.X), -1), dtype=torch.float32)
    y = torch.as_tensor(d.y)
    probe = X[:500]
    return _trained_hidden(0, X, y, probe), _trained_hidden(1, X, y, probe)


@pytest.mark.parametrize("eps", [0.2, 0.3, 0.5])
def test_trained_mlps_equal_reference(mlp_pair, eps):
    A, B = mlp_pair
    assert A.shape == B.shape == (500, 16)
    m = assert_same_as_reference(A, B, eps)
    dead = (int((np.linalg.norm(A, axis=0) <= 1e-16).sum()), int((np.linalg.norm(B, axis=0) <= 1e-16).sum()))
    assert (m.dead_a, m.dead_b) == dead


def test_trained_mlps_minimal_matches_equal_reference(mlp_pair):
    A, B = mlp_pair
    gram = MatchGram.from_activations(A, B)
    eps = 0.5
    m = gram.max_match(eps)
    assert m.size > 0, "no neuron of the trained MLPs matches at eps = 0.5; the case tests nothing"
    checked = 0
    for side, idx in (("a", m.a[:2]), ("b", m.b[:1])):
        for i in idx:
            mm = gram.minimal_match(side, int(i), eps, order="index")
            assert key(mm) == key(ls_minimal_match(A, B, side, int(i), eps))
            checked += 1
    assert checked >= 2


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_minimal_match_index_order_equals_reference(seed):
    A, B, sa, sb = planted_pair(seed, n=60, shared=3, extra_a=2, extra_b=2, noise=0.2, mix_a=4, mix_b=4)
    A = np.hstack([A, np.zeros((60, 1))])
    for eps in (0.3, 0.5):
        gram = MatchGram.from_activations(A, B)
        for side, n in (("a", gram.n_a), ("b", gram.n_b)):
            for i in range(n):
                mm = gram.minimal_match(side, i, eps, order="index")
                ref = ls_minimal_match(A, B, side, i, eps)
                if ref is None:
                    assert mm is None
                else:
                    assert mm is not None and key(mm) == key(ref)
                    # the functional form gives the same
                    assert key(minimal_match(A, B, side, i, eps)) == key(ref)


# --------------------------------------------------------------------------- planted values
def test_two_bases_of_one_subspace_give_similarity_one():
    rng = np.random.default_rng(0)
    Q = rng.standard_normal((2000, 64))
    A = Q @ rng.standard_normal((64, 64))
    B = Q @ rng.standard_normal((64, 64))
    m = max_match(A, B, 0.01)
    assert m.similarity == 1.0 and m.active_similarity == 1.0
    assert key(m) == (tuple(range(64)), tuple(range(64)))


def test_independent_gaussians_give_similarity_zero():
    rng = np.random.default_rng(1)
    A, B = rng.standard_normal((2000, 64)), rng.standard_normal((2000, 64))
    gram = MatchGram.from_activations(A, B)
    for eps in (0.1, 0.3, 0.5, 0.7, 0.9):
        m = gram.max_match(eps)
        assert m.similarity == 0.0 and m.size == 0, eps


# --------------------------------------------------------------------------- similarity bookkeeping
def test_dead_neurons_count_in_similarity_not_in_active_similarity():
    rng = np.random.default_rng(3)
    Q = rng.standard_normal((100, 4))
    A = np.hstack([Q @ rng.standard_normal((4, 4)), np.zeros((100, 2))])  # 4 active + 2 dead
    B = np.hstack([np.zeros((100, 1)), Q @ rng.standard_normal((4, 4))])  # 1 dead + 4 active
    m = max_match(A, B, 0.01)
    assert key(m) == ((0, 1, 2, 3), (1, 2, 3, 4))
    assert (m.n_a, m.n_b, m.dead_a, m.dead_b) == (6, 5, 2, 1)
    assert m.size == 8
    assert m.similarity == pytest.approx(8 / 11)
    assert m.active_similarity == pytest.approx(1.0)
    d = m.to_dict()
    assert d["a"] == [0, 1, 2, 3] and d["b"] == [1, 2, 3, 4]
    assert d["similarity"] == m.similarity and d["active_similarity"] == m.active_similarity
    assert d["dead_a"] == 2 and d["dead_b"] == 1


def test_all_dead_gives_zero_active_similarity():
    rng = np.random.default_rng(0)
    A = np.zeros((20, 2))
    B = rng.standard_normal((20, 3))
    m = max_match(A, B, 0.5)
    assert m.size == 0 and (m.dead_a, m.dead_b) == (2, 0)
    assert m.similarity == 0.0 and m.active_similarity == 0.0


def test_tiny_but_alive_neuron_is_not_dead():
    """The dead threshold is on the norm (<= 1e-16): a neuron of norm ~1e-10 is alive and, relative
    distances being scale-free, behaves like its rescaled copy -- also inside a span."""
    rng = np.random.default_rng(0)
    z, w = rng.standard_normal(50), rng.standard_normal(50)
    A = np.column_stack([1e-11 * z, rng.standard_normal(50)])
    B = np.column_stack([z, rng.standard_normal(50)])
    m = max_match(A, B, 0.01)
    assert key(m) == key(ls_max_match(A, B, 0.01)) == ((0,), (0,))
    assert m.dead_a == 0
    # the tiny neuron as part of a two-neuron span: (A, B) = ([1e-11 z, w], [z, w]) is a 0-match
    A = np.column_stack([1e-11 * z, w])
    B = np.column_stack([z, w])
    assert key(ls_max_match(A, B, 0.01)) == ((0, 1), (0, 1))
    assert is_match(A, B, [0, 1], [0, 1], 0.01)
    assert key(max_match(A, B, 0.01)) == ((0, 1), (0, 1))


# --------------------------------------------------------------------------- theory (hypothesis)
@SETTINGS
@given(partial_cases(), seeds)
def test_union_of_two_matches_is_a_match(case, seed):
    A, B, eps = case
    gram = MatchGram.from_activations(A, B)
    rng = np.random.default_rng(seed)
    found = some_matches(gram, eps, rng)
    for m in found:
        assert gram.is_match(m.a, m.b, eps)
    for i in range(len(found)):
        for j in range(i + 1, len(found)):
            X = np.union1d(found[i].a, found[j].a)
            Y = np.union1d(found[i].b, found[j].b)
            assert gram.is_match(X, Y, eps)
    if len(found) >= 2:
        X, Y = np.union1d(found[0].a, found[-1].a), np.union1d(found[0].b, found[-1].b)
        assert ls_is_match(A, B, X, Y, eps)


@SETTINGS
@given(partial_cases(), seeds)
def test_maximum_match_contains_every_match(case, seed):
    A, B, eps = case
    gram = MatchGram.from_activations(A, B)
    M = gram.max_match(eps)
    assert gram.is_match(M.a, M.b, eps)
    for m in some_matches(gram, eps, np.random.default_rng(seed)):
        assert set(m.a) <= set(M.a) and set(m.b) <= set(M.b)
    # and any subset pair that is a match
    rng = np.random.default_rng(seed + 1)
    for _ in range(5):
        X = np.flatnonzero(rng.random(gram.n_a) < 0.5)
        Y = np.flatnonzero(rng.random(gram.n_b) < 0.5)
        if gram.is_match(X, Y, eps):
            assert set(X) <= set(M.a) and set(Y) <= set(M.b)


@SETTINGS
@given(partial_cases(), st.lists(st.floats(0.0, 0.95), min_size=2, max_size=6))
def test_similarity_is_non_decreasing_in_eps(case, eps_list):
    A, B, _ = case
    gram = MatchGram.from_activations(A, B)
    prev = None
    for eps in sorted(eps_list):
        m = gram.max_match(eps)
        if prev is not None:
            assert m.similarity >= prev.similarity
            assert set(prev.a) <= set(m.a) and set(prev.b) <= set(m.b)
        prev = m


@SETTINGS
@given(partial_cases(), st.data())
def test_invariant_to_scaling_one_neuron(case, data):
    A, B, eps = case
    ref = max_match(A, B, eps)
    side = data.draw(st.sampled_from("ab"))
    M = A if side == "a" else B
    j = data.draw(st.integers(0, M.shape[1] - 1))
    factor = 10.0 ** data.draw(st.floats(-3, 3)) * data.draw(st.sampled_from([1.0, -1.0]))
    M2 = M.copy()
    M2[:, j] *= factor
    m = max_match(M2, B, eps) if side == "a" else max_match(A, M2, eps)
    assert key(m) == key(ref)


@SETTINGS
@given(partial_cases(), st.data())
def test_invariant_to_sign_flips_and_moderate_scaling_of_all_neurons(case, data):
    A, B, eps = case
    ref = max_match(A, B, eps)
    rng = np.random.default_rng(data.draw(seeds))
    sa = 10.0 ** rng.uniform(-1, 1, A.shape[1]) * rng.choice([-1.0, 1.0], A.shape[1])
    sb = 10.0 ** rng.uniform(-1, 1, B.shape[1]) * rng.choice([-1.0, 1.0], B.shape[1])
    assert key(max_match(A * sa, B * sb, eps)) == key(ref)


@pytest.mark.parametrize("seed", [0, 1])
def test_invariant_to_scaling_neurons_by_1e3_and_1e_minus3(seed):
    """Relative distances do not depend on the neurons' scales: scaling one neuron of a side by 1e3 and
    another by 1e-3 (both inside the documented 1e-3..1e3 range) must not change the match.

    B spans exactly span(A) (B = A M), so at eps = 0.01 everything matches whatever the scales."""
    rng = np.random.default_rng(seed)
    A = rng.standard_normal((100, 3))
    B = A @ rng.standard_normal((3, 3))
    assert key(max_match(A, B, 0.01)) == ((0, 1, 2), (0, 1, 2))
    B2 = B * np.array([1e3, 1e-3, 1.0])
    assert key(ls_max_match(A, B2, 0.01)) == ((0, 1, 2), (0, 1, 2))
    assert key(max_match(A, B2, 0.01)) == ((0, 1, 2), (0, 1, 2))


@SETTINGS
@given(partial_cases(), seeds)
def test_invariant_to_permuting_neurons(case, seed):
    A, B, eps = case
    rng = np.random.default_rng(seed)
    pa, pb = rng.permutation(A.shape[1]), rng.permutation(B.shape[1])
    ref = max_match(A, B, eps)
    m = max_match(A[:, pa], B[:, pb], eps)  # new column j is old column p[j]
    assert key((pa[m.a], pb[m.b])) == key(ref)


@SETTINGS
@given(partial_cases())
def test_swapping_a_and_b_swaps_the_result(case):
    A, B, eps = case
    m, s = max_match(A, B, eps), max_match(B, A, eps)
    assert key((m.a, m.b)) == key((s.b, s.a))
    assert m.similarity == pytest.approx(s.similarity)
    assert (m.n_a, m.n_b, m.dead_a, m.dead_b) == (s.n_b, s.n_a, s.dead_b, s.dead_a)


@SETTINGS
@given(seeds, st.integers(30, 200), st.integers(2, 12))
def test_invertible_mixing_matches_everything_at_eps_zero(seed, n, k):
    rng = np.random.default_rng(seed)
    A = rng.standard_normal((n, k))
    U, _ = np.linalg.qr(rng.standard_normal((k, k)))
    V, _ = np.linalg.qr(rng.standard_normal((k, k)))
    M = U @ np.diag(rng.uniform(0.5, 2.0, k)) @ V  # condition number <= 4
    B = A @ M
    m = max_match(A, B, 0.0)
    assert m.similarity == 1.0
    assert max_match(B, A, 0.0).similarity == 1.0


@SETTINGS
@given(partial_cases(max_n=120), st.data())
def test_minimal_match_is_a_v_minimal_match(case, data):
    A, B, eps = case
    gram = MatchGram.from_activations(A, B)
    M = gram.max_match(eps)
    members = [("a", int(i)) for i in M.a] + [("b", int(i)) for i in M.b]
    outside = [("a", i) for i in range(gram.n_a) if i not in M.a] + [("b", i) for i in range(gram.n_b) if i not in M.b]
    for side, i in outside[:2]:
        assert gram.minimal_match(side, i, eps) is None
    if not members:
        return
    side, v = data.draw(st.sampled_from(members))
    for order, seed in (("index", None), ("random", data.draw(st.integers(0, 1000)))):
        mm = gram.minimal_match(side, v, eps, order=order, seed=seed)
        assert mm is not None
        assert v in (mm.a if side == "a" else mm.b)
        assert gram.is_match(mm.a, mm.b, eps)
        assert set(mm.a) <= set(M.a) and set(mm.b) <= set(M.b)
        for s, w in [("a", int(i)) for i in mm.a] + [("b", int(i)) for i in mm.b]:
            if (s, w) == (side, v):
                continue
            X = [i for i in mm.a if not (s == "a" and i == w)]
            Y = [i for i in mm.b if not (s == "b" and i == w)]
            left = gram.max_match(eps, X, Y)
            assert v not in (left.a if side == "a" else left.b), (order, s, w)
        if order == "random":  # seeded: reproducible
            again = gram.minimal_match(side, v, eps, order=order, seed=seed)
            assert key(again) == key(mm)


@SETTINGS
@given(partial_cases(max_n=120), st.sampled_from(["index", "random"]))
def test_union_of_simple_matches_is_the_maximum_match(case, order):
    A, B, eps = case
    gram = MatchGram.from_activations(A, B)
    M = gram.max_match(eps)
    sm = gram.simple_matches(eps, order=order, seed=7)
    X = set().union(*(set(m.a.tolist()) for m in sm)) if sm else set()
    Y = set().union(*(set(m.b.tolist()) for m in sm)) if sm else set()
    assert (X, Y) == (set(M.a.tolist()), set(M.b.tolist()))
    assert len({m.key() for m in sm}) == len(sm)  # distinct
    assert [m.size for m in sm] == sorted((m.size for m in sm), reverse=True)  # largest first
    for m in sm:
        assert gram.is_match(m.a, m.b, eps) and m.size >= 1


def test_simple_matches_functional_form():
    A, B, sa, sb = planted_pair(0, n=60, shared=2, extra_a=2, extra_b=2, noise=0.0, mix_a=3, mix_b=3)
    sm = simple_matches(A, B, 0.01)
    M = max_match(A, B, 0.01)
    assert key(M) == key((sa, sb))
    # a 2-dim shared subspace: each simple match has two neurons on each side
    assert sm and all((len(m.a), len(m.b)) == (2, 2) for m in sm)
    assert set().union(*(set(m.a.tolist()) for m in sm)) == set(M.a.tolist())


@SETTINGS
@given(partial_cases(), seeds)
def test_relative_distance_agrees_with_gram_distances(case, seed):
    A, B, _ = case
    gram = MatchGram.from_activations(A, B)
    AB = np.hstack([A, B])
    rng = np.random.default_rng(seed)
    for _ in range(4):
        t = int(rng.integers(AB.shape[1]))
        span = np.flatnonzero(rng.random(AB.shape[1]) < 0.5)
        span = span[span != t]
        d_gram = gram.distances(np.array([t]), span)[0]
        d_ls = relative_distance(AB[:, t], AB[:, span])
        assert abs(d_gram - d_ls) <= 1e-6
        assert abs(d_ls - ls_distances(AB[:, [t]], AB[:, span])[0]) <= 1e-9


@pytest.mark.parametrize("delta", [1e-2, 1e-3, 1e-4, 1e-5])
def test_gram_distance_error_within_documented_bound_for_nearly_dependent_neurons(delta):
    """A span of two nearly parallel neurons a, a + delta n. The distance of n + 1e-3 r to it is ~1.2e-3
    by least squares. Through the Gram matrix the squared distance carries an absolute error of about
    1e-15 / delta^2 (match.py docstring): asserted with 10x slack. Where that error is far below d^2
    (delta >= 1e-3) the match decision at eps = 5e-4 agrees with least squares."""
    rng = np.random.default_rng(0)
    a, n, r = rng.standard_normal((3, 100))
    A = np.column_stack([a, a + delta * n])
    B = np.column_stack([a, n + 1e-3 * r])
    d_ls = relative_distance(B[:, 1], A)
    assert d_ls == pytest.approx(1.17e-3, rel=0.01)
    d_gram = MatchGram.from_activations(A, B).distances(np.array([3]), np.array([0, 1]))[0]
    assert abs(d_gram**2 - d_ls**2) <= 1e-14 / delta**2
    if delta >= 1e-3:
        assert abs(d_gram - d_ls) <= 1e-6
        assert key(max_match(A, B, 5e-4)) == key(ls_max_match(A, B, 5e-4))


def test_relative_distance_basics():
    rng = np.random.default_rng(0)
    z = rng.standard_normal(20)
    assert relative_distance(z, np.zeros((20, 0))) == 1.0
    assert relative_distance(z, 2 * z) == pytest.approx(0.0, abs=1e-12)  # 1-D S is one neuron
    S = rng.standard_normal((20, 3))
    zo = z - S @ np.linalg.lstsq(S, z, rcond=None)[0]  # orthogonal to span(S)
    assert relative_distance(zo, S) == pytest.approx(1.0)
    with pytest.raises(InputError, match="dead"):
        relative_distance(np.zeros(20), S)
    with pytest.raises(SampleMismatchError, match="20 samples but S has 19"):
        relative_distance(z, S[:19])


@SETTINGS
@given(partial_cases(), seeds)
def test_is_match_agrees_with_reference(case, seed):
    A, B, eps = case
    rng = np.random.default_rng(seed)
    gram = MatchGram.from_activations(A, B)
    for _ in range(4):
        X = np.flatnonzero(rng.random(A.shape[1]) < 0.5)
        Y = np.flatnonzero(rng.random(B.shape[1]) < 0.5)
        assert gram.is_match(X, Y, eps) == ls_is_match(A, B, X, Y, eps)


# --------------------------------------------------------------------------- eps helpers
@SETTINGS
@given(partial_cases(), st.integers(0, 2))
def test_max_epsilon(case, n_dead):
    A, B, _ = case
    A = np.hstack([A, np.zeros((len(A), n_dead))])
    gram = MatchGram.from_activations(A, B)
    me = gram.max_epsilon()
    assert me == pytest.approx(max_epsilon(A, B))
    assert 0.0 <= me <= 1.0
    active = (gram.n_a - n_dead, gram.n_b)
    if me < 1.0:
        m = gram.max_match(me)
        assert (len(m.a), len(m.b)) == active
        assert m.active_similarity == 1.0
    if me > 1e-4:
        m = gram.max_match(me - 1e-4)
        assert (len(m.a), len(m.b)) != active


@SETTINGS
@given(partial_cases(max_n=100), st.data())
def test_min_epsilon_for_size(case, data):
    A, B, _ = case
    gram = MatchGram.from_activations(A, B)
    size = data.draw(st.integers(1, min(gram.n_a, gram.n_b)))
    tol = 1e-4
    e = gram.min_epsilon_for_size(size, tol)
    assert 0.0 <= e < 1.0
    m = gram.max_match(e)
    assert len(m.a) >= size and len(m.b) >= size
    if e > 2 * tol:
        m2 = gram.max_match(e - 2 * tol)
        assert len(m2.a) < size or len(m2.b) < size
    assert min_epsilon_for_size(A, B, size, tol) == pytest.approx(e)


def test_min_epsilon_for_size_zero_when_already_matching():
    rng = np.random.default_rng(0)
    A = rng.standard_normal((50, 3))
    B = A @ rng.standard_normal((3, 3))
    assert min_epsilon_for_size(A, B, 3) == 0.0


# --------------------------------------------------------------------------- layer-wise similarity
def _cnn(seed: int) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU())


@pytest.fixture(scope="module")
def digits200():
    d = load_digits()
    return d.X[:200].reshape(200, 1, 8, 8).astype(np.float32), d.ids[:200]


@pytest.fixture(scope="module")
def cnn_featuresets(digits200):
    X, ids = digits200
    return tuple(deepspan.extract(_cnn(s), X, "1", policy="channels", ids=ids, progress=False) for s in (0, 1))


def test_layer_match_similarity_default_grid(cnn_featuresets):
    fa, fb = cnn_featuresets
    assert fa["1"].shape == (200 * 36, 4)
    rows = layer_match_similarity(fa, fb)
    assert [r["eps"] for r in rows] == list(DEFAULT_EPS_GRID)
    for r in rows:
        assert (r["layer_a"], r["layer_b"]) == ("1", "1")
        assert 0.0 <= r["similarity"] <= 1.0 and r["std"] >= 0.0
        assert r["repeats"] == 1 and r["n_rows"] == 7200
    # all rows (n <= n_rows): the similarity is the maximum match on the whole layer
    gram = MatchGram.from_activations(fa["1"], fb["1"])
    for r in rows:
        assert r["similarity"] == pytest.approx(gram.max_match(r["eps"]).similarity)
        assert r["std"] == 0.0 and r["sem"] == 0.0 and r["independent_draws"]   # every row once: exact
    sims = [r["similarity"] for r in rows]
    assert sims == sorted(sims)
    # layers given as pairs
    assert layer_match_similarity(fa, fb, layers=[("1", "1")]) == rows


def test_layer_match_similarity_row_samples_are_seeded(cnn_featuresets):
    fa, fb = cnn_featuresets
    rows = layer_match_similarity(fa, fb, n_rows=2000, repeats=3, seed=5)
    assert len(rows) == len(DEFAULT_EPS_GRID)
    for r in rows:
        assert r["repeats"] == 3 and r["n_rows"] == 2000
        assert 0.0 <= r["similarity"] <= 1.0 and r["std"] >= 0.0
        assert r["sem"] == pytest.approx(r["std"] / math.sqrt(3)) and r["independent_draws"]
    assert layer_match_similarity(fa, fb, n_rows=2000, repeats=3, seed=5) == rows
    # the repeats by hand: rows default_rng([seed, r]).choice(N, n_rows) of both; mean and std (ddof=1) over them
    sims = []
    for r in range(3):
        idx = np.sort(np.random.default_rng([5, r]).choice(len(fa["1"]), size=2000, replace=False))
        sims.append(max_match(fa["1"][idx], fb["1"][idx], 0.5).similarity)
    got = next(r for r in rows if r["eps"] == 0.5)
    assert got["similarity"] == pytest.approx(np.mean(sims)) and got["std"] == pytest.approx(np.std(sims, ddof=1))


def test_layer_match_similarity_refuses_different_positions(digits200):
    X, ids = digits200
    fa = deepspan.extract(_cnn(0), X, "1", policy="channels", ids=ids, positions_per_image=10, seed=0, progress=False)
    fb = deepspan.extract(_cnn(1), X, "1", policy="channels", ids=ids, positions_per_image=10, seed=1, progress=False)
    assert fa.sample_hash == fb.sample_hash and fa["1"].shape == fb["1"].shape == (2000, 4)
    with pytest.raises(SampleMismatchError, match="different rows"):
        layer_match_similarity(fa, fb)
    fc = deepspan.extract(_cnn(1), X, "1", policy="channels", ids=ids, positions_per_image=10, seed=0, progress=False)
    rows = layer_match_similarity(fa, fc)
    assert all(r["n_rows"] == 2000 for r in rows)
    # a pool of 10 positions per image is not every row: its repeats would not be independent draws of all rows
    assert not any(r["independent_draws"] for r in rows)


def test_layer_match_similarity_refuses_different_sample_order(digits200, cnn_featuresets):
    X, ids = digits200
    perm = np.random.default_rng(0).permutation(len(X))
    fb = deepspan.extract(_cnn(1), X[perm], "1", policy="channels", ids=ids[perm], progress=False)
    with pytest.raises(SampleMismatchError, match="different rows"):
        layer_match_similarity(cnn_featuresets[0], fb)


def test_layer_match_similarity_bad_arguments(cnn_featuresets):
    fa, fb = cnn_featuresets
    with pytest.raises(InputError, match=r"eps must be in \[0, 1\)"):
        layer_match_similarity(fa, fb, eps_grid=(0.2, 1.0))


# --------------------------------------------------------------------------- streaming statistics
@pytest.mark.parametrize("batch", [1, 37, 500])
def test_from_stats_equals_from_activations(batch):
    A, B, _, _ = planted_pair(3, n=300, noise=0.1)
    A = A + 0.5  # non-zero means exercise the uncentered reconstruction
    acc = CrossGramAccumulator()
    for i in range(0, len(A), batch):
        acc.update(A[i : i + batch], B[i : i + batch])
    g_stats = MatchGram.from_stats(acc.finalize())
    g_act = MatchGram.from_activations(A, B)
    assert g_stats.n_samples == 300 and (g_stats.n_a, g_stats.n_b) == (A.shape[1], B.shape[1])
    np.testing.assert_allclose(g_stats.gram, g_act.gram, rtol=1e-10, atol=1e-8)
    for eps in EPS_PLANTED:
        assert key(g_stats.max_match(eps)) == key(g_act.max_match(eps)) == key(ls_max_match(A, B, eps))


def test_matchgram_from_torch_tensors():
    A, B, _, _ = planted_pair(4, n=120, noise=0.1)
    m = max_match(torch.as_tensor(A), torch.as_tensor(B), 0.3)
    assert key(m) == key(max_match(A, B, 0.3))


# --------------------------------------------------------------------------- bad input
@pytest.fixture()
def small_pair():
    rng = np.random.default_rng(0)
    return rng.standard_normal((40, 5)), rng.standard_normal((40, 4))


def test_different_sample_counts(small_pair):
    A, B = small_pair
    with pytest.raises(SampleMismatchError, match="A has 40 samples but B has 39"):
        max_match(A, B[:39], 0.3)
    with pytest.raises(SampleMismatchError, match="same samples"):
        MatchGram.from_activations(A[:10], B)


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_non_finite_values(small_pair, value):
    A, B = small_pair
    A = A.copy()
    A[7, 2] = value
    with pytest.raises(InputError, match=r"A contains 1 non-finite value\(s\).*sample 7, neuron 2"):
        max_match(A, B, 0.3)
    with pytest.raises(InputError, match=r"B contains 1 non-finite"):
        max_match(B, A, 0.3)
    G = np.eye(4)
    G[0, 1] = np.nan
    with pytest.raises(InputError, match="NaN/Inf"):
        MatchGram(G, 2)


def test_empty_matrices(small_pair):
    A, B = small_pair
    with pytest.raises(InputError, match=r"A is empty \(shape \(40, 0\)\)"):
        max_match(A[:, :0], B, 0.3)
    with pytest.raises(InputError, match=r"B is empty \(shape \(40, 0\)\)"):
        max_match(A, B[:, :0], 0.3)
    with pytest.raises(InputError, match=r"is empty"):
        max_match(A[:0], B[:0], 0.3)


def test_not_two_dimensional(small_pair):
    A, B = small_pair
    with pytest.raises(InputError, match="2-D samples x neurons"):
        max_match(A[:, 0], B, 0.3)


@pytest.mark.parametrize("eps", [-0.1, 1.0, 1.5, float("nan")])
def test_eps_outside_unit_interval(small_pair, eps):
    A, B = small_pair
    gram = MatchGram.from_activations(A, B)
    pattern = r"eps must be in \[0, 1\)"
    with pytest.raises(InputError, match=pattern):
        gram.max_match(eps)
    with pytest.raises(InputError, match=pattern):
        max_match(A, B, eps)
    with pytest.raises(InputError, match=pattern):
        gram.is_match([0], [0], eps)
    with pytest.raises(InputError, match=pattern):
        gram.minimal_match("a", 0, eps)
    with pytest.raises(InputError, match=pattern):
        gram.simple_matches(eps)


def test_eps_edges_are_accepted(small_pair):
    A, B = small_pair
    gram = MatchGram.from_activations(A, B)
    assert gram.max_match(0.0).eps == 0.0
    # inclusive rule d <= eps + atol with d <= 1: just below 1 every (active) neuron is within eps
    assert gram.max_match(1.0 - ATOL / 2).similarity == 1.0
    assert gram.max_match(np.nextafter(1.0, 0.0)).similarity == 1.0


@pytest.mark.parametrize("n", [3, 5])
def test_few_samples_warn_trivial_span(n):
    rng = np.random.default_rng(0)
    A, B = rng.standard_normal((n, 5)), rng.standard_normal((n, 2))
    with pytest.warns(TrivialSpanWarning, match=rf"N = {n} samples <= 5 neurons"):
        max_match(A, B, 0.3)
    with pytest.warns(TrivialSpanWarning, match="trivial"):
        MatchGram.from_activations(B, A)


def test_few_samples_warn_also_from_stats():
    rng = np.random.default_rng(0)
    acc = CrossGramAccumulator().update(rng.standard_normal((4, 6)), rng.standard_normal((4, 2)))
    with pytest.warns(TrivialSpanWarning, match=r"N = 4 samples <= 6 neurons"):
        MatchGram.from_stats(acc.finalize())


def test_enough_samples_do_not_warn(recwarn):
    rng = np.random.default_rng(0)
    max_match(rng.standard_normal((7, 6)), rng.standard_normal((7, 6)), 0.3)
    assert not [w for w in recwarn if issubclass(w.category, TrivialSpanWarning)]


def test_unknown_side_and_order(small_pair):
    A, B = small_pair
    gram = MatchGram.from_activations(A, B)
    with pytest.raises(InputError, match=r"side must be 'a' or 'b', got 'c'"):
        gram.minimal_match("c", 0, 0.3)
    with pytest.raises(InputError, match=r"side must be 'a' or 'b'"):
        minimal_match(A, B, "A", 0, 0.3)
    with pytest.raises(InputError, match=r"order must be 'index' or 'random', got 'sorted'"):
        gram.minimal_match("a", 0, 0.3, order="sorted")


def test_simple_matches_refuses_unknown_order():
    """An unknown order is bad input whatever the data: also when nothing matches at this eps."""
    A, B, _, _ = planted_pair(0, n=60, noise=0.0)
    gram = MatchGram.from_activations(A, B)
    assert gram.max_match(0.05).size > 0
    with pytest.raises(InputError, match=r"order must be 'index' or 'random', got 'greedy'"):
        gram.simple_matches(0.05, order="greedy")
    rng = np.random.default_rng(0)
    gram = MatchGram.from_activations(rng.standard_normal((40, 5)), rng.standard_normal((40, 4)))
    assert gram.max_match(0.3).size == 0
    with pytest.raises(InputError, match=r"order must be 'index' or 'random', got 'greedy'"):
        gram.simple_matches(0.3, order="greedy")


def test_out_of_range_neuron_index(small_pair):
    A, B = small_pair
    gram = MatchGram.from_activations(A, B)
    with pytest.raises(InputError, match=r"out of range for side 'a' with 5 neurons"):
        gram.minimal_match("a", 5, 0.3)
    with pytest.raises(InputError, match=r"out of range for side 'b' with 4 neurons"):
        gram.minimal_match("b", -1, 0.3)
    with pytest.raises(InputError, match="out of range"):
        gram.is_match([0, 9], [0], 0.3)
    with pytest.raises(InputError, match=r"out of range for side 'b'"):
        gram.max_match(0.3, [0], [4])
    with pytest.raises(InputError, match="out of range"):
        is_match(A, B, [0], [4], 0.3)


def test_restricted_max_match_with_repeated_indices():
    """Subsets are sets: a repeated index is one neuron, so the match has each neuron once and the
    similarity stays <= 1."""
    rng = np.random.default_rng(0)
    A = rng.standard_normal((50, 3))
    B = A @ rng.standard_normal((3, 3))
    gram = MatchGram.from_activations(A, B)
    m = gram.max_match(0.1, [0, 0, 0, 1, 2], [0, 1, 2, 2])
    assert key(m) == ((0, 1, 2), (0, 1, 2))
    assert m.a.tolist() == [0, 1, 2] and m.b.tolist() == [0, 1, 2]
    assert m.similarity == 1.0


def test_min_epsilon_for_size_bad_sizes(small_pair):
    A, B = small_pair
    gram = MatchGram.from_activations(A, B)
    with pytest.raises(InputError, match=r"size must be in 1\.\.4 .* got 0"):
        gram.min_epsilon_for_size(0)
    with pytest.raises(InputError, match=r"size must be in 1\.\.4 .* got 5"):
        gram.min_epsilon_for_size(5)
    B2 = np.hstack([B, np.zeros((40, 1))])  # dead neurons do not count
    with pytest.raises(InputError, match=r"size must be in 1\.\.4 .* got 5"):
        min_epsilon_for_size(np.hstack([A, A[:, :1]]), B2, 5)


def test_bad_gram_matrix():
    with pytest.raises(InputError, match="square"):
        MatchGram(np.eye(3)[:2], 1)
    with pytest.raises(InputError, match="0 < n_a < size"):
        MatchGram(np.eye(3), 3)
    with pytest.raises(InputError, match="0 < n_a < size"):
        MatchGram(np.eye(3), 0)


def test_boolean_masks_and_fractional_indices_are_refused():
    rng = np.random.default_rng(0)
    A = rng.standard_normal((40, 3))
    g = MatchGram.from_activations(A, A @ rng.standard_normal((3, 3)))
    with pytest.raises(InputError, match="boolean mask"):
        g.max_match(0.1, np.array([True, False, True]), [0, 1])
    with pytest.raises(InputError, match="must be integers"):
        g.max_match(0.1, [0.0, 1.7], [0])
