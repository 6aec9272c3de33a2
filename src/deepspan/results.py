"""The saved form of an experiment: claims judged by rules, measured numbers, tidy tables, provenance.

This module sits below :mod:`deepspan.report` (which reads these typed results) and
:mod:`deepspan.experiments` (which writes them); it imports neither torch nor matplotlib.

Every experiment of ``deepspan reproduce`` returns an :class:`ExperimentResult` and saves it as
``results/<name>.json`` plus one ``results/<name>__<table>.csv`` per table.

Claims, rules and verdicts
--------------------------
A :class:`Claim` quotes a paper (with its location), lists the numbers deepspan measured for it
(:class:`Measured`, each with a key unique within the experiment) and carries a :class:`Rule`.
The rule is data: a statement in words plus :class:`Check` objects, each a conjunction (or
disjunction) of :class:`Condition` s of the form ``measured[key] OP factor x (number | measured[key])``.
The verdict is *computed* from the measured numbers by the same object that words the rule, so the
rule text shown in the report and the verdict cannot disagree:

* ``reproduced`` -- every check passes;
* ``partly`` -- some check passes, or (where the rule has them) some of its weaker ``partial`` checks;
* ``not reproduced`` -- none does.

A condition whose value is missing (None or not finite) fails. A claim without a rule is
``descriptive``: it shows what was measured for a statement no paper makes as a testable claim (or
one whose protocol cannot be followed), with no verdict. An experiment's overall verdict reads only
its judged claims: ``reproduced`` if every one is, ``not reproduced`` if every one is, else ``partly``
(``descriptive`` when it has none).

Quotes
------
``quote_kind`` is ``"verbatim"`` when ``quote`` is the paper's own words, ``"paraphrase"`` when it is
deepspan's wording of the paper's point; ``source`` names the location (section, appendix, figure) either way.

Protocol
--------
``ExperimentResult.protocol`` records how the numbers were obtained: layers, centering, sample split
and size, epochs and schedule, and experiment-specific settings (e.g. rows per draw and draws of the
subspace match), so that a reader can follow each number to its sample set.
"""

from __future__ import annotations

import json
import math
import operator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deepspan._io import atomic_write_csv, atomic_write_json
from deepspan.errors import InputError

__all__ = ["Measured", "Condition", "Check", "Rule", "Claim", "ExperimentResult", "VERDICTS", "FORMAT",
           "QUOTE_KINDS", "DESCRIPTIVE",
           "combine_verdicts", "save_result", "load_result", "result_path", "clean_json"]

FORMAT = "deepspan-experiment/1"
VERDICTS = ("reproduced", "partly", "not reproduced")
DESCRIPTIVE = "descriptive"
QUOTE_KINDS = ("verbatim", "paraphrase")
_OPS = {">=": operator.ge, "<=": operator.le, ">": operator.gt, "<": operator.lt}


