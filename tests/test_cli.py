"""The command line as a careless user meets it: every mistake exits 2 with one clear line before any
store, experiment or run exists; failures exit 1 and say where to look."""
import pytest
from click.testing import CliRunner

from harness import __version__, hookimpl
from harness.cli import main
from harness.host import discover


def invoke(*args):
    return CliRunner().invoke(main, list(args))


SMOKE = ["--profile", "smoke", "--model", "tiny-cnn", "--quiet"]


@pytest.mark.parametrize("args, message", [
    (["--methods", "simple,bogus"], "unknown method 'bogus'"),
    (["--methods", ","], "--methods ',' names nothing; leave it out for the default"),
    (["--attacks", ","], "names nothing"),
    (["--scenario", "red"], "unknown scenario 'red'"),
    (["--profile", "gpu"], "Valid profiles: cpu, paper, smoke"),
    (["--model", "vgg16"], "Valid models: resnet18"),
    (["--param", "simple.epochs=-1", "--methods", "simple"], "epochs=-1 is out of range"),
    (["--param", "epochs=3"], "expected COMPONENT.NAME=VALUE"),
    (["--param", "rotate.epochs=3", "--methods", "simple"], "--param given for method(s) not in this run: rotate"),
    (["--attack-option", "mia.folds=1"], "attack 'mia': folds=1 is out of range"),
    (["--references", "-1"], "Invalid value for '--references'"),
    (["--attack-option", "mia.variant=kitt"], "variant='kitt' is out of range"),
    (["--scenario", "class", "--scenario-option", "target_class=unicorn"],
     "scenario 'class': target_class='unicorn' is out of range: expected one of 'auto', 'airplane'"),
    (["--scenario-option", "target_class=cat"],
     "--scenario-option target_class: not a parameter of scenario(s) random"),
    (["--epochs", "2,x"], "is not a number"),
    (["--storage", "journal:q.log"], "--storage queues the cells of a --benchmark NAME"),
    (["--benchmark", "b"], "--benchmark b needs --storage"),
    (["--benchmark", "b", "--storage", "sqlite:///q.db"], "SQLite is not for parallel workers: use --storage "
     "journal:PATH (one host) or postgresql://... (several hosts)\n"),
    (["--scenarios", "random,nope"], "Valid scenarios"),
    (["--model-option", "width=0"], "model 'tiny-cnn': width=0 is out of range"),
    (["--seeds", "a-b"], "expected integers like 0,1,2"),
    (["--seeds=-1"], "seed -1 is not valid: seeds are integers in [0, 4294967295]"),
    (["--seeds", "3-1"], "'3-1': the range is empty"),
    (["--device", "tpu"], "unknown device 'tpu'"),
    (["--tracking-uri", "http://127.0.0.1:9"], "tracking server http://127.0.0.1:9 is unreachable"),
    (["--tracking-uri", "some-folder"], "is a plain folder, which MLflow 3 refuses"),
])
def test_bad_input_exits_2_before_anything_is_created(args, message, tmp_path, monkeypatch, npz_dir):
    monkeypatch.chdir(tmp_path)
    result = invoke("run", *SMOKE, "--data-dir", str(npz_dir), "--cache-dir", str(tmp_path / "cache"), *args)
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "mlruns").exists(), "nothing is created before the input is valid"


def test_cuda_on_a_machine_without_it(tmp_path, monkeypatch, npz_dir):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    result = invoke("run", *SMOKE, "--data-dir", str(npz_dir), "--device", "cuda")
    assert result.exit_code == 2 and "CUDA is not available on this machine" in result.output, result.output
    assert not (tmp_path / "mlruns").exists()


def test_profile_larger_than_the_data(tmp_path, monkeypatch, npz_dir):
    monkeypatch.chdir(tmp_path)
    result = invoke("run", "--profile", "cpu", "--model", "tiny-cnn", "--data-dir", str(npz_dir))
    assert result.exit_code == 2, result.output
    assert "profile 'cpu' needs 5000 training images; the data" in result.output and "has 500" in result.output
    assert not (tmp_path / "mlruns").exists()


def test_cache_dir_that_is_a_file(tmp_path, monkeypatch, npz_dir):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "cache").write_text("not a folder")
    result = invoke("run", *SMOKE, "--data-dir", str(npz_dir), "--cache-dir", str(tmp_path / "cache"))
    assert result.exit_code == 2 and "is a file, not a folder" in result.output, result.output
    assert not (tmp_path / "mlruns").exists()


