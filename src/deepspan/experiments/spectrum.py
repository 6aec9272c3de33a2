"""Experiment 7 -- the spectrum of the forward feature map during training (Nam et al. 2024), and
neural collapse (Papyan et al. 2020).

Nam, Mingard, Lee, Hayou, Louis, "Visualising Feature Learning in Deep Neural Networks by
Diagonalizing the Forward Feature Map", arXiv 2410.04264 v1; Papyan, Han, Donoho, "Prevalence of
neural collapse during the terminal phase of deep learning training", PNAS 117 (2020).

Protocol
--------
* Models: the supervised zoo models of the configuration (``mlp``, ``cnn`` and the batch-norm
  ``resnet``), with their feature layer (the penultimate post-activations Phi: the last ReLU of the
  MLP and the CNN, the global average pool of the ResNet), at every checkpoint (initialisation,
  iterations inside epoch 1, every epoch end).
* Inputs: the training probe ``ctx.data.train_probe`` (a fixed, seeded, class-balanced subset of the
  training images the models were trained on, no augmentation). Which inputs Nam et al. use is not
  stated in the readable parts of the paper; they diagonalise the feature map "with respect to the
  gradient descent operator", which acts on the training set, and Papyan et al.'s collapse is a
  property of the training features, so the verdicts read this split (our choice). The held-out probe
  (``ctx.data.probe``, test images) is read as well, at the initialisation and every epoch end, as an
  extra table and figure without a verdict.
* Spectrum: :func:`deepspan.feature_spectrum` with its defaults (uncentered, no constant feature):
  eigenvalues rho_k = s_k^2 / n, target quality Q*_k and its cumulative Pi*(k), output utility Pi(k)
  (the logits), the effective dimension.
* Logits: the model's classifier (a linear layer on the feature layer) applied to the cached features,
  checked against a forward pass at each model's final checkpoint (a forward pass at every checkpoint
  is used if the two disagree). The training error is the share of training-probe images the network
  misclassifies.

The MF / EF rule (ours: Nam et al. publish no threshold)
---------------------------------------------------------
With C classes and Pi*(p) the share of the one-hot targets that all p features reach (the last value
of Pi*(k)), a checkpoint is

* **MF** when rho_C / rho_{C+1} >= :data:`MF_GAP` (a clear eigenvalue gap after the C-th eigenfunction)
  and Pi*(C) / Pi*(p) >= :data:`MF_SHARE` (the top C eigenfunctions carry at least 90 % of what all
  features reach for the targets);
* **EF** when reaching 90 % of Pi*(p) needs at least :data:`EF_FACTOR` x C eigenfunctions;
* **intermediate** otherwise.

The ratio to Pi*(p), not Pi*(C) itself, is judged: Pi*(C) is capped by how much of the targets the
p features can express at all (a narrow layer, or features that separate the classes non-linearly),
which says nothing about how many eigenfunctions carry it. Sanity: class-indicator features are MF and
random features EF (unit tests); an external pretrained 99 % MNIST CNN had rho_10 / rho_11 = 3.25
(above :data:`MF_GAP`), and an untrained CNN's spectrum has no gap after C.

Neural collapse (Papyan et al.)
-------------------------------
NC1 = Tr(Sigma_W Sigma_B^+) / C, NC2 (equinorm, equiangularity, maximal angle), NC3 (distance of the
normalised classifier to the normalised class means) and NC4 as Papyan et al. plot it: the *mismatch
rate* between the network's decision and the nearest-class-mean decision (1 minus
:func:`deepspan.neural_collapse`'s agreement); all four fall towards 0 under collapse. They are judged
on the training probe at the first checkpoint whose training error is 0 (the start of Papyan et al.'s
terminal phase of training), or at the final checkpoint, with its training error stated, when the
error never reaches 0; the reference is the end of epoch 1 (a trained network). The untrained
network's values are context only.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from deepspan import feature_spectrum, neural_collapse
from deepspan.experiments.base import Experiment
from deepspan.experiments.context import ReproContext, one_blas_thread
from deepspan.experiments.convergence import position
from deepspan.measures.spectrum import RANK_CUT
from deepspan.results import Check, Claim, Condition, ExperimentResult, Measured, Rule

NAME = "spectrum"
TITLE = "Feature-map spectrum and neural collapse during training"
K_TOP = 20                   # eigenvalues kept per checkpoint in the "rho" table
CENTER = False               # feature_spectrum's default (Nam et al.: the uncentered feature map)
# the MF / EF rule [ours: Nam et al. publish no threshold]
MF_GAP = 2.0                 # rho_C / rho_{C+1} at least this ...
MF_SHARE = 0.9               # ... and Pi*(C) / Pi*(p) at least this: MF
EF_FACTOR = 2.0              # 90 % of Pi*(p) needs >= EF_FACTOR x C eigenfunctions: EF
FEW_EPOCHS = 3.0             # "after just a few epochs" [ours]: MF held from this many epochs on, or earlier
# neural-collapse rules [ours], in Papyan et al.'s direction
NC1_FACTOR = 0.5             # NC1 at the judged checkpoint at most this fraction of NC1 at the end of epoch 1
NC4_MAX = 0.01               # NC4 mismatch rate at the judged checkpoint at most this
REFERENCE = "e1"             # the reference checkpoint of the "falls" rules

NAM = "Nam et al. 2024 (arXiv 2410.04264 v1), Abstract"
PAPYAN = "Papyan, Han, Donoho 2020 (PNAS 117), Abstract"
NC_KEYS = ("nc1", "nc2_equinorm", "nc2_equiangle", "nc2_maxangle", "nc3", "nc4_mismatch")


# ----------------------------------------------------------------------------- the rules, as functions
def classify_regime(gap: float | None, share_C: float | None, k_share90: int | None, C: int) -> str:
    """MF / intermediate / EF by this experiment's rule (module docstring; thresholds ours)."""
    if gap is not None and share_C is not None and gap >= MF_GAP and share_C >= MF_SHARE:
        return "MF"
    if k_share90 is None or k_share90 >= EF_FACTOR * C:
        return "EF"
    return "intermediate"


