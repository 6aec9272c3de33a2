"""Exceptions and warnings shared by every layer of deepspan.

This module is a leaf: it imports nothing from deepspan and nothing heavy, so
``linalg`` and ``measures`` can use it without breaking the layering of
DESIGN.md.
"""

from __future__ import annotations

__all__ = [
    "DeepspanError",
    "InputError",
    "SampleMismatchError",
    "DeepspanWarning",
    "DegenerateSpectrumWarning",
    "ConvergenceWarning",
    "TrivialSpanWarning",
]


class DeepspanError(Exception):
    """Base class of every error deepspan raises on purpose."""


class InputError(DeepspanError, ValueError):
    """The input cannot be used as given; the message says what to change."""


class SampleMismatchError(InputError):
    """Two objects that live in sample space do not describe the same samples."""


class DeepspanWarning(UserWarning):
    """Base class of deepspan's warnings."""


class DegenerateSpectrumWarning(DeepspanWarning):
    """The requested singular direction is not determined by the data.

    Emitted when sigma_2 / sigma_1 exceeds the degeneracy threshold: the top
    singular vector of a matrix with (nearly) equal leading singular values can
    rotate freely inside their joint subspace, so its angle to anything else is
    not meaningful.
    """


class ConvergenceWarning(DeepspanWarning):
    """An iterative route stopped before reaching its tolerance."""


class TrivialSpanWarning(DeepspanWarning):
    """N <= the number of neurons: the spans can cover all of R^N and everything matches trivially."""
