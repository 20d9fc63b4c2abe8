"""Screenshot of a benchmark's comparison view in the MLflow UI (for docs/), in headless Chromium.

    python benchmarks/ui_screenshot.py STORE_URI EXPERIMENT OUT.png [--mode both|table|chart]

Writes (or refreshes) the experiment's view (key metrics from --metrics, else from the newest benchmark
run's config.json, else the defaults), starts an MLflow server on the store, opens the view at 1600x1000,
waits for the rows and charts and saves the page: with `--mode both` (default) the runs table above the
chart view, in one image. Prints the view's URL. Needs `pip install playwright` and a Chromium (Debian's
`/usr/bin/chromium`, or $HARNESS_CHROMIUM); no `playwright install`.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # before mlflow is imported

from harness import mlflow_view as mv  # noqa: E402
from harness.tracking import MlflowStore  # noqa: E402

CHROMIUM = os.environ.get("HARNESS_CHROMIUM", "/usr/bin/chromium")
SIZE = {"width": 1600, "height": 1000}
CARD = '[data-testid="experiment-view-compare-runs-card"]'


def parse_metrics(text: str) -> list[tuple[str, str]]:
    """"forget_val_ratio=1,mia/auc=0.5,acc_validation=higher" -> [(metric, ideal), ...]."""
    return [tuple(item.split("=", 1)) if "=" in item else (item, "") for item in text.split(",") if item]


def declared_key_metrics(store: MlflowStore, experiment: str) -> list[tuple[str, str]]:
    """The key metrics the newest benchmark run declared (its config.json); the harness's defaults with
    the loss MIA where there is none."""
    try:
        parent_id = store.latest_parent(experiment)
        return mv.key_metrics_from(store.load_json(parent_id, "config.json").get("metrics"))
    except Exception:
        return mv.key_metrics_from({"mia": {"auc": {"target": 0.5}, "signed_auc": {"target": 0.5}}})


def refresh_view(uri: str, experiment: str, metrics: list[tuple[str, str]] | None = None) -> tuple[str, str]:
    """The experiment's view as its runs and report left it (pinned to the benchmark's cells, grouped by
    method, budget and scenario); written here only where there is none, or when --metrics asks for other
    key metrics: (experiment id, key)."""
    store = MlflowStore(uri)
    found = store.client.get_experiment_by_name(experiment)
    if found is None:
        sys.exit(f"no experiment {experiment!r} in {uri}")
    if metrics or mv.read_view(store.client, found.experiment_id) is None:
        mv.write_view(store.client, found.experiment_id, metrics or declared_key_metrics(store, experiment))
    return found.experiment_id, mv.DEFAULT_KEY


def close_side_panels(page) -> None:
    """The assistant panel opens by default and takes a third of the width."""
    close = page.locator('[data-component-id="mlflow.assistant.chat_panel.close"]')
    if close.count():
        close.first.click()


def capture(page, url: str, ready: str, path: Path, timeout_ms: int = 30000) -> None:
    page.goto(url)
    page.wait_for_selector(ready, timeout=timeout_ms)
    close_side_panels(page)
    page.wait_for_timeout(1500)  # plotly's transitions and the grid's column sizing
    page.screenshot(path=str(path), full_page=True)


def stack(images: list[Path], out: Path) -> None:
    """One image, the views one above the other (Pillow comes with matplotlib)."""
    from PIL import Image

    opened = [Image.open(p) for p in images]
    canvas = Image.new("RGB", (max(i.width for i in opened), sum(i.height for i in opened)), "white")
    y = 0
    for image in opened:
        canvas.paste(image, (0, y))
        y += image.height
    canvas.save(out)


def screenshot(base_url: str, experiment_id: str, key: str, out: Path, mode: str = "both") -> str:
    from playwright.sync_api import sync_playwright

    table_ready = '.ag-header-cell[col-id^="metrics."]'
    chart_ready = f"{CARD} .js-plotly-plot g.trace.bars"
    shots = ([("TABLE", table_ready)] * (mode in ("both", "table"))
             + [("CHART", chart_ready)] * (mode in ("both", "chart")))
    with sync_playwright() as p, tempfile.TemporaryDirectory() as tmp:
        browser = p.chromium.launch(executable_path=CHROMIUM)
        try:
            page = browser.new_page(viewport=SIZE)
            paths = []
            for view_mode, ready in shots:
                paths.append(Path(tmp) / f"{view_mode}.png")
                capture(page, mv.runs_page_url(base_url, experiment_id, key, view_mode), ready, paths[-1])
        finally:
            browser.close()
        out.parent.mkdir(parents=True, exist_ok=True)
        stack(paths, out)
    return mv.runs_page_url(base_url, experiment_id, key)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("store_uri", help="e.g. sqlite:///mlruns/mlflow.db")
    ap.add_argument("experiment", help="experiment name")
    ap.add_argument("out", type=Path, help="PNG to write")
    ap.add_argument("--mode", choices=["both", "table", "chart"], default="both")
    ap.add_argument("--metrics", type=parse_metrics, default=None,
                    help="key metrics and ideals, e.g. forget_val_ratio=1,mia/auc=0.5 [default: the benchmark's]")
    args = ap.parse_args(argv)
    if not Path(CHROMIUM).exists():
        sys.exit(f"no Chromium at {CHROMIUM}: apt-get install chromium, or set HARNESS_CHROMIUM")
    experiment_id, key = refresh_view(args.store_uri, args.experiment, args.metrics)
    with mv.serve(args.store_uri) as base_url:
        url = screenshot(base_url, experiment_id, key, args.out, args.mode)
    print(f"{url}\n(written {args.out}; the URL held while the screenshot's server ran: start `unlearn ui` to open it)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