def regime_numbers(rho: np.ndarray, pi_star: np.ndarray, C: int) -> dict[str, Any]:
    """The numbers behind the regime: rho_C / rho_{C+1}, Pi*(C), Pi*(p), their ratio, k for 90 % of Pi*(p).

    A spectrum with fewer than C eigenvalues has no gap (None); one with exactly C has rho_{C+1} at the
    rank cut-off of :func:`deepspan.feature_spectrum` (RANK_CUT x rho_1), a finite stand-in for 0.
    """
    rho, pi_star = np.asarray(rho, dtype=float), np.asarray(pi_star, dtype=float)
    r = len(rho)
    if r < C:
        gap = None
    else:
        nxt = rho[C] if C < r else RANK_CUT * rho[0]
        gap = float(rho[C - 1] / nxt) if nxt > 0 else None
    pi_p = float(pi_star[-1])
    pi_C = float(pi_star[min(C, r) - 1])
    share = pi_C / pi_p if pi_p > 0 else None
    hit = np.flatnonzero(pi_star >= MF_SHARE * pi_p - 1e-12) if pi_p > 0 else np.array([], dtype=int)
    k90 = int(hit[0]) + 1 if len(hit) else None
    return {"gap": gap, "pi_star_C": pi_C, "pi_star_p": pi_p, "share_C": share, "k_share90": k90,
            "regime": classify_regime(gap, share, k90, C)}


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


def nc_checkpoint(rows: list[dict[str, Any]]) -> tuple[dict[str, Any], bool]:
    """The checkpoint neural collapse is judged at: the first with training error 0 (terminal phase reached:
    True), else the final one (False). ``rows`` in training order, each with ``train_error``."""
    for r in rows:
        if r["train_error"] == 0:
            return r, True
    return rows[-1], False


