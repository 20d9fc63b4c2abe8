"""The report of one `unlearn run` (or benchmark) parent: its cells read back into pandas, the paper's
figures, a summary with 95% intervals, forgetting flags and paired tests.

The same files go into a local folder and, under `report/`, into the parent run's artifacts, so the
MLflow UI and a docs page show one thing. `unlearn report` and the end of `unlearn run` both call
`build` then `write`.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import pandas as pd

from ..tracking import shown_uri
from . import analysis, figures, ranking
from .tables import column_groups, columns, headers, markdown_table

log = logging.getLogger(__name__)
KEY_METRICS = ["forget_val_ratio", "acc_validation", "acc_retain", "mia/auc", "mia/signed_auc", "pct_retrain_time"]
FIGURE_CAPTIONS = {
    "fig12_accuracy.png": "Retain and validation accuracy per method (the paper's Figure 12, top)",
    "fig12_ratio.png": "Forget / validation accuracy ratio, ideal 1 (Figure 12, bottom)",
    "fig13_runtime.png": "Unlearning time as % of retraining (Figure 13)",
    "fig14_mia.png": "MIA AUC on forget vs test, random and targeted forget sets, ideal 0.5 (Figure 14)",
    "fig14_mia_signed.png": "Signed MIA AUC: below 0.5 the forget set looks less familiar than unseen data",
    "epoch_curves.png": "Accuracy after each epoch of the methods' main phase",
}


@dataclass
class RunReport:
    """What a report is made of: the result rows (one per cell), per-epoch curves and the declarations."""

    frame: pd.DataFrame
    curves: pd.DataFrame | None
    attack_metrics: dict
    facts: dict[str, str]

    @cached_property
    def summary(self) -> pd.DataFrame:
        """summary_table of the rows: the CSV, the Markdown and the page read this one."""
        return analysis.summary_table(self.frame, self.attack_metrics)

    @cached_property
    def salun_terms(self) -> pd.DataFrame:
        """ranking.salun_terms of the rows (empty without mia-efficacy): the CSV and the page read this one."""
        return ranking.salun_terms(self.frame)

    @cached_property
    def ranking(self) -> pd.DataFrame:
        """ranking.ranking of the rows (empty without mia-efficacy): the CSV and the page read this one."""
        return ranking.ranking(self.frame)

    def comparisons(self, baseline: str | None = None) -> pd.DataFrame:
        return analysis.paired_comparisons(self.frame, self.key_metrics(), baseline=baseline)

    def key_metrics(self) -> list[str]:
        return [m for m in KEY_METRICS if m in self.frame]


def build(store, parent: dict, *, with_curves: bool = True) -> RunReport:
    """Read a parent's cells (one row per planned cell, see MlflowStore.rows) and their curves."""
    run_id = parent["run_id"]
    rows = store.rows(run_id)
    config = store.load_json(run_id, "config.json")
    frame = pd.DataFrame(rows)
    if "scenario" in frame and frame["scenario"].isna().any():  # runs logged before scenarios were tagged
        frame["scenario"] = frame["scenario"].fillna(parent["params"].get("scenario", "?"))
    curves = None
    if with_curves and not frame.empty:
        methods = frame[~frame["method"].isin(analysis.REFERENCE_ROWS) & (frame["status"] == "FINISHED")]
        names = [c for c in frame.columns if c.startswith("epoch_acc_")]
        history = pd.DataFrame(store.histories(methods["run_id"].tolist(), names))
        if not history.empty:
            curves = history.merge(methods[["run_id", "method", "scenario", "epochs", "seed"]], on="run_id")
    tags, params = parent["tags"], parent["params"]
    facts = {"parent run": f"`{run_id}` ({parent['status']}) in {shown_uri(store.uri)}",
             "profile": params.get("profile", "?"),
             "scenarios": params.get("scenario", "?"), "seeds": params.get("seeds", "?"),
             "epoch budgets": params.get("epochs", "method defaults"),
             "device": tags.get("device_name", tags.get("device", "?")), "precision": params.get("precision", "?"),
             "harness": f"{tags.get('harness_version', '?')} (commit {str(tags.get('git_commit', '?'))[:10]})"}
    return RunReport(frame, curves, config.get("metrics", {}), facts)


