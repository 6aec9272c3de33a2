"""The ``deepspan`` command line (click): the group :func:`main` and a module per command.

======================  =========================================================================
module                  command
======================  =========================================================================
``cli.demo``            ``deepspan demo``: P-vectors of the embedded 8x8 digits
``cli.pvector``         ``deepspan pvector``: the P-vector of a .npy matrix, streamed
``cli.layers``          ``deepspan layers``: the modules of a user's model
``cli.compare``         ``deepspan compare``: similarity measures between two feature sources
``cli.track``           ``deepspan track``: P-vectors over checkpoints
``cli.reproduce``       ``deepspan reproduce``: the papers' experiments and report.html
``cli.models``          (helpers) MODEL specs, probes, layer checks, feature sources
``cli.options``         (helpers) the shared probe options, error handling
``cli.output``          (helpers) text tables, JSON and CSV files
======================  =========================================================================

The console script ``deepspan`` and ``python -m deepspan.cli`` run :func:`main`. torch is imported
inside the commands only, so ``deepspan --help`` stays fast. The commands use deepspan's public API.
"""

from __future__ import annotations

import click

from deepspan import __version__
from deepspan.cli import compare, demo, layers, pvector, reproduce, track
from deepspan.cli.options import torchrun_world, user_errors

__all__ = ["main", "SPLIT_COMMANDS"]

#: The commands that run under ``torchrun --nproc_per_node K``, splitting their forward passes (the others refuse).
SPLIT_COMMANDS = ("compare", "track")


class _Group(click.Group):
    """The ``deepspan`` group: a deepspan error or a file-system failure in any command ends as one line
    ``Error: ...`` and exit status 1, never a traceback."""

    def invoke(self, ctx: click.Context):
        with user_errors():  # the same conversion the commands use around their own calls
            return super().invoke(ctx)

    def resolve_command(self, ctx: click.Context, args: list[str]):
        """The command; under torchrun only the commands that split their work across the processes run."""
        name, cmd, rest = super().resolve_command(ctx, args)
        if cmd is not None and cmd.name not in SPLIT_COMMANDS and torchrun_world() > 1:
            import os

            if os.environ.get("RANK", "0") != "0":
                raise click.exceptions.Exit(1)
            raise click.ClickException(
                f"deepspan {cmd.name} runs in one process; start it without torchrun (under torchrun, "
                f"{' and '.join(SPLIT_COMMANDS)} split their forward passes across the processes).")
        return name, cmd, rest


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", "-V", prog_name="deepspan")
def main() -> None:
    """deepspan: measure what neural networks learn by the subspaces their features span.

    P-vectors (Liu et al. 2022), subspace match (Wang et al. 2018) and
    feature-map spectra (Nam et al. 2024) on feature matrices of N samples x d features.
    """


for _command in (demo.demo_cmd, pvector.pvector_cmd, layers.layers_cmd, compare.compare_cmd, track.track_cmd,
                 reproduce.reproduce_cmd):
    main.add_command(_command)
del _command