def reference_checkpoint(rows: list[dict[str, Any]], judged: dict[str, Any]) -> dict[str, Any]:
    """The reference of the "falls" rules: the end of epoch 1, or, when the judged checkpoint is not later,
    the last checkpoint before it (the initialisation only if nothing else precedes it)."""
    ref = next((r for r in rows if r["checkpoint"] == REFERENCE), None)
    if ref is not None and ref["position"] < judged["position"]:
        return ref
    before = [r for r in rows if r["position"] < judged["position"]]
    return before[-1] if before else rows[0]


# ----------------------------------------------------------------------------- measuring
def logits(model: Any, X: np.ndarray, batch_size: int = 512) -> np.ndarray:
    """The model's outputs on ``X`` (eval mode, no gradients), float64."""
    import torch

    out = []
    with torch.no_grad():
        for i in range(0, len(X), batch_size):
            out.append(model(torch.as_tensor(np.ascontiguousarray(X[i : i + batch_size]))).double().numpy())
    return np.concatenate(out)


def _head(model: Any) -> tuple[np.ndarray, np.ndarray] | None:
    """(W, b) of the model's linear classifier in float64, or None if it has none."""
    lin = getattr(model, "classifier", None)
    if lin is None or not hasattr(lin, "weight"):
        return None
    W = lin.weight.detach().double().numpy()
    b = lin.bias.detach().double().numpy() if getattr(lin, "bias", None) is not None else np.zeros(len(W))
    return W, b


def reading(Phi: np.ndarray, y: np.ndarray, f: np.ndarray, W: np.ndarray | None, C: int) -> tuple[dict[str, Any], Any]:
    """Spectrum, regime numbers, NC1-NC4 and the error of the logits ``f`` at one checkpoint."""
    with one_blas_thread():
        sp = feature_spectrum(Phi, y, outputs=f, n_classes=C, center=CENTER)
        nc = neural_collapse(Phi, y, W=W, predictions=f)
    num = regime_numbers(sp.rho, sp.pi_star, C)
    row = {"C": C, **num, "pi_C": sp.regime_numbers["pi_C"], "k90": sp.k_for["90"], "d_eff": sp.d_eff,
           "rank": len(sp.rho), "nc1": nc.nc1, "nc2_equinorm": nc.nc2_equinorm, "nc2_equiangle": nc.nc2_equiangle,
           "nc2_maxangle": nc.nc2_maxangle, "nc3": nc.nc3,
           "nc4_mismatch": None if nc.nc4 is None else 1.0 - nc.nc4,
           "error": float(np.mean(np.argmax(f, 1) != y))}
    return row, sp


class _Model:
    """Features, logits and classifier of one run on one split, checkpoint by checkpoint."""

    def __init__(self, ctx: ReproContext, name: str, split: str) -> None:
        self.ctx, self.name, self.split = ctx, name, split
        self.data = ctx.data.probe_of(split)
        self.from_features = True   # logits = classifier(features), checked once per run and split

    def at(self, label: str) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        Phi = np.asarray(self.ctx.stats.features(self.name, label, split=self.split), dtype=np.float64)
        model = self.ctx.runs.load(self.name, label)
        head = _head(model)
        if head is None or not self.from_features:
            return Phi, logits(model, self.data.X), None if head is None else head[0]
        W, b = head
        return Phi, Phi @ W.T + b, W

    def check(self, label: str) -> float:
        """Largest relative difference between forward-pass logits and classifier(features) at ``label``;
        above 1e-4 every logit of this run and split comes from forward passes instead."""
        model = self.ctx.runs.load(self.name, label)
        head = _head(model)
        if head is None:
            self.from_features = False
            return float("nan")
        Phi = np.asarray(self.ctx.stats.features(self.name, label, split=self.split), dtype=np.float64)
        f_fwd = logits(model, self.data.X)
        f_feat = Phi @ head[0].T + head[1]
        diff = float(np.abs(f_fwd - f_feat).max() / max(np.abs(f_fwd).max(), 1e-12))
        self.from_features = diff <= 1e-4
        return diff


