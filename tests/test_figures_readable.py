"""Figures are readable at page width (7.5 inches): :func:`deepspan.report.check_readable`.

The rule (``deepspan.report._base``): every visible text has an effective size of at least 9 pt, where
effective = fontsize x min(1, 7.5 / width of the saved image in inches), and no two drawn tick labels
of one axis overlap. Checked here on hand-made figures (the rule itself), on hand-made results of the
figure modules whose inputs are cheap to make up (generalisation, layer-wise with many layers,
convergence with many epochs), and on every figure of the shared tiny ``deepspan reproduce`` run,
one test per figure module, so each module's owner sees their own result.
"""

from __future__ import annotations

import io
import json
import logging
import pkgutil

import numpy as np
import pytest

import deepspan.report as report_pkg
from deepspan.report import check_readable
from deepspan.report._base import (FIG_WIDTH, MIN_POINTS, PAGE_WIDTH_IN, FigureContext, epoch_axis, epoch_ticks,
                                   plt, readable_style, saved_width)

FIGURE_MODULES = sorted(m.name for m in pkgutil.iter_modules(report_pkg.__path__) if m.name.startswith("fig_"))


class RecordingContext(FigureContext):
    """A FigureContext that checks each figure before saving it (``checked``: stem -> problems)."""

    def __init__(self, out):
        super().__init__(out)
        self.checked: dict[str, list[str]] = {}

    def save(self, fig, stem, caption, dpi=110):
        self.checked[stem] = check_readable(fig)
        return super().save(fig, stem, caption, dpi)


# ----------------------------------------------------------------------------- the rule on hand-made figures
def test_constants():
    assert PAGE_WIDTH_IN == 7.5 and MIN_POINTS == 9.0 and FIG_WIDTH + 0.2 <= PAGE_WIDTH_IN


def test_clean_figure_has_no_problems():
    with readable_style():
        fig, ax = plt.subplots(figsize=(FIG_WIDTH, 3), layout="constrained")
        ax.plot([0, 1, 2], [0, 1, 4], label="line")
        ax.set_title("title")
        ax.set_xlabel("x")
        ax.legend()
        assert check_readable(fig) == []
    plt.close(fig)


def test_small_text_is_flagged_with_the_effective_size():
    fig, ax = plt.subplots(figsize=(5, 3))
    ax.set_title("tiny title", fontsize=6)
    ax.plot([0, 1], [0, 1])
    problems = check_readable(fig)
    plt.close(fig)
    assert any("'tiny title'" in p and "6 pt" in p and "< 9 pt" in p for p in problems), problems
    # 10 pt tick labels are fine at 5 inches
    assert not any("'0.0'" in p for p in problems), problems


def test_wide_figure_scales_text_down():
    with readable_style():
        fig, ax = plt.subplots(figsize=(15, 3))
        ax.plot([0, 1], [0, 1])
        ax.set_xlabel("a label at 10 pt")
        width = saved_width(fig)
        problems = check_readable(fig)
    plt.close(fig)
    assert width > 11  # the tight box crops the default margins
    # 10 pt x 7.5 / ~12 in is about 6 pt
    assert any("'a label at 10 pt'" in p and "10 pt x min(1, 7.5 /" in p for p in problems), problems


def test_overlapping_tick_labels_are_flagged():
    with readable_style():
        fig, ax = plt.subplots(figsize=(4, 3), layout="constrained")
        names = [f"a long layer name {i}" for i in range(8)]
        ax.plot(range(8), range(8))
        ax.set_xticks(range(8), names)
        problems = check_readable(fig)
    plt.close(fig)
    assert any("overlap" in p and "x axis" in p for p in problems), problems


