"""Independent draws of (image, position) rows from a model's layers, gathered in one forward pass.

The subspace match of Wang et al. (NeurIPS 2018, arXiv 1810.11750; official code MeckyWu/subspace-match)
treats a convolutional layer's channels as its neurons and the (image, position) pairs as its samples:
a neuron's activation vector has one entry per image and spatial position. Over a whole test set that
is millions of rows, so the official code compares two networks on 16 draws of 10,000 (image,
position) pairs, drawn without replacement from **all** images x positions, the **same** pairs for
both networks, and averages the similarity over the draws; fully connected layers use every image
once, with no sampling.

:func:`draw_rows` does this for any ``torch.nn.Module`` in one pass over the data:

* draw ``r`` (``r = 0 .. draws-1``) of a layer with P spatial positions takes the flat row indices
  ``image * P + position`` given by :func:`draw_indices` --
  ``np.random.default_rng([seed, r]).choice(N * P, n_rows, replace=False)``, sorted -- so the rows
  depend only on (seed, r, N, P): calling :func:`draw_rows` with the same seed on two networks of
  one architecture gives the same rows, and the draws are independent samples of all rows;
* forward hooks copy only the selected rows of each batch into preallocated arrays (draws x n_rows x
  channels, float32), so memory is that of the draws plus one batch -- never every position of every
  image;
* layers without spatial axes ([N, d] outputs, e.g. fc1/fc2) keep every image once (one "draw" of N
  rows); so does a conv layer with N * P <= n_rows rows in all;
* the model runs in eval mode under ``torch.no_grad`` (its mode and device are restored afterwards),
  and each batch's forward pass stops once every requested layer has fired (from the second batch on).

The result, :class:`RowDraws`, is what :func:`deepspan.layer_match_similarity` takes for Wang et al.'s
protocol (independent draws); its :meth:`RowDraws.layer_hash` covers the sample ids and the drawn
indices, so draws of two networks are compared only when they hold the same rows.
"""

from __future__ import annotations

import hashlib
import math
import numbers
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from deepspan._layout import enter_channels_last, leave_channels_last
from deepspan._version import __version__
from deepspan.errors import InputError
from deepspan.features.extract import (
    _StopForward,
    _as_tensor,
    _forward_failure,
    _input_dtype,
    _model_device,
    _resolve_layers,
    _to_model_dtype,
    check_finite_inputs,
    check_finite_output,
    iterate_batches,
    resolve_device,
    sample_ids_for,
)
from deepspan.features.featureset import hash_sample_ids

__all__ = ["RowDraws", "draw_rows", "draw_indices"]