def _read_run(ctx: ReproContext, name: str, split: str, labels: list[str] | None = None
              ) -> tuple[list[dict[str, Any]], list[dict[str, Any]], dict[str, Any], float]:
    """Rows of one run on one split (every checkpoint, or ``labels``): regime rows, the top-K rho rows
    (train only), the full spectra by label for the Pi curves, and the logits check."""
    records = ctx.runs.checkpoints(name)
    if labels is not None:
        records = [r for r in records if r["label"] in labels]
    spe = int(ctx.runs.manifest(name)["steps_per_epoch"])
    C = ctx.data.n_classes
    src = _Model(ctx, name, split)
    diff = src.check(records[-1]["label"])
    y = np.asarray(src.data.y)
    rows, rho_rows, spectra = [], [], {}
    for rec in records:
        label = rec["label"]
        Phi, f, W = src.at(label)
        row, sp = reading(Phi, y, f, W, C)
        base = {"model": name, "split": split, "checkpoint": label, "epoch": rec["epoch"],
                "iteration": rec["iteration"], "position": position(rec, spe)}
        err = row.pop("error")
        rows.append({**base, "test_accuracy": rec.get("test_accuracy"), "train_error": err, **row})
        spectra[label] = sp
        if split == "train":
            for k in range(min(K_TOP, len(sp.rho))):
                rho_rows.append({**base, "k": k + 1, "rho": float(sp.rho[k]), "rho_rel": float(sp.rho[k] / sp.rho[0]),
                                 "q_star": float(sp.q_star[k])})
    return rows, rho_rows, spectra, diff


def run(ctx: ReproContext) -> ExperimentResult:
    names = [n for n in ctx.cfg.zoo_names if ctx.cfg.model(n).paradigm == "supervised"]
    C = ctx.data.n_classes
    reg, reg_test, rho_rows, curve_rows = [], [], [], []
    judged: dict[str, dict[str, Any]] = {}
    checks: dict[str, float] = {}
    for name in names:
        ctx.runs.ensure_trained(name)
        rows, rr, spectra, diff = _read_run(ctx, name, "train")
        checks[name] = diff
        J, terminal = nc_checkpoint(rows)
        R = reference_checkpoint(rows, J)
        for r in rows:
            r["nc_checkpoint"] = r is J
        judged[name] = {"J": J, "R": R, "terminal": terminal, "init": rows[0], "final": rows[-1],
                        "mf_from": mf_reached_epoch(rows), "rows": rows}
        reg += rows
        rho_rows += rr
        for label in dict.fromkeys([rows[0]["checkpoint"], REFERENCE, J["checkpoint"], rows[-1]["checkpoint"]]):
            if label not in spectra:
                continue
            sp = spectra[label]
            pi_p = float(sp.pi_star[-1])
            for k in range(len(sp.rho)):
                curve_rows.append({"model": name, "split": "train", "checkpoint": label, "k": k + 1,
                                   "pi_star": float(sp.pi_star[k]), "pi": float(sp.pi[k]),
                                   "share": float(sp.pi_star[k] / pi_p) if pi_p > 0 else None})
        epoch_ends = [r["label"] for r in ctx.runs.checkpoints(name) if r["label"] == "init" or
                      r["label"] == f"e{r['epoch']}"]
        rows_t, _, _, _ = _read_run(ctx, name, "test", epoch_ends)
        reg_test += rows_t
    claims = _claims(judged, names, {n: ctx.cfg.model(n).kind for n in names}, len(ctx.data.train_probe))
    return ExperimentResult(
        name=NAME, title=TITLE, paper="Nam et al. 2024; Papyan et al. 2020",
        summary=_summary(ctx, names, judged, C),
        claims=claims,
        tables={"regimes": reg, "rho": rho_rows, "pi_curves": curve_rows, "regimes_test": reg_test},
        provenance=ctx.provenance(models=names, k_top=K_TOP, logits_check=checks),
        protocol=_protocol(ctx, names, C, checks))


