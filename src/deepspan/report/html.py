"""The self-contained HTML report of ``deepspan reproduce``, built from saved results only.

:func:`write_report` reads every ``OUT/results/<name>.json`` (format ``deepspan-experiment/1``, read
as plain dicts: this layer does not import :mod:`deepspan.experiments`), draws each experiment's
figures with ``deepspan.report.fig_<name>.draw`` where that module exists, and writes

* ``OUT/report.html`` -- one file, no external CSS, JS or fonts; figures embedded as base64 PNG,
  their SVG (and PNG) files linked; a header (dataset, scale, seed, config fingerprint, versions,
  total seconds), the models table (from ``OUT/models.json``: architecture, paradigm, parameters,
  epochs, optimiser and schedule, training images, final accuracies, chance level), a short note on
  how to read P-vector angles, a summary table (one row per claim) and one
  ``<section id="exp-<name>">`` per experiment with its protocol (layers, centering, sample split and
  size, epochs, schedule, ...), the claims (quote marked verbatim or paraphrase, source, rule, verdict
  badge -- ``descriptive`` claims get a neutral badge and do not count in the experiment's verdict --,
  measured values), the figures with captions and links to the result files;
* ``OUT/report.json`` -- an index: the models, the sections (with their protocol), every figure
  (png, svg, caption), every error, and per section the figures' readability problems
  (:func:`deepspan.report._base.check_readable`; empty when every figure passes).

Every number taken from a result is shown as
``<span class="num" data-exp="<name>" data-key="<key>" data-value="<repr>">formatted</span>``
(``key`` a measured key, ``provenance.<field>`` or ``protocol.<field>[.<sub>...]``; ``data-exp="*"`` for a
total over all results; ``data-exp="models"`` with ``key`` ``<model>.<field>`` for a number of
``models.json``, shown in percent where ``data-format="percent"``),
so the shown numbers can be checked against the files. A figure module that fails does not stop the
report: its section shows the error and ``report.json`` records it.

Figures are redrawn only when what they are drawn from changed (a hash per section, kept in
``report.json``), so re-running a finished reproduction rewrites the report in moments. Rebuild a
report from saved results with ``python -m deepspan.report [--redraw] OUT``.
"""

from __future__ import annotations

import base64
import html
import importlib
import hashlib
import importlib.metadata
import importlib.util
import json
import re
import sys
import traceback
from pathlib import Path
from typing import Any

from deepspan._io import atomic_write_json, atomic_write_text
from deepspan.errors import DeepspanError
from deepspan.results import DESCRIPTIVE, ExperimentResult, combine_verdicts

__all__ = ["FORMAT", "write_report", "format_value", "short_quote", "main", "STATE", "MODELS", "READING_ANGLES"]

FORMAT = "deepspan-report/1"
#: The reproduction's settings file; its ``experiments`` list (the registry order) orders the sections.
STATE = "deepspan-reproduce.json"
#: The models the reproduction trained (format ``deepspan-models/1``), written beside the results.
MODELS = "models.json"
MODELS_FORMAT = "deepspan-models/1"
#: Quotes in the summary table are cut to this many characters (at a word boundary, with "…").
SUMMARY_QUOTE_CHARS = 140
_MODULE_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")
_VERDICT_CLASS = {"reproduced": "v-reproduced", "partly": "v-partly", "not reproduced": "v-not-reproduced",
                  DESCRIPTIVE: "v-descriptive"}

