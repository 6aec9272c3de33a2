"""Shared state of one ``deepspan reproduce`` run: data, trained zoo runs and cached probe statistics.

Layout of the output folder (``out``)::

    runs/<name>/            zoo training runs (checkpoints, manifest.json, resume.pt; see deepspan.zoo.train)
    cache/pv/<name>/<label>.npz      top-3 singular triplets of every block layer on the probe
    cache/features/<name>/<label>__<layer>.npy   the probe features of the feature layer (float32)
    results/<experiment>.json (+ .csv tables, .npz side files)
    figures/, report.html   written by deepspan.report

Everything is computed once and reused: training resumes inside ``deepspan.zoo.train``, caches are
written atomically and keyed by the config fingerprint, so an interrupted run continues where it
stopped and a run with other settings never reads stale files (it refuses the folder instead).

The probe is a seeded, class-balanced subset of the test split (held-out images, so the P-vector
describes the feature space, not memorised training points). Every P-vector is computed both
uncentered (Liu et al.'s plain SVD of the feature matrix) and column-centered.
"""

from __future__ import annotations

import json
import sys
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from deepspan._io import atomic_save_npy, atomic_write_bytes, atomic_write_json
from deepspan._version import __version__
from deepspan.errors import InputError
from deepspan.experiments.config import ModelSpec, ReproduceConfig

__all__ = ["ReproContext", "N_VECTORS", "N_VALUES", "one_blas_thread", "layer_triplets"]

N_VECTORS = 3     # singular vectors kept per layer and checkpoint (experiment 4 needs u_2, u_3)
N_VALUES = 10     # singular values kept (energy ratios r_k, k <= 10)
STATE = "deepspan-reproduce.json"