def _summary(ctx: ReproContext, names: list[str], judged: dict[str, dict[str, Any]], C: int) -> str:
    parts = []
    for n in names:
        j = judged[n]
        fin, J = j["final"], j["J"]
        parts.append(f"{n}: {fin['regime']} at the end (rho_C/rho_C+1 {_g(fin['gap'])}, Pi*(C)/Pi*(p) "
                     f"{_g(fin['share_C'])}), neural collapse read at {J['checkpoint']} (training error "
                     f"{100 * J['train_error']:.2g} %)")
    return (f"Penultimate feature maps of {', '.join(names)} diagonalised at every checkpoint on "
            f"{len(ctx.data.train_probe)} training images (C = {C} classes, uncentered); MF when rho_C/rho_C+1 >= "
            f"{MF_GAP:g} and Pi*(C)/Pi*(p) >= {MF_SHARE:g} (thresholds ours). " + "; ".join(parts) + ".")


def _g(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.3g}"


def _protocol(ctx: ReproContext, names: list[str], C: int, checks: dict[str, float]) -> dict[str, Any]:
    return {
        "models": names,
        "layers": {n: ctx.runs.feature_layer(n) for n in names},
        "feature_policy": "flatten (each feature layer is a vector per image: the penultimate ReLU of mlp and cnn, "
                          "the global average pool of resnet)",
        "centering": f"none: feature_spectrum(center={CENTER}, bias=False), its defaults",
        "targets": f"one-hot class indicators, C = {C} classes",
        "split": "train",
        "split_reason": "ours: Nam et al.'s inputs are not stated in the readable parts of the paper; the "
                        "gradient-descent operator acts on the training set and Papyan et al.'s collapse is "
                        "defined on training features",
        "n_samples": len(ctx.data.train_probe),
        "sample_set": "a fixed, seeded, class-balanced subset of the training images the models were trained on, "
                      "no augmentation (ctx.data.train_probe); every checkpoint",
        "extra_split": "test",
        "n_samples_extra": len(ctx.data.probe),
        "extra_sample_set": "the held-out probe (class-balanced test images), at the initialisation and every "
                            "epoch end; tables and a figure only, no verdict",
        "n_train": len(ctx.data.train),
        "epochs": {n: ctx.cfg.epochs_of(n) for n in names},
        "schedule": {n: ctx.runs.spec(n).describe() for n in names},
        "batch_size": ctx.cfg.batch_size,
        "checkpoints": "initialisation, evenly spaced iterations inside epoch 1, every epoch end",
        "logits": "the classifier applied to the feature-layer features; checked against a forward pass at the "
                  "final checkpoint (largest relative difference per model in provenance.logits_check)",
        "mf_rule": {"source": "ours: Nam et al. publish no numeric threshold",
                    "MF": f"rho_C / rho_C+1 >= {MF_GAP:g} and Pi*(C) / Pi*(p) >= {MF_SHARE:g}",
                    "EF": f"90 % of Pi*(p) needs >= {EF_FACTOR:g} x C eigenfunctions",
                    "intermediate": "otherwise",
                    "few_epochs": f"MF held to the end from epoch {FEW_EPOCHS:g} or earlier",
                    "gap_min": MF_GAP, "share_min": MF_SHARE, "ef_factor": EF_FACTOR, "few_epochs_max": FEW_EPOCHS},
        "mf_models": "the convolutional models (Nam et al.: good CNNs reach MF); the fully connected mlp is "
                     "reported without a verdict",
        "nc_checkpoint": "the first checkpoint whose training error on the training probe is 0 (start of Papyan et "
                         "al.'s terminal phase); else the final checkpoint, with its training error stated",
        "nc_reference": f"the end of epoch 1 ({REFERENCE}), or the last checkpoint before the judged one when that "
                        f"is not later; the untrained network is context only",
        "nc_rules": {"source": "ours, in Papyan et al.'s direction",
                     "NC1": f"NC1 <= {NC1_FACTOR:g} x NC1 at the reference",
                     "NC2": "equinorm, equiangularity and max-angle deviation each below their reference values",
                     "NC3": "below its reference value",
                     "NC4": f"mismatch rate <= {NC4_MAX:g}",
                     "nc1_factor": NC1_FACTOR, "nc4_max": NC4_MAX},
        "nc4": "mismatch rate between the network's decision and the nearest class-mean decision (Papyan et "
               "al.'s NC4; 0 under collapse) = 1 - deepspan.neural_collapse(...).nc4 (agreement)",
    }


