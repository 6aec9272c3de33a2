"""Experiment 8 -- the P-vector angle beside the standard representation-similarity measures.

deepspan's own comparison: no paper states how the P-vector angle (Liu et al. 2022) relates to linear CKA
(Kornblith, Norouzi, Lee, Hinton, ICML 2019), SVCCA (Raghu, Gilmer, Yosinski, Sohl-Dickstein, NeurIPS
2017) or the Procrustes shape distance (Williams, Kunz, Kornblith, Linderman, NeurIPS 2021). So every
claim here is **descriptive** (no rule, no verdict): it shows the numbers side by side.

Protocol
--------
The feature layer (``ctx.runs.feature_layer``: penultimate post-activation of a classifier, bottleneck of
the autoencoder, encoder output of SimCLR) of every P-vector zoo model (``cfg.zoo_names``) at its final
checkpoint, on the fixed held-out probe (``ctx.data.probe``, split ``"test"``, conv outputs flattened).
For every unordered pair of models: linear CKA, SVCCA (99 % of the variance kept), the Procrustes
distance (all via :func:`deepspan.compare_many`), and the P-vector angle, uncentered (Liu et al.'s plain
SVD) and column-centered (CKA, SVCCA and Procrustes all center the features, so the centered angle is the
like-for-like reading).

Rank agreement over the trained pairs: Spearman's rho between the |cos| of the P-vector angle and each
measure, oriented so that a positive rho means "the measures rank the pairs alike" (the Procrustes
distance enters with its sign flipped), with a two-sided seeded permutation p-value (``N_PERM``). Pairs
share models, so they are not independent: the p-value is indicative only.

Null baselines -- context shown beside the numbers, never conditions:

* ``untrained``: the same models at initialisation (their ``init`` checkpoints);
* ``random``: seeded random ReLU feature maps phi(x) = max(0, W x + b) of the flattened probe images
  (two seeds per width in ``cfg.random_widths``), compared with each other (``random``) and with every
  trained model (``trained vs random``): how much similarity input-driven features get with no training;
* each model's final features against its own initial ones (``own_init``).

The trained pairs' mean linear CKA and mean P-vector angles (both readings) carry a 95 % bootstrap interval
and a permutation p-value (:func:`deepspan.measures.significance.mean_significance`: one resample or one
shuffle of the probe images applied to every pair, ``cfg.n_boot`` / ``cfg.n_perm`` of them).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from deepspan import angle, compare_many, top_singular
from deepspan.experiments.base import Experiment
from deepspan.experiments.context import ReproContext
from deepspan.experiments.convergence import protocol
from deepspan.experiments.pvector_demo import random_relu_features
from deepspan.experiments.statistics import permutation_p, spearman
from deepspan.results import Claim, ExperimentResult, Measured

NAME = "baselines"
TITLE = "P-vector angle beside linear CKA, SVCCA and Procrustes"
PAPERS = "Kornblith et al. 2019; Raghu et al. 2017; Williams et al. 2021; Liu et al. 2022"

N_PERM = 10_000       # seeded permutations for the p-value of a rank correlation
MEASURES = ("linear_cka", "svcca", "procrustes")
# +1: a similarity (larger = more alike); -1: a distance (enters the rank agreement negated)
ORIENTATION = {"linear_cka": 1.0, "svcca": 1.0, "procrustes": -1.0}
SHORT = {"linear_cka": "cka", "svcca": "svcca", "procrustes": "procrustes"}
LABELS = {"linear_cka": "linear CKA", "svcca": "SVCCA (99 % variance)", "procrustes": "Procrustes distance"}
SETS = ("trained", "untrained", "random", "trained vs random")


def random_maps(X: np.ndarray, widths: tuple[int, ...], seed: int) -> dict[str, np.ndarray]:
    """Random ReLU feature maps of the flattened probe images: two seeds per width (float64)."""
    out: dict[str, np.ndarray] = {}
    for i, w in enumerate(widths):
        for j in (1, 2):
            out[f"ReLU-{w} #{j}"] = random_relu_features(X, int(w), seed + 1000 + 2 * i + (j - 1))
    return out


def pair_table(feats: dict[str, np.ndarray], pv: dict[tuple[str, bool], np.ndarray], set_: str,
               pairs: list[tuple[str, str]] | None = None,
               measures: tuple[str, ...] = MEASURES) -> list[dict[str, Any]]:
    """One row per pair: each of ``measures`` and the P-vector angle / |cos| (uncentered and ``_centered``).

    ``pairs`` defaults to every unordered pair a < b in the insertion order of ``feats``; ``pv`` maps
    (name, centered) to that set's P-vector on the same samples.
    """
    names = list(feats)
    if pairs is None:
        pairs = [(a, b) for i, a in enumerate(names) for b in names[i + 1:]]
    used = sorted({n for p in pairs for n in p}, key=names.index)
    vals: dict[frozenset, dict[str, float]] = {}
    for r in compare_many({n: feats[n] for n in used}, list(measures)):
        vals.setdefault(frozenset((r["model_a"], r["model_b"])), {})[r["measure"]] = r["value"]
    rows = []
    for a, b in pairs:
        row: dict[str, Any] = {"set": set_, "a": a, "b": b, **vals[frozenset((a, b))]}
        for center, tag in ((False, ""), (True, "_centered")):
            ang = angle(pv[(a, center)], pv[(b, center)])
            row[f"pvector_angle{tag}"] = ang
            row[f"pvector_cos{tag}"] = float(np.cos(np.radians(ang)))
        rows.append(row)
    return rows


def rank_agreement(rows: list[dict[str, Any]], seed: int = 0, n_perm: int = N_PERM) -> dict[str, float]:
    """Spearman rho over the pairs between the P-vector |cos| (both readings) and each measure present in the
    rows, oriented so that rho > 0 means the same ranking (distances negated); permutation p-values of the
    uncentered ones; and the measures against each other (CKA vs the others)."""
    present = [m for m in MEASURES if rows and all(m in r for r in rows)]
    col = {m: [ORIENTATION[m] * r[m] for r in rows] for m in present}
    pv = [r["pvector_cos"] for r in rows]
    pvc = [r["pvector_cos_centered"] for r in rows]
    out: dict[str, float] = {}
    for m in present:
        s = SHORT[m]
        out[f"rho_pv_{s}"] = spearman(pv, col[m])
        out[f"p_pv_{s}"] = permutation_p(pv, col[m], n_perm=n_perm, seed=seed)
        out[f"rho_pvc_{s}"] = spearman(pvc, col[m])
        out[f"p_pvc_{s}"] = permutation_p(pvc, col[m], n_perm=n_perm, seed=seed)
    for m in present:
        if m != "linear_cka" and "linear_cka" in present:
            out[f"rho_cka_{SHORT[m]}"] = spearman(col["linear_cka"], col[m])
    out["rho_pv_pvc"] = spearman(pv, pvc)
    return out


def levels(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per set of pairs: the number of pairs and the mean of every measure and of the P-vector angles."""
    out = []
    for set_ in SETS:
        rs = [r for r in rows if r["set"] == set_]
        if not rs:
            continue
        out.append({"set": set_, "n_pairs": len(rs),
                    **{f"mean_{k}": float(np.mean([r[k] for r in rs]))
                       for k in (*MEASURES, "pvector_angle", "pvector_angle_centered")}})
    return out


