"""Probe statistics of a reproduction, computed through the public tracking API and cached on disk.

Two fixed probes (:class:`~deepspan.experiments.splits.DataSplits`): ``"test"`` (held-out images: the
convergence curves and model-vs-model angles) and ``"train"`` (training images without augmentation:
model-vs-data angles, the layer-wise study, the spectrum and neural collapse).

For every run and probe, :func:`deepspan.track_checkpoints` walks the run's checkpoints once and
records, for each tracked layer (conv outputs flattened, as Liu et al. flatten feature maps),
uncentered and column-centered (``center="both"``: one product per layer), the top ``N_VECTORS``
left singular vectors, the top ``N_VALUES`` singular values, the cumulative energy
r_k = sum_{i<=k} sigma_i^2 / ||F||_F^2, and the angles to the final checkpoint, to the previous one
and to the data P-vector of that probe. The tracked layers are the feature layer and the model's
output (logits of a classifier, the projection head of SimCLR: sensitivity readings), plus, on the
training probe (the layer-wise study's sample set), every block layer of the runs of ``all_layers``. The tracker's folder
``cache/track/<split>/<run>`` is its resumable store.

The features of a run's feature layer at a checkpoint (for the spectrum and the baselines) are
extracted with :func:`deepspan.extract` and kept as a :class:`deepspan.FeatureSet` store in
``cache/features/<split>/<run>/<label>``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from deepspan import SingularTriplets, top_singular_both
from deepspan.errors import DeepspanError
from deepspan.experiments.runstore import RunStore
from deepspan.experiments.splits import DataSplits

__all__ = ["ProbeStatistics", "N_VECTORS", "N_VALUES", "BATCH_SIZE", "SPLITS"]

N_VECTORS = 3     # left singular vectors kept per checkpoint and layer (u_2, u_3 for "beyond the top")
N_VALUES = 10     # singular values kept (energy ratios r_1 .. r_10)
BATCH_SIZE = 256  # forward-pass batch of the probe
SPLITS = ("test", "train")


class ProbeStatistics:
    """Trackers (one per run and probe) and feature stores; see the module docstring.

    ``all_layers`` names the runs whose every block layer is tracked (the layer-wise study).
    """

    def __init__(self, runs: RunStore, data: DataSplits, cache_dir: str | Path,
                 all_layers: tuple[str, ...] = ("resnet",)) -> None:
        self.runs = runs
        self.data = data
        self.cache_dir = Path(cache_dir)
        self.all_layers = tuple(all_layers)
        self._trackers: dict[tuple[str, str], object] = {}
        self._data: dict[str, dict[bool, SingularTriplets]] = {}

    def tracked_layers(self, name: str, split: str = "train") -> list[str]:
        """Feature layer, output layer (if any) and, for ``all_layers`` runs on the training probe, every
        block layer (the layer-wise study reads training images only)."""
        layers = [self.runs.feature_layer(name)]
        out = self.runs.output_layer(name)
        if out is not None:
            layers.append(out)
        if name in self.all_layers and split == "train":
            layers = list(dict.fromkeys(self.runs.layers(name) + layers))
        return layers

    def tracker(self, name: str, split: str = "test"):
        """The finished :class:`~deepspan.Tracker` of run ``name`` on probe ``split`` (tracked now, or resumed)."""
        key = (name, split)
        if key not in self._trackers:
            from deepspan.track import track_checkpoints

            self._trackers[key] = track_checkpoints(
                self.runs.series(name), self.data.probe_of(split), self.tracked_layers(name, split), policy="flatten",
                k=N_VALUES, n_vectors=N_VECTORS, center="both", out_dir=self.cache_dir / "track" / split / name,
                batch_size=BATCH_SIZE)
        return self._trackers[key]

    def vectors(self, name: str, label: str, center: bool, layer: str | None = None, split: str = "test") -> np.ndarray:
        """u_1 .. u_{N_VECTORS} (N x k) of ``layer`` (default: the feature layer) at checkpoint ``label``."""
        return self.tracker(name, split).vectors(label, layer or self.runs.feature_layer(name), center)

    def pvector(self, name: str, label: str, center: bool, layer: str | None = None, split: str = "test") -> np.ndarray:
        """The P-vector u_1 of ``layer`` (default: the feature layer) at checkpoint ``label``."""
        return self.vectors(name, label, center, layer, split)[:, 0]

    def singular_values(self, name: str, label: str, center: bool, layer: str | None = None,
                        split: str = "test") -> np.ndarray:
        return self.tracker(name, split).singular_values(label, layer or self.runs.feature_layer(name), center)

    def energy(self, name: str, label: str, center: bool, layer: str | None = None, split: str = "test") -> np.ndarray:
        """Cumulative energy r_1 .. r_k (Liu et al.'s explained variance of the top-k subspace)."""
        tr = self.tracker(name, split)
        layer = layer or self.runs.feature_layer(name)
        k = len(tr.singular_values(label, layer, center))
        return np.array([tr.values(label, layer, f"energy_r{i}", center) for i in range(1, k + 1)])

    def data_triplets(self, center: bool, split: str = "test") -> SingularTriplets:
        """Top singular triplets of the flattened probe images (the data P-vector is ``.U[:, 0]``)."""
        if split not in self._data:
            probe = self.data.probe_of(split)
            X = probe.X.reshape(len(probe), -1)
            self._data[split] = dict(zip((False, True), top_singular_both(X, N_VECTORS, n_values=N_VALUES)))
        return self._data[split][bool(center)]

    def data_pvector(self, center: bool, split: str = "test") -> np.ndarray:
        return self.data_triplets(center, split).U[:, 0]

    def features(self, name: str, label: str, split: str = "test", layer: str | None = None) -> np.ndarray:
        """Probe features (N x d float32) of ``layer`` (default: the feature layer) at ``label`` (a cached FeatureSet)."""
        from deepspan.features import FeatureSet, extract

        layer = layer or self.runs.feature_layer(name)
        path = self.cache_dir / "features" / split / name / (label if layer == self.runs.feature_layer(name)
                                                            else f"{label}--{layer}")
        try:
            fs = FeatureSet.load(path)
        except (OSError, ValueError, DeepspanError):  # missing or damaged store: extract again
            fs = extract(self.runs.load(name, label), self.data.probe_of(split), layer, policy="flatten",
                         batch_size=BATCH_SIZE, progress=False, checkpoint=label)
            fs.save(path)
        return np.asarray(fs[layer])