def clean_json(x: Any) -> Any:
    """JSON-safe copy: numpy scalars/arrays to Python, tuples to lists, NaN/Inf to None."""
    if hasattr(x, "tolist") and not isinstance(x, (str, bytes)):
        x = x.tolist()
    if isinstance(x, dict):
        return {str(k): clean_json(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [clean_json(v) for v in x]
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def _fmt(x: Any) -> str:
    if x is None:
        return "n/a"
    if isinstance(x, bool) or isinstance(x, int):
        return str(x)
    return f"{float(x):.4g}"


@dataclass
class Measured:
    """One number deepspan measured for a claim: ``key`` is unique within the experiment.

    ``ci_low`` / ``ci_high``: its bootstrap interval and ``p_value`` its permutation p-value
    (:func:`deepspan.significance`), where the experiment computed them (None otherwise).
    """

    key: str
    label: str
    value: float | int | None
    unit: str = ""
    ci_low: float | None = None
    ci_high: float | None = None
    p_value: float | None = None

    def __post_init__(self) -> None:
        v = clean_json(self.value)
        self.value = v if v is None or isinstance(v, (int, bool)) else float(v)
        for name in ("ci_low", "ci_high", "p_value"):
            x = clean_json(getattr(self, name))
            setattr(self, name, None if x is None else float(x))

    @classmethod
    def with_significance(cls, key: str, label: str, sig: Any, unit: str = "") -> "Measured":
        """The value of a :class:`~deepspan.measures.significance.Significance` with its interval and p-value."""
        return cls(key, label, sig.value, unit, sig.ci_low, sig.ci_high, sig.p_value)


# ----------------------------------------------------------------------------- rules
@dataclass(frozen=True)
class Condition:
    """``measured[key] OP factor x ref``, where ``ref`` is a number or another measured key."""

    key: str
    op: str
    ref: float | str
    factor: float = 1.0

    def __post_init__(self) -> None:
        if self.op not in _OPS:
            raise InputError(f"condition operator must be one of {sorted(_OPS)}, got {self.op!r}")

    def sides(self, values: dict[str, Any]) -> tuple[float | None, float | None]:
        def get(k: str) -> float | None:
            v = values.get(k)
            return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) else None

        left = get(self.key)
        right = get(self.ref) if isinstance(self.ref, str) else float(self.ref)
        return left, (None if right is None else self.factor * right)

    def holds(self, values: dict[str, Any]) -> bool:
        left, right = self.sides(values)
        return left is not None and right is not None and bool(_OPS[self.op](left, right))

    def words(self) -> str:
        ref = self.ref if isinstance(self.ref, str) else f"{self.ref:g}"
        scale = "" if self.factor == 1.0 else f"{self.factor:g} x "
        return f"{self.key} {self.op} {scale}{ref}"

    def outcome(self, values: dict[str, Any]) -> str:
        left, right = self.sides(values)
        return f"{_fmt(left)} {self.op} {_fmt(right)}"

    def to_dict(self) -> dict[str, Any]:
        return {"key": self.key, "op": self.op, "ref": self.ref, "factor": self.factor}


@dataclass(frozen=True)
class Check:
    """A named group of conditions that passes when all (``mode="all"``) or any (``"any"``) hold."""

    name: str
    conditions: tuple[Condition, ...]
    mode: str = "all"

    def __post_init__(self) -> None:
        object.__setattr__(self, "conditions", tuple(self.conditions))
        if self.mode not in ("all", "any"):
            raise InputError(f"check mode must be 'all' or 'any', got {self.mode!r}")
        if not self.conditions:
            raise InputError(f"check {self.name!r} needs at least one condition")

    def passed(self, values: dict[str, Any]) -> bool:
        results = [c.holds(values) for c in self.conditions]
        return all(results) if self.mode == "all" else any(results)

    def words(self) -> str:
        join = " and " if self.mode == "all" else " or "
        return join.join(c.words() for c in self.conditions)

    def outcome(self, values: dict[str, Any]) -> str:
        join = " and " if self.mode == "all" else " or "
        return (f"{self.name}: {join.join(c.outcome(values) for c in self.conditions)}: "
                f"{'pass' if self.passed(values) else 'fail'}")

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "mode": self.mode, "conditions": [c.to_dict() for c in self.conditions]}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Check":
        return cls(d["name"], tuple(Condition(**c) for c in d["conditions"]), d.get("mode", "all"))


