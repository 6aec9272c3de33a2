"""The one accumulator protocol (DESIGN.md: update / merge / finalize / state_dict), for every accumulator.

For Gram, CrossGram, ClassStats, Spectrum (labels with outputs, and a regression
target matrix) and NC4:

* k shards (k = 1, 2, 5; uneven sizes with a 1-row shard) merged in several
  orders equal one pass over all rows to 1e-12 relative error (Frobenius, per
  field) on every field of the finalized statistics;
* a ``state_dict`` round trip is exact (``np.array_equal`` on every field),
  before and after ``finalize``, for the empty accumulator too, through
  ``np.savez`` too, and a restored accumulator keeps updating identically;
* the state_dict holds only numpy arrays and Python scalars, also when the
  accumulator was fed torch tensors;
* each is an instance of the runtime-checkable :class:`deepspan.linalg.Accumulator`;
* merging another kind, other widths, other classes or settings is refused
  with an InputError, and so is another kind's state_dict.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from deepspan import InputError, SampleMismatchError
from deepspan.linalg import (
    Accumulator,
    ClassStats,
    ClassStatsAccumulator,
    CrossGramAccumulator,
    GramAccumulator,
    GramStats,
)
from deepspan.measures.collapse import (
    NC4Accumulator,
    NC4Stats,
    nc4_from_stats,
    neural_collapse,
    neural_collapse_from_stats,
)
from deepspan.measures.spectrum import SpectrumAccumulator, SpectrumStats, feature_spectrum, feature_spectrum_from_stats

# --- data: one probe set shared by every accumulator -------------------------------------------

N, P, Q, C = 41, 5, 3, 4
_rng = np.random.default_rng(20240611)
LABELS = np.concatenate([np.arange(C), _rng.integers(0, C, N - C)])
_rng.shuffle(LABELS)
CENTRES = 3.0 * _rng.standard_normal((C, P))
F = CENTRES[LABELS] + _rng.standard_normal((N, P)) + 5.0  # class structure and large column means
G = F[:, :Q] @ _rng.standard_normal((Q, Q)) + 0.5 * _rng.standard_normal((N, Q)) - 2.0
OUT = F @ _rng.standard_normal((P, C)) + 0.1 * _rng.standard_normal((N, C))
Y_REG = np.column_stack([F[:, 0] ** 2, np.tanh(F[:, 1]), _rng.standard_normal(N)])
PRED = LABELS.copy()
_flip = _rng.choice(N, size=9, replace=False)
PRED[_flip] = (PRED[_flip] + 1) % C  # the network disagrees with nearest-centre on some samples
_ONE_PASS_CLASSES = ClassStatsAccumulator().update(F, LABELS).finalize()
MEANS, CLASSES = _ONE_PASS_CLASSES.means, _ONE_PASS_CLASSES.classes


def _np(x):
    return x


def _torch(x):
    torch = pytest.importorskip("torch")
    return torch.as_tensor(np.ascontiguousarray(x))


# name -> (make a fresh accumulator, feed(acc, rows, to_backend))
CASES = {
    "gram": (GramAccumulator, lambda acc, r, t: acc.update(t(F[r]))),
    "cross": (CrossGramAccumulator, lambda acc, r, t: acc.update(t(F[r]), t(G[r]))),
    "class": (ClassStatsAccumulator, lambda acc, r, t: acc.update(t(F[r]), t(LABELS[r]))),
    "spectrum": (lambda: SpectrumAccumulator(n_classes=C, with_outputs=True),
                 lambda acc, r, t: acc.update(t(F[r]), t(LABELS[r]), t(OUT[r]))),
    "spectrum-regression": (SpectrumAccumulator, lambda acc, r, t: acc.update(t(F[r]), t(Y_REG[r]))),
    "nc4": (lambda: NC4Accumulator(MEANS, CLASSES), lambda acc, r, t: acc.update(t(F[r]), t(PRED[r]))),
}
STATS_TYPES = {"gram": GramStats, "cross": object, "class": ClassStats, "spectrum": SpectrumStats,
               "spectrum-regression": SpectrumStats, "nc4": NC4Stats}

# uneven shard sizes (summing to N); k = 2 and k = 5 include a 1-row shard
SHARDS = {1: [N], 2: [40, 1], 5: [7, 1, 15, 3, 15]}


def slices(sizes):
    edges = np.cumsum([0, *sizes])
    return [slice(int(a), int(b)) for a, b in zip(edges[:-1], edges[1:])]


def make(name):
    return CASES[name][0]()


def fed(name, rows, t=_np):
    acc = make(name)
    CASES[name][1](acc, rows, t)
    return acc


def one_pass(name, t=_np):
    return fed(name, slice(0, N), t)


# --- merge orders -----------------------------------------------------------------------------


def _merge(a, b):
    out = a.merge(b)
    assert out is a  # merge is in place and returns self
    return out


def left_fold(accs):
    acc = accs[0]
    for other in accs[1:]:
        acc = _merge(acc, other)
    return acc


def right_fold(accs):  # a0.merge(a1.merge(a2.merge(...)))
    acc = accs[-1]
    for other in reversed(accs[:-1]):
        acc = _merge(other, acc)
    return acc


def reversed_fold(accs):  # the last shard absorbs the others, last to first
    acc = accs[-1]
    for other in reversed(accs[:-1]):
        acc = _merge(acc, other)
    return acc


def tree(accs):  # balanced pairwise tree
    accs = list(accs)
    while len(accs) > 1:
        accs = [_merge(accs[i], accs[i + 1]) if i + 1 < len(accs) else accs[i] for i in range(0, len(accs), 2)]
    return accs[0]


ORDERS = {"left": left_fold, "right": right_fold, "reversed": reversed_fold, "tree": tree}


# --- comparing statistics and states ----------------------------------------------------------


def stat_fields(stats, prefix=""):
    """{dotted field name: value} over every field of a (nested) stats dataclass that takes part in equality
    (``GramStats.row_order``, a fingerprint of the stream order, does not: merges may come in any order)."""
    out = {}
    for f in dataclasses.fields(stats):
        if not f.compare:
            continue
        v = getattr(stats, f.name)
        if dataclasses.is_dataclass(v):
            out.update(stat_fields(v, prefix + f.name + "."))
        else:
            out[prefix + f.name] = v
    return out


def assert_stats_close(got, ref, rtol=1e-12):
    """Every field: same type/shape; float arrays to ``rtol`` relative (Frobenius); everything else equal."""
    assert type(got) is type(ref)
    fg, fr = stat_fields(got), stat_fields(ref)
    assert fg.keys() == fr.keys()
    for key in fr:
        a, b = fg[key], fr[key]
        if isinstance(b, np.ndarray):
            assert isinstance(a, np.ndarray) and a.shape == b.shape and a.dtype == b.dtype, key
            if b.dtype.kind == "f":
                err = np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-300)
                assert err <= rtol, (key, err)
            else:
                assert np.array_equal(a, b), key
        else:
            assert type(a) is type(b) and a == b, (key, a, b)


def assert_stats_equal(got, ref):
    """Bitwise: np.array_equal (and equal dtype) on every field."""
    assert type(got) is type(ref)
    fg, fr = stat_fields(got), stat_fields(ref)
    assert fg.keys() == fr.keys()
    for key in fr:
        a, b = fg[key], fr[key]
        if isinstance(b, np.ndarray):
            assert a.dtype == b.dtype and np.array_equal(a, b), key
        else:
            assert type(a) is type(b) and a == b, key


def assert_plain(sd):
    """Only numpy arrays (no object dtype) and Python scalars (int, float, bool, str)."""
    assert type(sd) is dict and sd
    for key, v in sd.items():
        assert isinstance(key, str)
        if isinstance(v, np.ndarray):
            assert v.dtype != object, key
        else:
            assert type(v) in (int, float, bool, str), (key, type(v))


def assert_states_equal(a, b):
    assert a.keys() == b.keys()
    for key in b:
        x, y = a[key], b[key]
        assert type(x) is type(y), key
        if isinstance(y, np.ndarray):
            assert x.dtype == y.dtype and np.array_equal(x, y), key
        else:
            assert x == y, key


def test_the_comparisons_can_fail():
    """The helpers above detect a 1e-11 relative change, a changed count and a changed integer field."""
    ref = one_pass("gram").finalize()
    bumped = dataclasses.replace(ref, scatter=ref.scatter * (1 + 1e-11))
    with pytest.raises(AssertionError):
        assert_stats_close(bumped, ref)
    with pytest.raises(AssertionError):
        assert_stats_close(dataclasses.replace(ref, n_samples=ref.n_samples + 1), ref)
    nc = one_pass("nc4").finalize()
    with pytest.raises(AssertionError):
        assert_stats_close(dataclasses.replace(nc, n_agree=nc.n_agree - 1), nc)
    sd = one_pass("cross").state_dict()
    other = dict(sd, **{"a.mean": np.nextafter(sd["a.mean"], np.inf)})
    with pytest.raises(AssertionError):
        assert_states_equal(other, sd)


# --- merging shards ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(CASES))
@pytest.mark.parametrize("k", sorted(SHARDS))
@pytest.mark.parametrize("order", sorted(ORDERS))
def test_merged_shards_equal_one_pass(name, k, order):
    ref = one_pass(name).finalize()
    assert isinstance(ref, STATS_TYPES[name])
    shards = [fed(name, sl) for sl in slices(SHARDS[k])]
    assert [s.n_samples for s in shards] == SHARDS[k]
    merged = ORDERS[order](shards)
    assert merged.n_samples == N
    assert_stats_close(merged.finalize(), ref)


@pytest.mark.parametrize("name", sorted(CASES))
def test_merging_into_and_with_an_empty_accumulator(name):
    ref = one_pass(name).finalize()
    acc = make(name)
    for sl in slices(SHARDS[5]):
        _merge(acc, fed(name, sl))
        _merge(acc, make(name))  # an empty shard adds nothing
    assert_stats_close(acc.finalize(), ref)


@pytest.mark.parametrize("name", sorted(CASES))
def test_torch_batches_equal_numpy_batches(name):
    ref = one_pass(name).finalize()
    shards = [fed(name, sl, _torch) for sl in slices(SHARDS[5])]
    assert_stats_close(tree(shards).finalize(), ref)
    # a torch-fed shard and a numpy-fed shard merge either way round
    a, b = fed(name, slice(0, 20), _torch), fed(name, slice(20, N))
    assert_stats_close(b.merge(a).finalize(), ref)


# --- state_dict -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(CASES))
def test_state_dict_round_trip_is_exact_and_keeps_updating(name):
    acc = make(name)
    for sl in (slice(0, 7), slice(7, 8), slice(8, 30)):
        CASES[name][1](acc, sl, _np)
    sd = acc.state_dict()
    assert_plain(sd)
    assert sd["kind"] == type(acc).__name__
    back = type(acc).from_state_dict(sd)
    assert type(back) is type(acc) and back.n_samples == acc.n_samples == 30
    assert_states_equal(back.state_dict(), sd)
    before = acc.finalize()
    assert_stats_equal(back.finalize(), before)
    # finalize changes nothing: the state after it is the same and restores the same statistics
    sd_after = acc.state_dict()
    assert_states_equal(sd_after, sd)
    assert_stats_equal(type(acc).from_state_dict(sd_after).finalize(), before)
    # the state_dict is a copy: writing into it does not touch the accumulator
    for v in sd.values():
        if isinstance(v, np.ndarray) and v.dtype.kind == "f" and v.size:
            v[...] = 0.0
    assert_stats_equal(acc.finalize(), before)
    # the restored accumulator keeps updating (and merging) exactly as the original
    for target in (acc, back):
        CASES[name][1](target, slice(30, 36), _np)
        target.merge(fed(name, slice(36, N)))
    assert back.n_samples == acc.n_samples == N
    assert_states_equal(back.state_dict(), acc.state_dict())
    assert_stats_equal(back.finalize(), acc.finalize())
    assert_stats_close(back.finalize(), one_pass(name).finalize())


@pytest.mark.parametrize("name", sorted(CASES))
def test_empty_state_dict_round_trips(name):
    empty = make(name)
    sd = empty.state_dict()
    assert_plain(sd)
    back = type(empty).from_state_dict(sd)
    assert back.n_samples == 0
    assert_states_equal(back.state_dict(), sd)
    for acc in (empty, back):
        with pytest.raises(InputError, match="no samples"):
            acc.finalize()
        CASES[name][1](acc, slice(0, N), _np)
    assert_stats_equal(back.finalize(), empty.finalize())


@pytest.mark.parametrize("name", sorted(CASES))
def test_state_dict_of_torch_fed_accumulator_is_plain_numpy(name):
    torch = pytest.importorskip("torch")
    acc = fed(name, slice(0, 25), _torch)
    sd = acc.state_dict()
    assert_plain(sd)
    assert not any(isinstance(v, torch.Tensor) for v in sd.values())
    back = type(acc).from_state_dict(sd)
    assert_stats_equal(back.finalize(), acc.finalize())  # the float64 numbers moved to the host unchanged


@pytest.mark.parametrize("name", sorted(CASES))
def test_state_dict_survives_np_savez(name, tmp_path):
    acc = fed(name, slice(0, 30))
    path = tmp_path / "state.npz"
    np.savez(path, **acc.state_dict())
    with np.load(path, allow_pickle=False) as z:
        loaded = dict(z)
    back = type(acc).from_state_dict(loaded)
    assert_states_equal(back.state_dict(), acc.state_dict())
    assert_stats_equal(back.finalize(), acc.finalize())


def test_class_stats_with_string_labels_round_trip_through_npz(tmp_path):
    names = np.array(["cat", "dog", "emu", "fox"])[LABELS]
    acc = ClassStatsAccumulator().update(F[:30], names[:30])
    np.savez(tmp_path / "s.npz", **acc.state_dict())
    with np.load(tmp_path / "s.npz", allow_pickle=False) as z:
        back = ClassStatsAccumulator.from_state_dict(dict(z))
    assert back.finalize().classes.tolist() == ["cat", "dog", "emu", "fox"]
    assert_stats_equal(back.update(F[30:], names[30:]).finalize(), acc.update(F[30:], names[30:]).finalize())


# --- the protocol and its refusals ------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(CASES))
def test_every_accumulator_satisfies_the_protocol(name):
    acc = make(name)
    assert isinstance(acc, Accumulator)
    assert acc.n_samples == 0
    rows = slice(0, 5)
    assert CASES[name][1](acc, rows, _np) is acc  # update returns self
    assert acc.n_samples == 5
    assert isinstance(type(acc).from_state_dict(acc.state_dict()), Accumulator)


def test_non_accumulators_are_not_accumulators():
    assert not isinstance(object(), Accumulator)
    assert not isinstance(one_pass("gram").finalize(), Accumulator)


@pytest.mark.parametrize("name", sorted(CASES))
def test_merging_another_kind_is_refused(name):
    acc = fed(name, slice(0, 10))
    before = acc.state_dict()
    for other_name in CASES:
        other = fed(other_name, slice(10, 20))
        if type(other) is type(acc):
            continue
        with pytest.raises(InputError, match=f"cannot merge a {type(other).__name__} into a {type(acc).__name__}"):
            acc.merge(other)
    assert_states_equal(acc.state_dict(), before)


@pytest.mark.parametrize("name", sorted(CASES))
def test_another_kinds_state_dict_is_refused(name):
    acc = fed(name, slice(0, 10))
    for other_name in CASES:
        other = make(other_name)
        if type(other) is type(acc):
            continue
        with pytest.raises(InputError, match=f"of kind '{type(acc).__name__}', not '{type(other).__name__}'"):
            type(other).from_state_dict(acc.state_dict())
    sd = acc.state_dict()
    for dropped in sd:
        if dropped not in ("kind", "state_version"):
            with pytest.raises(InputError, match=f"lacks \\['{dropped}'\\]"):
                type(acc).from_state_dict({k: v for k, v in sd.items() if k != dropped})
    with pytest.raises(InputError, match="layout version"):
        type(acc).from_state_dict({**acc.state_dict(), "state_version": 99})
    with pytest.raises(InputError, match="needs the dict"):
        type(acc).from_state_dict([1, 2, 3])


def test_incompatible_widths_are_refused_and_leave_the_state_unchanged():
    cross = CrossGramAccumulator().update(F[:10], G[:10])
    before = cross.state_dict()
    with pytest.raises(InputError, match=r"first set \(A\)"):
        cross.merge(CrossGramAccumulator().update(F[:4, :4], G[:4]))
    with pytest.raises(InputError, match=r"second set \(B\)"):
        cross.merge(CrossGramAccumulator().update(F[:4], G[:4, :2]))
    assert_states_equal(cross.state_dict(), before)
    cls = ClassStatsAccumulator().update(F[:10], LABELS[:10])
    with pytest.raises(InputError, match="4 features but this accumulator has seen 5"):
        cls.merge(ClassStatsAccumulator().update(F[:6, :4], LABELS[:6]))
    with pytest.raises(InputError, match="4 features but this accumulator has seen 5"):
        cls.update(F[10:20, :4], LABELS[10:20])  # a new class with other columns is refused too
    with pytest.raises(InputError, match="label kinds"):
        cls.merge(ClassStatsAccumulator().update(F[:6], np.array(list("abcabc"))))


def test_incompatible_spectrum_accumulators_are_refused():
    acc = SpectrumAccumulator(n_classes=C).update(F[:10], LABELS[:10])
    with pytest.raises(InputError, match="n_classes=5"):
        acc.merge(SpectrumAccumulator(n_classes=5).update(F[10:20], LABELS[10:20]))
    with pytest.raises(InputError, match="with_outputs=True"):
        acc.merge(SpectrumAccumulator(n_classes=C, with_outputs=True).update(F[10:20], LABELS[10:20], OUT[10:20]))
    reg = SpectrumAccumulator().update(F[:10], Y_REG[:10])
    with pytest.raises(InputError, match="3 columns into targets with 2"):
        SpectrumAccumulator().update(F[:10], Y_REG[:10, :2]).merge(reg)
    # labels (C columns) and a C-column target matrix are not the same kind of target
    with pytest.raises(InputError, match="class labels"):
        SpectrumAccumulator(n_classes=C).update(F[:10], LABELS[:10]).merge(
            SpectrumAccumulator(n_classes=C).update(F[10:20], np.eye(C)[LABELS[10:20]] * 2.0))
    # the SpectrumStats replace the old bare tuple
    stats = acc.finalize()
    with pytest.raises(InputError, match="SpectrumStats"):
        feature_spectrum_from_stats((stats.cross, stats.n_targets, stats.has_outputs, stats.classification))


def test_nc4_shards_with_other_means_or_classes_are_refused():
    acc = NC4Accumulator(MEANS, CLASSES).update(F[:10], PRED[:10])
    with pytest.raises(InputError, match="other class means"):
        acc.merge(NC4Accumulator(MEANS + 1e-9, CLASSES).update(F[10:20], PRED[10:20]))
    with pytest.raises(InputError, match="other class means or classes"):
        acc.merge(NC4Accumulator(MEANS, CLASSES[::-1].copy()).update(F[10:20], PRED[10:20]))
    with pytest.raises(InputError, match="5 features but the class means have 4"):
        NC4Accumulator(MEANS[:, :4], CLASSES).update(F[:3], PRED[:3])
    with pytest.raises(InputError, match="one per row of means"):
        NC4Accumulator(MEANS, CLASSES[:3])
    with pytest.raises(InputError, match="9 predictions for 10 samples"):
        acc.update(F[:10], PRED[:9])


# --- neural collapse, streamed ----------------------------------------------------------------


@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_streamed_neural_collapse_equals_in_memory(backend):
    t = _np if backend == "numpy" else _torch
    W = np.random.default_rng(3).standard_normal((C, P))
    dense = neural_collapse(F, LABELS, W=W, predictions=PRED)
    assert 0.5 < dense.nc4 < 1.0  # the flips made NC4 non-trivial
    # pass 1: class statistics over 5 shards; pass 2: NC4 with the streamed class means, 5 other shards
    stats = tree([fed("class", sl, t) for sl in slices(SHARDS[5])]).finalize()
    nc4_shards = []
    for sl in slices([10, 1, 20, 10]):
        nc4_shards.append(NC4Accumulator.from_class_stats(stats).update(t(F[sl]), t(PRED[sl])))
    nc4 = left_fold(nc4_shards).finalize()
    assert nc4.n_samples == N and nc4.n_agree == round(dense.nc4 * N)
    assert nc4_from_stats(nc4) == dense.nc4
    assert nc4.mismatch == pytest.approx(1.0 - dense.nc4, abs=1e-15)
    streamed = neural_collapse_from_stats(stats, W=W, nc4=nc4)
    for field in ("nc1", "nc2_equinorm", "nc2_equiangle", "nc2_maxangle", "nc3"):
        assert getattr(streamed, field) == pytest.approx(getattr(dense, field), rel=1e-10), field
    assert streamed.nc4 == dense.nc4
    assert (streamed.n_classes, streamed.n_samples) == (C, N)
    # logits give the same NC4 as their argmax labels
    logits = np.eye(C)[PRED] * 4.0 - 1.0
    by_logits = NC4Accumulator.from_class_stats(stats).update(t(F), t(logits)).finalize()
    assert by_logits.n_agree == nc4.n_agree
    assert neural_collapse(F, LABELS, predictions=logits).nc4 == dense.nc4


def test_nc4_counts_agreements_against_an_independent_computation():
    nearest = CLASSES[np.argmin(((F[:, None, :] - MEANS[None]) ** 2).sum(-1), axis=1)]
    expected = int((nearest == PRED).sum())
    assert 0 < expected < N
    assert NC4Accumulator(MEANS, CLASSES).update(F, PRED).finalize().n_agree == expected


def test_neural_collapse_from_stats_checks_the_second_pass():
    stats = ClassStatsAccumulator().update(F, LABELS).finalize()
    short = NC4Accumulator.from_class_stats(stats).update(F[:40], PRED[:40]).finalize()
    with pytest.raises(SampleMismatchError, match="the class statistics has 41 samples but the NC4 pass has 40"):
        neural_collapse_from_stats(stats, nc4=short)
    other = NC4Accumulator(MEANS * 2.0, CLASSES).update(F, PRED).finalize()
    with pytest.raises(InputError, match="other classes or class means"):
        neural_collapse_from_stats(stats, nc4=other)
    with pytest.raises(InputError, match="ClassStats"):
        neural_collapse_from_stats(np.eye(3))
    with pytest.raises(InputError, match="NC4Stats"):
        nc4_from_stats(stats)
    with pytest.raises(InputError, match="NC4 needs the features"):
        neural_collapse(stats, predictions=PRED)


def test_merged_spectrum_shards_give_the_dense_spectrum():
    for center in (False, True):
        dense = feature_spectrum(F, LABELS, OUT, center=center)
        stats = tree([fed("spectrum", sl) for sl in slices(SHARDS[5])]).finalize()
        st = feature_spectrum_from_stats(stats, center=center)
        np.testing.assert_allclose(st.rho, dense.rho, rtol=1e-9)
        np.testing.assert_allclose(st.pi_star, dense.pi_star, rtol=1e-9)
        np.testing.assert_allclose(st.pi, dense.pi, rtol=1e-9)
        assert st.regime == dense.regime and st.n_samples == N