def run(ctx: ReproContext) -> ExperimentResult:
    from deepspan import cka, procrustes, svcca

    names = list(ctx.cfg.zoo_names)
    for name in names:
        ctx.runs.ensure_trained(name)
    finals = {name: ctx.runs.final_label(name) for name in names}
    feats = {"trained": {n: ctx.stats.features(n, finals[n], split="test") for n in names},
             "untrained": {n: ctx.stats.features(n, "init", split="test") for n in names}}
    pv: dict[str, dict[tuple[str, bool], np.ndarray]] = {"trained": {}, "untrained": {}}
    for n in names:
        for center in (False, True):
            pv["trained"][(n, center)] = ctx.stats.pvector(n, finals[n], center, split="test")
            pv["untrained"][(n, center)] = ctx.stats.pvector(n, "init", center, split="test")
    X = ctx.data.probe.X.reshape(len(ctx.data.probe), -1).astype(np.float64)
    rand = random_maps(X, tuple(ctx.cfg.random_widths), ctx.cfg.seed)
    rand_pv = {(k, c): top_singular(F, 1, center=c).U[:, 0] for k, F in rand.items() for c in (False, True)}

    rows = pair_table(feats["trained"], pv["trained"], "trained")
    rows += pair_table(feats["untrained"], pv["untrained"], "untrained")
    rows += pair_table(rand, rand_pv, "random")
    both = {**feats["trained"], **rand}
    rows += pair_table(both, {**pv["trained"], **rand_pv}, "trained vs random",
                       pairs=[(a, b) for a in names for b in rand])
    own = []
    for n in names:
        A, B = feats["trained"][n], feats["untrained"][n]
        own.append({"model": n, "linear_cka": cka(A, B), "svcca": svcca(A, B), "procrustes": procrustes(A, B),
                    "pvector_angle": angle(pv["trained"][(n, False)], pv["untrained"][(n, False)]),
                    "pvector_angle_centered": angle(pv["trained"][(n, True)], pv["untrained"][(n, True)])})
    trained = [r for r in rows if r["set"] == "trained"]
    agree = rank_agreement(trained, seed=ctx.cfg.seed)
    agree_u = rank_agreement([r for r in rows if r["set"] == "untrained"], seed=ctx.cfg.seed)
    lv = levels(rows)
    stats = mean_stats(ctx, feats["trained"])
    for row in lv:
        if row["set"] == "trained":
            for key, sig in stats.items():
                row.update({f"mean_{key}_ci_low": sig.ci_low, f"mean_{key}_ci_high": sig.ci_high,
                            f"mean_{key}_p_value": sig.p_value})
    claims = _claims(agree, agree_u, lv, own, len(trained), stats)
    return ExperimentResult(
        name=NAME, title=TITLE, paper=PAPERS,
        summary=(f"Linear CKA, SVCCA (99 % variance), the Procrustes distance and the P-vector angle (uncentered and "
                 f"centered) between the feature layers of {len(names)} trained models ({len(trained)} pairs) on a "
                 f"held-out probe of {len(ctx.data.probe)} test images; beside them, as null baselines, the same "
                 f"for the untrained models, for {len(rand)} random ReLU feature maps of the images (with each "
                 f"other and with every trained model), and each model against its own initialisation. "
                 f"Descriptive: no paper states how these measures relate."),
        claims=claims,
        tables={"pairs": rows, "own_init": own, "levels": lv,
                "agreement": [{"set": "trained", **agree}, {"set": "untrained", **agree_u}]},
        provenance=ctx.provenance(measures=list(MEASURES)),
        protocol=protocol(ctx, names, split="test", centering=(
            "both readings of the P-vector angle: uncentered (plain SVD, as Liu et al. write it) and "
            "column-centered; linear CKA, SVCCA and Procrustes center the features themselves"), extra={
            "checkpoints": {"trained": finals, "untrained": "init"},
            "measures": {"linear_cka": "Kornblith et al. 2019", "svcca": "Raghu et al. 2017, 99 % variance kept",
                         "procrustes": "Williams et al. 2021, distance in [0, 2]",
                         "pvector_angle": "Liu et al. 2022, degrees, both centerings"},
            "null_baselines": {"untrained": "init checkpoints of the same models",
                               "random": f"random ReLU maps of the flattened probe images, widths "
                                         f"{list(ctx.cfg.random_widths)}, two seeds each",
                               "role": "context beside the numbers, never a condition"},
            "agreement": {"statistic": "Spearman rho over the trained pairs (distances negated)",
                          "p_value": f"two-sided permutation, {N_PERM} seeded permutations; pairs share models, "
                                     f"so indicative only"},
        }))


