"""The ``deepspan`` command line."""

from __future__ import annotations

from pathlib import Path

import click

from deepspan import __version__


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", "-V", prog_name="deepspan")
def main() -> None:
    """deepspan: measure what neural networks learn by the subspaces their features span.

    P-vectors (Liu et al. 2022), subspace match (Wang et al. 2018) and
    feature-map spectra (Nam et al. 2024) on feature matrices of N samples x d features.
    """


@main.command()
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Also write the results as JSON to this file.")
def demo(json_path: Path | None) -> None:
    """P-vector analysis of scikit-learn's embedded 8x8 digits (works offline).

    Prints the data P-vector of the 1,797 flattened images, the P-vectors of two
    seeded random ReLU feature maps, their energy ratios r_k and the angles
    between them (uncentered and centered), next to the null angle of random
    directions in sample space.
    """
    from deepspan.experiments import run_pvector_demo

    res = run_pvector_demo()
    click.echo(f"deepspan {res.version} P-vector demo: {res.dataset}, N = {res.n_samples} samples "
               f"(sample hash {res.sample_hash})")
    for center in (False, True):
        click.echo("")
        click.echo(f"== {'centered' if center else 'uncentered'} features ==")
        click.echo(f"{'features':<28}{'route':>8}{'sigma_1':>11}{'s2/s1':>8}   r_1    r_2    r_3")
        for s in res.summaries:
            if s["centered"] != center:
                continue
            r = "  ".join(f"{x:.3f}" for x in s["energy"][:3])
            click.echo(f"{s['features']:<28}{s['method']:>8}{s['sigma'][0]:>11.4g}{s['gap']:>8.3f}   {r}")
        click.echo("angles between P-vectors (degrees):")
        for a in res.angles:
            if a["centered"] == center:
                click.echo(f"  {a['a']:<28} vs {a['b']:<28} {a['angle_deg']:7.3f}")
    nulls = ", ".join(f"{x:.2f}" for x in res.null_angles_deg)
    click.echo("")
    click.echo(f"null baseline, angles between independent random directions in R^{res.n_samples}: {nulls}")
    if json_path is not None:
        _write_json(json_path, res.to_dict())
        click.echo(f"wrote {json_path}")


@main.command("pvector")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--center/--no-center", default=False, show_default=True,
              help="Subtract column means before the SVD (recorded in the result).")
@click.option("--n-values", default=5, show_default=True, help="How many top singular values to report.")
@click.option("--chunk-rows", default=16384, show_default=True,
              help="Rows read per chunk; memory stays at one chunk whatever the file size.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the full result (including u) as JSON to this file (atomically).")
def pvector_cmd(path: Path, center: bool, n_values: int, chunk_rows: int, json_path: Path | None) -> None:
    """P-vector of a samples x features matrix saved with numpy.save (PATH.npy).

    Streams the file twice in row chunks (Gram statistics, then u = F v / sigma),
    so files larger than memory work.
    """
    from deepspan.errors import DeepspanError
    from deepspan.features import iter_npy_rows
    from deepspan.linalg import GramAccumulator
    from deepspan.measures import pvector_from_stats, with_left_vector

    try:
        acc = GramAccumulator()
        for block in iter_npy_rows(path, chunk_rows):
            acc.update(block)
        stats = acc.finalize()
        p = pvector_from_stats(stats, center=center, n_values=n_values)
        p = with_left_vector(p, iter_npy_rows(path, chunk_rows), mean=stats.mean)
    except DeepspanError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"{path}: N = {p.n_samples}, d = {p.n_features}, {'centered' if p.centered else 'uncentered'}, "
               f"route {p.method}")
    click.echo("sigma:  " + "  ".join(f"{x:.6g}" for x in p.singular_values))
    click.echo("r_k:    " + "  ".join(f"{x:.4f}" for x in p.energy))
    click.echo(f"sigma_2/sigma_1 = {p.gap:.4f}" + ("  (degenerate: the P-vector is not determined)" if p.degenerate else ""))
    if json_path is not None:
        _write_json(json_path, p.to_dict())
        click.echo(f"wrote {json_path}")


