"""What several commands share: the probe options (`compare`, `track`) and turning input errors into messages."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import click

from deepspan.errors import DeepspanError, describe_os_error

__all__ = ["ProbeOptions", "probe_options", "user_errors", "torchrun_job", "torchrun_world"]


@contextmanager
def user_errors(quiet: bool = False) -> Iterator[None]:
    """Turn a :class:`~deepspan.errors.DeepspanError`, or a file-system failure (``OSError``: a read, a folder,
    a pipe; deepspan's own writes raise FileAccessError), into a one-line ``click.ClickException`` (exit 1).

    ``quiet``: exit 1 without a message (the ranks of a torchrun job other than 0, whose failures rank 0
    reports: every collective deepspan runs raises a rank's failure on every rank)."""
    try:
        yield
    except DeepspanError as exc:
        if quiet:
            raise click.exceptions.Exit(1) from exc
        raise click.ClickException(str(exc)) from exc
    except OSError as exc:
        if quiet:
            raise click.exceptions.Exit(1) from exc
        raise click.ClickException(describe_os_error(exc)) from exc
    except RuntimeError as exc:  # a torch.distributed failure: another process of the job stopped
        if type(exc).__name__ not in ("DistBackendError", "DistNetworkError", "DistError"):
            raise
        if quiet:
            raise click.exceptions.Exit(1) from exc
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise click.ClickException(f"another process of this torchrun job stopped or cannot be reached "
                                   f"({first}); its own output above says why.") from exc


def torchrun_world() -> int:
    """The number of processes torchrun started for this job (``WORLD_SIZE``), 1 outside torchrun."""
    import os

    try:
        return max(1, int(os.environ.get("WORLD_SIZE", "1")))
    except ValueError:
        return 1


@contextmanager
def torchrun_job(device: str = "cpu") -> Iterator[tuple[int, int]]:
    """Join the torch.distributed job ``torchrun`` started, yield ``(rank, world)``; ``(0, 1)`` outside one.

    Under ``torchrun --nproc_per_node K`` (``WORLD_SIZE`` = K > 1 and ``RANK`` in the environment) the process
    group is initialised from torchrun's environment (``MASTER_ADDR``, ``MASTER_PORT``): NCCL when the
    forward passes run on CUDA (each process on GPU ``LOCAL_RANK``), else gloo; it is destroyed on exit.
    """
    import os

    if torchrun_world() == 1 or "RANK" not in os.environ:
        yield 0, 1
        return
    import torch
    import torch.distributed as dist

    created = False
    if not dist.is_initialized():
        backend = "gloo"
        if device in ("cuda", "auto") and torch.cuda.is_available():
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
            backend = "nccl"
        with user_errors():
            dist.init_process_group(backend)
        created = True
    try:
        yield dist.get_rank(), dist.get_world_size()
    finally:
        if created:
            dist.destroy_process_group()


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
