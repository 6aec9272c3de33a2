"""Atomic file writes and the one CSV writer (a leaf module: every layer may use it).

Each writer writes a temporary file in the target's directory, flushes and
fsyncs it, then renames it over the target: a reader sees the old file or the
new one, never a half-written one, even if the process is killed mid-write.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from deepspan.errors import FileAccessError, describe_os_error

_UMASK = os.umask(0)
os.umask(_UMASK)

__all__ = ["atomic_write_bytes", "atomic_write_text", "atomic_write_json", "atomic_save_npy", "csv_text",
           "atomic_write_csv"]


def file_digest(path: str | os.PathLike, algorithm: str = "sha256") -> str:
    """Hex digest of a file's bytes (``hashlib`` algorithm name), read in chunks: the one file hash of deepspan
    (store checksums, checkpoint identities, downloads). OSError propagates to the caller, which names the file."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, algorithm).hexdigest()


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (module docstring); any file-system failure raises a
    :class:`~deepspan.errors.FileAccessError` ``cannot write PATH: REASON (fix)`` and leaves no temporary file."""
    path = Path(path)
    try:
        return _atomic_write_bytes(path, data)
    except FileAccessError:
        raise
    except OSError as exc:
        raise FileAccessError(describe_os_error(exc, "write", path), exc.errno, str(path)) from exc


def _atomic_write_bytes(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_UMASK)  # mkstemp makes 0600; give the usual permissions of a new file
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write_bytes(path, text.encode())


def atomic_write_json(path: str | os.PathLike, obj: Any) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=1, default=str))


def atomic_save_npy(path: str | os.PathLike, arr: np.ndarray) -> Path:
    buf = io.BytesIO()
    np.save(buf, np.asarray(arr))
    return atomic_write_bytes(path, buf.getvalue())


def csv_text(rows: Iterable[Mapping[str, Any]], fields: Sequence[str] | None = None, *,
             lineterminator: str = "\n") -> str:
    """Tidy rows (dicts) as CSV text with a header line.

    ``fields`` are the columns, in order; keys of a row outside them are left
    out. Without ``fields`` the columns are every key of the rows in first-seen
    order. A missing key or ``None`` is an empty cell.
    """
    rows = list(rows)
    if fields is None:
        fields = list(dict.fromkeys(k for r in rows for k in r))
    fields = list(fields)
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=fields, lineterminator=lineterminator)
    w.writeheader()
    for r in rows:
        w.writerow({k: ("" if r.get(k) is None else r.get(k)) for k in fields})
    return buf.getvalue()


def atomic_write_csv(path: str | os.PathLike, rows: Iterable[Mapping[str, Any]], fields: Sequence[str] | None = None,
                     *, lineterminator: str = "\n") -> Path:
    """:func:`csv_text` written atomically to ``path``."""
    return atomic_write_text(path, csv_text(rows, fields, lineterminator=lineterminator))