class ReproContext:
    """Data, zoo runs and probe caches of a reproduction in ``out`` (see the module docstring)."""

    def __init__(self, cfg: ReproduceConfig, out: str | Path, progress: bool | None = None) -> None:
        self.cfg = cfg
        self.out = Path(out)
        self.progress = sys.stderr.isatty() if progress is None else bool(progress)
        self.runs_dir = self.out / "runs"
        self.cache_dir = self.out / "cache"
        self.results_dir = self.out / "results"
        self._check_folder()

    # ------------------------------------------------------------------ folder state
    def _check_folder(self) -> None:
        state = self.out / STATE
        if state.is_file():
            try:
                old = json.loads(state.read_text())
            except json.JSONDecodeError:
                old = {}
            if old.get("fingerprint") not in (None, self.cfg.fingerprint()):
                raise InputError(
                    f"{self.out} holds a reproduction with other settings (scale {old.get('config', {}).get('scale')}, "
                    f"dataset {old.get('config', {}).get('dataset')}, seed {old.get('config', {}).get('seed')}); "
                    f"choose another --out or delete that folder.")
        self.out.mkdir(parents=True, exist_ok=True)
        atomic_write_json(state, {"format": "deepspan-reproduce/1", "fingerprint": self.cfg.fingerprint(),
                                  "config": self.cfg.to_dict(), "version": __version__})

    def provenance(self, **extra: Any) -> dict[str, Any]:
        import platform

        import scipy
        import torch

        return {"config_fingerprint": self.cfg.fingerprint(), "scale": self.cfg.scale, "dataset": self.cfg.dataset,
                "seed": self.cfg.seed, "probe_hash": self.probe.sample_hash, "n_probe": len(self.probe),
                "deepspan": __version__, "numpy": np.__version__, "scipy": scipy.__version__,
                "torch": torch.__version__, "python": platform.python_version(), **extra}

    # ------------------------------------------------------------------ data
    @cached_property
    def _train_full(self):
        from deepspan.data import load

        return load(self.cfg.dataset, split="train", data_dir=self.cfg.data_dir)

    @cached_property
    def _test_full(self):
        from deepspan.data import load

        return load(self.cfg.dataset, split="test", data_dir=self.cfg.data_dir)

    @staticmethod
    def _images(ds):
        from deepspan.data.digits import Dataset

        X = np.asarray(ds.X, dtype=np.float32)
        if X.ndim == 3:
            X = X[:, None]
        if X.ndim != 4:
            raise InputError(f"deepspan reproduce needs image data (N x C x H x W); {ds.name} has shape {X.shape}")
        return Dataset(ds.name, X, ds.y, ds.ids)

    @cached_property
    def train(self):
        """The first ``n_train`` training images (N x C x H x W float32)."""
        from deepspan.data.digits import Dataset

        ds = self._images(self._train_full)
        n = min(self.cfg.n_train, len(ds))
        return Dataset(ds.name, ds.X[:n], ds.y[:n], ds.ids[:n])

    @cached_property
    def test(self):
        """The first ``n_test`` test images: accuracies are measured on these."""
        from deepspan.data.digits import Dataset

        ds = self._images(self._test_full)
        n = min(self.cfg.n_test, len(ds))
        return Dataset(ds.name, ds.X[:n], ds.y[:n], ds.ids[:n])

    @cached_property
    def probe(self):
        """Seeded class-balanced subset of the test split: the fixed sample set of every P-vector."""
        from deepspan.data import probe_subset

        return probe_subset(self._images(self._test_full), min(self.cfg.n_probe, len(self._test_full)),
                            seed=self.cfg.seed)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(int(s) for s in self.train.X.shape[1:])  # type: ignore[return-value]

    @property
    def n_classes(self) -> int:
        return int(self._train_full.y.max()) + 1

    def noisy_train(self, n: int, noise: float, seed: int):
        """The first ``n`` training images with a fraction ``noise`` of labels replaced by uniform random ones.

        The corrupted rows are drawn with ``default_rng(seed)``; a replaced label may equal the true one
        by chance (probability 1/C), as in Zhang et al. 2017's label randomisation.
        """
        from deepspan.data.digits import Dataset

        if not 0.0 <= noise <= 1.0:
            raise InputError(f"label noise must lie in [0, 1], got {noise}")
        base = self._images(self._train_full)
        n = min(n, len(base))
        y = base.y[:n].copy()
        rng = np.random.default_rng(seed)
        rows = rng.random(n) < noise
        y[rows] = rng.integers(0, self.n_classes, int(rows.sum()))
        return Dataset(base.name, base.X[:n], y, base.ids[:n])

    # ------------------------------------------------------------------ models and runs
    def spec(self, name: str) -> ModelSpec:
        return self.cfg.model(name.split("@")[0])

    def build(self, name: str, spec: ModelSpec | None = None):
        """A fresh (untrained) model for the run ``name`` (``kind`` or ``kind@s<seed>``)."""
        from deepspan.zoo import MODELS

        spec = spec or self.spec(name)
        c, h, w = self.image_shape
        return MODELS[spec.kind](in_channels=c, image_size=(h, w), n_classes=self.n_classes, **spec.kwargs())

    def seed_of(self, name: str) -> int:
        return int(name.split("@s")[1]) if "@s" in name else self.cfg.seed

    def ensure_trained(self, name: str, spec: ModelSpec | None = None, *, data: Any = None, epochs: int | None = None,
                       iterations: tuple[int, ...] | None = None, seed: int | None = None) -> dict[str, Any]:
        """Train run ``name`` into ``runs/<name>`` unless its manifest says it is complete; return the manifest.

        Interrupted runs resume from their last complete epoch (``deepspan.zoo.train``).
        """
        from deepspan.zoo.train import read_manifest, train

        folder = self.runs_dir / name
        epochs = self.cfg.epochs if epochs is None else epochs
        if (folder / "manifest.json").is_file():
            m = read_manifest(folder)
            if m.get("complete") and m.get("epochs") == epochs:
                return m
        spec = spec or self.spec(name)
        seed = self.seed_of(name) if seed is None else seed
        import torch

        with torch.random.fork_rng():  # seeded initial weights, without touching the caller's RNG state
            torch.manual_seed(seed)
            model = self.build(name, spec)
        train(model, self.train if data is None else data, paradigm=spec.paradigm, epochs=epochs,
              batch_size=self.cfg.batch_size, optimizer=spec.optimizer, lr=spec.lr, seed=seed, out_dir=folder,
              checkpoint_iterations=self.cfg.iterations if iterations is None else iterations,
              test_data=self.test, progress=self.progress)
        return read_manifest(folder)

    def manifest(self, name: str) -> dict[str, Any]:
        from deepspan.zoo.train import read_manifest

        return read_manifest(self.runs_dir / name)

    def checkpoints(self, name: str) -> list[dict[str, Any]]:
        """Checkpoint records of run ``name`` in training order (label, epoch, iteration, loss, accuracies)."""
        return list(self.manifest(name)["checkpoints"])

    def load(self, name: str, label: str, spec: ModelSpec | None = None):
        """The model of run ``name`` at checkpoint ``label``, in eval mode."""
        from deepspan.track.checkpoints import load_state_dict

        model = self.build(name, spec)
        load_state_dict(model, self.runs_dir / name / f"{label}.pt")
        return model.eval()

    def layers(self, name: str, spec: ModelSpec | None = None) -> list[str]:
        """Block layers of the model, input to output (the feature layer among them)."""
        m = self.build(name, spec)
        layers = list(m.block_layers)
        if m.feature_layer not in layers:
            layers.append(m.feature_layer)
        return layers

    def feature_layer(self, name: str, spec: ModelSpec | None = None) -> str:
        return self.build(name, spec).feature_layer

    # ------------------------------------------------------------------ probe statistics
    def _pv_path(self, name: str, label: str) -> Path:
        return self.cache_dir / "pv" / name / f"{label}.npz"

    def triplets(self, name: str, label: str, spec: ModelSpec | None = None) -> dict[tuple[str, bool], dict[str, np.ndarray]]:
        """Top singular triplets of every block layer of run ``name`` at ``label`` on the probe.

        Returns ``{(layer, centered): {"u": N x 3, "s": top-10 singular values, "energy": r_1..r_10}}``
        for ``centered`` in (False, True); conv outputs use the ``flatten`` policy (Liu et al.
        flatten feature maps). One forward pass per checkpoint; cached in ``cache/pv``.
        """
        path = self._pv_path(name, label)
        if path.is_file():
            try:
                with np.load(path) as z:
                    return _unpack(dict(z))
            except (OSError, ValueError, KeyError):
                path.unlink()  # damaged cache file: recompute
        from deepspan.features import extract

        model = self.load(name, label, spec)
        layers = self.layers(name, spec)
        fs = extract(model, self.probe, layers, policy="flatten", progress=False)
        packed: dict[str, np.ndarray] = {}
        for layer in layers:
            F = fs.features[layer]
            for center, (u, s, total) in layer_triplets(F).items():
                packed[f"{layer}|{int(center)}|u"] = u
                packed[f"{layer}|{int(center)}|s"] = s
                packed[f"{layer}|{int(center)}|total"] = np.array(total)
            if layer == self.feature_layer(name, spec):
                atomic_save_npy(self._feat_path(name, label, layer), F.astype(np.float32))
        import io

        buf = io.BytesIO()
        np.savez(buf, **packed)
        atomic_write_bytes(path, buf.getvalue())
        return _unpack(packed)

    def _feat_path(self, name: str, label: str, layer: str) -> Path:
        return self.cache_dir / "features" / name / f"{label}__{layer.replace('/', '_')}.npy"

    def features(self, name: str, label: str, spec: ModelSpec | None = None) -> np.ndarray:
        """Probe features (N x d float32) of the feature layer of run ``name`` at ``label`` (cached)."""
        layer = self.feature_layer(name, spec)
        path = self._feat_path(name, label, layer)
        if not path.is_file():
            self.triplets(name, label, spec)
        if not path.is_file():  # triplets were cached but the features file was removed
            from deepspan.features import extract

            fs = extract(self.load(name, label, spec), self.probe, layer, policy="flatten", progress=False)
            atomic_save_npy(path, fs.features[layer].astype(np.float32))
        return np.load(path)

    @cached_property
    def _data_triplets(self) -> dict[bool, dict[str, np.ndarray]]:
        X = self.probe.X.reshape(len(self.probe), -1)
        return {c: {"u": u, "s": s, "total": t} for c, (u, s, t) in layer_triplets(X).items()}

    def data_u(self, center: bool) -> np.ndarray:
        """Data P-vector(s) of the probe images (N x 3: u_1..u_3)."""
        return self._data_triplets[center]["u"]

    def data_s(self, center: bool) -> np.ndarray:
        return self._data_triplets[center]["s"]


