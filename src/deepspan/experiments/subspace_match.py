"""Experiment 6 -- neuron activation subspace match between two seeds (Wang et al. 2018).

Wang, Hu, Gu, Wu, Hu, He, Hopcroft, "Towards Understanding Learning Representations: To What Extent
Do Different Neural Networks Learn the Same Representation", NeurIPS 2018, arXiv 1810.11750.

The protocol follows the paper's official code (MeckyWu/subspace-match; PROTOCOLS.md):

* for every architecture of ``cfg.match_models`` (the small CNN and the VGG-style plain net), run ``<m>``
  (seed ``cfg.seed``) and run ``<m>@s<seed+1>`` are compared layer by layer with the maximum matching
  similarity (|X*| + |Y*|) / (n_a + n_b) of :mod:`deepspan.measures.match`, on the post-ReLU
  activations of every conv layer and of the fully connected layers before the logits, in eval mode,
  on **all** test images (``ctx.data.test``), with no centering;
* conv layers: neurons = channels, samples = (image, position) pairs; each of ``cfg.match_repeats``
  independent draws takes ``cfg.match_rows`` pairs without replacement from all test images x
  positions, the same pairs for both networks (:func:`deepspan.draw_rows`, draw ``r`` seeded by
  ``[cfg.seed, r]``, one forward pass per network and checkpoint); the similarity is the mean over the
  draws, reported with its standard deviation (ddof = 1) and the number of draws
  (:func:`deepspan.layer_match_similarity`); fully connected layers use every test image once;
* every eps of ``cfg.match_eps`` (the paper's grid 0.15, 0.2, 0.25, 0.3, 0.5);
* comparisons: the trained pair (both final checkpoints), the untrained pair (both ``init``
  checkpoints, saved before the first step), and, to keep the cost bounded, A vs B and A vs A-final at
  a few stages (:func:`stage_checkpoints`: init, epoch 1, the middle epoch and the final one);
* the simple matches (distinct v-minimal matches) of the trained pair at :data:`SIMPLE_EPS` on the rows
  of draw 0, in the last conv layer whose maximum match is not empty, and the top-:data:`TOP_K` probe
  images of the neurons of a few of the smallest simple matches.

Claims: the judged one is the paper's conv-layer finding (its abstract), read across the whole eps
grid with a threshold that is ours (:data:`LOW_SIM`); the untrained pair is shown beside it as context.
The per-layer profile (only for an architecture with at least :data:`DEEP_CONV` conv layers), the
training stages and the simple matches are descriptive: the paper's per-layer values are not readable,
so no verdict is given on them. The paper's caveat applies: a low similarity does not prove that the
two networks learned different representations.
"""

from __future__ import annotations

import io
import math
from typing import Any

import numpy as np

from deepspan import MatchGram, layer_match_similarity
from deepspan._io import atomic_write_bytes
from deepspan.experiments.base import Experiment
from deepspan.experiments.context import ReproContext, one_blas_thread
from deepspan.results import Check, Claim, Condition, ExperimentResult, Measured, Rule

NAME = "subspace_match"
TITLE = "Neuron activation subspace match between two seeds"
ARRAYS_FILE = f"{NAME}__top_images.npz"

# rules (stated in the claims and the report)
LOW_SIM = 0.5            # ours: "not as similar as expected" = under half of the conv neurons in the maximum match
DEEP_CONV = 4            # the per-layer profile is read only on an architecture with at least this many conv layers
SHOWN_EPS = 0.5          # eps of the per-layer and per-stage readings (the largest of the paper's grid)
SIMPLE_EPS = 0.5         # eps of the simple matches (the largest eps of the grid when 0.5 is not in it)
TOP_K = 8                # top-activating probe images per neuron
N_SHOWN = 3              # simple matches whose neurons get image grids (the smallest ones)
MAX_NEURONS_SHOWN = 4    # at most this many neurons of one simple match get a grid (both networks alternating)
BATCH = 1000             # images per forward pass of the row draws (channels-last convolutions: fastest here)