def write(report: RunReport, folder: Path) -> dict[str, Path]:
    """Figures, summary.csv/.md, comparisons.csv and results.csv into `folder` (rewritten); name -> path."""
    folder.mkdir(parents=True, exist_ok=True)
    files = {}
    for name, fig in figures.all_figures(report.frame, report.curves, report.attack_metrics).items():
        fig.savefig(folder / name, dpi=110)
        files[name] = folder / name
    tables = {"summary.csv": report.summary.to_csv(index=False),
              "comparisons.csv": report.comparisons().to_csv(index=False),
              "results.csv": report.frame.to_csv(index=False),
              "summary.md": analysis.summary_markdown(report.summary, report.attack_metrics)}
    for name, table in (("salun_terms.csv", report.salun_terms), ("ranking.csv", report.ranking)):
        if not table.empty:  # runs without the mia-efficacy attack have neither
            tables[name] = table.to_csv(index=False)
    for name, text in tables.items():
        (folder / name).write_text(text)
        files[name] = folder / name
    return files


def log_files(run, files: dict[str, Path]) -> None:
    """The report's files as the parent's artifacts under report/ (rewritten on every report)."""
    for path in files.values():
        try:
            run.log_artifact(path, "report")
        except Exception as exc:  # the local files are the report; the store copy is a convenience
            log.warning("report file %s not logged: %s", path.name, exc)


def markdown(report: RunReport, files: dict[str, Path], *, title: str, command: str | None,
             relative_to: Path | None, preamble: str | None = None) -> str:
    """The report as one Markdown page: how to regenerate it, facts, figures, summary with intervals and
    flags, paired comparisons with retrain, every run, failures, column meanings."""
    lines = [f"# {title}", "", *([preamble, ""] if preamble else []),
             "Generated by `unlearn report`; do not edit by hand.", ""]
    if command:
        lines += ["Regenerate with:", "", "```bash", command, "```", ""]
    lines += [f"- {k}: {v}" for k, v in report.facts.items()] + [""]
    shown = [n for n in FIGURE_CAPTIONS if n in files]
    if shown:
        lines += ["## Figures", ""]
        for name in shown:
            path = files[name] if relative_to is None else files[name].relative_to(relative_to)
            lines += [f"**{FIGURE_CAPTIONS[name]}**", "", f"![{FIGURE_CAPTIONS[name]}]({path})", ""]
    lines += ["## Summary", "", analysis.summary_markdown(report.summary, report.attack_metrics), "",
              "<details><summary>How the flags are decided</summary>", "", analysis.FLAG_RULES, "</details>", ""]
    lines += ranking.markdown(report.salun_terms, report.ranking)
    lines += _comparisons(report)
    lines += _every_run(report)
    failed = report.frame[report.frame["status"] != "FINISHED"] if not report.frame.empty else report.frame
    if len(failed):
        lines += ["## Failures", ""] + [f"- {r['method']} {r.get('scenario', '')} seed={r['seed']}: "
                                        f"{r.get('error') or r['status']}" for _, r in failed.iterrows()] + [""]
    lines += ["## Columns (ideal in brackets)", ""]
    lines += [f"- `{c}` ({headers(report.attack_metrics)[c]}): {m.help or 'see the plugin'}"
              f"{f' [{m.ideal}]' if m.ideal else ''}" for c, m in columns(report.attack_metrics)]
    return "\n".join(lines) + "\n"


def _comparisons(report: RunReport) -> list[str]:
    metrics = report.key_metrics()
    table = report.comparisons(baseline="retrain")
    lines = ["## Paired comparisons with retrain", "",
             "Method minus retrain over the same splits: mean difference, 95% percentile bootstrap interval, "
             "Wilcoxon signed-rank p-value and its Holm adjustment within each group and metric "
             "(all pairs of methods: comparisons.csv).", ""]
    note = analysis.comparisons_note(report.frame, metrics, baseline="retrain")
    if note:
        lines += [note, ""]
    if table.empty:
        return lines
    names = headers(report.attack_metrics)
    for (scenario, epochs), rows in table.groupby(["scenario", "epochs"], sort=False, dropna=False):
        shown = pd.DataFrame({
            "metric": [names.get(m, m) for m in rows["metric"]], "n": rows["n"].to_numpy(),
            "difference [95% CI]": [f"{d:+.3f} [{lo:+.3f}, {hi:+.3f}]" for d, lo, hi in
                                    zip(rows["mean_diff"], rows["ci_low"], rows["ci_high"])],
            "p": [f"{p:.3g}" for p in rows["p_value"]], "p (Holm)": [f"{p:.3g}" for p in rows["p_holm"]]},
            index=pd.Index(rows["method"], name="method"))
        lines += [f"### {analysis.group_title(scenario, epochs)}", "", markdown_table(shown), ""]
    return lines


