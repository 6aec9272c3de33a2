"""Experiment 5 -- the model-data P-vector angle and generalisation (Liu et al. 2022, case study).

Liu, Xiong, Wang, An, Wu, Dou, "Exploring the Common Principal Subspace of Deep Features in Neural
Networks", Machine Learning 111 (2022), arXiv 2110.02863. The paper relates the angle between a model's
P-vector and the data P-vector, compared "on the training dataset" (A.4), to generalisation, with
log-log plots of angle against performance on CIFAR-10 (A.8). Its population, the population's size and
any correlation value could not be read; so the direction tested here (a smaller angle goes with better
generalisation) and every threshold below are ours, and the report says so.

The population
--------------
MLPs (zoo kind ``mlp``, supervised, SGD with momentum 0.9 and a per-step cosine schedule, batch
``cfg.batch_size``), each trained to the end of its schedule (``cfg.population_epochs``) on the first ``n_train``
training images, a fraction ``noise`` of whose labels is replaced by uniform random ones
(:meth:`DataSplits.noisy_train`, seeded with ``cfg.seed``). A member has ``depth`` hidden layers, all of
``width`` units (``widths = (width,) * depth``; the feature layer has ``width`` units). The design
(:func:`population`):

* a **base** member (:func:`base_settings`): the lower middle width and depth of the config, the largest
  learning rate, weight decay 5e-4 (the zoo's) when listed, clean labels, the upper middle training-set size;
* **one at a time**: the base with one setting changed to each other value of its list (width, depth,
  learning rate, weight decay, label noise, training-set size);
* a **grid** of width x label noise at the base's other settings.

Members that coincide are trained once (their ``roles`` list every part of the design they belong to).
Initial weights are seeded by :meth:`RunStore.ensure_trained`; training and feature extraction run on one
torch thread (:func:`one_torch_thread`): on 2 shared cores a 2-thread pool made these small MLPs 5-15x
slower, and one thread gives the same numbers in every process.

Per member (its final checkpoint only)
--------------------------------------
* ``angle`` / ``angle_centered``: arccos |<u_model, u_data>| in degrees between the P-vector of the
  feature layer (the last hidden ReLU) and the data P-vector (top left singular vector of the flattened
  images), both on the **training probe** ``ctx.data.train_probe`` (a fixed class-balanced subset of the
  training images, no augmentation; split ``"train"``): uncentered (Liu et al.'s plain SVD, the primary
  reading) and with column-centered features and images;
* ``test_accuracy``: arg-max accuracy on all of ``ctx.data.test`` (clean labels); ``train_accuracy``: on the
  first min(2,000, n_train) training images with the labels the member was trained on (the noisy ones);
* ``gap`` / ``gap_centered``: sigma_2 / sigma_1 of the feature matrix (near 1, the P-vector and its angle
  are ill-determined); ``noise_realised``: the fraction of labels that actually changed; ``probe_seen``:
  the fraction of the training probe inside the member's own training set (the probe is drawn from the
  first ``cfg.n_train`` training images, so a member trained on fewer images saw only part of it).

Statistics (:mod:`deepspan.experiments.statistics`)
---------------------------------------------------
* Spearman's rho(angle, test accuracy) over all members, with a percentile bootstrap CI (members
  resampled with replacement ``cfg.bootstrap`` times, index matrix from ``default_rng(cfg.seed)``, ranks
  recomputed within each resample) and Kendall's tau as a second route;
* the partial Spearman correlation controlling for width (ranks of angle and of accuracy each
  residualised on the rank of width, residuals correlated; rank-based, so width and log width give the
  same number), with a bootstrap CI over the same resamples;
* rho within the clean-label members (context: label noise lowers test accuracy on its own).

Rules (ours, labelled in the claims): ``reproduced`` if the point estimate and the whole CI lie below 0 (the
paper's direction as we read it: smaller angle, higher accuracy); ``not reproduced`` otherwise -- a CI that
includes 0 detects nothing, so the sign of the point estimate alone earns no ``partly``. Judged for rho
(``c1``) and for the partial correlation (``c2``), each under both centerings (``*_centered``). The partial
correlation is judged, not only shown: width sets the feature layer's dimension -- and with it how close a
ReLU layer's uncentered P-vector lies to its mean activation direction -- and it changes accuracy too, so a
correlation carried by width alone would not be the angle-generalisation link the case study describes.
"""

from __future__ import annotations