def test_hidden_axes_and_ticks_outside_the_view_are_ignored():
    with readable_style():
        fig, axes = plt.subplots(1, 3, figsize=(FIG_WIDTH, 3), layout="constrained")
        axes[1].set_title("hidden", fontsize=4)
        axes[1].set_visible(False)
        axes[2].set_xticks(range(20), ["a long tick label"] * 20, fontsize=5)
        axes[2].axis("off")  # its tick labels are not drawn
        axes[0].plot([0, 1], [0, 1])
        axes[0].set_xticks([-5, 0, 1, 5], ["x" * 30, "0", "1", "y" * 30])  # -5 and 5 lie outside the view
        axes[0].set_xlim(-0.1, 1.1)
        assert check_readable(fig) == []
    plt.close(fig)


def test_save_collects_problems_and_never_raises(tmp_path, caplog):
    fc = FigureContext(tmp_path)
    fig, ax = plt.subplots(figsize=(14, 3))
    ax.set_title("small", fontsize=5)
    with caplog.at_level(logging.WARNING, logger="deepspan.report"):
        info = fc.save(fig, "bad", "a caption")
    assert (tmp_path / info.png).is_file() and (tmp_path / info.svg).is_file()
    assert fc.problems["bad"] and any("'small'" in p for p in fc.problems["bad"])
    assert any("figure bad:" in r.getMessage() for r in caplog.records)


# ----------------------------------------------------------------------------- training-progress axes
@pytest.mark.parametrize("first,last", [(0.0417, 2), (0.01, 30), (0.002, 200), (0.25, 1), (0.001, 6), (0.01, 90)])
def test_epoch_ticks(first, last):
    ticks = epoch_ticks(first, last, width_in=2.0)
    assert ticks[0] == 0.0 and ticks == sorted(set(ticks))
    assert all(t <= last for t in ticks)
    if last >= 1:
        assert 1.0 in ticks or float(int(last)) in ticks
    assert float(int(last)) in ticks or last < 1


def test_epoch_axis_labels_and_no_overlap():
    with readable_style():
        fig, axes = plt.subplots(1, 3, figsize=(FIG_WIDTH, 2.5), layout="constrained")
        pos = [0, 0.004, 0.02, 0.1, 0.5, 1, 2, 3, 5, 10, 20, 40, 60]
        for ax in axes:
            ax.plot(pos, np.linspace(90, 0, len(pos)))
            epoch_axis(ax, pos, width_in=0.25 * FIG_WIDTH)
        fig.canvas.draw()
        labels = [t.get_text() for t in axes[0].get_xticklabels()]
        assert labels[0] == "init" and "1" in labels and "60" in labels
        assert axes[0].get_xlabel().startswith("epochs (log scale")
        assert check_readable(fig) == []
    plt.close(fig)


