"""Every public entry point the README shows, tried with the same bad inputs.

For each entry point the first feature matrix is replaced by: NaN, +Inf, no rows, a 1-D array, complex,
strings, objects, too few rows for the other argument (or the labels), and the valid matrix scaled by
1e+300 and 1e-300. Bad values must raise :class:`deepspan.InputError` (a ValueError) whose message names the
problem; a scaled matrix must give the unscaled result where the result is scale-free, and otherwise either
the result scaled exactly or an InputError that names the magnitude. Nothing may come back as NaN, and no
other exception type may escape.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

import deepspan
from deepspan import InputError

pytestmark = pytest.mark.filterwarnings("ignore::deepspan.errors.DeepspanWarning")

RNG = np.random.default_rng(0)
X = np.maximum(RNG.standard_normal((40, 6)), 0.0) + 0.05 * RNG.standard_normal((40, 6))
Y = X @ RNG.standard_normal((6, 5)) + 0.3 * RNG.standard_normal((40, 5))
LABELS = np.arange(40) % 4


def _stream_pvector(A):
    acc = deepspan.GramAccumulator()
    acc.update(A[:25])
    acc.update(A[25:])
    return deepspan.pvector_from_stats(acc.finalize())


def _stream_angle(A):
    acc = deepspan.CrossGramAccumulator()
    acc.update(A, Y)
    return deepspan.pvector_angle_from_stats(acc.finalize())


def _scalar(v):
    return float(v)


def _vec_abs(p):
    return np.abs(p.u)


#: name -> (call with the (possibly bad) first matrix, how to read a comparable value, scale rule)
#: scale rule: "same" (scale-free: the value must not change), "maybe" (scale-free value, or a clear InputError
#: where an intermediate that carries the scale cannot be represented), "carry" (the value carries the scale:
#: exact scaling or a clear InputError).
ENTRIES = {
    "cka": (lambda A: deepspan.cka(A, Y), _scalar, "same"),
    "cka_debiased": (lambda A: deepspan.cka(A, Y, debiased=True), _scalar, "same"),
    "cka_rbf": (lambda A: deepspan.cka(A, Y, kernel="rbf"), _scalar, "same"),
    "svcca": (lambda A: deepspan.svcca(A, Y), _scalar, "same"),
    "pwcca": (lambda A: deepspan.pwcca(A, Y), _scalar, "same"),
    "pwcca_centered": (lambda A: deepspan.pwcca_centered(A, Y), _scalar, "same"),
    "cca": (lambda A: deepspan.cca(A, Y), _scalar, "same"),
    "procrustes": (lambda A: deepspan.procrustes(A, Y), _scalar, "same"),
    "compare": (lambda A: deepspan.compare(A, Y), lambda r: np.array([r[k] for k in sorted(r)]), "same"),
    "compare_many": (lambda A: deepspan.compare_many({"a": A, "b": Y}, ["linear_cka", "pwcca"]),
                     lambda rows: np.array([r["value"] for r in rows]), "same"),
    "principal_angles": (lambda A: deepspan.principal_angles(A, Y, 2), np.asarray, "same"),
    "max_match": (lambda A: deepspan.max_match(A, Y, 0.25), lambda m: m.similarity, "same"),
    "max_epsilon": (lambda A: deepspan.max_epsilon(A, Y), _scalar, "same"),
    "min_epsilon_for_size": (lambda A: deepspan.min_epsilon_for_size(A, Y, size=2), _scalar, "same"),
    "simple_matches": (lambda A: deepspan.simple_matches(A, Y, eps=0.25), len, "same"),
    "minimal_match": (lambda A: deepspan.minimal_match(A, Y, "a", 0, eps=0.25), lambda m: m is None, "same"),
    "pvector": (lambda A: deepspan.pvector(A), _vec_abs, "maybe"),
    "data_pvector": (lambda A: deepspan.data_pvector(A[:, None, :] if A.ndim == 2 else A), _vec_abs, "maybe"),
    "top_singular": (lambda A: deepspan.top_singular(A, 2), lambda t: np.abs(t.U), "maybe"),
    "top_singular_both": (lambda A: deepspan.top_singular_both(A, 2), lambda t: np.abs(t[1].U), "maybe"),
    "energy_table": (lambda A: deepspan.energy_table(A, 3), lambda rows: np.array([r["energy_ratio"] for r in rows]),
                     "maybe"),
    "reconstruction_errors": (lambda A: deepspan.reconstruction_errors(A, 3), np.asarray, "carry"),
    "streamed_pvector": (_stream_pvector, lambda p: np.abs(p.v), "maybe"),
    "streamed_pvector_angle": (_stream_angle, _scalar, "maybe"),
    "feature_spectrum": (lambda A: deepspan.feature_spectrum(A, LABELS), lambda r: np.asarray(r.pi_star), "maybe"),
    "neural_collapse": (lambda A: deepspan.neural_collapse(A, LABELS),
                        lambda r: np.array([r.nc1, r.nc2_equinorm, r.nc2_equiangle, r.nc3 if r.nc3 is not None else 0.0]), "same"),
}

#: the bad first arguments
BAD = {
    "nan": lambda: np.where(np.arange(X.size).reshape(X.shape) == 13, np.nan, X),
    "inf": lambda: np.where(np.arange(X.size).reshape(X.shape) == 7, np.inf, X),
    "no_rows": lambda: X[:0],
    "one_d": lambda: X[:, 0].copy(),
    "complex": lambda: X + 0j,
    "strings": lambda: X.astype(str),
    "objects": lambda: np.array([[None] * 6] * 40, dtype=object),
    "fewer_rows": lambda: X[:-3],
}

WORDS = {  # what each refusal must say (lower case; any one of them)
    "nan": ("non-finite", "nan"),
    "inf": ("non-finite", "inf"),
    "no_rows": ("0 sample", "no sample", "no rows", "empty", "at least", "0 rows"),
    "one_d": ("2-d", "1-d", "one-dimensional", "shape", "ndim", "samples x", "matrix"),
    "complex": ("complex", "real"),
    "strings": ("dtype", "numeric", "real"),
    "objects": ("dtype", "numeric", "real", "object"),
    "fewer_rows": ("sample", "rows", "labels", "same"),
}


def _reference(name):
    call, read, _ = ENTRIES[name]
    return read(call(X))


@pytest.mark.parametrize("kind", sorted(BAD))
@pytest.mark.parametrize("name", sorted(ENTRIES))
def test_bad_first_argument_gets_a_clear_input_error(name, kind):
    call, _, _ = ENTRIES[name]
    if kind == "fewer_rows" and name in ("pvector", "data_pvector", "top_singular", "top_singular_both",
                                         "energy_table", "reconstruction_errors", "streamed_pvector"):
        pytest.skip("a single matrix has no second argument to disagree with")
    with pytest.raises(InputError) as err:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            call(BAD[kind]())
    message = str(err.value).lower()
    assert len(message) > 20 and any(w in message for w in WORDS[kind]), (name, kind, str(err.value))


def _equal(a, b):
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    assert a.shape == b.shape
    np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("scale", [1e300, 1e-300, 3.7e154, 2.2e-160])
@pytest.mark.parametrize("name", sorted(ENTRIES))
def test_scaled_first_argument_same_value_or_named_magnitude(name, scale):
    call, read, rule = ENTRIES[name]
    ref = _reference(name)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", RuntimeWarning)  # no overflow may pass silently
            got = read(call(scale * X))
    except InputError as exc:
        assert rule != "same", f"{name} is scale-free and must not refuse c*X: {exc}"
        msg = str(exc).lower()
        assert any(w in msg for w in ("magnitude", "overflow", "underflow", "rescale", "float64")), str(exc)
        return
    if rule == "carry":
        _equal(np.asarray(got) / scale**2, ref)
    else:
        _equal(got, ref)
    arr = np.asarray(got, dtype=np.float64)
    assert np.isfinite(arr).all()


@pytest.mark.parametrize("p,q,expected", [
    ([1e300, 0.0], [1.0, 1.0], 45.0),
    ([1e-300, 0.0], [0.0, 1e300], 90.0),
    ([3.0, 4.0], [6e200, 8e200], 0.0),
    ([1e-310, 1e-310], [1.0, 0.0], 45.0),  # subnormal entries are still finite numbers
])
def test_angle_of_raw_vectors_at_any_scale(p, q, expected):
    assert deepspan.angle(np.array(p), np.array(q)) == pytest.approx(expected, abs=1e-9)


@pytest.mark.parametrize("bad,words", [
    (np.array([np.nan, 1.0]), "non-finite"),
    (np.array([np.inf, 1.0]), "non-finite"),
    (np.zeros(0), "empty"),
    (np.zeros(2), "zero"),
    (np.ones((2, 2)), "1-d"),
    (np.array([1 + 1j, 1.0]), "complex"),
    (np.array(["a", "b"]), "numeric"),
])
def test_angle_refuses_bad_vectors_by_name(bad, words):
    with pytest.raises(InputError) as err:
        deepspan.angle(bad, np.ones(bad.shape[0] if bad.ndim == 1 and bad.size else 2))
    msg = str(err.value).lower()
    assert any(w in msg for w in (words, "vector", "length", "shape")), str(err.value)


def test_counts():
    """The sweep's size, for the record: entry points x bad inputs (+ scales)."""
    assert len(ENTRIES) >= 26 and len(BAD) == 8
    assert math.prod([len(ENTRIES), len(BAD) + 4]) >= 300
