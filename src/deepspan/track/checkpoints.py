"""A series of checkpoints (state_dict files or in-memory state dicts) with labels and a model factory.

Loading uses ``torch.load(weights_only=True)``: a checkpoint file can hold
tensors and plain containers but never runs code. A file that cannot be read,
or whose keys or shapes do not fit the model, raises an error that names the
file and the missing / unexpected keys.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from deepspan._io import file_digest
from deepspan.errors import InputError

__all__ = ["Checkpoint", "CheckpointSeries", "load_state_dict", "checkpoint_digest"]


def checkpoint_digest(source: str | os.PathLike | dict) -> str:
    """SHA-256 (first 16 hex digits) of a checkpoint: the file's bytes, or an in-memory state dict's keys and
    tensor bytes. Equal digests mean the same weights; it identifies the checkpoints of a tracked series."""
    import hashlib

    h = hashlib.sha256()
    if isinstance(source, dict):
        def feed(obj: Any) -> None:
            if isinstance(obj, dict):
                for key in sorted(obj, key=str):
                    h.update(str(key).encode() + b"\x00")
                    feed(obj[key])
            elif isinstance(obj, torch.Tensor):
                t = obj.detach().cpu().contiguous()
                h.update(f"{t.dtype}{tuple(t.shape)}".encode())
                h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
            else:
                h.update(repr(obj).encode())
            h.update(b"\x01")

        feed(source)
        return h.hexdigest()[:16]
    path = Path(source)
    try:
        return file_digest(path)[:16]
    except OSError as exc:
        raise InputError(f"checkpoint {path} cannot be read ({exc.strerror or exc}).") from exc


@dataclass(frozen=True)
class Checkpoint:
    """One checkpoint: a label, optional epoch/iteration, and a path or an in-memory state dict."""

    label: str
    source: str | os.PathLike | dict
    epoch: int | None = None
    iteration: int | None = None


def _unwrap(obj: Any, where: str) -> dict:
    if isinstance(obj, dict) and obj and not all(isinstance(v, torch.Tensor) for v in obj.values()):
        for key in ("state_dict", "model_state_dict", "model"):
            if key in obj and isinstance(obj[key], dict):
                return obj[key]
    if not isinstance(obj, dict):
        raise InputError(f"{where} holds a {type(obj).__name__}, not a state_dict; save model.state_dict().")
    return obj


def load_state_dict(model: nn.Module, source: str | os.PathLike | dict) -> nn.Module:
    """Load ``source`` (a file or a state dict) into ``model`` strictly; returns the model.

    Errors name the file and list missing and unexpected keys, or the size
    mismatches, so a wrong model factory is obvious.
    """
    where = "the in-memory state dict" if isinstance(source, dict) else str(source)
    if isinstance(source, dict):
        state = source
    else:
        path = Path(source)
        if not path.is_file():
            raise InputError(f"checkpoint {path} does not exist.")
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # torch raises many kinds for damaged files
            raise InputError(
                f"checkpoint {path} cannot be read ({type(exc).__name__}: {(str(exc).splitlines() or ['empty file?'])[0][:200]}); "
                f"the file is corrupt or not a torch state_dict saved with torch.save."
            ) from exc
    state = _unwrap(state, where)
    expected = set(model.state_dict())
    got = set(state)
    missing, unexpected = sorted(expected - got), sorted(got - expected)
    if missing or unexpected:
        raise InputError(
            f"checkpoint {where} does not fit {type(model).__name__}: missing keys {missing[:10]}"
            f"{' ...' if len(missing) > 10 else ''}, unexpected keys {unexpected[:10]}"
            f"{' ...' if len(unexpected) > 10 else ''}. Is the model factory the one that was trained?"
        )
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise InputError(f"checkpoint {where} does not fit {type(model).__name__}: {exc}") from exc
    return model


def check_factory(factory: Any, what: str = "factory") -> Callable[[], nn.Module]:
    """``factory`` when it is a callable that builds a model; a model instance (or a non-callable) is refused
    up front with the fix, instead of failing later inside ``factory()`` (an ``nn.Module`` is callable: it
    would run its forward pass without an input)."""
    if isinstance(factory, nn.Module):
        name = type(factory).__name__
        raise InputError(f"{what} is a model instance ({name}), not a factory; pass a function that builds the "
                         f"model, e.g. `lambda: {name}(...)` or `functools.partial({name}, ...)`, not an instance "
                         f"(each checkpoint is loaded into a fresh model).")
    if not callable(factory):
        raise InputError(f"{what} must be a function that builds the model (e.g. `lambda: MyNet()`), "
                         f"got {type(factory).__name__}.")
    return factory


class CheckpointSeries:
    """Checkpoints of one training run, in order, with a factory that builds the (untrained) model.

    >>> series = CheckpointSeries(make_model, [Checkpoint("e0", "ckpt/e0.pt", epoch=0), ...])
    >>> for ckpt, model in series:          # each model freshly built and loaded
    ...     ...
    """

    def __init__(self, factory: Callable[[], nn.Module], checkpoints: list[Checkpoint]) -> None:
        check_factory(factory)
        if not checkpoints:
            raise InputError("a checkpoint series needs at least one checkpoint.")
        labels = [c.label for c in checkpoints]
        if len(set(labels)) != len(labels):
            raise InputError(f"checkpoint labels must be unique, got {labels}.")
        self.factory = factory
        self.checkpoints = list(checkpoints)

    @classmethod
    def from_files(cls, factory: Callable[[], nn.Module], files: dict[str, str | os.PathLike]) -> "CheckpointSeries":
        """From ``{label: path}`` in order; labels like ``e3`` or ``e0-i50`` set epoch/iteration."""
        out = []
        for label, path in files.items():
            epoch = iteration = None
            for part in str(label).split("-"):
                if part[:1] == "e" and part[1:].isdigit():
                    epoch = int(part[1:])
                elif part[:1] == "i" and part[1:].isdigit():
                    iteration = int(part[1:])
            out.append(Checkpoint(str(label), path, epoch, iteration))
        return cls(factory, out)

    @classmethod
    def from_manifest(cls, out_dir: str | os.PathLike, factory: Callable[[], nn.Module]) -> "CheckpointSeries":
        """The checkpoints listed in ``out_dir/manifest.json`` (written by ``deepspan.zoo.train``), in order."""
        import json

        path = Path(out_dir) / "manifest.json"
        if not path.is_file():
            raise InputError(f"{path} does not exist: no training run (deepspan.zoo.train) was written to {out_dir}.")
        try:
            entries = json.loads(path.read_text())["checkpoints"]
        except (ValueError, KeyError) as exc:
            raise InputError(f"{path} is not a readable training manifest ({exc}).") from exc
        return cls(factory, [Checkpoint(r["label"], str(Path(out_dir) / r["file"]), r.get("epoch"), r.get("iteration"))
                             for r in entries])

    def __len__(self) -> int:
        return len(self.checkpoints)

    def digests(self) -> list[str]:
        """:func:`checkpoint_digest` of every checkpoint, in order (computed once per series object)."""
        cached = getattr(self, "_digests", None)
        if cached is None or len(cached) != len(self.checkpoints):
            cached = self._digests = [checkpoint_digest(c.source) for c in self.checkpoints]
        return list(cached)

    def load(self, i: int) -> nn.Module:
        """A fresh model from the factory with checkpoint ``i`` loaded."""
        model = self.factory()
        if not isinstance(model, nn.Module):
            raise InputError(f"the factory returned a {type(model).__name__}, not a torch.nn.Module; it must build "
                             f"and return the model, e.g. `lambda: MyNet()`.")
        return load_state_dict(model, self.checkpoints[i].source)

    def __iter__(self) -> Iterator[tuple[Checkpoint, nn.Module]]:
        for i, ckpt in enumerate(self.checkpoints):
            yield ckpt, self.load(i)