ABSTRACT_QUOTE = ("Experimental results suggest that, surprisingly, representations learned by the same convolutional "
                  "layers of networks trained from different initializations are not as similar as prevalently "
                  "expected, at least in terms of subspace match.")


# ---------------------------------------------------------------- helpers (pure, unit-tested)
def run_names(model: str, seed: int) -> tuple[str, str]:
    """The two runs compared for architecture ``model``: ``<model>`` (seed ``seed``) and ``<model>@s<seed+1>``."""
    return model, f"{model}@s{seed + 1}"


def epoch_checkpoints(records: list[dict[str, Any]]) -> list[tuple[str, int]]:
    """(label, epoch) of the initialisation and of every end-of-epoch checkpoint, in training order."""
    out = []
    for rec in records:
        label = rec["label"]
        if label == "init" or (label.startswith("e") and not label.startswith("e0-")):
            out.append((label, int(rec["epoch"])))
    return out


def stage_checkpoints(epochs: list[tuple[str, int]]) -> list[tuple[str, int]]:
    """A few training stages of ``epochs`` (from :func:`epoch_checkpoints`): the first (init), the first
    end-of-epoch checkpoint, the middle epoch (final // 2, else the nearest) and the final one; no repeats."""
    if not epochs:
        return []
    first, final = epochs[0], epochs[-1]
    later = epochs[1:] or [first]
    middle = min(later, key=lambda le: (abs(le[1] - final[1] // 2), le[1]))
    out: list[tuple[str, int]] = []
    for stage in (first, later[0], middle, final):
        if stage not in out:
            out.append(stage)
    return sorted(out, key=lambda le: le[1])


def claim_eps(grid: tuple[float, ...] | list[float], preferred: float = SHOWN_EPS) -> float:
    """``preferred`` when it is on the grid, else the grid's largest eps."""
    grid = [float(e) for e in grid]
    return preferred if any(math.isclose(e, preferred) for e in grid) else max(grid)


def informative_eps(sims_by_eps: dict[float, dict[str, float]]) -> list[float]:
    """The eps values at which some layer has a non-zero similarity (where every layer is 0 the reading says
    nothing about how similar the layers are: nothing matches at that eps)."""
    return [e for e, sims in sims_by_eps.items() if any(v > 0 for v in sims.values())]


def conv_mean(sims: dict[str, float], conv: list[str]) -> float:
    """Mean similarity over the conv layers ``conv``."""
    return float(np.mean([sims[layer] for layer in conv]))


def first_minus_later(sims: dict[str, float], conv: list[str]) -> float:
    """First conv layer's similarity minus the mean over the later conv layers."""
    return float(sims[conv[0]] - np.mean([sims[layer] for layer in conv[1:]]))


def dead_neurons(draws: Any, layers: list[str]) -> dict[str, float]:
    """Per layer, the neurons of a :class:`~deepspan.features.RowDraws` whose activation is 0 on every row of a draw,
    averaged over the draws. They never match and count in the similarity's denominator (Wang et al.'s code)."""
    return {layer: float(np.mean([int((~np.any(draws.draw(layer, r) != 0, axis=0)).sum())
                                  for r in range(draws.n_draws(layer))])) for layer in layers}


def top_activating(act: np.ndarray, neuron: int, k: int = TOP_K) -> np.ndarray:
    """Indices of the ``k`` rows of ``act`` (images x neurons) with the largest activation of ``neuron``.

    Descending order; ties keep the lower index first (a stable sort of the negated column).
    """
    col = np.asarray(act, dtype=np.float64)[:, int(neuron)]
    return np.argsort(-col, kind="stable")[: int(k)]


def pooled_activations(F: np.ndarray, n_images: int) -> np.ndarray:
    """Per-image, per-channel maximum over positions of ``channels`` rows (images x positions, image-major)."""
    F = np.asarray(F)
    if len(F) == n_images:
        return F
    per = len(F) // n_images
    if per * n_images != len(F):
        raise ValueError(f"{len(F)} rows are not a whole number of positions for {n_images} images")
    return F.reshape(n_images, per, F.shape[1]).max(axis=1)


# ---------------------------------------------------------------- run
def run(ctx: ReproContext) -> ExperimentResult:
    from deepspan import draw_rows

    cfg = ctx.cfg
    eps_grid = tuple(float(e) for e in cfg.match_eps)
    s_eps = claim_eps(eps_grid, SIMPLE_EPS)
    test = ctx.data.test
    rows: list[dict[str, Any]] = []
    sm_rows: list[dict[str, Any]] = []
    top_rows: list[dict[str, Any]] = []
    top_arrays: dict[str, np.ndarray] = {}
    info: dict[str, dict[str, Any]] = {}

    for model in cfg.match_models:
        name_a, name_b = run_names(model, cfg.seed)
        ctx.runs.ensure_trained(name_a)
        ctx.runs.ensure_trained(name_b)
        layers = ctx.runs.layers(name_a)
        ck_b = dict(epoch_checkpoints(ctx.runs.checkpoints(name_b)))
        stages = stage_checkpoints([(lab, ep) for lab, ep in epoch_checkpoints(ctx.runs.checkpoints(name_a))
                                    if lab in ck_b])
        final_label, final_epoch = stages[-1]
        # one forward pass per network and checkpoint over all test images: every draw of every layer at once
        draws = {(run_name, label): draw_rows(ctx.runs.load(run_name, label), test, layers, n_rows=cfg.match_rows,
                                              draws=cfg.match_repeats, seed=cfg.seed, batch_size=BATCH,
                                              progress=False, checkpoint=label, channels_last=True)
                 for run_name in (name_a, name_b) for label, _ in stages}
        ref = draws[(name_a, final_label)]
        conv = [layer for layer in layers if ref.spatial[layer]]
        widths = {layer: int(ref[layer].shape[-1]) for layer in layers}

        def compare(comparison: str, da, db, label_a: str, label_b: str, epoch: int) -> None:
            dead_a, dead_b = dead_neurons(da, layers), dead_neurons(db, layers)
            for r in layer_match_similarity(da, db, layers, eps_grid=eps_grid):
                layer = r["layer_a"]
                rows.append({"model": model, "run_a": name_a, "run_b": name_b if comparison == "A vs B" else name_a,
                             "comparison": comparison, "epoch": epoch, "checkpoint_a": label_a,
                             "checkpoint_b": label_b, "layer": layer, "layer_index": layers.index(layer),
                             "conv": layer in conv, "eps": r["eps"], "similarity": r["similarity"], "std": r["std"],
                             "sem": r["sem"], "draws": r["repeats"], "n_rows": r["n_rows"],
                             "n_a": widths[layer], "n_b": widths[layer], "dead_a": dead_a[layer],
                             "dead_b": dead_b[layer]})

        with one_blas_thread():
            for label, ep in stages:
                compare("A vs B", draws[(name_a, label)], draws[(name_b, label)], label, label, ep)
            for label, ep in stages[:-1]:
                compare("A vs A final", draws[(name_a, label)], ref, label, final_label, ep)
            sm_layer, simple, mm = _simple_matches(ref, draws[(name_b, final_label)], conv, layers, s_eps)
        del draws
        for i, m in enumerate(simple):
            sm_rows.append({"model": model, "match": i, "layer": sm_layer, "eps": s_eps, "size": m.size,
                            "n_neurons_a": len(m.a), "n_neurons_b": len(m.b),
                            "neurons_a": " ".join(map(str, m.a.tolist())),
                            "neurons_b": " ".join(map(str, m.b.tolist()))})
        shown = sorted(range(len(simple)), key=lambda i: (simple[i].size, i))[:N_SHOWN]
        t_rows, t_arrays = _top_images(ctx, model, name_a, name_b, final_label, sm_layer, simple, shown)
        top_rows += t_rows
        top_arrays.update(t_arrays)
        info[model] = {"runs": (name_a, name_b), "layers": layers, "conv": conv, "stages": stages,
                       "final_epoch": final_epoch, "final_label": final_label, "simple_layer": sm_layer,
                       "simple_sizes": [m.size for m in simple], "max_match_size": mm.size,
                       "layer_neurons": mm.n_a + mm.n_b}

    arrays = {}
    if top_arrays:
        buf = io.BytesIO()
        np.savez_compressed(buf, **top_arrays)
        atomic_write_bytes(ctx.results_dir / ARRAYS_FILE, buf.getvalue())
        arrays["top_images"] = ARRAYS_FILE

    models = list(cfg.match_models)
    claims = _claims(rows, info, models, eps_grid, s_eps, cfg.match_rows, cfg.match_repeats, len(test))
    runs = [n for m in models for n in info[m]["runs"]]
    protocol = {
        "layers": {m: info[m]["layers"] for m in models},
        "conv_layers": {m: info[m]["conv"] for m in models},
        "activations": "post-ReLU of every conv layer and of the fully connected layers before the logits, eval mode",
        "centering": "none (raw post-ReLU activations)",
        "split": "test", "n_samples": len(test),
        "sample_set": f"all {len(test)} test images, no augmentation",
        "epochs": {n: ctx.cfg.epochs_of(n) for n in runs},
        "schedule": {n: ctx.runs.spec(n).describe() for n in runs},
        "seeds": {n: ctx.runs.seed_of(n) for n in runs},
        "n_train": len(ctx.data.train), "batch_size": cfg.batch_size,
        "rows_per_draw": cfg.match_rows, "draws": cfg.match_repeats, "independent_draws": True,
        "draw_rule": (f"conv layers: draw r takes numpy default_rng([{cfg.seed}, r]).choice(N x P, {cfg.match_rows}, "
                      f"replace=False) of the N test images x P positions, the same rows for both networks"),
        "fc_layers": "all test images", "eps_grid": list(eps_grid),
        "stages": {m: [label for label, _ in info[m]["stages"]] for m in models},
        "untrained_pair": "both networks at their init checkpoints (saved before the first step)",
        "low_similarity_threshold": f"{LOW_SIM:g} (ours)",
        "simple_matches": f"trained pair, draw 0, eps {s_eps:g}",
    }
    parts = []
    for m in models:
        a, b = info[m]["runs"]
        parts.append(f"{m} ({a} and {b}, seeds {ctx.runs.seed_of(a)} and {ctx.runs.seed_of(b)}, "
                     f"{ctx.cfg.epochs_of(a)} epochs, layers {', '.join(info[m]['layers'])})")
    summary = (f"Two networks per architecture trained from different initialisations on {len(ctx.data.train)} "
               f"{cfg.dataset} images: {'; '.join(parts)}. Maximum matching similarity per layer on all {len(test)} "
               f"test images (conv layers: channels as neurons, {cfg.match_repeats} independent draws of "
               f"{cfg.match_rows} (image, position) rows, the same for both networks; fully connected layers: every "
               f"image) for eps in {', '.join(f'{e:g}' for e in eps_grid)}; trained pair, untrained pair and "
               f"training stages; simple matches at eps {s_eps:g}.")
    return ExperimentResult(
        name=NAME, title=TITLE, paper="Wang et al. 2018", summary=summary, claims=claims,
        tables={"similarity": rows, "simple_matches": sm_rows, "top_images": top_rows}, arrays=arrays,
        provenance=ctx.provenance(runs=runs, simple_match_layers={m: info[m]["simple_layer"] for m in models},
                                  simple_match_eps=s_eps),
        protocol=protocol)


def _simple_matches(da, db, conv: list[str], layers: list[str], s_eps: float):
    """The simple matches of the trained pair on draw 0: in the last conv layer whose maximum match at ``s_eps``
    is not empty (else the latest such layer of any kind; else the last conv layer, which then has none)."""
    candidates = conv[::-1] + [layer for layer in layers[::-1] if layer not in conv]
    sm_layer, mg, mm = None, None, None
    for layer in candidates:
        g = MatchGram.from_activations(da.draw(layer, 0), db.draw(layer, 0))
        m = g.max_match(s_eps)
        if sm_layer is None or m.size > 0:
            sm_layer, mg, mm = layer, g, m
        if m.size > 0:
            break
    return sm_layer, (mg.simple_matches(s_eps) if mm.size else []), mm


def _top_images(ctx: ReproContext, model: str, name_a: str, name_b: str, label: str, layer: str, simple: list,
                shown: list[int]) -> tuple[list[dict[str, Any]], dict[str, np.ndarray]]:
    """Top-activating probe images (spatially max-pooled activation) of the neurons of the ``shown`` simple matches;
    arrays keyed ``<model>__<what>``."""
    if not shown:
        return [], {}
    from deepspan.features import extract

    probe = ctx.data.probe
    pooled = {}
    for side, name in (("a", name_a), ("b", name_b)):
        fs = extract(ctx.runs.load(name, label), probe, layer, policy="channels", progress=False)
        pooled[side] = pooled_activations(fs[layer], len(probe))
    rows: list[dict[str, Any]] = []
    imgs, idxs, vals, match_ids, sides, neurons = [], [], [], [], [], []
    for i in shown:
        m = simple[i]
        for side, j in _alternate(m.a, m.b)[:MAX_NEURONS_SHOWN]:
            top = top_activating(pooled[side], j, TOP_K)
            act = pooled[side][top, j]
            imgs.append(probe.X[top].astype(np.float32))
            idxs.append(top)
            vals.append(act)
            match_ids.append(i)
            sides.append(side)
            neurons.append(j)
            for rank, (p, v) in enumerate(zip(top, act)):
                rows.append({"model": model, "layer": layer, "match": i, "side": side, "neuron": j, "rank": rank,
                             "probe_index": int(p), "activation": float(v), "label": int(probe.y[p])})
    arrays = {"images": np.stack(imgs), "indices": np.stack(idxs).astype(np.int64),
              "activations": np.stack(vals).astype(np.float64), "match": np.array(match_ids, dtype=np.int64),
              "side": np.array(sides), "neuron": np.array(neurons, dtype=np.int64),
              "labels": np.asarray(probe.y)[np.stack(idxs)].astype(np.int64)}
    return rows, {f"{model}__{k}": v for k, v in arrays.items()}


def _alternate(a: np.ndarray, b: np.ndarray) -> list[tuple[str, int]]:
    """The neurons of a match, A's and B's alternating (A first), so a truncated list shows both networks."""
    out: list[tuple[str, int]] = []
    for i in range(max(len(a), len(b))):
        out += [("a", int(a[i]))] if i < len(a) else []
        out += [("b", int(b[i]))] if i < len(b) else []
    return out


# ---------------------------------------------------------------- claims
def _pick(rows: list[dict[str, Any]], model: str, comparison: str, epoch: int, eps: float,
          field: str = "similarity") -> dict[str, float]:
    return {r["layer"]: r[field] for r in rows
            if r["model"] == model and r["comparison"] == comparison and r["epoch"] == epoch
            and math.isclose(r["eps"], eps)}


def _fmt_std(x: Any) -> str:
    return "n/a" if x is None or (isinstance(x, float) and not math.isfinite(x)) else f"{x:.3f}"


def _claims(rows: list[dict[str, Any]], info: dict[str, dict[str, Any]], models: list[str],
            eps_grid: tuple[float, ...], s_eps: float, n_rows: int, n_draws: int, n_test: int) -> list[Claim]:
    e_show = claim_eps(eps_grid)
    grid = ", ".join(f"{e:g}" for e in eps_grid)

    # c1: the paper's conv-layer finding, every architecture, every informative eps
    m1: list[Measured] = []
    checks: list[Check] = []
    left_out: dict[str, list[float]] = {}
    for m in models:
        conv, fin = info[m]["conv"], info[m]["final_epoch"]
        trained = {e: _pick(rows, m, "A vs B", fin, e) for e in eps_grid}
        untrained = {e: _pick(rows, m, "A vs B", 0, e) for e in eps_grid}
        keep = informative_eps(trained)
        left_out[m] = [e for e in eps_grid if e not in keep]
        if not conv:
            continue
        for e in eps_grid:
            key = f"{m}_trained_conv_mean_eps_{e:g}"
            m1.append(Measured(key, f"{m}, trained pair: similarity at eps {e:g}, mean over the conv layers "
                                    f"({', '.join(conv)})", conv_mean(trained[e], conv)))
            m1.append(Measured(f"{m}_untrained_conv_mean_eps_{e:g}",
                               f"{m}, untrained pair (context, not a condition): similarity at eps {e:g}, mean over "
                               f"the conv layers", conv_mean(untrained[e], conv)))
            if e in keep:
                checks.append(Check(f"{m}, eps {e:g}", (Condition(key, "<", LOW_SIM),)))
        dead = sum(_pick(rows, m, "A vs B", fin, e_show, "dead_a")[layer] + _pick(rows, m, "A vs B", fin, e_show,
                                                                                  "dead_b")[layer] for layer in conv)
        total = sum(2 * r["n_a"] for r in rows if r["model"] == m and r["comparison"] == "A vs B"
                    and r["epoch"] == fin and math.isclose(r["eps"], e_show) and r["conv"])
        m1.append(Measured(f"{m}_trained_dead_conv_fraction",
                           f"{m}, trained pair (context): fraction of the conv neurons of both networks that are 0 on "
                           f"every drawn row (they never match and count in the denominator)",
                           dead / total if total else None))
        std = _pick(rows, m, "A vs B", fin, e_show, "std")
        for layer in conv:
            m1.append(Measured(f"{m}_trained_{layer}_eps_{e_show:g}",
                               f"{m}, trained pair, conv layer {layer}: similarity at eps {e_show:g} (std "
                               f"{_fmt_std(std[layer])} over {n_draws} draws)", trained[e_show][layer]))
    dropped = "; ".join(f"{m}: eps {', '.join(f'{e:g}' for e in es)}" for m, es in left_out.items() if es)
    dropped = f"left out as uninformative ({dropped})" if dropped else "none is left out"
    statement = (f"per architecture ({', '.join(models)}) and per eps of the grid ({grid}): the trained pair's maximum "
                 f"matching similarity averaged over the conv layers -- each layer the mean over {n_draws} independent "
                 f"draws of {n_rows} (image, position) rows of all {n_test} test images -- is < {LOW_SIM:g}, i.e. "
                 f"fewer than half of the two networks' conv neurons are in the maximum match. The threshold "
                 f"{LOW_SIM:g} is ours: the paper gives no number for 'not as similar as prevalently expected'. An eps "
                 f"at which every layer of an architecture's trained pair has similarity 0 says nothing (nothing "
                 f"matches at that eps) and is not judged: {dropped}. The untrained pair (both networks at "
                 f"initialisation) is shown beside the verdict as context, not as a condition")
    note = ("The untrained-pair values are the baseline for reading the trained ones: how much of the match training "
            "creates. The paper's caveat applies: a low similarity does not prove that the networks learned different "
            "representations; the match is a strict, neuron-basis notion.")
    if checks:
        c1 = Claim("c1", quote=ABSTRACT_QUOTE, quote_kind="verbatim", source="Wang et al. 2018, Abstract",
                   rule=Rule(statement, tuple(checks)), measured=m1, note=note)
    else:
        c1 = Claim("c1", quote=ABSTRACT_QUOTE, quote_kind="verbatim", source="Wang et al. 2018, Abstract", rule=None,
                   measured=m1, note=("No eps of the grid has a non-zero similarity in any layer of a trained pair, so "
                                      "the reading cannot be judged. " + note))

    # c2: the per-layer profile, only on an architecture with >= DEEP_CONV conv layers (descriptive)
    deep = [m for m in models if len(info[m]["conv"]) >= DEEP_CONV]
    m2: list[Measured] = []
    for m in deep:
        conv, fin, layers = info[m]["conv"], info[m]["final_epoch"], info[m]["layers"]
        for e in eps_grid:
            m2.append(Measured(f"{m}_first_minus_later_conv_eps_{e:g}",
                               f"{m}, trained pair at eps {e:g}: first conv layer ({conv[0]}) minus the mean of the "
                               f"later conv layers ({', '.join(conv[1:])})",
                               first_minus_later(_pick(rows, m, "A vs B", fin, e), conv)))
        sims, std = _pick(rows, m, "A vs B", fin, e_show), _pick(rows, m, "A vs B", fin, e_show, "std")
        un = _pick(rows, m, "A vs B", 0, e_show)
        for layer in layers:
            kind = "conv" if layer in conv else "fully connected, all test images"
            m2.append(Measured(f"{m}_profile_{layer}_eps_{e_show:g}",
                               f"{m}, {layer} ({kind}): trained pair at eps {e_show:g} (std {_fmt_std(std[layer])}; "
                               f"untrained pair {un[layer]:.3f})", sims[layer]))
    c2 = Claim("c2", quote=("the maximum matching similarity is measured layer by layer, from the first conv layer to "
                            "the fully connected layers"),
               source="Wang et al. 2018, experiments (layer-wise maximum match; the per-layer values are not readable)",
               rule=None, measured=m2,
               note=(f"Read only on the deeper plain net ({', '.join(deep) or 'none in this configuration'}: at least "
                     f"{DEEP_CONV} conv layers); descriptive, since no readable statement of the paper gives a "
                     f"per-layer trend to judge."))

    # c3: training stages and the untrained pair (descriptive)
    m3: list[Measured] = []
    for m in models:
        conv = info[m]["conv"] or info[m]["layers"]
        for label, ep in info[m]["stages"]:
            m3.append(Measured(f"{m}_ab_{label}", f"{m}, A vs B at {label} (epoch {ep}): similarity at eps {e_show:g}, "
                                                  f"mean over the conv layers",
                               conv_mean(_pick(rows, m, "A vs B", ep, e_show), conv)))
        for label, ep in info[m]["stages"][:-1]:
            m3.append(Measured(f"{m}_a_final_{label}",
                               f"{m}, A at {label} (epoch {ep}) vs A final: similarity at eps {e_show:g}, mean over "
                               f"the conv layers", conv_mean(_pick(rows, m, "A vs A final", ep, e_show), conv)))
    c3 = Claim("c3", quote=("the match between two networks is also shown for untrained networks and at several stages "
                            "of training"),
               source="Wang et al. 2018, Fig. 4 (untrained networks and training stages)", rule=None, measured=m3,
               note="Descriptive: the paper's values for these stages are not readable.")

    # c4: simple matches (descriptive)
    m4: list[Measured] = []
    for m in models:
        sizes, layer = info[m]["simple_sizes"], info[m]["simple_layer"]
        m4 += [Measured(f"{m}_n_simple_matches", f"{m}: simple matches of {layer} at eps {s_eps:g} (trained pair, "
                                                 f"draw 0)", len(sizes)),
               Measured(f"{m}_median_simple_size", f"{m}: median simple-match size (neurons of both networks)",
                        float(np.median(sizes)) if sizes else None),
               Measured(f"{m}_max_simple_size", f"{m}: largest simple-match size", max(sizes) if sizes else None),
               Measured(f"{m}_max_match_size", f"{m}: maximum-match size of {layer} at eps {s_eps:g} (draw 0)",
                        info[m]["max_match_size"]),
               Measured(f"{m}_simple_layer_neurons", f"{m}: neurons of {layer} in both networks",
                        info[m]["layer_neurons"])]
    c4 = Claim("c4", quote=("the simple matches -- the finest units of shared representation -- are shown by their "
                            "sizes and by the images that most activate their neurons"),
               source="Wang et al. 2018, Fig. 2 (minimal-match sizes) and Fig. 5 (top images of fc2 neurons)",
               rule=None, measured=m4,
               note="Descriptive: the paper's sizes are not readable; here the last conv layer with a non-empty match.")
    return [c1, c2, c3, c4]


EXPERIMENT = Experiment(NAME, TITLE, "Wang et al. 2018", run, figures="deepspan.report.fig_subspace_match",
                        claims=("c1", "c2", "c3", "c4"))
