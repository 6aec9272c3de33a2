"""Experiment 2 -- a common principal subspace across trained models, against null baselines.

Liu, Xiong, Wang, An, Wu, Dou, "Exploring the Common Principal Subspace of Deep Features in Neural
Networks", Machine Learning 111 (2022), arXiv 2110.02863 (Abstract; Sec. 4): "Small angles (with cosine
close to 1.0) have been found in the comparisons between any two DNNs trained with different
algorithms/architectures."

deepspan computes the pairwise angle matrix of the P-vectors (top left singular vectors on the fixed
probe) of the feature layers of

* ``trained``   -- every zoo model at its final checkpoint (the paper's comparison),
* ``untrained`` -- the same models at initialisation (their ``init`` checkpoints),
* ``random``    -- seeded random-feature maps of the flattened probe images: random ReLU maps
  phi(x) = max(0, W x + b) (two seeds per width in ``cfg.random_widths``) and Gaussian random
  projections x -> W x (no ReLU), see :func:`deepspan.experiments.pvector_demo.random_relu_features`,

and, as the reference point of "no relation", the angle between independent random unit vectors of
R^N (concentrated near 90 degrees: E|cos| ~ sqrt(2 / (pi N))).

The claim is judged on the trained pairs only, by the paper's number: every pair's angle below 10°
(cosine above cos 10° = 0.985; "cosine close to 1.0", Abstract; curves end "smaller than 10°" across
supervision types, A.1). The untrained and random baselines are context shown beside the verdict:
an uncentered P-vector of non-negative (ReLU) features lies close to the mean feature direction, so
untrained networks and random maps give small angles too. The paper does not say whether the
features are column-centered before the SVD; both readings are judged side by side.

Every trained pair's angle and every trained model's angle to the data carries its significance
(:func:`deepspan.significance` of the P-vector angle on the probe features, ``cfg.n_perm`` permutations and
``cfg.n_boot`` bootstrap resamples): a 95 % percentile interval over resampled probe images, the permutation
p-value (one side's images shuffled against the other's: "at least as small an angle by chance") and the
central 95 % of that permutation null, drawn as a band in the summary figure. They are context for the
reader; the verdict stays the paper's 10° rule.

The angles between each model's P-vector and the data P-vector are measured on the training-set
probe (Liu et al. compare with the data "on the training dataset", A.4) and shown as a descriptive
claim (no readable number of the paper to judge them by).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from deepspan import angle, top_singular
from deepspan.experiments.base import Experiment
from deepspan.experiments.context import ReproContext
from deepspan.experiments.pvector_demo import random_relu_features
from deepspan.results import Check, Claim, Condition, ExperimentResult, Measured, Rule

NAME = "common_subspace"
TITLE = "Common principal subspace across models, against untrained and random baselines"

# rules (stated in the claims and the report)
PAIR_MAX_DEG = 10.0       # the paper's number: trained pairs below 10 deg (A.1; "cosine close to 1.0", Abstract)
N_NULL_PAIRS = 200        # independent random unit-vector pairs for the 90-degree reference
SETS = ("trained", "untrained", "random")


def gaussian_projection(X: np.ndarray, width: int, seed: int) -> np.ndarray:
    """Linear random features X W with W ~ N(0, 1/D) (D = input dim), seeded, float64 (no ReLU)."""
    rng = np.random.default_rng(seed)
    W = rng.standard_normal((X.shape[1], width)) / np.sqrt(X.shape[1])
    return np.asarray(X, dtype=np.float64) @ W


def random_maps(X: np.ndarray, widths: tuple[int, ...], seed: int) -> dict[str, np.ndarray]:
    """The random-feature baselines: per width two random ReLU maps (two seeds) and one Gaussian projection."""
    out: dict[str, np.ndarray] = {}
    for i, w in enumerate(widths):
        out[f"ReLU-{w} #1"] = random_relu_features(X, w, seed + 1000 + 2 * i)
        out[f"ReLU-{w} #2"] = random_relu_features(X, w, seed + 1001 + 2 * i)
        out[f"Gauss-{w}"] = gaussian_projection(X, w, seed + 2000 + i)
    return out


def pairwise_angles(vectors: dict[str, np.ndarray]) -> list[tuple[str, str, float, float]]:
    """(a, b, angle in degrees, |cos|) for every unordered pair a < b in insertion order."""
    names = list(vectors)
    out = []
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            ang = angle(vectors[a], vectors[b])
            out.append((a, b, ang, float(np.cos(np.radians(ang)))))
    return out


def null_angles(n: int, pairs: int, seed: int) -> np.ndarray:
    """Angles (degrees) between ``pairs`` pairs of independent standard Gaussian vectors of R^n."""
    rng = np.random.default_rng(seed)
    return np.array([angle(rng.standard_normal(n), rng.standard_normal(n)) for _ in range(pairs)])


def expected_null_angle(n: int) -> float:
    """90 deg - asin(E|cos|) with E|cos| ~ sqrt(2 / (pi n)): the typical angle of two random directions in R^n."""
    return float(90.0 - np.degrees(np.arcsin(min(1.0, np.sqrt(2.0 / (np.pi * n))))))


def run(ctx: ReproContext) -> ExperimentResult:
    from deepspan.experiments.convergence import protocol

    names = ctx.cfg.zoo_names
    for name in names:
        ctx.runs.ensure_trained(name)
    X = ctx.data.probe.X.reshape(len(ctx.data.probe), -1).astype(np.float64)
    maps = random_maps(X, tuple(ctx.cfg.random_widths), ctx.cfg.seed)
    rows: list[dict[str, Any]] = []
    to_data: list[dict[str, Any]] = []
    for center in (False, True):
        vecs: dict[str, dict[str, np.ndarray]] = {s: {} for s in SETS}
        for name in names:
            vecs["trained"][name] = ctx.stats.pvector(name, ctx.runs.final_label(name), center)
            vecs["untrained"][name] = ctx.stats.pvector(name, "init", center)
        for label, F in maps.items():
            vecs["random"][label] = top_singular(F, 1, center=center).U[:, 0]
        for s in SETS:
            rows += [{"set": s, "centered": center, "a": a, "b": b, "angle": ang, "cosine": c}
                     for a, b, ang, c in pairwise_angles(vecs[s])]
        data_u = ctx.stats.data_pvector(center, split="train")
        for name in names:
            for set_, label in (("trained", ctx.runs.final_label(name)), ("untrained", "init")):
                u = ctx.stats.pvector(name, label, center, split="train")
                to_data.append({"set": set_, "centered": center, "model": name, "split": "train",
                                "angle_to_data": angle(u, data_u)})
    _add_significance(ctx, names, rows, to_data)
    null = null_angles(len(ctx.data.probe), N_NULL_PAIRS, ctx.cfg.seed)
    summary_rows = []
    for center in (False, True):
        for s in SETS:
            a = np.array([r["angle"] for r in rows if r["set"] == s and r["centered"] == center])
            summary_rows.append({"set": s, "centered": center, "pairs": len(a), "mean_angle": float(a.mean()),
                                 "min_angle": float(a.min()), "max_angle": float(a.max()),
                                 "mean_cosine": float(np.mean(np.cos(np.radians(a))))})
    summary_rows.append({"set": "random unit vectors", "centered": None, "pairs": N_NULL_PAIRS,
                         "mean_angle": float(null.mean()), "min_angle": float(null.min()),
                         "max_angle": float(null.max()), "mean_cosine": float(np.mean(np.cos(np.radians(null))))})
    claims = _claims(rows, to_data, null, len(ctx.data.probe), names, list(maps))
    return ExperimentResult(
        name=NAME, title=TITLE, paper="Liu et al. 2022",
        summary=(f"Pairwise P-vector angles of the feature layers of {len(names)} models ({', '.join(names)}) on "
                 f"{len(ctx.data.probe)} held-out probe images: trained (final checkpoints), untrained (init "
                 f"checkpoints) and {len(maps)} seeded random-feature maps of the pixels (ReLU and Gaussian, widths "
                 f"{', '.join(str(w) for w in ctx.cfg.random_widths)}); each uncentered and column-centered. "
                 f"Independent random unit vectors in R^{len(ctx.data.probe)} meet at {null.mean():.1f} deg on average. "
                 f"Angles to the data P-vector on {len(ctx.data.train_probe)} training images."),
        claims=claims, tables={"angles": rows, "summary": summary_rows, "to_data": to_data},
        provenance=ctx.provenance(random_maps=list(maps), null_pairs=N_NULL_PAIRS),
        protocol=protocol(ctx, names, extra={"pairs": "trained finals (judged); untrained inits and random maps "
                                             "(context)", "data_angles_split": "train"}))


def _add_significance(ctx: ReproContext, names: list[str], rows: list[dict[str, Any]],
                      to_data: list[dict[str, Any]]) -> None:
    """The 95 % bootstrap interval, the permutation p-value and the permutation null's central 95 % (``null_low``,
    ``null_high``) of every trained pair's angle and every trained model's angle to the data
    (:func:`deepspan.significance`
    of the P-vector angle on the probe features: ``n_boot`` resamples of the probe images, ``n_perm``
    shuffles of one side's images against the other's). Added to the rows in place."""
    from deepspan.measures import MEASURES
    from deepspan.measures.significance import significance

    cfg = ctx.cfg
    feats = {name: ctx.stats.features(name, ctx.runs.final_label(name)) for name in names}

    def put(row: dict[str, Any], A: np.ndarray, B: np.ndarray) -> None:
        spec = MEASURES["pvector_angle"].with_params(center=bool(row["centered"]))
        sig = significance(A, B, spec, n_perm=cfg.n_perm, n_boot=cfg.n_boot, seed=cfg.seed)
        low, high = np.quantile(sig.null, [0.025, 0.975])
        row.update({"ci_low": sig.ci_low, "ci_high": sig.ci_high, "p_value": sig.p_value,
                    "null_low": float(low), "null_high": float(high), "null_mean": sig.null_mean})

    for r in rows:
        if r["set"] == "trained":
            put(r, feats[r["a"]], feats[r["b"]])
    X = ctx.data.train_probe.X.reshape(len(ctx.data.train_probe), -1).astype(np.float64)
    for r in to_data:  # the trained models' (the untrained ones are context, and each costs n_boot data SVDs)
        if r["set"] == "trained":
            put(r, ctx.stats.features(r["model"], ctx.runs.final_label(r["model"]), split="train"), X)


def _claims(rows: list[dict[str, Any]], to_data: list[dict[str, Any]], null: np.ndarray, n: int, names: list[str],
            maps: list[str]) -> list[Claim]:
    quote = ("Small angles (with cosine close to 1.0) have been found in the comparisons between any two DNNs "
             "trained with different algorithms/architectures.")
    reading = {False: "uncentered", True: "centered"}
    claims = []
    for center in (False, True):
        tag = "cen" if center else "unc"
        pairs = [r for r in rows if r["set"] == "trained" and r["centered"] == center]
        measured: list[Measured] = []
        checks: list[Check] = []
        for r in pairs:
            key = f"{tag}_{r['a']}_{r['b']}"
            measured.append(Measured(key, f"{r['a']} vs {r['b']} (trained, {reading[center]})", r["angle"], "deg",
                                     r.get("ci_low"), r.get("ci_high"), r.get("p_value")))
            checks.append(Check(f"{r['a']}–{r['b']}", (Condition(key, "<", PAIR_MAX_DEG),)))

        def mean_of(set_: str) -> float:
            return float(np.mean([r["angle"] for r in rows if r["set"] == set_ and r["centered"] == center]))

        context = {f"{tag}_trained_mean": mean_of("trained"), f"{tag}_untrained_mean": mean_of("untrained"),
                   f"{tag}_random_mean": mean_of("random"), "null_mean": float(null.mean())}
        note = (f"Context (not part of the verdict), mean angles: trained {context[f'{tag}_trained_mean']:.1f} deg, "
                f"untrained (initialisations) {context[f'{tag}_untrained_mean']:.1f} deg, random-feature maps "
                f"{context[f'{tag}_random_mean']:.1f} deg, independent random unit vectors {null.mean():.1f} deg "
                f"(expected about {expected_null_angle(n):.1f}). ")
        if not center:
            note += ("Uncentered P-vectors of non-negative (ReLU) features point near the mean feature vector, so "
                     "untrained networks and random ReLU maps of the pixels also give small angles: in this reading "
                     "a small trained angle says little unless it is clearly below these baselines. ")
        note += f"Random maps: {', '.join(maps)}."
        claims.append(Claim(
            f"c_{reading[center]}", quote=quote, quote_kind="verbatim",
            source="Liu et al. 2022 (Machine Learning 111), Abstract; the 10° bound from Appendix A.1",
            rule=Rule(f"{reading[center]} features, {len(pairs)} pairs of trained models: every pair's P-vector angle "
                      f"is < {PAIR_MAX_DEG:g} deg (cosine > {np.cos(np.radians(PAIR_MAX_DEG)):.3f}; the paper's "
                      f"'smaller than 10°', A.1); untrained and random baselines are context, not conditions",
                      tuple(checks)),
            measured=measured, note=note, context=context))
    data_m = [Measured(f"data_{'cen' if r['centered'] else 'unc'}_{r['set']}_{r['model']}",
                       f"{r['model']} ({r['set']}, {reading[r['centered']]}) vs data P-vector, training probe",
                       r["angle_to_data"], "deg", r.get("ci_low"), r.get("ci_high"), r.get("p_value"))
              for r in to_data]
    claims.append(Claim(
        "c_data", quote=("we carry out case studies to measure the angle between the P-vector and the principal "
                         "subspace of training dataset"), quote_kind="verbatim",
        source="Liu et al. 2022 (Machine Learning 111), Abstract; data P-vector on the training set, Appendix A.4",
        rule=None, measured=data_m,
        note=("Descriptive: the readable parts of the paper give no number for the model-vs-data angle of a single "
              "trained model, so no verdict is given. Measured on the training-set probe, without augmentation.")))
    return claims


EXPERIMENT = Experiment(NAME, TITLE, "Liu et al. 2022", run, figures="deepspan.report.fig_common_subspace",
                        claims=("c_uncentered", "c_centered", "c_data"))