_CSS = """
:root { --fg: #1d2330; --muted: #5b6475; --line: #d9dde5; --bg-soft: #f5f7fa; --accent: #2457a6; }
* { box-sizing: border-box; }
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif;
       color: var(--fg); margin: 0; line-height: 1.45; background: #fff; }
main { max-width: 1180px; margin: 0 auto; padding: 1.2rem 1.5rem 3rem; }
header.report { background: var(--bg-soft); border-bottom: 1px solid var(--line); }
header.report .inner { max-width: 1180px; margin: 0 auto; padding: 1.2rem 1.5rem; }
h1 { margin: 0 0 .6rem; font-size: 1.7rem; }
h2 { font-size: 1.35rem; margin: 0 0 .4rem; }
h3 { font-size: 1.05rem; margin: 1.1rem 0 .4rem; }
a { color: var(--accent); }
dl.prov { display: grid; grid-template-columns: max-content 1fr; gap: .15rem 1rem; margin: 0; font-size: .92rem; }
dl.prov dt { color: var(--muted); }
dl.prov dd { margin: 0; }
code, .mono { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: .88em; }
nav.toc { font-size: .92rem; margin: .8rem 0 1.2rem; }
nav.toc ol { margin: .3rem 0; padding-left: 1.4rem; columns: 2; }
table { border-collapse: collapse; font-size: .9rem; margin: .4rem 0 .8rem; }
th, td { border: 1px solid var(--line); padding: .3rem .55rem; text-align: left; vertical-align: top; }
th { background: var(--bg-soft); }
td.value { text-align: right; white-space: nowrap; }
section.experiment { border-top: 2px solid var(--line); padding-top: 1.2rem; margin-top: 1.8rem; }
.paper, .meta { color: var(--muted); font-size: .92rem; margin: .1rem 0 .5rem; }
.claim { border: 1px solid var(--line); border-radius: 6px; padding: .2rem 1rem .6rem; margin: .8rem 0; }
blockquote { margin: .5rem 0; padding: .4rem .9rem; border-left: 4px solid #9fb4d8; background: var(--bg-soft);
             font-style: italic; }
blockquote footer { font-style: normal; color: var(--muted); font-size: .85rem; margin-top: .3rem; }
.rule { font-size: .92rem; }
.note { font-size: .9rem; color: var(--muted); }
.badge { display: inline-block; padding: .08rem .55rem; border-radius: 999px; font-size: .8rem; font-weight: 600;
         font-style: normal; vertical-align: middle; white-space: nowrap; border: 1px solid transparent; }
.v-reproduced { background: #dff3e4; color: #15603a; border-color: #9fd5b0; }
.v-partly { background: #fff1d6; color: #7a5200; border-color: #efcd85; }
.v-not-reproduced { background: #fbe1e1; color: #8c1d1d; border-color: #eba9a9; }
.v-descriptive { background: #e8eefa; color: #2b3d66; border-color: #b8c6e3; }
.v-unknown { background: #e9ebef; color: #444; border-color: #c9ced8; }
.qkind { display: inline-block; font-style: normal; font-size: .72rem; font-weight: 600; letter-spacing: .03em;
         text-transform: uppercase; padding: 0 .4rem; margin-right: .45rem; border-radius: 3px; vertical-align: .1em;
         border: 1px solid var(--line); background: #fff; color: var(--muted); }
blockquote.q-paraphrase { font-style: normal; border-left-color: #c9ced8; }
td .qkind { margin: 0 0 0 .3rem; }
dl.protocol { display: grid; grid-template-columns: max-content 1fr; gap: .1rem .9rem; margin: .3rem 0 .8rem;
              font-size: .9rem; }
dl.protocol dt { color: var(--muted); }
dl.protocol dd { margin: 0; }
section.reading { background: var(--bg-soft); border: 1px solid var(--line); border-radius: 6px;
                  padding: .6rem 1rem; margin: 1rem 0 1.4rem; }
section.reading p { margin: .3rem 0; max-width: 75rem; }
table.models { font-size: .86rem; }
table.models td.optim { min-width: 15rem; }
figure { margin: 1rem 0 1.4rem; }
figure img { max-width: 100%; height: auto; border: 1px solid var(--line); }
figcaption { font-size: .9rem; color: #333; margin-top: .35rem; max-width: 75rem; }
.error { border: 1px solid #e3a0a0; background: #fdf0f0; color: #7d1c1c; padding: .5rem .9rem; border-radius: 6px;
         margin: .8rem 0; }
.error pre { white-space: pre-wrap; font-size: .8rem; max-height: 18rem; overflow: auto; }
.warning { border: 1px solid #efcd85; background: #fff8e8; padding: .5rem .9rem; border-radius: 6px; margin: .6rem 0; }
.files { font-size: .9rem; }
footer.page { color: var(--muted); font-size: .85rem; margin-top: 2.5rem; }
"""


# ----------------------------------------------------------------------------- formatting
def format_value(value: Any) -> str:
    """How a result number is shown: ints (and bools) as they are, floats to 4 significant digits, None as n/a."""
    if value is None:
        return "n/a"
    if isinstance(value, (bool, int)):
        return str(value)
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _e(text: Any) -> str:
    return html.escape("" if text is None else str(text), quote=True)


def _num(exp: str, key: str, value: Any, percent: bool = False) -> str:
    """The only way a number from a result (or ``models.json``) enters the page; ``percent`` shows a
    fraction in percent (marked ``data-format="percent"``)."""
    if percent and isinstance(value, (int, float)) and not isinstance(value, bool):
        return (f'<span class="num" data-exp="{_e(exp)}" data-key="{_e(key)}" data-value="{_e(repr(value))}" '
                f'data-format="percent">{_e(format_percent(value))}</span>')
    return (f'<span class="num" data-exp="{_e(exp)}" data-key="{_e(key)}" data-value="{_e(repr(value))}">'
            f"{_e(format_value(value))}</span>")


def format_percent(value: Any) -> str:
    """A fraction in percent to one decimal (``0.4411`` -> ``44.1 %``); None as n/a."""
    return "n/a" if value is None else f"{100 * float(value):.1f} %"


def short_quote(text: str, limit: int = SUMMARY_QUOTE_CHARS) -> str:
    """``text`` (whitespace runs made single spaces) if it has at most ``limit`` characters; else its
    longest run of whole words that leaves room for "…" (trailing punctuation dropped), then "…".
    A word is cut only when the first word alone is longer than ``limit``."""
    text = " ".join(str(text).split())
    if len(text) <= limit:
        return text
    budget = limit - 1  # the ellipsis takes one character
    cut = text.rfind(" ", 0, budget + 1)  # text[:cut] ends with a whole word and has <= budget characters
    head = text[:cut] if cut > 0 else text[:budget]
    return head.rstrip(" ,;:.-–—(") + "…"


def _badge(verdict: str | None, exp: str, claim: str = "") -> str:
    v = verdict or "unknown"
    cls = _VERDICT_CLASS.get(v, "v-unknown")
    return (f'<span class="badge verdict {cls}" data-exp="{_e(exp)}" data-claim="{_e(claim)}" '
            f'data-verdict="{_e(v)}">{_e(v)}</span>')