def _write_json(path: Path, obj: object) -> None:
    """Write JSON atomically: a temporary file in the same directory, then rename."""
    from deepspan._io import atomic_write_json

    atomic_write_json(path, obj)


# =============================================================================
# Users' own models: `deepspan layers`, `deepspan compare`, `deepspan track`.
# MODEL is module:factory or path/to/file.py:factory; helpers live in
# deepspan/_cli_models.py. torch is imported inside the commands only.
# =============================================================================

from deepspan.measures.compare import DEFAULT_MEASURES as _DEFAULT_MEASURES  # noqa: E402
from deepspan.measures.compare import MEASURES as _MEASURES  # noqa: E402

def _fail(exc: Exception) -> click.ClickException:
    return click.ClickException(str(exc))


def _probe_options(f):
    """Options shared by `compare` and `track`: the probe set, the conv policy and where to run."""
    opts = [
        click.option("--data", default="digits", show_default=True, metavar="NAME|FILE.npz",
                     help="Probe data: digits, mnist, mnist1d, cifar10, cifar100 or an .npz with X and y."),
        click.option("--split", default="test", show_default=True, help="Split of --data (ignored for .npz)."),
        click.option("--n", "n", type=int, default=None,
                     help="Probe size: a seeded, class-balanced subset, or the whole split when N is its size "
                          "[default: 1000, or the whole split when it has fewer samples]."),
        click.option("--seed", default=0, show_default=True, help="Seed of the probe subset."),
        click.option("--policy", type=click.Choice(["flatten", "gap"]), default=None,
                     help="How conv outputs [N, C, H, W] become features: flatten (C*H*W) or gap (global average "
                          "pool, C). Required when a chosen layer has spatial axes."),
        click.option("--input-shape", metavar="C,H,W", default=None,
                     help="Reshape each probe sample to this shape before the forward pass (e.g. 64 for an MLP "
                          "that takes flat digits)."),
        click.option("--kwargs", "kwargs_json", metavar="JSON", default=None,
                     help="Keyword arguments of the model factory (every model) as a JSON object, "
                          "e.g. '{\"image_size\": 8}'."),
        click.option("--device", type=click.Choice(["cpu", "cuda", "auto"]), default="cpu", show_default=True,
                     help="Where the forward passes run."),
        click.option("--batch-size", default=256, show_default=True, help="Probe samples per forward pass."),
    ]
    for opt in reversed(opts):
        f = opt(f)
    return f


def _per_sample(shape):
    """A hooked output shape without the example batch axis (JSON-friendly)."""
    if isinstance(shape, tuple):
        return list(shape[1:])
    if isinstance(shape, list):
        return [_per_sample(s) for s in shape]
    if isinstance(shape, dict):
        return {k: _per_sample(v) for k, v in shape.items()}
    return shape


@main.command("layers")
@click.argument("model")
@click.option("--input-shape", metavar="C,H,W", default=None,
              help="Per-sample input shape; the model runs once on zeros of shape (2, C, H, W) to show each "
                   "module's output shape. Without it no shapes are shown.")
@click.option("--kwargs", "kwargs_json", metavar="JSON", default=None,
              help="Keyword arguments of the factory as a JSON object, e.g. '{\"image_size\": 8}'.")