def test_unknown_method_lists_every_valid_method():
    result = invoke("run", "--methods", "nope")
    assert "Valid methods: " in result.output and "simple" in result.output and "noisy-finetune" in result.output


def test_missing_data_is_one_clear_message(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = invoke("run", *SMOKE, "--methods", "simple", "--data-dir", str(tmp_path / "nothing"))
    assert result.exit_code == 1
    assert "does not exist" in result.output and "Traceback" not in result.output


def test_plugins_lists_components_with_their_distribution_and_metrics():
    result = invoke("plugins")
    assert result.exit_code == 0
    assert "plugin contract version 4" in result.output
    for line in ("methods:", "attacks:", "scenarios:", "models:"):
        assert line in result.output
    simple = next(line for line in result.output.splitlines() if line.strip().startswith("simple "))
    assert f"unlearning-harness {__version__}" in simple and "epochs=5" in simple
    lines = result.output.splitlines()
    mia = next(i for i, line in enumerate(lines) if line.strip().startswith("mia "))
    assert "variant=paper" in lines[mia] and "auc (0.5)" in lines[mia + 1] and "signed_auc (0.5, CI)" in lines[mia + 1]
    assert "harness-example-plugin 0.1.0" in next(line for line in result.output.splitlines()
                                                  if "noisy-finetune" in line)


class FailingAttack:
    @hookimpl
    def register_attacks(self, register):
        from harness import Metric

        def broken(inputs, params):
            raise ValueError("cannot attack")

        register("broken-attack", broken, metrics={"x": Metric(target=0.5)})


def test_failures_exit_1_and_say_where_to_look(tmp_path, monkeypatch, npz_dir):
    """An attack that raises on every model is a failure in the exit status and the summary."""
    host = discover(extra_plugins=[("failing", FailingAttack())])
    monkeypatch.setattr("harness.plan.default_host", lambda: host)
    monkeypatch.chdir(tmp_path)
    result = invoke("run", *SMOKE, "--data-dir", str(npz_dir), "--cache-dir", str(tmp_path / "c"),
                    "--methods", "simple", "--param", "simple.epochs=1", "--attacks", "broken-attack")
    assert result.exit_code == 1, result.output
    assert "3 failure(s)" in result.output
    assert "simple seed=0: attack broken-attack failed: ValueError: cannot attack" in result.output
    assert "details: " in result.output and "attack_errors/broken-attack.txt" in result.output


def test_check_passes_for_the_example_plugin_and_fails_for_a_bad_name():
    result = invoke("check", "noisy-finetune", "confidence-gap", "first-images", "--model", "tiny-cnn")
    assert result.exit_code == 0, result.output
    assert result.output.count("PASS") == 6 and "FAIL" not in result.output
    bad = invoke("check", "nope")
    assert bad.exit_code == 2 and "nothing registered as nope" in bad.output


def test_seed_ranges():
    from harness.spec import seed_list

    assert seed_list("0-2,5", "--seeds") == (0, 1, 2, 5)


def test_ui_serves_the_same_store_on_loopback(monkeypatch, tmp_path):
    calls = []
    monkeypatch.setattr("os.execv", lambda exe, cmd: calls.append(cmd))
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    result = invoke("ui", "--port", "5055")
    assert result.exit_code == 0, result.output
    cmd = calls[0]
    assert cmd[1] == "-I" and cmd[2].endswith("harness/serve.py")  # `unlearn` execs into its supervisor
    assert cmd[4:7] == ["-m", "mlflow", "ui"]
    assert cmd[cmd.index("--backend-store-uri") + 1] == f"sqlite:///{tmp_path.resolve() / 'mlruns' / 'mlflow.db'}"
    assert cmd[cmd.index("--host") + 1] == "127.0.0.1" and cmd[cmd.index("--port") + 1] == "5055"
    assert cmd[cmd.index("--default-artifact-root") + 1] == (tmp_path.resolve() / "mlruns" / "artifacts").as_uri()


def test_report_without_a_store_creates_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    result = invoke("report", "--experiment", "x")
    assert result.exit_code == 1 and "no tracking store at" in result.output
    assert not (tmp_path / "mlruns").exists()


class VerdictAttacks:
    """Two attacks whose verdicts are known: one that sees membership through the loss, one blind."""

    @hookimpl
    def register_attacks(self, register):
        import numpy as np

        from harness import Metric
        from harness.stats import bootstrap_auc_ci, roc_auc

        def auc_of(scores_forget, scores_test, seed):
            y = np.r_[np.ones(len(scores_forget)), np.zeros(len(scores_test))]
            s = np.r_[scores_forget, scores_test]
            return {"auc": roc_auc(y, s), **dict(zip(("lo", "hi"), bootstrap_auc_ci(y, s, n_boot=200, seed=seed)))}

        def sees(inputs, params):  # forget scored by -loss; test by -loss too
            t = inputs.target
            return auc_of(-t.losses("forget").numpy(), -t.losses("test").numpy(), inputs.seed)

        def blind(inputs, params):  # always certain forget looks like members: fails on the held-out retrain
            return {"auc": 0.9, "lo": 0.85, "hi": 0.95}

        metrics = {"auc": Metric(target=0.5, interval=("lo", "hi")), "lo": Metric(summary=False),
                   "hi": Metric(summary=False)}
        register("sees-loss", sees, metrics=metrics)
        register("always-member", blind, metrics=metrics)
        register("needs-bank", sees, metrics=metrics, references=3)


def test_check_attacks_judges_each_attack_and_skips_what_it_cannot_run(tmp_path, monkeypatch, npz_dir):
    host = discover(extra_plugins=[("verdicts", VerdictAttacks())])
    monkeypatch.setattr("harness.plan.default_host", lambda: host)
    result = invoke("check-attacks", *SMOKE, "--data-dir", str(npz_dir), "--cache-dir", str(tmp_path / "c"),
                    "--attacks", "always-member,needs-bank", "--references", "1")
    assert result.exit_code == 1, result.output
    lines = {line.split()[0]: line for line in result.output.splitlines() if line.startswith(("always-", "needs-"))}
    assert lines["always-member"].rstrip().endswith("FAIL") and lines["needs-bank"].rstrip().endswith("SKIPPED")
    assert "misses the ideal 0.5: the attack flags a model that never saw the forget set" in result.output
    assert "needs 3 reference model(s), 1 available: run with --references 3" in result.output
    assert "1 reference model(s), held-out retrain seed 999999" in result.output
    bad = invoke("check-attacks", *SMOKE, "--data-dir", str(npz_dir), "--attacks", "nope")
    assert bad.exit_code == 2 and "unknown attack 'nope'" in bad.output


def test_a_run_skips_attacks_it_has_no_references_for_with_one_line(tmp_path, monkeypatch, npz_dir, caplog):
    host = discover(extra_plugins=[("verdicts", VerdictAttacks())])
    monkeypatch.setattr("harness.plan.default_host", lambda: host)
    monkeypatch.chdir(tmp_path)
    with caplog.at_level("WARNING"):
        result = invoke("run", *SMOKE, "--data-dir", str(npz_dir), "--cache-dir", str(tmp_path / "c"),
                        "--methods", "simple", "--param", "simple.epochs=1", "--attacks", "sees-loss,needs-bank")
    assert result.exit_code == 0, result.output
    skipped = [r.getMessage() for r in caplog.records if "skipped" in r.getMessage()]
    assert skipped == ["attack needs-bank skipped: needs 3 reference model(s), 0 available: run with --references 3 "
                       "(each is one more retrain, cached and shared by every method and later run)"]


class SelfTerminating:
    """A method that sends SIGTERM to its own process, as `docker stop` would mid-cell."""

    @hookimpl
    def register_methods(self, register):
        import os
        import signal

        from harness import Int

        def stop(model, data, params, ctx):
            os.kill(os.getpid(), signal.SIGTERM)
            return model

        register("self-terminating", stop, space={"epochs": Int(1, 2, default=1)})


def test_sigterm_ends_runs_killed_like_ctrl_c(tmp_path, monkeypatch, npz_dir, sqlite_store):
    import signal

    import mlflow

    host = discover(extra_plugins=[("stopper", SelfTerminating())])
    monkeypatch.setattr("harness.plan.default_host", lambda: host)
    monkeypatch.chdir(tmp_path)
    before = signal.getsignal(signal.SIGTERM)
    uri = sqlite_store(tmp_path / "mlflow.db")
    result = invoke("run", *SMOKE, "--data-dir", str(npz_dir), "--cache-dir", str(tmp_path / "c"), "--tracking-uri",
                    uri, "--methods", "self-terminating", "--attacks", "mia")
    assert result.exit_code == 128 + signal.SIGTERM, result.output
    assert "interrupted: runs marked KILLED" in result.output
    assert signal.getsignal(signal.SIGTERM) == before, "the handler is the command's only"
    mlflow.set_tracking_uri(uri)
    runs = mlflow.search_runs(experiment_names=["unlearning-random"], output_format="pandas")
    status = dict(zip(runs["tags.method"].fillna("parent"), runs["status"]))
    assert status == {"parent": "KILLED", "original": "FINISHED", "retrain": "FINISHED", "self-terminating": "KILLED"}


def test_protocol_lists_then_ui_view_and_an_exact_reproduction(tmp_path, monkeypatch, npz_dir, sqlite_store):
    """--scenarios and --epochs make one cell per (method, scenario, seed, budget), the terminal shows one
    table per scenario and budget, `unlearn ui` prints the comparison view's URL, and `unlearn reproduce`
    re-runs a logged cell to the same numbers; on other data it says what differs and refuses."""
    import mlflow
    import numpy as np

    from harness.testing import synthetic_arrays

    monkeypatch.chdir(tmp_path)
    uri = sqlite_store(tmp_path / "mlflow.db")
    common = ["--cache-dir", str(tmp_path / "c"), "--tracking-uri", uri]
    result = invoke("run", *SMOKE, "--data-dir", str(npz_dir), *common, "--methods", "simple", "--attacks", "mia",
                    "--scenarios", "random,class", "--epochs", "1,2")
    assert result.exit_code == 0, result.output
    for title in ("random, 1 epochs", "random, 2 epochs", "class, 1 epochs", "class, 2 epochs"):
        assert title in result.output
    mlflow.set_tracking_uri(uri)
    runs = mlflow.search_runs(experiment_names=["unlearning-random+class"], output_format="pandas")
    children = runs[runs["tags.run_kind"] == "child"]
    assert len(children) == 2 * (2 + 2) and sorted(set(children["tags.epochs"])) == ["", "1", "2"]
    cell = children[(children["tags.scenario"] == "class") & (children["tags.epochs"] == "2")].iloc[0]
    assert cell["tags.mlflow.runName"] == "simple e=2 class seed=0" and cell["params.epochs"] == "2"

    calls = []
    monkeypatch.setattr("os.execv", lambda exe, cmd: calls.append(cmd))
    shown = invoke("ui", "--tracking-uri", uri, "--port", "5055")
    assert shown.exit_code == 0 and calls
    assert f"#/experiments/{cell['experiment_id']}/runs?viewStateShareKey=benchmark" in shown.output

    again = invoke("reproduce", cell["run_id"], "--data-dir", str(npz_dir), *common, "--quiet")
    assert again.exit_code == 0, again.output
    assert "metrics reproduced exactly" in again.output and "DIFFERS" not in again.output
    assert "mia/auc" in again.output and "(timing)" in again.output

    other = tmp_path / "other"
    other.mkdir()
    arrays = synthetic_arrays(500, 450)
    arrays["x_train"] = np.ascontiguousarray(arrays["x_train"][:, ::-1])  # the same labels, other pixels
    np.savez(other / "cifar10.npz", **arrays)
    refused = invoke("reproduce", cell["run_id"], "--data-dir", str(other), *common, "--quiet")
    assert refused.exit_code == 1 and "data fingerprint" in refused.output and "logged" in refused.output


def test_a_worker_for_a_benchmark_nobody_published_says_so(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = invoke("worker", "--benchmark", "nope", "--storage", f"journal:{tmp_path / 'q.log'}", "--wait", "0")
    assert result.exit_code == 1 and "no benchmark named 'nope'" in result.output
    assert "unlearn run --benchmark nope" in result.output and "Traceback" not in result.output


def test_a_worker_takes_its_store_from_mlflow_tracking_uri(tmp_path, monkeypatch):
    """Like every other command: a worker behind a tunnel sets MLFLOW_TRACKING_URI, not the publisher's URL."""
    seen = []

    def join(name, handle, local, **kwargs):
        seen.append(local.tracking_uri)
        raise SystemExit(0)

    monkeypatch.setattr("harness.fleet.benchmark.join", join)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5999")
    invoke("worker", "--benchmark", "b", "--storage", f"journal:{tmp_path / 'q.log'}")
    invoke("worker", "--benchmark", "b", "--storage", f"journal:{tmp_path / 'q.log'}", "--tracking-uri", "http://x:1")
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    invoke("worker", "--benchmark", "b", "--storage", f"journal:{tmp_path / 'q.log'}")
    assert seen == ["http://127.0.0.1:5999", "http://x:1", None]  # None: the one published
