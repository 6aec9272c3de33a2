"""Experiment 1 -- P-vector convergence during training (Liu et al. 2022, Sec. 4 / Figs. 2-4).

Liu, Xiong, Wang, An, Wu, Dou, "Exploring the Common Principal Subspace of Deep Features in Neural
Networks", Machine Learning 111 (2022), arXiv 2110.02863; and the ICLR 2021 submission "Empirical
Studies on the Convergence of Feature Spaces in Deep Learning".

Every zoo model (MLP, CNN, ResNet-style supervised; conv autoencoder; SimCLR-style) is trained from
scratch; at every checkpoint (initialisation, iterations inside epoch 1, every epoch) the P-vector of
its feature layer on the fixed probe is compared with

* the P-vector of the same model's final checkpoint (the convergence curve),
* the final P-vectors of the other models (other architectures and paradigms),
* the data P-vector of the probe images.

Angles are arccos |<u, v>| in degrees. The paper does not say whether features are centered: claim
c1 (large initial angle, converging to small) is judged under both readings (``c1`` uncentered, the
paper's plain SVD; ``c1_centered``); c2 and c3 on uncentered features, with the centered curves in
the table and the figures.
"""

from __future__ import annotations

from typing import Any

from deepspan.experiments.base import Experiment
from deepspan.experiments.context import ReproContext
from deepspan.results import Check, Claim, Condition, ExperimentResult, Measured, Rule

NAME = "convergence"
TITLE = "P-vector convergence during training"

# rules (stated in the claims and the report)
INIT_MIN_DEG = 40.0        # "large" angle at initialisation
CONVERGED_FRACTION = 0.3   # the angle one checkpoint before the end is at most this fraction of the initial one
MONO_TOL_DEG = 2.0         # an epoch-to-epoch rise of more than this breaks monotonicity
MONO_MAX_BREAKS = 1        # "quasi": at most this many breaks
RISE_TOL_DEG = 1.0         # a rise inside epoch 1 must exceed the initial angle by this much


def position(rec: dict[str, Any], steps_per_epoch: int) -> float:
    """Training progress of a checkpoint in epochs (iteration / steps per epoch)."""
    return float(rec["iteration"]) / float(steps_per_epoch)


def run(ctx: ReproContext) -> ExperimentResult:
    names = ctx.cfg.names
    for name in names:
        ctx.runs.ensure_trained(name)
    rows: list[dict[str, Any]] = []
    records = {name: ctx.runs.checkpoints(name) for name in names}
    finals = {(name, c): ctx.stats.pvector(name, records[name][-1]["label"], c) for name in names for c in (False, True)}
    for name in names:
        tracker = ctx.stats.tracker(name)
        layer = ctx.runs.feature_layer(name)
        spe = int(ctx.runs.manifest(name)["steps_per_epoch"])
        for center in (False, True):
            own = dict(zip(tracker.order, tracker.series("angle_to_final", layer, center)))
            data = dict(zip(tracker.order, tracker.series("angle_to_data", layer, center)))
            others = {o: dict(tracker.angles_to(finals[(o, center)], layer, center)) for o in names if o != name}
            for rec in records[name]:
                label = rec["label"]
                acc = rec.get("test_accuracy", rec.get("probe_accuracy"))
                base = {"model": name, "checkpoint": label, "epoch": rec["epoch"], "iteration": rec["iteration"],
                        "position": position(rec, spe), "centered": center, "accuracy": acc, "loss": rec.get("loss")}
                rows.append({**base, "target": "own final", "angle": own[label]})
                rows.append({**base, "target": "data", "angle": data[label]})
                rows += [{**base, "target": f"final {o}", "angle": a[label]} for o, a in others.items()]
    rows.sort(key=lambda r: (names.index(r["model"]), _order(records[r["model"]], r["checkpoint"]), r["centered"]))
    claims = _claims(rows, records, names)
    return ExperimentResult(
        name=NAME, title=TITLE, paper="Liu et al. 2022",
        summary=(f"{len(names)} models ({', '.join(names)}) trained for {ctx.cfg.epochs} epochs on "
                 f"{len(ctx.data.train)} {ctx.cfg.dataset} images; P-vectors of each feature layer on a probe of "
                 f"{len(ctx.data.probe)} test images at {sum(len(r) for r in records.values())} checkpoints."),
        claims=claims, tables={"angles": rows}, provenance=ctx.provenance())


def _order(records: list[dict[str, Any]], label: str) -> int:
    return [r["label"] for r in records].index(label)


def _series(rows: list[dict[str, Any]], model: str, target: str, center: bool = False) -> list[dict[str, Any]]:
    return [r for r in rows if r["model"] == model and r["target"] == target and r["centered"] == center]


