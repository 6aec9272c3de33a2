"""report.html opens in a real browser (headless Chromium): it renders, every section is there, no image is broken.

Uses the tiny ``deepspan reproduce`` run shared with ``test_report.py`` (``_tiny_run``). Needs the
Debian package ``chromium``; ``make test`` installs it when missing, elsewhere this test is skipped.
"""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from _tiny_run import tiny_run

CANDIDATES = ("chromium", "chromium-browser")
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync")

# Injected before </body> of a copy of the report: after load, lists the section ids and the images
# that did not decode (naturalWidth 0) in a <pre> that --dump-dom prints.
CHECK_SCRIPT = """<script>
window.addEventListener('load', function () {
  var ids = Array.prototype.map.call(document.querySelectorAll('section[id]'), function (s) { return s.id; });
  var imgs = Array.prototype.slice.call(document.images);
  var broken = imgs.filter(function (i) { return !i.complete || i.naturalWidth === 0; })
                   .map(function (i) { return (i.getAttribute('src') || '').slice(0, 60); });
  var pre = document.createElement('pre');
  pre.id = 'deepspan-browser-check';
  pre.textContent = JSON.stringify({sections: ids, images: imgs.length, broken: broken});
  document.body.appendChild(pre);
});
</script>"""


def chromium() -> str:
    for name in CANDIDATES:
        path = shutil.which(name)
        if path:
            return path
    pytest.skip("chromium is not installed: `make test` installs it (Debian package chromium); "
                "without it the browser check of report.html is skipped")


def browse(exe: str, profile: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([exe, *FLAGS, f"--user-data-dir={profile}", *args], capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture(scope="module")
def exe():
    return chromium()


@pytest.fixture(scope="module")
def run(exe, tmp_path_factory):
    return tiny_run(tmp_path_factory)


def test_screenshot_is_not_blank(exe, run, tmp_path):
    shot = tmp_path / "report.png"
    res = browse(exe, tmp_path / "profile", f"--screenshot={shot}", "--window-size=1280,3000",
                 (run.out / "report.html").resolve().as_uri())
    assert shot.is_file(), f"no screenshot (rc {res.returncode}):\n{res.stderr[-3000:]}"
    import matplotlib.image

    img = matplotlib.image.imread(str(shot))
    assert img.shape[:2] == (3000, 1280), img.shape
    rgb = np.round(np.asarray(img)[..., :3] * 255).astype(np.uint8).reshape(-1, 3)
    distinct = len(np.unique(rgb, axis=0))
    assert distinct > 200, f"screenshot looks blank: {distinct} distinct colours"
    assert (rgb.min(axis=1) < 100).mean() > 0.002, "hardly any dark pixels: no text rendered?"


def test_sections_present_and_no_broken_images(exe, run, tmp_path):
    page = (run.out / "report.html").read_text(encoding="utf-8")
    assert page.count("</body>") == 1
    copy = tmp_path / "report_check.html"
    copy.write_text(page.replace("</body>", CHECK_SCRIPT + "</body>"), encoding="utf-8")
    res = browse(exe, tmp_path / "profile", "--dump-dom", "--virtual-time-budget=5000", copy.as_uri())
    m = re.search(r'<pre id="deepspan-browser-check">(.*?)</pre>', res.stdout, re.S)
    assert m, f"the check did not run (rc {res.returncode}):\n{res.stderr[-3000:]}"
    check = json.loads(html.unescape(m.group(1)))
    assert [s for s in check["sections"] if s.startswith("exp-")] == [f"exp-{n}" for n in run.names]
    index = json.loads((run.out / "report.json").read_text())
    assert check["images"] == len(index["figures"]) > 0
    assert check["broken"] == [], f"broken images: {check['broken']}"
