"""``deepspan compare``: similarity measures between the features of two inputs.

An input (a *side*, A or B) is a saved FeatureSet directory, a ``.npy`` feature
matrix, or a state_dict file run on a seeded probe. :func:`run_compare` is the
pipeline, in named steps: :func:`load_side`, :func:`pair_layers`,
:func:`extract_sides`, :func:`measure_rows`; ``.npy`` matrices take
:func:`compare_matrices`. The command prints the table and
:func:`write_outputs` writes JSON / CSV.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click

from deepspan.cli.models import (
    MODEL_EXAMPLES,
    FactorySpec,
    check_layers,
    load_factory_spec,
    load_matrix,
    parse_kwargs,
    parse_layer_pairs,
    rename_layers,
    source_kind,
)
from deepspan.cli.options import ProbeOptions, probe_options, torchrun_job, user_errors
from deepspan.cli.output import format_table, write_csv, write_json
from deepspan.measures import MEASURES
from deepspan.measures.compare import DEFAULT_MEASURES

__all__ = ["compare_cmd", "CompareOptions", "Side", "run_compare", "resolve_measures", "load_side", "pair_layers",
           "extract_sides", "measure_rows", "compare_matrices", "write_outputs", "KIND_TEXT", "CSV_FIELDS",
           "SIGNIFICANCE_FIELDS", "with_significance", "print_significance"]

SIDES = ("A", "B")
KIND_TEXT = {"features": "FeatureSet directory", "matrix": ".npy feature matrix", "state": "state_dict file"}
#: Columns of ``--csv``: one row per layer and measure.
CSV_FIELDS = ("layer", "measure", "kind", "value")
#: Extra columns with ``--permutations`` / ``--bootstrap`` (deepspan.significance).
SIGNIFICANCE_FIELDS = ("ci_low", "ci_high", "p_value", "calibrated", "null_mean", "null_sd", "n_perm", "n_boot",
                       "ci", "ci_method", "stat_seed")

#: (layer of A, layer of B, label in the results)
LayerPair = tuple[str, str, str]


@dataclass(frozen=True)
class CompareOptions:
    """The inputs and options of one ``deepspan compare`` run (what the command line gave)."""

    a: Path
    b: Path
    layers: tuple[str, ...] = ()
    measures: tuple[str, ...] = ()
    model: str | None = None
    model_a: str | None = None
    model_b: str | None = None
    kwargs_a: str | None = None
    kwargs_b: str | None = None
    probe: ProbeOptions = field(default_factory=ProbeOptions)
    n_perm: int | None = None
    n_boot: int | None = None
    ci: float = 0.95
    stat_seed: int = 0

    def significance_kwargs(self) -> dict[str, Any]:
        """``deepspan.compare``'s significance arguments, or none when neither was asked."""
        if self.n_perm is None and self.n_boot is None:
            return {}
        return {"n_perm": self.n_perm, "n_boot": self.n_boot, "ci": self.ci, "seed": self.stat_seed}

    def path(self, side: str) -> Path:
        return self.a if side == "A" else self.b

    def explicit_model(self, side: str) -> str | None:
        """``--model-a`` / ``--model-b``."""
        return self.model_a if side == "A" else self.model_b

    def side_model(self, side: str) -> str | None:
        """The architecture of a side: its own ``--model-a/b``, else ``--model``."""
        return self.explicit_model(side) or self.model

    def side_kwargs(self, side: str) -> dict[str, Any]:
        """``--kwargs-a`` / ``--kwargs-b`` parsed."""
        return parse_kwargs(self.kwargs_a if side == "A" else self.kwargs_b, f"--kwargs-{side.lower()}")


@dataclass
class Side:
    """One input: its path and kind; for a state_dict its factory and loaded model; its features once known."""

    name: str
    path: Path
    kind: str
    spec: FactorySpec | None = None
    net: Any = None
    features: Any = None  # a FeatureSet


# ----------------------------------------------------------------------------- the pipeline

def resolve_measures(measures: tuple[str, ...]) -> list[str]:
    """The measures asked for (repeats dropped), or the default set; an unknown name raises InputError."""
    from deepspan.errors import InputError

    names = list(dict.fromkeys(measures)) or list(DEFAULT_MEASURES)
    for m in names:
        if m not in MEASURES:
            close = difflib.get_close_matches(m, list(MEASURES), n=3, cutoff=0.5)
            hint = f"did you mean {', '.join(close)}? " if close else ""
            raise InputError(f"unknown measure {m!r}; {hint}available: {', '.join(MEASURES)}.")
    return names