def _combine(verdicts: list[str]) -> str:
    """:func:`deepspan.results.combine_verdicts` (descriptive claims do not count), ``unknown`` without claims."""
    return combine_verdicts(verdicts) if verdicts else "unknown"


def _short_error(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


# ----------------------------------------------------------------------------- reading results
def _run_order(out: Path) -> list[str]:
    """The experiment order the reproduction recorded (the registry's), or [] when there is none."""
    try:
        order = json.loads((out / STATE).read_text()).get("experiments") or []
    except (OSError, ValueError, AttributeError):
        return []
    return [str(n) for n in order if isinstance(n, str)]


def _ordered_names(results_dir: Path, order: list[str]) -> list[str]:
    names = sorted(p.stem for p in results_dir.glob("*.json") if "__" not in p.stem and not p.stem.startswith("."))
    known = [n for n in order if n in names]
    return known + [n for n in names if n not in known]


def _load(results_dir: Path, name: str) -> tuple[dict[str, Any], bytes]:
    path = results_dir / f"{name}.json"
    raw = path.read_bytes()
    try:
        d = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path} is not valid JSON ({exc}); delete it and re-run "
                         f"`deepspan reproduce --only {name}`") from None
    try:
        typed = ExperimentResult.from_dict(d)
    except (DeepspanError, KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"{path}: {exc}") from None
    return typed.to_dict(), raw


def _verdict(d: dict[str, Any]) -> str:
    return d.get("verdict") or _combine([c.get("verdict", "") for c in d.get("claims", [])])


# ----------------------------------------------------------------------------- figures
def _fig_module_file(module: str | None) -> Path | None:
    """The source file of a result's figure module (``result["figures"]``), or None."""
    if not module or not _MODULE_RE.match(module):
        return None
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return None
    return Path(spec.origin) if spec is not None and spec.origin else None


def _figure_key(name: str, raw: bytes, result: dict[str, Any], out: Path) -> str | None:
    """Hash of everything a section's figures are drawn from: the result file, its side arrays, the
    figure module's and ``_base``'s source and the matplotlib version (None: no figure module)."""
    mod = _fig_module_file(result.get("figures"))
    if mod is None:
        return None
    h = hashlib.sha256()
    h.update(raw)
    for key, rel in sorted((result.get("arrays") or {}).items()):
        path = out / "results" / str(rel)
        h.update(f"\0{key}\0{rel}\0".encode())
        h.update(path.read_bytes() if path.is_file() else b"<missing>")
    h.update(mod.read_bytes())
    h.update((Path(__file__).parent / "_base.py").read_bytes())
    try:
        h.update(importlib.metadata.version("matplotlib").encode())
    except importlib.metadata.PackageNotFoundError:
        pass
    return h.hexdigest()[:20]


def _previous_sections(out: Path) -> dict[str, dict[str, Any]]:
    try:
        prev = json.loads((out / "report.json").read_text())
        if prev.get("format") == FORMAT:
            return {s["name"]: s for s in prev.get("sections", []) if isinstance(s, dict) and "name" in s}
    except (OSError, ValueError, TypeError, AttributeError):
        pass
    return {}


def _reusable(prev: dict[str, Any] | None, key: str | None, out: Path) -> list[dict[str, str]] | None:
    """The previous report's figures of a section when nothing they are drawn from has changed."""
    if not prev or key is None or prev.get("figure_key") != key or prev.get("errors") or not prev.get("figures"):
        return None
    figs = prev["figures"]
    ok = all(isinstance(f, dict) and all(isinstance(f.get(k), str) for k in ("stem", "png", "svg", "caption"))
             and (out / f["png"]).is_file() and (out / f["svg"]).is_file() for f in figs)
    return [{k: f[k] for k in ("stem", "png", "svg", "caption")} for f in figs] if ok else None


def _draw(name: str, result: dict[str, Any], out: Path) -> tuple[list[dict[str, str]], str | None, list[str]]:
    """Run ``draw`` of the result's figure module (``result["figures"]``): (figures, error text or None,
    readability problems as ``"<stem>: <problem>"``)."""
    modname = result.get("figures")
    if _fig_module_file(modname) is None:
        return [], None, []
    from deepspan.report._base import FigureContext

    fc = FigureContext(out)
    try:
        mod = importlib.import_module(modname)
        infos = mod.draw(result, fc)
        figs = []
        for info in infos or []:
            f = {"stem": info.stem, "png": info.png, "svg": info.svg, "caption": info.caption}
            for k in ("png", "svg"):
                if not (out / f[k]).is_file():
                    raise FileNotFoundError(f"{modname}.draw returned {f[k]}, which does not exist")
            figs.append(f)
        return figs, None, [f"{stem}: {p}" for stem, ps in fc.problems.items() for p in ps]
    except Exception as exc:  # a drawing failure must not kill the report
        from deepspan.report._base import plt

        plt.close("all")
        return [], _short_error(exc) + "\n\n" + traceback.format_exc(), []


def _draw_one(args: tuple[str, dict[str, Any], str]) -> tuple[list[dict[str, str]], str | None, list[str]]:
    name, result, out = args
    return _draw(name, result, Path(out))


