"""The command line for users' own models: `deepspan layers`, `deepspan compare`, `deepspan track`.

Small zoo models on the embedded 8x8 digits; every number the commands print or
write is checked against the library called directly.
"""

from __future__ import annotations

import csv
import json
import sys

import numpy as np
import pytest
import torch
from click.testing import CliRunner

import deepspan
from deepspan.cli import main
from deepspan.data import load, probe_subset
from deepspan.track import CheckpointSeries, load_state_dict, track_checkpoints
from deepspan.zoo.models import MLP, SmallCNN

MLP_SPEC = "deepspan.zoo.models:MLP"
MLP_KW = {"image_size": 8, "widths": [32, 16]}
CNN_SPEC = "deepspan.zoo.models:SmallCNN"
CNN_KW = {"image_size": 8, "widths": [4, 8, 16]}


def run(args, ok=True):
    r = CliRunner().invoke(main, [str(a) for a in args])
    if ok:
        assert r.exit_code == 0, r.output + repr(r.exception)
    return r


def fails(args, *fragments):
    """The command exits with a one-line ClickException containing every fragment, never a traceback."""
    r = run(args, ok=False)
    assert r.exit_code == 1, r.output + repr(r.exception)
    assert r.exception is None or isinstance(r.exception, SystemExit), repr(r.exception)
    assert "Traceback" not in r.output
    msg = r.output.strip()
    assert msg.startswith("Error: ") and "\n" not in msg, msg
    for f in fragments:
        assert f in msg, f"{f!r} not in {msg!r}"
    return msg


@pytest.fixture(scope="module")
def states(tmp_path_factory):
    """Initial weights of two MLP seeds and three SmallCNN seeds (nothing trained)."""
    d = tmp_path_factory.mktemp("states")
    out = {}
    for s in (0, 1):
        torch.manual_seed(s)
        out[f"mlp{s}"] = d / f"mlp{s}.pt"
        torch.save(MLP(**MLP_KW).state_dict(), out[f"mlp{s}"])
    for s in (0, 1, 2):
        torch.manual_seed(10 + s)
        out[f"e{s}"] = d / f"e{s}.pt"
        torch.save(SmallCNN(**CNN_KW).state_dict(), out[f"e{s}"])
    return out


@pytest.fixture
def clean_path(monkeypatch):
    """The commands put the current directory (and a .py file's folder) on sys.path: undo it after the test."""
    monkeypatch.setattr(sys, "path", list(sys.path))
    yield
    for name in [m for m in sys.modules if m.startswith(("_deepspan_user_", "deepspan_test_user_"))]:
        del sys.modules[name]


# ----------------------------------------------------------------------------- layers
def test_help_lists_the_new_commands():
    r = run(["--help"])
    for cmd in ("layers", "compare", "track"):
        assert cmd in r.output
    for cmd in ("layers", "compare", "track"):
        assert "Usage:" in run([cmd, "--help"]).output


def test_layers_lists_the_zoo_cnn(tmp_path):
    out = tmp_path / "layers.json"
    r = run(["layers", CNN_SPEC, "--kwargs", json.dumps({"image_size": 8}), "--input-shape", "1,8,8", "--json", out])
    names = ["conv1", "relu1", "pool1", "conv2", "relu2", "pool2", "flatten", "fc", "relu3", "classifier"]
    lines = r.output.splitlines()
    for name in names:
        assert any(line.split()[:1] == [name] for line in lines), name
    assert "(N, 16, 8, 8)" in r.output and "(N, 10)" in r.output
    relu3 = next(line for line in lines if line.startswith("relu3 "))
    assert "feature_layer" in relu3
    saved = json.loads(out.read_text())
    assert [x["name"] for x in saved["layers"]] == names
    assert saved["layers"][0]["output_shape"] == [16, 8, 8]
    assert saved["n_params"] == sum(p.numel() for p in SmallCNN(image_size=8).parameters())


def test_layers_with_state_and_without_shape(states):
    r = run(["layers", MLP_SPEC, "--kwargs", json.dumps(MLP_KW), "--state", states["mlp0"]])
    assert "fc1" in r.output and "relu2" in r.output and "--input-shape" in r.output


