"""Experiment 7 -- the spectrum of the forward feature map during training (Nam et al. 2024).

Nam, Mingard, Lee, Hayou, Louis, "Visualising Feature Learning in Deep Neural Networks by
Diagonalizing the Forward Feature Map", arXiv 2410.04264; neural collapse after Papyan, Han,
Donoho, "Prevalence of neural collapse during the terminal phase of deep learning training",
PNAS 117 (2020).

For the supervised CNN and MLP zoo runs, at every checkpoint (initialisation, iterations inside
epoch 1, every epoch): the penultimate features Phi on the fixed probe (held-out test images), the
network's logits f on the same images and the last-layer weights W. From them
(:func:`deepspan.feature_spectrum`, :func:`deepspan.neural_collapse`, default settings: uncentered,
no constant feature):

* the eigenvalues rho_k = s_k^2 / n of the feature map (top :data:`K_TOP` kept at every checkpoint);
* the cumulative target quality Pi*(k) and output utility Pi(k) (full curves at the initialisation,
  the end of epoch 1 and the final checkpoint);
* the regime (MF / intermediate / EF) with the numbers behind it (Pi*(C), Pi(C), rho_C / rho_{C+1},
  the k reaching 90 % of the targets) and the effective dimension;
* NC1-NC4 of Papyan et al.

The probe is held-out data, so every quantity describes the feature map on new inputs; Nam et al.
diagonalise on training inputs.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from deepspan import feature_spectrum, neural_collapse
from deepspan.experiments.base import Experiment
from deepspan.experiments.context import ReproContext, one_blas_thread
from deepspan.experiments.convergence import position
from deepspan.results import Check, Claim, Condition, ExperimentResult, Measured, Rule

NAME = "spectrum"
TITLE = "Feature-map spectrum and neural collapse during training"
MODELS = ("cnn", "mlp")
K_TOP = 20                   # eigenvalues kept at every checkpoint
CURVE_CHECKPOINTS = ("init", "e1")   # plus the final checkpoint: full Pi*(k), Pi(k) curves
# rules (stated in the claims and the report); the regime thresholds are feature_spectrum's defaults
MF_PI = 0.9                  # Pi*(C) and Pi(C) at least this ...
MF_GAP = 2.0                 # ... and rho_C / rho_{C+1} at least this: MF
EF_FACTOR = 2.0              # 90 % of the targets needs >= EF_FACTOR * C eigenfunctions: EF
NC1_FACTOR = 0.5             # "NC1 falls": the final NC1 is below this fraction of the reference NC1


def logits(model: Any, X: np.ndarray, batch_size: int = 512) -> np.ndarray:
    """The model's outputs on ``X`` (eval mode, no gradients), float64."""
    import torch

    out = []
    with torch.no_grad():
        for i in range(0, len(X), batch_size):
            out.append(model(torch.as_tensor(np.ascontiguousarray(X[i : i + batch_size]))).double().numpy())
    return np.concatenate(out)


def mf_reached_epoch(rows: list[dict[str, Any]]) -> float | None:
    """Position (epochs) of the first checkpoint from which every later checkpoint is MF; None if the last is not."""
    first = None
    for r in rows:
        if r["regime"] == "MF":
            if first is None:
                first = r["position"]
        else:
            first = None
    return first


def nc1_rule(nc1_final: float, nc1_ref: float, factor: float = NC1_FACTOR) -> bool:
    """NC1 "falls": the final NC1 is below ``factor`` times the reference NC1."""
    return bool(nc1_final < factor * nc1_ref)


