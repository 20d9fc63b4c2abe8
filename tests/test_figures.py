"""harness.reporting.figures on synthetic result frames: panels, method order and colours, skipping, rendering."""
from __future__ import annotations

import io
import math

import pytest
from matplotlib.colors import to_hex
from matplotlib.figure import Figure

from harness.reporting import analysis, figures

from .support import FRAME_METRICS as ATTACK_METRICS
from .support import synthetic_curves, synthetic_frame

ORDER = ["original", "retrain", "finetune", "rotate", "pruning"]


@pytest.fixture(scope="module")
def frame():
    return synthetic_frame()  # 2 scenarios x 2 budgets x 3 methods x 5 seeds + reference rows


@pytest.fixture(scope="module")
def one_seed():
    return synthetic_frame(scenarios=("random",), budgets=(), seeds=range(1))


def ticks(ax) -> list[str]:
    return [t.get_text() for t in ax.get_xticklabels()]


def png(fig: Figure) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=40)
    return buffer.getvalue()


@pytest.mark.parametrize("draw, shown", [(figures.accuracy_boxes, ORDER), (figures.ratio_boxes, ORDER),
                                         (figures.runtime_boxes, ORDER[2:])])
def test_scenario_by_budget_grids(frame, draw, shown):
    fig = draw(frame)
    assert isinstance(fig, Figure) and len(fig.axes) == 4
    assert [ax.get_title() for ax in fig.axes] == ["random, 5 epochs", "random, 9 epochs", "targeted-red, 5 epochs",
                                                   "targeted-red, 9 epochs"]
    assert all(ticks(ax) == shown for ax in fig.axes)


def test_boxes_use_the_method_colours(frame):
    colors = analysis.method_colors(analysis.method_order(frame))
    ax = figures.accuracy_boxes(frame).axes[0]
    edges = {to_hex(p.get_edgecolor()) for p in ax.patches}
    assert edges == set(colors.values())


def test_ratio_boxes_draw_the_ideal_and_retrain_lines(frame):
    labels = [t.get_text() for t in figures.ratio_boxes(frame).legends[0].get_texts()]
    assert labels == ["ideal (1)", "retrain median"]


def test_mia_boxes_put_scenarios_side_by_side_per_budget(frame):
    fig = figures.mia_boxes(frame)
    assert len(fig.axes) == 2 and [ax.get_title() for ax in fig.axes] == ["5 epochs", "9 epochs"]
    assert all(ticks(ax) == ORDER for ax in fig.axes)
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["random", "targeted-red", "ideal (0.5)"]
    single = figures.mia_boxes(frame[frame["scenario"] == "random"])
    assert [t.get_text() for t in single.legends[0].get_texts()] == ["ideal (0.5)"]


def test_epoch_curves_one_column_per_method(frame):
    fig = figures.epoch_curves(synthetic_curves(frame))
    assert len(fig.axes) == 4 * 3
    assert [ax.get_title() for ax in fig.axes[:3]] == ORDER[2:]
    assert len(fig.axes[0].lines) == 3


def test_failed_rows_and_nan_values_are_left_out(frame):
    broken = frame.copy()
    broken.loc[broken["method"] == "rotate", "status"] = "FAILED"
    broken.loc[broken["method"] == "pruning", "acc_retain"] = math.nan
    fig = figures.accuracy_boxes(broken)
    assert ticks(fig.axes[0]) == ["original", "retrain", "finetune", "pruning"]
    assert png(fig).startswith(b"\x89PNG")


def test_missing_panels_and_nothing_finished(frame):
    partial = frame[~((frame["scenario"] == "targeted-red") & (frame["epochs"] == 9))]
    fig = figures.ratio_boxes(partial)
    assert len(fig.axes) == 4 and fig.axes[3].texts[0].get_text() == "no finished runs"
    assert len(figures.accuracy_boxes(frame.assign(status="FAILED")).axes) == 1


def test_all_figures_names_and_rendering(frame):
    found = figures.all_figures(frame, synthetic_curves(frame), ATTACK_METRICS)
    assert list(found) == ["fig12_accuracy.png", "fig12_ratio.png", "fig13_runtime.png", "fig14_mia.png",
                           "fig14_mia_signed.png", "epoch_curves.png"]
    assert all(png(fig).startswith(b"\x89PNG") for fig in found.values())


def test_all_figures_skips_absent_metrics(frame):
    bare = frame.drop(columns=[c for c in frame if c.startswith("mia/")] + ["pct_retrain_time"])
    assert list(figures.all_figures(bare, None, {})) == ["fig12_accuracy.png", "fig12_ratio.png"]
    no_curves = synthetic_curves(frame).iloc[:0]
    assert list(figures.all_figures(bare, no_curves, ATTACK_METRICS)) == ["fig12_accuracy.png", "fig12_ratio.png"]


def test_one_seed_one_scenario_without_budgets(one_seed):
    found = figures.all_figures(one_seed, synthetic_curves(one_seed), ATTACK_METRICS)
    assert len(found) == 6
    for name, fig in found.items():
        assert png(fig).startswith(b"\x89PNG")
        if name != "epoch_curves.png":
            assert len(fig.axes) == 1 and "method defaults" in fig.axes[0].get_title()