def one_blas_thread():
    """A context that runs numpy/scipy BLAS on one thread while torch keeps its own pool.

    Measured here: with torch's OpenMP pool and OpenBLAS's pool both on 2 cores, the small LAPACK
    calls between forward passes (SVDs of CCA, eigh, matching) ran 10-100x slower (busy-waiting
    pools fighting for the cores); one BLAS thread removes that. threadpoolctl comes with
    scikit-learn; without it this is a no-op.
    """
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover
        import contextlib

        return contextlib.nullcontext()
    return threadpool_limits(limits=1, user_api="blas")


def layer_triplets(F: Any, n_vectors: int = N_VECTORS, n_values: int = N_VALUES
                   ) -> dict[bool, tuple[np.ndarray, np.ndarray, float]]:
    """Top singular triplets of F (N x d), uncentered and column-centered, from ONE float64 Gram product.

    For d <= N the Gram G = F^T F (centered: G - N mu mu^T), else the kernel K = F F^T (centered:
    H K H with H = I - 11^T/N); ``scipy.linalg.eigh`` of only the top ``n_values`` eigenpairs, then
    u = F_c v / sigma on the Gram side. Signs follow deepspan's rule (``orient_signs``). Returns
    ``{centered: (U (N x n_vectors, zero-padded), s (n_values, zero-padded), ||F_c||_F^2)}``.
    Equal to ``deepspan.top_singular`` (tested); sharing the product between the two centerings
    halves the work, which dominates the reproduction's probe statistics.
    """
    import scipy.linalg

    from deepspan.linalg import as_feature_matrix, orient_signs

    F = np.asarray(as_feature_matrix(F, "features"), dtype=np.float64)
    N, d = F.shape
    mu = F.mean(0)
    gram = d <= N
    P = F.T @ F if gram else F @ F.T
    out: dict[bool, tuple[np.ndarray, np.ndarray, float]] = {}
    for center in (False, True):
        if not center:
            M = P
        elif gram:
            M = P - N * np.outer(mu, mu)
        else:
            r = P.mean(0)
            M = P - r[None, :] - r[:, None] + r.mean()
        m = M.shape[0]
        nv = min(n_values, m)
        w, Q = scipy.linalg.eigh(M, subset_by_index=[m - nv, m - 1], check_finite=False)
        w, Q = np.clip(w[::-1], 0.0, None), Q[:, ::-1]
        total = float(max(np.trace(M), 0.0))
        sig = np.sqrt(w)
        k = min(n_vectors, nv)
        floor = 1e-7 * sig[0] if sig.size and sig[0] > 0 else np.inf
        if gram:
            Fc = F - mu if center else F
            keep = sig[:k] > floor
            U = np.zeros((N, k))
            U[:, keep] = (Fc @ Q[:, :k][:, keep]) / sig[:k][keep]
        else:
            U = Q[:, :k].copy()
        U = orient_signs(U)[0]
        u_out = np.zeros((N, n_vectors))
        u_out[:, :k] = U
        s_out = np.zeros(n_values)
        s_out[:nv] = np.where(sig >= floor, sig, 0.0)
        out[center] = (u_out, s_out, total)
    return out


def _unpack(packed: dict[str, np.ndarray]) -> dict[tuple[str, bool], dict[str, np.ndarray]]:
    out: dict[tuple[str, bool], dict[str, np.ndarray]] = {}
    for key, arr in packed.items():
        layer, c, what = key.rsplit("|", 2)
        out.setdefault((layer, bool(int(c))), {})[what] = np.asarray(arr)
    for d in out.values():
        tot = float(d.get("total", np.nan))
        d["energy"] = d["s"] ** 2 / tot if tot > 0 else np.full_like(d["s"], np.nan)
    return out