def _draw_all(items: list[tuple[str, dict[str, Any]]], out: Path,
              workers: int) -> dict[str, tuple[list[dict[str, str]], str | None, list[str]]]:
    """:func:`_draw` of every (name, result); in ``workers`` spawned processes when that is > 1 and there is
    more than one section (drawing is CPU-bound matplotlib work, one section per task)."""
    workers = max(1, min(int(workers), len(items)))
    if workers == 1:
        return {name: _draw(name, result, out) for name, result in items}
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    # spawned, not forked: the parent holds torch's and BLAS's thread pools
    with ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn")) as pool:
        return dict(zip([n for n, _ in items], pool.map(_draw_one, [(n, r, str(out)) for n, r in items])))


def _img(out: Path, fig: dict[str, str]) -> str:
    data = base64.b64encode((out / fig["png"]).read_bytes()).decode("ascii")
    return f'<img src="data:image/png;base64,{data}" alt="{_e(fig["stem"])}: {_e(fig["caption"][:200])}">'


# ----------------------------------------------------------------------------- HTML pieces
def _header(results: dict[str, dict[str, Any]], out: Path) -> str:
    rows: list[tuple[str, str]] = []
    ref_name = next(iter(results), None)
    if ref_name is None:
        return ('<header class="report"><div class="inner"><h1>deepspan reproduce — report</h1>'
                f'<p>No results in <code>{_e(out / "results")}</code> yet: run <code>deepspan reproduce</code>.</p>'
                "</div></header>")
    prov = results[ref_name].get("provenance", {}) or {}

    def txt(k: str) -> str:
        return _e(prov.get(k, "n/a"))

    def num(k: str) -> str:
        return _num(ref_name, f"provenance.{k}", prov.get(k)) if k in prov else "n/a"

    rows.append(("dataset", txt("dataset")))
    rows.append(("scale", txt("scale")))
    rows.append(("seed", num("seed")))
    rows.append(("probe", f"{num('n_probe')} images, sample hash <code>{txt('probe_hash')}</code>"))
    caps = prov.get("caps")
    if isinstance(caps, dict) and caps:
        rows.append(("caps", "; ".join(
            f"{_e(k)} {_e(v.get('asked'))} → {_e(v.get('used'))} ({_e(v.get('why'))})"
            for k, v in caps.items() if isinstance(v, dict))
            + ": the dataset holds less than the scale asks for"))
    if prov.get("split"):  # how the training / test split was made (the file's, the dataset's, or ours)
        rows.append(("split", txt("split")))
    if prov.get("data_hash"):
        rows.append(("data", f"{txt('input')}, content hash <code>{txt('data_hash')}</code>"))
    for key, what in (("skipped_models", "skipped models"), ("skipped_experiments", "skipped experiments")):
        if isinstance(prov.get(key), dict) and prov[key]:
            rows.append((what, "; ".join(f"{_e(k)}: {_e(v)}" for k, v in prov[key].items())))
    rows.append(("config fingerprint", f"<code>{txt('config_fingerprint')}</code>"))
    versions = ", ".join(f"{k} {_e(prov[k])}" for k in ("deepspan", "python", "numpy", "scipy", "torch") if k in prov)
    rows.append(("versions", versions or "n/a"))
    secs = [d.get("provenance", {}).get("seconds") for d in results.values()]
    secs = [s for s in secs if isinstance(s, (int, float)) and not isinstance(s, bool)]
    total = sum(secs) if secs else None
    rows.append(("total seconds", f"{_num('*', 'provenance.seconds', total)} s over {len(secs)} experiment(s) "
                 "(training included in the experiments that first needed it)"))
    rows.append(("files", '<a href="results/">results/</a> (JSON, CSV), <a href="figures/">figures/</a> (PNG, SVG), '
                 '<a href="report.json">report.json</a>'))
    dl = "".join(f"<dt>{k}</dt><dd>{v}</dd>" for k, v in rows)
    warn = ""
    fps = {n: (d.get("provenance") or {}).get("config_fingerprint") for n, d in results.items()}
    odd = [n for n, fp in fps.items() if fp != fps[ref_name]]
    if odd:
        warn = ('<p class="warning">These results come from another configuration than '
                f"<code>{_e(ref_name)}</code> (fingerprint differs): {_e(', '.join(odd))}. "
                "Re-run <code>deepspan reproduce</code> with one configuration to make them consistent.</p>")
    return (f'<header class="report"><div class="inner"><h1>deepspan reproduce — report</h1>'
            f'<dl class="prov">{dl}</dl>{warn}</div></header>')


def _read_models(out: Path) -> tuple[list[dict[str, Any]], str | None]:
    """The records of ``OUT/models.json`` and None, or [] and why there are none."""
    path = out / MODELS
    try:
        d = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return [], f"No {MODELS} in this folder: the models table is written by deepspan reproduce."
    except (OSError, ValueError) as exc:
        return [], f"{MODELS} could not be read ({type(exc).__name__}: {exc}); re-run deepspan reproduce."
    if not isinstance(d, dict) or d.get("format") != MODELS_FORMAT or not isinstance(d.get("models"), list):
        got = d.get("format") if isinstance(d, dict) else type(d).__name__
        return [], f"{MODELS} is not a deepspan models file (format {got!r}, expected {MODELS_FORMAT!r})."
    models = [m for m in d["models"] if isinstance(m, dict) and isinstance(m.get("name"), str)]
    return models, None if models else f"{MODELS} lists no models."