import contextlib
import io
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from deepspan import angle
from deepspan._io import atomic_write_bytes
from deepspan.experiments.base import Experiment
from deepspan.experiments.config import ModelSpec, ReproduceConfig
from deepspan.experiments.context import ReproContext
from deepspan.experiments.statistics import (CI_LEVEL, bootstrap_partial_spearman, bootstrap_spearman, kendall,
                                             partial_spearman, percentile_ci, spearman)
from deepspan.results import Check, Claim, Condition, ExperimentResult, Measured, Rule

NAME = "generalisation"
TITLE = "Model-data P-vector angle and generalisation"

# rules (ours: the paper's population, direction and correlation value are not readable)
PAPER_SIGN = -1          # our reading: smaller model-data angle <-> higher test accuracy, rho(angle, accuracy) < 0
BOOTSTRAP_FILE = f"{NAME}__bootstrap.npz"
ZOO_WEIGHT_DECAY = 5e-4  # the zoo's weight decay: the base member's when the config lists it
SCHEDULE = "cosine"
AXES = ("width", "depth", "lr", "weight_decay", "noise", "n_train")
READINGS = {False: "uncentered", True: "centered"}
# populations of the statistics table -> key prefix of their bootstrap arrays
PARTIAL_POPULATION = "all, width partialled out"
SUBSET_KEYS = {"all": "all", "noise=0": "noise0", PARTIAL_POPULATION: "partial"}


# ----------------------------------------------------------------------------- population

@dataclass(frozen=True)
class Member:
    """One population member: an MLP of ``depth`` hidden layers of ``width`` units, its optimiser settings,
    label noise and training-set size; ``roles`` say which parts of the design it belongs to."""

    width: int
    depth: int
    lr: float
    weight_decay: float
    noise: float
    n_train: int
    roles: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        """The run's name, e.g. ``pop-w128-d2-lr0.1-wd0.0005-n0-N8000``."""
        return (f"pop-w{self.width}-d{self.depth}-lr{self.lr:g}-wd{self.weight_decay:g}-n{self.noise:g}"
                f"-N{self.n_train}")

    def settings(self) -> dict[str, Any]:
        return {a: getattr(self, a) for a in AXES}

    def spec(self, epochs: int) -> ModelSpec:
        """Zoo ``mlp``, supervised, widths ``(width,) * depth``, SGD (momentum 0.9), cosine schedule."""
        return ModelSpec("mlp", "supervised", (int(self.width),) * int(self.depth), "sgd", lr=float(self.lr),
                         weight_decay=float(self.weight_decay), schedule=SCHEDULE, epochs=int(epochs))


