"""Experiment 1 -- P-vector convergence during training (Liu et al. 2022, Abstract; Appendix A.1-A.2).

Liu, Xiong, Wang, An, Wu, Dou, "Exploring the Common Principal Subspace of Deep Features in Neural
Networks", Machine Learning 111 (2022), arXiv 2110.02863; and the ICLR 2021 submission "Empirical
Studies on the Convergence of Feature Spaces in Deep Learning".

Every P-vector zoo model (MLP, CNN, ResNet-style supervised; conv autoencoder; SimCLR-style) is trained
to convergence (``deepspan.experiments.config``); at every checkpoint (initialisation, a dense set of
iterations inside epoch 1, every epoch) the P-vector of its feature layer on the held-out probe is
compared with

* the P-vector of the same model's final checkpoint (the convergence curve; Liu et al. show these
  curves on the test sets, A.2),
* the final P-vectors of the other models,
* the data P-vector of the held-out probe, and -- on the training-set probe, as A.4 compares with the
  data -- the data P-vector of the training images.

The model's output (a classifier's logits, SimCLR's projection head) is tracked in the same pass as
a sensitivity reading (``layer_role = "output"``), without a verdict.

Angles are arccos |<u, v>| in degrees. The paper does not say whether features are centered: every
claim is judged under both readings, side by side (``c1`` / ``c1_centered``, ...). Thresholds are
the paper's numbers where it gives them ("70°-80° usually" at the start, "smaller than 10°" at the end);
the tolerances of "quasi-monotonic" and of a rise inside epoch 1 are ours and labelled so.

Significance (:func:`deepspan.significance`): every angle to the own final P-vector carries the central
95 % of its permutation null (the probe images of one side shuffled against the other's), drawn as a band
in the convergence figure; the angles the claims read (initialisation, the last checkpoint before the
final one, the end of epoch 1) also carry a 95 % bootstrap interval and the permutation p-value. They
are context; the rules above decide the verdicts.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from deepspan.experiments.base import Experiment
from deepspan.experiments.context import ReproContext
from deepspan.results import Check, Claim, Condition, ExperimentResult, Measured, Rule

NAME = "convergence"
TITLE = "P-vector convergence during training"

# rules (stated in the claims and the report)
INIT_MIN_DEG = 70.0        # the paper: initial angles "70°-80° usually" (Abstract)
END_MAX_DEG = 10.0         # the paper: curves end "smaller than 10°" (A.1)
MONO_TOL_DEG = 2.0         # ours: an epoch-to-epoch rise of more than this breaks monotonicity
MONO_MAX_BREAKS = 1        # ours: "quasi" allows at most this many breaks
RISE_TOL_DEG = 1.0         # ours: a rise inside epoch 1 must exceed the initial angle by this much
READINGS = {False: "uncentered", True: "centered"}


def position(rec: dict[str, Any], steps_per_epoch: int) -> float:
    """Training progress of a checkpoint in epochs (iteration / steps per epoch)."""
    return float(rec["iteration"]) / float(steps_per_epoch)


def run(ctx: ReproContext) -> ExperimentResult:
    names = ctx.cfg.zoo_names
    for name in names:
        ctx.runs.ensure_trained(name)
    rows: list[dict[str, Any]] = []
    records = {name: ctx.runs.checkpoints(name) for name in names}
    finals = {(name, c): ctx.stats.pvector(name, records[name][-1]["label"], c) for name in names for c in (False, True)}
    for name in names:
        tracker = ctx.stats.tracker(name, "test")
        train_tracker = ctx.stats.tracker(name, "train")
        feature = ctx.runs.feature_layer(name)
        output = ctx.runs.output_layer(name)
        spe = int(ctx.runs.manifest(name)["steps_per_epoch"])
        for center in (False, True):
            for layer, role in ((feature, "feature"), (output, "output")):
                if layer is None:
                    continue
                own = dict(zip(tracker.order, tracker.series("angle_to_final", layer, center)))
                data = dict(zip(tracker.order, tracker.series("angle_to_data", layer, center)))
                data_train = dict(zip(train_tracker.order, train_tracker.series("angle_to_data", layer, center)))
                others = ({o: dict(tracker.angles_to(finals[(o, center)], feature, center)) for o in names if o != name}
                          if role == "feature" else {})
                for rec in records[name]:
                    label = rec["label"]
                    acc = rec.get("test_accuracy", rec.get("probe_accuracy"))
                    base = {"model": name, "layer": layer, "layer_role": role, "checkpoint": label,
                            "epoch": rec["epoch"], "iteration": rec["iteration"], "position": position(rec, spe),
                            "centered": center, "accuracy": acc, "loss": rec.get("loss")}
                    rows.append({**base, "target": "own final", "split": "test", "angle": own[label]})
                    rows.append({**base, "target": "data", "split": "test", "angle": data[label]})
                    rows.append({**base, "target": "data", "split": "train", "angle": data_train[label]})
                    rows += [{**base, "target": f"final {o}", "split": "test", "angle": a[label]}
                             for o, a in others.items()]
    _add_significance(ctx, names, records, rows)
    rows.sort(key=lambda r: (names.index(r["model"]), r["layer_role"] != "feature",
                             _order(records[r["model"]], r["checkpoint"]), r["centered"]))
    feature_rows = [r for r in rows if r["layer_role"] == "feature" and r["split"] == "test"]
    claims = _claims(feature_rows, records, names)
    n_within = {name: sum(1 for r in records[name] if r["label"].startswith("e0-")) for name in names}
    return ExperimentResult(
        name=NAME, title=TITLE, paper="Liu et al. 2022",
        summary=(f"{len(names)} models ({', '.join(names)}) trained on {len(ctx.data.train)} {ctx.cfg.dataset} "
                 f"images ({', '.join(f'{n} {ctx.cfg.epochs_of(n)}' for n in names)} epochs); P-vectors of each "
                 f"feature layer on a held-out probe of {len(ctx.data.probe)} test images at "
                 f"{sum(len(r) for r in records.values())} checkpoints ({min(n_within.values())}+ inside epoch 1); "
                 f"angles to the data P-vector also on a probe of {len(ctx.data.train_probe)} training images."),
        claims=claims, tables={"angles": rows}, provenance=ctx.provenance(),
        protocol=protocol(ctx, names, extra={
            "targets": "own final checkpoint, other models' finals, data P-vector (test and training probes)",
            "checkpoints": {n: len(records[n]) for n in names}, "checkpoints_in_epoch1": n_within,
            "sensitivity_layers": {n: ctx.runs.output_layer(n) for n in names}}))


def _add_significance(ctx: ReproContext, names: list[str], records: dict[str, list[dict]],
                      rows: list[dict[str, Any]]) -> None:
    """Per feature-layer row of the angle to the own final P-vector (test probe): the central 95 % of its
    permutation null (``null_low``, ``null_high``: the angle between the checkpoint's P-vector and the final one
    with the probe images shuffled, :func:`deepspan.measures.significance.angle_null`, ``cfg.n_perm`` draws);
    at the checkpoints the claims read (initialisation, the last before the final, the end of epoch 1) also the
    95 % bootstrap interval and the p-value of :func:`deepspan.significance` on the probe features."""
    from deepspan.measures import MEASURES
    from deepspan.measures.significance import angle_null, significance

    cfg = ctx.cfg
    for name in names:
        tracker = ctx.stats.tracker(name, "test")
        feature = ctx.runs.feature_layer(name)
        final = records[name][-1]["label"]
        headline = {"init", "e1"} | ({records[name][-2]["label"]} if len(records[name]) > 1 else set())
        F_final = ctx.stats.features(name, final)
        for r in rows:
            if r["model"] != name or r["target"] != "own final" or r["layer_role"] != "feature":
                continue
            center = bool(r["centered"])
            null = angle_null(tracker.pvector_u(r["checkpoint"], feature, center),
                              tracker.pvector_u(final, feature, center), cfg.n_perm, cfg.seed)
            r["null_low"], r["null_high"] = (float(v) for v in np.quantile(null, [0.025, 0.975]))
            if r["checkpoint"] in headline and r["checkpoint"] != final:
                sig = significance(ctx.stats.features(name, r["checkpoint"]), F_final,
                                   MEASURES["pvector_angle"].with_params(center=center), n_perm=cfg.n_perm,
                                   n_boot=cfg.n_boot, seed=cfg.seed)
                r.update({"ci_low": sig.ci_low, "ci_high": sig.ci_high, "p_value": sig.p_value})


def protocol(ctx: ReproContext, names: list[str], *, split: str = "test", layers: dict[str, Any] | None = None,
             centering: str = "both readings: uncentered (plain SVD, as Liu et al. write it) and column-centered",
             extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """The protocol record of a P-vector experiment over runs ``names`` (see :mod:`deepspan.results`)."""
    probe = ctx.data.probe_of(split)
    return {"layers": layers if layers is not None else {n: ctx.runs.feature_layer(n) for n in names},
            "centering": centering, "split": split, "n_samples": len(probe),
            "sample_set": (f"class-balanced {'held-out test' if split == 'test' else 'training'} probe, "
                           f"seed {ctx.cfg.seed}, no augmentation at extraction"),
            "train_probe": {"split": "train", "n_samples": len(ctx.data.train_probe)},
            "epochs": {n: ctx.cfg.epochs_of(n) for n in names},
            "schedule": {n: ctx.runs.spec(n).describe() for n in names},
            "n_train": len(ctx.data.train), "batch_size": ctx.cfg.batch_size, **(extra or {})}


def _finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)


def _order(records: list[dict[str, Any]], label: str) -> int:
    return [r["label"] for r in records].index(label)


def _series(rows: list[dict[str, Any]], model: str, target: str, center: bool = False,
            split: str = "test") -> list[dict[str, Any]]:
    return [r for r in rows if r["model"] == model and r["target"] == target and r["centered"] == center
            and r.get("split", "test") == split and r.get("layer_role", "feature") == "feature"]


ABSTRACT_QUOTE = ("during the training procedure from random scratch, the angle decrease from a larger one "
                  "(70°–80° usually) to the small one, which coincides the progress of feature space learning from "
                  "scratch to convergence")


def _stats(row: dict[str, Any]) -> tuple[Any, Any, Any]:
    """(ci_low, ci_high, p_value) of a row (None where not computed)."""
    return row.get("ci_low"), row.get("ci_high"), row.get("p_value")


def _c1(rows: list[dict[str, Any]], names: list[str], center: bool) -> Claim | None:
    """Claim c1 under one reading: initial angle >= 70 deg, the last checkpoint before the end < 10 deg."""
    pre = "centered_" if center else ""
    reading = READINGS[center]
    m: list[Measured] = []
    checks: list[Check] = []
    for name in names:
        s = _series(rows, name, "own final", center)
        if len(s) < 2:
            return None
        m += [Measured(f"{pre}{name}_init", f"{name}: angle to own final at initialisation ({reading})",
                       s[0]["angle"], "deg", *_stats(s[0])),
              Measured(f"{pre}{name}_before_end", f"{name}: angle at the last checkpoint before the final one "
                       f"({s[-2]['checkpoint']}, {reading})", s[-2]["angle"], "deg", *_stats(s[-2]))]
        checks.append(Check(name, (Condition(f"{pre}{name}_init", ">=", INIT_MIN_DEG),
                                   Condition(f"{pre}{name}_before_end", "<", END_MAX_DEG))))
    return Claim(
        "c1_centered" if center else "c1", quote=ABSTRACT_QUOTE, quote_kind="verbatim",
        source="Liu et al. 2022 (Machine Learning 111), Abstract; the end value from Appendix A.1",
        rule=Rule(f"{reading} features, per model: the initial angle to its own final P-vector is >= "
                  f"{INIT_MIN_DEG:g} deg (the paper's '70°–80° usually') and the angle at the last checkpoint before "
                  f"the final one is < {END_MAX_DEG:g} deg (the paper's curves end 'smaller than 10°', A.1)",
                  tuple(checks)),
        measured=m,
        note=("The paper does not say whether features are centered; both readings are judged side by side. "
              "Uncentered P-vectors of non-negative (ReLU) features lie near the mean feature direction, so their "
              "initial angles are small; the centered reading compares the variation around the mean."))


def _c2(rows: list[dict[str, Any]], names: list[str], center: bool) -> Claim:
    pre = "centered_" if center else ""
    reading = READINGS[center]
    m: list[Measured] = []
    checks: list[Check] = []
    for name in names:
        s = _series(rows, name, "own final", center)
        epochs = [r for r in s if r["checkpoint"] == "init" or
                  (r["checkpoint"].startswith("e") and not r["checkpoint"].startswith("e0-"))]
        breaks = sum(1 for a, b in zip(epochs, epochs[1:])
                     if _finite(a["angle"]) and _finite(b["angle"]) and b["angle"] > a["angle"] + MONO_TOL_DEG)
        m.append(Measured(f"{pre}{name}_breaks", f"{name}: epoch-to-epoch rises > {MONO_TOL_DEG:g} deg ({reading})",
                          breaks))
        checks.append(Check(name, (Condition(f"{pre}{name}_breaks", "<=", MONO_MAX_BREAKS),)))
    return Claim(
        "c2_centered" if center else "c2",
        quote="a quasi-monotonic converging trend from nearly orthogonal to smaller angles (e.g., 10°)",
        quote_kind="verbatim", source="Liu et al., ICLR 2021 submission, Abstract",
        rule=Rule(f"{reading} features, per model: over the initialisation and the end-of-epoch checkpoints the angle "
                  f"to the final P-vector rises by more than {MONO_TOL_DEG:g} deg at most {MONO_MAX_BREAKS} time(s) "
                  f"(both tolerances are ours: the paper gives no number for 'quasi')", tuple(checks)),
        measured=m)


def _c3(rows: list[dict[str, Any]], names: list[str], center: bool) -> Claim | None:
    pre = "centered_" if center else ""
    reading = READINGS[center]
    m: list[Measured] = []
    checks: list[Check] = []
    for name in names:
        s = _series(rows, name, "own final", center)
        within = [r for r in s if r["checkpoint"].startswith("e0-")]
        e1 = [r for r in s if r["checkpoint"] == "e1"]
        if not within or not e1:
            return None
        init = s[0]["angle"]
        peak = max(r["angle"] for r in within)
        m += [Measured(f"{pre}{name}_peak_epoch1", f"{name}: largest angle inside epoch 1 ({len(within)} checkpoints, "
                       f"{reading})", peak, "deg"),
              Measured(f"{pre}{name}_rise", f"{name}: peak minus initial angle ({reading})", peak - init, "deg"),
              Measured(f"{pre}{name}_e1", f"{name}: angle at the end of epoch 1 ({reading})", e1[0]["angle"], "deg",
                       *_stats(e1[0]))]
        checks.append(Check(name, (Condition(f"{pre}{name}_rise", ">", RISE_TOL_DEG),
                                   Condition(f"{pre}{name}_e1", "<", f"{pre}{name}_peak_epoch1"))))
    return Claim(
        "c3_centered" if center else "c3", quote="first rises with the random initialization and drop down",
        quote_kind="verbatim",
        source="Liu et al. 2022, Appendix A.2 (per-iteration curves of the first epoch, CIFAR-10/100 test sets)",
        rule=Rule(f"{reading} features, per model: the largest angle among the checkpoints inside epoch 1 exceeds the "
                  f"initial angle by more than {RISE_TOL_DEG:g} deg (tolerance ours) and the end-of-epoch-1 angle is "
                  f"below that peak", tuple(checks)),
        measured=m)


def _claims(rows: list[dict[str, Any]], records: dict[str, list[dict]], names: list[str]) -> list[Claim]:
    claims: list[Claim | None] = []
    for make in (_c1, _c2, _c3):
        for center in (False, True):
            claims.append(make(rows, names, center))
    return [c for c in claims if c is not None]


EXPERIMENT = Experiment(NAME, TITLE, "Liu et al. 2022", run, figures="deepspan.report.fig_convergence",
                        claims=("c1", "c1_centered", "c2", "c2_centered", "c3", "c3_centered"))