def test_layers_from_a_py_file_and_from_the_current_directory(tmp_path, monkeypatch, clean_path):
    src = (
        "import torch.nn as nn\n"
        "def make_net(width=5):\n"
        "    return nn.Sequential(nn.Flatten(), nn.Linear(64, width), nn.ReLU())\n"
        "NOT_CALLABLE = 3\n"
    )
    (tmp_path / "deepspan_test_user_nets.py").write_text(src)
    r = run(["layers", f"{tmp_path / 'deepspan_test_user_nets.py'}:make_net", "--kwargs", '{"width": 7}',
             "--input-shape", "1,8,8"])
    assert "Linear" in r.output and "(N, 7)" in r.output
    monkeypatch.chdir(tmp_path)
    r = run(["layers", "deepspan_test_user_nets.py:make_net", "--input-shape", "64"])
    assert "(N, 5)" in r.output
    r = run(["layers", "deepspan_test_user_nets:make_net", "--input-shape", "1,8,8"])  # module form, cwd importable
    assert "(N, 5)" in r.output
    fails(["layers", "deepspan_test_user_nets:NOT_CALLABLE"], "not callable")
    fails(["layers", "nope.py:make_net"], "nope.py does not exist")


# ----------------------------------------------------------------------------- compare
def test_compare_npy_matrices_equals_the_library(tmp_path):
    rng = np.random.default_rng(0)
    Xa, Xb = rng.standard_normal((120, 9)), rng.standard_normal((120, 6)) @ rng.standard_normal((6, 6))
    np.save(tmp_path / "a.npy", Xa)
    np.save(tmp_path / "b.npy", Xb)
    js, cs = tmp_path / "out.json", tmp_path / "out.csv"
    r = run(["compare", tmp_path / "a.npy", tmp_path / "b.npy", "--json", js, "--csv", cs])
    expected = deepspan.compare(Xa, Xb)
    saved = json.loads(js.read_text())
    got = {row["measure"]: row["value"] for row in saved["rows"]}
    assert list(got) == list(expected) == saved["measures"]
    for m, v in expected.items():
        assert got[m] == pytest.approx(v, abs=1e-12)
        assert m in r.output
    with open(cs) as f:
        rows = list(csv.DictReader(f))
    assert {row["measure"]: float(row["value"]) for row in rows} == pytest.approx(expected, abs=1e-12)
    # explicit measures, in the order given
    r = run(["compare", tmp_path / "a.npy", tmp_path / "b.npy", "--measure", "rbf_cka", "--measure", "max_match",
             "--json", js])
    saved = json.loads(js.read_text())
    want = deepspan.compare(Xa, Xb, ["rbf_cka", "max_match"])
    assert [row["measure"] for row in saved["rows"]] == ["rbf_cka", "max_match"]
    for row in saved["rows"]:
        assert row["value"] == pytest.approx(want[row["measure"]], abs=1e-12)


def _models(spec_cls, kw, *paths):
    return [load_state_dict(spec_cls(**kw), p) for p in paths]


def test_compare_state_dicts_equals_extract_and_compare_by_hand(tmp_path, states):
    js = tmp_path / "out.json"
    measures = ["linear_cka", "svcca", "procrustes", "pvector_angle", "principal_angle"]
    args = ["compare", states["mlp0"], states["mlp1"], "--model", MLP_SPEC, "--kwargs", json.dumps(MLP_KW),
            "--n", 100, "--seed", 3, "--json", js]
    for m in measures:
        args += ["--measure", m]
    r = run(args)
    probe = probe_subset(load("digits", "test"), 100, seed=3)
    ma, mb = _models(MLP, MLP_KW, states["mlp0"], states["mlp1"])
    layers = ma.block_layers  # the default: the zoo model's block layers
    expected = deepspan.compare(deepspan.extract(ma, probe, layers), deepspan.extract(mb, probe, layers), measures)
    saved = json.loads(js.read_text())
    assert saved["probe"]["sample_hash"] == probe.sample_hash and saved["probe"]["n_samples"] == 100
    assert saved["layers"] == layers
    assert len(saved["rows"]) == len(expected) == len(layers) * len(measures)
    for got, want in zip(saved["rows"], expected):
        assert (got["layer"], got["measure"]) == (want["layer"], want["measure"])
        assert got["value"] == pytest.approx(want["value"], abs=1e-12)
    assert "relu1" in r.output and "relu2" in r.output