@click.option("--state", "state_path", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="Load this state_dict file (torch.save(model.state_dict())) into the model first.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Also write the table as JSON to this file (atomically).")
def layers_cmd(model: str, input_shape: str | None, kwargs_json: str | None, state_path: Path | None,
               json_path: Path | None) -> None:
    """List the modules of MODEL that features can be taken from.

    MODEL is module:factory (modules in the current directory are found) or
    path/to/file.py:factory, e.g. deepspan.zoo.models:SmallCNN; the factory is
    called with --kwargs and must return a torch.nn.Module.

    Prints each module's dotted name (what --layer takes), its type, its output
    shape per sample (N = the batch axis; needs --input-shape) and its parameter
    count (including submodules). The model's feature_layer and block_layers,
    when it names them (the deepspan zoo does), are marked.
    """
    from deepspan import _cli_models as cm
    from deepspan.errors import DeepspanError

    try:
        ms = cm.load_model_spec(model, cm.parse_kwargs(kwargs_json))
        shape = cm.parse_shape(input_shape)
        net = ms.build()
        if state_path is not None:
            from deepspan.track.checkpoints import load_state_dict

            load_state_dict(net, state_path)
        if shape is not None:
            import torch

            infos = cm.run_list_layers(net, torch.zeros(2, *shape), ms.call_text)
        else:
            from deepspan.features import list_layers

            infos = list_layers(net)
    except DeepspanError as exc:
        raise _fail(exc) from exc
    feature = getattr(net, "feature_layer", None)
    blocks = getattr(net, "block_layers", None) or []
    roles = {name: ", ".join(r for r, ok in (("feature_layer", name == feature), ("block", name in blocks)) if ok)
             for name in (i.name for i in infos)}
    total = sum(p.numel() for p in net.parameters())
    click.echo(f"{ms.call_text} -> {type(net).__name__}: {total:,} parameters, {len(infos)} modules"
               + (f", weights from {state_path}" if state_path is not None else ""))
    rows = [(i.name, i.type, cm.format_shape(i.output_shape) if shape else "-", f"{i.n_params:,}", roles[i.name])
            for i in infos]
    click.echo(cm.format_table(["name", "type", "output shape", "params", "role"], rows,
                               right=[False, False, False, True, False]))
    if shape is None:
        click.echo("(output shapes: pass --input-shape C,H,W to run one forward pass on zeros)")
    if json_path is not None:
        _write_json(json_path, {
            "format": "deepspan.layers/1", "model": ms.spec, "kwargs": ms.kwargs, "class": type(net).__name__,
            "state": None if state_path is None else str(state_path), "input_shape": None if shape is None else list(shape),
            "n_params": total, "feature_layer": feature, "block_layers": list(blocks),
            "layers": [{"name": i.name, "type": i.type, "n_params": i.n_params,
                        "output_shape": _per_sample(i.output_shape), "role": roles[i.name]} for i in infos],
        })
        click.echo(f"wrote {json_path}")


def _resolve_measures(measures: tuple[str, ...]) -> list[str]:
    import difflib

    from deepspan.errors import InputError

    names = list(dict.fromkeys(measures)) or list(_DEFAULT_MEASURES)
    for m in names:
        if m not in _MEASURES:
            close = difflib.get_close_matches(m, list(_MEASURES), n=3, cutoff=0.5)
            hint = f"did you mean {', '.join(close)}? " if close else ""
            raise InputError(f"unknown measure {m!r}; {hint}available: {', '.join(_MEASURES)}.")
    return names


_KIND_TEXT = {"features": "FeatureSet directory", "matrix": ".npy feature matrix", "state": "state_dict file"}


