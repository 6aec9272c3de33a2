"""deepspan.extract / list_layers: activations by forward hooks, checked against manual forward passes.

Every model here is built in the test; the manual computations use the
modules' parameters directly (functional conv / linear / batch norm in eval
mode), so they are independent of the hook machinery.
"""

from __future__ import annotations

import numpy as np
import pytest

import deepspan
from deepspan import ClassStatsAccumulator, GramAccumulator, InputError, SampleMismatchError
from deepspan.data import Dataset, load_digits
from deepspan.features.featureset import hash_sample_ids

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402
from torch.nn import functional as F  # noqa: E402
from torch.utils.data import DataLoader, TensorDataset  # noqa: E402


# --------------------------------------------------------------------------- data and models
@pytest.fixture(scope="module")
def digits() -> Dataset:
    return load_digits()


@pytest.fixture(scope="module")
def small(digits) -> Dataset:
    """The first 150 digits (several batches at batch_size 64, a partial last batch)."""
    return Dataset("digits150", digits.X[:150], digits.y[:150], digits.ids[:150])


def make_mlp(seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))


def mlp_manual(model: nn.Sequential, X) -> dict[str, np.ndarray]:
    x = torch.as_tensor(np.asarray(X), dtype=torch.float32).reshape(len(X), -1)
    with torch.no_grad():
        h = F.linear(x, model[1].weight, model[1].bias)
        r = torch.clamp(h, min=0)
        o = F.linear(r, model[3].weight, model[3].bias)
    return {"0": x.numpy(), "1": h.numpy(), "2": r.numpy(), "3": o.numpy()}


class Block(nn.Module):
    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 3, padding=1)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x):
        return self.relu(self.conv(x))


