"""Accumulators keep torch batches on their own device until finalize (GPU when there is one).

The CPU test always runs; the CUDA test runs only where a GPU is present (never required).
"""

from __future__ import annotations

import numpy as np
import pytest

import deepspan

torch = pytest.importorskip("torch")


def _check_device(device: str) -> None:
    rng = np.random.default_rng(0)
    A = rng.random((300, 12))
    B = rng.random((300, 5)) + A[:, :5]
    acc = deepspan.GramAccumulator()
    cross = deepspan.CrossGramAccumulator()
    for i in range(0, 300, 70):
        ta = torch.as_tensor(A[i : i + 70], device=device, dtype=torch.float32)
        tb = torch.as_tensor(B[i : i + 70], device=device, dtype=torch.float32)
        acc.update(ta)
        cross.update(ta, tb)
        # state stays on the batch's device, in float64
        assert acc._scatter.device.type == torch.device(device).type
        assert acc._scatter.dtype == torch.float64
    stats = acc.finalize()
    assert isinstance(stats.scatter, np.ndarray)
    A32 = A.astype(np.float32).astype(np.float64)
    B32 = B.astype(np.float32).astype(np.float64)
    np.testing.assert_allclose(stats.gram(False), A32.T @ A32, rtol=1e-10)
    expected = deepspan.angle(deepspan.pvector(A32, method="exact"), deepspan.pvector(B32, method="exact"))
    got = deepspan.pvector_angle_from_stats(cross.finalize())
    assert got == pytest.approx(expected, abs=1e-5)


def test_torch_cpu_batches_accumulate_on_cpu():
    _check_device("cpu")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")
def test_torch_cuda_batches_accumulate_on_the_gpu():
    _check_device("cuda")