def _level(lv: list[dict[str, Any]], set_: str, key: str) -> float | None:
    row = next((r for r in lv if r["set"] == set_), None)
    return None if row is None else row[f"mean_{key}"]


QUESTION_SOURCE = ("deepspan's comparison of measures; no paper states it. Measures: {measure}; the P-vector "
                   "angle from Liu et al. 2022")


def mean_stats(ctx: ReproContext, feats: dict[str, np.ndarray]) -> dict[str, Any]:
    """The significance of the trained pairs' mean linear CKA and mean P-vector angles (both readings):
    :func:`deepspan.measures.significance.mean_significance` on the probe features, ``cfg.n_perm``
    permutations and ``cfg.n_boot`` resamples of the probe images (the same for every pair). Keyed as the
    means of :func:`levels` (``linear_cka``, ``pvector_angle``, ``pvector_angle_centered``)."""
    from deepspan.measures import MEASURES as REGISTRY
    from deepspan.measures.significance import mean_significance

    names = list(feats)
    pairs = [(feats[a], feats[b]) for i, a in enumerate(names) for b in names[i + 1:]]
    if not pairs:
        return {}
    cfg = ctx.cfg
    specs = {"linear_cka": REGISTRY["linear_cka"],
             "pvector_angle": REGISTRY["pvector_angle"].with_params(center=False),
             "pvector_angle_centered": REGISTRY["pvector_angle"].with_params(center=True)}
    return {key: mean_significance(pairs, spec, n_perm=cfg.n_perm, n_boot=cfg.n_boot, seed=cfg.seed)
            for key, spec in specs.items()}


