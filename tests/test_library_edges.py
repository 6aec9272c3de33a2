"""The library's edges (training, extraction, factories, compare_many) refuse bad input with an InputError
that names the problem and the fix, before any work is done; lossless conversions are made for the caller."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

import deepspan
from deepspan import InputError
from deepspan.features import draw_rows, extract, list_layers
from deepspan.measures.compare import compare_many
from deepspan.track import Checkpoint, CheckpointSeries
from deepspan.zoo import train

RNG = np.random.default_rng(0)
X = RNG.standard_normal((12, 1, 4, 4)).astype(np.float32)
Y = np.arange(12) % 3


class Net(nn.Module):
    """Flatten -> Linear(16, 8) -> ReLU -> Linear(8, n_out), with named layers."""

    def __init__(self, n_out: int = 3) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.ReLU())
        self.fc = nn.Linear(8, n_out)

    def forward(self, x):
        return self.fc(self.body(x))


def net(n_out: int = 3) -> Net:
    torch.manual_seed(0)
    return Net(n_out)


def fit(model=None, data=None, **kw):
    kw = {"epochs": 1, "batch_size": 4, "eval_size": 0, "progress": False, **kw}
    return train(net() if model is None else model, (X, Y) if data is None else data, **kw)


def weights(model: nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in model.parameters()]


def same(a: list[torch.Tensor], b: list[torch.Tensor]) -> bool:
    return len(a) == len(b) and all(torch.equal(u, v) for u, v in zip(a, b))


# ----------------------------------------------------------------------------- training: non-finite loss

class NaNAfter(Net):
    """Returns NaN scores from its ``bad``-th training-mode forward pass on."""

    def __init__(self, bad: int) -> None:
        super().__init__()
        self.bad, self.calls = bad, 0

    def forward(self, x):
        out = super().forward(x)
        if self.training:
            self.calls += 1
            if self.calls >= self.bad:
                return out * float("nan")
        return out


def test_train_stops_at_the_first_nonfinite_loss_with_epoch_step_and_fixes():
    torch.manual_seed(0)
    model = NaNAfter(bad=5)  # 3 steps per epoch: the 5th step is epoch 2, step 2 (global step 5)
    with pytest.raises(InputError) as info:
        fit(model, epochs=3)
    msg = str(info.value)
    assert "nan" in msg and "epoch 2, step 2 of 3" in msg and "global step 5" in msg
    assert "lower the learning rate" in msg and "NaN" in msg
    assert model.calls == 5  # stopped at once: no further step ran
    assert all(torch.isfinite(p).all() for p in model.parameters())  # the NaN step's update was not applied


def test_train_nonfinite_loss_from_a_huge_learning_rate_names_the_rate():
    with pytest.raises(InputError, match=r"lr=1e\+20 now.*inputs"):
        fit(lr=1e20, epochs=2)


def test_train_huge_but_finite_inputs_that_overflow_give_the_same_clear_error():
    X2 = X.copy()
    X2[5, 0, 0, 0] = 1e38
    with pytest.raises(InputError, match=r"training loss became .* at epoch 1, step \d of 3.*very large values"):
        fit(data=(X2, Y))


# ----------------------------------------------------------------------------- training: labels

def test_fractional_float_labels_are_refused_not_truncated():
    with pytest.raises(InputError) as info:
        fit(data=(X, Y + 0.5))
    msg = str(info.value)
    assert "not whole numbers" in msg and "0.5 at position 0" in msg and "astype(np.int64)" in msg


def test_one_fractional_label_among_integers_is_found():
    y = Y.astype(np.float32)
    y[7] = 1.25
    with pytest.raises(InputError, match=r"1 of 12 are not whole numbers \(first: 1\.25 at position 7\)"):
        fit(data=(X, y))


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_nonfinite_labels_are_refused(bad):
    y = Y.astype(np.float64)
    y[2] = bad
    with pytest.raises(InputError, match="not whole numbers"):
        fit(data=(X, y))


@pytest.mark.parametrize("as_tensor", [False, True])
def test_integral_float_labels_are_converted_and_train_like_integers(as_tensor):
    y = torch.as_tensor(Y, dtype=torch.float32) if as_tensor else Y.astype(np.float64)
    a = fit(data=(X, y)).model
    b = fit(data=(X, Y)).model
    assert same(weights(a), weights(b))


def test_float_tensor_labels_with_fractions_are_refused():
    with pytest.raises(InputError, match=r"float32 .* not whole numbers.*y\.long\(\)"):
        fit(data=(X, torch.as_tensor(Y + 0.5, dtype=torch.float32)))


def test_negative_labels_are_refused_before_any_step():
    model = net()
    before = weights(model)
    with pytest.raises(InputError, match=r"class indices 0\.\.2, but 4 are negative \(smallest -1\); remap"):
        fit(model, data=(X, Y - 1))
    assert same(before, weights(model))


def test_labels_beyond_the_model_outputs_are_refused_before_any_step(tmp_path):
    model = net()
    before = weights(model)
    with pytest.raises(InputError) as info:
        fit(model, data=(X, Y + 1), out_dir=tmp_path / "run")
    msg = str(info.value)
    assert "go up to 3" in msg and "returns 3 class scores" in msg and "num_classes=4" in msg and "remap" in msg
    assert same(before, weights(model))
    assert not (tmp_path / "run").exists()  # nothing was written


def test_test_data_labels_beyond_the_outputs_are_refused():
    with pytest.raises(InputError, match=r"test_data labels go up to 5"):
        fit(test_data=(X[:4], np.array([0, 1, 2, 5])))


def test_labels_fitting_the_outputs_pass_the_check():
    result = fit(data=(X, np.full(12, 2)))  # the largest allowed label, 2 = outputs - 1
    assert result.records and result.records[-1]["label"] == "e1"


def test_one_hot_labels_are_refused_with_argmax():
    with pytest.raises(InputError, match=r"shape \(12, 3\).*argmax"):
        fit(data=(X, np.eye(3)[Y]))


def test_string_labels_are_refused_with_the_remapping():
    with pytest.raises(InputError, match=r"dtype <U.*np\.unique\(y, return_inverse=True\)"):
        fit(data=(X, np.array(["cat", "dog", "eel"] * 4)))


def test_mismatched_sample_and_label_counts():
    with pytest.raises(InputError, match="12 images but 5 labels; pass one label per sample"):
        fit(data=(X, Y[:5]))


def test_empty_training_data():
    with pytest.raises(InputError, match="no samples"):
        fit(data=(X[:0], Y[:0]))


def test_supervised_model_must_return_class_scores():
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 3), nn.Flatten(0))  # 1-D output
    with pytest.raises(InputError, match=r"N x K class scores.*returned shape \(6,\)"):
        fit(model)


def test_training_input_of_the_wrong_shape_names_the_layer():
    model = net()
    with pytest.raises(InputError, match=r"failed in layer 'body\.1' \(Linear\): it expects inputs with 16 features"):
        fit(model, data=(RNG.standard_normal((12, 1, 5, 5)).astype(np.float32), Y))


# ----------------------------------------------------------------------------- training: settings

@pytest.mark.parametrize("lr", [0, 0.0, -0.1, float("nan"), float("inf"), "0.1", True])
def test_bad_learning_rates_are_refused_up_front(lr):
    model = net()
    before = weights(model)
    with pytest.raises(InputError, match=r"lr must be a positive finite number.*0\.05 for optimizer='sgd'"):
        fit(model, lr=lr)
    assert same(before, weights(model))


@pytest.mark.parametrize("kw,pattern", [
    ({"epochs": -1}, r"epochs must be >= 0, got -1"),
    ({"epochs": 1.5}, r"epochs must be a whole number, got 1\.5"),
    ({"batch_size": 0}, r"batch_size must be >= 1, got 0"),
    ({"batch_size": 2.0}, r"batch_size must be a whole number"),
    ({"eval_size": -3}, r"eval_size must be >= 0"),
    ({"momentum": -0.5}, r"momentum must be a finite number >= 0"),
    ({"weight_decay": float("nan")}, r"weight_decay must be a finite number >= 0"),
    ({"temperature": 0.0, "paradigm": "simclr"}, r"temperature must be a positive finite number"),
])
def test_bad_settings_are_refused_up_front(kw, pattern):
    with pytest.raises(InputError, match=pattern):
        fit(**kw)


def test_numpy_integer_settings_are_accepted():
    result = fit(epochs=np.int64(1), batch_size=np.int32(4), lr=np.float32(0.01))
    assert result.records[-1]["label"] == "e1"


def test_train_refuses_a_factory_where_a_model_is_expected():
    with pytest.raises(InputError, match=r"model is a function \(net\).*call the factory first, e\.g\. net\(\)"):
        train(net, (X, Y), progress=False)


# ----------------------------------------------------------------------------- extraction: dtypes

@pytest.fixture(scope="module")
def model():
    return net()


def feats(model, data, layer="body.1", **kw):
    return extract(model, data, layer, progress=False, **kw).features[layer]


INTS = (RNG.integers(0, 5, size=(6, 1, 4, 4)))


@pytest.mark.parametrize("dtype", [np.bool_, np.uint8, np.int8, np.int16, np.int32, np.float16])
def test_lossless_input_dtypes_are_converted(model, dtype):
    data = INTS.astype(dtype)
    expected = feats(model, data.astype(np.float32))
    got = feats(model, data)
    assert got.dtype == np.float32 and np.array_equal(got, expected)


@pytest.mark.parametrize("dtype", [torch.uint8, torch.bool, torch.float16, torch.bfloat16, torch.int16])
def test_lossless_tensor_dtypes_are_converted(model, dtype):
    data = torch.as_tensor(INTS).to(dtype)
    assert np.array_equal(feats(model, data), feats(model, data.float()))


def test_exactly_representable_float64_is_converted(model):
    data = RNG.integers(0, 17, size=(6, 1, 4, 4)) / 16.0  # e.g. digits pixels / 16: float64, exact in float32
    assert data.dtype == np.float64
    assert np.array_equal(feats(model, data), feats(model, data.astype(np.float32)))


def test_int64_small_values_are_converted(model):
    data = INTS.astype(np.int64)
    assert np.array_equal(feats(model, data), feats(model, data.astype(np.float32)))


def test_float64_that_would_be_rounded_is_refused_with_the_cast(model):
    data = RNG.standard_normal((6, 1, 4, 4))
    with pytest.raises(InputError) as info:
        feats(model, data)
    msg = str(info.value)
    assert "float64" in msg and "computes in float32" in msg and "96 of 96 values" in msg
    assert "X.astype(np.float32)" in msg and "X.to(torch.float32)" in msg
    assert np.array_equal(feats(model, data.astype(np.float32)), feats(model, data.astype(np.float32)))


def test_float64_tensor_that_would_be_rounded_is_refused(model):
    with pytest.raises(InputError, match=r"float64 but Net computes in float32.*X\.to\(torch\.float32\)"):
        feats(model, torch.randn(3, 1, 4, 4, dtype=torch.float64))


def test_large_int64_values_are_refused(model):
    data = np.full((2, 1, 4, 4), 2**24 + 1, dtype=np.int64)  # not a float32 value
    with pytest.raises(InputError, match=r"int64 but Net computes in float32.*32 of 32"):
        feats(model, data)


def test_float32_inputs_to_a_float64_model_are_widened():
    m = net().double()
    data = X[:4]
    got = feats(m, data)
    assert np.allclose(got, feats(m, torch.as_tensor(data, dtype=torch.float64)), atol=0)


def test_integer_ids_to_an_embedding_model_stay_integers():
    torch.manual_seed(0)
    m = nn.Sequential(nn.Embedding(10, 3), nn.Flatten())
    ids = np.array([[1, 2], [3, 9], [0, 0]])
    got = feats(m, ids, "1")
    assert np.array_equal(got, m[0].weight.detach().numpy()[ids].reshape(3, -1))


def test_complex_inputs_are_refused(model):
    with pytest.raises(InputError, match=r"complex \(complex64\).*pass real inputs"):
        feats(model, X.astype(np.complex64))


def test_string_inputs_are_refused(model):
    with pytest.raises(InputError, match=r"dtype <U1.*a model needs numbers"):
        feats(model, np.full((2, 1, 4, 4), "a"))


def test_draw_rows_converts_and_refuses_like_extract(model):
    a = draw_rows(model, INTS.astype(np.uint8), "body.1", n_rows=6, draws=1, progress=False)
    b = draw_rows(model, INTS.astype(np.float32), "body.1", n_rows=6, draws=1, progress=False)
    assert np.array_equal(a.rows["body.1"], b.rows["body.1"])
    with pytest.raises(InputError, match="X.astype"):
        draw_rows(model, RNG.standard_normal((6, 1, 4, 4)), "body.1", n_rows=6, draws=1, progress=False)


# ----------------------------------------------------------------------------- extraction: shapes and names

def test_wrong_input_shape_names_the_layer_expectation_and_shape(model):
    with pytest.raises(InputError) as info:
        feats(model, np.zeros((4, 1, 5, 5), np.float32), "fc")
    msg = str(info.value)
    assert "failed in layer 'body.1' (Linear)" in msg
    assert "expects inputs with 16 features" in msg and "got shape (4, 25)" in msg
    assert "data batch has shape (4, 1, 5, 5)" in msg and "list_layers" in msg
    assert isinstance(info.value.__cause__, RuntimeError)  # the torch error stays attached


def test_wrong_channel_count_names_the_conv_layer():
    m = nn.Sequential(nn.Conv2d(3, 2, 3), nn.ReLU(), nn.Flatten())
    with pytest.raises(InputError, match=r"layer '0' \(Conv2d\): it expects inputs N x C x H x W with C = 3 channels.*"
                                         r"got shape \(2, 1, 5, 5\)"):
        feats(m, np.zeros((2, 1, 5, 5), np.float32), "2")


def test_failure_in_a_forward_method_itself_is_named():
    class Raw(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.ones(16, 2))
            self.out = nn.Identity()

        def forward(self, x):
            return self.out(x.flatten(1) @ self.w)

    with pytest.raises(InputError, match=r"failed in Raw\.forward itself"):
        feats(Raw(), np.zeros((2, 1, 5, 5), np.float32), "out")


def test_hooks_are_removed_after_a_shape_error(model):
    with pytest.raises(InputError):
        feats(model, np.zeros((4, 1, 5, 5), np.float32))
    for m in model.modules():
        assert not m._forward_hooks and not m._forward_pre_hooks
    assert feats(model, X[:2]).shape == (2, 8)


def test_other_errors_in_the_model_propagate_unchanged():
    class Broken(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(16, 2)

        def forward(self, x):
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="^boom$") as info:
        feats(Broken(), X[:2], "lin")
    assert not isinstance(info.value, InputError)


def test_list_layers_converts_a_lossless_example(model):
    infos = {i.name: i.output_shape for i in list_layers(model, INTS[:2].astype(np.uint8))}
    assert infos["fc"] == (2, 3)


def test_unknown_layer_suggests_close_matches(model):
    with pytest.raises(InputError, match=r"unknown layer 'body\.2x'.*closest valid names: .*body\.2"):
        feats(model, X[:2], "body.2x")


@pytest.mark.parametrize("bad,pattern", [
    (net, r"model is a function \(net\).*net\(\)"),
    (Net, r"model is the class Net, not a model; pass an instance, e\.g\. Net\(\)"),
    ("net", r"model must be a torch\.nn\.Module, got str"),
])
def test_extract_refuses_what_is_not_a_model(bad, pattern):
    with pytest.raises(InputError, match=pattern):
        extract(bad, X[:2], "fc", progress=False)


# ----------------------------------------------------------------------------- factories

def test_checkpoint_series_refuses_a_model_instance():
    m = net()
    with pytest.raises(InputError) as info:
        CheckpointSeries(m, [Checkpoint("a", m.state_dict())])
    msg = str(info.value)
    assert "model instance (Net), not a factory" in msg and "lambda: Net(...)" in msg and "not an instance" in msg


def test_checkpoint_series_from_files_refuses_a_model_instance(tmp_path):
    m = net()
    torch.save(m.state_dict(), tmp_path / "e0.pt")
    with pytest.raises(InputError, match="not a factory"):
        CheckpointSeries.from_files(m, {"e0": tmp_path / "e0.pt"})


def test_checkpoint_series_from_manifest_refuses_a_model_instance(tmp_path):
    result = fit(out_dir=tmp_path / "run")
    with pytest.raises(InputError, match="not a factory"):
        deepspan.CheckpointSeries.from_manifest(tmp_path / "run", result.model)


def test_checkpoint_series_refuses_a_non_callable():
    with pytest.raises(InputError, match=r"function that builds the model.*got int"):
        CheckpointSeries(3, [Checkpoint("a", {})])


def test_factory_that_returns_no_model_is_named_on_load():
    series = CheckpointSeries(lambda: "oops", [Checkpoint("a", net().state_dict())])
    with pytest.raises(InputError, match="returned a str, not a torch.nn.Module"):
        series.load(0)


def test_the_suggested_factory_works():
    m = net()
    series = CheckpointSeries(lambda: Net(), [Checkpoint("a", m.state_dict())])
    assert same(weights(series.load(0)), weights(m))


# ----------------------------------------------------------------------------- compare_many

A = RNG.standard_normal((20, 4))
B = A @ RNG.standard_normal((4, 3))


@pytest.mark.parametrize("sets", [[A, B], (A, B)], ids=["list", "tuple"])
def test_compare_many_refuses_a_sequence_with_the_dict_fix(sets):
    with pytest.raises(InputError) as info:
        compare_many(sets, ["linear_cka"])
    msg = str(info.value)
    assert f"got a {type(sets).__name__} of 2" in msg and "{'A': A, 'B': B}" in msg and "dict(enumerate(sets))" in msg


def test_compare_many_refuses_a_single_matrix():
    with pytest.raises(InputError, match="takes a dict that names each model.*got a ndarray"):
        compare_many(A, ["linear_cka"])


def test_compare_many_suggested_fix_works():
    rows = compare_many(dict(enumerate([A, B])), ["linear_cka"])
    assert [(r["model_a"], r["model_b"]) for r in rows] == [(0, 1)]
    assert 0.0 <= rows[0]["value"] <= 1.0 + 1e-12


def test_compare_many_needs_two_entries():
    with pytest.raises(InputError, match="at least two feature sets, got 1"):
        compare_many({"A": A}, ["linear_cka"])


def test_compare_many_one_dimensional_entry_says_how_to_reshape():
    with pytest.raises(InputError, match=r"'?b'? must be a 2-D samples x features matrix.*reshape\(-1, 1\)"):
        compare_many({"a": A, "b": A[:, 0]}, ["linear_cka"])


def test_compare_many_sample_count_mismatch():
    with pytest.raises(InputError, match="20.*19|19.*20"):
        compare_many({"a": A, "b": B[:19]}, ["linear_cka"])


def test_compare_many_nonfinite_entry():
    bad = B.copy()
    bad[3, 1] = math.nan
    with pytest.raises(InputError, match="non-finite"):
        compare_many({"a": A, "b": bad}, ["linear_cka"])


def test_extract_refuses_non_finite_inputs_and_activations_by_layer():
    """Inputs with NaN/Inf, and finite inputs that a model turns into Inf, raise instead of storing NaN features."""
    import torch

    from deepspan import extract

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
    X = np.random.default_rng(0).random((20, 6)).astype(np.float32)
    bad = X.copy()
    bad[13, 2] = np.nan
    with pytest.raises(InputError, match=r"inputs of samples 0\.\.19 hold 1 NaN/Inf"):
        extract(model, bad, ["0"], batch_size=32)
    with pytest.raises(InputError, match=r"inputs of samples .* NaN/Inf"):
        extract(model, torch.full((4, 6), float("inf")), ["0"])
    huge = np.full((4, 6), 3e38, dtype=np.float32)  # finite float32, but the first Linear overflows
    with torch.no_grad():
        model[0].weight.fill_(10.0)
    with pytest.raises(InputError, match=r"layer '0' produced NaN or Inf for samples 0\.\.3 although their inputs "
                                         r"are finite"):
        extract(model, huge, ["0", "2"])
