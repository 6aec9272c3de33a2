"""End to end: ``deepspan reproduce --scale tiny`` through the CLI, then the results and report.html.

One tiny run of all eight experiments (shared with the browser test via ``_tiny_run``) is checked for:
result files, figures (PNG + SVG, referenced by the HTML), sections, every shown number against the
result files (and ``models.json``), every measured key shown, verdict badges, the models table, a
second run that skips every experiment and changes no result, and a failing figure module that leaves
an error note instead of a crash.

The report's own pieces (models table, protocol lists, quote kinds, descriptive claims, cut quotes,
the note on P-vector angles, words the report must not use) are tested on small hand-made results,
independent of the experiments' numbers.
"""

from __future__ import annotations

import base64
import json
import re
import shutil
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from _tiny_run import EXPECTED, cli_args, invoke, snapshot, tiny_run

from deepspan.report import main as report_main
from deepspan.report import write_report
from deepspan.report.html import READING_ANGLES, _combine, _verdict, short_quote
from deepspan.results import Check, Claim, Condition, ExperimentResult, Measured, Rule, combine_verdicts, save_result
from deepspan.experiments import EXPERIMENTS

#: words report.html must not contain anywhere (case-insensitive)
FORBIDDEN = ("issue", "stored text", "summarised")


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
        self.quote_kinds: list[str | None] = []
        self.models_rows: list[str] = []
        self.protocols: list[str] = []
        self.text = ""
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
            self.quote_kinds.append(a.get("data-kind"))
        elif tag == "tr" and self._section == "models" and (a.get("id") or "").startswith("model-"):
            self.models_rows.append(a["id"][len("model-"):])
        elif tag == "dl" and "protocol" in cls:
            self.protocols.append(self._section)
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
        self.text += data
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


def _walk(d, path: str):
    for part in path.split("."):
        d = d[int(part)] if isinstance(d, list) else d[part]
    return d


def lookup(results: dict[str, dict], exp: str, key: str, models: list[dict] | None = None):
    """The value a span.num stands for: a measured key, ``provenance.<field>``, ``protocol.<path>``, a total
    over all results, or (``exp == "models"``) ``<model>.<field>[.<index>]`` of ``models.json``."""
    if exp == "*":
        assert key == "provenance.seconds", key
        return sum(r["provenance"]["seconds"] for r in results.values())
    if exp == "models":
        name, _, path = key.partition(".")
        record = next(m for m in models or [] if m["name"] == name)
        return _walk(record, path)
    res = results[exp]
    if key.startswith("provenance."):
        return res["provenance"][key.split(".", 1)[1]]
    if key.startswith("protocol."):
        return _walk(res["protocol"], key.split(".", 1)[1])
    key, _, field = key.partition("@")  # <key>@ci_low, @ci_high, @p_value: the measured value's statistics
    found = [m[field or "value"] for c in res["claims"] for m in c["measured"] if m["key"] == key]
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


def check_numbers(page: ReportParser, results: dict[str, dict], models: list[dict]) -> None:
    assert page.nums
    for s in page.nums:
        exp, key = s["attrs"]["data-exp"], s["attrs"]["data-key"]
        value = lookup(results, exp, key, models)
        assert s["attrs"]["data-value"] == repr(value), (exp, key)
        if s["attrs"].get("data-format") == "percent":
            assert s["text"] == f"{100 * value:.1f} %", (exp, key, s["text"])
        else:
            assert s["text"] == fmt(value), (exp, key, s["text"])
        if exp == "models":
            assert s["section"] == "models", (key, s["section"])
        elif exp != "*":
            assert s["section"] in (f"exp-{exp}", None), (exp, key, s["section"])


def check_words(path: Path) -> None:
    """report.html (its text, attributes and CSS; the embedded images left out) has none of FORBIDDEN."""
    page = re.sub(r"data:image/png;base64,[A-Za-z0-9+/=]+", "", path.read_text(encoding="utf-8"))
    found = sorted({w for w in FORBIDDEN if w in page.lower()})
    assert not found, f"report.html contains {found}"


def test_numbers_match_result_files(run, page, results):
    check_numbers(page, results, json.loads((run.out / "models.json").read_text())["models"])