def _with_stats(m: Measured, sig: Any) -> Measured:
    """``m`` with the interval and p-value of ``sig`` (None: unchanged)."""
    if sig is None:
        return m
    return Measured(m.key, m.label, m.value, m.unit, sig.ci_low, sig.ci_high, sig.p_value)


def _claims(agree: dict[str, float], agree_u: dict[str, float], lv: list[dict[str, Any]],
            own: list[dict[str, Any]], n: int, stats: dict[str, Any] | None = None) -> list[Claim]:
    stats = stats or {}
    claims = []
    refs = {"linear_cka": "Kornblith et al. 2019 (linear CKA)", "svcca": "Raghu et al. 2017 (SVCCA)",
            "procrustes": "Williams et al. 2021 (Procrustes shape distance)"}
    for i, m in enumerate(MEASURES, start=1):
        s = SHORT[m]
        orient = "" if ORIENTATION[m] > 0 else " (a distance: negated, so rho > 0 means the same ranking)"
        claims.append(Claim(
            f"c{i}", quote=(f"Question (deepspan's, not a paper's claim): does the P-vector angle rank the pairs of "
                            f"trained models as {LABELS[m]} does?"),
            quote_kind="paraphrase", source=QUESTION_SOURCE.format(measure=refs[m]), rule=None,
            measured=[Measured(f"rho_pv_{s}", f"Spearman rho over {n} trained pairs: uncentered P-vector |cos| vs "
                               f"{LABELS[m]}{orient}", agree.get(f"rho_pv_{s}")),
                      Measured(f"p_pv_{s}", "permutation p-value of that rho (two-sided, indicative)",
                               agree.get(f"p_pv_{s}")),
                      Measured(f"rho_pvc_{s}", f"Spearman rho: centered P-vector |cos| vs {LABELS[m]}",
                               agree.get(f"rho_pvc_{s}")),
                      Measured(f"p_pvc_{s}", "permutation p-value of the centered rho", agree.get(f"p_pvc_{s}")),
                      Measured(f"rho_pv_{s}_untrained", "null context -- the same rho over the untrained models' "
                               "pairs (uncentered)", agree_u.get(f"rho_pv_{s}")),
                      _with_stats(Measured(f"mean_{s}_trained", f"mean {LABELS[m]} over the trained pairs",
                                           _level(lv, "trained", m)), stats.get(m)),
                      Measured(f"mean_{s}_untrained", "null context -- mean over the untrained pairs",
                               _level(lv, "untrained", m)),
                      Measured(f"mean_{s}_trained_vs_random", "null context -- mean over (trained model, random "
                               "ReLU map) pairs", _level(lv, "trained vs random", m)),
                      Measured(f"mean_{s}_own_init", "null context -- mean of each model against its own "
                               "initialisation", float(np.mean([r[m] for r in own])) if own else None)]
            + ([Measured("n_pairs", "trained model pairs", n)] if i == 1 else []),
            note=(f"Descriptive: no paper relates the P-vector angle to {LABELS[m]}, so no verdict is given. "
                  f"{n} pairs share models, so the pairs are not independent and the permutation p-value is "
                  f"indicative only. {LABELS[m]} centers the features; the centered P-vector is the like-for-like "
                  f"reading. The untrained and random-feature values are null baselines shown for context.")))
    claims.append(Claim(
        "c4", quote=("Question (deepspan's): how far does each measure place the trained pairs from the null "
                     "baselines (untrained models, random ReLU features of the images)?"),
        quote_kind="paraphrase",
        source=("deepspan's comparison; Liu et al. 2022, Abstract, report small angles between trained networks; "
                "the levels of the other measures are Kornblith et al. 2019, Raghu et al. 2017, Williams et al. 2021"),
        rule=None,
        measured=[_with_stats(Measured(f"mean_pvector_angle_{tag}_{set_.replace(' ', '_')}",
                                       f"mean {reading} P-vector angle, {set_} pairs", _level(lv, set_, key), "deg"),
                              stats.get(key) if set_ == "trained" else None)
                  for set_ in SETS for tag, reading, key in (("unc", "uncentered", "pvector_angle"),
                                                             ("cen", "centered", "pvector_angle_centered"))],
        note=("Descriptive. Liu et al. 2022 (Abstract) find 'cosine close to 1.0' between trained networks; that "
              "claim is judged in the common-subspace experiment. Here the same angles stand beside the null "
              "baselines: an uncentered P-vector of non-negative features lies near the mean feature direction, so "
              "untrained and random maps give small uncentered angles too.")))
    return claims


EXPERIMENT = Experiment(NAME, TITLE, PAPERS, run, figures="deepspan.report.fig_baselines",
                        claims=("c1", "c2", "c3", "c4"))