def _positive_int(value: Any, name: str, fix: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or int(value) < 1:
        raise InputError(f"{name} must be a positive integer, got {value!r}; {fix}.")
    return int(value)


def _seed(seed: Any) -> int:
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or int(seed) < 0:
        raise InputError(f"seed must be a non-negative integer (it seeds numpy's default_rng([seed, r])), "
                         f"got {seed!r}.")
    return int(seed)


def draw_indices(n_images: int, n_positions: int, n_rows: int, draws: int, seed: int = 0) -> np.ndarray:
    """Flat row indices ``image * n_positions + position`` of independent draws: an int64 (draws x n) array.

    Draw ``r`` is ``np.random.default_rng([seed, r]).choice(n_images * n_positions, n_rows,
    replace=False)``, sorted (rows without replacement within a draw; the draws are independent of
    each other). When ``n_images * n_positions <= n_rows`` there is one draw holding every row
    (``arange``): sampling would only repeat the whole set.
    """
    n_images = _positive_int(n_images, "n_images", "pass the number of images in the data")
    n_positions = _positive_int(n_positions, "n_positions", "pass the spatial positions per image (1 for fc layers)")
    n_rows = _positive_int(n_rows, "n_rows", "pass the rows per draw, e.g. n_rows=10_000 (Wang et al.)")
    draws = _positive_int(draws, "draws", "pass the number of independent draws, e.g. draws=16 (Wang et al.)")
    seed = _seed(seed)
    total = n_images * n_positions
    if total <= n_rows:
        return np.arange(total, dtype=np.int64)[None, :]
    out = np.empty((draws, n_rows), dtype=np.int64)
    for r in range(draws):
        out[r] = np.sort(np.random.default_rng([seed, r]).choice(total, size=n_rows, replace=False))
    return out


@dataclass
class RowDraws:
    """Independent row draws of one model's layers on one ordered image set (see the module docstring).

    Attributes
    ----------
    rows : layer -> float32 array (draws x rows x neurons); for a conv layer the neurons are its
        channels and the rows (image, position) pairs; for a layer without spatial axes one draw of
        every image.
    index : layer -> int64 array (draws x rows) of flat indices ``image * P + position`` (P = 1 without
        spatial axes), sorted within each draw.
    n_positions : layer -> spatial positions per image P (1 for layers without spatial axes).
    spatial : layer -> whether the output had spatial axes (a conv layer).
    n_images, n_rows, draws, seed : the data size and the requested draws.
    sample_ids, sample_hash : the images' ids in order and their hash.
    provenance : model, checkpoint label, device, batch size, forward passes, seconds, versions.
    """

    rows: dict[str, np.ndarray]
    index: dict[str, np.ndarray]
    n_positions: dict[str, int]
    spatial: dict[str, bool]
    n_images: int
    n_rows: int
    draws: int
    seed: int
    sample_ids: np.ndarray
    sample_hash: str
    provenance: dict[str, Any] = field(default_factory=dict)

    @property
    def layers(self) -> list[str]:
        return list(self.rows)

    def _check(self, layer: str) -> None:
        if layer not in self.rows:
            raise InputError(f"no layer {layer!r} in these row draws; they hold {', '.join(self.rows)}.")

    def __getitem__(self, layer: str) -> np.ndarray:
        self._check(layer)
        return self.rows[layer]

    def __contains__(self, layer: object) -> bool:
        return layer in self.rows

    def n_draws(self, layer: str) -> int:
        """Draws of ``layer``: ``draws``, or 1 when the layer's rows are all used once."""
        self._check(layer)
        return int(self.rows[layer].shape[0])

    def draw(self, layer: str, r: int) -> np.ndarray:
        """The rows x neurons matrix of draw ``r`` of ``layer``."""
        n = self.n_draws(layer)
        if not 0 <= int(r) < n:
            raise InputError(f"draw {r} out of range: layer {layer!r} has {n} draw(s) (0..{n - 1}).")
        return self.rows[layer][int(r)]

    def is_complete(self, layer: str) -> bool:
        """Whether ``layer``'s single draw holds every row (every image, and every position of a conv layer)."""
        self._check(layer)
        return self.index[layer].shape == (1, self.n_images * self.n_positions[layer])

    def image_position(self, layer: str) -> tuple[np.ndarray, np.ndarray]:
        """(images, positions) of every drawn row of ``layer``: two int64 arrays shaped like ``index[layer]``."""
        self._check(layer)
        return np.divmod(self.index[layer], self.n_positions[layer])

    def layer_hash(self, layer: str) -> str:
        """Hash of the rows of ``layer``: the sample hash, the positions per image and the drawn indices."""
        self._check(layer)
        h = hashlib.sha256(self.sample_hash.encode())
        h.update(f"|P={self.n_positions[layer]}|".encode())
        h.update(np.ascontiguousarray(self.index[layer], dtype=np.int64).tobytes())
        return h.hexdigest()[:16]


def _gather(t: torch.Tensor, n: int, width: int, P: int, img: np.ndarray, pos: np.ndarray) -> np.ndarray:
    """Rows (img[i], pos[i]) of a batch output ``t`` ([n, width, *spatial] or [n, width]) as float32 (rows x width).

    On the CPU through numpy views (fancy indexing there is ~25x faster than torch's for this pattern), in
    either memory layout (contiguous or channels-last) without copying the batch; elsewhere on the device.
    """
    if t.device.type == "cpu" and t.dtype in (torch.float32, torch.float64, torch.float16):
        if t.ndim < 3:
            got = t.reshape(n, width).numpy()[img]
        elif t.is_contiguous():
            got = t.numpy().reshape(n, width, P)[img, :, pos]
        else:  # channels-last (or another layout): channels move last, as a view when the layout allows
            got = t.movedim(1, -1).numpy().reshape(n, P, width)[img, pos]
        return np.asarray(got, dtype=np.float32)
    ti = torch.as_tensor(img, device=t.device)
    if t.ndim < 3:
        got = t.reshape(n, width)[ti]
    else:
        got = t.reshape(n, width, P)[ti, :, torch.as_tensor(pos, device=t.device)]
    return got.to(device="cpu", dtype=torch.float32).numpy()


class _Capture:
    """Per-layer state of :func:`draw_rows`: allocate on the first batch, then copy the selected rows."""

    def __init__(self, name: str, select: Any, n_images: int, n_rows: int, draws: int, seed: int) -> None:
        self.name, self.select = name, select
        self.n_images, self.n_rows, self.draws, self.seed = n_images, n_rows, draws, seed
        self.index: np.ndarray | None = None
        self.out: np.ndarray | None = None
        self.P: int | None = None
        self.spatial = False
        self.width: int | None = None
        self._flat = np.zeros(0, dtype=np.int64)

    def pick(self, out: Any) -> torch.Tensor:
        if isinstance(out, (tuple, list, dict)):
            if self.select is None:
                keys = list(out) if isinstance(out, dict) else list(range(len(out)))
                raise InputError(f"layer {self.name!r} returns a {type(out).__name__} ({keys}); choose the element "
                                 f"with select={{{self.name!r}: <index or key>}}.")
            try:
                out = out[self.select]
            except (IndexError, KeyError, TypeError) as exc:
                raise InputError(f"select={self.select!r} does not index the output of layer {self.name!r} "
                                 f"({exc}).") from exc
        if not isinstance(out, torch.Tensor):
            raise InputError(f"layer {self.name!r} produced {type(out).__name__}, not a tensor; hook a module that "
                             f"returns a tensor.")
        return out

    def _setup(self, t: torch.Tensor) -> None:
        self.spatial = t.ndim >= 3
        self.width = int(t.shape[1]) if t.ndim >= 2 else 1
        self.P = int(math.prod(t.shape[2:])) if self.spatial else 1
        if self.P < 1 or self.width < 1:
            raise InputError(f"layer {self.name!r} outputs shape {tuple(t.shape)}, which has no rows or no neurons.")
        if self.spatial:
            self.index = draw_indices(self.n_images, self.P, self.n_rows, self.draws, self.seed)
        else:  # fully connected: every image once, no sampling (Wang et al.'s fc layers)
            self.index = np.arange(self.n_images, dtype=np.int64)[None, :]
        self.out = np.empty(self.index.shape + (self.width,), dtype=np.float32)
        self._flat = self.index.reshape(-1)

    def capture(self, out: Any, start: int) -> None:
        t = self.pick(out).detach()
        n = int(t.shape[0])
        if self.index is None:
            self._setup(t)
        width = int(t.shape[1]) if t.ndim >= 2 else 1
        P = int(math.prod(t.shape[2:])) if t.ndim >= 3 else 1
        if (t.ndim >= 3) != self.spatial or width != self.width or P != self.P:
            raise InputError(f"layer {self.name!r} changed its output shape between batches (now {tuple(t.shape)}); "
                             f"row draws need one shape for all images (resize the inputs to one size).")
        if start + n > self.n_images:
            raise InputError(f"the data yielded more than the {self.n_images} samples it announced; pass data whose "
                             f"length is its number of samples.")
        # each draw's indices are sorted: this batch's rows are one slice per draw
        m = self.index.shape[1]
        bounds = [np.searchsorted(row, [start * P, (start + n) * P]) for row in self.index]
        slices = [(r * m + lo, r * m + hi) for r, (lo, hi) in enumerate(bounds) if hi > lo]
        if not slices:
            return
        local = np.concatenate([self._flat[a:b] for a, b in slices]) - start * P  # all draws at once
        got = _gather(t, n, self.width, P, local // P, local % P)
        flat_out = self.out.reshape(-1, self.width)
        k = 0
        for a, b in slices:
            flat_out[a:b] = got[k : k + b - a]
            k += b - a


def draw_rows(model: nn.Module, data: Any, layers: Any, n_rows: int = 10_000, draws: int = 16, seed: int = 0,
              batch_size: int = 256, *, select: Any = None, device: str | torch.device | None = "cpu",
              ids: Any = None, progress: bool | None = None, checkpoint: str | None = None,
              channels_last: bool = False) -> RowDraws:
    """Independent row draws of ``model``'s ``layers`` on ``data`` in one forward pass (Wang et al. 2018).

    For a layer whose output has spatial axes ([N, C, H, W], ...): neurons = the C channels,
    samples = (image, position) pairs; draw ``r`` takes the ``n_rows`` pairs of
    :func:`draw_indices` (``default_rng([seed, r])`` over all N x P pairs, without replacement), the
    same for every model with the same N, P and seed. Layers without spatial axes keep all N images
    once. Wang et al.'s protocol: ``n_rows=10_000``, ``draws=16``, every test image.

    Parameters
    ----------
    model : any ``torch.nn.Module``; run in eval mode under no_grad (mode and device restored).
    data : a deepspan ``data.Dataset``, an array or tensor (N x ...), a map-style torch Dataset or a
        DataLoader with ``shuffle=False`` over a sized dataset -- N must be known before the pass.
    layers : one dotted module name or a list (``deepspan.list_layers`` shows them).
    n_rows, draws, seed : rows per draw, number of draws, and the seed of the draws.
    batch_size : images per forward pass.
    select : index/key of the element to take from modules returning tuples/dicts (one for all
        layers or a dict per layer).
    device : ``"cpu"`` (default), ``"cuda"`` or ``"auto"``.
    ids : sample ids (default: the dataset's ``ids``, else 0..N-1).
    checkpoint : a label recorded in the provenance.
    channels_last : run 4-D (image) inputs and the model's 4-D parameters in channels-last memory format
        for the pass (often faster for convolutions on CPUs); the parameters' layout is restored afterwards.
        The values are those of the default layout up to float rounding.

    Returns a :class:`RowDraws`; ``rows[layer]`` is (draws x n_rows x channels) float32.
    """
    n_rows = _positive_int(n_rows, "n_rows", "pass the rows per draw, e.g. n_rows=10_000 (Wang et al.)")
    draws = _positive_int(draws, "draws", "pass the number of independent draws, e.g. draws=16 (Wang et al.)")
    batch_size = _positive_int(batch_size, "batch_size", "pass the images per forward pass, e.g. batch_size=256")
    seed = _seed(seed)
    if not isinstance(model, nn.Module):
        raise InputError(f"model must be a torch.nn.Module, got {type(model).__name__}.")
    mods = _resolve_layers(model, layers)
    sel = select if isinstance(select, dict) else {name: select for name in mods}
    for name in sel:
        if name not in mods:
            raise InputError(f"select names layer {name!r}, which was not requested (requested: {list(mods)}).")
    batches, known_ids, n_images = iterate_batches(data, batch_size, ids)
    if n_images is None:
        raise InputError(f"draw_rows needs the number of samples before the pass (the draws are over all of them), "
                         f"but {type(data).__name__} has no length; pass an array, a tensor, a deepspan Dataset, or "
                         f"a DataLoader over a sized dataset.")
    if n_images < 1:
        raise InputError("the data holds no samples; pass at least one image.")
    state = {name: _Capture(name, sel.get(name), n_images, n_rows, draws, seed) for name in mods}
    dev = resolve_device(device)
    home = _model_device(model)
    was_training = model.training
    fired: dict[str, bool] = {}
    start = 0
    passes = 0

    def make_hook(name: str):
        def hook(_m, _inp, out):
            if fired.get(name):
                raise InputError(f"layer {name!r} ran twice in one forward pass (a shared or reused module); its rows "
                                 f"are ambiguous. Hook a module that runs once.")
            fired[name] = True
            check_finite_output(name, out, start)
            state[name].capture(out, start)
            if start > 0 and len(fired) == len(state):
                raise _StopForward

        return hook

    show = progress if progress is not None else sys.stderr.isatty()
    handles = []
    t0 = time.time()
    layout = None
    in_dtype, takes_ids = _input_dtype(model)
    try:
        model.to(dev)
        if channels_last:
            layout = enter_channels_last(model)
        model.eval()
        for name, m in mods.items():
            handles.append(m.register_forward_hook(make_hook(name)))
        from tqdm.auto import tqdm

        with torch.no_grad():
            for x, _y in tqdm(batches, total=-(-n_images // batch_size), disable=not show, desc="draw rows",
                              leave=False):
                x = _to_model_dtype(_as_tensor(x), in_dtype, takes_ids, model)
                n = int(x.shape[0])
                if n == 0:
                    continue
                check_finite_inputs(x, start)
                fired.clear()
                passes += 1
                x = x.to(dev)
                if channels_last and x.ndim == 4:
                    x = x.contiguous(memory_format=torch.channels_last)
                try:
                    model(x)
                except _StopForward:
                    pass
                except RuntimeError as exc:
                    err = _forward_failure(model, x, exc, handles)
                    if err is None:
                        raise
                    raise err from exc
                missing = [name for name in state if not fired.get(name)]
                if missing:
                    raise InputError(f"layer(s) {', '.join(map(repr, missing))} never fired during the forward pass; "
                                     f"they are not used by {type(model).__name__}.forward. Pick layers that run.")
                start += n
    finally:
        for h in handles:
            h.remove()
        leave_channels_last(model, layout)
        if home is not None:
            model.to(home)
        model.train(was_training)
    if start != n_images:
        raise InputError(f"the data yielded {start} samples but announced {n_images}; pass data whose length is its "
                         f"number of samples.")
    sample_ids = sample_ids_for(known_ids, n_images)
    provenance = {"model": type(model).__name__, "checkpoint": checkpoint, "device": str(dev),
                  "batch_size": batch_size, "channels_last": bool(channels_last), "forward_passes": passes, "seconds": round(time.time() - t0, 3),
                  "deepspan_version": __version__, "torch_version": torch.__version__}
    return RowDraws(rows={k: s.out for k, s in state.items()}, index={k: s.index for k, s in state.items()},
                    n_positions={k: int(s.P) for k, s in state.items()},
                    spatial={k: bool(s.spatial) for k, s in state.items()}, n_images=int(n_images), n_rows=n_rows,
                    draws=draws, seed=seed, sample_ids=sample_ids, sample_hash=hash_sample_ids(sample_ids),
                    provenance=provenance)
