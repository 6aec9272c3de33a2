"""End to end: ``deepspan reproduce --scale tiny`` through the CLI, then the results and report.html.

One tiny run of all eight experiments (shared with the browser test via ``_tiny_run``) is checked for:
result files, figures (PNG + SVG, referenced by the HTML), sections, every shown number against the
result files, every measured key shown, verdict badges, a second run that skips every experiment and
changes no result, and a failing figure module that leaves an error note instead of a crash.
"""

from __future__ import annotations

import base64
import json
import shutil
from html.parser import HTMLParser
from pathlib import Path

import pytest
from _tiny_run import EXPECTED, cli_args, invoke, snapshot, tiny_run

from deepspan.report import main as report_main
from deepspan.report import write_report
from deepspan.experiments import EXPERIMENTS


# ----------------------------------------------------------------------------- helpers
def fmt(v) -> str:
    """The report's number format, restated: ints as they are, floats to 4 significant digits, None as n/a."""
    if v is None:
        return "n/a"
    if isinstance(v, (bool, int)):
        return str(v)
    return f"{v:.4g}"


class ReportParser(HTMLParser):
    """Collects what the tests look at: sections, numbers, badges, images, links, error notes, external refs."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.sections: list[str] = []
        self.nums: list[dict] = []
        self.badges: list[dict] = []
        self.imgs: list[dict] = []
        self.hrefs: list[str] = []
        self.errors: list[dict] = []
        self.external: list[str] = []
        self.blockquotes = 0
        self._section: str | None = None
        self._figure: str | None = None
        self._span: dict | None = None
        self._err: dict | None = None
        self._div_depth = 0

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        cls = (a.get("class") or "").split()
        for k in ("src", "href"):
            v = a.get(k) or ""
            if v.startswith(("http:", "https:", "//")):
                self.external.append(v)
        if tag in ("link", "script") and (a.get("href") or a.get("src")):
            self.external.append(a.get("href") or a.get("src"))
        if tag == "section":
            self._section = a.get("id")
            self.sections.append(a.get("id"))
        elif tag == "figure":
            self._figure = a.get("id")
        elif tag == "img":
            self.imgs.append({"src": a.get("src", ""), "figure": self._figure, "section": self._section})
        elif tag == "a" and a.get("href"):
            self.hrefs.append(a["href"])
        elif tag == "blockquote":
            self.blockquotes += 1
        elif tag == "span" and ("num" in cls or "badge" in cls):
            self._span = {"kind": "num" if "num" in cls else "badge", "attrs": a, "text": "",
                          "section": self._section}
        if tag == "div":
            self._div_depth += 1
            if "error" in cls and self._err is None:
                self._err = {"section": self._section, "text": "", "depth": self._div_depth}

    def handle_endtag(self, tag):
        if tag == "section":
            self._section = None
        elif tag == "figure":
            self._figure = None
        elif tag == "span" and self._span is not None:
            (self.nums if self._span["kind"] == "num" else self.badges).append(self._span)
            self._span = None
        elif tag == "div":
            if self._err is not None and self._err["depth"] == self._div_depth:
                self.errors.append(self._err)
                self._err = None
            self._div_depth -= 1

    def handle_data(self, data):
        if self._span is not None:
            self._span["text"] += data
        if self._err is not None:
            self._err["text"] += data


def parse(path: Path) -> ReportParser:
    p = ReportParser()
    p.feed(path.read_text(encoding="utf-8"))
    p.close()
    return p


def load_results(out: Path, names) -> dict[str, dict]:
    return {n: json.loads((out / "results" / f"{n}.json").read_text()) for n in names}


def lookup(results: dict[str, dict], exp: str, key: str):
    """The value a span.num stands for: a measured key, ``provenance.<field>``, or a total over all results."""
    if exp == "*":
        assert key == "provenance.seconds", key
        return sum(r["provenance"]["seconds"] for r in results.values())
    res = results[exp]
    if key.startswith("provenance."):
        return res["provenance"][key.split(".", 1)[1]]
    found = [m["value"] for c in res["claims"] for m in c["measured"] if m["key"] == key]
    assert len(found) == 1, f"{exp}: measured key {key!r} found {len(found)} times"
    return found[0]


# ----------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return tiny_run(tmp_path_factory)


@pytest.fixture(scope="module")
def results(run):
    return load_results(run.out, run.names)


@pytest.fixture(scope="module")
def page(run):
    return parse(run.out / "report.html")


@pytest.fixture(scope="module")
def index(run):
    return json.loads((run.out / "report.json").read_text())


# ----------------------------------------------------------------------------- tests
def test_all_experiments_ran(run):
    assert run.names == list(EXPECTED), f"only {run.names} ran (DEEPSPAN_TEST_ONLY is set)"
    for n in run.names:
        assert f"[{n}] running" in run.stderr
    assert "report: " in run.stdout


def test_result_files_exist(run, results):
    for n, r in results.items():
        assert r["format"] == "deepspan-experiment/1" and r["name"] == n
        assert r["claims"], f"{n} has no claims"
        for table in r["tables"]:
            assert (run.out / "results" / f"{n}__{table}.csv").is_file(), (n, table)
        for rel in r["arrays"].values():
            assert (run.out / "results" / rel).is_file(), (n, rel)


def test_report_index_and_figures(run, index, page):
    assert index["format"] == "deepspan-report/1"
    assert index["errors"] == [], index["errors"]
    assert [s["name"] for s in index["sections"]] == run.names
    hrefs = set(page.hrefs)
    imgs = {i["figure"]: i for i in page.imgs}
    for s in index["sections"]:
        assert s["figures"], f"{s['name']}: no figures"
    assert len(index["figures"]) == sum(len(s["figures"]) for s in index["sections"])
    for f in index["figures"]:
        assert f["stem"].startswith(f["exp"]), f["stem"]
        png, svg = run.out / f["png"], run.out / f["svg"]
        assert png.is_file() and svg.is_file(), f
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert b"<svg" in svg.read_bytes()[:2000]
        assert f["caption"].strip()
        assert f["png"] in hrefs and f["svg"] in hrefs, f"{f['stem']} not linked from report.html"
        img = imgs[f"fig-{f['stem']}"]
        assert img["section"] == f"exp-{f['exp']}"
        prefix = "data:image/png;base64,"
        assert img["src"].startswith(prefix)
        assert base64.b64decode(img["src"][len(prefix):]) == png.read_bytes()


def test_self_contained(page):
    assert page.external == []
    assert all(i["src"].startswith("data:image/png;base64,") for i in page.imgs)


def test_sections(run, page, results):
    exp_sections = [s for s in page.sections if s and s.startswith("exp-")]
    assert exp_sections == [f"exp-{n}" for n in EXPERIMENTS if n in run.names]
    assert "summary" in page.sections
    assert page.blockquotes >= sum(len(r["claims"]) for r in results.values())
    for n, r in results.items():
        for rel in [f"results/{n}.json"] + [f"results/{n}__{t}.csv" for t in r["tables"]]:
            assert rel in page.hrefs, rel


def test_numbers_match_result_files(page, results):
    assert page.nums
    for s in page.nums:
        exp, key = s["attrs"]["data-exp"], s["attrs"]["data-key"]
        value = lookup(results, exp, key)
        assert s["attrs"]["data-value"] == repr(value), (exp, key)
        assert s["text"] == fmt(value), (exp, key, s["text"])
        if exp != "*":
            assert s["section"] in (f"exp-{exp}", None), (exp, key, s["section"])


def test_every_measured_key_in_report(page, results):
    shown = {(s["attrs"]["data-exp"], s["attrs"]["data-key"]) for s in page.nums if s["section"]}
    for n, r in results.items():
        for c in r["claims"]:
            for m in c["measured"]:
                assert (n, m["key"]) in shown, f"{n}: {m['key']} not in the report"


def test_verdict_badges(page, results):
    seen_overall = set()
    for b in page.badges:
        exp, claim, verdict = b["attrs"]["data-exp"], b["attrs"]["data-claim"], b["attrs"]["data-verdict"]
        assert b["text"] == verdict
        r = results[exp]
        if claim:
            assert verdict == next(c["verdict"] for c in r["claims"] if c["id"] == claim), (exp, claim)
        else:
            assert verdict == r["verdict"], exp
            seen_overall.add(exp)
    assert seen_overall == set(results)
    claim_badges = {(b["attrs"]["data-exp"], b["attrs"]["data-claim"]) for b in page.badges
                    if b["section"] == f"exp-{b['attrs']['data-exp']}" and b["attrs"]["data-claim"]}
    assert claim_badges == {(n, c["id"]) for n, r in results.items() for c in r["claims"]}


def test_second_run_skips_everything(run, index):
    figures = {f["png"]: (run.out / f["png"]).stat().st_mtime_ns for f in index["figures"]}
    res = invoke(cli_args(run.out, run.names))
    assert res.exit_code == 0, res.output
    for n in run.names:
        assert f"[{n}] done before, skipped" in res.stderr, res.stderr
    assert "running ..." not in res.stderr
    assert snapshot(run.out / "results") == run.snapshot
    # nothing the figures are drawn from changed: the report reuses them instead of redrawing
    again = json.loads((run.out / "report.json").read_text())
    assert again["figures"] == index["figures"] and again["errors"] == []
    assert {p: (run.out / p).stat().st_mtime_ns for p in figures} == figures
    assert [s for s in parse(run.out / "report.html").sections if s.startswith("exp-")] == \
        [f"exp-{n}" for n in run.names]


def test_broken_figure_module_gives_error_note(run, tmp_path, monkeypatch, capsys):
    out = tmp_path / "copy"
    (out / "results").mkdir(parents=True)
    keep = ["convergence", "common_subspace"]
    for p in (run.out / "results").iterdir():
        if p.name.split(".")[0].split("__")[0] in keep:
            shutil.copy2(p, out / "results" / p.name)
    shutil.copy2(run.out / "deepspan-reproduce.json", out)  # the run's experiment order orders the sections
    import deepspan.report.fig_convergence as fig

    def boom(result, fc):
        raise RuntimeError("figure exploded on purpose")

    monkeypatch.setattr(fig, "draw", boom)
    assert report_main([str(out)]) == 0  # python -m deepspan.report OUT, in process
    assert "1 error(s)" in capsys.readouterr().out
    index = json.loads((out / "report.json").read_text())
    assert [e["exp"] for e in index["errors"]] == ["convergence"]
    assert "figure exploded on purpose" in index["errors"][0]["message"]
    conv, other = index["sections"]
    assert conv["name"] == "convergence" and conv["figures"] == [] and conv["errors"]
    assert other["name"] == "common_subspace" and other["figures"] and not other["errors"]
    page = parse(out / "report.html")
    assert [e["section"] for e in page.errors] == ["exp-convergence"]
    assert "figure exploded on purpose" in page.errors[0]["text"]
    assert [s for s in page.sections if s.startswith("exp-")] == ["exp-convergence", "exp-common_subspace"]

    # fixed: the failed section is drawn again, the unchanged one is reused
    monkeypatch.undo()
    stamp = {f["png"]: (out / f["png"]).stat().st_mtime_ns for f in other["figures"]}
    write_report(out)
    index = json.loads((out / "report.json").read_text())
    assert index["errors"] == [] and index["sections"][0]["figures"]
    assert {p: (out / p).stat().st_mtime_ns for p in stamp} == stamp
    # a changed result is redrawn
    path = out / "results" / "common_subspace.json"
    d = json.loads(path.read_text())
    d["summary"] += " (edited)"
    path.write_text(json.dumps(d))
    write_report(out)
    assert {p: (out / p).stat().st_mtime_ns for p in stamp} != stamp
    assert "(edited)" in (out / "report.html").read_text()


def test_unreadable_result_and_empty_folder(tmp_path):
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "convergence.json").write_text("{not json")
    (tmp_path / "results" / "mystery.json").write_text(json.dumps({"format": "something else"}))
    write_report(tmp_path)
    index = json.loads((tmp_path / "report.json").read_text())
    assert [s["name"] for s in index["sections"]] == ["convergence", "mystery"]
    assert {e["exp"] for e in index["errors"]} == {"convergence", "mystery"}
    page = parse(tmp_path / "report.html")
    assert {e["section"] for e in page.errors} == {"exp-convergence", "exp-mystery"}
    assert report_main([str(tmp_path / "nowhere")]) == 2
    empty = tmp_path / "empty"
    write_report(empty)
    assert "No results" in (empty / "report.html").read_text()


def test_report_layer_imports_neither_torch_nor_experiments():
    import subprocess
    import sys

    code = ("import sys, importlib, pkgutil\n"
            "import deepspan.report as r\n"
            "for m in pkgutil.iter_modules(r.__path__):\n"
            "    importlib.import_module('deepspan.report.' + m.name) if m.name != '__main__' else None\n"
            "bad = [k for k in sys.modules if k == 'torch' or k.startswith(('torch.', 'deepspan.experiments'))]\n"
            "print(bad)\n")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "[]", f"deepspan.report imports {res.stdout.strip()}"
