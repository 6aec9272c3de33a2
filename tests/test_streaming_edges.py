"""Streaming follows the in-memory rules and messages: N >= 2, n_values >= 1, a clear message for empty input;
the CLI names its own options in range errors."""

from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner

import deepspan
from deepspan.cli import main
from deepspan.errors import InputError
from deepspan.linalg import GramAccumulator
from deepspan.measures import pvector_from_stats


def _stats(F):
    acc = GramAccumulator()
    acc.update(F)
    return acc.finalize()


def test_one_sample_refused_in_memory_and_streamed_alike():
    F = np.ones((1, 4))
    with pytest.raises(InputError) as mem:
        deepspan.pvector(F)
    with pytest.raises(InputError) as streamed:
        pvector_from_stats(_stats(F))
    tail = "sample(s) (rows); at least 2 are needed for a subspace in sample space"
    assert tail in str(mem.value) and tail in str(streamed.value)
    assert "the streamed matrix has 1 sample(s)" in str(streamed.value)


@pytest.mark.parametrize("bad", [0, -1, 2.5, True])
def test_n_values_checked_in_both_routes(bad):
    F = np.random.default_rng(0).random((6, 3))
    with pytest.raises(InputError, match="n_values"):
        deepspan.pvector(F, n_values=bad)
    with pytest.raises(InputError, match="n_values"):
        pvector_from_stats(_stats(F), n_values=bad)


def test_streamed_equals_in_memory_for_two_samples():
    F = np.array([[1.0, 2.0, 0.5], [0.3, -1.0, 2.0]])
    p, q = deepspan.pvector(F, n_values=2), pvector_from_stats(_stats(F), n_values=2)
    np.testing.assert_allclose(q.singular_values, p.singular_values, rtol=1e-12)


def test_cli_pvector_edges(tmp_path):
    run = CliRunner()
    np.save(tmp_path / "empty.npy", np.zeros((0, 4)))
    np.save(tmp_path / "one.npy", np.ones((1, 4)))
    np.save(tmp_path / "ok.npy", np.random.default_rng(0).random((30, 4)))
    cases = {
        ("empty.npy",): "holds no rows: save a samples x features matrix with at least 2 rows",
        ("one.npy",): "at least 2 are needed",
        ("ok.npy", "--n-values", "0"): "Invalid value for '--n-values'",
        ("ok.npy", "--chunk-rows", "0"): "Invalid value for '--chunk-rows'",
    }
    for args, fragment in cases.items():
        r = run.invoke(main, ["pvector", str(tmp_path / args[0]), *args[1:]])
        assert r.exit_code != 0 and "Traceback" not in r.output, r.output
        assert fragment in r.output, r.output
    r = run.invoke(main, ["track", "m:f", str(tmp_path / "ok.npy"), "--layer", "x", "--out", str(tmp_path / "o"),
                          "--k", "0"])
    assert r.exit_code == 2 and "Invalid value for '--k'" in r.output, r.output


# --- principal angles: k beyond the rank -------------------------------------------------------------


def _rank3_and_full(seed=0):
    rng = np.random.default_rng(seed)
    A = rng.standard_normal((50, 3))
    X = np.column_stack([A, A @ rng.standard_normal((3, 4))])  # width 7, rank 3
    return X, rng.standard_normal((50, 7))


@pytest.mark.parametrize("center", [False, True])
def test_principal_angles_refuse_k_beyond_the_rank_and_name_it(center):
    from deepspan.measures.pvector import principal_angles

    X, Y = _rank3_and_full()
    assert principal_angles(X, Y, 3, center=center).shape == (3,)
    for k in (4, 7):
        with pytest.raises(InputError, match=rf"A has numerical rank 3{' after centering' if center else ''}, "
                                             rf"below k={k}.*Ask for k <= 3"):
            principal_angles(X, Y, k, center=center)
        with pytest.raises(InputError, match=r"B has numerical rank 3"):
            principal_angles(Y, X, k, center=center)


def test_mean_principal_angle_caps_k_at_each_sides_rank():
    from deepspan.measures.pvector import mean_principal_angle, principal_angles

    X, Y = _rank3_and_full()
    # capped at rank 3: the mean over the three determined angles, the same as asking for k = 3
    assert mean_principal_angle(X, Y, 5) == pytest.approx(float(np.mean(principal_angles(X, Y, 3))), abs=1e-9)
    assert mean_principal_angle(X, X, 7) == pytest.approx(0.0, abs=1e-6)
    assert deepspan.MEASURES["principal_angle"](X, Y) == pytest.approx(mean_principal_angle(X, Y, 5), abs=1e-9)


