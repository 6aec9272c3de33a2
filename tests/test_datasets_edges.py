"""Every dataset ``deepspan reproduce`` accepts works, with honest splits and a content identity.

* ``.npz`` with its own split (``X_train ... y_test``) or one set that deepspan splits (seeded, stratified,
  1/6 held out): test and probe samples are never training samples, and the split is recorded;
* the run's identity includes the data's content hash: a file changed at the same path is refused;
* vector data (N x L) trains the MLP only; image-only models and the experiments left without models are
  skipped with their reasons, decided before anything is written.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from deepspan import data
from deepspan.errors import InputError
from deepspan.experiments.config import config_for
from deepspan.experiments.context import SPLIT_FILE, STATE, ReproContext
from _tiny_run import invoke

IMAGE_ONLY = {"cnn": "SmallCNN", "resnet": "ResNetStyle", "autoencoder": "ConvAutoencoder", "simclr": "SimCLR",
              "vgg": "VGGStyle"}


def _vectors(n: int = 600, length: int = 40, k: int = 3, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Three Gaussian clusters of 1-D signals (a learnable toy problem), labels cycling 0, 1, 2."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % k
    X = rng.normal(size=(k, length))[y] + 0.8 * rng.normal(size=(n, length))
    return X.astype(np.float32), y


def _ids(ds) -> set[str]:
    return set(np.asarray(ds.ids).tolist())


# ----------------------------------------------------------------------------- the split deepspan makes
def test_one_set_npz_is_split_seeded_stratified_and_disjoint(tmp_path):
    X, y = _vectors()
    y = np.where(np.arange(600) < 60, 3, y)  # a fourth, smaller class: 60 rows
    path = tmp_path / "signals.npz"
    np.savez(path, X=X, y=y)
    train, test, every = (data.load(str(path), s) for s in ("train", "test", "all"))
    assert len(every) == 600 and data.load(str(path)).sample_hash == every.sample_hash  # default: the whole file
    # stratified: round(n_c / 6) of every class held out
    counts = np.bincount(every.y)
    assert np.bincount(test.y).tolist() == [int(round(c / 6)) for c in counts] == [30, 30, 30, 10]
    assert len(train) + len(test) == 600
    assert not _ids(train) & _ids(test) and _ids(train) | _ids(test) == _ids(every)
    # the held-out rows are those of holdout_indices(y, 1/6, seed 0), in file order
    rows = data.holdout_indices(every.y, data.NPZ_TEST_FRACTION, data.NPZ_SPLIT_SEED)
    np.testing.assert_array_equal(test.X, X[rows])
    assert test.ids.tolist() == [f"signals:{i}" for i in rows]
    split = data.npz_split(path)
    assert not split.given and split.seed == 0 and split.fraction == pytest.approx(1 / 6)
    np.testing.assert_array_equal(split.test_rows, rows)
    assert split.describe().startswith("made by deepspan [ours]: seed 0, fraction 0.1667 (1/6)")
    info = data.split_info(str(path))
    assert info["made_by"] == "deepspan" and info["test_rows"] == rows.tolist() and info["stratified"] is True
    # seeded: the same rows from a fresh read, and another seed picks others
    np.savez(tmp_path / "copy.npz", X=X, y=y)
    assert data.load(str(tmp_path / "copy.npz"), "test").ids.tolist() == [f"copy:{i}" for i in rows]
    assert not np.array_equal(data.holdout_indices(every.y, 1 / 6, seed=1), rows)
    # a class never loses all its rows to the test split
    assert data.holdout_indices(np.array([0, 1, 1, 1]), 0.9, seed=0).tolist() in ([1, 2], [1, 3], [2, 3])


def test_explicit_split_is_the_files_own(tmp_path):
    X, y = _vectors(300)
    path = tmp_path / "given.npz"
    np.savez(path, X_train=X[:200], y_train=y[:200], X_test=X[200:], y_test=y[200:],
             ids_train=np.array([f"a{i}" for i in range(200)]), ids_test=np.array([f"b{i}" for i in range(100)]))
    train, test, every = (data.load(str(path), s) for s in ("train", "test", "all"))
    np.testing.assert_array_equal(train.X, X[:200])
    np.testing.assert_array_equal(test.y, y[200:])
    assert test.ids[0] == "b0" and len(every) == 300 and every.ids.tolist()[:1] == ["a0"]
    assert data.split_info(str(path)) == {"made_by": "file", "path": str(path), "n_train": 200, "n_test": 100,
                                         "text": "given by the file (X_train/y_train: 200, X_test/y_test: 100 samples)"}
    # default ids name the part
    np.savez(tmp_path / "plain.npz", X_train=X[:200], y_train=y[:200], X_test=X[200:], y_test=y[200:])
    assert data.load(str(tmp_path / "plain.npz"), "test").ids[0] == "plain:test:0"
    # a test sample that is a training sample, half a split, or both layouts: refused
    np.savez(tmp_path / "leak.npz", X_train=X[:200], y_train=y[:200], X_test=X[150:], y_test=y[150:],
             ids_train=np.arange(200), ids_test=np.arange(150, 300))
    with pytest.raises(InputError, match="50 sample ids are in both X_train and X_test"):
        data.load(str(tmp_path / "leak.npz"), "train")
    np.savez(tmp_path / "half.npz", X_train=X, y_train=y, X_test=X)
    with pytest.raises(InputError, match="but not y_test"):
        data.load(str(tmp_path / "half.npz"), "test")
    np.savez(tmp_path / "both.npz", X=X, y=y, X_train=X, y_train=y, X_test=X, y_test=y)
    with pytest.raises(InputError, match="keep one form"):
        data.load(str(tmp_path / "both.npz"), "test")
    with pytest.raises(InputError, match="unknown .npz split 'val'"):
        data.load(str(path), "val")


def test_named_datasets_state_their_split():
    assert data.split_info("mnist")["made_by"] == "dataset"
    assert data.split_info("digits") == {
        "made_by": "deepspan",
        "text": "by position [ours]: the first 1500 of scikit-learn's 1,797 digits train, the other 297 test"}


@pytest.mark.parametrize("layout", ["one set", "given"])
def test_reproduction_holds_test_and_probes_out_and_records_the_split(tmp_path, layout):
    X, y = _vectors()
    path = tmp_path / "signals.npz"
    if layout == "one set":
        np.savez(path, X=X, y=y)
    else:
        np.savez(path, X_train=X[:500], y_train=y[:500], X_test=X[500:], y_test=y[500:])
    out = tmp_path / "run"
    ctx = ReproContext(config_for("tiny", dataset=str(path)), out, progress=False)
    d = ctx.data
    train = _ids(d.train)
    for part in (d.test, d.held_out, d.probe):
        assert _ids(part) and not _ids(part) & train
    assert _ids(d.train_probe) <= train and _ids(d.probe) <= _ids(d.held_out)
    saved = json.loads((out / SPLIT_FILE).read_text())
    prov = ctx.provenance()
    assert saved["data_hash"] == prov["data_hash"] == ctx.cfg.data_hash == d.content_hash
    if layout == "one set":
        assert prov["split_made_by"] == saved["made_by"] == "deepspan"
        assert prov["split"].startswith("made by deepspan [ours]: seed 0, fraction 0.1667 (1/6)")
        assert saved["test_rows"] == data.npz_split(path).test_rows.tolist() and len(saved["test_rows"]) == 99  # 3 x round(200 / 6)
        assert saved["test_ids"] == d.held_out.ids.tolist() == [f"signals:{i}" for i in saved["test_rows"]]
        assert (saved["seed"], saved["fraction"], saved["stratified"]) == (0, pytest.approx(1 / 6), True)
    else:
        assert prov["split_made_by"] == saved["made_by"] == "file"
        assert prov["split"] == "given by the file (X_train/y_train: 500, X_test/y_test: 100 samples)"
        assert "test_rows" not in saved
    assert prov["input"] == "vectors of length 40"


# ----------------------------------------------------------------------------- identity by content
def test_content_hash_follows_the_data():
    X, y = _vectors(50)
    ds = data.from_arrays(X, y, name="toy")
    assert ds.content_hash == data.from_arrays(X.copy(), y.copy(), name="toy").content_hash
    X2 = X.copy()
    X2[3, 5] += 1e-3
    others = [data.from_arrays(X2, y, name="toy"), data.from_arrays(X, (y + 1) % 3, name="toy"),
              data.from_arrays(X, y, name="other"), data.from_arrays(X[::-1], y[::-1], name="toy", ids=ds.ids[::-1]),
              data.from_arrays(X.reshape(50, 4, 10), y, name="toy")]
    hashes = {ds.content_hash} | {o.content_hash for o in others}
    assert len(hashes) == 6 and all(len(h) == 16 for h in hashes)


def _run_spectrum(path, out, log):
    from deepspan.experiments import reproduce

    cfg = config_for("tiny", dataset=str(path), iterations_in_epoch1=1)
    return reproduce(cfg, out, only=["spectrum", "layerwise", "subspace_match"], report=False, progress=False,
                     log=log.append)


def test_changed_file_at_the_same_path_is_refused_not_reused(tmp_path):
    path = tmp_path / "signals.npz"
    X, y = _vectors()
    np.savez(path, X=X, y=y)
    out = tmp_path / "run"
    log: list[str] = []
    first = _run_spectrum(path, out, log)["spectrum"]
    old_hash = first.provenance["data_hash"]
    saved = (out / "results" / "spectrum.json").read_bytes()
    state = (out / STATE).read_text()
    assert json.loads(state)["data_hash"] == old_hash == json.loads(saved)["provenance"]["data_hash"]
    # the same contents written again (a new modification time): the same run, the result is reused
    np.savez(path, X=X, y=y)
    log.clear()
    again = _run_spectrum(path, out, log)["spectrum"]
    assert any(line.startswith("[spectrum] done before, skipped") for line in log)
    assert again.provenance["config_fingerprint"] == first.provenance["config_fingerprint"]
    # other contents, same path, same size: refused, naming both content hashes; nothing in the folder changes
    X2 = X.copy()
    X2[:10] *= -1
    np.savez(path, X=X2, y=y)
    new_hash = data.content_hash(data.load(str(path), "train"), data.load(str(path), "test"))
    assert new_hash != old_hash
    with pytest.raises(InputError, match=(f"holds a reproduction with other settings .*the data changed: "
                                          f".*now has content hash {new_hash}, .*content hash {old_hash}; "
                                          "choose another --out")):
        _run_spectrum(path, out, log)
    assert (out / "results" / "spectrum.json").read_bytes() == saved and (out / STATE).read_text() == state
    # a fresh folder is another run: another fingerprint, nothing done yet
    fresh = ReproContext(config_for("tiny", dataset=str(path), iterations_in_epoch1=1), tmp_path / "fresh",
                         progress=False)
    assert fresh.cfg.data_hash == new_hash and fresh.cfg.fingerprint() != first.provenance["config_fingerprint"]
    from deepspan.experiments.reproduce import is_done

    assert not is_done(fresh, "spectrum")


# ----------------------------------------------------------------------------- vector data
def test_vector_data_trains_the_mlp_and_skips_image_models_with_reasons(tmp_path):
    path = tmp_path / "signals.npz"
    np.savez(path, X=_vectors()[0], y=_vectors()[1])
    out = tmp_path / "run"
    log: list[str] = []
    results = _run_spectrum(path, out, log)
    # which models ran: the MLP only (its run folder, the models table, the spectrum's rows)
    assert sorted(p.name for p in (out / "runs").iterdir()) == ["mlp"]
    assert [m["name"] for m in json.loads((out / "models.json").read_text())["models"]] == ["mlp"]
    assert list(results) == ["spectrum"]
    res = results["spectrum"]
    assert {r["model"] for rows in res.tables.values() for r in rows if "model" in r} == {"mlp"}
    # which were skipped, and why: in the log (the CLI prints it) and in every result's provenance
    why = {n: f"{cls} needs images (N x C x H x W); the data are vectors of length 40" for n, cls in IMAGE_ONLY.items()}
    assert res.provenance["skipped_models"] == why
    for n in IMAGE_ONLY:
        assert f"model {n} skipped: {why[n]}" in log
    tail = "needs images (N x C x H x W); the data are vectors of length 40"
    exp_why = {
        "layerwise": f"every model it trains is skipped (resnet: {tail})",
        "subspace_match": f"every model it trains is skipped (cnn, vgg: each {tail})",
        "common_subspace": ("it compares models with each other and needs at least 2, but only mlp can run on this "
                            f"data (cnn, resnet, autoencoder, simclr: each {tail})"),
        "baselines": ("it compares models with each other and needs at least 2, but only mlp can run on this "
                      f"data (cnn, resnet, autoencoder, simclr: each {tail})"),
    }
    assert res.provenance["skipped_experiments"] == exp_why
    assert f"[layerwise] skipped: {exp_why['layerwise']}" in log
    assert f"[subspace_match] skipped: {exp_why['subspace_match']}" in log
    assert not (out / "results" / "layerwise.json").exists() and not (out / "results" / "subspace_match.json").exists()
    state = json.loads((out / STATE).read_text())
    assert state["skipped_models"] == why and state["skipped_experiments"] == exp_why
    assert list(state["config"]["models"]) == ["mlp"] and state["config"]["match_models"] == []
    # the report's header states the split, the data and the skips
    from deepspan.report.html import _header

    head = _header({"spectrum": json.loads((out / "results" / "spectrum.json").read_text())}, out)
    assert "<dt>split</dt><dd>made by deepspan [ours]: seed 0, fraction 0.1667 (1/6)" in head
    assert f"<dt>data</dt><dd>vectors of length 40, content hash <code>{res.provenance['data_hash']}</code>" in head
    assert "<dt>skipped models</dt><dd>cnn: SmallCNN needs images (N x C x H x W)" in head
    assert "<dt>skipped experiments</dt><dd>common_subspace: it compares models" in head


def test_zoo_takes_vectors_for_the_mlp_only():
    import torch

    from deepspan.zoo.models import MLP, MODELS, SmallCNN, image_only_reason, needs_image
    from deepspan.zoo.train import train

    assert {k: needs_image(k) for k in MODELS} == {"mlp": False, **{k: True for k in IMAGE_ONLY}}
    assert image_only_reason("mlp", (40,)) is None and image_only_reason("cnn", (1, 8, 8)) is None
    assert image_only_reason("cnn", (40,)) == "SmallCNN needs images (N x C x H x W); the data are vectors of length 40"
    X, y = _vectors(120)
    torch.manual_seed(0)
    mlp = MLP(in_features=40, n_classes=3, widths=(16,))
    assert mlp.fc1.in_features == 40 and mlp(torch.as_tensor(X[:5])).shape == (5, 3)
    run = train(mlp, (X, y), epochs=1, batch_size=32, eval_size=60, checkpoint_iterations=())
    assert [r["label"] for r in run.records] == ["init", "e1"] and run.records[-1]["train_accuracy"] is not None
    with pytest.raises(InputError, match="SmallCNN needs images .*data holds vectors \\(120, 40\\)"):
        train(SmallCNN(1, 8, 3), (X, y), epochs=1)


@pytest.mark.parametrize("case", ["volumes", "nan", "leak"])
def test_refused_input_leaves_no_output_folder(tmp_path, case):
    X, y = _vectors(300)
    path = tmp_path / f"{case}.npz"
    if case == "volumes":  # N x C x D x H x W: neither images nor vectors
        np.savez(path, X=np.zeros((300, 1, 2, 3, 4), np.float32), y=y)
        msg = "needs image data (N x C x H x W or N x H x W) or vectors (N x L)"
    elif case == "nan":
        X[7, 3] = np.nan
        np.savez(path, X=X, y=y)
        msg = "NaN/Inf"
    else:
        np.savez(path, X_train=X, y_train=y, X_test=X[:10], y_test=y[:10], ids_train=np.arange(300),
                 ids_test=np.arange(10))
        msg = "10 sample ids are in both X_train and X_test"
    out = tmp_path / "run"
    r = invoke(["reproduce", "--scale", "tiny", "--dataset", str(path), "--out", str(out), "--no-progress"])
    assert r.exit_code == 1 and msg in r.output and "Traceback" not in r.output
    assert not out.exists() and not os.path.lexists(out)
