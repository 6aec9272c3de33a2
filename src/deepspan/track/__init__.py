"""Measures over a series of checkpoints, or live during training.

``deepspan.track.lightning.DeepspanCallback`` wraps the Tracker for Lightning
(optional dependency, imported only on request).
"""

from deepspan.track.checkpoints import Checkpoint, CheckpointSeries, load_state_dict
from deepspan.track.tracker import ROW_FIELDS, Tracker, track_checkpoints

__all__ = ["Checkpoint", "CheckpointSeries", "load_state_dict", "Tracker", "track_checkpoints", "ROW_FIELDS"]