def test_models_table_and_index(run, page, index):
    models = json.loads((run.out / "models.json").read_text())["models"]
    assert models and index["models"] == models
    assert page.models_rows == [m["name"] for m in models]
    assert page.sections.index("models") < page.sections.index("reading-angles") < page.sections.index("summary")


def test_protocols_and_quote_kinds(page, index, results):
    for s in index["sections"]:
        assert s["protocol"] == results[s["name"]].get("protocol", {})
    assert [p for p in page.protocols] == [f"exp-{n}" for n in results if results[n].get("protocol")]
    assert set(page.quote_kinds) <= {"verbatim", "paraphrase"}


def test_report_words(run):
    check_words(run.out / "report.html")


def test_every_measured_key_in_report(page, results):
    shown = {(s["attrs"]["data-exp"], s["attrs"]["data-key"]) for s in page.nums if s["section"]}
    for n, r in results.items():
        for c in r["claims"]:
            for m in c["measured"]:
                assert (n, m["key"]) in shown, f"{n}: {m['key']} not in the report"
                for field in ("ci_low", "ci_high", "p_value"):  # a measured value's interval and p-value too
                    if m.get(field) is not None:
                        assert (n, f"{m['key']}@{field}") in shown, f"{n}: {m['key']} {field} not in the report"


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


#: the sections redrawn serially by test_parallel_drawing_equals_serial (all of them take over a minute)
SERIAL_SECTIONS = ("convergence", "common_subspace")


def test_parallel_drawing_equals_serial(run, tmp_path):
    """reproduce draws the sections in 2 spawned processes; drawing two of them (SERIAL_SECTIONS) in this
    process gives the same report.json sections and byte-identical PNG figures."""
    out = tmp_path / "serial"
    shutil.copytree(run.out, out, ignore=shutil.ignore_patterns("runs", "cache"))
    for path in (out / "results").iterdir():
        if path.name.split(".")[0].split("__")[0] not in SERIAL_SECTIONS:
            path.unlink()
    parallel = json.loads((run.out / "report.json").read_text())
    write_report(out, redraw=True, workers=1)
    serial = json.loads((out / "report.json").read_text())
    assert [s["name"] for s in serial["sections"]] == [s["name"] for s in parallel["sections"]
                                                       if s["name"] in SERIAL_SECTIONS] == list(
        n for n in EXPERIMENTS if n in SERIAL_SECTIONS)
    assert serial["sections"] == [s for s in parallel["sections"] if s["name"] in SERIAL_SECTIONS]
    assert serial["errors"] == parallel["errors"] == []
    assert {f["exp"] for f in serial["figures"]} == set(SERIAL_SECTIONS)
    for f in serial["figures"]:
        assert (out / f["png"]).read_bytes() == (run.out / f["png"]).read_bytes(), f["stem"]


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


# ----------------------------------------------------------------------------- hand-made results (no tiny run)
LONG_QUOTE = ("during the training procedure from random scratch, the angle decrease from a larger one (70°–80° "
              "usually) to the small one, which coincides the progress of feature space learning from scratch to "
              "convergence")


def _rule(key: str, bound: float) -> Rule:
    return Rule(f"{key} is below {bound:g}", (Check("low", (Condition(key, "<", bound),)),))


