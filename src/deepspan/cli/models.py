"""Loading what the commands of users' own models need (``deepspan layers / compare / track``).

* ``MODEL`` specs: ``module:factory`` (imported with the current directory on
  ``sys.path``) or ``path/to/file.py:factory`` (loaded from the file), plus
  keyword arguments given as JSON (``--kwargs '{"image_size": 28}'``), as a
  :class:`FactorySpec`;
* probes: ``deepspan.data.load`` + a seeded ``probe_subset``;
* layers: checked by one forward pass on two probe samples;
* feature sources: saved FeatureSet directories, ``.npy`` matrices, or
  state_dict files run through a model factory.

Every problem raises :class:`~deepspan.errors.InputError` with a message that
names the problem and the fix; the commands turn it into a one-line
``click.ClickException``. Nothing here imports torch at module level, so
``deepspan --help`` stays fast.
"""

from __future__ import annotations

import copy
import difflib
import importlib
import importlib.util
import json
import os
import pkgutil
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from deepspan.cli.output import format_shape
from deepspan.errors import DeepspanError, InputError

__all__ = [
    "MODEL_EXAMPLES",
    "STATE_SUFFIXES",
    "DEFAULT_PROBE_N",
    "FactorySpec",
    "parse_factory_spec",
    "load_factory_spec",
    "parse_kwargs",
    "parse_shape",
    "build_probe",
    "probe_summary",
    "check_device",
    "run_list_layers",
    "check_layers",
    "parse_layer_pairs",
    "source_kind",
    "load_matrix",
    "rename_layers",
]

MODEL_EXAMPLES = "e.g. deepspan.zoo.models:SmallCNN or path/to/nets.py:make_net"
#: File suffixes taken for torch state_dict files.
STATE_SUFFIXES = (".pt", ".pth", ".ckpt")
#: Probe size when ``--n`` is not given (the whole split when it is smaller).
DEFAULT_PROBE_N = 1000


def _first_line(exc: BaseException, limit: int = 200) -> str:
    lines = str(exc).strip().splitlines()
    return (lines[0] if lines else "")[:limit]


# ------------------------------------------------------------------ MODEL specs
def parse_factory_spec(spec: str) -> tuple[str, str]:
    """Split ``module:factory`` / ``file.py:factory`` into (target, dotted attribute); checks the syntax only."""
    text = str(spec).strip()
    if ":" not in text:
        hint = ""
        if "." in text and not text.endswith(".py") and all(p.isidentifier() for p in text.split(".")):
            mod, _, attr = text.rpartition(".")
            hint = f" Did you mean {mod}:{attr}?"
        raise InputError(f"MODEL {spec!r} is not of the form module:factory ({MODEL_EXAMPLES}).{hint}")
    target, _, attr = text.rpartition(":")  # rpartition keeps Windows drive letters in the target
    if not target:
        raise InputError(f"MODEL {spec!r} names no module before the colon ({MODEL_EXAMPLES}).")
    if not attr:
        raise InputError(f"MODEL {spec!r} names no factory after the colon ({MODEL_EXAMPLES}).")
    if not all(p.isidentifier() for p in attr.split(".")):
        extra = " Pass its arguments with --kwargs '{\"name\": value}'." if "(" in attr else ""
        raise InputError(f"the factory {attr!r} in MODEL {spec!r} is not a Python name ({MODEL_EXAMPLES}).{extra}")
    if not target.endswith(".py") and not all(p.isidentifier() for p in target.split(".")):
        hint = " A file must be given by its path ending in .py." if ("/" in target or "\\" in target) else ""
        raise InputError(f"{target!r} in MODEL {spec!r} is not an importable module name ({MODEL_EXAMPLES}).{hint}")
    return target, attr


def _module_suggestions(missing: str) -> list[str]:
    parent, _, leaf = missing.rpartition(".")
    try:
        if parent:
            paths = getattr(importlib.import_module(parent), "__path__", None)
            if paths is None:
                return []
            names = [m.name for m in pkgutil.iter_modules(paths)]
        else:
            names = [m.name for m in pkgutil.iter_modules()]
    except Exception:  # suggestions are best effort
        return []
    return [f"{parent}.{c}" if parent else c for c in difflib.get_close_matches(leaf, names, n=3, cutoff=0.6)]


