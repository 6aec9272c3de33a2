"""The data of one ``deepspan reproduce`` run: training and test splits, the probe, noisy-label copies.

Inputs are images (N x C x H x W; N x H x W gets a channel axis) or vectors (N x L, e.g. 1-D signals:
only models that flatten their input run on them, see :attr:`DataSplits.is_vector`). The test split and
both probes are checked to share no sample id with the training split; :attr:`DataSplits.split` says how
the split was made and :attr:`DataSplits.content_hash` identifies the data by content.
"""

from __future__ import annotations

from functools import cached_property

import numpy as np

from deepspan.data import Dataset, balanced_capacity, content_hash, load, probe_subset, split_info
from deepspan.errors import InputError
from deepspan.experiments.config import ReproduceConfig

__all__ = ["DataSplits"]


class DataSplits:
    """Training split, test split and the two fixed probes of a reproduction (loaded once, on first use).

    * ``probe`` -- a seeded, class-balanced subset of the test split (held-out images): the
      convergence curves and model-vs-model angles;
    * ``train_probe`` -- a seeded, class-balanced subset of the training images the models were
      trained on, without augmentation: model-vs-data angles and the layer-wise study (Liu et al.
      compare with the data P-vector "on the training dataset", A.4), the spectrum and neural collapse.
    """

    def __init__(self, cfg: ReproduceConfig) -> None:
        self.cfg = cfg
        #: sizes the dataset could not give: {setting: {"asked", "used", "why"}} (filled as the parts load)
        self.caps: dict[str, dict] = {}

    def _cap(self, what: str, asked: int, used: int, why: str) -> int:
        if used < asked:
            self.caps[what] = {"asked": int(asked), "used": int(used), "why": why}
        return int(used)

    def _probe_size(self, what: str, ds: Dataset, asked: int) -> int:
        cap = balanced_capacity(ds)
        unit = "samples" if self.is_vector else "images"
        why = (f"{ds.name} has {len(ds)} {unit}" if cap >= min(asked, len(ds)) else
               f"a class-balanced probe of {ds.name} ({len(ds)} {unit}) is limited by its rarest class")
        return self._cap(what, asked, min(asked, len(ds), cap), why)

    def _capped_head(self, what: str, full: Dataset, n: int, kind: str) -> Dataset:
        """The first ``n`` images of ``full``, recording a cap when it holds fewer."""
        unit = "samples" if self.is_vector else "images"
        self._cap(what, n, min(n, len(full)), f"{full.name} has {len(full)} {kind} {unit}")
        return self._head(full, n)

    @cached_property
    def _train_full(self) -> Dataset:
        return self._inputs(load(self.cfg.dataset, split="train", data_dir=self.cfg.data_dir))

    @cached_property
    def _test_full(self) -> Dataset:
        return self._inputs(load(self.cfg.dataset, split="test", data_dir=self.cfg.data_dir))

    @property
    def held_out(self) -> Dataset:
        """The whole test split as loaded (before the ``n_test`` cap): no sample of it is a training sample."""
        return self._test_full

    @staticmethod
    def _inputs(ds: Dataset) -> Dataset:
        """Images as N x C x H x W float32 (N x H x W gets one channel), vectors as N x L float32."""
        X = np.asarray(ds.X, dtype=np.float32)
        if X.ndim == 3:
            X = X[:, None]
        if X.ndim not in (2, 4):
            raise InputError(f"deepspan reproduce needs image data (N x C x H x W or N x H x W) or vectors "
                             f"(N x L); {ds.name} has shape {X.shape}")
        return Dataset(ds.name, X, ds.y, ds.ids)

    @property
    def is_vector(self) -> bool:
        """Whether the inputs are vectors (N x L) rather than images: models that need H x W cannot run."""
        return self._train_full.X.ndim == 2

    @property
    def input_shape(self) -> tuple[int, ...]:
        """The shape of one sample: (C, H, W) for images, (L,) for vectors."""
        return tuple(int(s) for s in self._train_full.X.shape[1:])

    @cached_property
    def content_hash(self) -> str:
        """:func:`~deepspan.data.content_hash` of the full training and test splits as loaded (inputs, labels,
        ids): part of the run's identity, so a changed file at the same path is a different run."""
        return content_hash(self._train_full, self._test_full)

    @cached_property
    def split(self) -> dict:
        """How the training and test splits were made (:func:`deepspan.data.split_info`): ``made_by``, ``text``
        and, for an ``.npz`` that deepspan split, the seed, the fraction and the held-out rows."""
        return split_info(self.cfg.dataset)

    @staticmethod
    def _head(ds: Dataset, n: int) -> Dataset:
        n = min(n, len(ds))
        return Dataset(ds.name, ds.X[:n], ds.y[:n], ds.ids[:n])

    @cached_property
    def train(self) -> Dataset:
        """The first ``n_train`` training images (N x C x H x W float32; vectors: N x L)."""
        return self._capped_head("n_train", self._train_full, self.cfg.n_train, "training")

    @cached_property
    def test(self) -> Dataset:
        """The first ``n_test`` test images: accuracies are measured on these."""
        return self._capped_head("n_test", self._test_full, self.cfg.n_test, "test")

    @cached_property
    def probe(self) -> Dataset:
        """Seeded class-balanced subset of the test split: the fixed sample set of every P-vector (as many as
        the split and its rarest class allow, at most ``n_probe``)."""
        ds = self._test_full
        return probe_subset(ds, self._probe_size("n_probe", ds, self.cfg.n_probe), seed=self.cfg.seed)

    @property
    def train_probe_pool(self) -> int:
        """How many leading training images the training probe is drawn from: every model of the reproduction
        (the generalisation population's smallest training set included) was trained on all of them."""
        smallest = min(self.cfg.population_sizes) if self.cfg.population_sizes else self.cfg.n_train
        return int(min(len(self.train), max(smallest, 2 * self.cfg.n_train_probe)))

    @cached_property
    def train_probe(self) -> Dataset:
        """Seeded class-balanced subset of the first :attr:`train_probe_pool` training images, no augmentation."""
        pool = self._head(self.train, self.train_probe_pool)
        return probe_subset(pool, self._probe_size("n_train_probe", pool, self.cfg.n_train_probe), seed=self.cfg.seed)

    def validate(self) -> None:
        """Load both splits and draw both probes now: an InputError names what is wrong with the dataset.
        Afterwards :attr:`caps` lists every size the dataset could not give."""
        for part in ("_train_full", "_test_full"):
            if len(getattr(self, part)) == 0:
                raise InputError(f"the {part.strip('_').split('_')[0]} split of {self.cfg.dataset} is empty")
        if self._train_full.X.shape[1:] != self._test_full.X.shape[1:]:
            raise InputError(f"the training samples of {self.cfg.dataset} have shape {self._train_full.X.shape[1:]} "
                             f"but the test samples {self._test_full.X.shape[1:]}")
        for part in ("train", "test", "probe", "train_probe"):
            getattr(self, part)
        shared = np.intersect1d(self._train_full.ids, self._test_full.ids)
        if len(shared):
            raise InputError(f"{len(shared)} samples of {self.cfg.dataset} are in both its training and its test "
                             f"split (e.g. {shared[0]!r}): the test split would not be held out")
        for n in self.cfg.population_sizes:  # records their caps too
            self.subset_train(n)

    def probe_of(self, split: str) -> Dataset:
        """The probe of ``split``: ``"test"`` (:attr:`probe`) or ``"train"`` (:attr:`train_probe`)."""
        if split == "test":
            return self.probe
        if split == "train":
            return self.train_probe
        raise InputError(f"unknown probe split {split!r}; choose 'train' or 'test'")

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of image data; vector data has none (an InputError)."""
        if self.is_vector:
            raise InputError(f"{self.cfg.dataset} holds vectors of length {self.input_shape[0]}, not images")
        return tuple(int(s) for s in self.train.X.shape[1:])  # type: ignore[return-value]

    @property
    def n_classes(self) -> int:
        return int(self._train_full.y.max()) + 1

    def subset_train(self, n: int) -> Dataset:
        """The first ``n`` training images (a smaller training set of the generalisation population)."""
        return self._capped_head(f"training set of {n}", self._train_full, n, "training")

    def noisy_train(self, n: int, noise: float, seed: int) -> Dataset:
        """The first ``n`` training images with a fraction ``noise`` of labels replaced by uniform random ones.

        The corrupted rows are drawn with ``default_rng(seed)``; a replaced label may equal the true one
        by chance (probability 1/C), as in Zhang et al. 2017's label randomisation.
        """
        if not 0.0 <= noise <= 1.0:
            raise InputError(f"label noise must lie in [0, 1], got {noise}")
        base = self._head(self._train_full, n)
        y = base.y.copy()
        rng = np.random.default_rng(seed)
        rows = rng.random(len(y)) < noise
        y[rows] = rng.integers(0, self.n_classes, int(rows.sum()))
        return Dataset(base.name, base.X, y, base.ids)