def _run_compare(a: Path, b: Path, layers: tuple[str, ...], measures: tuple[str, ...], model: str | None,
                 model_a: str | None, model_b: str | None, kwargs_json: str | None, kwargs_a: str | None,
                 kwargs_b: str | None, data: str, split: str, n: int | None, seed: int, policy: str | None,
                 input_shape: str | None, device: str, batch_size: int) -> dict:
    from deepspan import _cli_models as cm
    from deepspan._version import __version__
    from deepspan.errors import InputError
    from deepspan.measures.compare import compare

    names = _resolve_measures(measures)
    kinds = {"A": cm.source_kind(a), "B": cm.source_kind(b)}
    paths = {"A": a, "B": b}
    side_model = {"A": model_a or model, "B": model_b or model}
    result = {"format": "deepspan.compare/1", "deepspan_version": __version__, "a": str(a), "b": str(b),
              "a_kind": kinds["A"], "b_kind": kinds["B"], "measures": names, "policy": policy, "probe": None,
              "models": {}}
    if "matrix" in kinds.values():
        if kinds["A"] != kinds["B"]:
            raise InputError(f"{a} is a {_KIND_TEXT[kinds['A']]} and {b} a {_KIND_TEXT[kinds['B']]}; a .npy matrix "
                             f"compares only with another .npy matrix of the same samples.")
        if layers:
            raise InputError("--layer applies to FeatureSets and models; a .npy file is one feature matrix, so drop --layer.")
        if model or model_a or model_b:
            raise InputError("--model applies to state_dict (.pt) inputs; .npy matrices need none, so drop it.")
        Xa, Xb = cm.load_matrix(a), cm.load_matrix(b)
        if Xa.shape[0] != Xb.shape[0]:
            raise InputError(f"{a} has {Xa.shape[0]} rows (samples) but {b} has {Xb.shape[0]}; both files must hold "
                             f"features of the same samples in the same order (rows = samples, columns = features).")
        values = compare(Xa, Xb, names)
        result["layers"] = [""]
        result["rows"] = [{"layer": "", "measure": m, "kind": _MEASURES[m].kind, "value": v} for m, v in values.items()]
        return result

    for side, opt in (("A", "--model-a"), ("B", "--model-b")):
        explicit = model_a if side == "A" else model_b
        if kinds[side] != "state" and explicit:
            raise InputError(f"{opt} applies to a state_dict {side}, but {paths[side]} is a {_KIND_TEXT[kinds[side]]}; "
                             f"drop {opt}.")
        if kinds[side] == "state" and not side_model[side]:
            raise InputError(f"{paths[side]} is a state_dict file, so its architecture is needed: pass --model "
                             f"module:factory (or --model-a / --model-b for two architectures), {cm.MODEL_EXAMPLES}.")
    if model and "state" not in kinds.values():
        raise InputError("--model applies to state_dict (.pt) inputs; FeatureSet directories need none, so drop it.")

    from deepspan.features import FeatureSet

    specs: dict[str, object] = {}
    nets: dict[str, object] = {}
    loaded: dict[str, object] = {}
    base_kwargs = cm.parse_kwargs(kwargs_json)
    for side in ("A", "B"):
        if kinds[side] == "features":
            loaded[side] = FeatureSet.load(paths[side])
            continue
        side_kwargs = cm.parse_kwargs(kwargs_a if side == "A" else kwargs_b, "--kwargs-a" if side == "A" else "--kwargs-b")
        ms = cm.load_model_spec(side_model[side], {**base_kwargs, **side_kwargs})
        from deepspan.track.checkpoints import load_state_dict

        specs[side] = ms
        nets[side] = load_state_dict(ms.build(), paths[side])
        result["models"][side.lower()] = {"model": ms.spec, "kwargs": ms.kwargs, "state": str(paths[side])}

    # which layers
    if layers:
        pairs = cm.parse_layer_pairs(layers)
    elif kinds["A"] == kinds["B"] == "features":
        common = [l for l in loaded["A"].layers if l in loaded["B"].layers]
        if not common:
            raise InputError(f"{a} and {b} share no layer names ({a}: {', '.join(loaded['A'].layers)}; "
                             f"{b}: {', '.join(loaded['B'].layers)}); pair them with --layer NAME_A=NAME_B.")
        pairs = [(l, l, l) for l in common]
    elif "features" in kinds.values():
        fs = loaded["A"] if kinds["A"] == "features" else loaded["B"]
        pairs = [(l, l, l) for l in fs.layers]
    else:
        default = list(getattr(nets["A"], "block_layers", None) or [])
        in_b = {name for name, _ in nets["B"].named_modules()}
        if not default or any(l not in in_b for l in default):
            raise InputError(f"name the layers to compare with --layer NAME (or --layer NAME_A=NAME_B for two "
                             f"architectures); `deepspan layers {side_model['A']}` lists them.")
        pairs = [(l, l, l) for l in default]

    if nets:
        cm.check_device(device)
        probe = cm.build_probe(data, split, n, seed, cm.parse_shape(input_shape))
        result["probe"] = cm.probe_summary(probe, data, split, n, seed)
        from deepspan.features import extract

        for side in ("A", "B"):
            if side not in nets:
                continue
            wanted = list(dict.fromkeys(p[0] if side == "A" else p[1] for p in pairs))
            if side == "B" and kinds["A"] == "state" and paths["A"].resolve() == paths["B"].resolve() \
                    and specs["A"].spec == specs["B"].spec and specs["A"].kwargs == specs["B"].kwargs \
                    and wanted == list(dict.fromkeys(p[0] for p in pairs)):
                loaded["B"] = loaded["A"]  # the same model twice: extract once
                continue
            ms = specs[side]
            what = f"{ms.spec} with {paths[side]}"
            cm.check_layers(nets[side], probe.X[:2], wanted, policy, what, ms.spec)
            loaded[side] = extract(nets[side], probe, wanted, policy, device=device, batch_size=batch_size,
                                   checkpoint=str(paths[side]), progress=False)
        if "features" in kinds.values():
            side = "A" if kinds["A"] == "features" else "B"
            other = "B" if side == "A" else "A"
            if loaded[side].sample_hash != loaded[other].sample_hash:
                raise InputError(
                    f"{paths[side]} was extracted on other samples (sample hash {loaded[side].sample_hash}) than the "
                    f"probe built from --data {data} --split {split} --n {n if n is not None else 'default'} "
                    f"--seed {seed} (hash {loaded[other].sample_hash}); pass the options that built its probe."
                )
    fa = cm.rename_layers(loaded["A"], [(p[0], p[2]) for p in pairs], str(a))
    fb = cm.rename_layers(loaded["B"], [(p[1], p[2]) for p in pairs], str(b))
    result["layers"] = [p[2] for p in pairs]
    result["sample_hash"] = fa.sample_hash
    result["rows"] = compare(fa, fb, names)
    return result