@dataclass(frozen=True)
class Rule:
    """A verdict rule: words (``statement``) plus the checks that decide it (module docstring).

    ``statement`` says what is compared and why, without the outcome; :meth:`text` appends each
    check with its numbers and the count that gave the verdict. ``partial`` checks are weaker
    ones: if none of ``checks`` passes but some partial check does, the verdict is ``partly``.
    """

    statement: str
    checks: tuple[Check, ...]
    partial: tuple[Check, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "checks", tuple(self.checks))
        object.__setattr__(self, "partial", tuple(self.partial))
        if not self.checks:
            raise InputError("a rule needs at least one check")

    def passed(self, values: dict[str, Any]) -> int:
        return sum(c.passed(values) for c in self.checks)

    def verdict(self, values: dict[str, Any]) -> str:
        n = self.passed(values)
        if n == len(self.checks):
            return "reproduced"
        if n > 0 or any(c.passed(values) for c in self.partial):
            return "partly"
        return "not reproduced"

    def text(self, values: dict[str, Any]) -> str:
        n, total = self.passed(values), len(self.checks)
        parts = [self.statement.rstrip(" ;.")]
        parts.append("checks: " + "; ".join(c.outcome(values) for c in self.checks))
        tail = (f"reproduced if all {total} check(s) pass, partly if some do" if not self.partial else
                f"reproduced if all {total} check(s) pass, partly if some do or if a weaker check passes "
                f"(weaker: " + "; ".join(c.outcome(values) for c in self.partial) + ")")
        parts.append(f"{tail} ({n}/{total} passed)")
        return "; ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        return {"statement": self.statement, "checks": [c.to_dict() for c in self.checks],
                "partial": [c.to_dict() for c in self.partial]}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Rule":
        return cls(d["statement"], tuple(Check.from_dict(c) for c in d["checks"]),
                   tuple(Check.from_dict(c) for c in d.get("partial", [])))


# ----------------------------------------------------------------------------- claims and results
@dataclass
class Claim:
    """A paper's claim, what deepspan measured for it, and the rule that judges it.

    ``verdict`` is not passed in: it is computed by ``rule`` from ``measured`` (and ``context``:
    numbers the rule reads that are not shown as measured values of this claim, e.g. another
    claim's). ``rule_text`` is the rule's words with the outcome of every check. ``rule=None``
    makes the claim descriptive (no verdict). ``quote_kind`` says whether ``quote`` is verbatim.
    """

    id: str
    quote: str
    source: str
    rule: Rule | None
    measured: list[Measured] = field(default_factory=list)
    note: str = ""
    context: dict[str, Any] = field(default_factory=dict)
    quote_kind: str = "paraphrase"

    def __post_init__(self) -> None:
        self.measured = [m if isinstance(m, Measured) else Measured(**m) for m in self.measured]
        if self.quote_kind not in QUOTE_KINDS:
            raise InputError(f"claim {self.id}: quote_kind must be one of {QUOTE_KINDS}, got {self.quote_kind!r}")
        if not str(self.source).strip():
            raise InputError(f"claim {self.id}: source must name the paper and the location of the quote")
        if isinstance(self.rule, dict):
            self.rule = Rule.from_dict(self.rule)
        if self.rule is None:
            return
        if not isinstance(self.rule, Rule):
            raise InputError(f"claim {self.id}: rule must be a deepspan.results.Rule or None, "
                             f"got {type(self.rule).__name__}")
        values = self.values()
        missing = sorted({c.key for ch in self.rule.checks + self.rule.partial for c in ch.conditions} |
                         {c.ref for ch in self.rule.checks + self.rule.partial for c in ch.conditions
                          if isinstance(c.ref, str)}) 
        missing = [k for k in missing if k not in values]
        if missing:
            raise InputError(f"claim {self.id}: its rule reads {missing}, which are neither measured nor in context")

    def values(self) -> dict[str, Any]:
        return {**self.context, **{m.key: m.value for m in self.measured}}

    @property
    def verdict(self) -> str:
        return DESCRIPTIVE if self.rule is None else self.rule.verdict(self.values())

    @property
    def rule_text(self) -> str:
        if self.rule is None:
            return "descriptive: no paper states this as a testable claim, so no verdict is given"
        return self.rule.text(self.values())

    def to_dict(self) -> dict[str, Any]:
        checks = [] if self.rule is None else [{"name": c.name, "passed": c.passed(self.values())}
                                               for c in self.rule.checks]
        return clean_json({"id": self.id, "quote": self.quote, "quote_kind": self.quote_kind, "source": self.source,
                           "rule": self.rule_text, "verdict": self.verdict,
                           "measured": [vars(m) for m in self.measured], "note": self.note,
                           "rule_spec": None if self.rule is None else self.rule.to_dict(),
                           "context": self.context, "checks": checks})

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Claim":
        if "rule_spec" not in d or "quote_kind" not in d:
            raise InputError(f"claim {d.get('id')!r} has no rule_spec or quote_kind: it was saved by an older "
                             f"deepspan; re-run that experiment with --force")
        spec = d["rule_spec"]
        return cls(d["id"], d["quote"], d["source"], None if spec is None else Rule.from_dict(spec),
                   d.get("measured", []), d.get("note", ""), d.get("context") or {}, d["quote_kind"])