def handmade_results() -> list[ExperimentResult]:
    protocol = {"layers": {"a": "relu1", "b": "relu1"}, "centering": "both readings", "split": "test",
                "n_samples": 200, "epochs": {"a": 2, "b": 3}, "schedule": {"a": "SGD lr 0.1, cosine schedule",
                                                                             "b": "SGD lr 0.1, cosine schedule"},
                "rows_per_draw": 500, "draws": 3, "independent_draws": True, "epochs_read": [0, 1, 2],
                "train_probe": {"split": "train", "n_samples": 100}, "note": None}
    toy = ExperimentResult(
        "toy", "A toy experiment", "Somebody 2024", "made up for the report tests", [
            Claim("judged", LONG_QUOTE, "Somebody 2024, Abstract", _rule("x", 1.0),
                  [Measured("x", "the x", 0.5, "deg")], quote_kind="verbatim"),
            Claim("para", "the angle falls late in training", "Somebody 2024, Appendix A.5 (paraphrase)",
                  _rule("y", 1.0), [Measured("y", "the y", 2.0)], quote_kind="paraphrase"),
            Claim("desc", "we connect such angle with generalization performance", "Somebody 2024, Abstract",
                  None, [Measured("z", "the z", 7, "")], quote_kind="verbatim")],
        provenance={"seconds": 1.5, "seed": 0, "dataset": "digits", "scale": "tiny", "n_probe": 200,
                    "config_fingerprint": "abc"}, protocol=protocol)
    toy2 = ExperimentResult(
        "toy2", "Judged and descriptive", "Somebody 2024", "one judged, one descriptive claim", [
            Claim("ok", "short quote", "S 2024, Sec. 1", _rule("u", 1.0), [Measured("u", "u", 0.1)],
                  quote_kind="verbatim"),
            Claim("d", "only measured", "S 2024, Sec. 2", None, [Measured("v", "v", 3.0)])],
        provenance={"seconds": 0.5, "config_fingerprint": "abc"})
    toy3 = ExperimentResult(
        "toy3", "Descriptive only", "Somebody 2024", "no judged claim", [
            Claim("d", "only measured", "S 2024, Sec. 3", None, [Measured("w", "w", None)])],
        provenance={"seconds": 0.25, "config_fingerprint": "abc"})
    return [toy, toy2, toy3]


MODELS = [
    {"name": "a", "architecture": "MLP", "widths": [64, 32], "paradigm": "supervised", "parameters": 6570,
     "epochs": 2, "optimizer": "SGD lr 0.05, momentum 0.9, weight decay 0.0005, cosine schedule",
     "batch_size": 64, "n_train": 1500, "seed": 0, "checkpoints": 8, "feature_layer": "relu2",
     "train_accuracy": 0.478, "test_accuracy": 0.441, "probe_accuracy": None, "n_test": 297, "chance": 0.1,
     "accuracy_note": "arg-max accuracy on the test split"},
    {"name": "b", "architecture": "ConvAutoencoder", "widths": [8, 16], "paradigm": "autoencoder",
     "parameters": 4609, "epochs": 3, "optimizer": "Adam lr 0.001, cosine schedule", "batch_size": 64,
     "n_train": 1500, "seed": 0, "checkpoints": 8, "feature_layer": "latent", "train_accuracy": None,
     "test_accuracy": None, "probe_accuracy": 0.7138, "n_test": 297, "chance": 0.1,
     "accuracy_note": "linear probe (ridge) on the latent features: fit on 2000 training images, scored on the "
                      "test split"}]


@pytest.fixture
def handmade(tmp_path):
    out = tmp_path / "out"
    results = handmade_results()
    for r in results:
        save_result(r, out / "results")
    (out / "models.json").write_text(json.dumps({"format": "deepspan-models/1", "models": MODELS}))
    write_report(out)
    return out, results


def test_short_quote():
    assert short_quote("short and sweet") == "short and sweet"
    assert short_quote("x" * 140) == "x" * 140
    cut = short_quote(LONG_QUOTE)
    assert len(LONG_QUOTE) > 140 and len(cut) <= 140 and cut.endswith("…")
    assert cut == "during the training procedure from random scratch, the angle decrease from a larger one (70°–80° " \
                  "usually) to the small one, which coincides…"  # 140 characters; one more word would not fit
    # a word is never cut: what is kept is followed in the text by a space or punctuation
    words = ("alpha beta, gamma delta; epsilon zeta eta theta iota kappa lambda mu nu xi omicron pi rho sigma "
             "tau upsilon phi chi psi omega").split()
    rng = np.random.default_rng(0)
    for _ in range(300):
        text = " ".join(rng.choice(words, size=int(rng.integers(5, 60))))
        got = short_quote(text)
        assert len(got) <= 140
        if len(text) <= 140:
            assert got == text
            continue
        head = got[:-1]
        assert got.endswith("…") and text.startswith(head) and head and head[-1] not in " ,;"
        assert text[len(head)] in " ,;", (text, got)
    assert short_quote("y" * 300) == "y" * 139 + "…"  # one word longer than the limit: the only cut inside a word
    assert short_quote("  spaced \n  out  ") == "spaced out"