def run(ctx: ReproContext) -> ExperimentResult:
    names = [n for n in MODELS if n in ctx.cfg.names]
    y = np.asarray(ctx.data.probe.y)
    rho_rows: list[dict[str, Any]] = []
    curve_rows: list[dict[str, Any]] = []
    reg_rows: list[dict[str, Any]] = []
    C = None
    for name in names:
        ctx.runs.ensure_trained(name)
        records = ctx.runs.checkpoints(name)
        spe = int(ctx.runs.manifest(name)["steps_per_epoch"])
        final = records[-1]["label"]
        for rec in records:
            label = rec["label"]
            Phi = ctx.stats.features(name, label)
            model = ctx.runs.load(name, label)
            f = logits(model, ctx.data.probe.X)
            W = model.classifier.weight.detach().double().numpy()
            with one_blas_thread():
                sp = feature_spectrum(Phi, y, outputs=f, n_classes=ctx.data.n_classes, mf_pi=MF_PI, mf_gap=MF_GAP,
                                      ef_factor=EF_FACTOR)
                nc = neural_collapse(Phi, y, W=W, predictions=f)
            C = sp.n_targets
            pos = position(rec, spe)
            base = {"model": name, "checkpoint": label, "epoch": rec["epoch"], "iteration": rec["iteration"],
                    "position": pos}
            for k in range(min(K_TOP, len(sp.rho))):
                rho_rows.append({**base, "k": k + 1, "rho": sp.rho[k], "rho_rel": sp.rho[k] / sp.rho[0],
                                 "q_star": sp.q_star[k], "q": sp.q[k]})
            if label in CURVE_CHECKPOINTS or label == final:
                for k in range(len(sp.rho)):
                    curve_rows.append({**base, "k": k + 1, "pi_star": sp.pi_star[k], "pi": sp.pi[k],
                                       "final": label == final})
            num = sp.regime_numbers
            reg_rows.append({**base, "accuracy": rec.get("test_accuracy", rec.get("probe_accuracy")),
                             "loss": rec.get("loss"), "regime": sp.regime, "C": num["C"],
                             "pi_star_C": num["pi_star_C"], "pi_C": num["pi_C"], "gap_ratio_C": num["gap_ratio_C"],
                             "k90": sp.k_for["90"], "k95": sp.k_for["95"], "k99": sp.k_for["99"], "d_eff": sp.d_eff,
                             "rank": len(sp.rho), "nc1": nc.nc1, "nc2_equinorm": nc.nc2_equinorm,
                             "nc2_equiangle": nc.nc2_equiangle, "nc2_maxangle": nc.nc2_maxangle, "nc3": nc.nc3,
                             "nc4": nc.nc4, "mf_pi": num["mf_pi"], "mf_gap": num["mf_gap"],
                             "final": label == final})
    train_rows = _train_probe_rows(ctx, names)
    claims = _claims(reg_rows, names)
    claims.insert(1, _claim_train(train_rows, names))
    n_ck = {n: sum(1 for r in reg_rows if r["model"] == n) for n in names}
    return ExperimentResult(
        name=NAME, title=TITLE, paper="Nam et al. 2024",
        summary=(f"Penultimate feature maps of {', '.join(names)} (trained {ctx.cfg.epochs} epochs on "
                 f"{len(ctx.data.train)} {ctx.cfg.dataset} images, C = {C} classes) diagonalised on a probe of "
                 f"{len(ctx.data.probe)} test images at {', '.join(f'{n_ck[n]} ({n})' for n in names)} checkpoints; "
                 f"regimes with thresholds Pi*(C), Pi(C) >= {MF_PI:g} and rho_C/rho_C+1 >= {MF_GAP:g} (MF), "
                 f"k90 >= {EF_FACTOR:g} C (EF); NC1-NC4 after Papyan et al. 2020."),
        claims=claims, tables={"rho": rho_rows, "pi_curves": curve_rows, "regimes": reg_rows,
                               "train_probe": train_rows},
        provenance=ctx.provenance(models=names, k_top=K_TOP))


