"""Every scale-invariant quantity is the same for c X as for X at any finite c > 0; what scales is exact or refused.

The rescaling rule (``deepspan.linalg.checks.scale_to_unit``): scale-invariant measures multiply their input by
the exact power of two that puts max|X| in [0.5, 1) before forming any product. Quantities that are *not*
scale-invariant (singular values, Gram matrices, feature-map eigenvalues) scale exactly where float64 can hold
them and raise :class:`~deepspan.errors.InputError` -- naming the magnitude and the fix -- where it cannot;
never NaN, inf, 0 or an "all zero" / "non-finite" report for finite, non-zero data.

Covered: every entry of ``MEASURES`` (iterated, so new measures are covered), ``compare`` / ``compare_many``
and ``deepspan compare --measure``, the reference Gram routes, ``angle``, ``pvector`` (every route),
``max_match`` and ``relative_distance``, ``feature_spectrum``, ``neural_collapse``, the accumulators
(Gram, cross-Gram, class, spectrum, NC4) with their ``*_from_stats`` routes.
"""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
from click.testing import CliRunner

from deepspan.cli import main
from deepspan.errors import InputError
from deepspan.linalg import (
    ClassStatsAccumulator,
    CrossGramAccumulator,
    GramAccumulator,
    angle,
    top_singular,
)
from deepspan.linalg.checks import scale_exponent, scale_to_unit, times_power_of_two
from deepspan.linalg.svd import METHODS
from deepspan.measures import (
    MEASURES,
    NC4Accumulator,
    SpectrumAccumulator,
    compare,
    compare_many,
    debiased_linear_cka,
    debiased_linear_cka_gram,
    feature_spectrum,
    feature_spectrum_from_stats,
    linear_cka,
    linear_cka_from_stats,
    linear_cka_gram,
    max_match,
    neural_collapse,
    neural_collapse_from_stats,
    pvector,
    pvector_angle_from_stats,
    pvector_from_stats,
    rbf_cka,
    svcca,
)
from deepspan.measures.match import MatchGram, relative_distance

#: Scales from 1e-300 to 1e300, with mantissas other than 1 (so the factor is not a power of two).
SCALES = (1e-300, 3.7e-251, 1e-200, 1e-160, 6.1e-101, 2.5e-30, 4.0e30, 1e100, 1e160, 7.3e199, 1e250, 1e300)
#: Scales at which the data's Gram matrix, squared norm and feature-map eigenvalues fit float64 ...
REPRESENTABLE = (1e-140, 6.1e-101, 2.5e-30, 4.0e30, 1e100, 1e140)
#: ... and scales at which they do not (they must raise InputError, not return inf, NaN or 0).
UNREPRESENTABLE = (1e-300, 1e-200, 1e-160, 1e160, 1e200, 1e300)
#: Messages that would misreport finite, non-zero data.
MISREPORTS = ("all zero", "non-finite", "NaN", "constant")


@pytest.fixture(autouse=True)
def _quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # degenerate-spectrum and trivial-span warnings are not the subject here
        yield