def _every_run(report: RunReport) -> list[str]:
    frame = report.frame
    if frame.empty:
        return []
    cols = [c for c, _ in columns(report.attack_metrics) if c in frame]
    formats = {c: m.fmt for c, m in columns(report.attack_metrics)}
    table = frame[["method", "scenario", "epochs", "seed", "status", *cols]].copy()
    table["epochs"] = table["epochs"].map(lambda v: "-" if pd.isna(v) else f"{v:g}")
    for c in cols:
        table[c] = table[c].map(lambda v, f=formats[c]: "-" if pd.isna(v) else f.format(v))
    table = table.set_index("method")
    lines = ["## Every run", ""]
    for title, group in column_groups(report.attack_metrics):
        present = [c for c in group if c in table]
        if present:
            lines += [f"### {title[0].upper()}{title[1:]}", "",
                      markdown_table(table[["scenario", "epochs", "seed", "status", *present]]), ""]
    return lines


def default_folder(store_uri: str, parent_id: str) -> Path:
    """Where a report goes without --output: beside an SQLite store (mlruns/reports/<run>), else ./reports."""
    from ..tracking import sqlite_path

    db = sqlite_path(store_uri)
    return (db.parent if db is not None else Path.cwd()) / "reports" / parent_id


def publish_after_run(uri: str, parent_id: str) -> Path | None:
    """The report at the end of a run or a benchmark, beside the store and in the parent's artifacts; the
    page, or None when it could not be written: that is a warning, never fatal, since the runs are safe
    in the store and `unlearn report` redoes it."""
    from ..tracking import MlflowStore

    try:
        store = MlflowStore(uri)
        parent = store.parent(parent_id)
        folder = default_folder(uri, parent_id)
        publish(store, parent, folder, title="Unlearning results", command=parent["tags"].get("command"))
        return folder / "report.md"
    except Exception as exc:
        log.warning("report not written (%s: %s); run `unlearn report %s`", type(exc).__name__, exc, parent_id)
        return None


def publish(store, parent: dict, folder: Path, *, title: str, command: str | None, preamble: str | None = None,
            markdown_path: Path | None = None) -> tuple[str, dict[str, Path]]:
    """Build the report of `parent`, write its files into `folder` and the page to `markdown_path` (or
    folder/report.md), and log them all to the parent under report/. Returns (page, files)."""
    from ..tracking import MlflowRun

    report = build(store, parent)
    files = write(report, folder)
    page_path = markdown_path or folder / "report.md"
    page = markdown(report, files, title=title, command=command, relative_to=page_path.parent, preamble=preamble)
    page_path.parent.mkdir(parents=True, exist_ok=True)
    page_path.write_text(page)
    log_files(MlflowRun(store.client, parent["run_id"]), {**files, "report.md": page_path})
    _pin_view(store, parent, report.frame, report.attack_metrics)
    return page, files


def _pin_view(store, parent: dict, frame: pd.DataFrame, attack_metrics: dict) -> None:
    """The experiment's comparison view in the MLflow UI, showing exactly this report's FINISHED cells."""
    from .mlflow_view import key_metrics_from, view_groups, write_view

    done = frame[frame["status"] == "FINISHED"] if not frame.empty else frame
    if done.empty:
        return
    groups = view_groups(done["scenario"].nunique(), bool(done["epochs"].notna().any()))
    try:
        write_view(store.client, parent["experiment_id"], key_metrics_from(attack_metrics), group_by_tag=groups,
                   run_ids=done["run_id"].tolist())
    except Exception as exc:  # the report stands without the UI view
        log.warning("MLflow view not written: %s", exc)