def _c1(rows: list[dict[str, Any]], names: list[str], center: bool) -> Claim | None:
    """Claim c1 under one reading (uncentered: the paper's plain SVD; centered: column-centered)."""
    pre = "centered_" if center else ""
    m: list[Measured] = []
    checks: list[Check] = []
    for name in names:
        s = _series(rows, name, "own final", center)
        if not s:
            return None
        init = s[0]["angle"]
        before_end = s[-2]["angle"] if len(s) >= 2 else float("nan")
        m += [Measured(f"{pre}{name}_init", f"{name}: angle to own final at initialisation"
                       + (" (centered)" if center else ""), init, "deg"),
              Measured(f"{pre}{name}_before_end", f"{name}: angle at the last checkpoint before the final one"
                       + (" (centered)" if center else ""), before_end, "deg")]
        checks.append(Check(name, (Condition(f"{pre}{name}_init", ">=", INIT_MIN_DEG),
                                   Condition(f"{pre}{name}_before_end", "<=", f"{pre}{name}_init",
                                             CONVERGED_FRACTION))))
    reading = "centered" if center else "uncentered"
    return Claim(
        "c1_centered" if center else "c1",
        quote=("during the training procedure from random scratch, the angle decrease from a larger one "
               "(70°–80° usually) to the small one, which coincides the progress of feature space "
               "learning from scratch to convergence"),
        source=f"Liu et al. 2022, Abstract; Sec. 4.2, Figs. 3-4 (read with {reading} features)",
        rule=Rule(f"{reading} features, per model: the initial angle to its own final P-vector is >= "
                  f"{INIT_MIN_DEG:g} deg and the angle one checkpoint before the end is <= {CONVERGED_FRACTION:g} x "
                  f"the initial angle", tuple(checks)),
        measured=m,
        note=("The paper does not say whether features are centered; both readings are judged. Uncentered "
              "P-vectors of non-negative (ReLU) features lie near the mean direction, so their angles start small."))


def _claims(rows: list[dict[str, Any]], records: dict[str, list[dict]], names: list[str]) -> list[Claim]:
    m2: list[Measured] = []
    m3: list[Measured] = []
    c2: list[Check] = []
    c3: list[Check] = []
    for name in names:
        s = _series(rows, name, "own final")
        init = s[0]["angle"]
        epochs = [r for r in s if r["checkpoint"].startswith("e") and not r["checkpoint"].startswith("e0-")]
        breaks = sum(1 for a, b in zip(epochs, epochs[1:]) if b["angle"] > a["angle"] + MONO_TOL_DEG)
        m2.append(Measured(f"{name}_breaks", f"{name}: epoch-to-epoch rises > {MONO_TOL_DEG:g} deg", breaks))
        c2.append(Check(name, (Condition(f"{name}_breaks", "<=", MONO_MAX_BREAKS),)))
        within = [r for r in s if r["checkpoint"].startswith("e0-")]
        e1 = [r for r in s if r["checkpoint"] == "e1"]
        if within and e1:
            peak = max(r["angle"] for r in within)
            m3 += [Measured(f"{name}_peak_epoch1", f"{name}: largest angle inside epoch 1", peak, "deg"),
                   Measured(f"{name}_rise", f"{name}: peak minus initial angle", peak - init, "deg"),
                   Measured(f"{name}_e1", f"{name}: angle at the end of epoch 1", e1[0]["angle"], "deg")]
            c3.append(Check(name, (Condition(f"{name}_rise", ">", RISE_TOL_DEG),
                                   Condition(f"{name}_e1", "<", f"{name}_peak_epoch1"))))
    claims = [c for c in (_c1(rows, names, False), _c1(rows, names, True)) if c is not None]
    claims.append(
        Claim("c2", quote="a quasi-monotonic converging trend from nearly orthogonal to smaller angles (e.g., 10°)",
              source="Liu et al., ICLR 2021 submission, Abstract; Sec. 4",
              rule=Rule(f"uncentered, per model: over the end-of-epoch checkpoints the angle to the final P-vector "
                        f"rises by more than {MONO_TOL_DEG:g} deg at most {MONO_MAX_BREAKS} time(s)", tuple(c2)),
              measured=m2))
    if c3:
        claims.append(Claim(
            "c3", quote=("inside the first epoch the angle first rises and then falls (the curves start with a "
                         "rise-then-fall before the quasi-monotonic decrease)"),
            source="Liu et al. 2022, Sec. 4.2, the iteration-level curves of the first epoch (paraphrase)",
            rule=Rule(f"uncentered, per model: the largest angle among the checkpoints inside epoch 1 exceeds the "
                      f"initial angle by more than {RISE_TOL_DEG:g} deg and the end-of-epoch-1 angle is below that "
                      f"peak", tuple(c3)),
            measured=m3))
    return claims


EXPERIMENT = Experiment(NAME, TITLE, "Liu et al. 2022", run, figures="deepspan.report.fig_convergence",
                        claims=("c1", "c1_centered", "c2", "c3"))