def _data(seed: int = 7, n: int = 60) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """X (n x 6) with unequal column scales and offsets; Y shares four directions of X; labels in 3 classes."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, 6)) * 10.0 ** rng.uniform(-0.5, 0.5, 6) + rng.uniform(0.0, 3.0, 6)
    Y = np.hstack([X[:, :4] @ rng.standard_normal((4, 4)) + 0.05 * rng.standard_normal((n, 4)),
                   rng.standard_normal((n, 2))]) + 1.0
    labels = np.arange(n) % 3
    X = X + 2.0 * np.eye(3)[labels] @ rng.standard_normal((3, 6))  # class structure for the collapse metrics
    return X, Y, labels


X, Y, LABELS = _data()


def _degrees(spec) -> bool:
    return spec.range == (0.0, 90.0)


def assert_same(got: float, want: float, degrees: bool = False, what: str = "") -> None:
    """Equal to 1e-9 relative (1e-9 absolute near 0), or to 1e-7 degrees for angles."""
    assert np.isfinite(got), f"{what}: {got}"
    if degrees:
        assert abs(got - want) <= 1e-7, f"{what}: {got!r} != {want!r}"
    else:
        assert got == pytest.approx(want, rel=1e-9, abs=1e-9), what


def refuses_clearly(fn, *fragments: str) -> str:
    """``fn()`` raises InputError whose message contains every fragment, says to rescale and misreports nothing."""
    with pytest.raises(InputError) as info:
        fn()
    msg = str(info.value)
    assert "rescale" in msg, msg
    for f in fragments:
        assert f in msg, f"{f!r} not in {msg!r}"
    assert not any(m in msg for m in MISREPORTS), msg
    return msg


# ----------------------------------------------------------------------------- the rule itself
@pytest.mark.parametrize("c", SCALES + (5e-324, 1.7e308, 1.0, 0.75))
def test_scale_to_unit_is_an_exact_power_of_two(c):
    a = np.array([[c, -c / 3.0], [0.0, c / 7.0]])
    s, e = scale_to_unit(a)
    assert 0.5 <= np.abs(s).max() < 1.0
    assert e == scale_exponent(a)
    np.testing.assert_array_equal(times_power_of_two(s, e), a)  # exact: nothing was rounded
    zero = np.zeros((2, 2))
    assert scale_to_unit(zero)[0] is zero and scale_to_unit(zero)[1] == 0


# ----------------------------------------------------------------------------- every registered measure
@pytest.mark.parametrize("c", SCALES)
@pytest.mark.parametrize("name", list(MEASURES))
def test_every_measure_is_the_same_at_every_scale(name, c):
    spec = MEASURES[name]
    want = spec(X, Y)
    if "isotropic_scaling" not in spec.invariances:  # a future measure that is not scale-invariant
        try:
            got = spec(c * X, c * Y)
        except InputError as err:
            assert "rescale" in str(err)
        else:
            assert np.isfinite(got)
        return
    assert_same(spec(c * X, c * Y), want, _degrees(spec), f"{name} at c={c:g} on both sides")
    d = SCALES[::-1][SCALES.index(c)]  # the two sides at very different scales (1e-300 against 1e300)
    assert_same(spec(c * X, d * Y), want, _degrees(spec), f"{name} at {c:g} x {d:g}")
    # the prepare/pair steps themselves (compare_many reuses prepared statistics)
    assert_same(spec.pair(spec.prepare(c * X), spec.prepare(Y)), want, _degrees(spec), f"{name} prepare/pair")


def test_the_issue_cases():
    # linear CKA at 1e160 was NaN; SVCCA at extreme scales picked the wrong number of directions
    assert linear_cka(1e160 * X, 1e160 * Y) == pytest.approx(linear_cka(X, Y), rel=1e-12)
    assert np.isfinite(linear_cka(1e160 * X, 1e160 * Y))
    for c in (1e-300, 1e160, 1e300):
        assert svcca(c * X, c * Y) == pytest.approx(svcca(X, Y), rel=1e-12)
    # angle([1e300, 0], [1, 1]) was 0 degrees
    assert angle(np.array([1e300, 0.0]), np.array([1.0, 1.0])) == pytest.approx(45.0, abs=1e-12)
    assert angle(np.array([1e-300, 0.0]), np.array([1.0, 1.0])) == pytest.approx(45.0, abs=1e-12)


@pytest.mark.parametrize("c", SCALES)
def test_reference_gram_routes_and_absolute_rbf_bandwidth(c):
    assert_same(linear_cka_gram(c * X, c * Y), linear_cka(X, Y))
    assert_same(debiased_linear_cka_gram(c * X, c * Y), debiased_linear_cka(X, Y))
    # an absolute bandwidth scales with the features: the kernel, hence the value, is unchanged
    assert_same(rbf_cka(c * X, c * Y, sigma=2.0 * c), rbf_cka(X, Y, sigma=2.0))
    # with a fixed absolute bandwidth, huge features make an identity kernel, tiny ones a constant kernel:
    # finite values (the exact limits), never NaN
    assert np.isfinite(rbf_cka(c * X, c * Y, sigma=1.0))


@pytest.mark.parametrize("c", SCALES)
def test_compare_and_compare_many_at_every_scale(c):
    names = list(MEASURES)
    want = compare(X, Y, names)
    got = compare(c * X, c * Y, names)
    assert list(got) == names
    for m in names:
        assert_same(got[m], want[m], _degrees(MEASURES[m]), m)
    Z = _data(seed=11)[0]  # a third network (not X itself: distances to self are sqrt(rounding), ~1e-8)
    rows = compare_many({"x": c * X, "y": Y / c, "z": Z}, names)
    unscaled = {"x": X, "y": Y, "z": Z}
    assert len(rows) == sum(1 if MEASURES[m].symmetric else 2 for m in names) * 3
    for r in rows:
        ref = compare(unscaled[r["model_a"]], unscaled[r["model_b"]], [r["measure"]])
        assert_same(r["value"], ref[r["measure"]], _degrees(MEASURES[r["measure"]]), str(r))


@pytest.mark.parametrize("c", (1e-300, 1e-160, 1e160, 1e300))
def test_cli_compare_every_measure_at_extreme_scales(tmp_path, c):
    np.save(tmp_path / "a.npy", c * X)
    np.save(tmp_path / "b.npy", c * Y)
    js = tmp_path / "out.json"
    args = ["compare", str(tmp_path / "a.npy"), str(tmp_path / "b.npy"), "--json", str(js)]
    for m in MEASURES:
        args += ["--measure", m]
    r = CliRunner().invoke(main, args)
    assert "Traceback" not in r.output
    assert r.exit_code == 0, r.output + repr(r.exception)
    want = compare(X, Y, list(MEASURES))
    rows = json.loads(js.read_text())["rows"]
    assert [row["measure"] for row in rows] == list(MEASURES)
    for row in rows:
        assert_same(row["value"], want[row["measure"]], _degrees(MEASURES[row["measure"]]), row["measure"])


# ----------------------------------------------------------------------------- angles
@pytest.mark.parametrize("c", SCALES)
def test_angle_between_raw_vectors_at_every_scale(c):
    rng = np.random.default_rng(3)
    u, v = rng.standard_normal(50), rng.standard_normal(50)
    want = angle(u, v)
    for d in (1.0, c, 1e300, 1e-300):
        assert_same(angle(c * u, d * v), want, degrees=True, what=f"{c:g}, {d:g}")
    # P-vector results (unit u) against raw vectors at the scale c
    p = pvector(X)
    assert_same(angle(p, c * p.u), 0.0, degrees=True)


def test_angle_with_subnormal_entries():
    e1 = np.r_[5e-324, 0.0]  # the smallest positive float64
    assert angle(e1, np.array([1.0, 1.0])) == pytest.approx(45.0, abs=1e-12)
    assert angle(e1, np.array([1e300, 0.0])) == pytest.approx(0.0, abs=1e-12)


# ----------------------------------------------------------------------------- P-vectors
@pytest.mark.parametrize("center", [False, True])
@pytest.mark.parametrize("method", METHODS)
def test_pvector_scales_exactly_where_representable(method, center):
    base = pvector(X, center=center, method=method)
    for c in REPRESENTABLE:
        p = pvector(c * X, center=center, method=method)
        np.testing.assert_allclose(p.u, base.u, rtol=0, atol=1e-9, err_msg=f"c={c:g}")
        np.testing.assert_allclose(p.v, base.v, rtol=0, atol=1e-9, err_msg=f"c={c:g}")
        np.testing.assert_allclose(p.singular_values / c, base.singular_values, rtol=1e-9)
        assert p.total_energy / c**2 == pytest.approx(base.total_energy, rel=1e-9)
        np.testing.assert_allclose(p.energy, base.energy, rtol=1e-9)
        t = top_singular(c * X, 2, center=center, method=method)
        np.testing.assert_allclose(t.U[:, 0], base.u, rtol=0, atol=1e-9)
    for c in UNREPRESENTABLE:  # ||F||^2 (part of the result) does not fit float64
        refuses_clearly(lambda c=c: pvector(c * X, center=center, method=method), "magnitude")


# ----------------------------------------------------------------------------- subspace match
@pytest.mark.parametrize("c", SCALES)
def test_max_match_and_relative_distance_at_every_scale(c):
    base = max_match(X, Y, 0.25)
    assert 0 < base.similarity < 1
    for d in (c, 1.0, SCALES[::-1][SCALES.index(c)]):
        m = max_match(c * X, d * Y, 0.25)
        np.testing.assert_array_equal(m.a, base.a)
        np.testing.assert_array_equal(m.b, base.b)
        assert m.similarity == base.similarity and (m.dead_a, m.dead_b) == (0, 0)
    assert_same(relative_distance(c * Y[:, 0], X), relative_distance(Y[:, 0], X))
    assert_same(relative_distance(Y[:, 0], c * X), relative_distance(Y[:, 0], X))


def test_dead_neurons_are_relative_to_their_side():
    """An all-zero neuron is dead at every scale; neurons of a tiny but non-zero side are alive."""
    A = np.hstack([X, np.zeros((len(X), 1))])
    base = max_match(A, Y, 0.25)
    assert base.dead_a == 1
    for c in SCALES:
        m = max_match(c * A, Y, 0.25)
        assert m.dead_a == 1 and m.similarity == base.similarity


# ----------------------------------------------------------------------------- feature-map spectrum
def _same_spectrum(got, want, c: float) -> None:
    np.testing.assert_allclose(got.rho / c**2, want.rho, rtol=1e-9)
    np.testing.assert_allclose(got.q_star, want.q_star, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(got.pi_star, want.pi_star, rtol=1e-9, atol=1e-12)
    assert got.d_eff == pytest.approx(want.d_eff, rel=1e-9)
    assert got.regime == want.regime and got.k_for == want.k_for
    np.testing.assert_allclose(np.abs(got.V), np.abs(want.V), atol=1e-9)  # eigenfunctions up to sign


@pytest.mark.parametrize("center", [False, True])
def test_feature_spectrum_scales_exactly_where_representable(center):
    outputs = Y[:, :3]
    base = feature_spectrum(X, LABELS, outputs, center=center)
    for c in REPRESENTABLE:
        got = feature_spectrum(c * X, LABELS, 1e200 * outputs, center=center)  # the outputs' scale never matters
        _same_spectrum(got, base, c)
        np.testing.assert_allclose(got.q, base.q, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(np.abs(got.eigenfunctions(c * X)), np.abs(base.eigenfunctions(X)), atol=1e-7)
        if not center:  # the constant feature does not scale: bias=True is the spectrum of [c X | 1]
            with_bias = feature_spectrum(c * X, LABELS, bias=True)
            explicit = feature_spectrum(np.hstack([c * X, np.ones((len(X), 1))]), LABELS)
            np.testing.assert_allclose(with_bias.rho, explicit.rho, rtol=1e-9)
            np.testing.assert_allclose(with_bias.q_star, explicit.q_star, rtol=1e-9, atol=1e-12)
            assert np.isfinite(with_bias.rho).all() and with_bias.rho[0] > 0
    for c in UNREPRESENTABLE:  # rho = s^2 / n scales with c^2 and does not fit float64
        what = "overflow" if c > 1 else "underflow"
        refuses_clearly(lambda c=c: feature_spectrum(c * X, LABELS, center=center), "eigenvalues", what)


# ----------------------------------------------------------------------------- neural collapse
@pytest.mark.parametrize("c", SCALES)
def test_neural_collapse_at_every_scale(c):
    rng = np.random.default_rng(5)
    W = rng.standard_normal((3, X.shape[1]))
    predictions = (X @ W.T).argmax(1)
    base = neural_collapse(X, LABELS, W=W, predictions=predictions)
    got = neural_collapse(c * X, LABELS, W=W / c, predictions=predictions)  # NC3 is scale-free in W too
    for field in ("nc1", "nc2_equinorm", "nc2_equiangle", "nc2_maxangle", "nc3", "nc4"):
        assert_same(getattr(got, field), getattr(base, field), what=f"{field} at c={c:g}")
    assert 0 < base.nc4 <= 1 and base.nc1 > 0


# ----------------------------------------------------------------------------- accumulators and *_from_stats
def _gram(F: np.ndarray) -> GramAccumulator:
    """Three batches into one accumulator, merged with a fourth batch's accumulator (update and merge paths)."""
    acc = GramAccumulator()
    for part in np.array_split(F[:45], 3):
        acc.update(part)
    return acc.merge(GramAccumulator().update(F[45:]))


