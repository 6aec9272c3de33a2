"""FeatureSet: per-layer N x d feature matrices on one ordered set of samples, and its disk store.

A FeatureSet carries the sample ids in order and a hash of them (DESIGN
principle 3): vectors in sample space are comparable only on the same
samples in the same order, so every comparison of two FeatureSets checks
the hashes first. Layers extracted with the ``channels`` policy have rows
that are (image, position) pairs; their rows are described by
``positions[layer]`` and their hash (:meth:`FeatureSet.layer_hash`) covers
the positions too.

On disk a FeatureSet is a directory: one ``.npy`` per layer and
``featureset.json`` (ids, policy, provenance, shapes). It is written into a
temporary sibling directory and renamed into place, so an interrupted save
never leaves a directory that loads.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from deepspan._version import __version__
from deepspan.errors import InputError, SampleMismatchError

__all__ = ["FeatureSet", "hash_sample_ids", "check_same_featuresets", "META_NAME"]

META_NAME = "featureset.json"


def hash_sample_ids(ids: Any) -> str:
    """SHA-256 (first 16 hex digits) of the sample ids in order; equal hashes mean the same samples."""
    h = hashlib.sha256()
    for i in np.asarray(ids).tolist():
        h.update(str(i).encode())
        h.update(b"\x00")
    return h.hexdigest()[:16]


def _layer_file(layer: str) -> str:
    safe = "".join(c if c.isalnum() or c in "._-" else "_" for c in layer) or "layer"
    return f"{safe}-{hashlib.sha1(layer.encode()).hexdigest()[:8]}.npy"


@dataclass
class FeatureSet:
    """Features of one model on one ordered sample set.

    Attributes
    ----------
    features : layer name -> float32 array (rows x d); rows are samples, or
        (image, position) pairs for ``channels`` layers.
    sample_ids : the ids of the N samples (images), in order.
    sample_hash : :func:`hash_sample_ids` of ``sample_ids``.
    policy : layer name -> the conv policy used (``flatten``, ``gap``, ``channels``).
    positions : layer name -> (rows x 2) int array of (sample index, flat spatial
        position) for ``channels`` layers.
    labels : optional integer labels of the N samples, when the data carried them.
    provenance : model class, checkpoint label, device, deepspan version, ...
    """

    features: dict[str, np.ndarray]
    sample_ids: np.ndarray
    sample_hash: str
    policy: dict[str, str]
    positions: dict[str, np.ndarray] = field(default_factory=dict)
    labels: np.ndarray | None = None
    provenance: dict[str, Any] = field(default_factory=dict)

    @property
    def layers(self) -> list[str]:
        return list(self.features)

    @property
    def n_samples(self) -> int:
        return int(len(self.sample_ids))

    def __getitem__(self, layer: str) -> np.ndarray:
        if layer not in self.features:
            import difflib

            close = difflib.get_close_matches(layer, self.layers, n=3, cutoff=0.4)
            hint = f" Closest: {', '.join(close)}." if close else ""
            raise InputError(f"layer {layer!r} is not in this FeatureSet (layers: {', '.join(self.layers)}).{hint}")
        return self.features[layer]

    def layer_hash(self, layer: str) -> str:
        """Hash of the rows of ``layer``: the sample hash, extended by the positions for ``channels`` layers."""
        self[layer]
        pos = self.positions.get(layer)
        if pos is None:
            return self.sample_hash
        h = hashlib.sha256(self.sample_hash.encode())
        h.update(np.ascontiguousarray(pos, dtype=np.int64).tobytes())
        return h.hexdigest()[:16]

    def pvector(self, layer: str, center: bool = False, **kwargs: Any):
        """The P-vector of one layer, tagged with the layer's row hash (so :func:`angle` checks samples)."""
        from deepspan.measures.pvector import pvector

        return pvector(self[layer], center=center, sample_hash=self.layer_hash(layer), **kwargs)

    # ----------------------------------------------------------------- disk store
    def save(self, path: str | os.PathLike) -> Path:
        """Write to directory ``path`` atomically (temporary sibling directory, then rename)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.partial-{uuid.uuid4().hex[:8]}")
        tmp.mkdir()
        try:
            files = {}
            for layer, arr in self.features.items():
                name = _layer_file(layer)
                np.save(tmp / name, np.ascontiguousarray(arr))
                files[layer] = {"file": name, "shape": list(arr.shape), "dtype": str(arr.dtype)}
            for layer, pos in self.positions.items():
                np.save(tmp / ("positions-" + _layer_file(layer)), np.asarray(pos, dtype=np.int64))
            if self.labels is not None:
                np.save(tmp / "labels.npy", np.asarray(self.labels))
            meta = {
                "format": "deepspan.FeatureSet/1",
                "deepspan_version": __version__,
                "sample_ids": np.asarray(self.sample_ids).tolist(),
                "sample_hash": self.sample_hash,
                "policy": self.policy,
                "layers": files,
                "positions": {layer: "positions-" + _layer_file(layer) for layer in self.positions},
                "labels": self.labels is not None,
                "provenance": self.provenance,
            }
            with open(tmp / META_NAME, "w") as f:
                json.dump(meta, f, indent=1, default=str)
                f.flush()
                os.fsync(f.fileno())
            old = None
            if path.exists():
                old = path.with_name(f".{path.name}.old-{uuid.uuid4().hex[:8]}")
                path.rename(old)
            try:
                tmp.rename(path)
            except BaseException:
                if old is not None and not path.exists():
                    old.rename(path)  # put the previous store back
                raise
            if old is not None:
                shutil.rmtree(old, ignore_errors=True)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return path

    @classmethod
    def load(cls, path: str | os.PathLike, mmap: bool = False) -> "FeatureSet":
        """Load a FeatureSet written by :meth:`save`; incomplete or damaged stores raise InputError."""
        path = Path(path)
        meta_path = path / META_NAME
        if not meta_path.is_file():
            raise InputError(
                f"{path} is not a complete FeatureSet: {META_NAME} is missing (the save was interrupted "
                f"or this is not a FeatureSet directory). Re-run the extraction."
            )
        try:
            meta = json.loads(meta_path.read_text())
            ids = np.asarray(meta["sample_ids"])
            features = {}
            for layer, info in meta["layers"].items():
                arr = np.load(path / info["file"], mmap_mode="r" if mmap else None)
                if list(arr.shape) != info["shape"]:
                    raise InputError(f"{path / info['file']} has shape {arr.shape}, expected {info['shape']}.")
                features[layer] = arr
            positions = {layer: np.load(path / name) for layer, name in meta.get("positions", {}).items()}
            labels = np.load(path / "labels.npy") if meta.get("labels") else None
        except InputError:
            raise
        except (OSError, ValueError, KeyError) as exc:
            raise InputError(f"{path} is a damaged FeatureSet ({exc}); re-run the extraction.") from exc
        if hash_sample_ids(ids) != meta["sample_hash"]:
            raise InputError(f"{path}: the stored sample ids do not match the stored sample hash; the store is damaged.")
        return cls(features, ids, meta["sample_hash"], dict(meta["policy"]), positions, labels, dict(meta["provenance"]))


def check_same_featuresets(a: Any, b: Any, what: str = "these feature sets") -> None:
    """Raise SampleMismatchError unless ``a`` and ``b`` (FeatureSets, Datasets) hold the same samples in order.

    Both must carry a sample hash; then the shared :func:`deepspan.linalg.check_same_samples` compares their
    sample counts and hashes.
    """
    from deepspan.linalg.checks import check_same_samples

    ha, hb = getattr(a, "sample_hash", None), getattr(b, "sample_hash", None)
    if ha is None or hb is None:
        raise SampleMismatchError(
            f"{what}: {'the first' if ha is None else 'the second'} carries no sample hash, so its samples cannot be "
            f"checked; compare FeatureSets (or Datasets) extracted on one probe set.")
    n_a, n_b = (int(x.n_samples) if hasattr(x, "n_samples") else len(x) for x in (a, b))
    check_same_samples(n_a, n_b, names=("the first", "the second"), hash_a=ha, hash_b=hb, what=what)
