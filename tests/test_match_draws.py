"""Independent row draws for the subspace match (Wang et al. 2018's protocol): deepspan.draw_rows and the
row-draws route of deepspan.layer_match_similarity.

* The drawn (image, position) indices: the documented generator, different in every draw, the same for
  two networks, without replacement within a draw; the gathered rows equal a full ``channels``
  extraction at those indices, for any batch size; fully connected layers keep every image once.
* The mean over independent draws agrees with the similarity on all rows (within 3 standard errors)
  on a planted partial match whose neurons sit at known distances around eps.
* One forward pass per network over the data, whatever the number of draws and layers.
* Bad input: clear errors that name the fix.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import deepspan
from deepspan import InputError, SampleMismatchError
from deepspan.features import RowDraws, draw_indices, draw_rows
from deepspan.measures.match import MatchGram, layer_match_similarity, max_match

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402


def _net(seed: int) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(4, 6, 3), nn.ReLU(),
                         nn.Flatten(), nn.Linear(6 * 2 * 2, 8), nn.ReLU())


@pytest.fixture(scope="module")
def images():
    return np.random.default_rng(0).standard_normal((150, 1, 8, 8)).astype(np.float32)


# ---------------------------------------------------------------- (a) the drawn rows
def test_draw_indices_follow_the_documented_generator():
    idx = draw_indices(50, 36, n_rows=400, draws=5, seed=7)
    assert idx.shape == (5, 400) and idx.dtype == np.int64
    for r in range(5):
        hand = np.sort(np.random.default_rng([7, r]).choice(50 * 36, size=400, replace=False))
        np.testing.assert_array_equal(idx[r], hand)
        assert len(np.unique(idx[r])) == 400                      # without replacement within a draw
    assert all(not np.array_equal(idx[r], idx[s]) for r in range(5) for s in range(r))   # draws differ
    assert 0 <= idx.min() and idx.max() < 50 * 36
    np.testing.assert_array_equal(draw_indices(50, 36, 400, 5, seed=7), idx)             # seeded
    assert not np.array_equal(draw_indices(50, 36, 400, 5, seed=8), idx)
    # no more rows than n_rows: one draw of every row
    np.testing.assert_array_equal(draw_indices(10, 4, n_rows=40, draws=3), np.arange(40)[None, :])


def test_draws_differ_per_repeat_and_are_the_same_for_both_networks(images):
    a = draw_rows(_net(0), images, ["1", "4", "7"], n_rows=500, draws=4, seed=3, batch_size=32)
    b = draw_rows(_net(1), images, ["1", "4", "7"], n_rows=500, draws=4, seed=3, batch_size=32)
    assert isinstance(a, RowDraws) and a.layers == ["1", "4", "7"]
    assert a["1"].shape == (4, 500, 4) and a["4"].shape == (4, 500, 6) and a["7"].shape == (1, 150, 8)
    assert a.n_positions == {"1": 64, "4": 4, "7": 1} and a.spatial == {"1": True, "4": True, "7": False}
    for layer, P in (("1", 64), ("4", 4)):
        idx = a.index[layer]
        np.testing.assert_array_equal(idx, b.index[layer])                       # the same rows in both networks
        np.testing.assert_array_equal(idx, draw_indices(150, P, 500, 4, seed=3))
        assert len({tuple(row) for row in idx.tolist()}) == 4                   # every draw different
        img, pos = a.image_position(layer)
        assert img.min() >= 0 and img.max() < 150 and pos.min() >= 0 and pos.max() < P
        assert len(np.unique(img)) > 100                                        # drawn across all images
        assert a.layer_hash(layer) == b.layer_hash(layer) and not a.is_complete(layer)
    # rows of different layers are drawn over different row sets, so their hashes differ
    assert a.layer_hash("1") != a.layer_hash("4")
    np.testing.assert_array_equal(a.index["7"], np.arange(150)[None, :])
    assert a.is_complete("7") and a.n_draws("7") == 1 and a.n_draws("1") == 4
    # another seed draws other rows, and the match refuses to compare them
    c = draw_rows(_net(1), images, ["1"], n_rows=500, draws=4, seed=4)
    assert not np.array_equal(c.index["1"], a.index["1"])
    with pytest.raises(SampleMismatchError, match="same seed"):
        layer_match_similarity(a, c, layers=["1"])


@pytest.mark.parametrize("batch_size,channels_last", [(1, False), (17, False), (150, False), (1000, False),
                                                      (17, True), (1000, True)])
def test_drawn_rows_equal_a_full_extraction_at_the_drawn_indices(images, batch_size, channels_last):
    net = _net(0)
    d = draw_rows(net, images, ["1", "4", "7"], n_rows=300, draws=3, seed=1, batch_size=batch_size,
                  channels_last=channels_last)
    assert d.provenance["channels_last"] is channels_last
    assert all(p.is_contiguous() for p in net.parameters())     # the parameters' layout is restored
    full = deepspan.extract(net, images, ["1", "4", "7"], policy="channels", progress=False)
    # full["1"] holds every (image, position) row, image-major: row = image * P + position; other batch sizes
    # than extract's may round the convolutions differently (float32)
    for layer in ("1", "4"):
        for r in range(3):
            np.testing.assert_allclose(d.draw(layer, r), full[layer][d.index[layer][r]], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(d.draw("7", 0), full["7"], rtol=1e-5, atol=1e-6)
    assert d.sample_hash == full.sample_hash and net.training  # the model's mode is restored


def test_gather_routes_agree():
    """The numpy route (CPU float tensors, either memory layout) and the torch route (other dtypes, devices)."""
    from deepspan.features.rows import _gather

    t = torch.randn(6, 5, 3, 4).to(torch.bfloat16)               # bfloat16: the torch route
    rng = np.random.default_rng(0)
    img, pos = rng.integers(0, 6, 20), rng.integers(0, 12, 20)
    want = t.float().reshape(6, 5, 12).numpy()[img, :, pos]
    np.testing.assert_array_equal(_gather(t, 6, 5, 12, img, pos), want)
    f = t.float()
    np.testing.assert_array_equal(_gather(f, 6, 5, 12, img, pos), want)
    np.testing.assert_array_equal(_gather(f.contiguous(memory_format=torch.channels_last), 6, 5, 12, img, pos), want)
    np.testing.assert_array_equal(_gather(f[:, :, 0, 0], 6, 5, 1, img, img * 0), f[:, :, 0, 0].numpy()[img])


# ---------------------------------------------------------------- (b) draws agree with all rows
class _Channels(nn.Module):
    """A "network" whose hooked layer ``feat`` outputs some input channels: planted activations, as they are."""

    def __init__(self, channels: list[int]) -> None:
        super().__init__()
        self.channels = list(channels)
        self.feat = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.feat(x[:, self.channels])


EPS = 0.3
# relative distances (on all rows, exactly) of A's noisy neurons to the shared span, placed symmetrically around EPS
PLANTED_D = (0.2, 0.288, 0.294, 0.298, 0.302, 0.306, 0.312, 0.45)


def _planted(n_images=400, side=10, seed=0):
    """Images whose (image, position) rows are A's 11 and B's 5 channels with a planted partial match.

    On all N x P rows: z1..z3 (shared), e1..e8 and g1, g2 are exactly orthogonal, unit mean square.
    A = [z1, z2, z3, z_(j mod 3) + s_j e_j for j = 1..8] with s_j set so that neuron j's relative distance
    to span(z) is PLANTED_D[j]; B = [z @ R (a mixed basis of the shared span), g1, g2].
    At eps 0.3 the maximum match on all rows is A's 3 pure + 4 noisy neurons and B's 3 shared ones: 10 / 16.
    """
    rng = np.random.default_rng(seed)
    M = n_images * side * side
    Q, _ = np.linalg.qr(rng.standard_normal((M, 13)))
    Q *= math.sqrt(M)
    Z, E, G = Q[:, :3], Q[:, 3:11], Q[:, 11:]
    d = np.array(PLANTED_D)
    s = d / np.sqrt(1.0 - d**2)
    A = np.hstack([Z, Z[:, np.arange(8) % 3] + s * E])
    B = np.hstack([Z @ rng.standard_normal((3, 3)), G])
    rows = np.hstack([A, B]).astype(np.float32)                      # M x 16, image-major rows
    X = rows.reshape(n_images, side * side, 16).transpose(0, 2, 1).reshape(n_images, 16, side, side)
    return np.ascontiguousarray(X), rows[:, :11], rows[:, 11:]


def test_mean_over_independent_draws_agrees_with_all_rows():
    X, A_all, B_all = _planted()
    exact = max_match(A_all, B_all, EPS)
    assert exact.a.tolist() == [0, 1, 2, 3, 4, 5, 6] and len(exact.b) == 3
    assert exact.similarity == pytest.approx(10 / 16)
    na, nb = _Channels(range(11)), _Channels(range(11, 16))
    da = draw_rows(na, X, "feat", n_rows=4000, draws=16, seed=0, batch_size=64)
    db = draw_rows(nb, X, "feat", n_rows=4000, draws=16, seed=0, batch_size=64)
    (row,) = layer_match_similarity(da, db, eps_grid=(EPS,))
    per_draw = [MatchGram.from_activations(da.draw("feat", r), db.draw("feat", r)).max_match(EPS).similarity
                for r in range(16)]
    assert row["repeats"] == 16 and row["n_rows"] == 4000 and row["independent_draws"]
    assert row["similarity"] == pytest.approx(np.mean(per_draw), abs=1e-12)
    assert row["std"] == pytest.approx(np.std(per_draw, ddof=1), abs=1e-12)
    assert row["sem"] == pytest.approx(row["std"] / 4, abs=1e-12)
    # the draws really vary (neurons near eps move in and out) ...
    assert row["sem"] > 0 and len(set(per_draw)) > 1
    # ... and their mean estimates the all-rows similarity
    assert abs(row["similarity"] - exact.similarity) <= 3 * row["sem"]


# ---------------------------------------------------------------- (c) one forward pass per network
def test_one_forward_pass_per_network(images):
    net = _net(0)
    seen = []

    def count(_module, inputs):
        seen.append(int(inputs[0].shape[0]))

    net.register_forward_pre_hook(count)
    d = draw_rows(net, images, ["1", "4", "7"], n_rows=300, draws=8, seed=0, batch_size=40)
    assert len(seen) == math.ceil(150 / 40) == d.provenance["forward_passes"]
    assert sum(seen) == 150                                  # every image once, however many draws and layers
    assert d["1"].shape[0] == 8


# ---------------------------------------------------------------- layer_match_similarity: the row-draws route
def test_row_draws_route_values(images):
    a = draw_rows(_net(0), images, ["1", "7"], n_rows=400, draws=3, seed=2)
    b = draw_rows(_net(1), images, ["1", "7"], n_rows=400, draws=3, seed=2)
    rows = layer_match_similarity(a, b, eps_grid=(0.3, 0.5))
    assert [(r["layer_a"], r["eps"]) for r in rows] == [("1", 0.3), ("1", 0.5), ("7", 0.3), ("7", 0.5)]
    for r in rows:
        if r["layer_a"] == "1":
            sims = [max_match(a.draw("1", k), b.draw("1", k), r["eps"]).similarity for k in range(3)]
            assert r["repeats"] == 3 and r["n_rows"] == 400
            assert r["similarity"] == pytest.approx(np.mean(sims)) and r["std"] == pytest.approx(np.std(sims, ddof=1))
        else:  # fully connected: every image once, exact
            assert r["repeats"] == 1 and r["n_rows"] == 150 and r["std"] == 0.0 and r["sem"] == 0.0
            assert r["similarity"] == pytest.approx(max_match(a["7"][0], b["7"][0], r["eps"]).similarity)
    # a single sampled draw has no spread
    one_a = draw_rows(_net(0), images, "1", n_rows=400, draws=1, seed=2)
    one_b = draw_rows(_net(1), images, "1", n_rows=400, draws=1, seed=2)
    (r1,) = layer_match_similarity(one_a, one_b, eps_grid=(0.5,))
    assert r1["repeats"] == 1 and math.isnan(r1["std"]) and math.isnan(r1["sem"])


def test_featureset_route_reports_whether_draws_are_independent(images):
    pool = [deepspan.extract(_net(s), images, "1", policy="channels", positions_per_image=8, seed=0, progress=False)
            for s in (0, 1)]
    rows = layer_match_similarity(*pool, eps_grid=(0.5,), n_rows=500, repeats=3)
    assert rows[0]["repeats"] == 3 and not rows[0]["independent_draws"] and rows[0]["std"] >= 0
    full = [deepspan.extract(_net(s), images, "1", policy="channels", progress=False) for s in (0, 1)]
    rows = layer_match_similarity(*full, eps_grid=(0.5,), n_rows=500, repeats=3)
    assert rows[0]["independent_draws"] and rows[0]["n_rows"] == 500


# ---------------------------------------------------------------- bad input
def test_bad_input_names_the_fix(images):
    net = _net(0)
    with pytest.raises(InputError, match=r"n_rows must be a positive integer.*n_rows=10_000"):
        draw_rows(net, images, "1", n_rows=0)
    with pytest.raises(InputError, match=r"draws must be a positive integer.*draws=16"):
        draw_rows(net, images, "1", draws=0)
    with pytest.raises(InputError, match="draws must be a positive integer"):
        draw_rows(net, images, "1", draws=2.5)
    with pytest.raises(InputError, match="seed must be a non-negative integer"):
        draw_rows(net, images, "1", seed=-1)
    with pytest.raises(InputError, match="batch_size must be a positive integer"):
        draw_rows(net, images, "1", batch_size=0)
    with pytest.raises(InputError, match="unknown layer 'relu'"):
        draw_rows(net, images, "relu")
    with pytest.raises(InputError, match="must be a torch.nn.Module"):
        draw_rows(images, images, "1")

    class Stream(torch.utils.data.IterableDataset):
        def __iter__(self):
            return iter(torch.as_tensor(images))

    with pytest.raises(InputError, match="needs the number of samples before the pass"):
        draw_rows(net, torch.utils.data.DataLoader(Stream(), batch_size=10), "1")
    a = draw_rows(net, images, "1", n_rows=200, draws=2)
    fs = deepspan.extract(net, images, "1", policy="channels", progress=False)
    with pytest.raises(InputError, match="not one of each"):
        layer_match_similarity(a, fs)
    with pytest.raises(InputError, match=r"n_rows=300 differs from the row draws.*draw_rows\(\.\.\., n_rows=300\)"):
        layer_match_similarity(a, a, n_rows=300)
    with pytest.raises(InputError, match=r"repeats=5 differs.*draws=5"):
        layer_match_similarity(a, a, repeats=5)
    with pytest.raises(InputError, match="draw 2 out of range"):
        a.draw("1", 2)
    with pytest.raises(InputError, match="no layer '4'"):
        a["4"]
    with pytest.raises(InputError, match=r"eps must be in \[0, 1\)"):
        layer_match_similarity(a, a, eps_grid=(1.0,))