def _models_html(models: list[dict[str, Any]], missing: str | None) -> str:
    head = '<section id="models"><h2>Models</h2>'
    if not models:
        return head + f'<p class="note">{_e(missing)}</p></section>'
    body = []
    notes: dict[str, list[str]] = {}  # how the test accuracy is measured -> models
    for m in models:
        name = m["name"]

        def num(field: str, percent: bool = False) -> str:
            return _num("models", f"{name}.{field}", m[field], percent) if field in m else "n/a"

        widths = m.get("widths")
        arch = _e(m.get("architecture", "n/a"))
        if isinstance(widths, list) and widths:
            arch += " (widths " + ", ".join(_num("models", f"{name}.widths.{i}", w)
                                             for i, w in enumerate(widths)) + ")"
        if m.get("feature_layer"):
            arch += f'<br><span class="note">feature layer <code>{_e(m["feature_layer"])}</code></span>'
        supervised = m.get("test_accuracy") is not None or m.get("probe_accuracy") is None
        acc = num("test_accuracy", True) if supervised else num("probe_accuracy", True) + " (linear probe)"
        note = str(m.get("accuracy_note") or "")
        if note:
            n_test = f" ({format_value(m['n_test'])} images)" if isinstance(m.get("n_test"), int) else ""
            notes.setdefault(note + n_test, []).append(name)
        body.append(
            f'<tr id="model-{_e(name)}"><td><strong>{_e(name)}</strong></td><td>{arch}</td>'
            f'<td>{_e(m.get("paradigm", "n/a"))}</td><td class="value">{num("parameters")}</td>'
            f'<td class="value">{num("epochs")}</td><td class="optim">{_e(m.get("optimizer", "n/a"))}</td>'
            f'<td class="value">{num("n_train")}<br><span class="note">batch {num("batch_size")}</span></td>'
            f'<td class="value">{num("train_accuracy", True)}</td>'
            f'<td class="value">{acc}</td><td class="value">{num("chance", True)}</td></tr>')
    how = "".join(f"<li>{_e(', '.join(names))}: {_e(note)}</li>" for note, names in notes.items())
    return (head + '<p class="note">The trained networks the experiments read (from <a href="models.json">'
            "models.json</a>); accuracies are those of the final checkpoint.</p>"
            '<table class="models"><thead><tr><th>model</th><th>architecture</th><th>paradigm</th>'
            "<th>parameters</th><th>epochs</th><th>optimiser and schedule</th>"
            "<th>training images</th><th>train accuracy</th><th>test accuracy</th><th>chance</th>"
            "</tr></thead><tbody>" + "".join(body) + "</tbody></table>"
            + (f'<p class="note">How the test accuracy is measured:</p><ul class="note">{how}</ul>' if how else "")
            + "</section>")


#: The note on uncentered P-vector angles shown before the summary (plain text).
READING_ANGLES = (
    "A P-vector is the top left singular vector of a samples × features matrix F: a unit vector in sample "
    "space. When the entries of F are non-negative, as for features after a ReLU, no column has a negative "
    "mean. Splitting ‖F‖² = N‖μ‖² + ‖F − 1μᵀ‖² (μ the vector of column means, N the number of samples), the "
    "mean part is a large share of ‖F‖² (1/π of it for a ReLU of zero-mean Gaussian inputs, as a reference) "
    "and lies along one direction, while the variation around the mean is spread "
    "over many directions, so the mean dominates the top singular pair. The top left singular vector of such "
    "an F is then close to "
    "F·1/‖F·1‖, the normalised per-sample feature sums, and those sums are positive for every sample. So two "
    "non-negative feature matrices on the same samples have P-vectors close to each other even when the "
    "features are unrelated: their uncentered angles are small. The null baselines of this report (the same "
    "networks untrained, seeded random ReLU maps, Gaussian projections of the pixels) show how small "
    "uncentered angles are without any training, and so what the uncentered reading can and cannot "
    "distinguish. Centering the columns (subtracting μ) removes the mean direction: the centered P-vector is "
    "the first principal component of the samples, and centered angles compare the variation around the mean. "
    "The papers do not say whether they center; the P-vector experiments here report both readings.")


def _reading_html() -> str:
    return ('<section id="reading-angles" class="reading"><h2>How to read P-vector angles</h2>'
            f"<p>{_e(READING_ANGLES)}</p></section>")


_PROTOCOL_LABELS = {"layers": "layers", "centering": "centering", "split": "sample split", "sample_set": "sample set",
                    "train_probe": "training probe", "epochs": "epochs", "schedule": "optimiser and schedule",
                    "n_train": "training images", "batch_size": "batch size", "rows_per_draw": "rows per draw",
                    "draws": "draws", "independent_draws": "independent draws"}
_PROTOCOL_FIRST = ("layers", "centering", "split", "sample_set", "train_probe", "epochs", "schedule", "n_train",
                   "batch_size")


