"""File-system failures at the command line: one line ``Error: cannot write PATH: REASON (fix)``, exit status 1,
no traceback, no temporary file left behind. The commands run as subprocesses, as a user runs them."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from deepspan._io import atomic_write_bytes, atomic_write_json
from deepspan.errors import DeepspanError, FileAccessError, describe_os_error
from deepspan.zoo.models import SmallCNN

CNN_SPEC = "deepspan.zoo.models:SmallCNN"
CNN_KW = {"image_size": 8, "widths": [4, 8, 16]}


def cli(*args: object, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "deepspan.cli", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, timeout=300)


def fails_cleanly(r: subprocess.CompletedProcess, *fragments: str) -> str:
    out = r.stdout + r.stderr
    assert r.returncode == 1, out
    assert "Traceback" not in out, out
    errors = [line for line in r.stderr.splitlines() if line.startswith("Error: ")]
    assert len(errors) == 1, out
    for f in fragments:
        assert f in errors[0], f"{f!r} not in {errors[0]!r}"
    return errors[0]


@pytest.fixture(scope="module")
def blocker(tmp_path_factory) -> Path:
    """A regular file: any path under it cannot be written (ENOTDIR / EEXIST, even for root)."""
    p = tmp_path_factory.mktemp("fs") / "a-file"
    p.write_text("not a folder\n")
    return p


@pytest.fixture(scope="module")
def states(tmp_path_factory) -> list[Path]:
    d = tmp_path_factory.mktemp("states")
    paths = []
    for s in (0, 1):
        torch.manual_seed(s)
        paths.append(d / f"e{s}.pt")
        torch.save(SmallCNN(**CNN_KW).state_dict(), paths[-1])
    return paths


def test_demo_json_under_a_file(blocker):
    msg = fails_cleanly(cli("demo", "--json", blocker / "demo.json"), f"cannot write {blocker / 'demo.json'}",
                        "a part of the path is a file")
    assert msg.startswith("Error: cannot write")


def test_pvector_json_in_proc(tmp_path):
    np.save(tmp_path / "m.npy", np.random.default_rng(0).random((40, 6)))
    fails_cleanly(cli("pvector", tmp_path / "m.npy", "--json", "/proc/deepspan-test/p.json"),
                  "cannot write /proc/deepspan-test/p.json")


def test_compare_json_and_csv_under_a_file(blocker, states):
    kw = json.dumps(CNN_KW)
    base = ["compare", states[0], states[1], "--model", CNN_SPEC, "--kwargs", kw, "--layer", "relu3"]
    fails_cleanly(cli(*base, "--json", blocker / "c.json"), f"cannot write {blocker / 'c.json'}")
    fails_cleanly(cli(*base, "--csv", blocker / "c.csv"), f"cannot write {blocker / 'c.csv'}")


def test_track_out_under_a_file(blocker, states):
    fails_cleanly(cli("track", CNN_SPEC, *states, "--kwargs", json.dumps(CNN_KW), "--layer", "relu3",
                      "--out", blocker / "track"), str(blocker / "track"))


def test_reproduce_out_under_a_file(blocker):
    fails_cleanly(cli("reproduce", "--scale", "tiny", "--out", blocker / "run", "--no-progress"),
                  str(blocker / "run"), "a part of the path is a file")


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root may write to read-only folders")
def test_read_only_folder(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        fails_cleanly(cli("demo", "--json", ro / "demo.json"), f"cannot write {ro / 'demo.json'}", "Permission")
        assert list(ro.iterdir()) == []
    finally:
        ro.chmod(0o755)


# ----------------------------------------------------------------------------- the library under the CLI
def test_atomic_write_failure_names_path_reason_fix_and_leaves_no_temp(tmp_path, monkeypatch):
    """A full disk (ENOSPC at fsync) becomes a FileAccessError naming path, reason and fix; the temporary
    file is removed and the previous file is untouched."""
    target = tmp_path / "out.json"
    atomic_write_json(target, {"old": 1})

    def full(_fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(FileAccessError) as info:
        atomic_write_json(target, {"new": 2})
    e = info.value
    assert isinstance(e, DeepspanError) and isinstance(e, OSError) and e.errno == errno.ENOSPC
    assert e.filename == str(target)
    assert str(e) == f"cannot write {target}: No space left on device (free some space or choose another folder)"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.json"]
    assert json.loads(target.read_text()) == {"old": 1}


def test_atomic_write_under_a_file(blocker):
    with pytest.raises(FileAccessError, match="a part of the path is a file"):
        atomic_write_bytes(blocker / "x" / "y.bin", b"1")


def test_describe_os_error_wording():
    e = OSError(errno.EACCES, "Permission denied", "/x/y")
    assert describe_os_error(e, "write") == ("cannot write /x/y: Permission denied (choose a folder you can write "
                                             "to, or change its permissions)")
    assert describe_os_error(OSError(errno.EROFS, "Read-only file system"), "write", "/r") == \
        "cannot write /r: Read-only file system (the file system is read-only: choose another folder)"
    # an errno without a known fix: path and reason only
    assert describe_os_error(OSError(errno.EIO, "Input/output error", "/d")) == "cannot access /d: Input/output error"


def test_reproduce_in_a_folder_it_cannot_write_says_where_to_put_the_output(tmp_path, monkeypatch):
    """A finished run in a read-only folder (simulated: root may write anywhere): the message names the file,
    the reason, that the results are intact and where to read them, and how to redraw them elsewhere."""
    import deepspan.experiments as experiments
    from click.testing import CliRunner

    from deepspan.cli import main

    out = tmp_path / "run"
    target = out / "report.html"

    def read_only(*_a, **_k):
        raise FileAccessError(f"cannot write {target}: Permission denied (choose a folder you can write to, or "
                              f"change its permissions)", errno.EACCES, str(target))

    monkeypatch.setattr(experiments, "reproduce", read_only)
    res = CliRunner().invoke(main, ["reproduce", "--scale", "tiny", "--out", str(out), "--no-progress"])
    assert res.exit_code == 1 and "Traceback" not in res.output
    assert f"cannot write {target}: Permission denied" in res.output
    assert f"results already in {out} are intact" in res.output
    assert f"cp -r {out} NEW && deepspan reproduce ... --out NEW" in res.output

    def full_disk(*_a, **_k):  # other file-system failures keep their own message and fix only
        raise FileAccessError(f"cannot write {target}: No space left on device (free some space)", errno.ENOSPC,
                              str(target))

    monkeypatch.setattr(experiments, "reproduce", full_disk)
    res = CliRunner().invoke(main, ["reproduce", "--scale", "tiny", "--out", str(out), "--no-progress"])
    assert res.exit_code == 1 and "No space left" in res.output and "cp -r" not in res.output
