"""Experiment 6 -- neuron activation subspace match between two seeds (Wang et al. 2018, Sec. 5).

Wang, Hu, Gu, Wu, Hu, He, Hopcroft, "Towards Understanding Learning Representations: To What Extent
Do Different Neural Networks Learn the Same Representation", NeurIPS 2018, arXiv 1810.11750.

Two networks of one architecture (``cfg.match_model``, run ``A`` with seed ``cfg.seed`` and run ``B``
with seed ``cfg.seed + 1``, i.e. ``cnn`` and ``cnn@s1``) are compared layer by layer with the maximum
matching similarity (|X*| + |Y*|) / (n_a + n_b) of :mod:`deepspan.measures.match`:

* conv layers under the ``channels`` policy (neurons = channels, samples = (image, position) pairs,
  as in the paper): a few seeded positions are drawn per probe image (:func:`positions_per_image`:
  enough for ``match_repeats`` disjoint draws), the same in both networks; ``cfg.match_rows`` rows are drawn ``cfg.match_repeats`` times (seeded) and the
  similarity is averaged (:func:`deepspan.layer_match_similarity`); fully connected layers use
  every probe image once;
* for every eps of ``cfg.match_eps``: A vs B at every epoch checkpoint (``init`` = epoch 0 is the
  untrained pair, the last epoch the trained pair) and A at every epoch vs A at its final epoch;
* the simple matches (distinct v-minimal matches) between the final A and B at :data:`SIMPLE_EPS`
  (the largest eps of the grid) on the rows of the first repeat, with their size distribution, in
  the last conv layer whose maximum match at that eps is not empty (else the latest such layer of
  any kind; else the last conv layer, which then has none);
* for up to :data:`N_SHOWN` of the smallest simple matches: the top-:data:`TOP_K` probe images of
  every neuron by its spatially max-pooled activation (pixels in the ``.npz`` side file).

The claims are judged at :data:`CLAIM_EPS` (the largest eps of the paper's grid). The paper's caveat
applies: a low similarity does not prove that two networks learned different representations.
"""

from __future__ import annotations

import io
import math
from typing import Any

import numpy as np

from deepspan._io import atomic_write_bytes
from deepspan import MatchGram, layer_match_similarity
from deepspan.experiments.base import Experiment
from deepspan.experiments.context import ReproContext, one_blas_thread
from deepspan.results import Check, Claim, Condition, ExperimentResult, Measured, Rule

NAME = "subspace_match"
TITLE = "Neuron activation subspace match between two seeds"
ARRAYS_FILE = f"{NAME}__top_images.npz"

# rules (stated in the claims and the report)
CLAIM_EPS = 0.5          # eps at which the claims are judged (the largest of the paper's grid)
LOW_SIM = 0.5            # "low" similarity: the mean over the intermediate layers is below this
GAIN_MAX = 0.10          # training "does not make the layers match": trained minus untrained similarity below this
SIMPLE_EPS = 0.5         # eps of the simple matches (the largest eps of the grid when 0.5 is not in it)
SMALL_SIZE = 4           # "small" simple matches: median size (neurons of both networks) at most this
TOP_K = 8                # top-activating probe images per neuron
N_SHOWN = 3              # simple matches whose neurons get image grids (the smallest ones)
MAX_NEURONS_SHOWN = 8    # at most this many neurons of one simple match get a grid


def run_names(ctx: ReproContext) -> tuple[str, str]:
    """The two runs compared: ``<match_model>`` (seed cfg.seed) and ``<match_model>@s<seed+1>``."""
    model = ctx.cfg.match_model
    return model, f"{model}@s{ctx.cfg.seed + 1}"


def epoch_checkpoints(records: list[dict[str, Any]]) -> list[tuple[str, int]]:
    """(label, epoch) of the initialisation and of every end-of-epoch checkpoint, in training order."""
    out = []
    for rec in records:
        label = rec["label"]
        if label == "init" or (label.startswith("e") and not label.startswith("e0-")):
            out.append((label, int(rec["epoch"])))
    return out


def intermediate_layers(layers: list[str]) -> list[str]:
    """The layers strictly between the first and the last (all but the first when there are only two)."""
    if len(layers) >= 3:
        return list(layers[1:-1])
    return list(layers[1:]) or list(layers)


