"""One implementation per measure: the public functions are prepare + pair of the MEASURES entries.

* For every entry of ``MEASURES``, on several inputs (widths 3-12, N 40-80, one with dead, constant
  and nearly duplicated columns), the public function equals ``spec.pair(spec.prepare(X), spec.prepare(Y))``
  to 1e-12, with the default parameters and with non-default ones passed through ``with_params``
  (and the non-default parameters do change the value somewhere, so they are not ignored).
* ``compare_many`` calls ``prepare`` once per model, layer and measure, and ``pair`` once per row.
* ``with_params``: unknown names and bad values fail at once; the registry is not changed.
* Shared same-samples check: every public function and every pair step refuses different sample counts.
* No module of ``deepspan.measures`` imports another module's private (underscore) names (an ``ast`` scan).
* Names: ``deepspan.measures.cka`` / ``.cca`` are the functions; ``linear_cka_from_stats`` replaces
  ``streaming_linear_cka``.
"""

from __future__ import annotations

import ast
import dataclasses
import importlib
from pathlib import Path

import numpy as np
import pytest

import deepspan
from deepspan import CrossGramAccumulator, InputError, SampleMismatchError
from deepspan.features.featureset import FeatureSet, hash_sample_ids
from deepspan.linalg.angles import angle
from deepspan.measures import alignment, canonical, shape
from deepspan.measures.compare import MEASURES, MeasureSpec, compare, compare_many
from deepspan.measures.match import max_match, max_match_active_similarity, max_match_similarity
from deepspan.measures.pvector import mean_principal_angle, pvector, pvector_angle

pytestmark = pytest.mark.filterwarnings("ignore::deepspan.errors.DeepspanWarning")

MEASURES_DIR = Path(deepspan.__file__).parent / "measures"


