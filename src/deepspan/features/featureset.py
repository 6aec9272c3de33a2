"""FeatureSet: per-layer N x d feature matrices on one ordered set of samples, and its disk store.

A FeatureSet carries the sample ids in order and a hash of them (DESIGN
principle 3): vectors in sample space are comparable only on the same
samples in the same order, so every comparison of two FeatureSets checks
the hashes first. Layers extracted with the ``channels`` policy have rows
that are (image, position) pairs; their rows are described by
``positions[layer]`` and their hash (:meth:`FeatureSet.layer_hash`) covers
the positions too.

On disk a FeatureSet is a directory: one ``.npy`` per layer and
``featureset.json`` (ids, policy, provenance, shapes, and the SHA-256 of every
``.npy`` file). It is written into a temporary sibling directory and renamed
into place, so an interrupted save never leaves a directory that loads.

Leftovers and recovery. A save moves the previous store aside to
``.NAME.old-XXXXXXXX`` and renames its ``.NAME.partial-XXXXXXXX`` directory into
place. A hard kill (SIGKILL, power loss) runs no cleanup, so these siblings can
stay behind. The next successful :meth:`FeatureSet.save` to the same path removes
them (its own naming pattern only, siblings of that path only; partial
directories before writing, old copies once the new store is in place). A kill
*between* the two renames leaves no store at the path and the previous one in
``.NAME.old-*``: :meth:`FeatureSet.load` of that path renames the copy back into
place and says so with a :class:`~deepspan.errors.DeepspanWarning` (if the rename
is impossible, e.g. a read-only folder, it loads the copy where it lies and says
that instead).

Checksums. ``save`` records the SHA-256 of each ``.npy`` file (header and raw
array bytes) in ``featureset.json``; ``load(verify=True)`` (the default)
recomputes them and raises :class:`~deepspan.errors.InputError` naming the file
when one differs (e.g. an array overwritten in place with zeros of the same
shape). Stores written before checksums existed load with a warning that they
are unverified. Cost, measured with ``python bench/featureset_store.py`` on a
60,000 x 512 float32 store plus labels (123 MB; development VM, files in the
page cache, min of 7 rounds): save 2.9x the time without checksums (0.17 s vs
0.06 s), load 2.7x (0.15 s vs 0.06 s) -- about +0.1 s per 123 MB each way,
SHA-256 running at ~1.2 GB/s; from a cold disk the ratios are smaller. With
``mmap=True`` verification reads every file once (+0.1 s here), which the lazy
map otherwise avoids. ``load(verify=False)`` skips it.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import uuid
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from deepspan._io import file_digest
from deepspan._version import __version__
from deepspan.errors import DeepspanWarning, InputError, SampleMismatchError

__all__ = ["FeatureSet", "hash_sample_ids", "check_same_featuresets", "META_NAME", "CHECKSUM_ALGORITHM"]

META_NAME = "featureset.json"
#: The hash recorded for every ``.npy`` file of a store (hashlib name).
CHECKSUM_ALGORITHM = "sha256"


def _sibling_leftovers(path: Path, kinds: str = "partial|old") -> list[Path]:
    """Directories named ``.NAME.partial-XXXXXXXX`` / ``.NAME.old-XXXXXXXX`` beside ``path`` (save's own names)."""
    pattern = re.compile(rf"\.{re.escape(path.name)}\.(?:{kinds})-[0-9a-f]{{8}}")
    try:
        entries = list(path.parent.iterdir())
    except OSError:
        return []
    return [p for p in entries if pattern.fullmatch(p.name) and p.is_dir() and not p.is_symlink()]


def _remove_leftovers(path: Path, kinds: str) -> None:
    for p in _sibling_leftovers(path, kinds):
        shutil.rmtree(p, ignore_errors=True)


def _recover_previous(path: Path) -> Path | None:
    """After a save killed between its two renames: put the previous store (``.NAME.old-*``) back at ``path``.

    Returns the directory to load (``path`` once renamed back, the copy itself if it cannot be renamed), or
    None when there is no complete copy. Says what it did with a DeepspanWarning.
    """
    copies = [p for p in _sibling_leftovers(path, "old") if (p / META_NAME).is_file()]
    if not copies:
        return None
    copies.sort(key=lambda p: p.stat().st_ctime, reverse=True)  # the newest copy is the latest store
    copy = copies[0]
    try:
        os.rename(copy, path)
    except OSError as exc:
        if (path / META_NAME).is_file():  # another process restored or wrote the store meanwhile
            return path
        warnings.warn(
            f"{path} is missing: a save was killed while replacing it, and the previous store is in {copy} "
            f"(it could not be renamed back: {exc.strerror or exc}); loading that copy. Rename it to {path} or "
            f"save the FeatureSet again.", DeepspanWarning, stacklevel=3)
        return copy
    warnings.warn(
        f"{path} was missing: a save was killed while replacing it and left the previous store in {copy.name}; "
        f"it was renamed back to {path} and loaded. Save again if you meant to replace it.",
        DeepspanWarning, stacklevel=3)
    return path


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

    def __post_init__(self) -> None:
        """One sample id per row: a layer has N rows (N = len(sample_ids)), or one row per position for
        ``channels`` layers; labels, when given, are N. Anything else raises InputError naming both lengths."""
        n = len(self.sample_ids)
        for layer, arr in self.features.items():
            rows = int(np.shape(arr)[0]) if np.ndim(arr) else 0
            pos = self.positions.get(layer)
            if pos is not None:
                if len(pos) != rows:
                    raise InputError(f"layer {layer!r} has {rows} rows but {len(pos)} positions; a channels layer "
                                     f"needs one (sample, position) pair per row.")
            elif rows != n:
                raise InputError(f"layer {layer!r} has {rows} rows but sample_ids has {n} ids; give one id per "
                                 f"sample (row), in row order.")
        if self.labels is not None and len(self.labels) != n:
            raise InputError(f"labels has {len(self.labels)} entries but sample_ids has {n} ids; give one label "
                             f"per sample, in the order of the ids.")

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
        """Write to directory ``path`` atomically (temporary sibling directory, then rename).

        Records the SHA-256 of every ``.npy`` file in ``featureset.json`` (verified by :meth:`load`). Removes the
        leftovers of earlier killed saves to the same path (module docstring): ``.NAME.partial-*`` before writing,
        ``.NAME.old-*`` once the new store is in place. A save running concurrently on the same path from another
        process may have its partial directory removed; it then fails with an error (nothing is lost silently).
        """
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        _remove_leftovers(path, "partial")  # never loadable; frees the space a killed save held
        tmp = path.with_name(f".{path.name}.partial-{uuid.uuid4().hex[:8]}")
        tmp.mkdir()
        try:
            files = {}
            checksums = {}

            def put(name: str, arr: np.ndarray) -> None:
                np.save(tmp / name, arr)
                checksums[name] = file_digest(tmp / name, CHECKSUM_ALGORITHM)

            for layer, arr in self.features.items():
                name = _layer_file(layer)
                put(name, np.ascontiguousarray(arr))
                files[layer] = {"file": name, "shape": list(arr.shape), "dtype": str(arr.dtype)}
            for layer, pos in self.positions.items():
                put("positions-" + _layer_file(layer), np.asarray(pos, dtype=np.int64))
            if self.labels is not None:
                put("labels.npy", np.asarray(self.labels))
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
                "checksums": {"algorithm": CHECKSUM_ALGORITHM, "files": checksums},
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
        _remove_leftovers(path, "old")  # copies left by saves killed between their two renames
        return path

    @classmethod
    def load(cls, path: str | os.PathLike, mmap: bool = False, verify: bool = True) -> "FeatureSet":
        """Load a FeatureSet written by :meth:`save`; incomplete or damaged stores raise InputError.

        ``verify`` (default) recomputes the SHA-256 of every ``.npy`` file and raises InputError naming the file
        when it differs from the one recorded at save time; a store written before checksums existed loads with
        a DeepspanWarning that it is unverified. ``verify=False`` skips both (cost: module docstring). A missing
        ``path`` whose previous store survives as ``.NAME.old-*`` (a save killed between its two renames) is
        renamed back and loaded, with a DeepspanWarning saying so.
        """
        path = Path(path)
        if not path.exists():
            path = _recover_previous(path) or path
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
            if verify:
                names = [info["file"] for info in meta["layers"].values()] + list(meta.get("positions", {}).values())
                _verify_checksums(path, meta, names + (["labels.npy"] if meta.get("labels") else []))
        except InputError:
            raise
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise InputError(f"{path} is a damaged FeatureSet ({exc}); re-run the extraction.") from exc
        if hash_sample_ids(ids) != meta["sample_hash"]:
            raise InputError(f"{path}: the stored sample ids do not match the stored sample hash; the store is damaged.")
        try:
            return cls(features, ids, meta["sample_hash"], dict(meta["policy"]), positions, labels,
                       dict(meta["provenance"]))
        except InputError as exc:
            raise InputError(f"{path} is a damaged FeatureSet: {exc} Re-run the extraction.") from exc


def _verify_checksums(path: Path, meta: dict, names: list[str]) -> None:
    """Compare each file's checksum with the one ``save`` recorded; InputError naming the first that differs."""
    recorded = meta.get("checksums")
    if recorded is None:
        warnings.warn(
            f"{path} was written by deepspan {meta.get('deepspan_version', '?')} without checksums, so its arrays "
            f"were loaded unverified; save it again to add them.", DeepspanWarning, stacklevel=3)
        return
    algorithm, sums = recorded["algorithm"], recorded["files"]
    if algorithm != CHECKSUM_ALGORITHM:
        raise InputError(f"{path / META_NAME} records {algorithm!r} checksums; this deepspan checks "
                         f"{CHECKSUM_ALGORITHM!r}. Save the FeatureSet again, or load it with verify=False.")
    for name in names:
        if name not in sums:
            raise InputError(f"{path / META_NAME} records no checksum for {name}; the store is damaged. Re-run the "
                             f"extraction (or load it with verify=False to read it unchecked).")
        found = file_digest(path / name, algorithm)
        if found != sums[name]:
            raise InputError(
                f"{path / name} does not match the {algorithm} checksum recorded when the store was saved "
                f"(expected {sums[name][:16]}..., found {found[:16]}...): the file was changed or damaged after the "
                f"save. Re-run the extraction or save the FeatureSet again from a good copy "
                f"(FeatureSet.load(..., verify=False) reads it unchecked).")


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
