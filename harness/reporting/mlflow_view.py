"""A ready-made comparison view of a benchmark in the MLflow UI.

Opened plainly, an experiment shows one collapsed parent row, no metric columns and no charts. The UI
keeps *shared views* as experiment tags (`mlflow.sharedViewState.<key>`) and applies one when the runs
page is opened with `?viewStateShareKey=<key>`; MLflow >= 3.15 also lists them, by name, under "Views".
This module writes such a view per benchmark: the child runs grouped by method (a row per method with
the mean over seeds, the seeds below it), the key metric columns, a bar chart per key metric.

What the UI accepts (read from MLflow 3.17.2's bundle, `mlflow/server/js/build/static/js/`; the same
in 3.15-3.17, checked in their wheels):
  - the tag value is a saved-view envelope `{"name", "createdAt", "updatedAt", "state"}` (chunk
    3448.*.js, "Invalid saved-view envelope") whose `state` is the view as a JSON string (or
    "deflate;"+base64); failing that, the whole value is read as the state (chunk 3878.*.js, hook
    useSharedExperimentViewState). MLflow <= 3.14 reads only the latter, so that is what we write there;
  - from the state it keeps the search facets `searchFilter, orderByKey, orderByAsc, startTime,
    lifecycleFilter, modelVersionFilter, datasetsFilter` (chunk 3793.*.js) and the UI fields
    `EXPERIMENT_PAGE_UI_STATE_FIELDS` (main.*.js, module 1395) minus `runsExpanded, runsPinned,
    runsHidden, runsVisibilityMap, autoRefreshEnabled`: a shared view cannot expand a parent run, so
    the view groups the children by tag instead (its search filter leaves the parent out of the
    groups); fields it lacks take the UI's defaults;
  - column ids are `metrics.\\`name\\`` / `tags.\\`name\\`` (`makeCanonicalSortKey`); a grouping is
    `{"aggregateFunction": "average", "groupByKeys": [{"mode": "tag", "groupByData": "method"}]}`;
    a chart is a `RunsChartsBarCardConfig` (`{"type": "BAR", "metricKey", "metricSectionId", ...}`)
    in a section of `compareRunSections`. There is no box-plot type (BAR, LINE, SCATTER, CONTOUR,
    PARALLEL, DIFFERENCE, IMAGE), hence bar charts of the group means.
Column headers and chart titles are bare metric names (a chart's `displayName` is not shown in 3.17),
so the ideals go into the experiment's description, shown above the runs.
"""
from __future__ import annotations

import json
import logging
import re
import time
import urllib.parse
from collections.abc import Iterable, Sequence
from contextlib import contextmanager

log = logging.getLogger(__name__)

SHARE_TAG_PREFIX = "mlflow.sharedViewState."  # EXPERIMENT_PAGE_VIEW_STATE_SHARE_TAG_PREFIX
SHARE_URL_PARAM = "viewStateShareKey"  # EXPERIMENT_PAGE_VIEW_STATE_SHARE_URL_PARAM_KEY
VIEW_MODE_PARAM = "compareRunsMode"  # TABLE (the runs table, default) or CHART (the chart view)
DESCRIPTION_TAG = "mlflow.note.content"  # an experiment's or run's description, markdown
MAX_TAG_CHARS = 20000  # mlflow.utils.validation.MAX_EXPERIMENT_TAG_VAL_LENGTH
DEFAULT_KEY = "benchmark"
DEFAULT_NAME = "Compare methods"
SECTION_ID = "harness-key-metrics"
SECTION_NAME = "Key metrics"
IDEALS_HEADING = "**Ideal values:**"  # marks a description this module wrote (and may rewrite)
_KEY = re.compile(r"^[A-Za-z0-9_.-]{1,200}$")  # a tag-key suffix that needs no escaping in a URL

# The harness's own key metrics around the attacks' (metric, ideal).
LEADING_KEYS = [("forget_val_ratio", "1")]
TRAILING_KEYS = [("acc_validation", "higher"), ("pct_retrain_time", "lower")]


def metric_column(name: str) -> str:
    """The UI's column id of a metric (`makeCanonicalSortKey('metrics', name)`)."""
    return f"metrics.`{name}`"


def tag_column(name: str) -> str:
    return f"tags.`{name}`"


def key_metrics_from(attack_metrics: dict[str, dict] | None = None) -> list[tuple[str, str]]:
    """(metric, ideal) pairs from the plan's metric declarations (`Plan.attack_metrics` or config.json's
    "metrics"): the forget/validation ratio, each attack's summary metrics that have a target (an AUC's
    0.5), validation accuracy and % of retrain time."""
    from ..metrics import Metric, attack_metric_name

    attacks = []
    for attack, declared in (attack_metrics or {}).items():
        for name, metric in declared.items():
            metric = metric if isinstance(metric, Metric) else Metric(**metric)
            if metric.summary and metric.target is not None:
                attacks.append((attack_metric_name(attack, name), metric.ideal))
    return LEADING_KEYS + attacks + TRAILING_KEYS