def _cross(A: np.ndarray, B: np.ndarray) -> CrossGramAccumulator:
    acc = CrossGramAccumulator()
    for a, b in zip(np.array_split(A[:45], 3), np.array_split(B[:45], 3)):
        acc.update(a, b)
    return acc.merge(CrossGramAccumulator().update(A[45:], B[45:]))


@pytest.mark.parametrize("c", REPRESENTABLE)
def test_gram_statistics_scale_exactly_where_representable(c):
    base, got = _gram(X).finalize(), _gram(c * X).finalize()
    np.testing.assert_allclose(got.scatter / c**2, base.scatter, rtol=1e-12, atol=1e-12 * np.abs(base.scatter).max())
    np.testing.assert_allclose(got.mean / c, base.mean, rtol=1e-12)
    assert got.total_energy() / c**2 == pytest.approx(base.total_energy(), rel=1e-12)
    for center in (False, True):
        p, q = pvector_from_stats(base, center), pvector_from_stats(got, center)
        np.testing.assert_allclose(q.v, p.v, atol=1e-9)
        np.testing.assert_allclose(q.singular_values / c, p.singular_values, rtol=1e-9)


@pytest.mark.parametrize("c", REPRESENTABLE)
def test_cross_gram_routes_are_scale_free_where_representable(c):
    d = REPRESENTABLE[::-1][REPRESENTABLE.index(c)]
    stats = _cross(c * X, d * Y).finalize()
    assert_same(linear_cka_from_stats(stats), linear_cka(X, Y), what="linear_cka_from_stats")
    for center in (False, True):
        want = pvector_angle_from_stats(_cross(X, Y).finalize(), center)
        assert abs(pvector_angle_from_stats(stats, center) - want) <= 1e-7
    m, base = MatchGram.from_stats(stats).max_match(0.25), max_match(X, Y, 0.25)
    np.testing.assert_array_equal(m.a, base.a)
    np.testing.assert_array_equal(m.b, base.b)


