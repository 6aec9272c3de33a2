"""What several commands share: the probe options (`compare`, `track`) and turning input errors into messages."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import click

from deepspan.errors import DeepspanError, describe_os_error

__all__ = ["ProbeOptions", "probe_options", "user_errors"]


@contextmanager
def user_errors() -> Iterator[None]:
    """Turn a :class:`~deepspan.errors.DeepspanError`, or a file-system failure (``OSError``: a read, a folder,
    a pipe; deepspan's own writes raise FileAccessError), into a one-line ``click.ClickException`` (exit 1)."""
    try:
        yield
    except DeepspanError as exc:
        raise click.ClickException(str(exc)) from exc
    except OSError as exc:
        raise click.ClickException(describe_os_error(exc)) from exc


@dataclass(frozen=True)
class ProbeOptions:
    """The options of :func:`probe_options`: the probe set, the conv policy, the factory kwargs and where to run."""

    data: str = "digits"
    split: str = "test"
    n: int | None = None
    seed: int = 0
    policy: str | None = None
    input_shape: str | None = None
    kwargs_json: str | None = None
    device: str = "cpu"
    batch_size: int = 256

    def build_probe(self) -> Any:
        """Check ``--device``, then draw the probe set (a :class:`~deepspan.data.Dataset`)."""
        from deepspan.cli.models import build_probe, check_device, parse_shape

        check_device(self.device)
        return build_probe(self.data, self.split, self.n, self.seed, parse_shape(self.input_shape))

    def summary(self, probe: Any) -> dict[str, Any]:
        """The probe's provenance, as recorded in JSON results."""
        from deepspan.cli.models import probe_summary

        return probe_summary(probe, self.data, self.split, self.n, self.seed)


def probe_options(f):
    """Options shared by `compare` and `track`: the probe set, the conv policy and where to run.

    They reach the command as keyword arguments named as the fields of :class:`ProbeOptions`.
    """
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
