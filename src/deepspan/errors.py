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
    "FileAccessError",
    "describe_os_error",
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


class FileAccessError(DeepspanError, OSError):
    """A file or folder could not be written or read; the message names the path, the reason and the fix.

    Also an ``OSError`` (with the original ``errno`` and ``filename``), so ``except OSError`` still catches it.
    """

    def __init__(self, message: str, errno: int | None = None, filename: str | None = None) -> None:
        super().__init__(message)
        self.errno, self.filename, self.strerror = errno, filename, message

    def __str__(self) -> str:
        return str(self.strerror)


_FIXES = {
    "ENOSPC": "free some space or choose another folder",
    "EDQUOT": "free some space or choose another folder",
    "EACCES": "choose a folder you can write to, or change its permissions",
    "EPERM": "choose a folder you can write to, or change its permissions",
    "EROFS": "the file system is read-only: choose another folder",
    "ENOTDIR": "a part of the path is a file, not a folder: choose another path",
    "EEXIST": "a part of the path is a file, not a folder: choose another path",
    "EISDIR": "the path is a folder: give a file name",
    "ENOENT": "check the path",
    "ENAMETOOLONG": "choose a shorter path",
}


def describe_os_error(exc: OSError, verb: str = "access", path: object = None) -> str:
    """``cannot <verb> PATH: REASON (fix)`` for an ``OSError`` (the path is ``path`` or the error's own)."""
    import errno as _errno

    where = path if path is not None else exc.filename
    reason = exc.strerror or str(exc) or type(exc).__name__
    fix = _FIXES.get(_errno.errorcode.get(exc.errno or -1, ""), "")
    head = f"cannot {verb} {where}" if where is not None else f"cannot {verb} a file"
    return f"{head}: {reason}" + (f" ({fix})" if fix else "")


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