def new_result(opts: CompareOptions, sides: dict[str, Side], names: list[str]) -> dict[str, Any]:
    """The head of the JSON result (provenance); the steps below fill in probe, models, layers and rows."""
    from deepspan import __version__

    return {"format": "deepspan.compare/1", "deepspan_version": __version__, "a": str(opts.a), "b": str(opts.b),
            "a_kind": sides["A"].kind, "b_kind": sides["B"].kind, "measures": names, "policy": opts.probe.policy,
            "probe": None, "models": {}}


def compare_matrices(opts: CompareOptions, sides: dict[str, Side], names: list[str]) -> dict[str, Any]:
    """Two ``.npy`` matrices of the same samples: one row per measure (layer ``""``)."""
    from deepspan.errors import InputError
    from deepspan.measures import compare

    a, b = opts.a, opts.b
    if sides["A"].kind != sides["B"].kind:
        raise InputError(f"{a} is a {KIND_TEXT[sides['A'].kind]} and {b} a {KIND_TEXT[sides['B'].kind]}; a .npy "
                         f"matrix compares only with another .npy matrix of the same samples.")
    if opts.layers:
        raise InputError("--layer applies to FeatureSets and models; a .npy file is one feature matrix, so drop --layer.")
    if opts.model or opts.model_a or opts.model_b:
        raise InputError("--model applies to state_dict (.pt) inputs; .npy matrices need none, so drop it.")
    Xa, Xb = load_matrix(a), load_matrix(b)
    if Xa.shape[0] != Xb.shape[0]:
        raise InputError(f"{a} has {Xa.shape[0]} rows (samples) but {b} has {Xb.shape[0]}; both files must hold "
                         f"features of the same samples in the same order (rows = samples, columns = features).")
    values = compare(Xa, Xb, names, **opts.significance_kwargs())
    return {"layers": [""], "rows": [with_significance({"layer": "", "measure": m, "kind": MEASURES[m].kind,
                                                        "value": float(v)}, v) for m, v in values.items()]}


def with_significance(row: dict[str, Any], sig: Any) -> dict[str, Any]:
    """A result row with the significance columns added (when ``sig`` is a Significance; else unchanged)."""
    if not hasattr(sig, "p_value"):
        return row
    d = sig.as_dict()
    row.update({k: d[k] for k in SIGNIFICANCE_FIELDS if k in d})
    row["stat_seed"] = d["seed"]
    return row


def check_model_options(opts: CompareOptions, sides: dict[str, Side]) -> None:
    """--model / --model-a / --model-b go with state_dict inputs, and every state_dict input needs one."""
    from deepspan.errors import InputError

    for side in sides.values():
        opt = f"--model-{side.name.lower()}"
        if side.kind != "state" and opts.explicit_model(side.name):
            raise InputError(f"{opt} applies to a state_dict {side.name}, but {side.path} is a {KIND_TEXT[side.kind]}; "
                             f"drop {opt}.")
        if side.kind == "state" and not opts.side_model(side.name):
            raise InputError(f"{side.path} is a state_dict file, so its architecture is needed: pass --model "
                             f"module:factory (or --model-a / --model-b for two architectures), {MODEL_EXAMPLES}.")
    if opts.model and all(side.kind != "state" for side in sides.values()):
        raise InputError("--model applies to state_dict (.pt) inputs; FeatureSet directories need none, so drop it.")


def load_side(opts: CompareOptions, side: Side, base_kwargs: dict[str, Any]) -> None:
    """Load a FeatureSet directory, or build the side's model (``--kwargs`` then ``--kwargs-a/b``) with its weights."""
    if side.kind == "features":
        from deepspan.features import FeatureSet

        side.features = FeatureSet.load(side.path)
        return
    from deepspan.track import load_state_dict

    side_kwargs = opts.side_kwargs(side.name)
    side.spec = load_factory_spec(opts.side_model(side.name), {**base_kwargs, **side_kwargs})
    side.net = load_state_dict(side.spec.build(), side.path)