@main.command("compare")
@click.argument("a", type=click.Path(exists=True, path_type=Path))
@click.argument("b", type=click.Path(exists=True, path_type=Path))
@click.option("--layer", "layers", multiple=True, metavar="NAME[=NAME_B]",
              help="Layer to compare (repeatable); NAME_A=NAME_B pairs layers of two architectures. Default: the "
                   "layers both FeatureSets hold (a FeatureSet's own layers against a state_dict), else the "
                   "model's block_layers (deepspan zoo models).")
@click.option("--measure", "measures", multiple=True, metavar="NAME",
              help=f"Measure (repeatable). Default: {', '.join(_DEFAULT_MEASURES)}. "
                   f"Available: {', '.join(_MEASURES)}.")
@click.option("--model", default=None, metavar="MODULE:FACTORY",
              help="Architecture of state_dict inputs (both sides), e.g. deepspan.zoo.models:SmallCNN.")
@click.option("--model-a", default=None, metavar="MODULE:FACTORY", help="Architecture of A (overrides --model).")
@click.option("--model-b", default=None, metavar="MODULE:FACTORY", help="Architecture of B (overrides --model).")
@click.option("--kwargs-a", default=None, metavar="JSON", help="Extra factory keyword arguments for A only.")
@click.option("--kwargs-b", default=None, metavar="JSON", help="Extra factory keyword arguments for B only.")
@_probe_options
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the results (tidy rows with provenance) as JSON to this file (atomically).")
@click.option("--csv", "csv_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the tidy rows (layer, measure, kind, value) as CSV to this file (atomically).")
def compare_cmd(a: Path, b: Path, layers: tuple[str, ...], measures: tuple[str, ...], model: str | None,
                model_a: str | None, model_b: str | None, kwargs_a: str | None, kwargs_b: str | None, data: str,
                split: str, n: int | None, seed: int, policy: str | None, input_shape: str | None,
                kwargs_json: str | None, device: str, batch_size: int, json_path: Path | None,
                csv_path: Path | None) -> None:
    """Compare the features of A and B with similarity measures (deepspan.compare).

    A and B are each a saved FeatureSet directory (FeatureSet.save), a .npy
    feature matrix (rows = samples, the same samples in the same order in both
    files), or a state_dict file (.pt/.pth/.ckpt). State_dict files need the
    architecture (--model, or --model-a/--model-b) and are run on a seeded probe
    drawn from --data, --split, --n and --seed; a FeatureSet compared with a
    state_dict must have been extracted on that same probe.

    Prints a table of layers x measures. Similarities (CKA, CCA, ...) are 1 for
    identical features; distances (procrustes, angles in degrees) are 0.
    """
    from deepspan import _cli_models as cm
    from deepspan.errors import DeepspanError

    try:
        res = _run_compare(a, b, layers, measures, model, model_a, model_b, kwargs_json, kwargs_a, kwargs_b, data,
                           split, n, seed, policy, input_shape, device, batch_size)
    except DeepspanError as exc:
        raise _fail(exc) from exc
    click.echo(f"A: {a} ({_KIND_TEXT[res['a_kind']]})")
    click.echo(f"B: {b} ({_KIND_TEXT[res['b_kind']]})")
    if res["probe"] is not None:
        p = res["probe"]
        click.echo(f"probe: {p['data']} {p['split']}, N = {p['n_samples']} samples, seed {p['seed']} "
                   f"(sample hash {p['sample_hash']})" + (f", policy {policy}" if policy else ""))
    values = {(r["layer"], r["measure"]): r["value"] for r in res["rows"]}
    names = res["measures"]
    table = [[layer or "-"] + [values.get((layer, m)) for m in names] for layer in res["layers"]]
    click.echo(cm.format_table(["layer"] + names, table, right=[False] + [True] * len(names)))
    sims = [m for m in names if _MEASURES[m].kind == "similarity"]
    dists = [m for m in names if _MEASURES[m].kind != "similarity"]
    if sims:
        click.echo(f"similarities (identical = 1): {', '.join(sims)}")
    if dists:
        click.echo(f"distances (identical = 0; angles in degrees): {', '.join(dists)}")
    if json_path is not None:
        _write_json(json_path, res)
        click.echo(f"wrote {json_path}")
    if csv_path is not None:
        cm.write_csv(csv_path, ["layer", "measure", "kind", "value"], res["rows"])
        click.echo(f"wrote {csv_path}")