class CNN(nn.Module):
    """conv1 -> bn1 -> relu1 (in place) -> block.0 (dropout) -> block.1.conv -> block.1.relu (in place) -> flatten -> fc."""

    def __init__(self, seed: int = 0, c1: int = 4, c2: int = 6) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.conv1 = nn.Conv2d(1, c1, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(c1)
        self.relu1 = nn.ReLU(inplace=True)
        self.block = nn.Sequential(nn.Dropout(0.5), Block(c1, c2))
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(c2 * 8 * 8, 10)
        with torch.no_grad():  # running statistics far from the batch statistics: eval != train
            self.bn1.running_mean.copy_(torch.linspace(-0.3, 0.4, c1))
            self.bn1.running_var.copy_(torch.linspace(0.5, 2.0, c1))
            self.bn1.weight.copy_(torch.linspace(0.7, 1.3, c1))
            self.bn1.bias.copy_(torch.linspace(-0.2, 0.1, c1))

    def forward(self, x):
        if x.ndim == 3:
            x = x.unsqueeze(1)
        x = self.relu1(self.bn1(self.conv1(x)))
        x = self.block(x)
        return self.fc(self.flatten(x))


def cnn_manual(model: CNN, X) -> dict[str, np.ndarray]:
    """The activations of CNN in eval mode, computed functionally from its parameters."""
    x = torch.as_tensor(np.asarray(X), dtype=torch.float32).unsqueeze(1)
    bn = model.bn1
    with torch.no_grad():
        c1 = F.conv2d(x, model.conv1.weight, model.conv1.bias, padding=1)
        scale = (bn.weight / torch.sqrt(bn.running_var + bn.eps))[None, :, None, None]
        b1 = (c1 - bn.running_mean[None, :, None, None]) * scale + bn.bias[None, :, None, None]
        r1 = torch.clamp(b1, min=0)
        conv = model.block[1].conv
        c2 = F.conv2d(r1, conv.weight, conv.bias, padding=1)
        r2 = torch.clamp(c2, min=0)
        out = F.linear(r2.flatten(1), model.fc.weight, model.fc.bias)
    return {"conv1": c1.numpy(), "bn1": b1.numpy(), "relu1": r1.numpy(), "block.1.conv": c2.numpy(),
            "block.1.relu": r2.numpy(), "fc": out.numpy()}


class Count(nn.Module):
    """Identity that counts its calls."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        return x


class Pair(nn.Module):
    def forward(self, x):
        return x * 2.0, x + 1.0


class Named(nn.Module):
    def forward(self, x):
        return {"a": x - 1.0, "b": x * 3.0}


class TupleModel(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.flat = nn.Flatten()
        self.lin = nn.Linear(64, 8)
        self.pair = Pair()
        self.named = Named()
        self.head = nn.Linear(8, 3)

    def forward(self, x):
        h = self.lin(self.flat(x))
        a, b = self.pair(h)
        d = self.named(a + b)
        return self.head(d["a"] + d["b"])


class UnusedModel(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.flat = nn.Flatten()
        self.fc1 = nn.Linear(64, 16)
        self.spare = nn.Linear(16, 16)  # defined but never called in forward
        self.fc2 = nn.Linear(16, 10)

    def forward(self, x):
        return self.fc2(torch.relu(self.fc1(self.flat(x))))


class SharedModel(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.flat = nn.Flatten()
        self.lin = nn.Linear(64, 64)
        self.out = nn.Linear(64, 10)

    def forward(self, x):
        x = self.flat(x)
        x = torch.relu(self.lin(x))
        x = torch.relu(self.lin(x))  # the same module a second time
        return self.out(x)


def assert_no_hooks(model: nn.Module) -> None:
    for name, m in model.named_modules():
        assert not m._forward_hooks, f"forward hook left on {name or '<root>'}"
        assert not m._forward_pre_hooks, f"forward pre-hook left on {name or '<root>'}"


def assert_all_training(model: nn.Module, flag: bool = True) -> None:
    for name, m in model.named_modules():
        assert m.training is flag, f"{name or '<root>'} has training={m.training}"


# --------------------------------------------------------------------------- values
def test_mlp_features_equal_manual_forward(digits):
    model = make_mlp()
    fs = deepspan.extract(model, digits.X, ["1", "2", "3"], batch_size=256)
    ref = mlp_manual(model, digits.X)
    for layer in ("1", "2", "3"):
        assert fs[layer].shape == ref[layer].shape
        assert fs[layer].dtype == np.float32
        np.testing.assert_allclose(fs[layer], ref[layer], rtol=1e-5, atol=1e-6)
    assert fs.layers == ["1", "2", "3"]
    assert fs.n_samples == 1797
    # numpy input without ids: the running index
    np.testing.assert_array_equal(fs.sample_ids, np.arange(1797).astype(str))
    assert fs.sample_hash == hash_sample_ids(np.arange(1797).astype(str))
    assert_no_hooks(model)


def test_cnn_eval_mode_batchnorm_and_train_mode_restored(small):
    model = CNN()
    model.train()
    bn_state = {k: v.clone() for k, v in model.bn1.state_dict().items()}
    layers = ["conv1", "bn1", "relu1", "block.1.conv", "block.1.relu", "fc"]
    fs = deepspan.extract(model, small, layers, policy="flatten", batch_size=64)
    ref = cnn_manual(model, small.X)
    for layer in layers:
        expect = ref[layer].reshape(len(small.X), -1)
        assert fs[layer].shape == expect.shape, layer
        np.testing.assert_allclose(fs[layer], expect, rtol=1e-5, atol=1e-5, err_msg=layer)
    # eval mode: running statistics were used and not updated; dropout was off (deterministic)
    for k, v in model.bn1.state_dict().items():
        assert torch.equal(v, bn_state[k]), k
    assert_all_training(model, True)
    assert_no_hooks(model)
    # an eval-mode model stays in eval mode
    model.eval()
    deepspan.extract(model, small, "fc", batch_size=64)
    assert_all_training(model, False)


def test_inplace_relu_post_activation_and_conv_before_it_pre_activation(small):
    model = CNN()
    fs = deepspan.extract(model, small, ["bn1", "relu1", "block.1.conv", "block.1.relu"], policy="flatten")
    ref = cnn_manual(model, small.X)
    n = len(small.X)
    # hooked in-place ReLUs: the post-activation
    for relu, pre in (("relu1", "bn1"), ("block.1.relu", "block.1.conv")):
        assert (fs[relu] >= 0).all()
        np.testing.assert_allclose(fs[relu], np.maximum(ref[pre].reshape(n, -1), 0), rtol=1e-5, atol=1e-5)
        np.testing.assert_array_equal(fs[relu], np.maximum(fs[pre], 0))
    # modules right before an in-place ReLU: the pre-activation, not overwritten afterwards
    for pre in ("bn1", "block.1.conv"):
        assert (fs[pre] < 0).any(), pre
        np.testing.assert_allclose(fs[pre], ref[pre].reshape(n, -1), rtol=1e-5, atol=1e-5)
    # also when the pre-activation layer is the only one requested, with stop_early off
    fs2 = deepspan.extract(model, small, "block.1.conv", policy="flatten", stop_early=False)
    assert (fs2["block.1.conv"] < 0).any()
    np.testing.assert_allclose(fs2["block.1.conv"], ref["block.1.conv"].reshape(n, -1), rtol=1e-5, atol=1e-5)


def test_hooks_removed_and_mode_restored_after_errors(small):
    model = CNN()
    model.train()
    with pytest.raises(InputError, match="policy"):
        deepspan.extract(model, small, ["fc", "block.1.conv"])  # conv layer without a policy
    assert_no_hooks(model)
    assert_all_training(model, True)
    # an error raised inside a hook mid-forward: an accumulator that needs labels on unlabelled data
    with pytest.raises(InputError, match="labels"):
        deepspan.extract(model, small.X, "fc", accumulators={"fc": ClassStatsAccumulator()})
    assert_no_hooks(model)
    assert_all_training(model, True)
    # the model is usable (no hook left that would stop or record a forward pass)
    out = model.eval()(torch.as_tensor(small.X[:3], dtype=torch.float32))
    assert out.shape == (3, 10)


# --------------------------------------------------------------------------- policies
def test_policy_flatten_and_gap(small):
    model = CNN()
    n = len(small.X)
    ref = cnn_manual(model, small.X)["block.1.conv"]
    fs = deepspan.extract(model, small, ["block.1.conv", "conv1"], policy={"block.1.conv": "flatten", "conv1": "gap"},
                          batch_size=40)
    assert fs["block.1.conv"].shape == (n, 6 * 8 * 8)
    np.testing.assert_allclose(fs["block.1.conv"], ref.reshape(n, -1), rtol=1e-5, atol=1e-5)
    assert fs["conv1"].shape == (n, 4)
    np.testing.assert_allclose(fs["conv1"], cnn_manual(model, small.X)["conv1"].mean(axis=(2, 3)), rtol=1e-5, atol=1e-6)
    assert fs.policy == {"block.1.conv": "flatten", "conv1": "gap"}
    assert fs.positions == {}


def test_policy_channels_all_positions(small):
    model = CNN()
    n = 30
    X = small.X[:n]
    ref = cnn_manual(model, X)["block.1.conv"]  # (n, C, H, W)
    fs = deepspan.extract(model, X, "block.1.conv", policy="channels", batch_size=7)
    feats, pos = fs["block.1.conv"], fs.positions["block.1.conv"]
    assert feats.shape == (n * 64, 6)
    assert pos.shape == (n * 64, 2)
    # rows image-major: row i * 64 + p is image i at flat position p = h * 8 + w
    np.testing.assert_array_equal(pos[:, 0], np.repeat(np.arange(n), 64))
    np.testing.assert_array_equal(pos[:, 1], np.tile(np.arange(64), n))
    expect = ref.transpose(0, 2, 3, 1).reshape(n * 64, 6)
    np.testing.assert_allclose(feats, expect, rtol=1e-5, atol=1e-5)
    assert fs.policy == {"block.1.conv": "channels"}
    # the row hash covers the positions
    assert fs.layer_hash("block.1.conv") != fs.sample_hash


def test_policy_channels_sampled_positions_are_seeded_per_image(small):
    n, k = 40, 5
    X = small.X[:n]
    model_a, model_b = CNN(seed=0), CNN(seed=1, c1=3, c2=5)
    fa1 = deepspan.extract(model_a, X, "block.1.conv", policy="channels", positions_per_image=k, batch_size=7)
    fa2 = deepspan.extract(model_a, X, "block.1.conv", policy="channels", positions_per_image=k, batch_size=40)
    fb = deepspan.extract(model_b, X, "block.1.conv", policy="channels", positions_per_image=k, batch_size=16)
    pa1 = fa1.positions["block.1.conv"]
    assert fa1["block.1.conv"].shape == (n * k, 6)
    assert fb["block.1.conv"].shape == (n * k, 5)
    assert pa1.shape == (n * k, 2)
    np.testing.assert_array_equal(pa1, fa2.positions["block.1.conv"])  # batch size does not matter
    np.testing.assert_array_equal(pa1, fb.positions["block.1.conv"])  # nor the model (same spatial size)
    np.testing.assert_array_equal(fa1["block.1.conv"], fa2["block.1.conv"])
    assert fa1.layer_hash("block.1.conv") == fb.layer_hash("block.1.conv")
    np.testing.assert_array_equal(pa1[:, 0], np.repeat(np.arange(n), k))
    per_image = pa1[:, 1].reshape(n, k)
    assert all(len(set(r)) == k for r in per_image)  # distinct positions in each image
    assert (per_image >= 0).all() and (per_image < 64).all()
    assert len({tuple(r) for r in per_image}) > 1  # not the same positions for every image
    # a different seed draws other positions
    fs_seed = deepspan.extract(model_a, X, "block.1.conv", policy="channels", positions_per_image=k, seed=7)
    assert not np.array_equal(fs_seed.positions["block.1.conv"], pa1)
    # the gathered rows are the activations at those positions
    for model, fs in ((model_a, fa1), (model_b, fb)):
        ref = cnn_manual(model, X)["block.1.conv"]  # (n, C, 8, 8)
        img, p = fs.positions["block.1.conv"][:, 0], fs.positions["block.1.conv"][:, 1]
        expect = ref[img, :, p // 8, p % 8]
        np.testing.assert_allclose(fs["block.1.conv"], expect, rtol=1e-5, atol=1e-5)
    with pytest.raises(InputError, match="positions_per_image"):
        deepspan.extract(model_a, X, "block.1.conv", policy="channels", positions_per_image=65)


def test_one_dimensional_output_becomes_one_column(small):
    class SumHead(nn.Module):
        def forward(self, x):
            return x.sum(dim=1)

    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 3), SumHead())
    fs = deepspan.extract(model, small.X, "2")
    assert fs["2"].shape == (len(small.X), 1)
    x = torch.as_tensor(small.X, dtype=torch.float32).reshape(len(small.X), -1)
    with torch.no_grad():
        expect = F.linear(x, model[1].weight, model[1].bias).sum(1, keepdim=True).numpy()
    np.testing.assert_allclose(fs["2"], expect, rtol=1e-5, atol=1e-5)


def test_tuple_and_dict_outputs_need_select(small):
    model = TupleModel()
    x = torch.as_tensor(small.X, dtype=torch.float32).reshape(len(small.X), -1)
    with torch.no_grad():
        h = F.linear(x, model.lin.weight, model.lin.bias)
        s = h * 2.0 + (h + 1.0)
    with pytest.raises(InputError, match="select"):
        deepspan.extract(model, small.X, "pair")
    assert_no_hooks(model)
    with pytest.raises(InputError, match="select"):
        deepspan.extract(model, small.X, "named")
    assert_no_hooks(model)
    fs = deepspan.extract(model, small.X, "pair", select=1)
    np.testing.assert_allclose(fs["pair"], (h + 1.0).numpy(), rtol=1e-5, atol=1e-6)
    fs0 = deepspan.extract(model, small.X, ["pair", "named"], select={"pair": 0, "named": "b"})
    np.testing.assert_allclose(fs0["pair"], (h * 2.0).numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(fs0["named"], (s * 3.0).numpy(), rtol=1e-5, atol=1e-5)
    fsd = deepspan.extract(model, small.X, "named", select="b")
    np.testing.assert_array_equal(fsd["named"], fs0["named"])
    with pytest.raises(InputError, match="select"):
        deepspan.extract(model, small.X, "named", select="zzz")
    with pytest.raises(InputError, match="select"):
        deepspan.extract(model, small.X, "pair", select=5)
    assert_no_hooks(model)


# --------------------------------------------------------------------------- samples and inputs
class IdDataset(torch.utils.data.Dataset):
    """A map-style dataset carrying sample ids."""

    def __init__(self, X, y, ids) -> None:
        self.X = torch.as_tensor(np.ascontiguousarray(X), dtype=torch.float32)
        self.y = torch.as_tensor(np.ascontiguousarray(y))
        self.ids = np.asarray(ids)

    def __len__(self) -> int:
        return len(self.X)

    def __getitem__(self, i):
        return self.X[i], self.y[i]


def test_sample_hash_follows_ids_and_order(small):
    model = make_mlp()
    X, ids = small.X, small.ids
    a = deepspan.extract(model, X, "2", ids=ids)
    b = deepspan.extract(model, X, "2", ids=ids, batch_size=13)
    assert a.sample_hash == b.sample_hash == hash_sample_ids(ids) == small.sample_hash
    np.testing.assert_allclose(a["2"], b["2"], rtol=1e-5, atol=1e-6)
    r = deepspan.extract(model, X[::-1], "2", ids=ids[::-1])
    assert r.sample_hash != a.sample_hash
    np.testing.assert_allclose(r["2"][::-1], a["2"], rtol=1e-5, atol=1e-6)
    # DataLoaders over a dataset with ids, forward and reversed
    fwd = deepspan.extract(model, DataLoader(IdDataset(X, small.y, ids), batch_size=32), "2")
    rev = deepspan.extract(model, DataLoader(IdDataset(X[::-1], small.y[::-1], ids[::-1]), batch_size=32), "2")
    assert fwd.sample_hash == a.sample_hash
    assert rev.sample_hash == r.sample_hash != fwd.sample_hash
    # a map-style dataset directly
    direct = deepspan.extract(model, IdDataset(X, small.y, ids), "2", batch_size=50)
    assert direct.sample_hash == a.sample_hash
    np.testing.assert_array_equal(direct.labels, small.y)
    with pytest.raises(InputError, match="ids"):
        deepspan.extract(model, X, "2", ids=ids[:-1])


def test_reversed_array_views_are_accepted(small):
    """Negative-stride views (X[::-1]) are ordinary numpy inputs; they must not crash the conversion to torch."""
    model = make_mlp()
    expect = mlp_manual(model, small.X)["2"][::-1]
    X32 = small.X.astype(np.float32)
    fs = deepspan.extract(model, X32[::-1], "2", ids=small.ids[::-1])
    np.testing.assert_allclose(fs["2"], expect, rtol=1e-5, atol=1e-6)
    rev = Dataset("rev", small.X[::-1], small.y[::-1], small.ids[::-1])
    fd = deepspan.extract(model, rev, "2")
    np.testing.assert_allclose(fd["2"], expect, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(fd.labels, small.y[::-1])
    assert fd.sample_hash == fs.sample_hash


def test_shuffled_dataloader_refused(small):
    model = make_mlp()
    ds = TensorDataset(torch.as_tensor(small.X, dtype=torch.float32), torch.as_tensor(small.y))
    with pytest.raises(InputError, match="shuffle"):
        deepspan.extract(model, DataLoader(ds, batch_size=32, shuffle=True), "2")
    assert_no_hooks(model)


def test_dataloader_with_a_random_sampler_subclass_refused(small):
    """Shuffling through sampler=SubsetRandomSampler changes the order every pass just like shuffle=True."""
    from torch.utils.data import SubsetRandomSampler

    model = make_mlp()
    ds = TensorDataset(torch.as_tensor(small.X, dtype=torch.float32), torch.as_tensor(small.y))
    loader = DataLoader(ds, batch_size=32, sampler=SubsetRandomSampler(range(len(ds))))
    with pytest.raises(InputError, match="shuffl"):
        deepspan.extract(model, loader, "2")


def test_dataloader_labels_and_dataset_ids(small):
    model = make_mlp()
    ds = TensorDataset(torch.as_tensor(small.X, dtype=torch.float32), torch.as_tensor(small.y))
    fs = deepspan.extract(model, DataLoader(ds, batch_size=32), "2")
    np.testing.assert_array_equal(fs.labels, small.y)
    np.testing.assert_array_equal(fs.sample_ids, np.arange(len(small.X)).astype(str))
    np.testing.assert_allclose(fs["2"], mlp_manual(model, small.X)["2"], rtol=1e-5, atol=1e-6)
    # a DataLoader without labels: labels None
    fs_x = deepspan.extract(model, DataLoader(torch.as_tensor(small.X, dtype=torch.float32), batch_size=32), "2")
    assert fs_x.labels is None
    # a deepspan Dataset: its ids and labels
    fd = deepspan.extract(model, small, "2", batch_size=64)
    np.testing.assert_array_equal(fd.sample_ids, small.ids)
    assert fd.sample_hash == small.sample_hash
    np.testing.assert_array_equal(fd.labels, small.y)
    np.testing.assert_array_equal(fd["2"], fs["2"])


# --------------------------------------------------------------------------- layer selection
def test_unknown_layer_lists_closest_names(small):
    model = CNN()
    with pytest.raises(InputError) as err:
        deepspan.extract(model, small, "block.1.con", policy="flatten")
    assert "block.1.conv" in str(err.value)
    assert "block.1.con'" in str(err.value) or "block.1.con " in str(err.value)
    with pytest.raises(InputError, match="no layers"):
        deepspan.extract(model, small, [])
    with pytest.raises(InputError, match="repeated"):
        deepspan.extract(model, small, ["fc", "fc"])
    with pytest.raises(InputError, match="policy"):
        deepspan.extract(model, small, "block.1.conv", policy="maxpool")
    with pytest.raises(InputError, match="not requested"):
        deepspan.extract(model, small, "fc", policy={"conv1": "gap"})
    assert_no_hooks(model)


def test_layer_that_never_fires_is_named(small):
    model = UnusedModel()
    model.train()
    with pytest.raises(InputError) as err:
        deepspan.extract(model, small.X, ["fc1", "spare"])
    assert "spare" in str(err.value)
    assert "never fired" in str(err.value)
    assert_no_hooks(model)
    assert_all_training(model, True)


def test_shared_module_refused_without_stop_early(small):
    model = SharedModel()
    with pytest.raises(InputError, match="twice"):
        deepspan.extract(model, small.X, "lin", stop_early=False)
    assert_no_hooks(model)


def test_shared_module_refused_with_a_later_layer_requested(small):
    model = SharedModel()
    with pytest.raises(InputError, match="twice"):
        deepspan.extract(model, small.X, ["lin", "out"])
    assert_no_hooks(model)


def test_shared_module_refused_with_default_settings(small):
    """The module docstring: 'A module that runs twice in one forward pass is refused'.

    With the defaults (stop_early=True) and only the shared module requested,
    the forward pass stops after its first call, so the reuse is never seen.
    """
    model = SharedModel()
    with pytest.raises(InputError, match="twice"):
        deepspan.extract(model, small.X, "lin")
    assert_no_hooks(model)


def test_stop_early_same_features_and_skips_later_layers(small):
    torch.manual_seed(0)
    counter = Count()
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), counter, nn.Linear(32, 10))
    early = deepspan.extract(model, small.X, ["1", "2"], batch_size=64, stop_early=True)
    # the first batch runs the whole forward pass (to catch modules that run twice);
    # in the two later batches the layers after '2' never run
    assert counter.calls == 1
    full = deepspan.extract(model, small.X, ["1", "2"], batch_size=64, stop_early=False)
    assert counter.calls == 1 + 3  # then all 3 batches (150 samples in batches of 64)
    for layer in ("1", "2"):
        np.testing.assert_array_equal(early[layer], full[layer])
    assert_no_hooks(model)
    # a model that catches Exception in forward cannot swallow the early stop
    class Guarded(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.body = nn.Sequential(nn.Flatten(), nn.Linear(64, 8))
            self.after = Count()
            self.fallbacks = 0

        def forward(self, x):
            try:
                return self.after(self.body(x))
            except Exception:
                self.fallbacks += 1
                return torch.zeros(len(x), 8)

    g = Guarded()
    fs = deepspan.extract(g, small.X, "body.1", batch_size=64)
    assert g.fallbacks == 0 and g.after.calls == 1  # only the first (full) batch reaches `after`
    assert fs["body.1"].shape == (150, 8)


# --------------------------------------------------------------------------- streaming
def test_streaming_gram_matches_kept_features(digits):
    model = make_mlp()
    kept = deepspan.extract(model, digits, ["1", "2"], batch_size=200)
    acc1, acc2 = GramAccumulator(), GramAccumulator()
    streamed = deepspan.extract(model, digits, ["1", "2"], batch_size=200, accumulators={"1": acc1, "2": [acc2]},
                                keep=False)
    assert streamed.features == {}
    for layer, acc in (("1", acc1), ("2", acc2)):
        Fk = kept[layer].astype(np.float64)
        stats = acc.finalize()
        assert stats.n_samples == 1797
        G = Fk.T @ Fk
        assert np.linalg.norm(stats.gram(False) - G) <= 1e-8 * np.linalg.norm(G)
        Fc = Fk - Fk.mean(0)
        assert np.linalg.norm(stats.gram(True) - Fc.T @ Fc) <= 1e-8 * np.linalg.norm(Fc.T @ Fc)
        ps = deepspan.pvector_from_stats(stats, n_values=5)
        pk = deepspan.pvector(kept[layer], n_values=5)
        np.testing.assert_allclose(ps.singular_values, pk.singular_values, rtol=1e-6)
        assert ps.total_energy == pytest.approx(pk.total_energy, rel=1e-9)
        cos = abs(float(ps.v @ pk.v)) / (np.linalg.norm(ps.v) * np.linalg.norm(pk.v))
        assert cos == pytest.approx(1.0, abs=1e-9)


def test_streaming_class_stats_through_extract(digits):
    model = make_mlp()
    kept = deepspan.extract(model, digits, "2", batch_size=300)
    acc = ClassStatsAccumulator()
    deepspan.extract(model, digits, "2", batch_size=300, accumulators={"2": acc}, keep=False)
    st = acc.finalize()
    Fk = kept["2"].astype(np.float64)
    Fc = Fk - Fk.mean(0)
    total = Fc.T @ Fc
    np.testing.assert_array_equal(st.classes, np.arange(10))
    np.testing.assert_array_equal(st.counts, np.bincount(digits.y))
    assert np.linalg.norm(st.within_scatter + st.between_scatter - total) <= 1e-8 * np.linalg.norm(total)
    for c in range(10):
        np.testing.assert_allclose(st.means[c], Fk[digits.y == c].mean(0), rtol=1e-9, atol=1e-9)
    # labels from a DataLoader of (X, y) work the same
    ds = TensorDataset(torch.as_tensor(digits.X, dtype=torch.float32), torch.as_tensor(digits.y))
    acc2 = ClassStatsAccumulator()
    deepspan.extract(model, DataLoader(ds, batch_size=128), "2", accumulators={"2": acc2}, keep=False)
    np.testing.assert_array_equal(acc2.finalize().counts, st.counts)


def test_streaming_class_stats_channels_policy_repeats_labels(small):
    model = CNN()
    acc = ClassStatsAccumulator()
    fs = deepspan.extract(model, small, "conv1", policy="channels", accumulators={"conv1": acc}, batch_size=64)
    st = acc.finalize()
    np.testing.assert_array_equal(st.counts, np.bincount(small.y, minlength=10)[st.classes] * 64)
    rows_label = small.y[fs.positions["conv1"][:, 0]]
    for i, c in enumerate(st.classes):
        np.testing.assert_allclose(st.means[i], fs["conv1"][rows_label == c].astype(np.float64).mean(0), rtol=1e-6,
                                   atol=1e-7)


# --------------------------------------------------------------------------- P-vectors
def test_pvector_of_extracted_features_matches_manual(digits):
    model = make_mlp()
    fs = deepspan.extract(model, digits, ["2", "3"])
    ref = mlp_manual(model, digits.X)
    for layer in ("2", "3"):
        p = fs.pvector(layer)
        assert p.sample_hash == digits.sample_hash
        q = deepspan.pvector(ref[layer])
        assert deepspan.angle(p, q) < 1e-6
        np.testing.assert_allclose(p.singular_values, q.singular_values, rtol=1e-5)


def test_pvector_angle_refuses_other_sample_order(small):
    model_a, model_b = make_mlp(0), make_mlp(1)
    fa = deepspan.extract(model_a, small, "2")
    rev = Dataset("rev", small.X[::-1].copy(), small.y[::-1].copy(), small.ids[::-1].copy())
    fb = deepspan.extract(model_b, rev, "2")
    with pytest.raises(SampleMismatchError):
        deepspan.angle(fa.pvector("2"), fb.pvector("2"))
    fb_same = deepspan.extract(model_b, small, "2")
    assert 0.0 <= deepspan.angle(fa.pvector("2"), fb_same.pvector("2")) <= 90.0
    with pytest.raises(SampleMismatchError):
        deepspan.features.check_same_featuresets(fa, fb)


# --------------------------------------------------------------------------- list_layers, device
def test_list_layers_shapes_and_types(small):
    model = CNN()
    model.train()
    infos = {i.name: i for i in deepspan.list_layers(model, small.X[:2])}
    assert list(infos) == [name for name, _ in model.named_modules() if name]
    assert infos["conv1"].type == "Conv2d" and infos["conv1"].output_shape == (2, 4, 8, 8)
    assert infos["conv1"].n_params == 4 * 9 + 4
    assert infos["bn1"].type == "BatchNorm2d" and infos["bn1"].output_shape == (2, 4, 8, 8)
    assert infos["relu1"].type == "ReLU" and infos["relu1"].output_shape == (2, 4, 8, 8)
    assert infos["block"].type == "Sequential" and infos["block"].output_shape == (2, 6, 8, 8)
    assert infos["block.1.conv"].type == "Conv2d" and infos["block.1.conv"].output_shape == (2, 6, 8, 8)
    assert infos["block.1"].type == "Block"
    assert infos["flatten"].output_shape == (2, 384)
    assert infos["fc"].type == "Linear" and infos["fc"].output_shape == (2, 10)
    assert infos["fc"].n_params == 384 * 10 + 10
    assert_no_hooks(model)
    assert_all_training(model, True)
    bare = deepspan.list_layers(model)
    assert [i.name for i in bare] == list(infos)
    assert all(i.output_shape is None for i in bare)
    # modules that do not run get None; tuple/dict outputs are described element-wise
    un = {i.name: i for i in deepspan.list_layers(UnusedModel(), small.X[:2])}
    assert un["spare"].output_shape is None and un["fc1"].output_shape == (2, 16)
    tm = {i.name: i for i in deepspan.list_layers(TupleModel(), small.X[:2])}
    assert tm["pair"].output_shape == [(2, 8), (2, 8)]
    assert tm["named"].output_shape == {"a": (2, 8), "b": (2, 8)}


def test_cuda_device_without_gpu_is_refused(small):
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present")
    model = make_mlp()
    with pytest.raises(InputError, match="CUDA"):
        deepspan.extract(model, small, "2", device="cuda")
    assert_no_hooks(model)
    assert next(model.parameters()).device.type == "cpu"
    fs = deepspan.extract(model, small, "2", device="auto")
    assert fs.provenance["device"] == "cpu"