def pair_layers(opts: CompareOptions, sides: dict[str, Side]) -> list[LayerPair]:
    """The layers to compare: ``--layer``, else the layers both FeatureSets hold (or the one FeatureSet's),
    else the models' ``block_layers``."""
    from deepspan.errors import InputError

    A, B = sides["A"], sides["B"]
    if opts.layers:
        return parse_layer_pairs(opts.layers)
    if A.kind == B.kind == "features":
        common = [name for name in A.features.layers if name in B.features.layers]
        if not common:
            raise InputError(f"{opts.a} and {opts.b} share no layer names ({opts.a}: {', '.join(A.features.layers)}; "
                             f"{opts.b}: {', '.join(B.features.layers)}); pair them with --layer NAME_A=NAME_B.")
        return [(name, name, name) for name in common]
    if A.kind == "features" or B.kind == "features":
        fs = A.features if A.kind == "features" else B.features
        return [(name, name, name) for name in fs.layers]
    default = list(getattr(A.net, "block_layers", None) or [])
    in_b = {name for name, _ in B.net.named_modules()}
    if not default or any(name not in in_b for name in default):
        raise InputError(f"name the layers to compare with --layer NAME (or --layer NAME_A=NAME_B for two "
                         f"architectures); `deepspan layers {opts.side_model('A')}` lists them.")
    return [(name, name, name) for name in default]


def side_layers(pairs: list[LayerPair], side: str) -> list[str]:
    """The layers of one side that the pairs use, once each, in order."""
    return list(dict.fromkeys(p[0] if side == "A" else p[1] for p in pairs))


def same_model(a: Side, b: Side) -> bool:
    """Both sides are the same state_dict file in the same architecture with the same kwargs."""
    return (a.kind == b.kind == "state" and a.path.resolve() == b.path.resolve() and a.spec.spec == b.spec.spec
            and a.spec.kwargs == b.spec.kwargs)


def extract_side(side: Side, layers: list[str], probe: Any, popts: ProbeOptions) -> Any:
    """Check the layers on two probe samples, then extract them from the side's model over the probe.

    In a torchrun job each process extracts its share of the probe (``extract(..., distributed=True)``) and
    rank 0 gathers the shares (:func:`deepspan.features.gather_featureset`): the features a single process
    extracts, on rank 0; ``None`` on the other ranks.
    """
    from deepspan.features import extract, gather_featureset

    spec = side.spec
    check_layers(side.net, probe.X[:2], layers, popts.policy, f"{spec.spec} with {side.path}", spec.spec)
    local = extract(side.net, probe, layers, popts.policy, device=popts.device, batch_size=popts.batch_size,
                    checkpoint=str(side.path), progress=False, distributed=True)
    return gather_featureset(local)


def extract_sides(sides: dict[str, Side], pairs: list[LayerPair], probe: Any, popts: ProbeOptions) -> None:
    """Features of every model side (the same model twice is extracted once)."""
    A, B = sides["A"], sides["B"]
    for side in (A, B):
        if side.net is None:
            continue
        wanted = side_layers(pairs, side.name)
        if side is B and same_model(A, B) and wanted == side_layers(pairs, "A"):
            B.features = A.features
            continue
        side.features = extract_side(side, wanted, probe, popts)


def check_same_probe(sides: dict[str, Side], popts: ProbeOptions) -> None:
    """A FeatureSet compared with a model must have been extracted on the probe the options build."""
    from deepspan.errors import InputError

    A, B = sides["A"], sides["B"]
    if A.kind != "features" and B.kind != "features":
        return
    side, other = (A, B) if A.kind == "features" else (B, A)
    if side.features.sample_hash != other.features.sample_hash:
        raise InputError(
            f"{side.path} was extracted on other samples (sample hash {side.features.sample_hash}) than the "
            f"probe built from --data {popts.data} --split {popts.split} "
            f"--n {popts.n if popts.n is not None else 'default'} --seed {popts.seed} "
            f"(hash {other.features.sample_hash}); pass the options that built its probe."
        )


def measure_rows(sides: dict[str, Side], pairs: list[LayerPair], names: list[str],
                 opts: CompareOptions | None = None) -> dict[str, Any]:
    """The measures on every layer pair: the layers (labels), the sample hash and tidy rows (with the
    significance columns when ``opts`` asks for permutations or a bootstrap)."""
    from deepspan.measures import compare

    A, B = sides["A"], sides["B"]
    fa = rename_layers(A.features, [(p[0], p[2]) for p in pairs], str(A.path))
    fb = rename_layers(B.features, [(p[1], p[2]) for p in pairs], str(B.path))
    rows = compare(fa, fb, names, **(opts.significance_kwargs() if opts is not None else {}))
    rows = [with_significance({k: r[k] for k in CSV_FIELDS}, r.get("significance")) for r in rows]
    return {"layers": [p[2] for p in pairs], "sample_hash": fa.sample_hash, "rows": rows}


