"""Features on disk and (in later issues) from torch models.

``deepspan.features.npy`` reads a samples x features ``.npy`` file in row
chunks with bounded memory, for the streaming routes.
"""

from deepspan.features.npy import iter_npy_rows, npy_shape

__all__ = ["iter_npy_rows", "npy_shape"]