def claim_eps(grid: tuple[float, ...] | list[float], preferred: float = CLAIM_EPS) -> float:
    """``preferred`` when it is on the grid, else the grid's largest eps."""
    grid = [float(e) for e in grid]
    return preferred if any(math.isclose(e, preferred) for e in grid) else max(grid)


def positions_per_image(n_rows: int, repeats: int, n_images: int, n_positions: int) -> int:
    """Positions drawn per image so that the conv rows hold ``repeats`` disjoint draws of ``n_rows`` rows.

    At least 1, at most the positions of the smallest conv map.
    """
    want = math.ceil(n_rows * max(repeats, 1) / max(n_images, 1))
    return int(max(1, min(want, n_positions)))


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


# ---------------------------------------------------------------- rules (pure, unit-tested)
def low_similarity_rule(sims: dict[str, float], intermediate: list[str], threshold: float = LOW_SIM
                        ) -> tuple[bool, float]:
    """The mean similarity over ``intermediate`` layers and whether it is below ``threshold``."""
    mean = float(np.mean([sims[layer] for layer in intermediate]))
    return mean < threshold, mean


def layer_trend_rule(sims_by_eps: dict[float, dict[str, float]], layers: list[str]) -> tuple[int, int]:
    """Over the eps grid: at how many eps the first layer's similarity exceeds the mean of the later layers."""
    first, later = layers[0], layers[1:]
    passed = sum(1 for sims in sims_by_eps.values()
                 if sims[first] > float(np.mean([sims[layer] for layer in later])))
    return passed, len(sims_by_eps)


def training_gain_rule(trained: dict[str, float], untrained: dict[str, float], intermediate: list[str],
                       gain_max: float = GAIN_MAX) -> tuple[bool, float]:
    """Mean over ``intermediate`` of trained minus untrained similarity, and whether it is below ``gain_max``."""
    gain = float(np.mean([trained[layer] - untrained[layer] for layer in intermediate]))
    return gain < gain_max, gain


def small_matches_rule(sizes: list[int], small: int = SMALL_SIZE) -> tuple[bool, float | None]:
    """The median simple-match size and whether it is at most ``small`` (False when there is no match)."""
    if not sizes:
        return False, None
    med = float(np.median(sizes))
    return med <= small, med


# ---------------------------------------------------------------- run
def _extract(ctx: ReproContext, name: str, label: str, layers: list[str], k: int):
    from deepspan.features import extract

    return extract(ctx.runs.load(name, label), ctx.data.probe, layers, policy="channels", positions_per_image=k,
                   seed=ctx.cfg.seed, progress=False, checkpoint=label)


def _n_positions(ctx: ReproContext, name: str, layers: list[str]) -> dict[str, int]:
    """Spatial positions per image of every layer (1 for fully connected layers)."""
    from deepspan.features import extract

    fs = extract(ctx.runs.load(name, "init"), ctx.data.probe.X[:1], layers, policy="channels", progress=False)
    return {layer: int(fs[layer].shape[0]) for layer in layers}