# ---------------------------------------------------------------------------------------------- data
def _case(seed: int, n: int, p1: int, p2: int, special: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """X (n x p1) with offsets and unequal scales; Y = X R + noise (n x p2). With ``special``: X has a dead
    (all-zero) column, a constant column and a nearly duplicated column; Y a dead column."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, p1)) * 10.0 ** rng.uniform(-0.5, 0.5, p1) + rng.uniform(0.0, 3.0, p1)
    Y = X @ rng.standard_normal((p1, p2)) + 0.7 * rng.standard_normal((n, p2)) + rng.uniform(-2.0, 2.0, p2)
    if special:
        X[:, 0] = 0.0
        X[:, 1] = 0.7
        X[:, 2] = X[:, 3] + 1e-5 * rng.standard_normal(n)
        Y[:, -1] = 0.0
    return X, Y


CASES = {
    "n40_5x7": _case(0, 40, 5, 7),
    "n63_12x3": _case(1, 63, 12, 3),
    "n80_8x6_dead_constant_duplicate": _case(2, 80, 8, 6, special=True),
    "n55_6x6": _case(3, 55, 6, 6),
    "n47_3x9": _case(4, 47, 3, 9),
}


def _public(name: str):
    """The public function of each measure, called with the measure's parameters as keywords."""
    return {
        "linear_cka": lambda X, Y: alignment.linear_cka(X, Y),
        "debiased_cka": lambda X, Y: alignment.debiased_linear_cka(X, Y),
        "rbf_cka": lambda X, Y, **kw: alignment.rbf_cka(X, Y, **kw),
        "cca": lambda X, Y, **kw: canonical.cca(X, Y, **kw),
        "cca_mean_sq": lambda X, Y, **kw: canonical.cca_mean_sq(X, Y, **kw),
        "svcca": lambda X, Y, **kw: canonical.svcca(X, Y, **kw),
        "pwcca": lambda X, Y, **kw: canonical.pwcca(X, Y, **kw),
        "pwcca_centered": lambda X, Y, **kw: canonical.pwcca_centered(X, Y, **kw),
        "procrustes": lambda X, Y: shape.procrustes(X, Y),
        "shape_angle": lambda X, Y: shape.shape_angle(X, Y),
        "pvector_angle": lambda X, Y, **kw: pvector_angle(X, Y, **kw),
        "principal_angle": lambda X, Y, **kw: mean_principal_angle(X, Y, **kw),
        "max_match": lambda X, Y, **kw: max_match_similarity(X, Y, **kw),
        "max_match_active": lambda X, Y, **kw: max_match_active_similarity(X, Y, **kw),
    }[name]


#: non-default parameters per measure, and whether they must change the value on some case
NON_DEFAULT = {
    "linear_cka": [],
    "debiased_cka": [],
    "rbf_cka": [({"sigma_fraction": 0.8}, True), ({"sigma": 2.5, "sigma_fraction": None}, True)],
    "cca": [({"center": False}, True), ({"rank_tol": 1e-3}, True)],
    "cca_mean_sq": [({"center": False}, True), ({"rank_tol": 1e-3, "center": False}, True)],
    "svcca": [({"variance": 0.8}, True), ({"dims": 2}, True), ({"dims": 1, "variance": None}, True)],
    "pwcca": [({"rank_tol": 1e-3}, True)],
    "pwcca_centered": [({"rank_tol": 1e-3}, True)],
    "procrustes": [],
    "shape_angle": [],
    "pvector_angle": [({"center": True}, True)],
    "principal_angle": [({"k": 2}, True), ({"k": 3, "center": True}, True), ({"method": "exact"}, False)],
    "max_match": [({"eps": 0.6}, True), ({"eps": 0.1, "atol": 1e-3}, True)],
    "max_match_active": [({"eps": 0.6}, True), ({"eps": 0.1, "atol": 1e-3}, True)],
}


def _close(a: float, b: float) -> bool:
    return abs(a - b) <= 1e-12 * max(1.0, abs(a), abs(b))


def test_every_measure_is_covered():
    assert set(NON_DEFAULT) == set(MEASURES)
    for name, spec in MEASURES.items():
        assert spec.steps is not None, name
        for params, _ in NON_DEFAULT[name]:
            assert set(params) <= set(spec.params), (name, params)


# --------------------------------------------------------------------------- public == prepare + pair
@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("name", sorted(MEASURES))
def test_public_function_equals_prepare_and_pair(name, case):
    X, Y = CASES[case]
    spec = MEASURES[name]
    public = _public(name)
    for A, B in ((X, Y), (Y, X), (X, X)):
        via_steps = spec.pair(spec.prepare(A), spec.prepare(B))
        assert _close(public(A, B, **dict(spec.params)), via_steps), (name, case)
        assert _close(spec(A, B), via_steps) and _close(compare(A, B, name)[name], via_steps), (name, case)
    if name not in ("rbf_cka",):  # rbf_cka's public function has no default bandwidth (give one explicitly)
        assert _close(public(X, Y), spec.pair(spec.prepare(X), spec.prepare(Y))), (name, case)


@pytest.mark.parametrize("name", [n for n in sorted(MEASURES) if NON_DEFAULT[n]])
def test_non_default_parameters_flow_through(name):
    spec = MEASURES[name]
    public = _public(name)
    for params, changes in NON_DEFAULT[name]:
        custom = spec.with_params(**params)
        assert dict(custom.params) == {**spec.params, **params}
        diffs = []
        for case, (X, Y) in CASES.items():
            via_steps = custom.pair(custom.prepare(X), custom.prepare(Y))
            assert _close(public(X, Y, **params), via_steps), (name, params, case)
            assert _close(custom(X, Y), via_steps) and _close(compare(X, Y, custom)[name], via_steps)
            diffs.append(abs(via_steps - spec(X, Y)))
        if changes:
            assert max(diffs) > 1e-6, (name, params, diffs)
        else:
            assert max(diffs) < 1e-6, (name, params, diffs)


def test_max_match_keeps_the_match_object():
    X, Y = CASES["n80_8x6_dead_constant_duplicate"]
    for eps in (0.25, 0.6):
        m = max_match(X, Y, eps)
        assert m.eps == eps and (m.n_a, m.n_b) == X.shape[1:] + Y.shape[1:]
        assert m.dead_a == 1 and m.dead_b == 1
        assert max_match_similarity(X, Y, eps) == m.similarity
        assert MEASURES["max_match"].with_params(eps=eps)(X, Y) == m.similarity


def test_pvector_angle_is_the_angle_between_pvectors():
    X, Y = CASES["n40_5x7"]
    for center in (False, True):
        ref = angle(pvector(X, center=center), pvector(Y, center=center))
        assert pvector_angle(X, Y, center=center) == pytest.approx(ref, abs=1e-10)
    Q = np.linalg.qr(np.random.default_rng(0).standard_normal((5, 5)))[0]
    assert pvector_angle(X, 3.0 * X @ Q) == pytest.approx(0.0, abs=1e-5)
    assert deepspan.pvector_angle is pvector_angle


def test_mean_principal_angle_caps_k_per_side():
    X, Y = CASES["n47_3x9"]  # X has 3 columns: k = 5 becomes 3 on X's side and the angles use 3 vectors of each
    UX = np.linalg.svd(X, full_matrices=False)[0][:, :3]
    UY = np.linalg.svd(Y, full_matrices=False)[0][:, :3]
    cos = np.clip(np.linalg.svd(UX.T @ UY, compute_uv=False), 0.0, 1.0)
    assert mean_principal_angle(X, Y) == pytest.approx(float(np.degrees(np.arccos(cos)).mean()), abs=1e-5)
    np.testing.assert_allclose(deepspan.principal_angles(X, Y, 3), np.degrees(np.arccos(cos)), atol=1e-5)
    with pytest.raises(InputError, match="exceeds"):
        deepspan.principal_angles(X, Y, 4)  # the strict form refuses k > min(N, d)


# --------------------------------------------------------------------------- compare_many prepares once
def _featureset(layers: dict, ids) -> FeatureSet:
    ids = np.asarray(ids)
    return FeatureSet(dict(layers), ids, hash_sample_ids(ids), {k: "flatten" for k in layers})


def test_compare_many_prepares_once_per_model_layer_and_measure(monkeypatch):
    rng = np.random.default_rng(11)
    n, models, layers = 45, ("m0", "m1", "m2"), ("l1", "l2")
    base = {"l1": rng.standard_normal((n, 4)), "l2": rng.standard_normal((n, 5))}
    sets = {m: _featureset({l: base[l] @ rng.standard_normal((base[l].shape[1], 4 + i + j))
                            + 0.4 * rng.standard_normal((n, 4 + i + j)) + 1.0
                            for j, l in enumerate(layers)}, np.arange(n))
            for i, m in enumerate(models)}
    prepared: dict[str, list[np.ndarray]] = {}
    paired: dict[str, int] = {}

    def counting(name, spec):
        def prepare(X):
            prepared.setdefault(name, []).append(np.array(X, copy=True))
            return spec.prepare(X)

        def pair(a, b):
            paired[name] = paired.get(name, 0) + 1
            return spec.pair(a, b)

        return dataclasses.replace(spec, prepare=prepare, pair=pair)

    names = sorted(MEASURES)
    for m in names:
        monkeypatch.setitem(MEASURES, m, counting(m, MEASURES[m]))
    rows = compare_many(sets, names)
    mats = [np.asarray(sets[m][l], dtype=np.float64) for m in models for l in layers]
    for m in names:
        assert len(prepared[m]) == len(mats) == 6, m
        for M in mats:
            assert sum(1 for c in prepared[m] if c.shape == M.shape and np.array_equal(c, M)) == 1, m
        assert paired[m] == sum(1 for r in rows if r["measure"] == m) == 2 * (3 if MEASURES[m].symmetric else 6), m


def test_compare_many_accepts_specs_with_parameters():
    mats = {f"m{i}": _case(20 + i, 50, 4 + i, 3)[0] for i in range(3)}
    custom = MEASURES["svcca"].with_params(dims=2)
    rows = compare_many(mats, [custom, "svcca"])
    assert [r["measure"] for r in rows] == ["svcca"] * 6
    got = [r["value"] for r in rows]
    want = [canonical.svcca(mats[a], mats[b], dims=2) for a, b in (("m0", "m1"), ("m0", "m2"), ("m1", "m2"))]
    want += [canonical.svcca(mats[a], mats[b]) for a, b in (("m0", "m1"), ("m0", "m2"), ("m1", "m2"))]
    assert got == pytest.approx(want, abs=1e-12)


# --------------------------------------------------------------------------- with_params
def test_with_params_validates_and_leaves_the_registry_alone():
    before = {n: dict(s.params) for n, s in MEASURES.items()}
    with pytest.raises(InputError, match=r"no parameter\(s\) \['dim'\].*dims, variance"):
        MEASURES["svcca"].with_params(dim=3)
    with pytest.raises(InputError, match="none"):
        MEASURES["linear_cka"].with_params(center=False)
    with pytest.raises(InputError, match="dims"):
        MEASURES["svcca"].with_params(dims=0)
    with pytest.raises(InputError, match="sigma_fraction=None"):
        MEASURES["rbf_cka"].with_params(sigma=1.0)
    with pytest.raises(InputError, match="eps"):
        MEASURES["max_match"].with_params(eps=1.5)
    with pytest.raises(InputError, match="k must be a positive integer"):
        MEASURES["principal_angle"].with_params(k=0)
    with pytest.raises(InputError, match="rank_tol"):
        MEASURES["pwcca"].with_params(rank_tol=-1.0)
    assert MEASURES["cca"].with_params() is MEASURES["cca"]
    assert {n: dict(s.params) for n, s in MEASURES.items()} == before
    with pytest.raises(TypeError):
        MEASURES["cca"].params["center"] = False  # read-only


# --------------------------------------------------------------------------- the shared same-samples check
@pytest.mark.parametrize("name", sorted(MEASURES))
def test_sample_mismatch_in_public_function_and_in_pair(name):
    X, Y = CASES["n40_5x7"]
    with pytest.raises(SampleMismatchError, match="has 40 samples but .* has 39.*same samples"):
        _public(name)(X, Y[:-1], **dict(MEASURES[name].params))
    spec = MEASURES[name]
    with pytest.raises(SampleMismatchError, match="has 40 samples but .* has 39"):
        spec.pair(spec.prepare(X), spec.prepare(Y[:-1]))


def test_compare_many_sample_hash_mismatch_uses_the_shared_check():
    X, Y = CASES["n40_5x7"]
    a = _featureset({"l": X}, np.arange(40))
    b = _featureset({"l": Y}, np.arange(40)[::-1])
    c = _featureset({"l": Y[:39]}, np.arange(39))
    with pytest.raises(SampleMismatchError, match="feature set 'a' and feature set 'b' were computed on different"):
        compare_many({"a": a, "b": b}, "linear_cka")
    with pytest.raises(SampleMismatchError, match="feature set 'a' has 40 samples but feature set 'c' has 39"):
        compare_many({"a": a, "c": c}, "linear_cka")


# --------------------------------------------------------------------------- no private imports across modules
def _private_imports(path: Path) -> list[str]:
    """Underscore (non-dunder) names a module takes from other deepspan modules: ``from deepspan.x import _y``,
    ``import deepspan._x`` / ``from deepspan._x import ...`` (``deepspan._version`` is the package's version
    file), and ``alias._y`` where ``alias`` was imported from deepspan."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found, aliases = [], set()

    def private(name: str) -> bool:
        return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))

    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "deepspan":
            parts = node.module.split(".")
            if any(private(p) for p in parts) and node.module != "deepspan._version":
                found.append(f"from {node.module} import ...")
            for a in node.names:
                if private(a.name):
                    found.append(f"from {node.module} import {a.name}")
                aliases.add(a.asname or a.name)
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.name.split(".")[0] == "deepspan":
                    if any(private(p) for p in a.name.split(".")):
                        found.append(f"import {a.name}")
                    aliases.add(a.asname or a.name.split(".")[0])
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and private(node.attr):
            base = node.value
            while isinstance(base, ast.Attribute):
                base = base.value
            if isinstance(base, ast.Name) and base.id in aliases:
                found.append(f"{ast.unparse(node)}")
    return found


def test_private_import_scan_finds_what_it_should(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("from deepspan.measures.alignment import _ratio\nfrom deepspan.measures import canonical as _c\n"
                   "import deepspan.linalg.svd\nx = _c._basis\ny = deepspan.linalg.svd._exact\n"
                   "from deepspan._version import __version__\nfrom deepspan.linalg._hidden import f\n")
    assert _private_imports(bad) == ["from deepspan.measures.alignment import _ratio",
                                     "from deepspan.linalg._hidden import ...", "_c._basis",
                                     "deepspan.linalg.svd._exact"]


def test_no_measures_module_imports_private_names_of_another():
    files = sorted(MEASURES_DIR.glob("*.py"))
    assert {p.name for p in files} >= {"alignment.py", "canonical.py", "shape.py", "compare.py", "match.py"}
    offences = {p.name: _private_imports(p) for p in files}
    assert {k: v for k, v in offences.items() if v} == {}


# --------------------------------------------------------------------------- names
def test_module_renames_and_function_names():
    import deepspan.measures as measures

    assert measures.cka is deepspan.cka is alignment.cka and callable(measures.cka)
    assert measures.cca is deepspan.cca is canonical.cca and callable(measures.cca)
    for old in ("deepspan.measures.cka", "deepspan.measures.cca"):
        with pytest.raises(ModuleNotFoundError):
            importlib.import_module(old)
    assert not hasattr(alignment, "streaming_linear_cka") and not hasattr(measures, "streaming_linear_cka")
    X, Y = CASES["n55_6x6"]
    acc = CrossGramAccumulator().update(X[:30], Y[:30]).update(X[30:], Y[30:])
    assert measures.linear_cka_from_stats(acc.finalize()) == pytest.approx(alignment.linear_cka(X, Y), abs=1e-10)
    with pytest.raises(InputError, match="CrossGramStats"):
        measures.linear_cka_from_stats(acc)
    assert isinstance(MEASURES["linear_cka"], MeasureSpec)