def _pvalue(exp: str, path: str, v: Any) -> str:
    """One protocol value as HTML: numbers as ``span.num`` (key ``protocol.<path>``), lists joined,
    dicts as ``key: value`` pairs, grouped by value where several keys share one (``2 (mlp, cnn)``)."""
    if v is None:
        return "none"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, (int, float)):
        return _num(exp, f"protocol.{path}", v)
    if isinstance(v, list):
        return ", ".join(_pvalue(exp, f"{path}.{i}", x) for i, x in enumerate(v)) if v else "none"
    if isinstance(v, dict):
        if not v:
            return "none"
        groups: dict[str, list[str]] = {}
        for k, x in v.items():
            groups.setdefault(json.dumps(x, sort_keys=True, default=str), []).append(str(k))
        if len(v) > 1 and len(groups) < len(v):
            return "; ".join(f"{_pvalue(exp, f'{path}.{keys[0]}', v[keys[0]])} ({_e(', '.join(keys))})"
                             for keys in groups.values())
        return "; ".join(f"{_e('n' if k == 'n_samples' else k)}: {_pvalue(exp, f'{path}.{k}', x)}"
                         for k, x in v.items())
    return _e(v)


def _protocol_html(exp: str, protocol: dict[str, Any] | None) -> str:
    """The experiment's ``protocol`` as a compact definition list (layers, centering, sample split (n),
    epochs, schedule, then the experiment's own settings)."""
    if not isinstance(protocol, dict) or not protocol:
        return '<p class="note"><strong>Protocol:</strong> not recorded in this result.</p>'
    keys = [k for k in _PROTOCOL_FIRST if k in protocol] + [k for k in protocol if k not in _PROTOCOL_FIRST]
    items = []
    for k in keys:
        if k == "n_samples" and "split" in protocol:
            continue
        value = _pvalue(exp, k, protocol[k])
        if k == "split" and "n_samples" in protocol:
            value += f" (n {_pvalue(exp, 'n_samples', protocol['n_samples'])})"
        label = "samples (n)" if k == "n_samples" else _PROTOCOL_LABELS.get(k, k.replace("_", " "))
        items.append(f"<dt>{_e(label)}</dt><dd>{value}</dd>")
    return f'<h3>Protocol</h3><dl class="protocol">{"".join(items)}</dl>'


def _quote_html(c: dict[str, Any], short: bool = False) -> str:
    """A claim's quote: in quotation marks when verbatim; the kind as a small label."""
    kind = c.get("quote_kind") if c.get("quote_kind") in ("verbatim", "paraphrase") else "paraphrase"
    text = c.get("quote", "")
    text = short_quote(text) if short else text
    label = f'<span class="qkind qkind-{kind}" data-kind="{kind}">{kind}</span>'
    shown = f"“{_e(text)}”" if kind == "verbatim" else _e(text)
    return (label + shown) if not short else (shown + label)


def _summary(sections: list[dict[str, Any]], results: dict[str, dict[str, Any]]) -> str:
    body = []
    for s in sections:
        name = s["name"]
        d = results.get(name)
        link = f'<a href="#exp-{_e(name)}">{_e(s["title"])}</a>'
        if d is None:
            body.append(f'<tr><td>{link}</td><td></td><td colspan="3" class="error">result could not be read</td></tr>')
            continue
        claims = d.get("claims") or []
        n = max(1, len(claims))
        head = (f'<td rowspan="{n}">{link}<br>{_badge(_verdict(d), name)}</td>'
                f'<td rowspan="{n}">{_e(d.get("paper", ""))}</td>')
        if not claims:
            body.append(f'<tr>{head}<td colspan="3">no claims</td></tr>')
            continue
        for i, c in enumerate(claims):
            cid = c.get("id", "")
            cells = (f'<td><a href="#exp-{_e(name)}-{_e(cid)}">{_e(cid)}</a></td>'
                     f'<td class="quote">{_quote_html(c, short=True)}</td>'
                     f"<td>{_badge(c.get('verdict'), name, cid)}</td>")
            body.append(f"<tr>{head if i == 0 else ''}{cells}</tr>")
    return ('<section id="summary"><h2>Summary</h2><table class="summary"><thead><tr><th>experiment</th>'
            "<th>paper</th><th>claim</th><th>quote</th><th>verdict</th></tr></thead><tbody>"
            + "".join(body) + "</tbody></table></section>")


def _significance_cells(name: str, m: dict[str, Any]) -> str:
    """The interval and p-value cells of a measured value (keys ``<key>@ci_low`` etc.), or empty cells."""
    key = m.get("key", "")
    ci = ("–" if m.get("ci_low") is None else
          f'[{_num(name, f"{key}@ci_low", m["ci_low"])}, {_num(name, f"{key}@ci_high", m["ci_high"])}]')
    p = "–" if m.get("p_value") is None else _num(name, f"{key}@p_value", m["p_value"])
    return f'<td class="value">{ci}</td><td class="value">{p}</td>'