# --- the second pass of a streamed P-vector: same samples, same order ----------------------------------


def _streamed(F, sizes, center=False):
    acc = GramAccumulator()
    start = 0
    for size in sizes:
        acc.update(F[start:start + size])
        start += size
    return acc, pvector_from_stats(acc.finalize(), center=center)


def _feature_rows(seed=0, n=240, d=6):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, d)) @ np.diag([3.0, 2.0, 1.0, 0.5, 0.3, 0.1]) + 1.0


@pytest.mark.parametrize("center", [False, True])
def test_second_pass_in_other_batches_same_order_gives_the_dense_u(center):
    F = _feature_rows()
    acc, p = _streamed(F, [100, 100, 40], center)
    full = deepspan.with_left_vector(p, (F[i:i + 7] for i in range(0, 240, 7)), mean=acc.finalize().mean)
    np.testing.assert_allclose(full.u, deepspan.pvector(F, center=center).u, atol=1e-9)


@pytest.mark.parametrize("permute", ["swap_two", "reverse", "shuffle", "rotate"])
def test_second_pass_in_another_order_is_refused(permute):
    from deepspan import SampleMismatchError

    F = _feature_rows(1)
    _, p = _streamed(F, [64, 64, 64, 48])
    order = np.arange(240)
    if permute == "swap_two":
        order[[17, 201]] = order[[201, 17]]
    elif permute == "reverse":
        order = order[::-1]
    elif permute == "shuffle":
        order = np.random.default_rng(0).permutation(240)
    else:
        order = np.roll(order, 1)
    with pytest.raises(SampleMismatchError, match="same samples in another order.*shuffle=False"):
        deepspan.with_left_vector(p, [F[order]])


def test_second_pass_over_other_samples_is_refused():
    from deepspan import SampleMismatchError

    F = _feature_rows(2)
    _, p = _streamed(F, [240])
    G = F.copy()
    G[100] += 0.01
    with pytest.raises(SampleMismatchError, match="other samples"):
        deepspan.with_left_vector(p, [G])
    with pytest.raises(SampleMismatchError):
        deepspan.with_left_vector(p, [F[:-1]])


def test_merged_shards_check_the_samples_but_not_their_order():
    """Gram statistics do not depend on merge order, so a merged P-vector knows its samples, not their order."""
    from deepspan import SampleMismatchError

    F = _feature_rows(3)
    shards = [GramAccumulator().update(F[i:i + 80]) for i in (160, 0, 80)]  # merged out of row order
    acc = shards[0].merge(shards[1]).merge(shards[2])
    p = pvector_from_stats(acc.finalize())
    full = deepspan.with_left_vector(p, [F])
    np.testing.assert_allclose(full.u, deepspan.pvector(F).u, atol=1e-9)
    G = F.copy()
    G[5] *= 1.5
    with pytest.raises(SampleMismatchError, match="other samples"):
        deepspan.with_left_vector(p, [G])
    # merging into an empty accumulator keeps the order
    p1 = pvector_from_stats(GramAccumulator().merge(GramAccumulator().update(F)).finalize())
    with pytest.raises(SampleMismatchError, match="another order"):
        deepspan.with_left_vector(p1, [F[::-1]])


def test_order_check_survives_state_dict_and_to_dict_and_torch_batches():
    import torch

    from deepspan import PVector, SampleMismatchError

    F = _feature_rows(4)
    acc = GramAccumulator()
    for i in range(0, 240, 50):
        acc.update(torch.tensor(F[i:i + 50], dtype=torch.float32))
    restored = GramAccumulator.from_state_dict(acc.state_dict())
    p = PVector.from_dict(pvector_from_stats(restored.finalize()).to_dict())
    F32 = torch.tensor(F, dtype=torch.float32)
    full = deepspan.with_left_vector(p, [F32[:120], F32[120:]])
    assert abs(abs(float(full.u @ deepspan.pvector(F32.numpy().astype(np.float64)).u)) - 1.0) < 1e-9
    with pytest.raises(SampleMismatchError, match="another order"):
        deepspan.with_left_vector(p, [F32[120:], F32[:120]])
