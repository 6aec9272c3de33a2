"""Track P-vector measures over checkpoints, post hoc or live during training.

``Tracker(model, probe, layers)`` records at every ``step(epoch=..., iteration=...)``,
for each layer, on the fixed probe set (Liu et al. 2022's protocol):

* ``sigma_1 .. sigma_k`` and ``energy_r1 .. energy_rk`` (r_k = sum_{i<=k} sigma_i^2 / ||F||_F^2),
  ``gap`` (sigma_2 / sigma_1);
* ``angle_to_data``: the angle to the P-vector of the flattened probe inputs;
* ``angle_to_<name>``: the angle to each reference P-vector given (another model, ...);
* ``angle_to_previous``: the angle to the previous step's P-vector of the same layer;
* after :meth:`Tracker.finalize`, ``angle_to_final``: the angle to the last checkpoint;
* :meth:`Tracker.angles_to` gives the angle of every recorded checkpoint to any vector given later
  (e.g. another run's final P-vector), so "angles over a checkpoint series" live here only;
* with ``spectrum_layer`` (penultimate features; the probe must carry labels), the
  feature-map spectrum of Nam et al. (2024) -- ``rho_1 .. rho_2C``, ``pi_star_C``,
  ``pi_C`` (with ``output_layer``, the logits), ``d_eff``, ``eigengap_C``,
  ``k90_pi_star`` and ``regime`` (0 = MF, 1 = intermediate, 2 = EF) -- and neural
  collapse (``nc1``, ``nc2_*``, ``nc3`` with ``classifier`` = the last Linear's name,
  ``nc4`` with ``output_layer``), recorded on the spectrum layer.

The P-vector u of every (checkpoint, layer) is kept (in memory and, with
``out_dir``, as ``.npy``), so any two checkpoints can be compared later
(:meth:`Tracker.angle`). ``center="both"`` records every quantity for the uncentered and the
column-centered features from one product per layer (:func:`deepspan.top_singular_both`), and
``n_vectors`` keeps the top left singular vectors u_1 .. u_n (:meth:`Tracker.vectors`). Every row
carries ``centered``. Results are a tidy table -- one row per checkpoint x
layer x quantity -- rewritten atomically as ``rows.csv`` and ``rows.json``
(with provenance) after every step. The table is the commit marker: a
Tracker created on an ``out_dir`` that already holds a run (same probe, layers,
settings and reference vectors) resumes it, and ``step`` skips checkpoints already recorded, so a
killed run restarts from the last complete checkpoint.

:func:`track_checkpoints` also records which weights each label stood for
(``checkpoint_ids`` in ``rows.json``: the SHA-256 of each checkpoint file or
in-memory state dict). On an ``out_dir`` that already holds a run, the stored
checkpoint list must be a prefix of the new one (same labels and weights, in
order): the same list resumes, a list that extends it resumes and appends the
new checkpoints; anything else (other files, other order, fewer checkpoints,
same labels with other weights) raises InputError before anything is written,
so two series are never mixed (:func:`check_checkpoint_list`).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from deepspan._io import atomic_save_npy, atomic_write_csv, atomic_write_json
from deepspan._version import __version__
from deepspan.errors import InputError, SampleMismatchError
from deepspan.features.extract import extract, iterate_batches
from deepspan.features.featureset import hash_sample_ids
from deepspan.linalg.angles import unit_angle
from deepspan.linalg.svd import top_singular, top_singular_both
from deepspan.measures.pvector import PVector, pvector

__all__ = ["Tracker", "track_checkpoints", "check_checkpoint_list", "ROW_FIELDS"]

ROW_FIELDS = ("checkpoint", "epoch", "iteration", "layer", "centered", "quantity", "value")


def _closest(name: str, known: list[str]) -> str:
    """`` Did you mean ...?`` with the closest known names (difflib, as for unknown layers elsewhere), or ''."""
    import difflib

    close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
    return f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""


def _probe_inputs(probe: Any, batch_size: int) -> tuple[np.ndarray, np.ndarray, int]:
    """Flattened probe inputs (for the data P-vector), sample ids and N, in extraction order."""
    batches, ids, _ = iterate_batches(probe, batch_size)
    parts = [np.asarray(x.detach().cpu() if hasattr(x, "detach") else x, dtype=np.float64).reshape(len(x), -1)
             for x, _ in batches]
    if not parts:
        raise InputError("the probe set is empty.")
    X = np.concatenate(parts)
    ids = np.arange(len(X)).astype(str) if ids is None else np.asarray(ids)
    return X, ids, len(X)


class Tracker:
    """P-vector measures of ``layers`` on a fixed ``probe`` set, one ``step`` per checkpoint.

    Parameters
    ----------
    model : the network (live use) -- or pass ``model=`` to each ``step`` (post hoc).
    probe : the fixed, ordered probe set (anything ``deepspan.extract`` accepts).
    layers : module names; ``policy``/``select`` as in :func:`deepspan.extract`.
    k : how many singular values / energy ratios to record.
    center : center features before the SVD (recorded): False, True, or ``"both"`` (both readings
        from one product per layer; rows carry ``centered``).
    n_vectors : how many left singular vectors to keep per checkpoint, layer and centering.
    references : name -> P-vector (``PVector`` or a length-N vector) to measure angles to.
    data_pvector : also record the angle to the probe inputs' P-vector.
    out_dir : where to write ``rows.csv``, ``rows.json`` and the kept u vectors; resumes a run there.
    bootstrap : ``None`` (default) or a number B of bootstrap resamples: each step also records
        ``angle_to_data_ci_low`` / ``angle_to_data_ci_high``, the ``ci`` percentile interval of the angle to the
        data P-vector (:func:`deepspan.significance`). Cost: 2 B extra P-vectors per layer and step (of the
        resampled N x d features and N x D probe inputs), i.e. about B times the step's own SVD work; the
        probe inputs stay in memory (N x D float64).
    distributed : ``None`` (default): distributed when torch.distributed is initialised with more than one
        process (in ``group``, default the whole job); ``False``: this process alone (e.g. a Tracker used
        on rank 0 only); ``True``: as ``None``.

    Inside a torch.distributed job (DDP training under ``torchrun``, Lightning's DDP strategy) the same code
    works unchanged, on every rank: pass the whole probe on each rank (the same one) and call ``step`` on
    every rank. Each step, each rank extracts only its share of the probe (whole batches, in order:
    :func:`deepspan.extract` with ``distributed=True``), the shares are gathered on rank 0, which computes
    exactly what a single process computes and alone writes ``out_dir``; the rows and vectors are broadcast,
    so every rank returns and holds the same table (``series``, ``angle``, ... work everywhere). Rank 0's
    table decides which labels are already recorded. Memory: each rank holds its share's features during
    a step, rank 0 all N probe rows (as a single process does). A failure on any rank is raised on every
    rank. A ``DistributedDataParallel``-wrapped model is unwrapped for the forward passes; layer names may
    keep its ``module.`` prefix.
    """

    def __init__(
        self,
        model: nn.Module | None,
        probe: Any,
        layers: Any,
        *,
        policy: Any = None,
        select: Any = None,
        k: int = 5,
        center: bool | str = False,
        n_vectors: int = 1,
        references: dict[str, Any] | None = None,
        data_pvector: bool = True,
        out_dir: str | Path | None = None,
        batch_size: int = 256,
        device: str = "cpu",
        positions_per_image: int | None = None,
        seed: int = 0,
        spectrum_layer: str | None = None,
        output_layer: str | None = None,
        classifier: str | None = None,
        distributed: bool | None = None,
        group: Any = None,
        bootstrap: int | None = None,
        ci: float = 0.95,
    ) -> None:
        if distributed not in (None, True, False):
            raise InputError(f"distributed must be None (follow torch.distributed), True or False, got {distributed!r}.")
        self.distributed, self.group = distributed, group
        self.model = model
        self.probe = probe
        self.layers = [layers] if isinstance(layers, str) else list(layers)
        self.policy, self.select = policy, select
        if center == "both":
            self.centers: tuple[bool, ...] = (False, True)
        elif isinstance(center, (bool, np.bool_)):
            self.centers = (bool(center),)
        else:
            raise InputError(f"center must be True, False or 'both', got {center!r}.")
        self.center = self.centers[0]
        if isinstance(n_vectors, bool) or not isinstance(n_vectors, (int, np.integer)) or n_vectors < 1:
            raise InputError(f"n_vectors must be a positive integer, got {n_vectors!r}.")
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise InputError(f"k (the number of singular values to record) must be a positive integer, got {k!r}.")
        self.k, self.n_vectors = int(k), int(n_vectors)
        self.batch_size, self.device = batch_size, device
        self.positions_per_image, self.seed = positions_per_image, seed
        if (output_layer or classifier) and not spectrum_layer:
            raise InputError("output_layer/classifier need spectrum_layer (the penultimate features) as well.")
        self.spectrum_layer, self.output_layer, self.classifier = spectrum_layer, output_layer, classifier
        if bootstrap is not None:
            from deepspan.measures.significance import check_settings

            check_settings(None, bootstrap, ci, 0)
            if not data_pvector:
                raise InputError("bootstrap gives intervals for angle_to_data, so it needs data_pvector=True.")
        self.bootstrap, self.ci = bootstrap, float(ci)
        X, ids, n = _probe_inputs(probe, batch_size)
        self._probe_X = X if bootstrap is not None else None
        self.sample_ids = ids
        self.sample_hash = hash_sample_ids(ids)
        self.n_samples = n
        self.references: dict[str, np.ndarray] = {}  # name -> vector (the data one: per centering)
        self.data_references: dict[bool, np.ndarray] = {}
        if data_pvector:
            self.data_references = {c: pvector(X, center=c, n_values=2).u for c in self.centers}
            self.references["data"] = self.data_references[self.center]
        for name, ref in (references or {}).items():
            self.references[name] = self._reference_vector(name, ref)
        self.rows: list[dict[str, Any]] = []
        self.u: dict[tuple[str, str], np.ndarray] = {}  # (label, layer) -> u_1 of the first centering
        self.U: dict[tuple[str, str, bool], np.ndarray] = {}  # (label, layer, centered) -> N x n_vectors
        self.order: list[str] = []
        self.meta: dict[str, tuple[int | None, int | None]] = {}
        #: label -> {"sha256": digest, "source": where} of checkpoints tracked by track_checkpoints
        self.checkpoint_ids: dict[str, dict[str, Any]] = {}
        self.out_dir = None if out_dir is None else Path(out_dir)
        if self.out_dir is not None and (self.out_dir / "rows.json").exists():
            self._resume()

    # ------------------------------------------------------------------ setup
    def _reference_vector(self, name: str, ref: Any) -> np.ndarray:
        ref_hash = getattr(ref, "sample_hash", None)
        if ref_hash is not None and ref_hash != self.sample_hash:
            raise SampleMismatchError(
                f"reference {name!r} was computed on samples with hash {ref_hash}, the probe has {self.sample_hash}; "
                f"compute it on the same probe set."
            )
        u = np.asarray(getattr(ref, "u", ref), dtype=np.float64)
        if u.ndim != 1 or len(u) != self.n_samples:
            raise SampleMismatchError(
                f"reference {name!r} has {u.shape} entries but the probe has {self.n_samples} samples; "
                f"references must be P-vectors on the probe samples."
            )
        return u / np.linalg.norm(u)

    def _config(self) -> dict[str, Any]:
        return {
            "sample_hash": self.sample_hash,
            "layers": self.layers,
            "policy": self.policy if not isinstance(self.policy, dict) else dict(self.policy),
            "center": self.center if len(self.centers) == 1 else "both",
            "k": self.k,
            "n_vectors": self.n_vectors,
            "references": sorted(self.references),
            "positions_per_image": self.positions_per_image,
            "seed": self.seed,
            "spectrum_layer": self.spectrum_layer,
            "output_layer": self.output_layer,
            "classifier": self.classifier,
            **({"bootstrap": self.bootstrap, "ci": self.ci} if self.bootstrap is not None else {}),
        }

    def _resume(self) -> None:
        saved = json.loads((self.out_dir / "rows.json").read_text())
        if saved.get("config") != json.loads(json.dumps(self._config(), default=str)):
            raise InputError(
                f"{self.out_dir} holds a tracking run with different settings ({saved.get('config')}); "
                f"use another out_dir or the same probe, layers and settings to resume it."
            )
        for name, u in self._reference_items():
            stored = np.load(self.out_dir / "refs" / self._u_name("ref", name))
            if not np.allclose(stored, u, rtol=0, atol=1e-8):
                raise InputError(
                    f"{self.out_dir} was tracked against a different reference {name!r} (the stored vector differs); "
                    f"use another out_dir or the same reference to resume it."
                )
        self.rows = saved["rows"]
        self.checkpoint_ids = dict(saved.get("checkpoint_ids") or {})
        for label, (epoch, iteration) in saved["checkpoints"]:
            self.order.append(label)
            self.meta[label] = (epoch, iteration)
            for layer in self.layers:
                self.u[(label, layer)] = np.load(self.out_dir / "u" / self._u_name(label, layer))
                if self._keeps_blocks:
                    for c in self.centers:
                        self.U[(label, layer, c)] = np.load(self.out_dir / "U" / self._u_name(label, layer, c))
                else:
                    self.U[(label, layer, self.center)] = self.u[(label, layer)][:, None]

    @property
    def _keeps_blocks(self) -> bool:
        """Whether more than u_1 of one centering is kept (then ``U/`` holds N x n_vectors blocks)."""
        return self.n_vectors > 1 or len(self.centers) > 1

    def _reference_items(self) -> list[tuple[str, np.ndarray]]:
        """Reference vectors as saved: the data P-vector once per centering, the others once."""
        items = [(n, u) for n, u in self.references.items() if not (n == "data" and self.data_references)]
        items += [("data" if c == self.center else "data_centered" if c else "data_uncentered", u)
                  for c, u in self.data_references.items()]
        return items

    @staticmethod
    def _u_name(label: str, layer: str, center: bool | None = None) -> str:
        tag = "" if center is None else ("__centered" if center else "__uncentered")
        safe = "".join(c if c.isalnum() or c in "._-" else "_" for c in f"{label}__{layer}{tag}")
        return safe + ".npy"

    # ------------------------------------------------------------------- steps
    def __contains__(self, label: str) -> bool:
        return label in self.meta

    def step(self, epoch: int | None = None, iteration: int | None = None, label: str | None = None,
             model: nn.Module | None = None) -> list[dict[str, Any]]:
        """Record the measures of the current model (or ``model``); returns the rows added.

        ``label`` defaults to ``e<epoch>`` or ``e<epoch>-i<iteration>``. A label
        already recorded (a resumed run) is skipped and returns no rows.

        Inside a torch.distributed job (see the class docstring) this is a collective: call it on every
        rank, with the same label; each rank extracts its share of the probe, rank 0 computes and writes,
        and every rank returns (and keeps) the same rows.
        """
        model = model if model is not None else self.model
        if model is None:
            raise InputError("no model to track: pass model= to Tracker(...) or to step(...).")
        if label is None:
            if epoch is None and iteration is None:
                label = f"step{len(self.order)}"
            else:
                label = "-".join(p for p in (f"e{epoch}" if epoch is not None else "",
                                             f"i{iteration}" if iteration is not None else "") if p)
        rank, world = self._rank_and_world()
        if world == 1:
            if label in self.meta:
                return []
            fs = extract(model, self.probe, self._wanted(), self.policy, **self._extract_kwargs(label))
            added, new_U = self._measure(label, epoch, iteration, model, fs)
            self._commit(label, epoch, iteration, added, new_U, write=True)
            return added
        return self._step_distributed(label, epoch, iteration, model, rank, world)

    def _rank_and_world(self) -> tuple[int, int]:
        """(rank, world) of the job this Tracker runs in: (0, 1) unless it is distributed (class docstring)."""
        if self.distributed is False:
            return 0, 1
        from deepspan.distributed import rank_and_world

        return rank_and_world(self.group)

    def _wanted(self) -> list[str]:
        return list(dict.fromkeys(self.layers + [x for x in (self.spectrum_layer, self.output_layer) if x]))

    def _extract_kwargs(self, label: str) -> dict[str, Any]:
        return dict(select=self.select, batch_size=self.batch_size, device=self.device,
                    positions_per_image=self.positions_per_image, seed=self.seed, checkpoint=label, progress=False)

    def _step_distributed(self, label: str, epoch: int | None, iteration: int | None, model: nn.Module,
                          rank: int, world: int) -> list[dict[str, Any]]:
        """One step in a job of ``world`` ranks: shares extracted, gathered on rank 0, measured there, broadcast."""
        from deepspan.distributed._comm import on_first_rank
        from deepspan.features.extract import gather_featureset

        what = f"Tracker.step({label!r})"
        if on_first_rank(lambda: label in self.meta, self.group, rank, world, what):  # rank 0's table decides
            return []
        local = extract(model, self.probe, self._wanted(), self.policy, distributed=True, group=self.group,
                        **self._extract_kwargs(label))
        full = gather_featureset(local, group=self.group)  # rank 0 only

        def measure_and_write() -> tuple[list[dict[str, Any]], dict[tuple[str, bool], np.ndarray]]:
            added, new_U = self._measure(label, epoch, iteration, model, full)
            self._commit(label, epoch, iteration, added, new_U, write=True)
            return added, new_U

        added, new_U = on_first_rank(measure_and_write, self.group, rank, world, what)
        if rank != 0:
            self._commit(label, epoch, iteration, added, new_U, write=False)
        return added

    def _measure(self, label: str, epoch: int | None, iteration: int | None, model: nn.Module,
                 fs: Any) -> tuple[list[dict[str, Any]], dict[tuple[str, bool], np.ndarray]]:
        """The rows of one checkpoint from its probe features, and the kept vectors per (layer, centering)."""
        if fs.sample_hash != self.sample_hash:
            raise SampleMismatchError("the probe yielded different samples than at construction; keep the probe fixed.")
        prev = self.order[-1] if self.order else None
        added: list[dict[str, Any]] = []

        def row(layer: str, center: bool, quantity: str, value: float) -> None:
            added.append({"checkpoint": label, "epoch": epoch, "iteration": iteration, "layer": layer,
                          "centered": center, "quantity": quantity, "value": float(value)})

        new_U: dict[tuple[str, bool], np.ndarray] = {}
        for layer in self.layers:
            feats = fs[layer]
            if len(feats) != self.n_samples:
                raise InputError(
                    f"layer {layer!r} has {len(feats)} rows for {self.n_samples} probe samples (channels policy?); "
                    f"the Tracker compares P-vectors of samples: use policy 'flatten' or 'gap' there."
                )
            for center, (U, sv, energy, gap) in self._spectra(feats).items():
                new_U[(layer, center)] = U
                for i, s in enumerate(sv, 1):
                    row(layer, center, f"sigma_{i}", s)
                for i, r in enumerate(energy, 1):
                    row(layer, center, f"energy_r{i}", r)
                row(layer, center, "gap", gap)
                for name, ref in self.references.items():
                    if name == "data" and self.data_references:
                        ref = self.data_references[center]
                    row(layer, center, f"angle_to_{name}", unit_angle(U[:, 0], ref))
                if self.bootstrap is not None:
                    low, high = self._angle_to_data_interval(feats, center, len(self.order))
                    row(layer, center, "angle_to_data_ci_low", low)
                    row(layer, center, "angle_to_data_ci_high", high)
                if prev is not None:
                    row(layer, center, "angle_to_previous", unit_angle(U[:, 0], self.U[(prev, layer, center)][:, 0]))
        if self.spectrum_layer is not None:
            for quantity, value in self._spectrum_rows(model, fs):
                row(self.spectrum_layer, self.center, quantity, value)
        return added, new_U

    def _commit(self, label: str, epoch: int | None, iteration: int | None, added: list[dict[str, Any]],
                new_U: dict[tuple[str, bool], np.ndarray], write: bool) -> None:
        """Keep one checkpoint's rows and vectors; with ``write`` (and ``out_dir``) write them, the table last."""
        if write and self.out_dir is not None:  # vectors first; the table below commits the step
            if not self.order:
                for name, u in self._reference_items():
                    atomic_save_npy(self.out_dir / "refs" / self._u_name("ref", name), u)
            for (layer, center), U in new_U.items():
                if center == self.center:
                    atomic_save_npy(self.out_dir / "u" / self._u_name(label, layer), U[:, 0])
                if self._keeps_blocks:
                    atomic_save_npy(self.out_dir / "U" / self._u_name(label, layer, center), U)
        for (layer, center), U in new_U.items():
            self.U[(label, layer, center)] = U
            if center == self.center:
                self.u[(label, layer)] = U[:, 0]
        self.order.append(label)
        self.meta[label] = (epoch, iteration)
        self.rows.extend(added)
        if write:
            self._write()

    def _angle_to_data_interval(self, feats: Any, center: bool, step: int) -> tuple[float, float]:
        """The percentile bootstrap interval of angle_to_data: ``bootstrap`` resamples of the probe samples, the
        layer's features and the probe inputs resampled jointly, both P-vectors recomputed
        (:func:`deepspan.significance` of ``pvector_angle``; seeded by the step's position, so a resumed run
        gives the same intervals)."""
        from deepspan.measures.compare import MEASURES
        from deepspan.measures.significance import significance

        spec = MEASURES["pvector_angle"].with_params(center=bool(center))
        sig = significance(feats, self._probe_X, spec, n_perm=None, n_boot=self.bootstrap, ci=self.ci,
                           seed=int(self.seed) * 1_000_003 + step)
        return float(sig.ci_low), float(sig.ci_high)

    def _spectra(self, feats: Any) -> dict[bool, tuple[np.ndarray, np.ndarray, np.ndarray, float]]:
        """Per centering: (U: N x n_vectors, top-k singular values, cumulative energy r_k, sigma_2/sigma_1)."""
        n_values = min(self.k, *feats.shape)
        if len(self.centers) == 1 and self.n_vectors == 1:  # the P-vector route (warns when degenerate)
            p: PVector = pvector(feats, center=self.center, n_values=n_values)
            return {self.center: (p.u[:, None], p.singular_values, p.energy, p.gap)}
        n_vec = min(self.n_vectors, *feats.shape)
        if len(self.centers) == 2:
            pair = dict(zip((False, True), top_singular_both(feats, n_vec, n_values=max(n_values, n_vec))))
        else:
            pair = {self.center: top_singular(feats, n_vec, center=self.center, n_values=max(n_values, n_vec))}
        out = {}
        for c, t in pair.items():
            s = t.s[:n_values]
            energy = np.cumsum(s**2) / t.total_energy
            gap = float(s[1] / s[0]) if len(s) > 1 and s[0] > 0 else 0.0
            out[c] = (t.U, s, energy, gap)
        return out

    def _spectrum_rows(self, model: nn.Module, fs: Any) -> list[tuple[str, float]]:
        """Feature-map spectrum (Nam et al. 2024) and neural collapse (Papyan et al. 2020) at this step."""
        from deepspan.measures.collapse import neural_collapse
        from deepspan.measures.spectrum import REGIMES, feature_spectrum

        from deepspan.features.extract import _unwrap_parallel

        (model,) = _unwrap_parallel(model)
        if fs.labels is None:
            raise InputError("spectrum tracking needs labels: use a probe that carries them (a deepspan Dataset, "
                             "or a DataLoader yielding (x, y)).")
        Phi = fs[self.spectrum_layer]
        out = fs[self.output_layer] if self.output_layer else None
        sp = feature_spectrum(Phi, fs.labels, out, center=self.center)
        C = sp.n_targets
        rows = [(f"rho_{i}", float(r)) for i, r in enumerate(sp.rho[: 2 * C], 1)]
        rows += [("pi_star_C", sp.regime_numbers["pi_star_C"]), ("d_eff", sp.d_eff),
                 ("regime", float(REGIMES.index(sp.regime)))]
        if np.isfinite(sp.regime_numbers["gap_ratio_C"]):  # infinite when rank <= C: no row (JSON has no inf)
            rows.append(("eigengap_C", sp.regime_numbers["gap_ratio_C"]))
        if sp.k_for["90"] is not None:
            rows.append(("k90_pi_star", float(sp.k_for["90"])))
        if sp.pi is not None:
            rows.append(("pi_C", sp.regime_numbers["pi_C"]))
        W = None
        if self.classifier:
            modules = dict(model.named_modules())
            W = modules.get(self.classifier, modules.get(self.classifier.removeprefix("module.")))
            if W is None:
                raise InputError(f"classifier {self.classifier!r} is not a module of {type(model).__name__}.")
            W = W.weight.detach().cpu().numpy()
        nc = neural_collapse(Phi, fs.labels, W=W, predictions=out)
        rows += [("nc1", nc.nc1), ("nc2_equinorm", nc.nc2_equinorm), ("nc2_equiangle", nc.nc2_equiangle),
                 ("nc2_maxangle", nc.nc2_maxangle)]
        if nc.nc3 is not None:
            rows.append(("nc3", nc.nc3))
        if nc.nc4 is not None:
            rows.append(("nc4", nc.nc4))
        return rows

    def _center_arg(self, center: bool | None) -> bool:
        if center is None:
            return self.center
        if bool(center) not in self.centers:
            raise InputError(f"this Tracker recorded centered={self.centers[0]} only; pass center='both' to record both.")
        return bool(center)

    def vectors(self, label: str, layer: str, center: bool | None = None) -> np.ndarray:
        """The kept left singular vectors (N x n_vectors: u_1, u_2, ...) of ``layer`` at checkpoint ``label``."""
        center = self._center_arg(center)
        if (label, layer, center) not in self.U:
            raise InputError(f"no vectors recorded for checkpoint {label!r}, layer {layer!r}; recorded checkpoints: "
                             f"{self.order}, layers: {self.layers}.")
        return self.U[(label, layer, center)]

    def pvector_u(self, label: str, layer: str, center: bool | None = None) -> np.ndarray:
        """The P-vector u_1 of ``layer`` at checkpoint ``label``."""
        return self.vectors(label, layer, center)[:, 0]

    def values(self, label: str, layer: str, quantity: str, center: bool | None = None) -> float:
        """One recorded number (e.g. ``sigma_2``, ``energy_r3``, ``angle_to_data``) of one checkpoint and layer."""
        center = self._center_arg(center)
        for r in self.rows:
            if r["checkpoint"] == label and r["layer"] == layer and r["quantity"] == quantity \
                    and r.get("centered", self.center) == center:
                return r["value"]
        raise InputError(f"no {quantity!r} recorded for checkpoint {label!r}, layer {layer!r}, centered={center}; "
                         f"recorded quantities: {sorted({r['quantity'] for r in self.rows})}.")

    def singular_values(self, label: str, layer: str, center: bool | None = None) -> np.ndarray:
        """The recorded top singular values sigma_1 .. sigma_k of ``layer`` at checkpoint ``label``."""
        center = self._center_arg(center)
        by = {r["quantity"]: r["value"] for r in self.rows if r["checkpoint"] == label and r["layer"] == layer
              and r.get("centered", self.center) == center and r["quantity"].startswith("sigma_")}
        if not by:
            raise InputError(f"no singular values recorded for checkpoint {label!r}, layer {layer!r}.")
        return np.array([by[f"sigma_{i}"] for i in range(1, len(by) + 1)])

    def angle(self, label_a: str, label_b: str, layer: str, center: bool | None = None) -> float:
        """Angle (degrees) between the P-vectors of ``layer`` at two recorded checkpoints."""
        center = self._center_arg(center)
        for lab in (label_a, label_b):
            if (lab, layer, center) not in self.U:
                raise InputError(f"no P-vector recorded for checkpoint {lab!r}, layer {layer!r}; recorded: {self.order}.")
        return unit_angle(self.U[(label_a, layer, center)][:, 0], self.U[(label_b, layer, center)][:, 0])

    def angles_to(self, reference: Any, layer: str, center: bool | None = None) -> list[tuple[str, float]]:
        """``(label, angle)`` of every recorded checkpoint's P-vector of ``layer`` to ``reference``, in step order.

        ``reference`` is a P-vector (``PVector`` or a length-N vector) on the probe samples, e.g. another
        run's final P-vector; its sample hash, if it has one, must match the probe's.
        """
        center = self._center_arg(center)
        ref = self._reference_vector("reference", reference)
        return [(label, unit_angle(self.U[(label, layer, center)][:, 0], ref)) for label in self.order]

    def finalize(self, final: str | None = None) -> list[dict[str, Any]]:
        """Add ``angle_to_final`` rows (every checkpoint vs ``final``, default the last one); idempotent."""
        if not self.order:
            raise InputError("nothing tracked yet; call step() first.")
        final = final or self.order[-1]
        if final not in self.meta:
            raise InputError(f"unknown checkpoint {final!r}; recorded: {self.order}.")
        self.rows = [r for r in self.rows if r["quantity"] != "angle_to_final"]
        added = []
        for label in self.order:
            epoch, iteration = self.meta[label]
            for layer in self.layers:
                for center in self.centers:
                    added.append({"checkpoint": label, "epoch": epoch, "iteration": iteration, "layer": layer,
                                  "centered": center, "quantity": "angle_to_final",
                                  "value": self.angle(label, final, layer, center)})
        self.rows.extend(added)
        self._write(final=final)
        return added

    # ------------------------------------------------------------------ output
    def table(self, quantity: str | None = None, layer: str | None = None,
              center: bool | None = None) -> list[dict[str, Any]]:
        """The tidy rows, optionally filtered by quantity, layer and centering."""
        return [r for r in self.rows if (quantity is None or r["quantity"] == quantity)
                and (layer is None or r["layer"] == layer)
                and (center is None or r.get("centered", self.center) == bool(center))]

    def series(self, quantity: str, layer: str, center: bool | None = None) -> list[float]:
        """One quantity of one layer over the checkpoints, in step order (default: the first centering).

        A layer the Tracker does not track, or a quantity never recorded for that layer, raises InputError naming
        it and listing the known ones (closest first). ``angle_to_final`` before :meth:`finalize`,
        ``angle_to_previous`` after one checkpoint, and any quantity before the first ``step`` give ``[]``.
        """
        center = self._center_arg(center)
        known_layers = list(dict.fromkeys(self.layers + ([self.spectrum_layer] if self.spectrum_layer else [])))
        if layer not in known_layers:
            raise InputError(f"no series for layer {layer!r}: this Tracker tracks layers {', '.join(known_layers)}."
                             + _closest(layer, known_layers))
        recorded = list(dict.fromkeys(r["quantity"] for r in self.rows if r["layer"] == layer))
        if recorded and quantity not in recorded and quantity not in ("angle_to_final", "angle_to_previous"):
            raise InputError(f"no series {quantity!r} for layer {layer!r}: the quantities recorded there are "
                             f"{', '.join(recorded)}." + _closest(quantity, recorded))
        by = {r["checkpoint"]: r["value"] for r in self.table(quantity, layer, center)}
        return [by[label] for label in self.order if label in by]

    def _model_name(self) -> str | None:
        from deepspan.features.extract import _unwrap_parallel

        return None if self.model is None else type(_unwrap_parallel(self.model)[0]).__name__

    def _write(self, final: str | None = None) -> None:
        if self.out_dir is None or self._rank_and_world()[0] != 0:  # in a distributed job, rank 0 writes
            return
        # "\r\n": the csv module's default line ending, which rows.csv has always had
        atomic_write_csv(self.out_dir / "rows.csv", self.rows, ROW_FIELDS, lineterminator="\r\n")
        atomic_write_json(self.out_dir / "rows.json", {
            "format": "deepspan.Tracker/1",
            "provenance": {
                "deepspan_version": __version__,
                "model": self._model_name(),
                "written": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "final": final,
            },
            "config": self._config(),
            "checkpoints": [[label, list(self.meta[label])] for label in self.order],
            "checkpoint_ids": {label: self.checkpoint_ids[label] for label in self.order
                               if label in self.checkpoint_ids},
            "rows": self.rows,
        })


def track_checkpoints(series: Any, probe: Any, layers: Any, *, finalize: bool = True, **kwargs: Any) -> Tracker:
    """Run a :class:`Tracker` over a :class:`~deepspan.track.checkpoints.CheckpointSeries`, post hoc.

    Each checkpoint is loaded into a fresh model from the series' factory;
    with ``out_dir`` an interrupted call resumes where it stopped. A run already
    in ``out_dir`` must have tracked a prefix of ``series`` (the same list resumes,
    a longer one appends); another checkpoint list raises InputError
    (:func:`check_checkpoint_list`) and leaves the folder untouched.
    """
    tracker = Tracker(None, probe, layers, **kwargs)
    digests = None
    if tracker.out_dir is not None:  # only a folder needs to know which weights its labels stood for
        check_checkpoint_list(tracker.out_dir, tracker.order, tracker.checkpoint_ids, series)
        digests = series.digests()
    alone = tracker._rank_and_world()[1] == 1
    for i, ckpt in enumerate(series.checkpoints):
        if ckpt.label in tracker and alone:  # in a distributed job, step() asks rank 0's table (a collective)
            continue
        if digests is not None:
            tracker.checkpoint_ids[ckpt.label] = {
                "sha256": digests[i],
                "source": "in-memory state dict" if isinstance(ckpt.source, dict) else str(ckpt.source)}
        model = series.load(i)
        tracker.model = model
        tracker.step(epoch=ckpt.epoch, iteration=ckpt.iteration, label=ckpt.label, model=model)
    if finalize:
        tracker.finalize()
    return tracker


def _list_text(labels: list[str]) -> str:
    shown = labels if len(labels) <= 8 else labels[:5] + ["..."] + labels[-2:]
    return f"[{', '.join(shown)}] ({len(labels)} checkpoint{'s' if len(labels) != 1 else ''})"


def check_checkpoint_list(out_dir: str | Path, recorded: list[str], ids: dict[str, Any], series: Any,
                          option: str = "out_dir") -> None:
    """Refuse to track ``series`` into ``out_dir`` unless the checkpoints recorded there are a prefix of it.

    ``recorded`` are the labels already in the folder's table, in order, and ``ids`` their stored
    ``{"sha256", "source"}`` (tables written before checkpoint ids existed have none: then labels alone are
    compared). The same list resumes; a list that starts with the recorded checkpoints and adds more after them
    resumes and appends. Anything else -- other labels, another order, fewer checkpoints, or a label whose
    weights differ -- raises InputError naming both lists, their hashes, the first difference and the fix
    (``option`` names the output setting in the message).
    """
    now = [c.label for c in series.checkpoints]
    digests = series.digests()
    stored = [(label, (ids.get(label) or {}).get("sha256")) for label in recorded]
    first = next((i for i, ((label, digest), label_now, digest_now) in enumerate(zip(stored, now, digests))
                  if label != label_now or (digest is not None and digest != digest_now)), None)
    if first is None and len(stored) <= len(now):
        return

    def list_hash(pairs: list[tuple[str, str | None]]) -> str:
        import hashlib

        return hashlib.sha256("\n".join(f"{a}:{b}" for a, b in pairs).encode()).hexdigest()[:12]

    def entry(label: str, digest: str | None, source: str | None) -> str:
        return f"{label} (sha256 {digest or 'not recorded'}" + (f", {source})" if source else ")")

    if first is not None:
        old_label, old_digest = stored[first]
        i = first
        src = series.checkpoints[i].source
        diff = (f"first difference at position {i + 1}: "
                f"{entry(old_label, old_digest, (ids.get(old_label) or {}).get('source'))} there, "
                f"{entry(now[i], digests[i], 'in-memory state dict' if isinstance(src, dict) else str(src))} now")
        if old_label == now[i]:
            diff += " -- the same label with other weights"
    else:
        diff = (f"the folder holds {len(stored)} checkpoints and the list given has {len(now)}: "
                f"{', '.join(label for label, _ in stored[len(now):][:5])} would be left in the table")
    raise InputError(
        f"{out_dir} holds the tracking results of another checkpoint list: there {_list_text(recorded)}, "
        f"list hash {list_hash(stored)}; now {_list_text(now)}, list hash {list_hash(list(zip(now, digests)))}; "
        f"{diff}. Tracking into it would mix two series and rewrite the stored angles. Choose another {option}, or "
        f"delete {out_dir} to start over (the same list resumes; a list that extends the stored one appends).")
