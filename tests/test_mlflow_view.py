"""The MLflow comparison view without a browser: the state the UI reads, the tag that holds it, its URL.

`write_smoke_benchmark` (tests/support.py) builds the synthetic benchmark, as the browser test opens it too."""
import json

import pytest

from harness.reporting import mlflow_view as mv

from .support import VIEW_KEYS as KEYS
from .support import VIEW_METRICS as ATTACK_METRICS
from .support import write_smoke_benchmark


class FakeExperiment:
    def __init__(self, tags):
        self.tags = tags


class FakeClient:
    """The two MlflowClient calls write_view makes, counting the writes."""

    def __init__(self):
        self.tags, self.writes = {}, []

    def get_experiment(self, experiment_id):
        return FakeExperiment(dict(self.tags))

    def set_experiment_tag(self, experiment_id, key, value):
        self.writes.append(key)
        self.tags[key] = value


def test_key_metrics_from_declarations():
    assert mv.key_metrics_from(ATTACK_METRICS) == KEYS
    assert mv.key_metrics_from(None) == [("forget_val_ratio", "1"), ("acc_validation", "higher"),
                                         ("pct_retrain_time", "lower")]


def test_state_has_columns_grouping_and_a_chart_per_key_metric():
    state = mv.view_state(KEYS, run_ids=["r1", "r2", "r1"])
    columns = [f"metrics.`{m}`" for m, _ in KEYS]
    assert state["selectedColumns"] == columns
    assert set(state["columnWidths"]) == set(columns) and state["columnOrder"] == columns
    assert state["groupBy"] == {"aggregateFunction": "average",
                                "groupByKeys": [{"mode": "tag", "groupByData": "method"}]}
    assert state["searchFilter"] == "attributes.run_id IN ('r1', 'r2')"
    assert state["runsHiddenMode"] == "SHOW_ALL"
    charts = state["compareRunCharts"]
    assert [c["metricKey"] for c in charts] == [m for m, _ in KEYS]
    assert {c["type"] for c in charts} == {"BAR"}
    assert {c["metricSectionId"] for c in charts} == {s["uuid"] for s in state["compareRunSections"]}
    assert charts[1]["displayName"] == "mia/auc (ideal 0.5)"


def test_state_variants():
    assert mv.view_state(KEYS)["searchFilter"] == "tags.run_kind = 'child' and attributes.status = 'FINISHED'"
    assert mv.view_state(KEYS, parent_run_id="p")["searchFilter"] == "tags.mlflow.parentRunId = 'p'"
    with pytest.raises(ValueError, match="run ids"):
        mv.view_state(KEYS, run_ids=["x') or ('1"])
    with pytest.raises(ValueError, match="group"):
        mv.view_state(KEYS, group_by_tag=())
    budgets = mv.view_state(KEYS, group_by_tag=("method", "epochs"), aggregate="max")
    assert [k["groupByData"] for k in budgets["groupBy"]["groupByKeys"]] == ["method", "epochs"]
    assert budgets["groupBy"]["aggregateFunction"] == "max"
    with pytest.raises(ValueError):
        mv.view_state([])
    with pytest.raises(ValueError):
        mv.view_state(KEYS, aggregate="median")


def test_state_only_uses_fields_the_ui_keeps():
    """MLflow 3.17 drops unknown fields and those a shared view may not set (runsExpanded...)."""
    facets = {"searchFilter", "orderByKey", "orderByAsc", "startTime", "lifecycleFilter", "modelVersionFilter",
              "datasetsFilter"}
    ui = {"selectedColumns", "columnOrder", "columnWidths", "runsHiddenMode", "compareRunCharts", "compareRunSections",
          "viewMaximized", "runListHidden", "isAccordionReordered", "groupBy", "groupsExpanded",
          "useGroupedValuesInCharts", "hideEmptyCharts", "globalLineChartConfig", "chartsSearchFilter"}
    assert set(mv.view_state(KEYS)) <= facets | ui


def test_encode_decode_both_forms():
    state = mv.view_state(KEYS)
    named = json.loads(mv.encode(state, "Compare methods", created_at=5))
    assert named["name"] == "Compare methods" and named["createdAt"] == 5 and isinstance(named["state"], str)
    assert mv.decode(mv.encode(state))[0] == state
    assert mv.decode(mv.encode(state, None)) == (state, {})
    import base64
    import zlib

    packed = "deflate;" + base64.b64encode(zlib.compress(json.dumps(state).encode())).decode()
    assert mv.decode(json.dumps({"name": "x", "createdAt": 1, "state": packed}))[0] == state


