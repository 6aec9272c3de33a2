"""Vectors in sample space compare only on the same samples in the same order (DESIGN principle 3)."""

from __future__ import annotations

import json

import numpy as np
import pytest

import deepspan
from deepspan.data import load_digits


def test_angle_refuses_pvectors_of_different_sample_sets():
    rng = np.random.default_rng(0)
    F = rng.random((50, 6))
    p = deepspan.pvector(F, sample_hash="aaaa")
    q = deepspan.pvector(F[::-1], sample_hash="bbbb")
    with pytest.raises(deepspan.SampleMismatchError, match="hash aaaa.*hash bbbb"):
        deepspan.angle(p, q)
    # same hash, or a hash on one side only, is compared by values
    assert deepspan.angle(p, deepspan.pvector(F, sample_hash="aaaa")) == pytest.approx(0, abs=1e-9)
    assert deepspan.angle(p, deepspan.pvector(F)) == pytest.approx(0, abs=1e-9)


def test_sample_hash_survives_json_and_depends_on_order():
    data = load_digits()
    p = deepspan.data_pvector(data.X[:200], sample_hash=data.sample_hash)
    back = deepspan.PVector.from_dict(json.loads(json.dumps(p.to_dict())))
    assert back.sample_hash == data.sample_hash
    assert len(data.sample_hash) == 16
    reordered = deepspan.data.Dataset("digits", data.X[::-1], data.y[::-1], data.ids[::-1])
    assert reordered.sample_hash != data.sample_hash