def _import_file(target: str, spec: str) -> Any:
    path = Path(target).expanduser()
    if not path.is_file():
        raise InputError(f"{target} does not exist (MODEL {spec!r} names a Python file, relative to the current "
                         f"directory {os.getcwd()}); check the path.")
    path = path.resolve()
    folder = str(path.parent)
    if folder not in sys.path:
        sys.path.insert(0, folder)  # so the file can import its neighbours
    name = "_deepspan_user_" + "".join(c if c.isalnum() else "_" for c in path.stem)
    mspec = importlib.util.spec_from_file_location(name, path)
    if mspec is None or mspec.loader is None:
        raise InputError(f"{target} cannot be loaded as a Python module; MODEL needs a .py file.")
    module = importlib.util.module_from_spec(mspec)
    sys.modules[name] = module
    try:
        mspec.loader.exec_module(module)
    except Exception as exc:
        sys.modules.pop(name, None)
        raise InputError(f"loading {target} raised {type(exc).__name__}: {_first_line(exc)}; fix the file "
                         f"(or install what it imports).") from exc
    return module


def _import_module(target: str, spec: str) -> Any:
    try:
        return importlib.import_module(target)
    except ModuleNotFoundError as exc:
        missing = exc.name or target
        if target == missing or target.startswith(missing + "."):
            close = _module_suggestions(missing)
            hint = f" Did you mean {', '.join(close)}?" if close else ""
            raise InputError(
                f"no module named {missing!r} (MODEL {spec!r}); check the spelling, install the package, or run "
                f"from the directory that holds it (the current directory is searched), or give a file as "
                f"path/to/file.py:factory.{hint}"
            ) from exc
        raise InputError(f"importing {target} failed: it imports {missing!r}, which is not installed; "
                         f"install it.") from exc
    except Exception as exc:
        raise InputError(f"importing {target} raised {type(exc).__name__}: {_first_line(exc)}; fix the module.") from exc


def _public_names(obj: Any) -> list[str]:
    return [n for n in dir(obj) if not n.startswith("_")]


def _resolve_attr(module: Any, target: str, attr: str) -> Any:
    obj, where = module, target
    for part in attr.split("."):
        if not hasattr(obj, part):
            names = _public_names(obj)
            close = difflib.get_close_matches(part, names, n=3, cutoff=0.5)
            if close:
                hint = f"did you mean {', '.join(close)}?"
            else:
                callables = [n for n in names if callable(getattr(obj, n, None))][:12]
                hint = f"it has {', '.join(callables)}." if callables else "it defines no public callables."
            raise InputError(f"{where} has no attribute {part!r}; {hint}")
        obj = getattr(obj, part)
        where = f"{where}:{part}" if where == target else f"{where}.{part}"
    return obj


@dataclass
class FactorySpec:
    """A model factory imported from ``MODEL`` with its keyword arguments; :meth:`build` makes a fresh model."""

    spec: str
    factory: Any
    kwargs: dict[str, Any] = field(default_factory=dict)

    @property
    def call_text(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.kwargs.items())
        return f"{self.spec}({args})"

    def _signature_hint(self) -> str:
        import inspect

        try:
            params = list(inspect.signature(self.factory).parameters)
        except (TypeError, ValueError):
            return ""
        return f" (the factory takes: {', '.join(params)})" if params else " (the factory takes no arguments)"

    def build(self) -> Any:
        from torch import nn

        if isinstance(self.factory, nn.Module):
            if self.kwargs:
                raise InputError(f"{self.spec} is a model instance, not a factory, so --kwargs cannot apply to it; "
                                 f"drop --kwargs or name a function or class.")
            return copy.deepcopy(self.factory)
        try:
            model = self.factory(**self.kwargs)
        except Exception as exc:
            raise InputError(f"calling {self.call_text} raised {type(exc).__name__}: {_first_line(exc)}; "
                             f"check --kwargs{self._signature_hint()}.") from exc
        if not isinstance(model, nn.Module):
            raise InputError(f"{self.call_text} returned a {type(model).__name__}, not a torch.nn.Module; MODEL must "
                             f"name a function or class that builds the network.")
        return model


def load_factory_spec(spec: str, kwargs: dict[str, Any] | None = None) -> FactorySpec:
    """Import the factory named by ``spec`` (the current directory goes on ``sys.path``); checks it is callable."""
    target, attr = parse_factory_spec(spec)
    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.insert(0, cwd)
    module = _import_file(target, spec) if target.endswith(".py") else _import_module(target, spec)
    factory = _resolve_attr(module, target, attr)
    if not callable(factory):
        raise InputError(f"{spec} is a {type(factory).__name__}, not callable; MODEL must name a function or class "
                         f"that returns a torch.nn.Module ({MODEL_EXAMPLES}).")
    return FactorySpec(str(spec).strip(), factory, dict(kwargs or {}))


