"""Experiment 3 -- the angle between each layer's P-vector and the data P-vector, over depth and training.

Liu, Xiong, Wang, An, Wu, Dou, "Exploring the Common Principal Subspace of Deep Features in Neural
Networks", Machine Learning 111 (2022), arXiv 2110.02863, and the ICLR 2021 submission "Empirical Studies
on the Convergence of Feature Spaces in Deep Learning" (the case study connecting P-vectors to the data
distribution, Appendix A.5): the angle to the data P-vector rises through the layers early in training
and falls late (paraphrase).

As in the paper (a residual network, per residual block, against the data P-vector), the study runs
on the residual zoo model only (:data:`MODELS`): for every epoch of ``cfg.layerwise_epochs`` (0 = the
``init`` checkpoint, k = ``e<k>``), deepspan measures the angle between the P-vector of every block
output (stem, each residual block, the pooled feature layer; conv outputs flattened) and the data
P-vector, both on the training-set probe (no augmentation at extraction). Depth is the position of a
layer from the input (1 = the stem). "Early" is the end of epoch 1 and "late" the last trained epoch
of the schedule (the paper shows 5 of 200 epochs as early; our reading of early and late is ours).
Both readings (uncentered, centered) are judged side by side.
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

EARLY_EPOCH = 1   # "early in training": the end of the first epoch (ours; the init checkpoint is reported beside it)
MODELS = ("resnet",)  # the paper's layer-wise study is on a residual network (ResNet-18, A.5)


def epoch_label(epoch: int) -> str:
    return "init" if epoch == 0 else f"e{epoch}"


def run(ctx: ReproContext) -> ExperimentResult:
    from deepspan.experiments.convergence import protocol

    names = [n for n in MODELS if n in ctx.cfg.zoo_names]
    for name in names:
        ctx.runs.ensure_trained(name)
    rows: list[dict[str, Any]] = []
    for name in names:
        labels = {r["label"] for r in ctx.runs.checkpoints(name)}
        layers = ctx.runs.layers(name)
        feat = ctx.runs.feature_layer(name)
        tracker = ctx.stats.tracker(name, "train")
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
        summary=(f"Angle between each block output's P-vector and the data P-vector of {len(ctx.data.train_probe)} "
                 f"training images, for {', '.join(names)} at epochs {', '.join(str(e) for e in epochs)} "
                 f"(0 = initialisation); depth trend = Spearman correlation of depth and angle over the layers "
                 f"from the input to the feature layer."),
        claims=claims, tables={"angles": rows, "trends": trends}, provenance=ctx.provenance(),
        protocol=protocol(ctx, names, split="train", layers={n: ctx.runs.layers(n) for n in names},
                          extra={"epochs_read": [int(e) for e in epochs], "early_epoch": EARLY_EPOCH,
                                 "reference": "data P-vector of the training probe"}))


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
    claims: list[Claim] = []
    source = "Liu et al. 2022, Appendix A.5 (ResNet-18 on CIFAR-10, per residual block, angle to the data P-vector)"
    for center in (False, True):
        j = judge(trends, names, center=center)
        reading = "centered" if center else "uncentered"
        pre = "cen_" if center else ""
        m1: list[Measured] = []
        m2: list[Measured] = []
        for name, d in j["models"].items():
            if d["rho_init"] is not None:
                m1.append(Measured(f"{pre}{name}_rho_init", f"{name}: Spearman(depth, angle) at initialisation "
                                   f"({reading})", d["rho_init"]))
            m1.append(Measured(f"{pre}{name}_rho_e{EARLY_EPOCH}", f"{name}: Spearman(depth, angle) after epoch "
                               f"{EARLY_EPOCH} ({reading})", d["rho_early"]))
            m2.append(Measured(f"{pre}{name}_rho_last", f"{name}: Spearman(depth, angle) after epoch "
                               f"{d['last_epoch']} ({reading})", d["rho_last"]))
        if not j["models"]:
            continue
        rise = tuple(Check(name, (Condition(f"{pre}{name}_rho_e{EARLY_EPOCH}", ">", 0.0),)) for name in j["models"])
        fall = tuple(Check(name, (Condition(f"{pre}{name}_rho_last", "<", 0.0),)) for name in j["models"])
        claims += [
            Claim("c1_centered" if center else "c1",
                  quote="early in training the angle to the data P-vector rises through the layers",
                  quote_kind="paraphrase", source=source,
                  rule=Rule(f"{reading}: the Spearman correlation between block depth and the angle to the data "
                            f"P-vector after epoch {EARLY_EPOCH} (our reading of 'early') is > 0", rise),
                  measured=m1),
            Claim("c2_centered" if center else "c2",
                  quote="late in training the angle to the data P-vector falls through the layers",
                  quote_kind="paraphrase", source=source,
                  rule=Rule(f"{reading}: the Spearman correlation between block depth and the angle to the data "
                            f"P-vector at the last trained epoch of the schedule is < 0", fall),
                  measured=m2),
        ]
    return claims


EXPERIMENT = Experiment(NAME, TITLE, "Liu et al. 2022", run, figures="deepspan.report.fig_layerwise",
                        claims=("c1", "c1_centered", "c2", "c2_centered"))