def test_ui_version_gate():
    assert mv.ui_lists_saved_views("3.17.2") and mv.ui_lists_saved_views("3.15.0")
    assert not mv.ui_lists_saved_views("3.14.0") and not mv.ui_lists_saved_views("2.22.1")


def test_write_view_is_idempotent_and_describes_ideals():
    client = FakeClient()
    assert mv.write_view(client, "7", KEYS, parent_run_id="p1") == "benchmark"
    tag = "mlflow.sharedViewState.benchmark"
    assert set(client.writes) == {tag, "mlflow.note.content"}
    stored = client.tags[tag]
    mv.write_view(client, "7", KEYS, parent_run_id="p1")
    assert len(client.writes) == 2, "an unchanged view is not rewritten"
    assert client.tags[tag] == stored
    note = client.tags["mlflow.note.content"]
    assert note.splitlines()[0].startswith("**Ideal values:**")
    for metric, ideal in KEYS:
        assert f"`{metric}` {ideal}" in note.splitlines()[0]
    mv.write_view(client, "7", KEYS, parent_run_id="p2")  # a new benchmark run: the view follows it
    assert mv.read_view(client, "7")["searchFilter"] == "tags.mlflow.parentRunId = 'p2'"
    if mv.ui_lists_saved_views():
        assert json.loads(client.tags[tag])["createdAt"] == json.loads(stored)["createdAt"]


def test_write_view_keeps_a_description_someone_wrote():
    client = FakeClient()
    client.tags["mlflow.note.content"] = "my own notes"
    mv.write_view(client, "7", KEYS)
    assert client.tags["mlflow.note.content"] == "my own notes"
    client.tags["mlflow.sharedViewState.benchmark"] = "not json"
    mv.write_view(client, "7", KEYS, describe=False)
    assert mv.read_view(client, "7") == mv.view_state(KEYS)


def test_bad_keys_and_url():
    with pytest.raises(ValueError):
        mv.write_view(FakeClient(), "7", KEYS, key="has space")
    assert (mv.runs_page_url("http://127.0.0.1:5000/", "12") ==
            "http://127.0.0.1:5000/#/experiments/12/runs?viewStateShareKey=benchmark")
    assert mv.runs_page_url("http://h:1", "3", "k", mode="CHART").endswith(
        "runs?viewStateShareKey=k&compareRunsMode=CHART")


def test_write_benchmark_view_skips_trackers_without_a_store():
    from harness.tracking import MemoryTracker

    assert mv.write_benchmark_view(MemoryTracker(), ATTACK_METRICS) is None


def test_view_in_a_real_store(tmp_path, sqlite_store):
    """Through MLflow: the tag fits its limits and reads back, its filters find the benchmark's rows (not
    the KILLED one), and `unlearn ui` finds the experiment."""
    tracker, _, finished = write_smoke_benchmark(sqlite_store(tmp_path / "mlflow.db"), epochs=1)
    client, experiment_id = tracker.client, tracker.experiment_id
    for run_ids in (None, finished, finished):
        assert mv.write_benchmark_view(tracker, ATTACK_METRICS, run_ids=run_ids) == "benchmark"
        state = mv.read_view(client, experiment_id)
        assert [c["metricKey"] for c in state["compareRunCharts"]] == [m for m, _ in KEYS]
        runs = client.search_runs([experiment_id], filter_string=state["searchFilter"])
        assert sorted(r.info.run_id for r in runs) == sorted(finished)
        assert all(m in r.data.metrics and "method" in r.data.tags for r in runs for m, _ in KEYS)
    urls = mv.view_urls(client, "http://127.0.0.1:5000")
    assert urls == [("smoke-benchmark", f"http://127.0.0.1:5000/#/experiments/{experiment_id}/runs"
                                        "?viewStateShareKey=benchmark")]


def test_a_view_too_large_for_a_tag_is_compressed():
    many = {f"attack{i}": {f"metric_with_a_long_name_{j}": {"target": 0.5} for j in range(6)} for i in range(12)}
    state = mv.view_state(mv.key_metrics_from(many))
    for name in ("Compare methods", None):
        value = mv.encode(state, name)
        assert len(value) <= mv.MAX_TAG_CHARS
        assert "deflate;" in value
        assert mv.decode(value)[0] == state