# ----------------------------------------------------------------------------- claims
def _regime_measured(name: str, j: dict[str, Any]) -> list[Measured]:
    fin = j["final"]
    return [Measured(f"{name}_gap", f"{name}: rho_C / rho_C+1 at the final checkpoint", fin["gap"]),
            Measured(f"{name}_share_C", f"{name}: Pi*(C) / Pi*(p) at the final checkpoint", fin["share_C"]),
            Measured(f"{name}_pi_star_C", f"{name}: Pi*(C) at the final checkpoint", fin["pi_star_C"]),
            Measured(f"{name}_pi_star_p", f"{name}: Pi*(p), the share of the targets all features reach",
                     fin["pi_star_p"]),
            Measured(f"{name}_k_share90", f"{name}: eigenfunctions needed for 90 % of Pi*(p)", fin["k_share90"]),
            Measured(f"{name}_d_eff", f"{name}: effective dimension exp(H(rho)) at the final checkpoint",
                     fin["d_eff"]),
            Measured(f"{name}_test_accuracy", f"{name}: test accuracy at the final checkpoint",
                     fin["test_accuracy"])]


def _mf_check(name: str) -> Check:
    return Check(name, (Condition(f"{name}_gap", ">=", MF_GAP), Condition(f"{name}_share_C", ">=", MF_SHARE)))


def _regimes(judged: dict[str, dict[str, Any]], names: list[str]) -> str:
    return ", ".join(f"{n}: {judged[n]['final']['regime']}" for n in names)