def _claim_html(name: str, c: dict[str, Any]) -> str:
    cid = c.get("id", "")
    measured = c.get("measured") or []
    stats = any(m.get("ci_low") is not None or m.get("p_value") is not None for m in measured)
    rows = "".join(
        f'<tr><td>{_e(m.get("label", m.get("key")))}<br><code class="key">{_e(m.get("key"))}</code></td>'
        f'<td class="value">{_num(name, m.get("key", ""), m.get("value"))}</td>'
        + (_significance_cells(name, m) if stats else "") + f'<td>{_e(m.get("unit", ""))}</td></tr>'
        for m in measured)
    head = ("<th>measured</th><th>value</th>" + ("<th>95 % bootstrap interval</th><th>p (permutation)</th>"
                                                  if stats else "") + "<th>unit</th>")
    table = (f'<table class="measured"><thead><tr>{head}</tr></thead>'
             f"<tbody>{rows}</tbody></table>") if rows else '<p class="note">no measured values</p>'
    note = f'<p class="note"><strong>Note:</strong> {_e(c["note"])}</p>' if c.get("note") else ""
    badge = _badge(c.get("verdict"), name, cid)
    kind = c.get("quote_kind") if c.get("quote_kind") in ("verbatim", "paraphrase") else "paraphrase"
    rule_label = "Measured (no verdict)" if c.get("verdict") == DESCRIPTIVE else "Rule"
    return (f'<div class="claim" id="exp-{_e(name)}-{_e(cid)}"><h3>Claim {_e(cid)} {badge}</h3>'
            f'<blockquote class="q-{kind}" data-kind="{kind}">{_quote_html(c)}'
            f"<footer>— <cite>{_e(c.get('source', ''))}</cite></footer></blockquote>"
            f'<p class="rule"><strong>{rule_label}:</strong> {_e(c.get("rule", ""))}</p>{note}{table}</div>')


def _files_html(out: Path, name: str, d: dict[str, Any]) -> str:
    links = [f'<a href="results/{_e(name)}.json">{_e(name)}.json</a>']
    for table in (d.get("tables") or {}):
        rel = f"results/{name}__{table}.csv"
        links.append(f'<a href="{_e(rel)}">{_e(table)} (CSV)</a>' if (out / rel).is_file()
                     else f"{_e(table)} (CSV missing)")
    for key, rel in (d.get("arrays") or {}).items():
        links.append(f'<a href="results/{_e(rel)}">{_e(key)} (NPZ)</a>')
    return f'<p class="files"><strong>Data:</strong> {", ".join(links)}</p>'


def _section_html(idx: int, name: str, d: dict[str, Any] | None, figs: list[dict[str, str]],
                  errors: list[dict[str, str]], out: Path) -> str:
    parts = [f'<section class="experiment" id="exp-{_e(name)}">']
    if d is None:
        parts.append(f"<h2>{idx}. {_e(name)}</h2>")
    else:
        parts.append(f"<h2>{idx}. {_e(d.get('title', name))} {_badge(_verdict(d), name)}</h2>")
        prov = d.get("provenance") or {}
        secs = _num(name, "provenance.seconds", prov.get("seconds")) if "seconds" in prov else "n/a"
        parts.append(f'<p class="paper"><strong>Paper:</strong> {_e(d.get("paper", ""))} · experiment '
                     f"<code>{_e(name)}</code> · {secs} s</p>")
        parts.append(f'<p class="summary">{_e(d.get("summary", ""))}</p>')
        parts.append(_protocol_html(name, d.get("protocol")))
        for c in d.get("claims") or []:
            parts.append(_claim_html(name, c))
    for err in errors:
        first, _, rest = err["message"].partition("\n\n")
        tb = f"<details><summary>traceback</summary><pre>{_e(rest)}</pre></details>" if rest else ""
        parts.append(f'<div class="error" data-stage="{_e(err["stage"])}"><strong>{_e(err["stage"])} failed:</strong> '
                     f"{_e(first)}{tb}</div>")
    if figs:
        parts.append("<h3>Figures</h3>")
        for j, f in enumerate(figs, 1):
            parts.append(f'<figure id="fig-{_e(f["stem"])}"><a href="{_e(f["svg"])}">{_img(out, f)}</a>'
                         f"<figcaption><strong>Figure {idx}.{j}.</strong> {_e(f['caption'])} "
                         f'(<a href="{_e(f["svg"])}">SVG</a>, <a href="{_e(f["png"])}">PNG</a>)</figcaption></figure>')
    if d is not None:
        parts.append(_files_html(out, name, d))
    parts.append("</section>")
    return "".join(parts)