def _lower_middle(values: tuple[Any, ...]) -> Any:
    v = sorted(values)
    return v[(len(v) - 1) // 2]


def _upper_middle(values: tuple[Any, ...]) -> Any:
    v = sorted(values)
    return v[len(v) // 2]


def base_settings(cfg: ReproduceConfig) -> dict[str, Any]:
    """The base member: lower middle width and depth (cheaper), the largest learning rate, weight decay 5e-4
    when listed (else the lower middle), the smallest label noise, the upper middle training-set size."""
    wds = tuple(cfg.population_wds)
    return {"width": int(_lower_middle(cfg.population_widths)), "depth": int(_lower_middle(cfg.population_depths)),
            "lr": float(max(cfg.population_lrs)),
            "weight_decay": float(ZOO_WEIGHT_DECAY if ZOO_WEIGHT_DECAY in wds else _lower_middle(wds)),
            "noise": float(min(cfg.population_noise)), "n_train": int(_upper_middle(cfg.population_sizes))}


def population(cfg: ReproduceConfig) -> list[Member]:
    """The members in design order: base, one-at-a-time variations (axis by axis), then the width x noise grid.

    A member reached twice (e.g. a width variation is also a grid cell at noise 0) appears once, with
    both roles.
    """
    base = base_settings(cfg)
    values = {"width": cfg.population_widths, "depth": cfg.population_depths, "lr": cfg.population_lrs,
              "weight_decay": cfg.population_wds, "noise": cfg.population_noise, "n_train": cfg.population_sizes}
    cells: dict[tuple, list[str]] = {}

    def add(settings: dict[str, Any], role: str) -> None:
        key = tuple(settings[a] for a in AXES)
        roles = cells.setdefault(key, [])
        if role not in roles:
            roles.append(role)

    add(base, "base")
    for axis in AXES:
        for v in values[axis]:
            if v != base[axis]:
                add({**base, axis: type(base[axis])(v)}, axis)
    for w in cfg.population_widths:
        for noise in cfg.population_noise:
            add({**base, "width": int(w), "noise": float(noise)}, "width x noise")
    return [Member(*key, roles=tuple(roles)) for key, roles in cells.items()]


@contextlib.contextmanager
def one_torch_thread() -> Iterator[None]:
    """Run torch on one intra-op thread inside the block (restored afterwards); see the module docstring."""
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def member_data(ctx: ReproContext, m: Member):
    """The member's training set: the first ``n_train`` training images with its seeded label noise."""
    return ctx.data.noisy_train(m.n_train, m.noise, ctx.cfg.seed)


def train_member(ctx: ReproContext, m: Member) -> dict[str, Any]:
    """Train (or find) member ``m`` to the end of ``population_epochs`` (no checkpoints inside epoch 1);
    return its manifest. Runs on one torch thread."""
    with one_torch_thread():
        return ctx.runs.ensure_trained(m.name, m.spec(ctx.cfg.population_epochs), data=member_data(ctx, m),
                                       epochs=ctx.cfg.population_epochs, iterations=())


def _gap(s: np.ndarray) -> float:
    """sigma_2 / sigma_1 of a stored spectrum (near 1: the P-vector is ill-determined)."""
    s = np.asarray(s, float)
    return float(s[1] / s[0]) if len(s) > 1 and s[0] > 0 else float("nan")


def member_row(ctx: ReproContext, m: Member, data_u: dict[bool, np.ndarray]) -> dict[str, Any]:
    """The member's row of the ``members`` table (angles on the training probe, accuracies of its final checkpoint)."""
    data = member_data(ctx, m)
    realised = float(np.mean(data.y != ctx.data.subset_train(m.n_train).y))
    probe_seen = float(np.mean(np.isin(ctx.data.train_probe.ids, data.ids)))
    rec = ctx.runs.checkpoints(m.name)[-1]
    label = rec["label"]
    with one_torch_thread():
        u = {c: ctx.stats.pvector(m.name, label, c, split="train") for c in (False, True)}
        s = {c: ctx.stats.singular_values(m.name, label, c, split="train") for c in (False, True)}
    test, train = rec.get("test_accuracy"), rec.get("train_accuracy")
    return {"run": m.name, "roles": "; ".join(m.roles), "width": m.width, "depth": m.depth, "lr": m.lr,
            "weight_decay": m.weight_decay, "noise": m.noise, "noise_realised": realised,
            "n_train": int(ctx.runs.manifest(m.name)["config"]["n_samples"]), "probe_seen": probe_seen,
            "epoch": int(rec["epoch"]),
            "checkpoint": label, "test_accuracy": test, "train_accuracy": train,
            "train_minus_test": None if test is None or train is None else float(train) - float(test),
            "loss": rec.get("loss"), "angle": angle(u[False], data_u[False]),
            "angle_centered": angle(u[True], data_u[True]), "gap": _gap(s[False]), "gap_centered": _gap(s[True])}


# ----------------------------------------------------------------------------- statistics

def verdict_for(rho: float, lo: float, hi: float, sign: int = PAPER_SIGN) -> str:
    """``reproduced`` if the point estimate ``rho`` and the whole CI [lo, hi] lie strictly on the ``sign``
    side of 0, else ``not reproduced`` (also when any number is missing). No ``partly``: a point estimate
    whose CI includes 0 detects no relation, whatever its sign."""
    vals = np.array([rho, lo, hi], float)
    if not np.all(np.isfinite(vals)) or lo > hi:
        return "not reproduced"
    return "reproduced" if sign * rho > 0 and sign * lo > 0 and sign * hi > 0 else "not reproduced"


def correlation_stats(x: Any, y: Any, n_boot: int, seed: int) -> tuple[dict[str, Any], np.ndarray]:
    """Spearman rho, its bootstrap CI, Kendall tau and the verdict of the rule; plus the bootstrap draws."""
    from scipy.stats import spearmanr

    x, y = np.asarray(x, float), np.asarray(y, float)
    rho = spearman(x, y)
    boot = bootstrap_spearman(x, y, n_boot, seed)
    lo, hi = percentile_ci(boot)
    tau, tau_p = kendall(x, y)
    p = float(spearmanr(x, y).pvalue) if np.isfinite(rho) else float("nan")
    return ({"statistic": "spearman", "n": int(len(x)), "spearman": rho, "spearman_p": p, "ci_low": lo,
             "ci_high": hi, "ci_level": CI_LEVEL, "n_boot": int(n_boot),
             "n_boot_valid": int(np.isfinite(boot).sum()), "kendall": tau, "kendall_p": tau_p,
             "verdict": verdict_for(rho, lo, hi)}, boot)


def partial_stats(x: Any, y: Any, z: Any, n_boot: int, seed: int) -> tuple[dict[str, Any], np.ndarray]:
    """Partial Spearman of x and y controlling for z, its bootstrap CI (same resamples as
    :func:`correlation_stats` with the same seed) and the verdict of the rule; plus the bootstrap draws.
    The value sits in the ``spearman`` column of the statistics table (``statistic`` names it)."""
    x, y, z = np.asarray(x, float), np.asarray(y, float), np.asarray(z, float)
    rho = partial_spearman(x, y, z)
    boot = bootstrap_partial_spearman(x, y, z, n_boot, seed)
    lo, hi = percentile_ci(boot)
    return ({"statistic": "partial spearman (width)", "n": int(len(x)), "spearman": rho, "spearman_p": None,
             "ci_low": lo, "ci_high": hi, "ci_level": CI_LEVEL, "n_boot": int(n_boot),
             "n_boot_valid": int(np.isfinite(boot).sum()), "kendall": None, "kendall_p": None,
             "verdict": verdict_for(rho, lo, hi)}, boot)


def statistics_table(rows: list[dict[str, Any]], n_boot: int, seed: int) -> tuple[list[dict[str, Any]],
                                                                                   dict[str, np.ndarray]]:
    """The statistics rows (all members, clean-label members, width partialled out; both centerings) and
    their bootstrap draws keyed ``<prefix>_<uncentered|centered>``."""
    out: list[dict[str, Any]] = []
    boots: dict[str, np.ndarray] = {}
    clean = [r for r in rows if r["noise"] == 0.0]
    for centered in (False, True):
        col = "angle_centered" if centered else "angle"
        tag = READINGS[centered]
        for population_, rs in (("all", rows), ("noise=0", clean)):
            st, boot = correlation_stats([r[col] for r in rs], [r["test_accuracy"] for r in rs], n_boot, seed)
            out.append({"population": population_, "centered": centered, **st})
            boots[f"{SUBSET_KEYS[population_]}_{tag}"] = boot
        st, boot = partial_stats([r[col] for r in rows], [r["test_accuracy"] for r in rows],
                                 [r["width"] for r in rows], n_boot, seed)
        out.append({"population": PARTIAL_POPULATION, "centered": centered, **st})
        boots[f"partial_{tag}"] = boot
    order = list(SUBSET_KEYS)
    out.sort(key=lambda s: (order.index(s["population"]), s["centered"]))
    return out, boots


# ----------------------------------------------------------------------------- experiment

def run(ctx: ReproContext) -> ExperimentResult:
    cfg = ctx.cfg
    members = population(cfg)
    data_u = {c: ctx.stats.data_pvector(c, split="train") for c in (False, True)}
    rows: list[dict[str, Any]] = []
    t_train = cpu_train = 0.0
    for m in members:
        t0, c0 = time.perf_counter(), time.process_time()
        train_member(ctx, m)
        t_train += time.perf_counter() - t0
        cpu_train += time.process_time() - c0
        rows.append(member_row(ctx, m, data_u))

    stats_rows, boots = statistics_table(rows, cfg.bootstrap, cfg.seed)
    buf = io.BytesIO()
    np.savez(buf, **boots)
    atomic_write_bytes(ctx.results_dir / BOOTSTRAP_FILE, buf.getvalue())

    base = base_settings(cfg)
    acc = [r["test_accuracy"] for r in rows]
    gaps = {c: float(np.nanmedian([r[c] for r in rows])) for c in ("gap", "gap_centered")}
    claims = _claims(stats_rows, rows, cfg.bootstrap, gaps)
    varied = {"width": list(cfg.population_widths), "depth": list(cfg.population_depths),
              "lr": list(cfg.population_lrs), "weight_decay": list(cfg.population_wds),
              "noise": list(cfg.population_noise), "n_train": list(cfg.population_sizes)}
    return ExperimentResult(
        name=NAME, title=TITLE, paper="Liu et al. 2022",
        summary=(f"{len(rows)} MLPs trained to the end of a cosine schedule ({cfg.population_epochs} epochs, SGD, "
                 f"momentum 0.9): "
                 f"a base member (width {base['width']}, depth {base['depth']}, lr {base['lr']:g}, weight decay "
                 f"{base['weight_decay']:g}, clean labels, {base['n_train']} {cfg.dataset} images), one-at-a-time "
                 f"variations of width, depth, learning rate, weight decay, label noise and training-set size, and "
                 f"a width x label-noise grid. Angle between each member's feature-layer P-vector and the data "
                 f"P-vector on a probe of {len(ctx.data.train_probe)} training images, against clean-label test "
                 f"accuracy on {len(ctx.data.test)} test images (range {min(acc):.3f}-{max(acc):.3f})."),
        claims=claims, tables={"members": rows, "statistics": stats_rows},
        arrays={"bootstrap": BOOTSTRAP_FILE},
        provenance=ctx.provenance(population_train_seconds=round(t_train, 2),
                                  population_train_cpu_seconds=round(cpu_train, 2), torch_threads=1),
        protocol={
            "layers": {"mlp": "feature layer: the last hidden ReLU (relu<depth>), width units"},
            "centering": ("both readings: uncentered (plain SVD, as Liu et al. write it; primary) and "
                          "column-centered features and images"),
            "split": {"angles": "train", "accuracy": "test", "train_accuracy": "train (the member's own labels)"},
            "n_samples": {"angles": len(ctx.data.train_probe), "test_accuracy": len(ctx.data.test),
                          "train_accuracy": "first min(2000, n_train) training images"},
            "sample_set": (f"angles: class-balanced probe of the training images (seed {cfg.seed}), no "
                           f"augmentation; data P-vector of the same probe's flattened images"),
            "epochs": int(cfg.population_epochs), "checkpoint": "final (end of the cosine schedule)",
            "schedule": {r["run"]: ctx.runs.spec(r["run"]).describe() for r in rows},
            "batch_size": cfg.batch_size,
            "population": {"members": len(rows), "design": "one setting at a time around a base member, plus a "
                           "width x label-noise grid at the base's other settings", "base": base, "varied": varied,
                           "architecture": "zoo mlp, widths (width,) * depth", "label_noise": "a fraction noise of "
                           "labels replaced by uniform random ones, seeded", "seed": cfg.seed},
            "statistics": {"rho": "Spearman rho(angle, test accuracy) over all members",
                           "partial": "partial Spearman controlling for the rank of width",
                           "bootstrap": {"resamples": cfg.bootstrap, "seed": cfg.seed, "level": CI_LEVEL,
                                         "kind": "percentile, members resampled with replacement"}},
        })


def _stat(stats_rows: list[dict[str, Any]], population_: str, centered: bool) -> dict[str, Any]:
    return next(s for s in stats_rows if s["population"] == population_ and s["centered"] == centered)


def _measured(prefix: str, what: str, s: dict[str, Any], label: str = "Spearman rho(angle, test accuracy)") \
        -> list[Measured]:
    out = [Measured(f"{prefix}_n", f"{what}: members", s["n"]),
           Measured(f"{prefix}_rho", f"{what}: {label}", s["spearman"]),
           Measured(f"{prefix}_ci_low", f"{what}: bootstrap {CI_LEVEL:.0%} CI, lower end", s["ci_low"]),
           Measured(f"{prefix}_ci_high", f"{what}: bootstrap {CI_LEVEL:.0%} CI, upper end", s["ci_high"])]
    if s.get("kendall") is not None:
        out += [Measured(f"{prefix}_tau", f"{what}: Kendall tau (second route, not deciding)", s["kendall"]),
                Measured(f"{prefix}_tau_p", f"{what}: Kendall tau p-value", s["kendall_p"])]
    return out


def _rule(s: dict[str, Any], n_boot: int, what: str, prefix: str) -> Rule:
    return Rule(
        f"{what} over {s['n']} members, with a percentile bootstrap {CI_LEVEL:.0%} CI ({n_boot} resamples of the "
        f"members, {s['n_boot_valid']} non-degenerate). Direction and threshold are ours (the paper's population "
        f"and correlation are not readable): the paper's link read as 'smaller angle, higher test accuracy', i.e. "
        f"a negative correlation; reproduced if the point estimate and the whole CI are below 0, otherwise not "
        f"reproduced (a CI that includes 0 detects no relation, whatever the sign of the point estimate)",
        (Check("CI below 0", (Condition(f"{prefix}_ci_high", "<", 0.0),
                              Condition(f"{prefix}_ci_low", "<=", f"{prefix}_ci_high"),
                              Condition(f"{prefix}_rho", "<", 0.0))),))


def _caveat(s: dict[str, Any]) -> str:
    """A sentence when the CI includes 0: the sign of the point estimate is not evidence either way."""
    lo, hi = s["ci_low"], s["ci_high"]
    if lo is None or hi is None or not (np.isfinite(lo) and np.isfinite(hi)) or not lo <= 0 <= hi:
        return ""
    return (f"The CI [{lo:.3f}, {hi:.3f}] includes 0: no relation is detected (point estimate "
            f"{s['spearman']:.3f}). ")


QUOTE = ("A trained network's P-vector lies closer to the principal direction of its training data when it "
         "generalises better: the smaller the angle between model and data P-vectors on the training set, the "
         "higher the performance")
SOURCE = ("Liu et al. 2022 (Machine Learning 111): the case study linking the model-data angle to generalisation "
          "(announced in the Abstract), compared 'on the training dataset' (Appendix A.4), with log-log plots of "
          "angle against performance on CIFAR-10 (Appendix A.8). Paraphrase: the direction is our reading; the "
          "population, its size and the correlation value are not readable")


def _claims(stats_rows: list[dict[str, Any]], rows: list[dict[str, Any]], n_boot: int,
            gaps: dict[str, float]) -> list[Claim]:
    acc = [r["test_accuracy"] for r in rows]
    claims: list[Claim] = []
    for centered in (False, True):
        tag = READINGS[centered]
        suffix = "_centered" if centered else ""
        a = _stat(stats_rows, "all", centered)
        z = _stat(stats_rows, "noise=0", centered)
        p = _stat(stats_rows, PARTIAL_POPULATION, centered)
        gap = gaps["gap_centered" if centered else "gap"]
        context_note = (f"Clean-label members only (context, not deciding): rho = {z['spearman']:.3f}, CI "
                        f"[{z['ci_low']:.3f}, {z['ci_high']:.3f}] over {z['n']} members. Median sigma_2/sigma_1 "
                        f"of the feature matrices ({tag}): {gap:.2f} (the nearer 1, the less determined the "
                        f"P-vector and its angle). Test accuracy ranges {min(acc):.3f}-{max(acc):.3f}. ")
        reading = ("Liu et al.'s plain SVD (primary reading)" if not centered else
                   "column-centered features and images (our sensitivity reading; the paper writes the plain SVD)")
        claims.append(Claim(
            f"c1{suffix}", quote=QUOTE, quote_kind="paraphrase", source=SOURCE,
            rule=_rule(a, n_boot, f"Spearman rho between the {tag} model-data angle and clean-label test accuracy",
                       f"all{suffix}"),
            measured=_measured(f"all{suffix}", f"all members, {tag}", a) + [
                Measured(f"noise0{suffix}_rho", f"clean-label members, {tag}: Spearman rho (context)",
                         z["spearman"]),
                Measured(f"partial{suffix}_rho_context", f"all members, {tag}: partial Spearman given width "
                         f"(judged in c2{suffix})", p["spearman"])],
            note=_caveat(a) + f"Angles: {reading}. " + context_note))
        claims.append(Claim(
            f"c2{suffix}", quote=QUOTE, quote_kind="paraphrase",
            source=SOURCE + "; judged here with width partialled out (our stricter reading)",
            rule=_rule(p, n_boot, f"Partial Spearman correlation between the {tag} model-data angle and clean-label "
                       f"test accuracy controlling for width (the ranks of both residualised on the rank of width)",
                       f"partial{suffix}"),
            measured=_measured(f"partial{suffix}", f"all members, {tag}", p,
                               "partial Spearman(angle, test accuracy | width)") + [
                Measured(f"width_values{suffix}", "distinct widths in the population",
                         len({r["width"] for r in rows}))],
            note=_caveat(p) + ("Judged, not only shown: width sets the feature layer's dimension -- and with it how "
                               "close a ReLU layer's uncentered P-vector lies to its mean activation -- and changes "
                               "accuracy too; a correlation carried by width alone would not be the angle-"
                               "generalisation link. Same bootstrap resamples as c1. ") + f"Angles: {reading}."))
    return claims


EXPERIMENT = Experiment(NAME, TITLE, "Liu et al. 2022", run, figures="deepspan.report.fig_generalisation",
                        claims=("c1", "c2", "c1_centered", "c2_centered"))