def test_compare_paired_layers_of_two_architectures(tmp_path, states):
    js = tmp_path / "out.json"
    run(["compare", states["mlp0"], states["e0"], "--model-a", MLP_SPEC, "--kwargs-a", json.dumps(MLP_KW),
         "--model-b", CNN_SPEC, "--kwargs-b", json.dumps(CNN_KW), "--layer", "relu2=relu3", "--measure", "linear_cka",
         "--json", js])
    probe = load("digits", "test")  # 297 samples: the whole split is the default probe
    (ma,), (mb,) = _models(MLP, MLP_KW, states["mlp0"]), _models(SmallCNN, CNN_KW, states["e0"])
    want = deepspan.cka(deepspan.extract(ma, probe, "relu2")["relu2"], deepspan.extract(mb, probe, "relu3")["relu3"])
    (row,) = json.loads(js.read_text())["rows"]
    assert row["layer"] == "relu2=relu3"
    assert row["value"] == pytest.approx(want, abs=1e-12)


def test_compare_a_model_with_itself_gives_identity_values(tmp_path, states):
    js = tmp_path / "out.json"
    run(["compare", states["e0"], states["e0"], "--model", CNN_SPEC, "--kwargs", json.dumps(CNN_KW),
         "--policy", "gap", "--json", js])
    rows = json.loads(js.read_text())["rows"]
    assert {r["layer"] for r in rows} == {"relu1", "relu2", "relu3"}
    for r in rows:
        if r["measure"] == "linear_cka":
            assert r["value"] == pytest.approx(1.0, abs=1e-9)
        if r["measure"] in ("pvector_angle", "procrustes"):
            assert r["value"] == pytest.approx(0.0, abs=1e-6)


def test_compare_featureset_directories(tmp_path, states):
    probe = probe_subset(load("digits", "test"), 100, seed=0)
    ma, mb = _models(SmallCNN, CNN_KW, states["e0"], states["e1"])
    fa = deepspan.extract(ma, probe, ["relu2", "relu3"], "gap")
    fb = deepspan.extract(mb, probe, ["relu2", "relu3"], "gap")
    fa.save(tmp_path / "fa")
    fb.save(tmp_path / "fb")
    js = tmp_path / "out.json"
    run(["compare", tmp_path / "fa", tmp_path / "fb", "--json", js])  # default measures, common layers
    expected = deepspan.compare(fa, fb)
    got = json.loads(js.read_text())["rows"]
    assert [(r["layer"], r["measure"]) for r in got] == [(r["layer"], r["measure"]) for r in expected]
    assert [r["value"] for r in got] == pytest.approx([r["value"] for r in expected], abs=1e-12)
    # a FeatureSet against a state_dict extracted on the same (default) probe
    run(["compare", tmp_path / "fa", states["e1"], "--model", CNN_SPEC, "--kwargs", json.dumps(CNN_KW),
         "--policy", "gap", "--n", 100, "--layer", "relu3", "--measure", "linear_cka", "--json", js])
    (row,) = [r for r in json.loads(js.read_text())["rows"] if r["measure"] == "linear_cka"]
    assert row["value"] == pytest.approx(deepspan.cka(fa["relu3"], fb["relu3"]), abs=1e-12)
    fails(["compare", tmp_path / "fa", states["e1"], "--model", CNN_SPEC, "--kwargs", json.dumps(CNN_KW),
           "--policy", "gap", "--n", 50], "extracted on other samples", "--n 50")


