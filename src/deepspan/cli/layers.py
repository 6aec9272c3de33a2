"""``deepspan layers``: the modules of a user's model that features can be taken from."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from deepspan.cli.models import FactorySpec, load_factory_spec, parse_kwargs, parse_shape, run_list_layers
from deepspan.cli.options import user_errors
from deepspan.cli.output import format_shape, format_table, per_sample, write_json

__all__ = ["layers_cmd", "build_model", "layer_infos", "layer_roles", "layers_json"]


def build_model(spec: FactorySpec, state_path: Path | None) -> Any:
    """A fresh model from the factory, with the state_dict file loaded when given."""
    net = spec.build()
    if state_path is not None:
        from deepspan.track import load_state_dict

        load_state_dict(net, state_path)
    return net


def layer_infos(net: Any, shape: tuple[int, ...] | None, call_text: str) -> list[Any]:
    """``list_layers`` of the model; with a per-sample ``shape`` it runs once on zeros (2, *shape) for output shapes."""
    if shape is not None:
        import torch

        return run_list_layers(net, torch.zeros(2, *shape), call_text)
    from deepspan.features import list_layers

    return list_layers(net)


def layer_roles(net: Any, infos: list[Any]) -> dict[str, str]:
    """Layer name -> "feature_layer" and/or "block" where the model names it so (the deepspan zoo does)."""
    feature = getattr(net, "feature_layer", None)
    blocks = getattr(net, "block_layers", None) or []
    return {name: ", ".join(r for r, ok in (("feature_layer", name == feature), ("block", name in blocks)) if ok)
            for name in (i.name for i in infos)}


def layers_json(spec: FactorySpec, net: Any, infos: list[Any], roles: dict[str, str], state_path: Path | None,
                shape: tuple[int, ...] | None) -> dict[str, Any]:
    """The ``--json`` table (format ``deepspan.layers/1``)."""
    return {
        "format": "deepspan.layers/1", "model": spec.spec, "kwargs": spec.kwargs, "class": type(net).__name__,
        "state": None if state_path is None else str(state_path), "input_shape": None if shape is None else list(shape),
        "n_params": sum(p.numel() for p in net.parameters()), "feature_layer": getattr(net, "feature_layer", None),
        "block_layers": list(getattr(net, "block_layers", None) or []),
        "layers": [{"name": i.name, "type": i.type, "n_params": i.n_params,
                    "output_shape": per_sample(i.output_shape), "role": roles[i.name]} for i in infos],
    }


@click.command("layers")
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
    with user_errors():
        spec = load_factory_spec(model, parse_kwargs(kwargs_json))
        shape = parse_shape(input_shape)
        net = build_model(spec, state_path)
        infos = layer_infos(net, shape, spec.call_text)
    roles = layer_roles(net, infos)
    total = sum(p.numel() for p in net.parameters())
    click.echo(f"{spec.call_text} -> {type(net).__name__}: {total:,} parameters, {len(infos)} modules"
               + (f", weights from {state_path}" if state_path is not None else ""))
    rows = [(i.name, i.type, format_shape(i.output_shape) if shape else "-", f"{i.n_params:,}", roles[i.name])
            for i in infos]
    click.echo(format_table(["name", "type", "output shape", "params", "role"], rows,
                            right=[False, False, False, True, False]))
    if shape is None:
        click.echo("(output shapes: pass --input-shape C,H,W to run one forward pass on zeros)")
    if json_path is not None:
        write_json(json_path, layers_json(spec, net, infos, roles, state_path, shape))
