"""Experiment 8 -- the P-vector angle beside the standard baselines (linear CKA, SVCCA) across models.

deepspan's own comparison (no paper states it): Kornblith, Norouzi, Lee, Hinton, "Similarity of Neural
Network Representations Revisited", ICML 2019 (Abstract; Sec. 6) report that linear CKA identifies
corresponding layers of networks trained from different initialisations and across architectures;
Raghu et al. 2017 introduced SVCCA; Liu et al. 2022 (Abstract) report small P-vector angles between
any two trained networks. The measured question: do these measures agree on *which* pairs of trained
models are most alike?

For the feature layers of the final zoo models on the fixed probe, deepspan computes for every pair of
models: linear CKA (:func:`deepspan.cka`), SVCCA at 99 % variance (:func:`deepspan.svcca`) through
:func:`deepspan.compare_many`, and the P-vector angle (uncentered, Liu et al.'s plain SVD, and
column-centered). Agreement is the Spearman rank correlation over the model pairs between the cosine
of the P-vector angle and CKA (resp. SVCCA). For contrast, the same matrix is computed for the untrained
models (``init`` checkpoints), and each model's final features are compared with its own initial ones.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from deepspan import angle, compare_many
from deepspan.experiments.base import Experiment
from deepspan.experiments.context import ReproContext
from deepspan.experiments.statistics import permutation_p, spearman
from deepspan.results import Check, Claim, Condition, ExperimentResult, Measured, Rule

NAME = "baselines"
TITLE = "P-vector angle beside linear CKA and SVCCA"

# rule (stated in the claims and the report)
AGREE_RHO = 0.5       # Spearman rho above this ...
AGREE_P = 0.05        # ... with a permutation p-value below this: the measures rank the model pairs alike
N_PERM = 10_000       # seeded permutations for the p-value of a rank correlation
MEASURES = ("linear_cka", "svcca")


def agreement_rule(what: str, n: int, rho_key: str, p_key: str) -> Rule:
    """rho > AGREE_RHO with permutation p < AGREE_P: reproduced; otherwise rho > 0: partly; else not reproduced."""
    return Rule(f"Spearman rank correlation over the {n} pairs of trained models between |cos| of the uncentered "
                f"P-vector angle and {what}: the measures agree on which pairs are most alike if rho > {AGREE_RHO:g} "
                f"with a two-sided permutation p-value < {AGREE_P:g}; the weaker check: rho > 0",
                (Check("agree", (Condition(rho_key, ">", AGREE_RHO), Condition(p_key, "<", AGREE_P))),),
                partial=(Check("positive", (Condition(rho_key, ">", 0.0),)),))


def pair_table(feats: dict[str, np.ndarray], pv: dict[tuple[str, bool], np.ndarray], set_: str) -> list[dict[str, Any]]:
    """One row per unordered model pair: linear CKA, SVCCA and the P-vector angle / |cos| (uncentered, centered)."""
    vals: dict[tuple[str, str], dict[str, float]] = {}
    for r in compare_many(feats, list(MEASURES)):
        vals.setdefault((r["model_a"], r["model_b"]), {})[r["measure"]] = r["value"]
    names = list(feats)
    rows = []
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            row: dict[str, Any] = {"set": set_, "a": a, "b": b, **vals[(a, b)]}
            for center, tag in ((False, ""), (True, "_centered")):
                ang = angle(pv[(a, center)], pv[(b, center)])
                row[f"pvector_angle{tag}"] = ang
                row[f"pvector_cos{tag}"] = float(np.cos(np.radians(ang)))
            rows.append(row)
    return rows


def rank_agreement(rows: list[dict[str, Any]], seed: int = 0) -> dict[str, float]:
    """Spearman rho over the pairs between the P-vector |cos| (both readings) and each baseline, and CKA vs SVCCA,
    with permutation p-values of the two primary correlations."""
    col = {k: [r[k] for r in rows] for k in ("linear_cka", "svcca", "pvector_cos", "pvector_cos_centered")}
    return {"rho_pv_cka": spearman(col["pvector_cos"], col["linear_cka"]),
            "p_pv_cka": permutation_p(col["pvector_cos"], col["linear_cka"], seed=seed),
            "rho_pv_svcca": spearman(col["pvector_cos"], col["svcca"]),
            "p_pv_svcca": permutation_p(col["pvector_cos"], col["svcca"], seed=seed),
            "rho_pvc_cka": spearman(col["pvector_cos_centered"], col["linear_cka"]),
            "rho_pvc_svcca": spearman(col["pvector_cos_centered"], col["svcca"]),
            "rho_cka_svcca": spearman(col["linear_cka"], col["svcca"])}


def run(ctx: ReproContext) -> ExperimentResult:
    from deepspan import cka, svcca

    names = ctx.cfg.names
    for name in names:
        ctx.runs.ensure_trained(name)
    finals = {name: ctx.runs.final_label(name) for name in names}
    feats = {"trained": {n: ctx.stats.features(n, finals[n]) for n in names},
             "untrained": {n: ctx.stats.features(n, "init") for n in names}}
    pv = {}
    for n in names:
        for set_, label in (("trained", finals[n]), ("untrained", "init")):
            for center in (False, True):
                pv[(set_, n, center)] = ctx.stats.pvector(n, label, center)
    rows: list[dict[str, Any]] = []
    for set_ in ("trained", "untrained"):
        rows += pair_table(feats[set_], {(n, c): pv[(set_, n, c)] for n in names for c in (False, True)}, set_)
    own = []
    for n in names:
        A, B = feats["trained"][n], feats["untrained"][n]
        own.append({"model": n, "linear_cka": cka(A, B), "svcca": svcca(A, B),
                    "pvector_angle": angle(pv[("trained", n, False)], pv[("untrained", n, False)]),
                    "pvector_angle_centered": angle(pv[("trained", n, True)], pv[("untrained", n, True)])})
    trained = [r for r in rows if r["set"] == "trained"]
    agree = rank_agreement(trained, seed=ctx.cfg.seed)
    agree_u = rank_agreement([r for r in rows if r["set"] == "untrained"], seed=ctx.cfg.seed)
    claims = _claims(agree, agree_u, trained, [r for r in rows if r["set"] == "untrained"], own)
    return ExperimentResult(
        name=NAME, title=TITLE, paper="Kornblith et al. 2019; Raghu et al. 2017; Liu et al. 2022",
        summary=(f"Linear CKA, SVCCA (99 % variance) and the P-vector angle (uncentered and centered) between the "
                 f"feature layers of {len(names)} final models ({len(trained)} pairs) on {len(ctx.data.probe)} probe "
                 f"images; the same for the untrained models, and each model against its own initialisation."),
        claims=claims,
        tables={"pairs": rows, "own_init": own,
                "agreement": [{"set": "trained", **agree}, {"set": "untrained", **agree_u}]},
        provenance=ctx.provenance(measures=list(MEASURES)))


def _mean(rows: list[dict[str, Any]], key: str) -> float:
    return float(np.mean([r[key] for r in rows])) if rows else float("nan")


def _claims(agree: dict[str, float], agree_u: dict[str, float], trained: list[dict[str, Any]],
            untrained: list[dict[str, Any]], own: list[dict[str, Any]]) -> list[Claim]:
    n = len(trained)
    context = [
        Measured("mean_cka_trained", "mean linear CKA between trained models", _mean(trained, "linear_cka")),
        Measured("mean_cka_untrained", "mean linear CKA between untrained models", _mean(untrained, "linear_cka")),
        Measured("mean_cka_own_init", "mean linear CKA of each model with its own initialisation",
                 _mean(own, "linear_cka")),
        Measured("mean_pv_cos_trained", "mean |cos| of the uncentered P-vector angle between trained models",
                 _mean(trained, "pvector_cos")),
    ]
    src = ("deepspan's comparison of measures (no paper claims it); Kornblith et al. 2019, Abstract and Sec. 6 "
           "(CKA); Raghu et al. 2017 (SVCCA); Liu et al. 2022, Abstract (P-vector angles)")
    quote = ("Unlike CCA, CKA can reliably identify correspondences between representations in networks trained "
             "from different initializations. (Kornblith et al. 2019) -- and: Small angles (with cosine close to "
             "1.0) have been found in the comparisons between any two DNNs trained with different "
             "algorithms/architectures. (Liu et al. 2022)")
    note_n = (f"{n} model pairs (pairs share models, so they are not independent): permutation p-value of the "
              f"P-vector-vs-CKA rho {agree['p_pv_cka']:.3f}, of the P-vector-vs-SVCCA rho {agree['p_pv_svcca']:.3f} "
              f"({N_PERM} seeded permutations, two-sided). ")
    return [
        Claim("c1", quote=quote, source=src,
              rule=agreement_rule("linear CKA", n, "rho_pv_cka", "p_pv_cka"),

              measured=[Measured("rho_pv_cka", "Spearman rho: uncentered P-vector |cos| vs linear CKA",
                                 agree["rho_pv_cka"]),
                        Measured("rho_pvc_cka", "Spearman rho: centered P-vector |cos| vs linear CKA",
                                 agree["rho_pvc_cka"]),
                        Measured("rho_pv_cka_untrained", "Spearman rho (untrained models): uncentered P-vector |cos| "
                                 "vs linear CKA", agree_u["rho_pv_cka"]),
                        Measured("p_pv_cka", "permutation p-value of that rho (two-sided)", agree["p_pv_cka"]),
                        Measured("n_pairs", "model pairs", n), *context],
              note=note_n + ("CKA centers the features; the uncentered P-vector does not, so the centered P-vector "
                             "is the like-for-like reading (its rho is reported beside).")),
        Claim("c2", quote=quote, source=src,
              rule=agreement_rule("SVCCA (99 % variance)", n, "rho_pv_svcca", "p_pv_svcca"),

              measured=[Measured("rho_pv_svcca", "Spearman rho: uncentered P-vector |cos| vs SVCCA",
                                 agree["rho_pv_svcca"]),
                        Measured("rho_pvc_svcca", "Spearman rho: centered P-vector |cos| vs SVCCA",
                                 agree["rho_pvc_svcca"]),
                        Measured("p_pv_svcca", "permutation p-value of that rho (two-sided)", agree["p_pv_svcca"]),
                        Measured("rho_cka_svcca", "Spearman rho: linear CKA vs SVCCA", agree["rho_cka_svcca"]),
                        Measured("mean_svcca_trained", "mean SVCCA between trained models", _mean(trained, "svcca"))],
              note=note_n.strip()),
    ]


EXPERIMENT = Experiment(NAME, TITLE, "Kornblith et al. 2019; Raghu et al. 2017; Liu et al. 2022", run,
                        figures="deepspan.report.fig_baselines", claims=("c1", "c2"))