def _checkpoint_series(ms, checkpoints: tuple[Path, ...]):
    from deepspan.errors import InputError
    from deepspan.track.checkpoints import CheckpointSeries

    dirs = [c for c in checkpoints if c.is_dir()]
    if dirs:
        if len(checkpoints) != 1:
            raise InputError(f"{dirs[0]} is a directory; give either one training run directory (with manifest.json) "
                             f"or state_dict files, not both.")
        return CheckpointSeries.from_manifest(dirs[0], ms.build)
    labels = [c.stem for c in checkpoints]
    repeated = sorted({l for l in labels if labels.count(l) > 1})
    if repeated:
        raise InputError(f"checkpoint labels are the file stems and {', '.join(repeated)} appears more than once; "
                         f"rename the files so each stem is unique.")
    return CheckpointSeries.from_files(ms.build, dict(zip(labels, checkpoints)))


_TRACK_OPTIONS = {"sample_hash": "probe (--data, --split, --n, --seed, --input-shape)", "layers": "--layer",
                  "policy": "--policy", "center": "--center", "k": "--k"}


def _resumable(out_dir: Path, series, now: dict) -> int:
    """How many of the series' checkpoints ``out_dir`` already holds; other settings there raise InputError."""
    import json

    from deepspan.errors import InputError

    path = out_dir / "rows.json"
    try:
        saved = json.loads(path.read_text())
        config = saved["config"]
        labels = {c[0] for c in saved["checkpoints"]}
    except (ValueError, KeyError, TypeError, IndexError) as exc:
        raise InputError(f"{path} is not a readable tracking table ({type(exc).__name__}: {exc}); use another --out "
                         f"or delete {out_dir}.") from exc
    diff = [f"{_TRACK_OPTIONS[key]}: {config.get(key)!r} there, {value!r} now" for key, value in now.items()
            if config.get(key) != value]
    if diff:
        raise InputError(f"{out_dir} holds a tracking run with other settings ({'; '.join(diff)}); use another --out, "
                         f"or the same options to resume it.")
    return sum(c.label in labels for c in series.checkpoints)