def run(ctx: ReproContext) -> ExperimentResult:
    cfg = ctx.cfg
    name_a, name_b = run_names(ctx)
    ctx.runs.ensure_trained(name_a)
    ctx.runs.ensure_trained(name_b)
    layers = ctx.runs.layers(name_a)
    n_pos = _n_positions(ctx, name_a, layers)
    conv = [layer for layer in layers if n_pos[layer] > 1]
    k = positions_per_image(cfg.match_rows, cfg.match_repeats, len(ctx.data.probe),
                            min([n_pos[layer] for layer in conv], default=1))
    eps_grid = tuple(float(e) for e in cfg.match_eps)
    ck_a = epoch_checkpoints(ctx.runs.checkpoints(name_a))
    ck_b = dict(epoch_checkpoints(ctx.runs.checkpoints(name_b)))
    epochs = [(label, ep) for label, ep in ck_a if label in ck_b]
    final_label, final_epoch = epochs[-1]
    feats = {(n, label): _extract(ctx, n, label, layers, k) for label, _ in epochs for n in (name_a, name_b)}

    rows: list[dict[str, Any]] = []

    def compare(comparison: str, fa, fb, label_a: str, label_b: str, epoch: int) -> None:
        for r in layer_match_similarity(fa, fb, layers, eps_grid=eps_grid, n_rows=cfg.match_rows,
                                        repeats=cfg.match_repeats, seed=cfg.seed):
            layer = r["layer_a"]
            rows.append({"comparison": comparison, "epoch": epoch, "checkpoint_a": label_a, "checkpoint_b": label_b,
                         "layer": layer, "layer_index": layers.index(layer), "conv": layer in conv, "eps": r["eps"],
                         "similarity": r["similarity"], "std": r["std"], "n_a": int(fa[layer].shape[1]),
                         "n_b": int(fb[layer].shape[1]), "repeats": r["repeats"], "n_rows": r["n_rows"]})

    with one_blas_thread():
        for label, ep in epochs:
            compare("A vs B", feats[(name_a, label)], feats[(name_b, label)], label, label, ep)
        for label, ep in epochs[:-1]:
            compare("A vs A final", feats[(name_a, label)], feats[(name_a, final_label)], label, final_label, ep)

        # simple matches: the last conv layer whose maximum match at s_eps is not empty (else the latest such layer,
        # else the last conv layer with no match), between the final A and B, on the rows of repeat 0
        s_eps = claim_eps(eps_grid, SIMPLE_EPS)
        candidates = conv[::-1] + [layer for layer in layers[::-1] if layer not in conv]
        sm_layer, mg, mm = None, None, None
        for layer in candidates:
            g = _gram(feats[(name_a, final_label)][layer], feats[(name_b, final_label)][layer], cfg.match_rows,
                      cfg.seed)
            m = g.max_match(s_eps)
            if sm_layer is None or m.size > 0:
                sm_layer, mg, mm = layer, g, m
            if m.size > 0:
                break
        simple = mg.simple_matches(s_eps) if mm.size else []
    sm_rows = [{"match": i, "layer": sm_layer, "eps": s_eps, "size": m.size, "n_neurons_a": len(m.a),
                "n_neurons_b": len(m.b), "neurons_a": " ".join(map(str, m.a.tolist())),
                "neurons_b": " ".join(map(str, m.b.tolist()))} for i, m in enumerate(simple)]

    # top-activating probe images of the neurons of the smallest simple matches
    shown = sorted(range(len(simple)), key=lambda i: (simple[i].size, i))[:N_SHOWN]
    top_rows, top_arrays = _top_images(ctx, name_a, name_b, final_label, sm_layer, simple, shown)
    arrays = {}
    if top_rows:
        buf = io.BytesIO()
        np.savez_compressed(buf, **top_arrays)
        atomic_write_bytes(ctx.results_dir / ARRAYS_FILE, buf.getvalue())
        arrays["top_images"] = ARRAYS_FILE

    claims = _claims(rows, layers, eps_grid, final_epoch, sm_layer, s_eps, simple, mm)
    return ExperimentResult(
        name=NAME, title=TITLE, paper="Wang et al. 2018",
        summary=(f"Two {cfg.match_model} networks (runs {name_a} and {name_b}, seeds {ctx.runs.seed_of(name_a)} and "
                 f"{ctx.runs.seed_of(name_b)}) trained for {cfg.epochs} epochs on {len(ctx.data.train)} {cfg.dataset} images; "
                 f"maximum matching similarity of layers {', '.join(layers)} on a probe of {len(ctx.data.probe)} test "
                 f"images (conv layers: channels as neurons, {k} seeded position(s) per image, {cfg.match_rows} rows "
                 f"x {cfg.match_repeats} repeats) for eps in {', '.join(f'{e:g}' for e in eps_grid)}; "
                 f"{len(simple)} simple matches of {sm_layer} at eps {s_eps:g}."),
        claims=claims,
        tables={"similarity": rows, "simple_matches": sm_rows, "top_images": top_rows},
        arrays=arrays,
        provenance=ctx.provenance(run_a=name_a, run_b=name_b, positions_per_image=k, simple_match_layer=sm_layer,
                                  simple_match_eps=s_eps))