def _pairs(key_metrics: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    pairs = [(str(m), "" if i is None else str(i)) for m, i in key_metrics]
    if not pairs:
        raise ValueError("a view needs at least one key metric")
    return pairs


def _column_width(column: str) -> int:
    """Pixels that show a metric's name and a group mean such as "0.7581 (average)" (default: ~110)."""
    return max(170, 8 * len(column) - 40)


def _bar_chart(metric: str, ideal: str) -> dict:
    """A `RunsChartsBarCardConfig`: one bar per visible row group (per run when ungrouped)."""
    return {"uuid": f"harness-bar-{metric}", "type": "BAR", "metricKey": metric, "metricSectionId": SECTION_ID,
            "displayName": f"{metric} (ideal {ideal})" if ideal else metric,
            "isGenerated": False, "deleted": False, "runsCountToCompare": 100}


def _group_by(tags: Sequence[str], aggregate: str) -> dict:
    """`RunsGroupByConfig`: rows grouped by run tags, metrics aggregated ("min", "average" or "max")."""
    if aggregate not in ("min", "average", "max"):
        raise ValueError(f"aggregate {aggregate!r}: min, average or max")
    return {"aggregateFunction": aggregate, "groupByKeys": [{"mode": "tag", "groupByData": t} for t in tags]}


def runs_filter(run_ids: Sequence[str] | None = None, parent_run_id: str | None = None) -> str:
    """The runs a view shows. Default: the experiment's FINISHED child runs, as the runner reuses a
    finished cell from any earlier benchmark run of the experiment (so a cell of this benchmark may sit
    under another parent). `run_ids` pins the view to exactly a benchmark's rows (MLflow's search has IN
    for run ids only, not for tags); `parent_run_id` keeps it to the children of one parent."""
    if run_ids:
        bad = [r for r in run_ids if not re.fullmatch(r"[A-Za-z0-9_-]+", r)]
        if bad:
            raise ValueError(f"not run ids: {bad[:3]}")
        return "attributes.run_id IN (" + ", ".join(f"'{r}'" for r in dict.fromkeys(run_ids)) + ")"
    if parent_run_id:
        return f"tags.mlflow.parentRunId = '{parent_run_id}'"
    return "tags.run_kind = 'child' and attributes.status = 'FINISHED'"


def view_state(key_metrics: Iterable[tuple[str, str]], group_by_tag: str | Sequence[str] = "method", *,
               run_ids: Sequence[str] | None = None, parent_run_id: str | None = None,
               extra_columns: Sequence[str] = (), aggregate: str = "average", search_filter: str | None = None,
               chart_columns: int = 2) -> dict:
    """The view: key metric columns, rows grouped by method, a bar chart per key metric.

    `key_metrics`: (metric, ideal) pairs, in column order. `group_by_tag`: a run tag or several (e.g.
    ("method", "epochs") when a benchmark sweeps budgets). Grouping is what shows the children: a shared
    view cannot expand their parent, so ungrouped they would hide under it, collapsed. Which runs: see
    `runs_filter` (`run_ids`, `parent_run_id`), or give a `search_filter`.
    `extra_columns`: more column ids, e.g. `tag_column("seed")`.
    """
    pairs = _pairs(key_metrics)
    tags = [group_by_tag] if isinstance(group_by_tag, str) else list(group_by_tag)
    if not tags:
        raise ValueError("group the runs by at least one tag: a shared view cannot expand the parent run")
    if search_filter is None:
        search_filter = runs_filter(run_ids, parent_run_id)
    columns = [*(metric_column(m) for m, _ in pairs), *extra_columns]
    return {
        # search facets
        "searchFilter": search_filter,
        "orderByKey": "attributes.start_time",
        "orderByAsc": True,  # the order the benchmark ran: original, retrain, then the methods
        # UI state
        "selectedColumns": columns,
        "columnOrder": columns,  # widths apply to ordered columns only; unlisted ones (Duration) go last
        "columnWidths": {c: _column_width(c) for c in columns},
        "runsHiddenMode": "SHOW_ALL",  # the default charts only the first 10 rows
        "groupBy": _group_by(tags, aggregate),
        "groupsExpanded": {},  # groups open: the seeds under each method's mean
        "useGroupedValuesInCharts": True,
        "hideEmptyCharts": True,
        "compareRunCharts": [_bar_chart(m, i) for m, i in pairs],
        "compareRunSections": [{"uuid": SECTION_ID, "name": SECTION_NAME, "display": True, "isReordered": True,
                                "columns": chart_columns}],
        "isAccordionReordered": True,  # our section first; the UI appends sections for the other metrics
        "viewMaximized": False,
        "runListHidden": False,
    }


def ui_lists_saved_views(mlflow_version: str | None = None) -> bool:
    """Whether the MLflow UI reads the saved-view envelope (and lists the view under "Views"): from 3.15
    on. The version defaults to the installed one, which is the UI `mlflow ui` / `unlearn ui` serves."""
    if mlflow_version is None:
        from importlib.metadata import version

        mlflow_version = version("mlflow")
    parts = tuple(int(p) for p in re.findall(r"\d+", mlflow_version)[:2])
    return parts >= (3, 15)


def _state_json(state: dict) -> str:
    return json.dumps(state, sort_keys=True, separators=(",", ":"))


def _deflate(text: str) -> str:
    """The UI's compressed form (`textCompressDeflate`: pako's zlib stream, base64, a "deflate;" prefix)."""
    import base64
    import zlib

    return "deflate;" + base64.b64encode(zlib.compress(text.encode(), 9)).decode()


def encode(state: dict, name: str | None = DEFAULT_NAME, created_at: int | None = None) -> str:
    """The tag value: a named saved-view envelope around the state's JSON, or (name None, for
    MLflow <= 3.14) the state's JSON alone; the state compressed as the UI does it when it would not
    fit an experiment tag (many attack metrics). Key-sorted, so an unchanged view encodes the same."""
    text = _state_json(state)
    if len(text) > MAX_TAG_CHARS - 200:
        text = _deflate(text)
    if name is None:
        return text
    now = int(time.time() * 1000)
    return json.dumps({"name": name, "createdAt": created_at or now, "updatedAt": now, "state": text})


def decode(value: str) -> tuple[dict, dict]:
    """(state, envelope fields without the state) of a tag value in any form the UI reads: an envelope
    or the bare state, either as JSON or compressed ("deflate;...")."""
    envelope = {}
    data = json.loads(_inflate(value)) if value.startswith("deflate;") else json.loads(value)
    if isinstance(data, dict) and isinstance(data.get("state"), str) and isinstance(data.get("name"), str):
        envelope = {k: v for k, v in data.items() if k != "state"}
        data = json.loads(_inflate(data["state"]) if data["state"].startswith("deflate;") else data["state"])
    return data, envelope


def _inflate(text: str) -> str:
    import base64
    import zlib

    return zlib.decompress(base64.b64decode(text[len("deflate;"):])).decode()


def check_key(key: str) -> str:
    if not _KEY.match(key):
        raise ValueError(f"view key {key!r}: use 1-200 letters, digits, '.', '_' or '-'")
    return key


def describe_ideals(key_metrics: Iterable[tuple[str, str]], view_name: str = DEFAULT_NAME) -> str:
    """Markdown for a description (the experiment's, a parent run's): each key metric's ideal, which
    column headers and chart titles cannot show. The first line says it all, as the UI shows only the
    first line of a collapsed description."""
    ideals = " · ".join(f"`{m}` {i}" if i else f"`{m}`" for m, i in _pairs(key_metrics))
    return (f"{IDEALS_HEADING} {ideals}\n\n"
            f'The view "{view_name}" (Views menu, or the URL `unlearn ui` prints) shows a row per method with '
            "the mean over seeds and the seeds below it, and a bar chart per key metric in the chart view.")


def write_view(client, experiment_id: str, key_metrics: Iterable[tuple[str, str]], key: str = DEFAULT_KEY, *,
               name: str = DEFAULT_NAME, describe: bool = True, **state_options) -> str:
    """Store the view as experiment tag `mlflow.sharedViewState.<key>` and return `key`.

    Idempotent: an unchanged view is not rewritten (its creation time is kept when it changes). With
    `describe`, the experiment's description gets the key metrics' ideals, unless it holds a description
    someone else wrote. `state_options` go to `view_state` (group_by_tag, run_ids, parent_run_id...)."""
    tag = SHARE_TAG_PREFIX + check_key(key)
    pairs = _pairs(key_metrics)
    state = view_state(pairs, **state_options)
    tags = client.get_experiment(experiment_id).tags
    old_state, envelope = _decode_or_none(tags.get(tag))
    label = name if ui_lists_saved_views() else None
    if old_state != state or envelope.get("name") != label:
        client.set_experiment_tag(experiment_id, tag, encode(state, label, envelope.get("createdAt")))
    if describe:
        note, current = describe_ideals(pairs, name), tags.get(DESCRIPTION_TAG)
        if current != note and (not current or current.startswith(IDEALS_HEADING)):
            client.set_experiment_tag(experiment_id, DESCRIPTION_TAG, note)
    return key


def _decode_or_none(value: str | None) -> tuple[dict | None, dict]:
    try:
        return decode(value) if value else (None, {})
    except Exception:  # not a view (bad JSON, a corrupt deflate blob...): it gets replaced
        return None, {}


def read_view(client, experiment_id: str, key: str = DEFAULT_KEY) -> dict | None:
    """The stored state of a view, or None."""
    return _decode_or_none(client.get_experiment(experiment_id).tags.get(SHARE_TAG_PREFIX + check_key(key)))[0]


def view_groups(scenarios: int, budgets: bool) -> list[str]:
    """The tags the view groups runs by: the method, and the budget and scenario where a benchmark has several."""
    return ["method", *(["epochs"] if budgets else []), *(["scenario"] if scenarios > 1 else [])]


def write_benchmark_view(tracker, attack_metrics: dict | None = None, *, run_ids: Sequence[str] | None = None,
                         group_by: Sequence[str] = ("method",), key: str = DEFAULT_KEY) -> str | None:
    """The runner's call: the view of the tracker's experiment (all its finished child runs, or exactly
    `run_ids`, a benchmark's rows); the key, or None when the tracker is not an MLflow store or the view
    could not be written (a view must never stop a benchmark)."""
    client, experiment_id = getattr(tracker, "client", None), getattr(tracker, "experiment_id", None)
    if client is None or experiment_id is None:
        return None
    try:
        return write_view(client, experiment_id, key_metrics_from(attack_metrics), key,
                          group_by_tag=list(group_by), run_ids=run_ids)
    except Exception as exc:  # a store hiccup or a stricter server: the benchmark goes on without a view
        log.warning("MLflow view %r not written: %s", key, exc)
        return None


def runs_page_url(base_url: str, experiment_id: str, key: str = DEFAULT_KEY, mode: str | None = None) -> str:
    """`<base>/#/experiments/<id>/runs?viewStateShareKey=<key>`, the form the UI's share button builds.
    `mode`: None or "TABLE" for the runs table, "CHART" to open on the charts."""
    query = {SHARE_URL_PARAM: check_key(key), **({VIEW_MODE_PARAM: mode} if mode else {})}
    experiment = urllib.parse.quote(str(experiment_id), safe="")
    return f"{base_url.rstrip('/')}/#/experiments/{experiment}/runs?{urllib.parse.urlencode(query)}"


def view_urls(client, base_url: str, key: str = DEFAULT_KEY) -> list[tuple[str, str]]:
    """(experiment name, URL) of each experiment that has the view, newest first: what `unlearn ui`
    prints."""
    tag = SHARE_TAG_PREFIX + check_key(key)
    found = [e for e in client.search_experiments(order_by=["last_update_time DESC"]) if tag in e.tags]
    return [(e.name, runs_page_url(base_url, e.experiment_id, key)) for e in found]


def _wait_for_health(base_url: str, timeout: float, proc=None) -> bool:
    import urllib.error
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            return False
        try:
            urllib.request.urlopen(base_url.rstrip("/") + "/health", timeout=2).close()
            return True
        except (urllib.error.URLError, OSError):
            time.sleep(0.25)
    return False


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def serve(uri: str, port: int | None = None, timeout: float = 60.0, log_path: str | None = None):
    """A throwaway MLflow server on the store `uri` (screenshots, browser tests): yields its base URL
    once /health answers, stops it (its whole process group: the server forks workers) on exit."""
    import os
    import signal
    import subprocess
    import sys

    from ..tracking import artifact_root_for

    port = port or free_port()
    cmd = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", uri, "--host", "127.0.0.1",
           "--port", str(port), "--workers", "1"]
    if artifact_root_for(uri):
        cmd += ["--default-artifact-root", artifact_root_for(uri)]
    out = open(log_path, "w") if log_path else subprocess.DEVNULL
    proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    base_url = f"http://127.0.0.1:{port}"
    try:
        if not _wait_for_health(base_url, timeout, proc):
            raise RuntimeError(f"MLflow server on {uri} did not answer on {base_url} within {timeout:.0f} s "
                               f"(exit status {proc.poll()}; log: {log_path or 'not kept'})")
        yield base_url
    finally:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=10)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        if log_path:
            out.close()


def open_when_up(url: str, timeout: float = 60.0) -> bool:
    """Open `url` in the user's browser once its server answers /health (`unlearn ui --open` starts
    this in the background, then hands the process to the server); False if it never did."""
    import webbrowser

    return _wait_for_health(url.split("#", 1)[0], timeout) and webbrowser.open(url)


if __name__ == "__main__":  # python -m harness.reporting.mlflow_view URL: open it when its server is up
    import sys

    sys.exit(0 if open_when_up(sys.argv[1]) else 1)