@main.command("track")
@click.argument("model")
@click.argument("checkpoints", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option("--layer", "layers", multiple=True, metavar="NAME",
              help="Layer to track (repeatable). Default: the model's block_layers (deepspan zoo models).")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Output directory for rows.csv, rows.json and the P-vectors; an existing run there resumes.")
@click.option("--center/--no-center", default=False, show_default=True,
              help="Center features before the SVD (recorded).")
@click.option("--k", "k", default=5, show_default=True, help="How many singular values / energy ratios to record.")
@_probe_options
def track_cmd(model: str, checkpoints: tuple[Path, ...], layers: tuple[str, ...], out_dir: Path, center: bool,
              k: int, data: str, split: str, n: int | None, seed: int, policy: str | None, input_shape: str | None,
              kwargs_json: str | None, device: str, batch_size: int) -> None:
    """Track P-vectors of MODEL's layers over CHECKPOINT files, post hoc (Liu et al. 2022).

    MODEL is module:factory or path/to/file.py:factory (as in `deepspan layers`),
    called with --kwargs to build the network each checkpoint is loaded into.

    CHECKPOINT... are state_dict files in training order (labels = file stems;
    e3 or e0-i50 also set epoch / iteration), or one training run directory with
    a manifest.json (deepspan.zoo.train). Each is loaded into a fresh model from
    MODEL and run on a fixed seeded probe; per checkpoint and layer the Tracker
    records sigma_k, energy r_k, the gap and the angles to the data P-vector, to
    the previous and to the final checkpoint (degrees). Results go to
    OUT/rows.csv and OUT/rows.json, rewritten after every checkpoint; running
    again on the same --out skips the checkpoints already recorded.
    """
    from deepspan import _cli_models as cm
    from deepspan.errors import DeepspanError, InputError
    from deepspan.track import track_checkpoints

    try:
        ms = cm.load_model_spec(model, cm.parse_kwargs(kwargs_json))
        series = _checkpoint_series(ms, checkpoints)
        cm.check_device(device)
        probe = cm.build_probe(data, split, n, seed, cm.parse_shape(input_shape))
        first = series.load(0)
        names = list(layers) or list(getattr(first, "block_layers", None) or [])
        if not names:
            raise InputError(f"name the layers to track with --layer NAME; `deepspan layers {ms.spec}` lists them.")
        if len(set(names)) != len(names):
            raise InputError(f"a --layer is repeated ({', '.join(names)}); name each layer once.")
        cm.check_layers(first, probe.X[:2], names, policy, f"{ms.spec} with {series.checkpoints[0].source}", ms.spec)
        done = 0
        if (out_dir / "rows.json").is_file():
            done = _resumable(out_dir, series, {"sample_hash": probe.sample_hash, "layers": names, "policy": policy,
                                                "center": center, "k": k})
        tracker = track_checkpoints(series, probe, names, policy=policy, center=center, k=k, out_dir=out_dir,
                                    batch_size=batch_size, device=device)
    except DeepspanError as exc:
        raise _fail(exc) from exc
    click.echo(f"{ms.call_text}: {len(series)} checkpoint(s) x {len(names)} layer(s) on {probe.name} {split}, "
               f"N = {tracker.n_samples} probe samples (sample hash {tracker.sample_hash}), "
               f"{'centered' if center else 'uncentered'}" + (f", policy {policy}" if policy else ""))
    if done:
        click.echo(f"resumed: {done} of {len(series)} checkpoints were already recorded in {out_dir}")
    by = {(r["checkpoint"], r["layer"], r["quantity"]): r["value"] for r in tracker.rows}
    rows = []
    for label in tracker.order:
        epoch, iteration = tracker.meta[label]
        for layer in names:
            rows.append([label, epoch, iteration, layer, by.get((label, layer, "angle_to_data")),
                         by.get((label, layer, "angle_to_previous")), by.get((label, layer, "angle_to_final")),
                         by.get((label, layer, "energy_r1")), by.get((label, layer, "gap"))])
    click.echo("angles in degrees between P-vectors:")
    click.echo(cm.format_table(["checkpoint", "epoch", "iter", "layer", "to_data", "to_previous", "to_final", "r_1",
                                "s2/s1"], rows, right=[False, True, True, False, True, True, True, True, True]))
    click.echo(f"wrote {out_dir / 'rows.csv'} and {out_dir / 'rows.json'} ({len(tracker.rows)} rows)")


# ---- deepspan reproduce (the main job) lives in its own module
from deepspan._cli_reproduce import reproduce_cmd  # noqa: E402

main.add_command(reproduce_cmd)


if __name__ == "__main__":  # pragma: no cover
    main()
