"""Chunked .npy reading: every chunk size reproduces the file exactly."""

from __future__ import annotations

import numpy as np
import pytest

from deepspan.errors import InputError
from deepspan.features import iter_npy_rows, npy_shape


@pytest.mark.parametrize("dtype", [np.float32, np.float64, ">f4", np.int16])
@pytest.mark.parametrize("chunk", [1, 7, 100, 1000, 5000])
def test_chunks_reassemble_the_file(tmp_path, dtype, chunk):
    A = (np.random.default_rng(0).standard_normal((1001, 9)) * 100).astype(dtype)
    path = tmp_path / "a.npy"
    np.save(path, A)
    assert npy_shape(path) == ((1001, 9), np.dtype(dtype))
    blocks = [b.copy() for b in iter_npy_rows(path, chunk)]
    assert all(len(b) <= chunk for b in blocks)
    np.testing.assert_array_equal(np.concatenate(blocks), A)


def test_chunk_rows_must_be_positive(tmp_path):
    path = tmp_path / "a.npy"
    np.save(path, np.ones((3, 2)))
    with pytest.raises(InputError, match="chunk_rows"):
        list(iter_npy_rows(path, 0))