# ----------------------------------------------------------------------------- entry points
def write_report(out: str | Path, *, redraw: bool = False, order: list[str] | None = None, workers: int = 1) -> Path:
    """Draw the figures and write ``out/report.html`` and ``out/report.json`` from ``out/results``.

    Returns the path of ``report.html``. A section's figures are redrawn only when something they
    are drawn from changed (the result file, its side arrays, the figure module, matplotlib) or
    ``redraw`` is set; otherwise the previous ones (listed in ``report.json``) are reused. Figure or
    section failures are shown in the report and listed under ``errors`` in ``report.json``; they
    do not raise. Sections follow ``order`` (default: the experiment order recorded in
    ``out/deepspan-reproduce.json``, i.e. the registry's); other results follow, sorted by name.
    ``workers`` > 1 draws the sections in that many spawned processes (the same figures; one process
    draws all of a section's figures).
    """
    out = Path(out)
    results_dir = out / "results"
    order = _run_order(out) if order is None else list(order)
    names = _ordered_names(results_dir, order) if results_dir.is_dir() else []
    previous = {} if redraw else _previous_sections(out)
    results: dict[str, dict[str, Any]] = {}
    sections: list[dict[str, Any]] = []
    all_errors: list[dict[str, str]] = []
    bodies: list[str] = []
    loaded: list[tuple[str, dict[str, Any] | None, list[dict[str, str]], str | None, Any]] = []
    to_draw: list[str] = []
    for name in names:
        errs: list[dict[str, str]] = []
        key = None
        reused = None
        try:
            d, raw = _load(results_dir, name)
            results[name] = d
        except (OSError, ValueError) as exc:
            d = None
            errs.append({"exp": name, "stage": "reading the result", "message": _short_error(exc)})
        if d is not None:
            try:
                key = _figure_key(name, raw, d, out)
            except (OSError, TypeError, AttributeError):
                key = None
            reused = _reusable(previous.get(name), key, out)
            if reused is None:
                to_draw.append(name)
        loaded.append((name, d, errs, key, reused))
    drawn = _draw_all([(name, results[name]) for name in to_draw], out, workers)
    for name, d, errs, key, reused in loaded:
        figs: list[dict[str, str]] = []
        readability: list[str] = []
        if reused is not None:
            figs = reused
            readability = [str(p) for p in previous[name].get("readability") or []]
        elif d is not None:
            figs, err, readability = drawn[name]
            if err:
                errs.append({"exp": name, "stage": "drawing the figures", "message": err})
        idx = len(sections) + 1
        try:
            body = _section_html(idx, name, d, figs, errs, out)
        except Exception as exc:  # malformed result content: show it, keep going
            errs.append({"exp": name, "stage": "writing the section",
                         "message": _short_error(exc) + "\n\n" + traceback.format_exc()})
            body = _section_html(idx, name, None, [], errs, out)
        bodies.append(body)
        all_errors += errs
        sections.append({"name": name, "id": f"exp-{name}", "title": (d or {}).get("title", name),
                         "verdict": _verdict(d) if d else None, "result": f"results/{name}.json",
                         "protocol": (d or {}).get("protocol") or {},
                         "figures": figs, "figure_key": key, "readability": readability,
                         "errors": [e["message"].partition("\n\n")[0] for e in errs]})
    models, models_missing = _read_models(out)
    toc = "".join(f'<li><a href="#{s["id"]}">{_e(s["title"])}</a> {_badge(s["verdict"], s["name"])}</li>'
                  for s in sections)
    doc = ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
           '<meta name="viewport" content="width=device-width, initial-scale=1">'
           f"<title>deepspan reproduce — report</title><style>{_CSS}</style></head><body>"
           + _header(results, out)
           + "<main>"
           + _models_html(models, models_missing)
           + (f'<nav class="toc"><strong>Experiments</strong><ol>{toc}</ol></nav>' if sections else "")
           + _reading_html()
           + (_summary(sections, results) if sections else "")
           + "".join(bodies)
           + '<footer class="page">Written by <code>deepspan reproduce</code> from the files in <code>results/</code>; '
             "rebuild with <code>python -m deepspan.report OUT</code>. Verdicts come from the stated rules applied "
             "to the measured values.</footer></main></body></html>\n")
    index = {"format": FORMAT, "html": "report.html", "models": models, "sections": sections,
             "figures": [{"exp": s["name"], **f} for s in sections for f in s["figures"]],
             "errors": [{"exp": e["exp"], "stage": e["stage"], "message": e["message"].partition("\n\n")[0]}
                        for e in all_errors]}
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "report.json", index)
    return atomic_write_text(out / "report.html", doc)


def main(argv: list[str] | None = None) -> int:
    """``python -m deepspan.report [--redraw] OUT``: rebuild OUT/report.html (and figures) from OUT/results."""
    args = sys.argv[1:] if argv is None else list(argv)
    redraw = "--redraw" in args
    args = [a for a in args if a != "--redraw"]
    if len(args) != 1 or args[0] in ("-h", "--help"):
        print("usage: python -m deepspan.report [--redraw] OUT\n\nRebuild OUT/report.html, OUT/report.json and "
              "OUT/figures from the saved results in OUT/results (and the models table from OUT/models.json, "
              "when present). Figures whose inputs did not change are reused unless --redraw is given. Figures "
              "that break the readability rule (text under 9 pt at 7.5 inches wide, overlapping tick labels) are "
              "listed as warnings; they do not stop the report.", file=sys.stderr)
        return 0 if args and args[0] in ("-h", "--help") else 2
    out = Path(args[0])
    if not (out / "results").is_dir():
        print(f"error: {out / 'results'} does not exist; run `deepspan reproduce --out {out}` first", file=sys.stderr)
        return 2
    path = write_report(out, redraw=redraw)
    index = json.loads((out / "report.json").read_text())
    print(f"report: {path} ({len(index['sections'])} experiment(s), {len(index['figures'])} figure(s), "
          f"{len(index['errors'])} error(s))")
    for e in index["errors"]:
        print(f"  {e['exp']}: {e['stage']} failed: {e['message']}", file=sys.stderr)
    for s in index["sections"]:
        for problem in s.get("readability") or []:
            print(f"  warning: {s['name']}: figure {problem}", file=sys.stderr)
    return 0
