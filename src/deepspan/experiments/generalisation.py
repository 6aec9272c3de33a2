"""Experiment 5 -- the model-data P-vector angle and generalisation (Liu et al. 2022, case study).

Liu, Xiong, Wang, An, Wu, Dou, "Exploring the Common Principal Subspace of Deep Features in Neural
Networks", Machine Learning 111 (2022), arXiv 2110.02863: "we carry out case studies to measure the
angle between the P-vector and the principal subspace of training dataset, and connect such angle
with generalization performance" (Abstract); the ICLR 2021 submission "Empirical Studies on the
Convergence of Feature Spaces in Deep Learning" likewise "connect[s] P-vectors to the data
distribution, and generalization performance" (Abstract).

The population
--------------
MLPs (widths ``(w, w // 2)``, SGD) over ``cfg.population_widths`` x ``cfg.population_lrs`` x
``cfg.population_noise``, each trained for ``cfg.population_epochs`` epochs on the first
``cfg.population_n_train`` training images with a fraction ``noise`` of labels replaced by uniform
random ones (:meth:`DataSplits.noisy_train`, seeded with ``cfg.seed``). Every end-of-epoch
checkpoint ``e1 .. eK`` of every run is one member, so width, learning rate, label noise and
training length all vary. Per member:

* ``angle``: arccos |<u_model, u_data>| in degrees between the P-vector of the feature layer
  (the last ReLU) on the probe and the data P-vector of the probe images (uncentered, Liu et al.'s
  plain SVD; this is the primary measure), and ``angle_centered`` with column-centered features;
* ``test_accuracy``: the manifest's accuracy on ``ctx.data.test`` (clean labels); ``train_accuracy`` is
  on (the first 1,000 of) the training labels the model saw, i.e. the noisy ones;
* ``gap`` / ``gap_centered``: sigma_2 / sigma_1 of the feature matrix (near 1, the P-vector and its
  angle are ill-determined); ``noise_realised``: the fraction of labels that actually changed.

Initial weights are seeded (:func:`train_member`), so the same seed gives the same population.

Both P-vectors live in the sample space of the same probe images (held-out test images), where
Liu et al. use the training images; comparing in one sample space is what the angle needs.

Statistics
----------
Spearman's rank correlation rho(angle, test accuracy) over the members (``scipy.stats.spearmanr``),
a percentile bootstrap CI (members resampled with replacement ``cfg.bootstrap`` times with
``numpy.random.default_rng(cfg.seed)``; ranks with ties averaged are taken within each resample,
vectorised over resamples) and Kendall's tau (``scipy.stats.kendalltau``) as a second route.
The same is reported within the clean-label members (noise = 0), where label noise -- which lowers
test accuracy on its own -- cannot drive the correlation.

If a smaller model-data angle goes with better generalisation, rho(angle, accuracy) < 0
(:data:`PAPER_SIGN`). Rule: reproduced if the 95% CI lies entirely on the paper's side of 0;
partly if the point estimate has the paper's sign but the CI includes 0; not reproduced otherwise.
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np

from deepspan._io import atomic_write_bytes
from deepspan import angle
from deepspan.experiments.base import Experiment
from deepspan.experiments.config import ModelSpec
from deepspan.experiments.context import ReproContext
from deepspan.experiments.statistics import CI_LEVEL, bootstrap_spearman, kendall, percentile_ci, spearman
from deepspan.results import Check, Claim, Condition, ExperimentResult, Measured, Rule

NAME = "generalisation"
TITLE = "Model-data P-vector angle and generalisation"

# rules (stated in the claims and the report)
PAPER_SIGN = -1          # smaller model-data angle <-> higher test accuracy: rho(angle, accuracy) < 0
BOOTSTRAP_FILE = f"{NAME}__bootstrap.npz"
# populations the statistics are computed over -> key prefix of their bootstrap arrays
SUBSET_KEYS = {"all": "all", "noise=0": "noise0", "final epoch": "final"}


# ----------------------------------------------------------------------------- population

def run_name(width: int, lr: float, noise: float) -> str:
    """The zoo run of one population cell, e.g. ``pop-w64-lr0.1-n0.5``."""
    return f"pop-w{width}-lr{lr:g}-n{noise:g}"


def member_spec(width: int, lr: float) -> ModelSpec:
    """A two-hidden-layer MLP of widths ``(width, width // 2)`` trained by SGD at ``lr``."""
    return ModelSpec("mlp", "supervised", (int(width), max(1, int(width) // 2)), "sgd", lr=float(lr))


def _gap(s: np.ndarray) -> float:
    """sigma_2 / sigma_1 of a stored spectrum (near 1: the P-vector is ill-determined)."""
    s = np.asarray(s, float)
    return float(s[1] / s[0]) if len(s) > 1 and s[0] > 0 else float("nan")


def is_epoch_label(label: str) -> bool:
    """True for end-of-epoch checkpoints ``e1, e2, ...`` (not ``init`` nor ``e0-i<k>``)."""
    return label.startswith("e") and label[1:].isdigit() and int(label[1:]) >= 1


def train_member(ctx: ReproContext, width: int, lr: float, noise: float, data: Any = None) -> dict[str, Any]:
    """Train (or find) the population run of one cell; return its manifest.

    The initial weights are drawn after ``torch.manual_seed(cfg.seed)`` (inside ``fork_rng``, so the
    caller's random state is untouched): ``ReproContext.ensure_trained`` builds the model before the
    trainer seeds torch, and torch seeds its global generator randomly at start-up, so without this the
    initial weights -- and every number below -- would change from process to process.
    """
    import torch

    cfg = ctx.cfg
    if data is None:
        data = ctx.data.noisy_train(cfg.population_n_train, noise, cfg.seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        return ctx.runs.ensure_trained(run_name(width, lr, noise), member_spec(width, lr), data=data,
                                  epochs=cfg.population_epochs, iterations=())


# ----------------------------------------------------------------------------- statistics

def verdict_for(rho: float, lo: float, hi: float, sign: int = PAPER_SIGN) -> str:
    """``reproduced`` if the CI [lo, hi] lies strictly on the ``sign`` side of 0; ``partly`` if only
    the point estimate ``rho`` does; else ``not reproduced`` (also when any number is missing)."""
    vals = np.array([rho, lo, hi], float)
    if not np.all(np.isfinite(vals)):
        return "not reproduced"
    if sign * lo > 0 and sign * hi > 0:
        return "reproduced"
    if sign * rho > 0:
        return "partly"
    return "not reproduced"


def correlation_stats(x: Any, y: Any, n_boot: int, seed: int) -> tuple[dict[str, Any], np.ndarray]:
    """Spearman rho, its bootstrap CI, Kendall tau and the verdict of the rule; plus the bootstrap draws."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    rho = spearman(x, y)
    boot = bootstrap_spearman(x, y, n_boot, seed)
    lo, hi = percentile_ci(boot)
    tau, tau_p = kendall(x, y)
    from scipy.stats import spearmanr

    p = float(spearmanr(x, y).pvalue) if np.isfinite(rho) else float("nan")
    return ({"n": int(len(x)), "spearman": rho, "spearman_p": p, "ci_low": lo, "ci_high": hi,
             "ci_level": CI_LEVEL, "n_boot": int(n_boot), "n_boot_valid": int(np.isfinite(boot).sum()),
             "kendall": tau, "kendall_p": tau_p, "verdict": verdict_for(rho, lo, hi)}, boot)


# ----------------------------------------------------------------------------- experiment

def run(ctx: ReproContext) -> ExperimentResult:
    cfg = ctx.cfg
    data_u = {c: ctx.stats.data_pvector(c) for c in (False, True)}
    clean = ctx.data.noisy_train(cfg.population_n_train, 0.0, cfg.seed)
    rows: list[dict[str, Any]] = []
    for width in cfg.population_widths:
        for lr in cfg.population_lrs:
            for noise in cfg.population_noise:
                name = run_name(width, lr, noise)
                data = ctx.data.noisy_train(cfg.population_n_train, noise, cfg.seed)
                realised = float(np.mean(data.y != clean.y))
                man = train_member(ctx, width, lr, noise, data)
                for rec in man["checkpoints"]:
                    if not is_epoch_label(rec["label"]):
                        continue
                    label = rec["label"]
                    s_u = ctx.stats.singular_values(name, label, False)
                    s_c = ctx.stats.singular_values(name, label, True)
                    rows.append({
                        "run": name, "width": int(width), "lr": float(lr), "noise": float(noise),
                        "noise_realised": realised, "epoch": int(rec["epoch"]), "checkpoint": rec["label"],
                        "angle": angle(ctx.stats.pvector(name, label, False), data_u[False]),
                        "angle_centered": angle(ctx.stats.pvector(name, label, True), data_u[True]),
                        "test_accuracy": rec.get("test_accuracy"), "train_accuracy": rec.get("train_accuracy"),
                        "loss": rec.get("loss"), "gap": _gap(s_u), "gap_centered": _gap(s_c)})

    stats_rows: list[dict[str, Any]] = []
    boots: dict[str, np.ndarray] = {}
    last = max((r["epoch"] for r in rows), default=0)
    subsets = [("all", rows), ("noise=0", [r for r in rows if r["noise"] == 0.0]),
               ("final epoch", [r for r in rows if r["epoch"] == last])]
    for subset, rs in subsets:
        acc = [r["test_accuracy"] for r in rs]
        for centered, col in ((False, "angle"), (True, "angle_centered")):
            st, boot = correlation_stats([r[col] for r in rs], acc, cfg.bootstrap, cfg.seed)
            stats_rows.append({"population": subset, "centered": centered, **st})
            boots[f"{SUBSET_KEYS[subset]}_{'centered' if centered else 'uncentered'}"] = boot

    buf = io.BytesIO()
    np.savez(buf, **boots)
    atomic_write_bytes(ctx.results_dir / BOOTSTRAP_FILE, buf.getvalue())

    gaps = {c: float(np.nanmedian([r[c] for r in rows])) if rows else float("nan") for c in ("gap", "gap_centered")}
    claims = _claims(stats_rows, cfg.bootstrap, gaps)
    n_runs = len(cfg.population_widths) * len(cfg.population_lrs) * len(cfg.population_noise)
    return ExperimentResult(
        name=NAME, title=TITLE, paper="Liu et al. 2022",
        summary=(f"{len(rows)} population members: {n_runs} MLPs (widths "
                 f"{', '.join(str(w) for w in cfg.population_widths)} x learning rates "
                 f"{', '.join(f'{lr:g}' for lr in cfg.population_lrs)} x label noise "
                 f"{', '.join(f'{n:g}' for n in cfg.population_noise)}) trained {cfg.population_epochs} epochs on "
                 f"{cfg.population_n_train} {cfg.dataset} images, one member per end-of-epoch checkpoint; "
                 f"feature-layer P-vector vs data P-vector on a probe of {len(ctx.data.probe)} test images, against "
                 f"clean-label test accuracy on {len(ctx.data.test)} images."),
        claims=claims, tables={"members": rows, "statistics": stats_rows},
        arrays={"bootstrap": BOOTSTRAP_FILE}, provenance=ctx.provenance())


def _stat(stats_rows: list[dict[str, Any]], population: str, centered: bool) -> dict[str, Any]:
    return next(s for s in stats_rows if s["population"] == population and s["centered"] == centered)


def _measured(prefix: str, what: str, s: dict[str, Any]) -> list[Measured]:
    return [
        Measured(f"{prefix}_n", f"{what}: members", s["n"]),
        Measured(f"{prefix}_rho", f"{what}: Spearman rho(angle, test accuracy)", s["spearman"]),
        Measured(f"{prefix}_ci_low", f"{what}: bootstrap {CI_LEVEL:.0%} CI, lower end", s["ci_low"]),
        Measured(f"{prefix}_ci_high", f"{what}: bootstrap {CI_LEVEL:.0%} CI, upper end", s["ci_high"]),
        Measured(f"{prefix}_tau", f"{what}: Kendall tau (second route)", s["kendall"]),
        Measured(f"{prefix}_tau_p", f"{what}: Kendall tau p-value", s["kendall_p"]),
    ]


def _rule(s: dict[str, Any], n_boot: int, who: str, prefix: str) -> Rule:
    return Rule(
        f"Spearman rho over {who} ({s['n']} members) between the uncentered model-data angle and clean-label "
        f"test accuracy, with a percentile bootstrap {CI_LEVEL:.0%} CI ({n_boot} resamples of the members, "
        f"{s['n_boot_valid']} non-degenerate); the paper's sign is negative (smaller angle, higher accuracy): "
        f"reproduced if the whole CI is below 0; the weaker check: rho < 0 although the CI includes 0. Kendall "
        f"tau = {s['kendall']:.3f} is reported, not deciding",
        (Check("CI below 0", (Condition(f"{prefix}_ci_high", "<", 0.0),
                              Condition(f"{prefix}_ci_low", "<=", f"{prefix}_ci_high"),
                              Condition(f"{prefix}_rho", "<", 0.0))),),
        partial=(Check("rho below 0", (Condition(f"{prefix}_rho", "<", 0.0),
                                       Condition(f"{prefix}_ci_low", "<=", f"{prefix}_ci_high"))),))


def _caveat(s: dict[str, Any]) -> str:
    """A sentence for a ``partly`` verdict: it rests on the sign of the point estimate alone."""
    if s["verdict"] != "partly":
        return ""
    return (f"'partly' rests on the sign of the point estimate alone (rho = {s['spearman']:.3f}); the CI "
            f"[{s['ci_low']:.3f}, {s['ci_high']:.3f}] includes 0, so no relation is detected. ")


def _claims(stats_rows: list[dict[str, Any]], n_boot: int, gaps: dict[str, float]) -> list[Claim]:
    direction_note = ("Direction (paraphrase): a smaller model-data angle goes with better generalisation; the "
                      "abstracts quoted say only that the angle is 'connected' with generalisation, and the "
                      "case-study section's own wording could not be consulted here. ")
    a, ac = _stat(stats_rows, "all", False), _stat(stats_rows, "all", True)
    z, zc = _stat(stats_rows, "noise=0", False), _stat(stats_rows, "noise=0", True)
    f = _stat(stats_rows, "final epoch", False)
    final_note = (f"Last end-of-epoch checkpoints only (one member per run, so training length does not vary): "
                  f"rho = {f['spearman']:.3f}, CI [{f['ci_low']:.3f}, {f['ci_high']:.3f}] over {f['n']} members "
                  f"(not deciding). ")
    centered_note = (f"Centered angles (column-centered features and data): rho = {ac['spearman']:.3f}, "
                     f"CI [{ac['ci_low']:.3f}, {ac['ci_high']:.3f}] (rule would give: {ac['verdict']}); "
                     f"not deciding, Liu et al. use the plain SVD. Median sigma_2/sigma_1 of the feature matrices: "
                     f"{gaps['gap']:.2f} uncentered, {gaps['gap_centered']:.2f} centered (the nearer 1, the less "
                     f"determined the P-vector and its angle).")
    c1 = Claim(
        "c1",
        quote=("we carry out case studies to measure the angle between the P-vector and the principal subspace of "
               "training dataset, and connect such angle with generalization performance"),
        source=("Liu et al. 2022, Abstract (case study on generalization); the direction of the relation "
                "(smaller angle, better generalization) is a paraphrase"),
        rule=_rule(a, n_boot, "all population members", "all"),
        measured=_measured("all", "all members", a) + [
            Measured("all_rho_centered", "all members: Spearman rho with centered angles", ac["spearman"]),
            Measured("all_ci_low_centered", "all members, centered: CI lower end", ac["ci_low"]),
            Measured("all_ci_high_centered", "all members, centered: CI upper end", ac["ci_high"]),
            Measured("final_rho", "last-epoch members: Spearman rho(angle, test accuracy)", f["spearman"]),
            Measured("final_ci_low", "last-epoch members: CI lower end", f["ci_low"]),
            Measured("final_ci_high", "last-epoch members: CI upper end", f["ci_high"])],
        note=_caveat(a) + direction_note + final_note + centered_note)
    c2 = Claim(
        "c2",
        quote=("we carry out case studies to connect P-vectors to the data distribution, and generalization "
               "performance"),
        source=("Liu et al., ICLR 2021 submission, Abstract; tested here on clean-label members only (noise = 0), "
                "so label noise cannot drive the correlation (paraphrase of the same claim)"),
        rule=_rule(z, n_boot, "the clean-label members (noise = 0)", "noise0"),
        measured=_measured("noise0", "noise = 0 members", z) + [
            Measured("noise0_rho_centered", "noise = 0 members: Spearman rho with centered angles", zc["spearman"])],
        note=_caveat(z) + direction_note + (f"Centered: rho = {zc['spearman']:.3f}, CI [{zc['ci_low']:.3f}, "
                               f"{zc['ci_high']:.3f}] (not deciding)."))
    return [c1, c2]


EXPERIMENT = Experiment(NAME, TITLE, "Liu et al. 2022", run, figures="deepspan.report.fig_generalisation",
                        claims=("c1", "c2"))
