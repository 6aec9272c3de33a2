"""A Lightning callback around :class:`~deepspan.track.tracker.Tracker` (optional dependency).

Importing this module requires ``lightning`` (``pip install lightning``);
deepspan itself does not depend on it.
"""

from __future__ import annotations

from typing import Any

try:
    from lightning.pytorch.callbacks import Callback
except ImportError as exc:  # pragma: no cover - exercised only without lightning
    raise ImportError(
        "deepspan.track.lightning needs the optional package 'lightning' (pip install lightning)."
    ) from exc

from deepspan.track.tracker import Tracker

__all__ = ["DeepspanCallback"]


class DeepspanCallback(Callback):
    """Calls ``tracker.step(epoch=...)`` at the end of every ``every_n_epochs``-th training epoch
    (and once before training, as epoch 0's initialisation when ``at_start``), on the LightningModule.

    Under Lightning's DDP strategy the callback runs on every process and the Tracker (built with the whole
    probe, before ``fit``) follows the process group Lightning starts: each process extracts its share of
    the probe, rank 0 computes and writes the table, every process keeps the same rows (see
    :class:`~deepspan.track.tracker.Tracker`)."""

    def __init__(self, tracker: Tracker, every_n_epochs: int = 1, at_start: bool = True) -> None:
        self.tracker = tracker
        self.every = max(1, int(every_n_epochs))
        self.at_start = at_start

    def on_train_start(self, trainer: Any, pl_module: Any) -> None:
        if self.at_start:
            self.tracker.step(label="init", epoch=0, iteration=0, model=pl_module)

    def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        epoch = trainer.current_epoch + 1
        if epoch % self.every == 0:
            self.tracker.step(epoch=epoch, model=pl_module)