def _train_probe_rows(ctx: ReproContext, names: list[str]) -> list[dict[str, Any]]:
    """The final checkpoints' spectra on TRAINING images (a seeded class-balanced subset, probe-sized).

    Nam et al. diagonalise the feature map on the training inputs; the held-out probe caps Pi*(C)
    by how well the features generalise. Both readings are reported.
    """
    from deepspan.data import probe_subset
    from deepspan.features import extract

    counts = np.bincount(np.asarray(ctx.data.train.y), minlength=ctx.data.n_classes)
    n = min(len(ctx.data.probe), int(counts.min()) * len(counts))  # as large as a balanced subset can be
    sub = probe_subset(ctx.data.train, n, seed=ctx.cfg.seed)
    y = np.asarray(sub.y)
    rows = []
    for name in names:
        label = ctx.runs.checkpoints(name)[-1]["label"]
        model = ctx.runs.load(name, label)
        layer = ctx.runs.feature_layer(name)
        Phi = extract(model, sub.X, layer, policy="flatten", progress=False).features[layer]
        f = logits(model, sub.X)
        W = model.classifier.weight.detach().double().numpy()
        with one_blas_thread():
            sp = feature_spectrum(Phi, y, outputs=f, n_classes=ctx.data.n_classes, mf_pi=MF_PI, mf_gap=MF_GAP,
                                  ef_factor=EF_FACTOR)
            nc = neural_collapse(Phi, y, W=W, predictions=f)
        num = sp.regime_numbers
        rows.append({"model": name, "checkpoint": label, "n_samples": len(sub), "regime": sp.regime,
                     "pi_star_C": num["pi_star_C"], "pi_C": num["pi_C"], "gap_ratio_C": num["gap_ratio_C"],
                     "k90": sp.k_for["90"], "d_eff": sp.d_eff, "nc1": nc.nc1})
    return rows


def _claim_train(rows: list[dict[str, Any]], names: list[str]) -> Claim:
    m = []
    for r in rows:
        n = r["model"]
        m += [Measured(f"train_{n}_pi_star_C", f"{n}: Pi*(C) at the final checkpoint, training images", r["pi_star_C"]),
              Measured(f"train_{n}_pi_C", f"{n}: Pi(C) at the final checkpoint, training images", r["pi_C"]),
              Measured(f"train_{n}_gap", f"{n}: rho_C / rho_C+1 at the final checkpoint, training images",
                       r["gap_ratio_C"]),
              Measured(f"train_{n}_nc1", f"{n}: NC1 at the final checkpoint, training images", r["nc1"])]
    regimes = ", ".join(f"{r['model']}: {r['regime']}" for r in rows)
    return Claim(
        "s1_train", quote=("Across many popular architectures and classification datasets, we find that DNNs converge, "
                           "after just a few epochs, to a minimal feature (MF) regime dominated by a number of "
                           "eigenfunctions equal to the number of classes."),
        source="Nam et al. 2024, Abstract; Sec. 4 (read on training inputs, as the paper diagonalises the feature map)",
        rule=Rule(f"per model, on a seeded class-balanced subset of the training images (probe-sized): the regime "
                  f"at the final checkpoint is MF (Pi*(C) >= {MF_PI:g}, Pi(C) >= {MF_PI:g}, rho_C / rho_C+1 >= "
                  f"{MF_GAP:g}); regimes: {regimes}", tuple(_mf_check(r["model"], f"train_{r['model']}") for r in rows)),
        measured=m,
        note="the same claim as s1, read on training instead of held-out images")


def _mf_check(name: str, prefix: str) -> Check:
    """The MF regime of deepspan.feature_spectrum with this experiment's thresholds, on measured keys."""
    return Check(name, (Condition(f"{prefix}_pi_star_C", ">=", MF_PI), Condition(f"{prefix}_pi_C", ">=", MF_PI),
                        Condition(f"{prefix}_gap", ">=", MF_GAP)))