def run_compare(opts: CompareOptions, rank: int = 0) -> dict[str, Any] | None:
    """Compare A and B as the options say; returns the JSON result (provenance, layers and tidy rows).

    In a torchrun job (``rank`` = this process's rank) the model sides' forward passes are split across the
    processes and rank 0 computes the measures on the gathered features: rank 0 returns the result a single
    process returns, the other ranks ``None`` (inputs without a model are read and compared by rank 0 alone).
    """
    names = resolve_measures(opts.measures)
    sides = {name: Side(name, opts.path(name), source_kind(opts.path(name))) for name in SIDES}
    result = new_result(opts, sides, names)
    if any(side.kind == "matrix" for side in sides.values()):
        if rank != 0:
            return None
        result.update(compare_matrices(opts, sides, names))
        return result
    check_model_options(opts, sides)
    base_kwargs = parse_kwargs(opts.probe.kwargs_json)
    for side in sides.values():
        load_side(opts, side, base_kwargs)
        if side.spec is not None:
            result["models"][side.name.lower()] = {"model": side.spec.spec, "kwargs": side.spec.kwargs,
                                                   "state": str(side.path)}
    pairs = pair_layers(opts, sides)
    if any(side.net is not None for side in sides.values()):
        probe = opts.probe.build_probe()
        result["probe"] = opts.probe.summary(probe)
        extract_sides(sides, pairs, probe, opts.probe)
        if rank != 0:
            return None
        check_same_probe(sides, opts.probe)
    elif rank != 0:
        return None
    result.update(measure_rows(sides, pairs, names, opts))
    return result


# ----------------------------------------------------------------------------- output

def print_result(res: dict[str, Any], policy: str | None) -> None:
    """The inputs, the probe and a table of layers x measures."""
    click.echo(f"A: {res['a']} ({KIND_TEXT[res['a_kind']]})")
    click.echo(f"B: {res['b']} ({KIND_TEXT[res['b_kind']]})")
    if res["probe"] is not None:
        p = res["probe"]
        click.echo(f"probe: {p['data']} {p['split']}, N = {p['n_samples']} samples, seed {p['seed']} "
                   f"(sample hash {p['sample_hash']})" + (f", policy {policy}" if policy else ""))
    values = {(r["layer"], r["measure"]): r["value"] for r in res["rows"]}
    names = res["measures"]
    table = [[layer or "-"] + [values.get((layer, m)) for m in names] for layer in res["layers"]]
    click.echo(format_table(["layer"] + names, table, right=[False] + [True] * len(names)))
    if res["rows"] and "p_value" in res["rows"][0]:
        print_significance(res["rows"])
    sims = [m for m in names if MEASURES[m].kind == "similarity"]
    dists = [m for m in names if MEASURES[m].kind != "similarity"]
    if sims:
        click.echo(f"similarities (identical = 1): {', '.join(sims)}")
    if dists:
        click.echo(f"distances (identical = 0; angles in degrees): {', '.join(dists)}")


def print_significance(rows: list[dict[str, Any]]) -> None:
    """Per layer and measure: the value, its bootstrap CI, the permutation p-value and the calibrated score."""
    first = rows[0]
    table = [[r["layer"] or "-", r["measure"], r["value"], r.get("ci_low"), r.get("ci_high"), r.get("p_value"),
              r.get("calibrated")] for r in rows]
    click.echo(f"significance: {first['n_perm'] or 0} permutations (p = (1 + #null at least as extreme) / "
               f"(1 + n_perm)), {first['n_boot'] or 0} bootstrap resamples ({first['ci']:.0%} {first['ci_method']} "
               f"interval), seed {first['stat_seed']}; calibrated = (value - null mean) / (identity - null mean)")
    click.echo(format_table(["layer", "measure", "value", "ci_low", "ci_high", "p", "calibrated"], table,
                            right=[False, False, True, True, True, True, True]))


def write_outputs(res: dict[str, Any], json_path: Path | None, csv_path: Path | None) -> None:
    """``--json``: the whole result; ``--csv``: the tidy rows (with the significance columns when computed)."""
    if json_path is not None:
        write_json(json_path, res)
    if csv_path is not None:
        extra = SIGNIFICANCE_FIELDS if res["rows"] and "p_value" in res["rows"][0] else ()
        write_csv(csv_path, res["rows"], CSV_FIELDS + extra)