def _gram(A: np.ndarray, B: np.ndarray, n_rows: int, seed: int) -> MatchGram:
    """MatchGram of the rows of repeat 0 of :func:`deepspan.layer_match_similarity` (all rows when few)."""
    A, B = np.asarray(A, dtype=np.float64), np.asarray(B, dtype=np.float64)
    if len(A) > n_rows:
        idx = np.sort(np.random.default_rng([seed, 0]).choice(len(A), size=n_rows, replace=False))
        A, B = A[idx], B[idx]
    return MatchGram.from_activations(A, B)


def _top_images(ctx: ReproContext, name_a: str, name_b: str, label: str, layer: str, simple: list, shown: list[int]
                ) -> tuple[list[dict[str, Any]], dict[str, np.ndarray]]:
    if not shown:
        return [], {}
    from deepspan.features import extract

    n_img = len(ctx.data.probe)
    pooled = {}
    for side, name in (("a", name_a), ("b", name_b)):
        fs = extract(ctx.runs.load(name, label), ctx.data.probe, layer, policy="channels", progress=False)
        pooled[side] = pooled_activations(fs[layer], n_img)
    rows: list[dict[str, Any]] = []
    imgs, idxs, vals, match_ids, sides, neurons = [], [], [], [], [], []
    for i in shown:
        m = simple[i]
        members = [("a", int(j)) for j in m.a] + [("b", int(j)) for j in m.b]
        for side, j in members[:MAX_NEURONS_SHOWN]:
            top = top_activating(pooled[side], j, TOP_K)
            act = pooled[side][top, j]
            imgs.append(ctx.data.probe.X[top].astype(np.float32))
            idxs.append(top)
            vals.append(act)
            match_ids.append(i)
            sides.append(side)
            neurons.append(j)
            for rank, (p, v) in enumerate(zip(top, act)):
                rows.append({"match": i, "side": side, "neuron": j, "rank": rank, "probe_index": int(p),
                             "activation": float(v), "label": int(ctx.data.probe.y[p])})
    arrays = {"images": np.stack(imgs), "indices": np.stack(idxs).astype(np.int64),
              "activations": np.stack(vals).astype(np.float64), "match": np.array(match_ids, dtype=np.int64),
              "side": np.array(sides), "neuron": np.array(neurons, dtype=np.int64),
              "labels": np.asarray(ctx.data.probe.y)[np.stack(idxs)].astype(np.int64)}
    return rows, arrays


def _sims(rows: list[dict[str, Any]], comparison: str, epoch: int, eps: float) -> dict[str, float]:
    return {r["layer"]: r["similarity"] for r in rows
            if r["comparison"] == comparison and r["epoch"] == epoch and math.isclose(r["eps"], eps)}