def parse_kwargs(text: str | None, option: str = "--kwargs") -> dict[str, Any]:
    """A JSON object of keyword arguments (``None`` -> ``{}``)."""
    if text is None or not str(text).strip():
        return {}
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise InputError(f"{option} {text!r} is not valid JSON ({exc}); pass an object such as "
                         f"'{{\"image_size\": 28}}' (double quotes inside single quotes).") from exc
    if not isinstance(value, dict):
        raise InputError(f"{option} must be a JSON object of keyword arguments such as '{{\"image_size\": 28}}', "
                         f"got a {type(value).__name__}.")
    return value


def parse_shape(text: str | None, option: str = "--input-shape") -> tuple[int, ...] | None:
    """``"C,H,W"`` (also ``CxHxW`` or ``(C, H, W)``) -> a tuple of positive ints; ``None`` stays ``None``."""
    if text is None:
        return None
    body = str(text).strip().strip("()[]").strip()
    sep = "," if ("," in body or not body) else ("x" if "x" in body else "X")
    parts = [p.strip() for p in body.split(sep)]
    if parts and parts[-1] == "" and sep == ",":
        parts = parts[:-1]  # "(1, 28, 28,)" or "64,"
    try:
        shape = tuple(int(p) for p in parts)
    except ValueError:
        shape = ()
    if not shape or any(s <= 0 for s in shape):
        raise InputError(f"{option} {text!r} is not a shape; give the per-sample input shape as positive integers "
                         f"separated by commas, e.g. 1,28,28 (channels, height, width) or 40.")
    return shape


# ------------------------------------------------------------------ probes
def build_probe(data: str, split: str, n: int | None, seed: int, input_shape: tuple[int, ...] | None = None) -> Any:
    """The probe set: ``load(data, split)``, then ``probe_subset(n, seed)`` (class-balanced).

    ``n`` defaults to 1000, or the whole split when it has at most 1000 samples;
    ``n`` equal to the split's size also takes the whole split.
    """
    from deepspan.data import Dataset, load, probe_subset

    ds = load(data, None if str(data).endswith(".npz") else split)  # an .npz probe: the whole file (--split ignored)
    if (n is None and len(ds) <= DEFAULT_PROBE_N) or n == len(ds):
        probe = ds  # every sample, in the dataset's order
    else:
        want = DEFAULT_PROBE_N if n is None else n
        if isinstance(want, int) and want > len(ds):
            raise InputError(f"--n {want} asks for more probe samples than {ds.name} {split} has ({len(ds)}); pass "
                             f"--n {len(ds)} or less.")
        try:
            probe = probe_subset(ds, want, seed=seed)
        except InputError as exc:
            if want <= 0:
                raise InputError(f"--n must be a positive number of probe samples, got {want}.") from exc
            raise InputError(f"--n {want} cannot be drawn class-balanced from {ds.name} {split} ({exc}); pass --n "
                             f"{_max_balanced(np.asarray(ds.y))} or less.") from exc
    if input_shape is not None:
        per = int(np.prod(probe.X.shape[1:]))
        if int(np.prod(input_shape)) != per:
            raise InputError(f"--input-shape {','.join(map(str, input_shape))} holds {int(np.prod(input_shape))} values "
                             f"per sample but the {probe.name} samples have shape {tuple(probe.X.shape[1:])} ({per} "
                             f"values); give a shape with {per} values or leave --input-shape out.")
        probe = Dataset(probe.name, probe.X.reshape(len(probe), *input_shape), probe.y, probe.ids)
    return probe


def _max_balanced(y: np.ndarray) -> int:
    """The largest n that ``probe_subset`` can draw class-balanced from labels ``y`` (remainder to the smallest labels)."""
    counts = np.unique(y, return_counts=True)[1]
    k, q = len(counts), int(counts.min())
    best = k * q
    for r in range(1, k):
        if counts[r - 1] < q + 1:
            break
        best = k * q + r
    return best


def check_device(device: str) -> None:
    """``--device cuda`` needs a GPU (``auto`` falls back to the CPU)."""
    if device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise InputError("--device cuda was given but no CUDA device is available; use --device cpu or --device auto.")


def probe_summary(probe: Any, data: str, split: str, n: int | None, seed: int) -> dict[str, Any]:
    return {"data": data, "split": split, "n_requested": n, "seed": seed, "n_samples": len(probe),
            "input_shape": list(probe.X.shape[1:]), "sample_hash": probe.sample_hash}


# ------------------------------------------------------------------ layers
def run_list_layers(model: Any, example: Any, what: str) -> list[Any]:
    """``list_layers`` with a forward pass on ``example``; a model that cannot run on it raises InputError."""
    from deepspan.features import list_layers

    try:
        return list_layers(model, example_input=example)
    except DeepspanError:
        raise
    except Exception as exc:
        shape = tuple(getattr(example, "shape", ()))
        raise InputError(
            f"{what} cannot run on inputs of shape {shape} (a batch of {shape[0] if shape else '?'}): "
            f"{type(exc).__name__}: {_first_line(exc)}; check --kwargs (e.g. image_size, in_channels) or "
            f"--input-shape."
        ) from exc


