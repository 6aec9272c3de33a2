"""Bad input fails early with deepspan.InputError and a message that says what is wrong and where."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import deepspan
from deepspan import (
    GramAccumulator,
    InputError,
    SampleMismatchError,
    angle,
    data_pvector,
    energy_table,
    principal_angles,
    pvector,
    pvector_from_stats,
    reconstruction_errors,
    top_singular,
)
from conftest import gap_spectrum, planted

METHODS = ("exact", "gram", "kernel", "krylov", "auto")


@pytest.fixture
def F():
    return planted(10, 5, [4.0, 2.0, 1.0, 0.5, 0.25], np.random.default_rng(0), offset=1.0)


def test_sample_mismatch_is_an_input_error():
    assert issubclass(SampleMismatchError, InputError)
    assert issubclass(InputError, ValueError)
    assert issubclass(InputError, deepspan.DeepspanError)


# --- non-finite values --------------------------------------------------------------------


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("shape", [(10, 5), (5, 10)])
def test_nan_reports_count_and_first_position(shape, method):
    F = planted(*shape, [4.0, 2.0, 1.0], np.random.default_rng(1))
    F[3, 1] = np.nan
    F[4, 0] = np.nan
    pattern = r"2 non-finite value\(s\) \(2 NaN, 0 \+/-Inf\).*row 3, column 1"
    with pytest.raises(InputError, match=pattern):
        pvector(F, method=method)
    with pytest.raises(InputError, match=pattern):
        top_singular(F, 2, center=True, method=method)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("bad", [np.inf, -np.inf])
def test_inf_is_refused(F, bad, method):
    F[0, 2] = bad
    with pytest.raises(InputError, match=r"1 non-finite value\(s\) \(0 NaN, 1 \+/-Inf\).*row 0, column 2"):
        pvector(F, method=method)


def test_nonfinite_in_other_entry_points(F):
    F[7, 4] = np.nan
    good = np.ones((10, 3)) + np.eye(10, 3)
    with pytest.raises(InputError, match=r"A contains 1 non-finite.*row 7, column 4"):
        principal_angles(F, good, 1)
    with pytest.raises(InputError, match=r"B contains 1 non-finite.*row 7, column 4"):
        principal_angles(good, F, 1)
    with pytest.raises(InputError, match="row 7, column 4"):
        reconstruction_errors(F, 2)
    with pytest.raises(InputError, match="row 7, column 4"):
        energy_table(F, 2)
    with pytest.raises(InputError, match="non-finite"):
        data_pvector(F.reshape(10, 5, 1))
    with pytest.raises(InputError, match=r"1 non-finite.*index \(3,\)"):
        angle(np.array([1.0, 2.0, 3.0, np.nan]), np.ones(4))


# --- shapes -------------------------------------------------------------------------------


def test_fewer_than_two_samples(F):
    with pytest.raises(InputError, match=r"1 sample\(s\).*at least 2.*transpose"):
        pvector(F[:1])
    with pytest.raises(InputError, match=r"0 sample\(s\)"):
        top_singular(F[:0])


def test_no_feature_columns():
    with pytest.raises(InputError, match="no feature columns"):
        pvector(np.ones((5, 0)))


def test_one_dimensional_input(F):
    with pytest.raises(InputError, match=r"2-D samples x features matrix.*shape \(10,\) \(1-D\).*reshape"):
        pvector(F[:, 0])


def test_three_dimensional_input():
    X = np.random.default_rng(0).standard_normal((6, 4, 3))
    with pytest.raises(InputError, match=r"shape \(6, 4, 3\) \(3-D\).*data_pvector"):
        pvector(X)
    with pytest.raises(InputError, match=r"3-D"):
        top_singular(X)
    # data_pvector is the documented way
    assert data_pvector(X).u.shape == (6,)


def test_data_pvector_needs_a_feature_axis():
    with pytest.raises(InputError, match=r"sample axis and at least one feature axis"):
        data_pvector(np.arange(5.0))


# --- degenerate values --------------------------------------------------------------------


@pytest.mark.parametrize("method", METHODS)
def test_all_zero_matrix(method):
    with pytest.raises(InputError, match=r"all zeros \(shape \(8, 3\)\)"):
        pvector(np.zeros((8, 3)), method=method)
    with pytest.raises(InputError, match="all zeros"):
        top_singular(np.zeros((3, 8)), center=True, method=method)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("value", [1.0, 0.1, 3.7, -2.5, 1e-3, 255.0])
def test_constant_matrix_with_centering(value, method):
    F = np.full((10, 4), value)
    with pytest.raises(InputError, match="constant across samples"):
        pvector(F, center=True, method=method)


@pytest.mark.parametrize("value", [1.0, 0.1, -2.5])
def test_constant_matrix_without_centering_is_fine(value):
    F = np.full((10, 4), value)
    p = pvector(F, method="exact")
    np.testing.assert_allclose(p.u, np.full(10, 1 / np.sqrt(10)), rtol=0, atol=1e-12)
    np.testing.assert_allclose(p.sigma, abs(value) * np.sqrt(40), rtol=1e-12)
    assert p.gap < 1e-8


# --- rank requests and methods ------------------------------------------------------------


def test_k_larger_than_min_side(F):
    with pytest.raises(InputError, match=r"k=6 exceeds min\(N, d\) = min\(10, 5\) = 5"):
        top_singular(F, 6)
    with pytest.raises(InputError, match=r"k=11 exceeds min\(N, d\) = min\(5, 10\) = 5"):
        top_singular(F.T, 11)
    with pytest.raises(InputError, match=r"n_values=6 exceeds"):
        top_singular(F, 2, n_values=6)
    with pytest.raises(InputError, match=r"K=6 exceeds"):
        reconstruction_errors(F, 6)


def test_k_larger_than_min_side_in_principal_angles(F):
    B = np.random.default_rng(2).standard_normal((10, 3))
    with pytest.raises(InputError, match=r"k=4 exceeds min\(N, d\) = min\(10, 3\) = 3"):
        principal_angles(F, B, 4)
    with pytest.raises(InputError, match=r"k=6 exceeds min\(N, d\) = min\(10, 5\) = 5"):
        principal_angles(F, F, 6)


@pytest.mark.parametrize("k", [0, -1])
def test_k_at_least_one(F, k):
    with pytest.raises(InputError, match=rf"k must be at least 1, got {k}"):
        top_singular(F, k)
    with pytest.raises(InputError, match="at least 1"):
        principal_angles(F, F, k)
    with pytest.raises(InputError, match="n_values must be at least 1"):
        pvector(F, n_values=0)


@pytest.mark.parametrize("k", [1.5, "2", True, None])
def test_k_must_be_an_integer(F, k):
    with pytest.raises(InputError, match="must be a positive integer"):
        top_singular(F, k)


def test_numpy_integer_k_is_accepted(F):
    assert top_singular(F, np.int64(2)).U.shape == (10, 2)


@pytest.mark.parametrize("method", ["svd", "", "Exact", "randomized"])
def test_unknown_method(F, method):
    with pytest.raises(InputError, match=rf"unknown method {method!r}; choose one of auto, exact, gram, kernel, krylov"):
        top_singular(F, method=method)
    with pytest.raises(InputError, match="unknown method"):
        pvector(F, method=method)


# --- dtypes -------------------------------------------------------------------------------


def test_complex_input(F):
    with pytest.raises(InputError, match=r"F is complex \(complex128\); deepspan works with real"):
        pvector(F.astype(np.complex128))
    with pytest.raises(InputError, match="complex"):
        pvector(F + 0j)


def test_string_array():
    S = np.array([["1", "2"], ["3", "4"], ["5", "6"]])
    with pytest.raises(InputError, match=r"dtype <U1, which is not numeric"):
        pvector(S)
    with pytest.raises(InputError, match="not numeric"):
        pvector(np.array([[1, "a"], [2, "b"]], dtype=object))


@pytest.mark.parametrize("method", METHODS)
def test_float16_input_is_converted(F, method):
    F16 = F.astype(np.float16)
    p = pvector(F16, method=method)
    p64 = pvector(F16.astype(np.float64), method=method)
    np.testing.assert_allclose(p.u, p64.u, rtol=0, atol=1e-13)
    np.testing.assert_allclose(p.singular_values, p64.singular_values, rtol=1e-13)
    assert p.u.dtype == np.float64


@pytest.mark.parametrize("dtype", [np.int8, np.int32, np.int64, np.uint8, np.uint16])
def test_integer_input_is_converted(dtype):
    Fi = np.random.default_rng(4).integers(0, 100, size=(12, 5)).astype(dtype)
    for center in (False, True):
        p = pvector(Fi, center=center)
        p64 = pvector(Fi.astype(np.float64), center=center)
        np.testing.assert_allclose(p.u, p64.u, rtol=0, atol=1e-13)
        np.testing.assert_allclose(p.singular_values, p64.singular_values, rtol=1e-13)


def test_nested_lists_are_accepted():
    rows = [[1.0, 2.0], [3.0, 5.0], [4.0, 1.0]]
    np.testing.assert_allclose(pvector(rows).u, pvector(np.array(rows)).u, rtol=0, atol=1e-14)


# --- angles -------------------------------------------------------------------------------


def test_angle_length_mismatch(F):
    with pytest.raises(SampleMismatchError, match=r"p has 5 entries but q has 6.*same samples"):
        angle(np.ones(5), np.ones(6))
    p10 = pvector(F)
    p12 = pvector(np.vstack([F, F[:2] + 1.0]))
    with pytest.raises(SampleMismatchError, match="p has 10 entries but q has 12"):
        angle(p10, p12)


def test_principal_angles_sample_mismatch(F):
    with pytest.raises(SampleMismatchError, match=r"A has 10 samples but B has 9"):
        principal_angles(F, F[:9], 1)


def test_angle_with_zero_vector():
    with pytest.raises(InputError, match="q is the zero vector"):
        angle(np.ones(4), np.zeros(4))
    with pytest.raises(InputError, match="p is the zero vector"):
        angle(np.zeros(4), np.ones(4))


def test_angle_needs_one_dimensional_vectors():
    with pytest.raises(InputError, match="1-D vector"):
        angle(np.ones((4, 1)), np.ones(4))


def test_angle_on_streamed_pvector_without_u(F):
    stats = GramAccumulator().update(F).finalize()
    p = pvector_from_stats(stats)
    assert p.u is None
    with pytest.raises(InputError, match=r"p has no left singular vector u.*with_left_vector"):
        angle(p, np.ones(10))
    with pytest.raises(InputError, match=r"q has no left singular vector u"):
        angle(pvector(F), p)


# --- degenerate spectrum warning ----------------------------------------------------------


def _with_gap(ratio, shape=(40, 12)):
    s = gap_spectrum(min(shape))
    s[1] = ratio * s[0]
    return planted(*shape, s, np.random.default_rng(8))


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("ratio", [0.995, 0.9999, 1.0])
def test_degenerate_spectrum_warns(ratio, method):
    F = _with_gap(ratio)
    with pytest.warns(deepspan.DegenerateSpectrumWarning, match=r"sigma_2/sigma_1 = 0\.99\d\d|sigma_2/sigma_1 = 1\.0000"):
        p = pvector(F, method=method)
    assert p.degenerate
    assert p.gap == pytest.approx(ratio, abs=1e-8)


def test_degenerate_spectrum_warns_from_stats():
    F = _with_gap(0.995)
    stats = GramAccumulator().update(F).finalize()
    with pytest.warns(deepspan.DegenerateSpectrumWarning):
        p = pvector_from_stats(stats)
    assert p.degenerate


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("ratio", [0.5, 0.9, 0.985])
def test_separated_spectrum_does_not_warn(ratio, method):
    F = _with_gap(ratio)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        p = pvector(F, method=method)
    assert not [w for w in caught if issubclass(w.category, deepspan.DeepspanWarning)]
    assert not p.degenerate
    assert p.gap == pytest.approx(ratio, abs=1e-8)


def test_single_singular_value_has_gap_zero():
    F = np.random.default_rng(0).standard_normal((7, 1))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        p = pvector(F)
    assert p.gap == 0.0 and not p.degenerate


# --- extreme magnitudes -------------------------------------------------------------------


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("scale", [1e-120, 1e120])
def test_extreme_but_representable_scales(method, scale):
    G = planted(30, 12, gap_spectrum(12), np.random.default_rng(9), offset=0.5)
    for center in (False, True):
        base = pvector(G, center=center, method="exact")
        p = pvector(G * scale, center=center, method=method)
        np.testing.assert_allclose(p.u, base.u, rtol=0, atol=1e-8)
        np.testing.assert_allclose(p.singular_values / scale, base.singular_values, rtol=1e-8)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("shape", [(30, 12), (12, 30)])
def test_tiny_magnitudes_are_right_or_refused(shape, method):
    # entries ~1e-161: their squares are subnormal. A route must either return the right
    # P-vector or refuse with InputError -- never a silently wrong one.
    G = planted(*shape, gap_spectrum(min(shape)), np.random.default_rng(9), offset=0.5)
    for center in (False, True):
        base = pvector(G, center=center, method="exact")
        try:
            p = pvector(G * 1e-160, center=center, method=method)
        except InputError:
            continue
        np.testing.assert_allclose(p.u, base.u, rtol=0, atol=1e-6, err_msg=f"center={center}")


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("center", [False, True])
def test_tiny_nonzero_matrix_is_not_called_all_zero(center, method):
    # ||F||^2 ~ 1e-400 cannot be represented: every route refuses it the same way, naming the
    # magnitude and the fix, and never calls a nonzero matrix "all zeros"
    G = planted(30, 12, gap_spectrum(12), np.random.default_rng(9), offset=0.5)
    with pytest.raises(InputError, match=r"magnitude \(max \|F\| = .*rescale") as info:
        pvector(G * 1e-200, center=center, method=method)
    assert "all zeros" not in str(info.value)