# ----------------------------------------------------------------------------- hand-made results
def generalisation_result(tmp_path, members: int = 24) -> dict:
    """A made-up generalisation result in the experiment's format (one row per trained member)."""
    rng = np.random.default_rng(0)
    rows = []
    for i in range(members):
        width, noise = (32, 64, 128)[i % 3], (0.0, 0.2, 0.4)[(i // 3) % 3]
        angle = float(rng.uniform(5, 40))
        rows.append({"run": f"m{i}", "roles": "width x noise", "width": width, "depth": 2, "lr": 0.05,
                     "weight_decay": 5e-4, "noise": noise, "n_train": 1000, "epoch": 10, "checkpoint": "e10",
                     "test_accuracy": float(np.clip(0.9 - angle / 100 - noise / 4 + rng.normal(0, 0.02), 0, 1)),
                     "angle": angle, "angle_centered": float(rng.uniform(30, 80))})
    stats, boots = [], {}
    for population, key in (("all", "all"), ("noise=0", "noise0"), ("all, width partialled out", "partial")):
        for centered in (False, True):
            b = np.clip(rng.normal(-0.4 if not centered else 0.1, 0.2, 500), -1, 1)
            boots[f"{key}_{'centered' if centered else 'uncentered'}"] = b
            stats.append({"population": population, "centered": centered, "statistic": "spearman", "n": members,
                          "spearman": float(np.mean(b)), "ci_low": float(np.quantile(b, 0.025)),
                          "ci_high": float(np.quantile(b, 0.975)), "ci_level": 0.95})
    (tmp_path / "results").mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    np.savez(buf, **boots)
    (tmp_path / "results" / "generalisation__bootstrap.npz").write_bytes(buf.getvalue())
    return {"name": "generalisation", "tables": {"members": rows, "statistics": stats},
            "arrays": {"bootstrap": "generalisation__bootstrap.npz"},
            "claims": [{"id": "c1", "verdict": "partly", "quote": "q", "source": "s"}]}


def layerwise_result(n_layers: int = 14, models=("resnet", "vgg")) -> dict:
    rows = []
    for model in models:
        for epoch in (0, 1, 5, 30):
            for centered in (False, True):
                for d in range(1, n_layers + 1):
                    rows.append({"model": model, "epoch": epoch, "layer": f"features.block{d}.relu", "depth": d,
                                 "is_feature": d == n_layers, "centered": centered,
                                 "angle": float(10 + d + epoch / 3 + 30 * centered)})
    return {"name": "layerwise", "tables": {"angles": rows}, "claims": []}


def convergence_result(models=("mlp", "cnn", "resnet", "vgg", "autoencoder", "simclr"), epochs: int = 60) -> dict:
    positions = [0.0, 0.002, 0.01, 0.05, 0.2, 0.5] + [float(e) for e in range(1, epochs + 1)]
    rows = []
    for m in models:
        for p in positions:
            for centered in (False, True):
                a = 80 * (1 - p / epochs)
                rows.append({"model": m, "position": p, "centered": centered, "target": "own final",
                             "split": "test", "layer_role": "feature", "angle": a})
                rows.append({"model": m, "position": p, "centered": centered, "target": "data", "split": "test",
                             "layer_role": "feature", "angle": a / 2})
                rows.append({"model": m, "position": p, "centered": centered, "target": "data", "split": "train",
                             "layer_role": "feature", "angle": a / 3})
                rows += [{"model": m, "position": p, "centered": centered, "target": f"final {o}", "split": "test",
                          "layer_role": "feature", "angle": 45.0} for o in models if o != m]
    return {"name": "convergence", "tables": {"angles": rows}, "claims": []}


def draw_checked(module: str, result: dict, out) -> dict[str, list[str]]:
    import importlib

    fc = RecordingContext(out)
    infos = importlib.import_module(f"deepspan.report.{module}").draw(result, fc)
    assert infos and set(fc.checked) == {i.stem for i in infos}
    return fc.checked


def test_generalisation_figures_readable(tmp_path):
    checked = draw_checked("fig_generalisation", generalisation_result(tmp_path), tmp_path)
    assert set(checked) == {"generalisation_scatter", "generalisation_bootstrap"}
    assert checked == {k: [] for k in checked}, checked


def test_layerwise_with_many_layers_readable(tmp_path):
    checked = draw_checked("fig_layerwise", layerwise_result(), tmp_path)
    assert checked == {k: [] for k in checked}, checked


def test_convergence_with_many_epochs_and_models_readable(tmp_path):
    checked = draw_checked("fig_convergence", convergence_result(), tmp_path)
    assert checked == {k: [] for k in checked}, checked


# ----------------------------------------------------------------------------- every figure of the tiny run
@pytest.fixture(scope="module")
def run(tmp_path_factory):
    from _tiny_run import tiny_run

    return tiny_run(tmp_path_factory)


@pytest.mark.parametrize("module", FIGURE_MODULES)
def test_every_figure_of_the_tiny_run_is_readable(run, module):
    """The report of the tiny run checked every figure it drew; per figure module, none may have a problem."""
    index = json.loads((run.out / "report.json").read_text())
    sections = [s for s in index["sections"]
                if json.loads((run.out / s["result"]).read_text()).get("figures") == f"deepspan.report.{module}"]
    if not sections:
        pytest.skip(f"no experiment of this run draws with {module}")
    for s in sections:
        assert not s["errors"], s["errors"]
        assert s["figures"], f"{s['name']}: no figures"
        assert s["readability"] == [], f"{module}: " + "\n".join(s["readability"])