def _claims(judged: dict[str, dict[str, Any]], names: list[str], kinds: dict[str, str], n_train: int) -> list[Claim]:
    conv = [n for n in names if kinds.get(n) != "mlp"]
    fc = [n for n in names if kinds.get(n) == "mlp"]
    where = f"on {n_train} training images (the training probe)"
    ours = (f"thresholds ours (Nam et al. publish none): MF needs rho_C / rho_C+1 >= {MF_GAP:g} and Pi*(C) / "
            f"Pi*(p) >= {MF_SHARE:g}")
    claims: list[Claim] = []
    if conv:
        claims.append(Claim(
            "s1", quote="dominated by a number of eigenfunctions equal to the number of classes", quote_kind="verbatim",
            source=NAM,
            rule=Rule(f"per convolutional model ({', '.join(conv)}), {where}, at the final checkpoint: the regime is "
                      f"MF by our rule (thresholds ours, Nam et al. publish none): rho_C / rho_C+1 >= {MF_GAP:g} and "
                      f"Pi*(C) / Pi*(p) >= {MF_SHARE:g}; regimes: {_regimes(judged, conv)}",
                      tuple(_mf_check(n) for n in conv)),
            measured=[m for n in conv for m in _regime_measured(n, judged[n])],
            note=(f"{ours}; Pi*(p) is what all p features reach for the one-hot targets, so the ratio asks whether "
                  f"the top C eigenfunctions carry it. The fully connected model is read in s1_fc (Nam et al. find "
                  f"fully connected networks can be EF).")))
        claims.append(Claim(
            "s1_early", quote="after just a few epochs", quote_kind="verbatim", source=NAM,
            rule=Rule(f"per convolutional model ({', '.join(conv)}), {where}: every checkpoint from epoch "
                      f"{FEW_EPOCHS:g} or earlier to the end is MF by our rule (the epoch bound and the MF thresholds "
                      f"are ours)", tuple(Check(n, (Condition(f"{n}_mf_from", "<=", FEW_EPOCHS),)) for n in conv)),
            measured=[Measured(f"{n}_mf_from", f"{n}: MF at every checkpoint from this training position on "
                               f"(none: not MF at the end)", judged[n]["mf_from"], "epochs") for n in conv],
            note=f"{ours}; 'a few epochs' read as at most {FEW_EPOCHS:g} epochs (ours); the runs train "
                 + ", ".join(f"{n} {judged[n]['final']['epoch']}" for n in conv) + " epochs."))
    for n in fc:
        j = judged[n]
        claims.append(Claim(
            "s1_fc" if n == fc[0] else f"s1_fc_{n}",
            quote=("besides the MF regime there is an extended feature (EF) regime, in which significantly more "
                   "features are used; a fully connected network can be in it"),
            quote_kind="paraphrase",
            source="Nam et al. 2024 (arXiv 2410.04264 v1), opening section (abstract and introduction)",
            rule=None,
            measured=_regime_measured(n, j) + [Measured(f"{n}_mf_from", f"{n}: MF at every checkpoint from this "
                                                        f"training position on (none: not MF at the end)",
                                                        j["mf_from"], "epochs")],
            note=(f"{n} ends {j['final']['regime']} by our rule; {ours}, EF when 90 % of Pi*(p) needs >= "
                  f"{EF_FACTOR:g} x C eigenfunctions. 'Can be EF' is an existence statement: an MLP in either "
                  f"regime is consistent with it, so no verdict.")))
    claims.append(Claim(
        "s2", quote="resembles the neural collapse phenomenon studied at longer training times",
        quote_kind="verbatim", source=NAM, rule=None,
        measured=[m for n in names for m in (
            Measured(f"{n}_nc_at", f"{n}: training position of the checkpoint neural collapse is read at",
                     judged[n]["J"]["position"], "epochs"),
            Measured(f"{n}_nc_train_error", f"{n}: training error (training probe) there",
                     judged[n]["J"]["train_error"]),
            Measured(f"{n}_nc_gap", f"{n}: rho_C / rho_C+1 there", judged[n]["J"]["gap"]),
            Measured(f"{n}_nc_share_C", f"{n}: Pi*(C) / Pi*(p) there", judged[n]["J"]["share_C"]))],
        note=("'Resembles' states no measurable relation, so this claim shows the MF numbers at the checkpoint where "
              "collapse is judged, without a verdict; the MF regime is judged in s1 and collapse in nc1-nc4. "
              "Regimes there: " + ", ".join(f"{n}: {judged[n]['J']['regime']}" for n in names) + ".")))
    claims += _nc_claims(judged, names, n_train)
    return claims


def _phase(judged: dict[str, dict[str, Any]], names: list[str], n_train: int) -> str:
    parts = []
    for n in names:
        j = judged[n]
        J = j["J"]
        if j["terminal"]:
            parts.append(f"{n}: training error 0 from {J['checkpoint']} (epoch {J['position']:.3g}), judged there")
        else:
            parts.append(f"{n}: terminal phase NOT reached: training error {100 * J['train_error']:.3g} % "
                         f"({round(J['train_error'] * n_train)} of {n_train} training images) at the final "
                         f"checkpoint {J['checkpoint']}, judged there")
    return "; ".join(parts)


