"""A small, seeded, resumable trainer for the zoo models, with checkpoints for deepspan's trackers.

Paradigms
---------
* ``"supervised"``: cross-entropy on the labels.
* ``"autoencoder"``: mean squared reconstruction error, ``mean((model(x) - x)^2)``.
* ``"simclr"``: the NT-Xent loss of SimCLR (Chen, Kornblith, Norouzi, Hinton, ICML 2020,
  arXiv 2002.05709, Eq. 1): each batch of B images gives 2B augmented views;
  with z the L2-normalised projections and sim(i, j) = z_i . z_j / tau,
  ``l(i, j) = -log exp(sim(i, j)) / sum_{k != i} exp(sim(i, k))`` for the
  positive pair (i, j), averaged over all 2B anchors.

Determinism
-----------
``torch.manual_seed(seed)`` is called at the start, and one ``torch.Generator``
seeded with ``seed`` draws every shuffle and every augmentation; deterministic
algorithms are switched on (warn-only) for the duration of the run and the
previous setting restored afterwards. On CPU the same seed gives bit-identical
weights.

Checkpoints and resuming (``out_dir``)
--------------------------------------
* ``init`` (before the first step), ``e0-i<k>`` after global step k for each k
  in ``checkpoint_iterations`` inside the first epoch, and ``e<k>`` at the end
  of every epoch; each is a state_dict file ``<label>.pt`` written atomically.
* ``manifest.json`` (rewritten atomically after each checkpoint) lists the run's
  configuration and, per checkpoint, label, file, epoch, iteration (global step),
  ``loss`` (mean training loss since the previous checkpoint; None for init),
  ``eval_loss`` (the loss on a fixed evaluation subset, same definition at every
  checkpoint) and accuracies (inside epoch 1: the training accuracy only; the
  test accuracy and the linear probe at ``init`` and at every epoch end).
* ``resume.pt`` (atomic) holds model, optimizer, generator and torch RNG states
  and the manifest entries at the last complete epoch (or at init). Calling
  :func:`train` again with the same ``out_dir`` and configuration continues from
  there; the final weights equal those of an uninterrupted run.

Accuracy
--------
Supervised: arg-max accuracy on (the first ``eval_size`` samples of) the
training data and on ``test_data``. Autoencoder / SimCLR: a linear probe --
closed-form ridge regression to one-hot labels on the standardised features at
``model.feature_layer`` (``deepspan.extract``), W = (FᵀF + λ n I)⁻¹ FᵀY with
λ = 1e-3 and a bias column, predicting the arg-max; it is fit on the first half
of the evaluation subset of the training data and scored on ``test_data`` if
given, else on the second half. No randomness: probing never disturbs training.
"""

from __future__ import annotations

import io
import json
import math
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from deepspan._io import atomic_write_bytes, atomic_write_json
from deepspan._layout import enter_channels_last, leave_channels_last
from deepspan.errors import InputError
from deepspan.features.extract import check_model

__all__ = ["train", "TrainResult", "nt_xent", "linear_probe", "read_manifest", "lr_at", "PARADIGMS", "SCHEDULES"]

PARADIGMS = ("supervised", "autoencoder", "simclr")
SCHEDULES = ("constant", "cosine", "steps")
MANIFEST = "manifest.json"
RESUME = "resume.pt"
FORMAT = "deepspan-zoo-run/1"
DEFAULT_CHECKPOINT_ITERATIONS = (1, 2, 5, 10, 20, 50, 100, 200, 500)


@dataclass
class TrainResult:
    """The trained model, the checkpoint records (as in the manifest) and the output folder."""

    model: nn.Module
    records: list[dict] = field(default_factory=list)
    out_dir: Path | None = None
    resumed_from: str | None = None


# ----------------------------------------------------------------------------- losses and probe

def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float = 0.5) -> torch.Tensor:
    """NT-Xent (normalised temperature-scaled cross-entropy) of Chen et al. 2020 (SimCLR, Eq. 1).

    ``z1[i]`` and ``z2[i]`` are the projections of two views of image i. With
    z = normalise([z1; z2]) (2B x p) and S = z zᵀ / temperature with the diagonal
    removed, the loss is the mean over the 2B rows of the cross-entropy whose
    target is the other view of the same image.
    """
    if z1.shape != z2.shape or z1.ndim != 2:
        raise InputError(f"nt_xent needs two B x p tensors of the same shape, got {tuple(z1.shape)} and {tuple(z2.shape)}.")
    b = z1.shape[0]
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    sim = (z @ z.T) / temperature
    sim = sim.masked_fill(torch.eye(2 * b, dtype=torch.bool, device=z.device), float("-inf"))
    target = torch.cat([torch.arange(b, 2 * b), torch.arange(0, b)]).to(z.device)
    return F.cross_entropy(sim, target)


