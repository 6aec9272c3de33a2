"""Datasets: embedded defaults, standard on-disk formats, user arrays."""

from deepspan.data.digits import Dataset, load_digits

__all__ = ["Dataset", "load_digits"]