def _claims(reg_rows: list[dict[str, Any]], names: list[str]) -> list[Claim]:
    m1: list[Measured] = []
    m2: list[Measured] = []
    nc_checks: list[Check] = []
    for name in names:
        rows = [r for r in reg_rows if r["model"] == name]
        fin = rows[-1]
        m1 += [Measured(f"{name}_pi_star_C", f"{name}: Pi*(C) at the final checkpoint", fin["pi_star_C"]),
               Measured(f"{name}_pi_C", f"{name}: Pi(C) at the final checkpoint", fin["pi_C"]),
               Measured(f"{name}_gap", f"{name}: rho_C / rho_C+1 at the final checkpoint", fin["gap_ratio_C"]),
               Measured(f"{name}_k90", f"{name}: eigenfunctions needed for 90 % of the targets", fin["k90"]),
               Measured(f"{name}_d_eff", f"{name}: effective dimension at the final checkpoint", fin["d_eff"]),
               Measured(f"{name}_mf_from", f"{name}: MF from this training position on (none: not MF at the end)",
                        mf_reached_epoch(rows), "epochs")]
        init = next(r for r in rows if r["checkpoint"] == "init")
        e1 = next((r for r in rows if r["checkpoint"] == "e1"), None)
        nc_checks.append(Check(f"{name} vs init", (Condition(f"{name}_nc1_final", "<", f"{name}_nc1_init",
                                                             NC1_FACTOR),)))
        m2 += [Measured(f"{name}_nc1_init", f"{name}: NC1 at initialisation", init["nc1"]),
               Measured(f"{name}_nc1_final", f"{name}: NC1 at the final checkpoint", fin["nc1"])]
        if e1 is not None and e1 is not fin:
            nc_checks.append(Check(f"{name} vs e1", (Condition(f"{name}_nc1_final", "<", f"{name}_nc1_e1",
                                                               NC1_FACTOR),)))
            m2.append(Measured(f"{name}_nc1_e1", f"{name}: NC1 at the end of epoch 1", e1["nc1"]))
        m2 += [Measured(f"{name}_nc2_final", f"{name}: NC2 equinorm at the final checkpoint (init "
                        f"{init['nc2_equinorm']:.3g})", fin["nc2_equinorm"]),
               Measured(f"{name}_nc3_final", f"{name}: NC3 at the final checkpoint (init {init['nc3']:.3g})",
                        fin["nc3"]),
               Measured(f"{name}_nc4_final", f"{name}: NC4 agreement at the final checkpoint (init "
                        f"{init['nc4']:.3g})", fin["nc4"])]
    regimes = ", ".join(f"{name}: {[r for r in reg_rows if r['model'] == name][-1]['regime']}" for name in names)
    return [
        Claim("s1", quote=("Across many popular architectures and classification datasets, we find that DNNs converge, "
                           "after just a few epochs, to a minimal feature (MF) regime dominated by a number of "
                           "eigenfunctions equal to the number of classes."),
              source="Nam et al. 2024, Abstract; Sec. 4 (regimes over training)",
              rule=Rule(f"per model: the regime at the final checkpoint is MF, i.e. Pi*(C) >= {MF_PI:g}, Pi(C) >= "
                        f"{MF_PI:g} and rho_C / rho_C+1 >= {MF_GAP:g} (deepspan.feature_spectrum's default "
                        f"thresholds); regimes: {regimes}", tuple(_mf_check(name, name) for name in names)),
              measured=m1,
              note=("measured on held-out probe images: Pi*(k) cannot exceed the share of the one-hot targets that "
                    "lies in the span of the features on those images (k90 empty: 90 % is never reached)")),
        Claim("s2", quote=("(NC1) Cross-example within-class variability of last-layer training activations collapses "
                           "to zero, as the individual activations themselves collapse to their class means."),
              source=("Papyan, Han, Donoho 2020, Abstract; Nam et al. 2024, Abstract: the MF regime \"resembles the "
                      "neural collapse phenomenon studied at longer training times\""),
              rule=Rule(f"per model: NC1 at the final checkpoint < {NC1_FACTOR:g} x NC1 at initialisation, and < "
                        f"{NC1_FACTOR:g} x NC1 at the end of epoch 1 (when the run has a later epoch)",
                        tuple(nc_checks)),
              measured=m2,
              note="measured on held-out probe images, not on the training activations of the quote"),
    ]


EXPERIMENT = Experiment(NAME, TITLE, "Nam et al. 2024; Papyan et al. 2020", run, figures="deepspan.report.fig_spectrum",
                        claims=("s1", "s1_train", "s2"))