def linear_probe(F_train: np.ndarray, y_train: np.ndarray, F_test: np.ndarray, y_test: np.ndarray,
                 ridge: float = 1e-3) -> float:
    """Accuracy of a closed-form ridge-regression probe (one-hot targets, bias, standardised features).

    W = (XᵀX + ridge · n · I)⁻¹ XᵀY in float64, X = [standardised F, 1]; the
    prediction is the arg-max of X W. Standardisation uses the training
    split's mean and standard deviation (+1e-8).
    """
    Ft = np.asarray(F_train, dtype=np.float64)
    Fs = np.asarray(F_test, dtype=np.float64)
    mu, sd = Ft.mean(0), Ft.std(0) + 1e-8
    Xt = np.hstack([(Ft - mu) / sd, np.ones((len(Ft), 1))])
    Xs = np.hstack([(Fs - mu) / sd, np.ones((len(Fs), 1))])
    classes = np.unique(y_train)
    Y = (np.asarray(y_train)[:, None] == classes[None, :]).astype(np.float64)
    A = Xt.T @ Xt + ridge * len(Xt) * np.eye(Xt.shape[1])
    W = np.linalg.solve(A, Xt.T @ Y)
    pred = classes[np.argmax(Xs @ W, axis=1)]
    return float(np.mean(pred == np.asarray(y_test)))


# ----------------------------------------------------------------------------- data

