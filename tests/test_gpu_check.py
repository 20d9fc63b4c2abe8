"""benchmarks/gpu_check.sh on the CPU (its smoke path), and what it brings back from a GPU machine without
MLflow: runs saved by the in-memory tracker, imported with `unlearn import`, reported by `unlearn report`."""
import json
import os
import subprocess
import sys

from click.testing import CliRunner

from harness.cli import main

from .support import REPO, worker_threads


def test_gpu_check_runs_on_the_cpu_and_its_runs_import_into_a_report(data_dir, tmp_path, sqlite_store):
    out = tmp_path / "out"
    env = {**os.environ, "OUT": str(out), "DEVICE": "cpu", "PROFILE": "smoke", "REFERENCE_ROWS": "0",
           "METHODS": "simple", "BATCHES": "1", "REPEATS": "1", "EVAL_LIMIT": "400", "HARNESS_DATA_DIR": str(data_dir),
           "HARNESS_CACHE_DIR": str(tmp_path / "cache"), "PYTHON": sys.executable, "GPU_DIR": str(tmp_path / "none"),
           "STEPS": "paper eval throughput", "THROUGHPUT_ARGS": "--batch-size 16 --warmup 1 --kit-workers 0",
           "OMP_NUM_THREADS": str(worker_threads())}
    done = subprocess.run(["bash", str(REPO / "benchmarks" / "gpu_check.sh")], env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "== paper: exit" not in done.stdout and "== eval: exit" not in done.stdout, done.stdout[-3000:]
    figures = (out / "figures.txt").read_text()
    for expected in ("profile smoke on", "CUDA graphs off", "original (seed 0): trained in", "simple seed=0",
                     "whole run wall-clock", "evaluation pass on", "harness / best bare loop, fp32",
                     "harness fp32 / kit fp32"):
        assert expected in figures, f"{expected!r} missing from figures.txt:\n{figures}"
    assert (out / "results-smoke.csv").exists() and (out / "summary-smoke.csv").exists()

    saved = json.loads((out / "runs.json").read_text())
    children = [r for r in saved["runs"] if "mlflow.parentRunId" in r["tags"]]
    assert {r["tags"]["method"] for r in children} == {"original", "retrain", "simple"}

    uri = sqlite_store(tmp_path / "mlflow.db")
    cli = CliRunner()
    imported = cli.invoke(main, ["import", str(out / "runs.json"), "--tracking-uri", uri])
    assert imported.exit_code == 0, imported.output
    parent = imported.stdout.split()[0]
    again = cli.invoke(main, ["import", str(out / "runs.json"), "--tracking-uri", uri])
    assert again.exit_code == 1 and "already imported" in again.output

    from harness.tracking import MlflowStore

    store = MlflowStore(uri)
    rows = store.rows(parent)
    assert sorted(r["method"] for r in rows) == ["original", "retrain", "simple"]
    assert {r["status"] for r in rows} == {"FINISHED"}
    simple = next(r for r in rows if r["method"] == "simple")
    saved_simple = next(r for r in children if r["tags"]["method"] == "simple")
    assert simple["acc_forget"] == saved_simple["metrics"]["acc_forget"][-1][1]
    history = store.client.get_metric_history(simple["run_id"], "epoch_acc_forget")
    assert [m.step for m in history] == [s for s, _ in saved_simple["metrics"]["epoch_acc_forget"]]

    report = tmp_path / "results.md"
    made = cli.invoke(main, ["report", parent, "--tracking-uri", uri, "--output", str(report)])
    assert made.exit_code == 0, made.output
    text = report.read_text()
    assert "python benchmarks/profile_run.py --profile smoke" in text  # how the runs were made
    assert "| simple" in text or "simple |" in text
    assert (tmp_path / "results" / "fig12_accuracy.png").exists()


def test_import_refuses_a_file_that_is_not_saved_runs(tmp_path):
    bad = tmp_path / "x.json"
    bad.write_text(json.dumps({"runs": []}))
    result = CliRunner().invoke(main, ["import", str(bad), "--tracking-uri", f"sqlite:///{tmp_path / 'm.db'}"])
    assert result.exit_code == 1 and "not a saved-runs file" in result.output
    bad.write_text("{")
    result = CliRunner().invoke(main, ["import", str(bad), "--tracking-uri", f"sqlite:///{tmp_path / 'm.db'}"])
    assert result.exit_code == 1 and "not JSON" in result.output
