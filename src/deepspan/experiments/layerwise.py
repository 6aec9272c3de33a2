"""Experiment 3 -- the angle between each layer's P-vector and the data P-vector, over depth and training.

Liu, Xiong, Wang, An, Wu, Dou, "Exploring the Common Principal Subspace of Deep Features in Neural
Networks", Machine Learning 111 (2022), arXiv 2110.02863, and the ICLR 2021 submission "Empirical Studies
on the Convergence of Feature Spaces in Deep Learning" (the case study connecting P-vectors to the data
distribution, Appendix A.5): the angle to the data P-vector rises through the layers early in training
and falls late (paraphrase).

For every zoo model and every epoch of ``cfg.layerwise_epochs`` that was trained (0 = the ``init``
checkpoint, k = ``e<k>``), deepspan measures the angle between the P-vector of every block layer
(conv outputs flattened, on the fixed probe) and the data P-vector of the probe images (the top left
singular vector of the flattened pixels). Depth is the position of a layer on the path from the input
to the model's feature layer (1 = the first block); the layers after the feature layer (the decoder of
the autoencoder, the projection head of SimCLR) are in the table and figure but not in the rule,
because they do not lie on the input-to-representation path. The claims are judged on uncentered
features (the paper's plain SVD); centered angles are in the table and the figure.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from deepspan.experiments.base import Experiment
from deepspan.experiments.context import ReproContext
from deepspan.experiments.statistics import spearman
from deepspan.results import Check, Claim, Condition, ExperimentResult, Measured, Rule

NAME = "layerwise"
TITLE = "Layer-wise angle to the data P-vector over training"

EARLY_EPOCH = 1   # "early in training": the end of the first epoch (the init checkpoint is reported beside it)


def epoch_label(epoch: int) -> str:
    return "init" if epoch == 0 else f"e{epoch}"


def run(ctx: ReproContext) -> ExperimentResult:
    names = ctx.cfg.names
    for name in names:
        ctx.runs.ensure_trained(name)
    rows: list[dict[str, Any]] = []
    for name in names:
        labels = {r["label"] for r in ctx.runs.checkpoints(name)}
        layers = ctx.runs.layers(name)
        feat = ctx.runs.feature_layer(name)
        tracker = ctx.stats.tracker(name)
        cut = layers.index(feat)
        for epoch in ctx.cfg.layerwise_epochs:
            label = epoch_label(epoch)
            if label not in labels:
                continue  # not trained to this epoch at this scale
            for i, layer in enumerate(layers):
                for center in (False, True):
                    rows.append({"model": name, "epoch": epoch, "checkpoint": label, "layer": layer,
                                 "depth": i + 1, "in_path": i <= cut, "is_feature": layer == feat,
                                 "centered": center, "angle": tracker.values(label, layer, "angle_to_data", center)})
    trends = depth_trends(rows)
    claims = _claims(trends, names)
    epochs = sorted({r["epoch"] for r in rows})
    return ExperimentResult(
        name=NAME, title=TITLE, paper="Liu et al. 2022",
        summary=(f"Angle between each block layer's P-vector and the data P-vector of {len(ctx.data.probe)} probe "
                 f"images, for {len(names)} models at epochs {', '.join(str(e) for e in epochs)} "
                 f"(0 = initialisation); depth trend = Spearman correlation of depth and angle over the layers "
                 f"from the input to the feature layer."),
        claims=claims, tables={"angles": rows, "trends": trends}, provenance=ctx.provenance())


def depth_trends(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per (model, epoch, centered): Spearman(depth, angle) over the in-path layers and the deepest angle."""
    out = []
    keys = list(dict.fromkeys((r["model"], r["epoch"], r["centered"]) for r in rows))
    for model, epoch, center in keys:
        sel = sorted((r for r in rows if r["model"] == model and r["epoch"] == epoch and r["centered"] == center
                      and r["in_path"]), key=lambda r: r["depth"])
        out.append({"model": model, "epoch": epoch, "centered": center, "n_layers": len(sel),
                    "rho_depth_angle": spearman([r["depth"] for r in sel], [r["angle"] for r in sel]),
                    "first_angle": sel[0]["angle"] if sel else None,
                    "deepest_angle": sel[-1]["angle"] if sel else None})
    return out


