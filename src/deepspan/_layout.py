"""Memory layout of conv nets on the CPU: in channels-last layout a training epoch of the zoo's conv nets takes
1.1-1.4x less time than in the default layout (ResNet 1.37x; ``python bench/zoo_epochs.py --layout``), with
the same numbers to float rounding, so training and the row draws switch a model to it for the duration of a
call and hand it back in the layout it came in."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["enter_channels_last", "leave_channels_last"]


def enter_channels_last(model: nn.Module) -> torch.memory_format | None:
    """Put ``model``'s 4-d parameters and buffers in channels-last layout; returns the layout to restore
    with :func:`leave_channels_last` (None: the model has no 2-d convolution, nothing changed)."""
    if not any(isinstance(m, nn.Conv2d) for m in model.modules()):
        return None
    four = [p for p in model.parameters() if p.ndim == 4]
    was_last = bool(four) and four[0].is_contiguous(memory_format=torch.channels_last) and not four[0].is_contiguous()
    model.to(memory_format=torch.channels_last)
    return torch.channels_last if was_last else torch.contiguous_format


def leave_channels_last(model: nn.Module, layout: torch.memory_format | None) -> None:
    """Hand ``model`` back in ``layout`` (what :func:`enter_channels_last` returned)."""
    if layout is not None:
        model.to(memory_format=layout)