def check_layers(model: Any, example: Any, layers: Sequence[str], policy: str | None, what: str,
                 spec: str | None = None) -> dict[str, Any]:
    """Run ``model`` once on ``example`` and check that every layer exists, runs, returns a tensor and has a policy.

    Returns layer -> hooked output shape (batch axis first).
    """
    infos = {i.name: i for i in run_list_layers(model, example, what)}
    listing = f" `deepspan layers {spec}` lists them all." if spec else ""
    shapes = {}
    for name in layers:
        if name not in infos:
            close = difflib.get_close_matches(name, list(infos), n=5, cutoff=0.4)
            hint = f"closest: {', '.join(close)}" if close else f"names include {', '.join(list(infos)[:10])}"
            raise InputError(f"unknown layer {name!r} in {what}; {hint}.{listing}")
        shape = infos[name].output_shape
        if shape is None:
            raise InputError(f"layer {name!r} of {what} does not run in the forward pass; pick a layer that runs.{listing}")
        if not isinstance(shape, tuple):
            raise InputError(f"layer {name!r} of {what} returns {format_shape(shape)}, not one tensor; pick a module "
                             f"that returns a tensor.{listing}")
        if len(shape) > 2 and policy is None:
            raise InputError(f"layer {name!r} of {what} outputs {format_shape(shape)} (channels x spatial); pass "
                             f"--policy flatten (C*H*W features) or --policy gap (C features, global average pool).")
        shapes[name] = shape
    return shapes


def parse_layer_pairs(layers: Sequence[str]) -> list[tuple[str, str, str]]:
    """``--layer NAME`` -> (NAME, NAME, NAME); ``--layer A=B`` -> (A, B, "A=B"): (layer of A, layer of B, label)."""
    out = []
    for text in layers:
        a, eq, b = str(text).partition("=")
        a, b = a.strip(), b.strip()
        if not a or (eq and not b):
            raise InputError(f"--layer {text!r} is not a layer name; give NAME, or NAME_A=NAME_B to pair layers "
                             f"of two architectures.")
        b = b if eq else a
        out.append((a, b, a if a == b else f"{a}={b}"))
    labels = [p[2] for p in out]
    if len(set(labels)) != len(labels):
        raise InputError(f"a --layer is repeated ({', '.join(labels)}); name each layer once.")
    return out


# ------------------------------------------------------------------ feature sources
def source_kind(path: Path) -> str:
    """``features`` (a FeatureSet directory), ``matrix`` (.npy) or ``state`` (a state_dict file)."""
    if path.is_dir():
        if (path / "manifest.json").is_file() and not (path / "featureset.json").is_file():
            raise InputError(f"{path} is a training run (manifest.json), not a FeatureSet; give one of its "
                             f"checkpoint files ({path}/<label>.pt) with --model, or track it with `deepspan track`.")
        return "features"
    suffix = path.suffix.lower()
    if suffix == ".npy":
        return "matrix"
    if suffix in STATE_SUFFIXES:
        return "state"
    raise InputError(f"cannot tell what {path} is: give a FeatureSet directory (FeatureSet.save), a .npy feature "
                     f"matrix (rows = samples) or a state_dict file ({', '.join(STATE_SUFFIXES)}).")


def load_matrix(path: Path) -> np.ndarray:
    """A .npy file as a samples x features matrix (1-D arrays become one column)."""
    try:
        arr = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        raise InputError(f"{path} is not a readable .npy array ({_first_line(exc)}); save features with "
                         f"numpy.save(path, F).") from exc
    if arr.ndim == 1:
        arr = arr.reshape(-1, 1)
    if arr.ndim != 2:
        raise InputError(f"{path} holds an array of shape {arr.shape}; a feature matrix is 2-D with rows = samples "
                         f"(reshape it to (N, -1) before saving).")
    return arr


def rename_layers(fs: Any, pairs: Sequence[tuple[str, str]], where: str) -> Any:
    """A FeatureSet holding only ``pairs`` = [(layer in fs, new name)], sharing the samples and provenance."""
    from deepspan.features import FeatureSet

    feats, policy, positions = {}, {}, {}
    for name, label in pairs:
        try:
            feats[label] = fs[name]
        except InputError as exc:
            raise InputError(f"{where}: {exc}") from exc
        if name in fs.policy:
            policy[label] = fs.policy[name]
        if name in fs.positions:
            positions[label] = fs.positions[name]
    return FeatureSet(feats, fs.sample_ids, fs.sample_hash, policy, positions, fs.labels, dict(fs.provenance))