def _nc_claims(judged: dict[str, dict[str, Any]], names: list[str], n_train: int) -> list[Claim]:
    phase = _phase(judged, names, n_train)
    common = (f"on {n_train} training images at the first checkpoint with training error 0 (else the final one), "
              f"against the end of epoch 1 (the reference; the untrained values are context, not judged)")

    def m(n: str, key: str, which: str, label: str) -> Measured:
        row = judged[n][which]
        suffix = {"J": "", "R": "_ref", "init": "_init", "final": "_final"}[which]
        where = {"J": "at the judged checkpoint", "R": f"at the reference {row['checkpoint']}",
                 "init": "untrained (context)", "final": "at the final checkpoint"}[which]
        return Measured(f"{n}_{key}{suffix}", f"{n}: {label} {where}", row[key])

    nc1 = Claim(
        "nc1", quote=("the within-class variability of the last-layer training features collapses towards zero "
                      "during the terminal phase of training (NC1)"),
        quote_kind="paraphrase", source=PAPYAN,
        rule=Rule(f"per model, {common}: NC1 = Tr(Sigma_W Sigma_B^+)/C <= {NC1_FACTOR:g} x NC1 at the reference "
                  f"(factor ours)", tuple(Check(n, (Condition(f"{n}_nc1", "<=", f"{n}_nc1_ref", NC1_FACTOR),))
                                          for n in names)),
        measured=[x for n in names for x in (m(n, "nc1", "J", "NC1"), m(n, "nc1", "R", "NC1"),
                                             m(n, "nc1", "final", "NC1"), m(n, "nc1", "init", "NC1"))],
        note=phase)
    nc2 = Claim(
        "nc2", quote=("the class means of the training features approach equal norms and equal, maximal pairwise "
                      "angles: a simplex equiangular tight frame (NC2)"),
        quote_kind="paraphrase", source=PAPYAN,
        rule=Rule(f"per model, {common}: the equinorm (std/mean of the centred class-mean norms), the equiangularity "
                  f"(std of their pairwise cosines) and the max-angle deviation (mean |cos + 1/(C-1)|) are each "
                  f"below their reference values",
                  tuple(Check(n, tuple(Condition(f"{n}_{k}", "<", f"{n}_{k}_ref")
                                       for k in ("nc2_equinorm", "nc2_equiangle", "nc2_maxangle"))) for n in names)),
        measured=[x for n in names for k, lab in (("nc2_equinorm", "NC2 equinorm"), ("nc2_equiangle",
                                                                                      "NC2 equiangularity"),
                                                  ("nc2_maxangle", "NC2 max-angle deviation"))
                  for x in (m(n, k, "J", lab), m(n, k, "R", lab))],
        note=phase)
    nc3 = Claim(
        "nc3", quote="the last-layer classifier approaches the (rescaled) centred class means: self-duality (NC3)",
        quote_kind="paraphrase", source=PAPYAN,
        rule=Rule(f"per model, {common}: NC3 = || W/||W||_F - M^T/||M||_F ||_F is below its reference value",
                  tuple(Check(n, (Condition(f"{n}_nc3", "<", f"{n}_nc3_ref"),)) for n in names)),
        measured=[x for n in names for x in (m(n, "nc3", "J", "NC3"), m(n, "nc3", "R", "NC3"))],
        note=phase)
    nc4 = Claim(
        "nc4", quote=("the network's decision approaches that of the nearest class mean of the training features "
                      "(NC4): the mismatch rate between the two goes to 0"),
        quote_kind="paraphrase", source=PAPYAN,
        rule=Rule(f"per model, {common}: the NC4 mismatch rate (share of training images the network and the "
                  f"nearest-class-mean rule classify differently; 0 under collapse) <= {NC4_MAX:g} (bound ours)",
                  tuple(Check(n, (Condition(f"{n}_nc4_mismatch", "<=", NC4_MAX),)) for n in names)),
        measured=[x for n in names for x in (m(n, "nc4_mismatch", "J", "NC4 mismatch"),
                                             m(n, "nc4_mismatch", "R", "NC4 mismatch"),
                                             m(n, "nc4_mismatch", "init", "NC4 mismatch"))],
        note=phase)
    return [nc1, nc2, nc3, nc4]


EXPERIMENT = Experiment(NAME, TITLE, "Nam et al. 2024; Papyan et al. 2020", run, figures="deepspan.report.fig_spectrum",
                        claims=("s1", "s1_early", "s1_fc", "s2", "nc1", "nc2", "nc3", "nc4"))