def combine_verdicts(verdicts: list[str]) -> str:
    """Over the judged (non-descriptive) verdicts: ``reproduced`` if all are, ``not reproduced`` if all
    are, else ``partly``; ``descriptive`` when every claim is descriptive."""
    if not verdicts:
        raise InputError("an experiment needs at least one claim")
    verdicts = [v for v in verdicts if v != DESCRIPTIVE]
    if not verdicts:
        return DESCRIPTIVE
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
    the config fingerprint, dataset, probe hash, versions and timing; ``figures`` names the module
    whose ``draw(result, FigureContext)`` draws the experiment's figures (set by the registry).
    """

    name: str
    title: str
    paper: str
    summary: str
    claims: list[Claim]
    tables: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    arrays: dict[str, str] = field(default_factory=dict)
    provenance: dict[str, Any] = field(default_factory=dict)
    figures: str | None = None
    protocol: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.claims = [c if isinstance(c, Claim) else Claim.from_dict(c) for c in self.claims]
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

    def claim(self, cid: str) -> Claim:
        for c in self.claims:
            if c.id == cid:
                return c
        raise InputError(f"experiment {self.name} has no claim {cid!r}; it has {[c.id for c in self.claims]}")

    def to_dict(self) -> dict[str, Any]:
        return clean_json({"name": self.name, "title": self.title, "paper": self.paper, "summary": self.summary,
                           "claims": [c.to_dict() for c in self.claims], "tables": self.tables,
                           "arrays": self.arrays, "provenance": self.provenance, "figures": self.figures,
                           "protocol": self.protocol, "format": FORMAT, "verdict": self.verdict})

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ExperimentResult:
        if not isinstance(d, dict) or d.get("format") != FORMAT:
            got = d.get("format") if isinstance(d, dict) else type(d).__name__
            raise InputError(f"not a deepspan experiment result (format {got!r}, expected {FORMAT!r})")
        keep = {k: d[k] for k in ("name", "title", "paper", "summary", "tables", "arrays", "provenance", "figures",
                          "protocol")
                if k in d}
        return cls(claims=[Claim.from_dict(c) for c in d.get("claims", [])], **keep)


def result_path(results_dir: str | Path, name: str) -> Path:
    return Path(results_dir) / f"{name}.json"


def save_result(result: ExperimentResult, results_dir: str | Path) -> Path:
    """Write ``<name>.json`` and ``<name>__<table>.csv`` atomically (CSV first, JSON last: the JSON marks done)."""
    results_dir = Path(results_dir)
    d = result.to_dict()
    for table, rows in d["tables"].items():
        atomic_write_csv(results_dir / f"{result.name}__{table}.csv", rows)
    return atomic_write_json(result_path(results_dir, result.name), d)


def load_result(results_dir: str | Path, name: str) -> ExperimentResult:
    """The typed result ``results_dir/<name>.json``; a clear error when missing, damaged or foreign."""
    path = result_path(results_dir, name)
    try:
        d = json.loads(path.read_text())
    except FileNotFoundError:
        raise InputError(f"no result {path}; run `deepspan reproduce --only {name}` first") from None
    except json.JSONDecodeError as exc:
        raise InputError(f"{path} is not valid JSON ({exc}); delete it and re-run that experiment") from exc
    try:
        return ExperimentResult.from_dict(d)
    except (KeyError, TypeError) as exc:
        raise InputError(f"{path} is not a readable deepspan experiment result ({type(exc).__name__}: {exc}); "
                         f"delete it and re-run `deepspan reproduce --only {name}`") from exc
