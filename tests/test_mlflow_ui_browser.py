"""The comparison view in a real browser: a synthetic benchmark in a throwaway SQLite store, a real MLflow
server, headless Chromium (Debian's, driven by Playwright). The page must show one row per method with
the key metric columns, the ideals above them, and a bar per method in each key metric's chart.

Skipped where Playwright or Chromium is missing, except with HARNESS_REQUIRE_BROWSER=1 (CI), where that
is a failure."""
import os
from pathlib import Path

import pytest

from harness.reporting import mlflow_view as mv

from .support import VIEW_KEYS as KEYS
from .support import VIEW_METHODS as METHODS
from .support import VIEW_METRICS as ATTACK_METRICS
from .support import VIEW_SEEDS as SEEDS
from .support import write_smoke_benchmark

CHROMIUM = os.environ.get("HARNESS_CHROMIUM", "/usr/bin/chromium")
CARD = '[data-testid="experiment-view-compare-runs-card"]'
SEEDS_BADGE = '[role="status"][data-component-id*="groupparentcellrenderer"]'  # the count of runs in a group
TIMEOUT_MS = 20000

pytestmark = pytest.mark.browser


def browser_unavailable() -> str | None:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "Playwright is not installed (pip install -e '.[test]')"
    if not Path(CHROMIUM).exists():
        return f"no Chromium at {CHROMIUM} (apt-get install chromium, or set HARNESS_CHROMIUM)"
    return None


@pytest.fixture(scope="module")
def browser():
    if reason := browser_unavailable():
        if os.environ.get("HARNESS_REQUIRE_BROWSER") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=TIMEOUT_MS)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def page(browser):
    """A fresh page per test: the UI keeps a view's state across in-page navigations."""
    page = browser.new_page(viewport={"width": 1920, "height": 1080})
    page.set_default_timeout(TIMEOUT_MS)
    yield page
    page.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory, sqlite_store):
    """(base URL, experiment id) of a server on a store holding one benchmark and its view, pinned to its
    rows as the runner leaves it (the default filter, every finished child, is checked in
    test_mlflow_view.py: the page is the same)."""
    folder = tmp_path_factory.mktemp("mlflow-ui")
    uri = sqlite_store(folder / "mlflow.db")
    tracker, _, finished = write_smoke_benchmark(uri, epochs=1)
    assert mv.write_benchmark_view(tracker, ATTACK_METRICS, run_ids=finished) == mv.DEFAULT_KEY
    with mv.serve(uri, log_path=str(folder / "server.log")) as base_url:
        yield base_url, tracker.experiment_id


def open_view(page, url: str, ready: str) -> None:
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    page.goto(url)
    try:
        page.wait_for_selector(ready)
    except PlaywrightTimeout:
        shot = Path(os.environ.get("TMPDIR", "/tmp")) / "mlflow-view-failure.png"
        page.screenshot(path=str(shot))
        pytest.fail(f"{url}: nothing matched {ready} within {TIMEOUT_MS / 1000:.0f} s (the view was not "
                    f"applied?); the page as it was: {shot}")
    close = page.locator('[data-component-id="mlflow.assistant.chat_panel.close"]')  # takes a third of the width
    if close.count():
        close.first.click()


def test_table_has_a_row_per_method_and_the_key_columns(page, server):
    from playwright.sync_api import expect

    base_url, experiment_id = server
    open_view(page, mv.runs_page_url(base_url, experiment_id), '.ag-header-cell[col-id^="metrics."]')
    for method in METHODS:  # a group row per method (mean over seeds), its seeds below; not the KILLED run
        group = page.locator(".ag-row").filter(has=page.get_by_text(f"Group: {method}", exact=True))
        expect(group).to_have_count(1)
        expect(group.locator(SEEDS_BADGE)).to_have_text(str(len(SEEDS)))
        expect(page.get_by_text(f"{method} seed=0", exact=True)).to_have_count(1)
    expect(page.locator(".ag-row").filter(has_text="Group: ")).to_have_count(len(METHODS))
    for metric, _ in KEYS:
        header = page.locator(f'.ag-header-cell[col-id="{mv.metric_column(metric)}"]')
        expect(header).to_be_visible()
        expect(header).to_contain_text(metric)
    expect(page.get_by_text("Ideal values:").locator("xpath=..")).to_contain_text("mia/auc 0.5")
    expect(page.get_by_text("Group by: method")).to_be_visible()


def test_chart_view_has_a_bar_per_method_for_each_key_metric(page, server):
    from playwright.sync_api import expect

    base_url, experiment_id = server
    open_view(page, mv.runs_page_url(base_url, experiment_id, mode="CHART"), f"{CARD} .js-plotly-plot g.trace.bars")
    section = page.get_by_test_id("experiment-view-compare-runs-section-header").filter(has_text=mv.SECTION_NAME)
    expect(section.first).to_be_visible()
    for metric, _ in KEYS[:2]:  # the first row of charts is on screen, lower ones render when scrolled to
        card = page.locator(CARD).filter(has=page.get_by_text(metric, exact=True)).first
        expect(card).to_be_visible()
        expect(card.locator("g.trace.bars g.point")).to_have_count(len(METHODS))
