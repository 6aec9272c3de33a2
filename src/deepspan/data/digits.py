"""scikit-learn's bundled 8x8 handwritten digits (1,797 images), always available offline.

The images ship inside the scikit-learn wheel (UCI "Optical Recognition of
Handwritten Digits", test part), so loading them never touches the network.
Pixels are integers 0..16; :func:`load_digits` scales them to [0, 1].
"""

from __future__ import annotations

import numpy as np

from deepspan.data.dataset import Dataset

__all__ = ["load_digits"]


def load_digits() -> Dataset:
    """The 1,797 8x8 digit images as float64 in [0, 1] (pixel / 16), shape (1797, 8, 8).

    Sample ids are ``digits:<index>`` in the bundled file's order.
    """
    try:
        from sklearn.datasets import load_digits as _sk_load_digits
    except ImportError as exc:  # pragma: no cover - scikit-learn is a declared dependency
        raise ImportError(
            "the digits dataset ships with scikit-learn; install it with `pip install scikit-learn`."
        ) from exc
    bunch = _sk_load_digits()
    X = np.asarray(bunch.images, dtype=np.float64) / 16.0
    y = np.asarray(bunch.target, dtype=np.int64)
    ids = np.array([f"digits:{i}" for i in range(len(y))])
    return Dataset("digits", X, y, ids)