def test_combine_and_verdict_ignore_descriptive():
    import itertools

    kinds = ["reproduced", "partly", "not reproduced", "descriptive"]
    for n in (1, 2, 3):
        for combo in itertools.product(kinds, repeat=n):
            assert _combine(list(combo)) == combine_verdicts(list(combo)), combo
            assert _verdict({"claims": [{"verdict": v} for v in combo]}) == combine_verdicts(list(combo))
    assert _combine([]) == "unknown"
    assert _verdict({"verdict": "partly", "claims": []}) == "partly"


def test_handmade_report(handmade):
    out, typed = handmade
    page = parse(out / "report.html")
    index = json.loads((out / "report.json").read_text())
    html_text = (out / "report.html").read_text(encoding="utf-8")
    results = load_results(out, [r.name for r in typed])
    # models first, then the note on angles, then the summary and the sections
    assert page.sections[:3] == ["models", "reading-angles", "summary"]
    assert page.models_rows == ["a", "b"] and index["models"] == MODELS
    assert "71.4 % (linear probe)" in page.text and "44.1 %" in page.text and "10.0 %" in page.text
    assert "Adam lr 0.001, cosine schedule" in page.text and "ConvAutoencoder" in page.text
    check_numbers(page, results, MODELS)
    # verdicts: descriptive claims get a neutral badge and do not count
    overall = {b["attrs"]["data-exp"]: b["attrs"]["data-verdict"] for b in page.badges if not b["attrs"]["data-claim"]}
    assert overall == {"toy": "partly", "toy2": "reproduced", "toy3": "descriptive"}
    assert overall == {r.name: r.verdict for r in typed}
    assert [s["verdict"] for s in index["sections"]] == ["partly", "reproduced", "descriptive"]
    desc = [b for b in page.badges if b["attrs"]["data-verdict"] == "descriptive"]
    assert desc and all("v-descriptive" in b["attrs"]["class"] for b in desc)
    assert "v-not-reproduced" not in " ".join(b["attrs"]["class"] for b in desc)
    # quotes: kind labelled, verbatim in quotation marks, paraphrase not, source shown
    assert page.quote_kinds == ["verbatim", "paraphrase", "verbatim", "verbatim", "paraphrase", "paraphrase"]
    assert "“the angle falls late in training”" not in html_text and "the angle falls late in training" in page.text
    assert f"“{LONG_QUOTE}”" in page.text and "Somebody 2024, Appendix A.5 (paraphrase)" in page.text
    assert html_text.count('class="qkind qkind-verbatim"') >= 3 and 'class="qkind qkind-paraphrase"' in html_text
    # summary: the long quote is cut at a word boundary
    assert f"“{short_quote(LONG_QUOTE)}”" in page.text
    # protocol: a definition list in the section, the dict in report.json
    assert page.protocols == ["exp-toy"]
    assert index["sections"][0]["protocol"] == typed[0].protocol and index["sections"][1]["protocol"] == {}
    for words in ("sample split", "test (n 200)", "relu1 (a, b)", "a: 2; b: 3", "SGD lr 0.1, cosine schedule (a, b)",
                  "rows per draw", "independent draws", "yes", "training probe", "split: train; n: 100"):
        assert words in page.text, words
    assert "not recorded in this result" in page.text  # toy2 and toy3 carry no protocol
    # the note on P-vector angles
    assert READING_ANGLES in page.text
    assert "the papers do not say whether they center" in page.text.lower()
    check_words(out / "report.html")


def test_report_without_models_file(handmade):
    out, _ = handmade
    (out / "models.json").unlink()
    write_report(out)
    page = parse(out / "report.html")
    assert page.models_rows == [] and "No models.json in this folder" in page.text
    assert json.loads((out / "report.json").read_text())["models"] == []
    (out / "models.json").write_text("{broken")
    write_report(out)
    assert "models.json could not be read" in parse(out / "report.html").text
    assert json.loads((out / "report.json").read_text())["models"] == []


def test_report_help(capsys):
    assert report_main(["--help"]) == 0
    err = capsys.readouterr().err
    assert "usage: python -m deepspan.report [--redraw] OUT" in err and "models.json" in err
    assert report_main([]) == 2