def _claims(rows: list[dict[str, Any]], layers: list[str], eps_grid: tuple[float, ...], final_epoch: int,
            sm_layer: str, s_eps: float, simple: list, mm) -> list[Claim]:
    e = claim_eps(eps_grid)
    inter = intermediate_layers(layers)
    trained = _sims(rows, "A vs B", final_epoch, e)
    untrained = _sims(rows, "A vs B", 0, e)
    _, low_mean = low_similarity_rule(trained, inter)
    m1 = [Measured(f"trained_{layer}", f"trained pair, {layer}: max-match similarity at eps {e:g}", trained[layer])
          for layer in layers]
    m1.append(Measured("trained_intermediate_mean", f"trained pair: mean over {', '.join(inter)} at eps {e:g}",
                       low_mean))
    smallest = min(eps_grid)
    m1.append(Measured("trained_intermediate_mean_min_eps",
                       f"trained pair: mean over {', '.join(inter)} at eps {smallest:g}",
                       float(np.mean([_sims(rows, 'A vs B', final_epoch, smallest)[layer] for layer in inter]))))

    by_eps = {eps: _sims(rows, "A vs B", final_epoch, eps) for eps in eps_grid}
    trend_passed, _ = layer_trend_rule(by_eps, layers)
    later_mean = float(np.mean([trained[layer] for layer in layers[1:]]))
    m2 = [Measured("first_layer", f"trained pair, first layer {layers[0]} at eps {e:g}", trained[layers[0]]),
          Measured("later_layers_mean", f"trained pair, mean over later layers at eps {e:g}", later_mean),
          Measured("trend_eps_passed", "eps values where the first layer is more similar than the later ones",
                   trend_passed)]
    trend_checks = []
    for eps, sims in by_eps.items():
        m2 += [Measured(f"first_layer_eps_{eps:g}", f"trained pair, first layer at eps {eps:g}", sims[layers[0]]),
               Measured(f"later_layers_mean_eps_{eps:g}", f"trained pair, mean over later layers at eps {eps:g}",
                        float(np.mean([sims[layer] for layer in layers[1:]])))]
        trend_checks.append(Check(f"eps {eps:g}", (Condition(f"first_layer_eps_{eps:g}", ">",
                                                             f"later_layers_mean_eps_{eps:g}"),)))

    _, gain = training_gain_rule(trained, untrained, inter)
    m3 = [Measured(f"untrained_{layer}", f"untrained pair (init), {layer}: similarity at eps {e:g}", untrained[layer])
          for layer in layers]
    m3.append(Measured("training_gain", f"trained minus untrained similarity, mean over {', '.join(inter)}", gain))

    sizes = [m.size for m in simple]
    _, med = small_matches_rule(sizes)
    m4 = [Measured("n_simple_matches", f"simple matches of {sm_layer} at eps {s_eps:g}", len(simple)),
          Measured("median_simple_size", "median simple-match size (neurons of both networks)", med),
          Measured("max_simple_size", "largest simple-match size", max(sizes) if sizes else None),
          Measured("max_match_size", f"maximum-match size of {sm_layer} at eps {s_eps:g} (these rows)", mm.size),
          Measured("layer_neurons", f"neurons of {sm_layer} in both networks", mm.n_a + mm.n_b)]

    quote_abs = ("Experimental results suggest that, surprisingly, representations learned by the same convolutional "
                 "layers of networks trained from different initializations are not as similar as prevalently "
                 "expected, at least in terms of subspace match.")
    return [
        Claim("c1", quote=quote_abs, source="Wang et al. 2018, Abstract; Sec. 5 (maximum match over the layers)",
              rule=Rule(f"trained pair (A and B at their final epoch): the maximum matching similarity at eps {e:g}, "
                        f"averaged over the intermediate layers ({', '.join(inter)}), is < {LOW_SIM:g}",
                        (Check("low similarity", (Condition("trained_intermediate_mean", "<", LOW_SIM),)),)),
              measured=m1),
        Claim("c2", quote=("the similarity is highest in the lowest layers and lower in the layers above "
                           "(the layer-wise maximum-match curves)"),
              source="Wang et al. 2018, Sec. 5, layer-wise maximum matching similarity (paraphrase)",
              rule=Rule(f"trained pair: at each eps of the grid the first layer ({layers[0]}) has a higher similarity "
                        f"than the mean of the later layers ({', '.join(layers[1:])})", tuple(trend_checks)),
              measured=m2,
              note="a trend claim compared first vs later layers, as deepspan's rules require"),
        Claim("c3", quote=("the representations learned from different initializations are not as similar as "
                           "prevalently expected: training does not make the two networks' intermediate layers match "
                           "much better than at initialisation"),
              source="Wang et al. 2018, Abstract (paraphrase; deepspan's operationalisation with the untrained pair "
                     "as the reference)",
              rule=Rule(f"the similarity at eps {e:g} of the trained pair minus that of the untrained pair (both "
                        f"networks at init), averaged over {', '.join(inter)}, is < {GAIN_MAX:g}",
                        (Check("small gain", (Condition("training_gain", "<", GAIN_MAX),)),)),
              measured=m3),
        Claim("c4", quote=("the finest units of shared representation, the simple matches, are small groups of "
                           "neurons"),
              source="Wang et al. 2018, Sec. 5, simple matches (paraphrase)",
              rule=Rule(f"trained pair, layer {sm_layer} (the last conv layer with a non-empty maximum match), eps "
                        f"{s_eps:g}, {len(simple)} simple matches: the median size (neurons of both networks) is "
                        f"<= {SMALL_SIZE}; not reproduced when there is no match",
                        (Check("small matches", (Condition("median_simple_size", "<=", SMALL_SIZE),)),)),
              measured=m4),
    ]


EXPERIMENT = Experiment(NAME, TITLE, "Wang et al. 2018", run, figures="deepspan.report.fig_subspace_match",
                        claims=("c1", "c2", "c3", "c4"))