@pytest.mark.parametrize("c", REPRESENTABLE)
def test_class_spectrum_and_nc4_statistics_where_representable(c):
    cs = ClassStatsAccumulator()
    for part, lab in zip(np.array_split(c * X, 4), np.array_split(LABELS, 4)):
        cs.update(part, lab)
    stats = cs.finalize()
    dense = neural_collapse(X, LABELS)
    got = neural_collapse_from_stats(stats)
    for field in ("nc1", "nc2_equinorm", "nc2_equiangle", "nc2_maxangle"):
        assert_same(getattr(got, field), getattr(dense, field), what=field)
    predictions = (X @ np.random.default_rng(5).standard_normal((3, 6)).T).argmax(1)
    nc4 = NC4Accumulator.from_class_stats(stats).update(c * X, predictions).finalize()
    assert nc4.agreement == neural_collapse(X, LABELS, predictions=predictions).nc4
    acc = SpectrumAccumulator(n_classes=3)
    for part, lab in zip(np.array_split(c * X, 4), np.array_split(LABELS, 4)):
        acc.update(part, lab)
    for center in (False, True):
        _same_spectrum(feature_spectrum_from_stats(acc.finalize(), center=center),
                       feature_spectrum(X, LABELS, center=center), c)


@pytest.mark.parametrize("c", UNREPRESENTABLE)
def test_accumulators_refuse_what_float64_cannot_hold(c):
    what = "overflow float64" if c > 1 else "underflow float64"
    refuses_clearly(lambda: GramAccumulator().update(c * X), what, "Gram matrix")
    refuses_clearly(lambda: CrossGramAccumulator().update(c * X, Y), what)
    refuses_clearly(lambda: CrossGramAccumulator().update(X, c * Y), what)
    refuses_clearly(lambda: ClassStatsAccumulator().update(c * X, LABELS), what)
    refuses_clearly(lambda: SpectrumAccumulator(n_classes=3).update(c * X, LABELS), what)
    # one sample per batch: each batch is centered to 0, the products come from the merge terms
    def one_by_one():
        acc = GramAccumulator()
        for row in c * X[:5]:
            acc.update(row[None, :])
    refuses_clearly(one_by_one, what)
    # merging a representable accumulator with one whose mean is far away is refused before anything changes
    acc = _gram(X)
    before = acc.state_dict()
    far = GramAccumulator().update(X[:3] + (1e200 if c > 1 else 0.0))
    if c > 1:
        refuses_clearly(lambda: acc.merge(far), "overflow float64")
        after = acc.state_dict()
        np.testing.assert_array_equal(after["scatter"], before["scatter"])