# ----------------------------------------------------------------------------- the command

@click.command("compare")
@click.argument("a", type=click.Path(exists=True, path_type=Path))
@click.argument("b", type=click.Path(exists=True, path_type=Path))
@click.option("--layer", "layers", multiple=True, metavar="NAME[=NAME_B]",
              help="Layer to compare (repeatable); NAME_A=NAME_B pairs layers of two architectures. Default: the "
                   "layers both FeatureSets hold (a FeatureSet's own layers against a state_dict), else the "
                   "model's block_layers (deepspan zoo models).")
@click.option("--measure", "measures", multiple=True, metavar="NAME",
              help=f"Measure (repeatable). Default: {', '.join(DEFAULT_MEASURES)}. "
                   f"Available: {', '.join(MEASURES)}.")
@click.option("--model", default=None, metavar="MODULE:FACTORY",
              help="Architecture of state_dict inputs (both sides), e.g. deepspan.zoo.models:SmallCNN.")
@click.option("--model-a", default=None, metavar="MODULE:FACTORY", help="Architecture of A (overrides --model).")
@click.option("--model-b", default=None, metavar="MODULE:FACTORY", help="Architecture of B (overrides --model).")
@click.option("--kwargs-a", default=None, metavar="JSON", help="Extra factory keyword arguments for A only.")
@click.option("--kwargs-b", default=None, metavar="JSON", help="Extra factory keyword arguments for B only.")
@probe_options
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the results (tidy rows with provenance) as JSON to this file (atomically).")
@click.option("--csv", "csv_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the tidy rows (layer, measure, kind, value) as CSV to this file (atomically).")
@click.option("--permutations", "n_perm", type=click.IntRange(min=1), default=None, metavar="N",
              help="Permutation test with N shuffles of B's samples against A's: adds the p-value, the null's "
                   "mean and the calibrated score (deepspan.significance).")
@click.option("--bootstrap", "n_boot", type=click.IntRange(min=1), default=None, metavar="N",
              help="Bootstrap interval from N resamples of the samples (percentile).")
@click.option("--ci", type=click.FloatRange(0.0, 1.0, min_open=True, max_open=True), default=0.95,
              show_default=True, help="Coverage of the bootstrap interval.")
@click.option("--stat-seed", type=click.IntRange(min=0), default=0, show_default=True,
              help="Seed of the permutations and resamples.")
def compare_cmd(a: Path, b: Path, layers: tuple[str, ...], measures: tuple[str, ...], model: str | None,
                model_a: str | None, model_b: str | None, kwargs_a: str | None, kwargs_b: str | None,
                json_path: Path | None, csv_path: Path | None, n_perm: int | None, n_boot: int | None, ci: float,
                stat_seed: int, **probe: Any) -> None:
    """Compare the features of A and B with similarity measures (deepspan.compare).

    A and B are each a saved FeatureSet directory (FeatureSet.save), a .npy
    feature matrix (rows = samples, the same samples in the same order in both
    files), or a state_dict file (.pt/.pth/.ckpt). State_dict files need the
    architecture (--model, or --model-a/--model-b) and are run on a seeded probe
    drawn from --data, --split, --n and --seed; a FeatureSet compared with a
    state_dict must have been extracted on that same probe.

    Prints a table of layers x measures. Similarities (CKA, CCA, ...) are 1 for
    identical features; distances (procrustes, angles in degrees) are 0.

    --permutations N and --bootstrap N add, per layer and measure, a permutation
    p-value, the calibrated score against the permutation null and a bootstrap
    interval (a second table, and columns of --json / --csv).

    Under torchrun --nproc_per_node K the forward passes over the probe are
    split across the K processes; rank 0 gathers the features, computes the
    measures, prints and writes: the same output as one process.
    """
    opts = CompareOptions(a=a, b=b, layers=layers, measures=measures, model=model, model_a=model_a, model_b=model_b,
                          kwargs_a=kwargs_a, kwargs_b=kwargs_b, probe=ProbeOptions(**probe), n_perm=n_perm,
                          n_boot=n_boot, ci=ci, stat_seed=stat_seed)
    with torchrun_job(opts.probe.device) as (rank, _world):
        with user_errors(quiet=rank != 0):
            res = run_compare(opts, rank)
        if res is None:  # a torchrun process other than rank 0: rank 0 prints and writes
            return
        print_result(res, opts.probe.policy)
        write_outputs(res, json_path, csv_path)