def _tensors(data: Any, name: str) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(X as float32 N x C x H x W or N x L, y as int64 or None) from a deepspan Dataset, an (X, y) pair or an array.

    N x H x W images get a channel axis; N x L vectors stay as they are (for models that flatten, e.g. the MLP)."""
    if data is None:
        raise InputError(f"{name} is None; pass a deepspan Dataset, an (X, y) pair, a tensor or an array.")
    if hasattr(data, "X") and not isinstance(data, (torch.Tensor, np.ndarray)):
        X, y = data.X, getattr(data, "y", None)
    elif isinstance(data, (tuple, list)) and len(data) == 2:
        X, y = data
    else:
        X, y = data, None
    if isinstance(X, np.ndarray):  # a copy when read-only (cached / memory-mapped arrays): torch needs writable
        X = np.ascontiguousarray(X) if X.flags.writeable else np.array(X)
    X = torch.as_tensor(X).to(torch.float32)
    if X.ndim == 3:
        X = X[:, None]
    if X.ndim not in (2, 4):
        raise InputError(f"{name} must hold images N x H x W or N x C x H x W, or vectors N x L, "
                         f"got shape {tuple(X.shape)}.")
    if len(X) == 0:
        raise InputError(f"{name} has no samples.")
    if not torch.isfinite(X).all():
        raise InputError(f"{name} contains NaN or Inf values; clean the images first.")
    if y is not None:
        y = _labels(y, len(X), name)
    return X, y


def _labels(y: Any, n: int, name: str) -> torch.Tensor:
    """Labels as int64 class indices, one per sample.

    Integer and bool labels are used as they are. Float labels are accepted only when every value is a
    whole number (then converted, as :func:`deepspan.data.from_arrays` does); any fractional or
    non-finite value is refused -- labels are never truncated silently. Strings, complex numbers and
    N x K (one-hot) labels are refused with the fix.
    """
    remap = "np.unique(y, return_inverse=True)[1] maps any labels to 0..K-1"
    if isinstance(y, torch.Tensor):
        t = y.detach().cpu()
        if t.is_complex():
            raise InputError(f"{name} labels are complex ({t.dtype}); pass integer class indices 0..K-1.")
    else:
        a = np.asarray(y)
        if a.dtype.kind not in "biuf":
            raise InputError(f"{name} labels have dtype {a.dtype}; pass integer class indices 0..K-1 ({remap}).")
        t = torch.as_tensor(np.ascontiguousarray(a) if a.flags.writeable else np.array(a))  # torch needs writable
    if t.ndim == 2 and t.shape[0] == n and t.shape[1] > 1:
        raise InputError(f"{name} labels have shape {tuple(t.shape)} (one-hot or scores?); pass one class index "
                         f"per sample, e.g. y.argmax(1).")
    t = t.reshape(-1)
    if len(t) != n:
        raise InputError(f"{name} has {n} images but {len(t)} labels; pass one label per sample.")
    if t.is_floating_point():
        bad = ~torch.isfinite(t) | (t != torch.round(t))
        if bool(bad.any()):
            i = int(bad.nonzero()[0, 0])
            raise InputError(
                f"{name} labels are {str(t.dtype).replace('torch.', '')} and {int(bad.sum())} of {n} are not whole "
                f"numbers (first: {float(t[i])!r} at position {i}); labels are class indices and are not rounded or "
                f"truncated for you: pass integers, e.g. y.astype(np.int64) (numpy) / y.long() (torch), or "
                f"{remap}.")
    return t.to(torch.int64)


def _check_classes(model: nn.Module, X: torch.Tensor, labelled: dict[str, torch.Tensor | None]) -> None:
    """Supervised training: the model returns N x K scores and every label is in 0..K-1, checked before any step.

    One forward pass of two samples in eval mode under no_grad (the mode is restored); a shape mismatch
    is reported with the layer where it failed.
    """
    from deepspan.features.extract import _forward_failure

    was_training = model.training
    model.eval()
    xb = X[:2]
    try:
        with torch.no_grad():
            try:
                out = model(xb)
            except RuntimeError as exc:
                err = _forward_failure(model, xb, exc)
                if err is None:
                    raise
                raise err from exc
    finally:
        model.train(was_training)
    if not isinstance(out, torch.Tensor) or out.ndim != 2:
        got = f"shape {tuple(out.shape)}" if isinstance(out, torch.Tensor) else type(out).__name__
        raise InputError(f"supervised training needs {type(model).__name__} to return N x K class scores, but it "
                         f"returned {got} for {len(xb)} samples; use paradigm='autoencoder' / 'simclr' for other "
                         f"outputs, or end the model with a layer giving one score per class.")
    k = int(out.shape[1])
    for name, y in labelled.items():
        if y is None or not len(y):
            continue
        lo, hi = int(y.min()), int(y.max())
        if lo < 0:
            raise InputError(f"{name} labels must be class indices 0..{k - 1}, but {int((y < 0).sum())} are negative "
                             f"(smallest {lo}); remap them, e.g. np.unique(y, return_inverse=True)[1].")
        if hi >= k:
            raise InputError(f"{name} labels go up to {hi}, but {type(model).__name__} returns {k} class scores "
                             f"(labels 0..{k - 1}); build the model with at least {hi + 1} outputs "
                             f"(e.g. num_classes={hi + 1}) or remap the labels to 0..{k - 1}.")


def _check_settings(epochs: Any, batch_size: Any, lr: Any, momentum: Any, weight_decay: Any, temperature: Any,
                    eval_size: Any) -> None:
    """Numbers that torch would otherwise reject deep inside (or accept silently, like lr=0), checked up front."""
    for name, v, low in (("epochs", epochs, 0), ("batch_size", batch_size, 1), ("eval_size", eval_size, 0)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
            raise InputError(f"{name} must be a whole number, got {v!r} ({type(v).__name__}).")
        if v < low:
            raise InputError(f"{name} must be >= {low}, got {v}.")
    if lr is not None:
        if isinstance(lr, bool) or not isinstance(lr, (int, float, np.integer, np.floating)) \
                or not math.isfinite(lr) or lr <= 0:
            raise InputError(f"lr must be a positive finite number, got {lr!r}; typical values are 0.05 for "
                             f"optimizer='sgd' and 1e-3 for 'adam' (lr=None uses them).")
    for name, v in (("momentum", momentum), ("weight_decay", weight_decay)):
        if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)) or not math.isfinite(v) \
                or v < 0:
            raise InputError(f"{name} must be a finite number >= 0, got {v!r}.")
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float, np.integer, np.floating)) \
            or not math.isfinite(temperature) or temperature <= 0:
        raise InputError(f"temperature must be a positive finite number (SimCLR uses 0.1-0.5), got {temperature!r}.")


# ----------------------------------------------------------------------------- evaluation

class _Evaluator:
    """Loss on a fixed subset, accuracies / linear probe; uses its own generator, never the training one."""

    def __init__(self, paradigm: str, X: torch.Tensor, y: torch.Tensor | None, test: tuple | None,
                 eval_size: int, batch_size: int, temperature: float, augment: Callable | None, seed: int) -> None:
        self.paradigm, self.batch_size, self.temperature, self.augment = paradigm, batch_size, temperature, augment
        self.seed = seed
        n = min(len(X), eval_size)
        self.X, self.y = X[:n], (None if y is None else y[:n])
        self.test = test
        self.enabled = eval_size > 0

    def _batches(self, X: torch.Tensor):
        for i in range(0, len(X), self.batch_size):
            yield X[i : i + self.batch_size]

    @torch.no_grad()
    def loss(self, model: nn.Module) -> float:
        g = torch.Generator().manual_seed(self.seed + 7919)  # fixed views, independent of training
        total, count = 0.0, 0
        for i, xb in enumerate(self._batches(self.X)):
            yb = None if self.y is None else self.y[i * self.batch_size : i * self.batch_size + len(xb)]
            total += float(_loss(model, self.paradigm, xb, yb, self.temperature, self.augment, g)) * len(xb)
            count += len(xb)
        return total / count

    @torch.no_grad()
    def loss_and_accuracy(self, model: nn.Module) -> dict[str, float]:
        """``eval_loss`` and ``train_accuracy`` of a supervised model from one pass over the evaluation subset
        (the same numbers as :meth:`loss` and :meth:`accuracy` when there is no augmentation)."""
        total, correct = 0.0, 0
        for i, xb in enumerate(self._batches(self.X)):
            yb = self.y[i * self.batch_size : i * self.batch_size + len(xb)]
            logits = model(xb)
            total += float(F.cross_entropy(logits, yb)) * len(xb)
            correct += int((logits.argmax(1) == yb).sum())
        return {"eval_loss": total / len(self.X), "train_accuracy": correct / len(self.X)}

    @torch.no_grad()
    def accuracy(self, model: nn.Module, X: torch.Tensor, y: torch.Tensor) -> float:
        correct = 0
        for i, xb in enumerate(self._batches(X)):
            correct += int((model(xb).argmax(1) == y[i * self.batch_size : i * self.batch_size + len(xb)]).sum())
        return correct / len(X)

    def features(self, model: nn.Module, X: torch.Tensor) -> np.ndarray:
        from deepspan.features import extract

        fs = extract(model, X, model.feature_layer, policy="flatten", batch_size=self.batch_size, progress=False)
        return fs.features[model.feature_layer]

    def __call__(self, model: nn.Module, full: bool = True) -> dict:
        """The metrics of one checkpoint record, measured in eval mode (the model's mode is restored).

        ``full=False`` (checkpoints inside epoch 1) measures the evaluation loss and the training
        accuracy only: the test accuracy and the linear probe are left to the epoch ends.
        """
        if not self.enabled:
            return {}
        was_training = model.training
        model.eval()
        try:
            if self.paradigm == "supervised" and self.augment is None and self.y is not None:
                out: dict[str, Any] = self.loss_and_accuracy(model)  # one pass: the same images, unaugmented
                if full and self.test is not None and self.test[1] is not None:
                    out["test_accuracy"] = self.accuracy(model, *self.test)
                return out
            out = {"eval_loss": self.loss(model)}
            if self.paradigm == "supervised":
                out.update(self.supervised_accuracies(model, test=full))
            elif full and self.y is not None and hasattr(model, "feature_layer"):
                out.update(self.probe_accuracy(model))
            return out
        finally:
            model.train(was_training)

    def supervised_accuracies(self, model: nn.Module, test: bool = True) -> dict[str, float]:
        """Arg-max accuracy on the evaluation subset and, when labelled and ``test``, on the test data."""
        out = {"train_accuracy": self.accuracy(model, self.X, self.y)}
        if test and self.test is not None and self.test[1] is not None:
            out["test_accuracy"] = self.accuracy(model, *self.test)
        return out

    def probe_accuracy(self, model: nn.Module) -> dict[str, float]:
        """The linear probe at ``model.feature_layer``: fit on the evaluation subset (or its first half),
        scored on the labelled test data (or the second half); empty when a split has no samples."""
        if self.test is not None and self.test[1] is not None:
            Xa, ya, Xb, yb = self.X, self.y, self.test[0], self.test[1]
        else:
            h = len(self.X) // 2
            Xa, ya, Xb, yb = self.X[:h], self.y[:h], self.X[h:], self.y[h:]
        if not (len(Xa) and len(Xb)):
            return {}
        return {"probe_accuracy": linear_probe(self.features(model, Xa), ya.numpy(), self.features(model, Xb),
                                               yb.numpy())}


def _loss(model: nn.Module, paradigm: str, xb: torch.Tensor, yb: torch.Tensor | None, temperature: float,
          augment: Callable | None, g: torch.Generator) -> torch.Tensor:
    if paradigm == "simclr":
        v1, v2 = augment(xb, g), augment(xb, g)
        z = model(torch.cat([v1, v2]))
        return nt_xent(z[: len(xb)], z[len(xb) :], temperature)
    if augment is not None:
        xb = augment(xb, g)
    if paradigm == "supervised":
        return F.cross_entropy(model(xb), yb)
    return F.mse_loss(model(xb), xb)


# ----------------------------------------------------------------------------- files

def _save_state(path: Path, obj: Any) -> None:
    buf = io.BytesIO()
    torch.save(obj, buf)
    atomic_write_bytes(path, buf.getvalue())


def read_manifest(out_dir: str | Path) -> dict:
    """The parsed ``manifest.json`` of a run folder (an InputError names the problem if it is missing or broken)."""
    path = Path(out_dir) / MANIFEST
    if not path.is_file():
        raise InputError(f"{path} does not exist; is {out_dir} the out_dir of a deepspan.zoo.train run?")
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise InputError(f"{path} is not valid JSON ({exc}); the run folder is damaged.") from exc
    if manifest.get("format") != FORMAT or not isinstance(manifest.get("checkpoints"), list):
        raise InputError(f"{path} is not a deepspan.zoo run manifest (format {manifest.get('format')!r}).")
    return manifest


# ----------------------------------------------------------------------------- trainer

def _make_optimizer(model: nn.Module, name: str, lr: float | None, momentum: float, weight_decay: float):
    if name == "sgd":
        return torch.optim.SGD(model.parameters(), lr=0.05 if lr is None else lr, momentum=momentum,
                               weight_decay=weight_decay)
    if name == "adam":
        return torch.optim.Adam(model.parameters(), lr=1e-3 if lr is None else lr, weight_decay=weight_decay)
    raise InputError(f"unknown optimizer {name!r}; choose 'sgd' or 'adam'.")


def lr_at(base: float, schedule: str, step: int, total: int) -> float:
    """The learning rate of global step ``step`` (0-based) of ``total`` under ``schedule``.

    * ``"constant"``: ``base`` throughout.
    * ``"cosine"``: ``base * (1 + cos(pi * step / total)) / 2`` -- the cosine annealing of Loshchilov &
      Hutter (ICLR 2017, SGDR) without restarts, set per step.
    * ``"steps"``: ``base``, then ``base / 10`` from 50 % and ``base / 100`` from 75 % of the steps --
      the schedule of Wang et al.'s official training code (x0.1 at epochs 80 and 120 of 160).
    """
    if schedule == "constant" or total <= 0:
        return base
    if schedule == "cosine":
        return base * 0.5 * (1.0 + math.cos(math.pi * min(step, total) / total))
    if schedule == "steps":
        return base * (0.1 ** ((step >= 0.5 * total) + (step >= 0.75 * total)))
    raise InputError(f"unknown schedule {schedule!r}; choose one of {', '.join(SCHEDULES)}.")


@dataclass
class _Run:
    """One training run: what :func:`train` sets up, what the epochs advance and what the checkpoints record.

    Holds the data, the optimizer, the generator ``g`` that draws every shuffle and augmentation,
    the records (as in the manifest) and the global step.
    """

    model: nn.Module
    X: torch.Tensor
    y: torch.Tensor | None
    paradigm: str
    epochs: int
    batch_size: int
    lr: float | None
    temperature: float
    augment: Callable | None
    steps_per_epoch: int
    schedule: str
    base_lr: float
    within: list[int]
    config: dict
    evaluator: _Evaluator
    opt: torch.optim.Optimizer
    g: torch.Generator
    out: Path | None
    callback: Callable[[dict, nn.Module], None] | None
    records: list[dict] = field(default_factory=list)
    start_epoch: int = 0
    resumed_from: str | None = None
    step: int = 0
    channels_last: bool = False

    def write_manifest(self, complete: bool) -> None:
        if self.out is not None:
            atomic_write_json(self.out / MANIFEST, {"format": FORMAT, "config": self.config, "epochs": self.epochs,
                                                    "steps_per_epoch": self.steps_per_epoch, "complete": complete,
                                                    "checkpoints": self.records})

    def save_resume(self, epoch: int) -> None:
        if self.out is not None:
            _save_state(self.out / RESUME, {"epoch": epoch, "model": self.model.state_dict(),
                                            "optimizer": self.opt.state_dict(), "generator": self.g.get_state(),
                                            "torch_rng": torch.get_rng_state(), "records": json.dumps(self.records),
                                            "config": json.dumps(self.config)})

    def checkpoint(self, label: str, epoch: int, iteration: int, loss: float | None, full: bool = True) -> dict:
        """Evaluate the model (``full``: with test accuracy / linear probe), append its record and save ``<label>.pt``."""
        rec = {"label": label, "file": f"{label}.pt", "epoch": epoch, "iteration": iteration, "loss": loss}
        rec.update(self.evaluator(self.model, full))
        self.records.append(rec)
        if self.out is not None:
            _save_state(self.out / rec["file"], self.model.state_dict())
        return rec

    def notify(self, rec: dict) -> None:
        if self.callback is not None:
            self.callback(rec, self.model)


def _check_arguments(paradigm: str, epochs: int, batch_size: int, schedule: str = "constant") -> None:
    if paradigm not in PARADIGMS:
        raise InputError(f"unknown paradigm {paradigm!r}; choose one of {', '.join(PARADIGMS)}.")
    if schedule not in SCHEDULES:
        raise InputError(f"unknown schedule {schedule!r}; choose one of {', '.join(SCHEDULES)}.")
    if epochs < 0 or batch_size < 1:
        raise InputError(f"epochs must be >= 0 and batch_size >= 1, got {epochs} and {batch_size}.")


def _run_config(model: nn.Module, paradigm: str, n: int, batch_size: int, optimizer: str, lr: float | None,
                seed: int, temperature: float, momentum: float, weight_decay: float, augment: Callable | None,
                within: list[int], eval_size: int, schedule: str = "constant", epochs: int = 0) -> dict:
    """The configuration written to the manifest; a resumed run must have the same one.

    A decaying schedule depends on the total number of steps, so its epochs are part of the configuration.
    """
    extra = {} if schedule == "constant" else {"schedule": schedule, "schedule_epochs": epochs}
    return {**extra, "paradigm": paradigm, "batch_size": batch_size, "optimizer": optimizer, "lr": lr, "seed": seed,
            "temperature": temperature if paradigm == "simclr" else None, "momentum": momentum,
            "weight_decay": weight_decay, "n_samples": n, "model": type(model).__name__,
            "augment": None if augment is None else repr(augment), "checkpoint_iterations": within,
            "eval_size": eval_size}


def _resume(run: _Run) -> None:
    """Continue from ``out/resume.pt``: model, optimizer, generator and torch RNG states and the records."""
    out = run.out
    try:
        state = torch.load(out / RESUME, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise InputError(f"{out / RESUME} cannot be read ({type(exc).__name__}); delete the run folder "
                         f"or choose another out_dir.") from exc
    old, config = json.loads(state["config"]), run.config
    if old != config:
        diff = {k: (old.get(k), config.get(k)) for k in set(old) | set(config) if old.get(k) != config.get(k)}
        raise InputError(f"{out} holds a run with another configuration (saved vs now: {diff}); "
                         f"use a new out_dir or the same settings to resume.")
    run.model.load_state_dict(state["model"])
    run.opt.load_state_dict(state["optimizer"])
    run.g.set_state(state["generator"])
    torch.set_rng_state(state["torch_rng"])
    run.records = json.loads(state["records"])
    run.start_epoch = int(state["epoch"])
    run.resumed_from = run.records[-1]["label"] if run.records else None
    run.write_manifest(run.start_epoch >= run.epochs)


def _setup_or_resume(run: _Run) -> None:
    """Resume the run saved in ``out`` if there is one, else create ``out``; a fresh run records ``init``."""
    if run.out is not None and (run.out / RESUME).is_file():
        _resume(run)
    elif run.out is not None:
        run.out.mkdir(parents=True, exist_ok=True)
    if run.start_epoch == 0 and not run.records:
        rec = run.checkpoint("init", 0, 0, None)
        run.save_resume(0)
        run.write_manifest(run.epochs == 0)
        run.notify(rec)


def _train_epoch(run: _Run, epoch: int, bar: Any, show: bool) -> tuple[float, int]:
    """One epoch of steps over a fresh permutation; checkpoints ``e0-i<k>`` inside the first epoch.

    Returns the summed training loss (weighted by batch size) and the number of samples seen.
    """
    X, y, batch_size = run.X, run.y, run.batch_size
    perm = torch.randperm(len(X), generator=run.g)
    run_loss, run_n = 0.0, 0
    for b in bar:
        idx = perm[b * batch_size : (b + 1) * batch_size]
        xb, yb = X[idx], (None if y is None else y[idx])
        if run.channels_last and xb.ndim == 4:
            xb = xb.contiguous(memory_format=torch.channels_last)
        if run.schedule != "constant":
            rate = lr_at(run.base_lr, run.schedule, run.step, run.epochs * run.steps_per_epoch)
            for group in run.opt.param_groups:
                group["lr"] = rate
        loss = _loss(run.model, run.paradigm, xb, yb, run.temperature, run.augment, run.g)
        lv = float(loss.detach())
        if not math.isfinite(lv):  # stop before this step's update: the model keeps the last finite weights
            rate = run.opt.param_groups[0]["lr"]
            raise InputError(
                f"the training loss became {lv} at epoch {epoch}, step {b + 1} of {run.steps_per_epoch} (global step "
                f"{run.step + 1}); training stopped before that update, so the model holds the weights of global step "
                f"{run.step}. Likely fixes: lower the learning rate (lr={rate:g} now; try 10x smaller), check the "
                f"inputs (and any augmentation) for NaN/Inf or very large values (standardise them), and check the "
                f"model for log(0) or division by 0.")
        run.opt.zero_grad(set_to_none=True)
        loss.backward()
        run.opt.step()
        run.step += 1
        run_loss += lv * len(idx)
        run_n += len(idx)
        if show:
            bar.set_postfix(loss=f"{run_loss / run_n:.4f}")
        if epoch == 1 and run.step in run.within:
            rec = run.checkpoint(f"e0-i{run.step}", 0, run.step, run_loss / run_n, full=False)
            run.model.train()
            run.write_manifest(False)
            run.notify(rec)
    return run_loss, run_n


def _end_epoch(run: _Run, epoch: int, run_loss: float, run_n: int, show: bool, tqdm: Any) -> None:
    """Checkpoint ``e<epoch>``, the resume state and the manifest; report the epoch."""
    rec = run.checkpoint(f"e{epoch}", epoch, run.step, run_loss / max(run_n, 1))
    run.save_resume(epoch)
    run.write_manifest(epoch == run.epochs)
    if show:
        acc = {k: f"{v:.3f}" for k, v in rec.items() if k.endswith("accuracy")}
        tqdm.write(f"epoch {epoch}/{run.epochs}: loss {rec['loss']:.4f} " +
                   " ".join(f"{k} {v}" for k, v in acc.items()), file=sys.stderr)
    run.notify(rec)


def _train_epochs(run: _Run, progress: bool | None) -> None:
    """The epochs after the last saved one, each followed by its checkpoint."""
    show = progress if progress is not None else sys.stderr.isatty()
    from tqdm.auto import tqdm

    run.model.train()
    run.step = run.start_epoch * run.steps_per_epoch
    for epoch in range(run.start_epoch + 1, run.epochs + 1):
        bar = tqdm(range(run.steps_per_epoch), disable=not show, leave=False,
                   desc=f"{run.paradigm} epoch {epoch}/{run.epochs}", file=sys.stderr)
        run_loss, run_n = _train_epoch(run, epoch, bar, show)
        bar.close()
        _end_epoch(run, epoch, run_loss, run_n, show, tqdm)


def train(
    model: nn.Module,
    data: Any,
    paradigm: str = "supervised",
    epochs: int = 1,
    batch_size: int = 64,
    optimizer: str = "sgd",
    lr: float | None = None,
    seed: int = 0,
    out_dir: str | Path | None = None,
    checkpoint_iterations: Sequence[int] = DEFAULT_CHECKPOINT_ITERATIONS,
    test_data: Any = None,
    progress: bool | None = None,
    *,
    temperature: float = 0.5,
    augment: Callable | None = None,
    momentum: float = 0.9,
    weight_decay: float = 0.0,
    schedule: str = "constant",
    eval_size: int = 1000,
    callback: Callable[[dict, nn.Module], None] | None = None,
) -> TrainResult:
    """Train ``model`` on ``data`` in place and return a :class:`TrainResult` (see the module docstring).

    Parameters
    ----------
    data, test_data : a deepspan ``Dataset``, an ``(X, y)`` pair, or images (N x H x W or N x C x H x W);
        vectors (N x L) for models that flatten their input (the zoo's MLP; a model whose ``needs_image``
        attribute is true refuses them).
    paradigm : ``"supervised"`` (cross-entropy), ``"autoencoder"`` (reconstruction MSE) or
        ``"simclr"`` (NT-Xent with ``temperature``, Chen et al. 2020).
    optimizer, lr, momentum, weight_decay : ``"sgd"`` (default lr 0.05, momentum 0.9) or ``"adam"`` (lr 1e-3).
    schedule : ``"constant"``, ``"cosine"`` or ``"steps"`` (:func:`lr_at`), set per step over all ``epochs``.
    seed : seeds ``torch.manual_seed`` and the generator for shuffling and augmentation.
    out_dir : write checkpoints, ``manifest.json`` and ``resume.pt`` here; an existing run with the
        same configuration is resumed from its last complete epoch.
    checkpoint_iterations : global steps inside the first epoch that get an ``e0-i<k>`` checkpoint.
    augment : ``augment(x, generator)`` applied to training batches (default: none, except
        :class:`~deepspan.zoo.augment.Augment` for SimCLR's two views).
    eval_size : samples of ``data`` used for the evaluation loss and accuracies (0: no evaluation).
    progress : tqdm bars with loss/accuracy (default: only when stderr is a terminal).
    callback : ``callback(record, model)`` after each checkpoint record (also without ``out_dir``).

    Checked before any step (an InputError names the problem and the fix): labels are integer class
    indices -- float labels are accepted only when every value is a whole number (then converted; a
    fractional or non-finite label is refused, never truncated); for ``"supervised"`` the model must
    return N x K scores with every label in 0..K-1 (one forward pass of two samples in eval mode);
    ``lr`` > 0 and finite, ``epochs`` >= 0 (0: only the ``init`` checkpoint), ``batch_size`` >= 1.
    Training stops at the first non-finite loss, before that step's update, naming epoch and step.
    """
    check_model(model)
    _check_settings(epochs, batch_size, lr, momentum, weight_decay, temperature, eval_size)
    _check_arguments(paradigm, epochs, batch_size, schedule)
    X, y = _tensors(data, "data")
    if X.ndim == 2 and getattr(model, "needs_image", False):
        raise InputError(f"{type(model).__name__} needs images (N x C x H x W); data holds vectors "
                         f"{tuple(X.shape)}: train an MLP on vectors.")
    if paradigm == "supervised" and y is None:
        raise InputError("supervised training needs labels; pass a Dataset with y or an (X, y) pair.")
    test = _tensors(test_data, "test_data") if test_data is not None else None
    if paradigm == "simclr" and augment is None:
        from deepspan.zoo.augment import Augment

        augment = Augment()
    n = len(X)
    steps_per_epoch = math.ceil(n / batch_size)
    within = sorted({int(k) for k in checkpoint_iterations if 0 < int(k) < steps_per_epoch})
    config = _run_config(model, paradigm, n, batch_size, optimizer, lr, seed, temperature, momentum, weight_decay,
                         augment, within, eval_size, schedule, epochs)
    evaluator = _Evaluator(paradigm, X, y, test, eval_size, 256, temperature, augment, seed)

    previous_det = torch.are_deterministic_algorithms_enabled()
    previous_warn = torch.is_deterministic_algorithms_warn_only_enabled()
    torch.use_deterministic_algorithms(True, warn_only=True)
    layout = None
    try:
        layout = enter_channels_last(model)  # same numbers to rounding; faster conv nets (bench/zoo_epochs.py)
        torch.manual_seed(seed)
        if paradigm == "supervised":  # after the seed: a lazy module initialised here draws from the seeded RNG
            _check_classes(model, X, {"data": y, "test_data": None if test is None else test[1]})
        g = torch.Generator().manual_seed(seed)
        opt = _make_optimizer(model, optimizer, lr, momentum, weight_decay)
        run = _Run(model=model, X=X, y=y, paradigm=paradigm, epochs=epochs, batch_size=batch_size, lr=lr,
                   temperature=temperature, augment=augment, steps_per_epoch=steps_per_epoch,
                   schedule=schedule, base_lr=float(opt.param_groups[0]["lr"]), within=within,
                   config=config, evaluator=evaluator, opt=opt, g=g,
                   out=Path(out_dir) if out_dir is not None else None, callback=callback,
                   channels_last=layout is not None)
        _setup_or_resume(run)
        _train_epochs(run, progress)
        model.eval()
        return TrainResult(model, run.records, run.out, run.resumed_from)
    finally:
        leave_channels_last(model, layout)
        torch.use_deterministic_algorithms(previous_det, warn_only=previous_warn)