def test_constant_tiny_rows_are_not_all_zero():
    """Identical rows of magnitude 2^-700 (~2e-211): the centered scatter is exactly 0 (fine), the uncentered
    Gram N mu mu^T underflows: refused by name, never reported as all-zero features. Likewise 2^600 overflows."""
    stats = GramAccumulator().update(np.full((8, 3), 2.0**-700)).finalize()
    assert not stats.scatter.any()
    refuses_clearly(lambda: pvector_from_stats(stats, center=False), "underflow")
    refuses_clearly(lambda: stats.gram(False), "underflow")
    huge = GramAccumulator().update(np.full((8, 3), 2.0**600)).finalize()
    refuses_clearly(lambda: huge.total_energy(False), "overflow")
    cross = CrossGramAccumulator().update(np.full((8, 3), 2.0**600), np.full((8, 2), 2.0**600)).finalize()
    refuses_clearly(lambda: cross.cross_gram(False), "overflow")
    assert not cross.cross_gram(True).any()  # the centered cross-scatter is exact (0)


def test_torch_batches_follow_the_same_rule():
    torch = pytest.importorskip("torch")
    got = GramAccumulator().update(torch.as_tensor(1e100 * X)).finalize()
    want = GramAccumulator().update(1e100 * X).finalize()
    np.testing.assert_allclose(got.scatter, want.scatter, rtol=1e-12)
    refuses_clearly(lambda: GramAccumulator().update(torch.as_tensor(1e300 * X)), "overflow float64")
    refuses_clearly(lambda: GramAccumulator().update(torch.as_tensor(1e-300 * X)), "underflow float64")
    nc4 = NC4Accumulator(1e300 * np.eye(3, 6), [0, 1, 2]).update(torch.as_tensor(1e300 * X), LABELS).finalize()
    assert nc4.n_agree == NC4Accumulator(np.eye(3, 6), [0, 1, 2]).update(X, LABELS).finalize().n_agree


def test_class_stats_update_refused_for_one_class_leaves_every_class_unchanged():
    """A batch whose second class overflows float64 in its Gram matrix is refused as a whole: the first
    class's rows of that batch are not added either."""
    from deepspan.linalg.streaming import ClassStatsAccumulator

    rng = np.random.default_rng(0)
    acc = ClassStatsAccumulator()
    acc.update(rng.standard_normal((20, 3)), np.arange(20) % 2)
    before = acc.state_dict()
    bad = rng.standard_normal((10, 3))
    labels = np.arange(10) % 2
    bad[labels == 1] *= 1e300
    with pytest.raises(InputError, match="overflow"):
        acc.update(bad, labels)
    after = acc.state_dict()
    assert before.keys() == after.keys()
    for key in before:
        assert np.array_equal(np.asarray(before[key]), np.asarray(after[key])), key