def judge(trends: list[dict[str, Any]], names: list[str], early: int = EARLY_EPOCH,
          center: bool = False) -> dict[str, Any]:
    """The per-model checks of both claims (uncentered by default), from the ``trends`` rows.

    early rise: rho(depth, angle) > 0 at ``early``; late fall, strict: rho < 0 at the last epoch;
    late fall, weak: rho at the last epoch < rho at ``early``, or the deepest in-path layer's angle at the
    last epoch < its angle at ``early``.
    """
    res: dict[str, Any] = {"models": {}, "rise": 0, "fall_strict": 0, "fall_weak": 0, "n": 0}
    for name in names:
        t = {r["epoch"]: r for r in trends if r["model"] == name and r["centered"] == center}
        if early not in t or t[early]["n_layers"] < 2:
            continue
        last = max(t)
        if last <= early:
            continue
        res["n"] += 1
        re, rl = t[early]["rho_depth_angle"], t[last]["rho_depth_angle"]
        d = {"rho_init": t[0]["rho_depth_angle"] if 0 in t else None, "rho_early": re, "rho_last": rl,
             "last_epoch": last, "deepest_early": t[early]["deepest_angle"], "deepest_last": t[last]["deepest_angle"],
             "rise": bool(np.isfinite(re) and re > 0), "fall_strict": bool(np.isfinite(rl) and rl < 0),
             "fall_weak": bool((np.isfinite(re) and np.isfinite(rl) and rl < re)
                               or t[last]["deepest_angle"] < t[early]["deepest_angle"])}
        res["models"][name] = d
        res["rise"] += d["rise"]
        res["fall_strict"] += d["fall_strict"]
        res["fall_weak"] += d["fall_weak"]
    return res


def _claims(trends: list[dict[str, Any]], names: list[str]) -> list[Claim]:
    j = judge(trends, names)
    jc = judge(trends, names, center=True)
    n = j["n"]
    m1: list[Measured] = []
    m2: list[Measured] = []
    for name, d in j["models"].items():
        if d["rho_init"] is not None:
            m1.append(Measured(f"{name}_rho_init", f"{name}: Spearman(depth, angle) at initialisation", d["rho_init"]))
        m1.append(Measured(f"{name}_rho_e{EARLY_EPOCH}", f"{name}: Spearman(depth, angle) after epoch {EARLY_EPOCH}",
                           d["rho_early"]))
        m2 += [Measured(f"{name}_rho_last", f"{name}: Spearman(depth, angle) after epoch {d['last_epoch']}",
                        d["rho_last"]),
               Measured(f"{name}_deepest_change",
                        f"{name}: feature-layer angle, epoch {d['last_epoch']} minus epoch {EARLY_EPOCH}",
                        d["deepest_last"] - d["deepest_early"], "deg")]
    rise = tuple(Check(name, (Condition(f"{name}_rho_e{EARLY_EPOCH}", ">", 0.0),)) for name in j["models"])
    strict = tuple(Check(name, (Condition(f"{name}_rho_last", "<", 0.0),)) for name in j["models"])
    weak = tuple(Check(name, (Condition(f"{name}_rho_last", "<", f"{name}_rho_e{EARLY_EPOCH}"),
                              Condition(f"{name}_deepest_change", "<", 0.0)), mode="any") for name in j["models"])
    if n == 0:
        rule_note = "no model has two or more layers on its input-to-feature path and a later epoch"
        m1.append(Measured("n_models", "models with two or more in-path layers and a later epoch", 0))
        rise = strict = (Check("models judged", (Condition("n_models", ">=", 1),)),)
    else:
        rule_note = ""
    cen = (f"Centered features: {jc['rise']}/{jc['n']} models rise at epoch {EARLY_EPOCH}, "
           f"{jc['fall_strict']}/{jc['n']} fall through the layers at the last epoch.")
    return [
        Claim("c1", quote=("early in training, the angle between a layer's P-vector and the data P-vector rises "
                           "through the layers (paraphrase)"),
              source="Liu et al. 2022, Appendix A.5 (ResNet-18 on CIFAR-10, per residual block; paraphrase)",
              rule=Rule(f"per model, uncentered: the Spearman correlation between layer depth (input to feature "
                        f"layer) and the angle to the data P-vector after epoch {EARLY_EPOCH} is > 0", rise),
              measured=m1, note=(rule_note + " " + cen).strip()),
        Claim("c2", quote=("late in training, the angle to the data P-vector falls through the layers (paraphrase)"),
              source="Liu et al. 2022, Appendix A.5 (ResNet-18 on CIFAR-10, per residual block; paraphrase)",
              rule=Rule(f"per model, uncentered, at the last trained epoch of the layer-wise schedule: "
                        f"Spearman(depth, angle) < 0 (strict); the weaker check: that correlation is below its "
                        f"epoch-{EARLY_EPOCH} value, or the feature-layer angle is below its epoch-{EARLY_EPOCH} value",
                        strict, partial=weak if n else ()),
              measured=m2, context={"n_models": 0} if n == 0 else
              {f"{name}_rho_e{EARLY_EPOCH}": d["rho_early"] for name, d in j["models"].items()},
              note=(rule_note + " The 'falls late' wording is read as the angle falling through the layers late "
                    "in training; the feature-layer angle change between the early and the last epoch is "
                    "reported beside it. " + cen).strip()),
    ]


EXPERIMENT = Experiment(NAME, TITLE, "Liu et al. 2022", run, figures="deepspan.report.fig_layerwise",
                        claims=("c1", "c2"))
