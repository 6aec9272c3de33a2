"""The saved form of an experiment: claims with verdicts, measured numbers, tidy tables, provenance.

Every experiment of ``deepspan reproduce`` returns an :class:`ExperimentResult` and saves it as
``results/<name>.json`` plus one ``results/<name>__<table>.csv`` per table. The report
(:mod:`deepspan.report`) draws every figure and number from these files only.

Verdicts
--------
Each :class:`Claim` quotes a paper (with section / figure), lists the numbers deepspan measured
for it (:class:`Measured`, each with a unique ``key``), states its ``rule`` in words and carries
the ``verdict`` the rule gave: ``reproduced``, ``partly`` or ``not reproduced``. An experiment's
overall verdict is ``reproduced`` if every claim is, ``not reproduced`` if none is reproduced or
partly reproduced, else ``partly``.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from deepspan._io import atomic_write_json, atomic_write_text
from deepspan.errors import InputError

__all__ = ["Measured", "Claim", "ExperimentResult", "VERDICTS", "verdict_from", "combine_verdicts",
           "save_result", "load_result", "result_path", "FORMAT"]

FORMAT = "deepspan-experiment/1"
VERDICTS = ("reproduced", "partly", "not reproduced")


def _clean(x: Any) -> Any:
    """JSON-safe copy: numpy scalars/arrays to Python, NaN/Inf to None."""
    if hasattr(x, "tolist") and not isinstance(x, (str, bytes)):
        x = x.tolist()
    if isinstance(x, dict):
        return {str(k): _clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_clean(v) for v in x]
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


@dataclass
class Measured:
    """One number deepspan measured for a claim: ``key`` is unique within the experiment."""

    key: str
    label: str
    value: float | int | None
    unit: str = ""

    def __post_init__(self) -> None:
        v = _clean(self.value)
        self.value = v if v is None or isinstance(v, (int, bool)) else float(v)


@dataclass
class Claim:
    """A paper's claim, what deepspan measured for it, the rule and the verdict it gave."""

    id: str
    quote: str
    source: str
    rule: str
    verdict: str
    measured: list[Measured] = field(default_factory=list)
    note: str = ""

    def __post_init__(self) -> None:
        if self.verdict not in VERDICTS:
            raise InputError(f"verdict must be one of {VERDICTS}, got {self.verdict!r}")
        self.measured = [m if isinstance(m, Measured) else Measured(**m) for m in self.measured]


def verdict_from(passed: int, total: int) -> str:
    """``reproduced`` if all ``total`` checks pass, ``not reproduced`` if none does, else ``partly``."""
    if total <= 0:
        raise InputError("a verdict needs at least one check")
    return "reproduced" if passed == total else ("not reproduced" if passed == 0 else "partly")


def combine_verdicts(verdicts: list[str]) -> str:
    if not verdicts:
        raise InputError("an experiment needs at least one claim")
    if all(v == "reproduced" for v in verdicts):
        return "reproduced"
    if all(v == "not reproduced" for v in verdicts):
        return "not reproduced"
    return "partly"


@dataclass
class ExperimentResult:
    """What one experiment saves: see the module docstring.

    ``tables`` maps a table name to tidy rows (dicts of scalars); ``arrays`` names ``.npz`` side
    files (relative to the results folder) for bulky data such as image grids; ``provenance`` holds
    the config fingerprint, dataset, probe hash, versions and timing.
    """

    name: str
    title: str
    paper: str
    summary: str
    claims: list[Claim]
    tables: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    arrays: dict[str, str] = field(default_factory=dict)
    provenance: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.claims = [c if isinstance(c, Claim) else Claim(**c) for c in self.claims]
        keys = [m.key for c in self.claims for m in c.measured]
        dup = sorted({k for k in keys if keys.count(k) > 1})
        if dup:
            raise InputError(f"experiment {self.name}: measured keys must be unique, repeated: {dup}")

    @property
    def verdict(self) -> str:
        return combine_verdicts([c.verdict for c in self.claims])

    def measured(self) -> dict[str, float | int | None]:
        """All measured numbers by key."""
        return {m.key: m.value for c in self.claims for m in c.measured}

    def to_dict(self) -> dict[str, Any]:
        d = _clean(asdict(self))
        d["format"] = FORMAT
        d["verdict"] = self.verdict
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ExperimentResult:
        if d.get("format") != FORMAT:
            raise InputError(f"not a deepspan experiment result (format {d.get('format')!r}, expected {FORMAT!r})")
        keep = {k: d[k] for k in ("name", "title", "paper", "summary", "claims", "tables", "arrays", "provenance")
                if k in d}
        return cls(**keep)


def result_path(results_dir: str | Path, name: str) -> Path:
    return Path(results_dir) / f"{name}.json"


def _csv_text(rows: list[dict[str, Any]]) -> str:
    cols: list[str] = []
    for r in rows:
        for k in r:
            if k not in cols:
                cols.append(k)
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=cols, lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: ("" if r.get(k) is None else r.get(k)) for k in cols})
    return buf.getvalue()


def save_result(result: ExperimentResult, results_dir: str | Path) -> Path:
    """Write ``<name>.json`` and ``<name>__<table>.csv`` atomically (CSV first, JSON last: the JSON marks done)."""
    results_dir = Path(results_dir)
    d = result.to_dict()
    for table, rows in d["tables"].items():
        atomic_write_text(results_dir / f"{result.name}__{table}.csv", _csv_text(rows))
    return atomic_write_json(result_path(results_dir, result.name), d)


def load_result(results_dir: str | Path, name: str) -> ExperimentResult:
    import json

    path = result_path(results_dir, name)
    try:
        d = json.loads(path.read_text())
    except FileNotFoundError:
        raise InputError(f"no result {path}; run `deepspan reproduce --only {name}` first") from None
    except json.JSONDecodeError as exc:
        raise InputError(f"{path} is not valid JSON ({exc}); delete it and re-run that experiment") from exc
    return ExperimentResult.from_dict(d)