# ----------------------------------------------------------------------------- track
def _rows_csv(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def test_track_checkpoints_writes_rows_and_resumes(tmp_path, states):
    out = tmp_path / "track"
    base = ["track", CNN_SPEC, "--kwargs", json.dumps(CNN_KW), "--layer", "relu3", "--layer", "relu2",
            "--policy", "gap", "--n", 150, "--out", out]
    files = [states["e0"], states["e1"], states["e2"]]
    r = run(base[:2] + files[:2] + base[2:])  # the first two, then all three: the rerun resumes
    assert "rows.csv" in r.output
    r = run(base[:2] + files + base[2:])
    assert "resumed: 2 of 3" in r.output
    rows = _rows_csv(out / "rows.csv")
    final = {(r["checkpoint"], r["layer"]): float(r["value"]) for r in rows if r["quantity"] == "angle_to_final"}
    assert set(final) == {(c, l) for c in ("e0", "e1", "e2") for l in ("relu3", "relu2")}
    assert final[("e2", "relu3")] == pytest.approx(0.0, abs=1e-9) and final[("e2", "relu2")] == pytest.approx(0.0, abs=1e-9)
    assert final[("e0", "relu3")] > 0
    # the same numbers as the library on the same probe
    probe = probe_subset(load("digits", "test"), 150, seed=0)
    series = CheckpointSeries.from_files(lambda: SmallCNN(**CNN_KW), {f.stem: f for f in files})
    ref = track_checkpoints(series, probe, ["relu3", "relu2"], policy="gap")
    want = {(r["checkpoint"], r["layer"], r["quantity"]): r["value"] for r in ref.rows}
    got = {(r["checkpoint"], r["layer"], r["quantity"]): float(r["value"]) for r in rows}
    assert set(got) == set(want)
    for key, v in want.items():
        assert got[key] == pytest.approx(v, abs=1e-9), key
    before = (out / "rows.csv").read_text()
    r = run(base[:2] + files + base[2:])  # nothing left to do
    assert "resumed: 3 of 3" in r.output
    assert (out / "rows.csv").read_text() == before
    fails(base[:2] + files + base[2:-4] + ["--policy", "flatten", "--n", 150, "--out", out],
          "other settings", "--policy")


def test_track_a_run_directory_with_a_manifest(tmp_path, states):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    entries = []
    for k in range(3):
        (run_dir / f"e{k}.pt").write_bytes(states[f"e{k}"].read_bytes())
        entries.append({"label": f"e{k}", "file": f"e{k}.pt", "epoch": k, "iteration": 10 * k})
    (run_dir / "manifest.json").write_text(json.dumps({"checkpoints": entries}))
    out = tmp_path / "track"
    r = run(["track", CNN_SPEC, run_dir, "--kwargs", json.dumps(CNN_KW), "--layer", "relu3", "--out", out])
    assert "3 checkpoint(s)" in r.output
    rows = _rows_csv(out / "rows.csv")
    assert {r["iteration"] for r in rows} == {"0", "10", "20"}
    fails(["track", CNN_SPEC, run_dir, states["e0"], "--kwargs", json.dumps(CNN_KW), "--layer", "relu3",
           "--out", out], "is a directory")


# ----------------------------------------------------------------------------- errors
def test_error_unknown_module():
    fails(["layers", "deepspan_no_such_module:make"], "no module named 'deepspan_no_such_module'")
    fails(["layers", "deepspan.zoo.modls:SmallCNN"], "no module named 'deepspan.zoo.modls'",
          "Did you mean deepspan.zoo.models?")


def test_error_unknown_factory_attribute_suggests_close_names():
    fails(["layers", "deepspan.zoo.models:SmallCN"], "deepspan.zoo.models has no attribute 'SmallCN'",
          "did you mean SmallCNN?")


@pytest.mark.parametrize("spec, fragment", [
    ("deepspan.zoo.models.SmallCNN", "Did you mean deepspan.zoo.models:SmallCNN?"),
    ("deepspan.zoo.models:", "names no factory"),
    ("deepspan.zoo.models:SmallCNN(8)", "--kwargs"),
    ("deepspan.zoo.models:__all__", "is a list, not callable"),
])
def test_error_bad_model_syntax_and_not_callable(spec, fragment):
    fails(["layers", spec], fragment)


def test_error_bad_input_shape_kwargs_and_model_that_cannot_run():
    fails(["layers", CNN_SPEC, "--input-shape", "1,x,8"], "--input-shape '1,x,8' is not a shape", "1,28,28")
    fails(["layers", CNN_SPEC, "--input-shape", "0,8,8"], "is not a shape")
    fails(["layers", CNN_SPEC, "--kwargs", "{image_size: 8}"], "--kwargs", "not valid JSON")
    fails(["layers", CNN_SPEC, "--kwargs", "[8]"], "JSON object")
    fails(["layers", CNN_SPEC, "--kwargs", '{"size": 8}'], "unexpected keyword argument 'size'", "image_size")
    fails(["layers", CNN_SPEC, "--input-shape", "1,28,28"], "cannot run on inputs of shape (2, 1, 28, 28)",
          "--kwargs")


def test_error_npy_files_with_different_sample_counts(tmp_path):
    np.save(tmp_path / "a.npy", np.ones((100, 3)))
    np.save(tmp_path / "b.npy", np.ones((90, 3)))
    fails(["compare", tmp_path / "a.npy", tmp_path / "b.npy"], "a.npy has 100 rows (samples)", "b.npy has 90",
          "same samples in the same order")
    fails(["compare", tmp_path / "a.npy", tmp_path / "a.npy", "--layer", "x"], "drop --layer")


def test_error_state_dict_without_model(states):
    fails(["compare", states["mlp0"], states["mlp1"]], "mlp0.pt is a state_dict file", "pass --model")


def test_error_unknown_layer_name(states):
    args = ["compare", states["mlp0"], states["mlp1"], "--model", MLP_SPEC, "--kwargs", json.dumps(MLP_KW)]
    fails(args + ["--layer", "relu9"], "unknown layer 'relu9'", "closest: relu2, relu1", "deepspan layers")
    fails(["track", CNN_SPEC, states["e0"], "--kwargs", json.dumps(CNN_KW), "--layer", "relu9", "--out", "x"],
          "unknown layer 'relu9'", "relu3")


def test_error_other_bad_inputs(tmp_path, states):
    kw = json.dumps(CNN_KW)
    fails(["compare", states["e0"], states["e1"], "--model", CNN_SPEC, "--kwargs", kw],
          "layer 'relu1'", "pass --policy flatten")
    fails(["compare", states["e0"], states["e1"], "--model", CNN_SPEC, "--kwargs", kw, "--measure", "linear_ckaa"],
          "unknown measure 'linear_ckaa'", "did you mean linear_cka")
    fails(["compare", states["e0"], states["e1"], "--model", MLP_SPEC, "--kwargs", json.dumps(MLP_KW)],
          "does not fit MLP", "missing keys")
    fails(["compare", states["e0"], states["e1"], "--model", CNN_SPEC, "--kwargs", kw, "--policy", "gap",
           "--data", "nosuchdata"], "unknown dataset 'nosuchdata'")
    gap = ["compare", states["e0"], states["e1"], "--model", CNN_SPEC, "--kwargs", kw, "--policy", "gap"]
    fails(gap + ["--n", 5000], "--n 5000 asks for more probe samples than digits test has (297)", "--n 297 or less")
    fails(gap + ["--n", 296], "cannot be drawn class-balanced", "--n 270 or less")
    if not torch.cuda.is_available():
        fails(gap + ["--device", "cuda"], "no CUDA device", "--device cpu")
    (tmp_path / "x.txt").write_text("hi")
    fails(["compare", tmp_path / "x.txt", states["e1"]], "cannot tell what", ".npy")
    twin = tmp_path / "other"
    twin.mkdir()
    (twin / "e0.pt").write_bytes(states["e0"].read_bytes())
    fails(["track", CNN_SPEC, states["e0"], twin / "e0.pt", "--kwargs", kw, "--layer", "relu3", "--out",
           tmp_path / "t"], "e0 appears more than once")
