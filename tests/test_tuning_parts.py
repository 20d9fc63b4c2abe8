"""The parts of tuning on their own: space narrowing, objectives and the Pareto rule, storages and dead
workers, the TOML config files."""
from __future__ import annotations

import itertools
import math
import subprocess
import sys

import numpy as np
import optuna
import pytest

from harness.config_file import dump_toml
from harness.fleet.storage import StorageError, fail_dead_local_trials, resolve_storage, worker_id
from harness.metrics import Metric
from harness.params import Choice, Float, Int
from harness.registry import Method
from harness.spec import Spec, UsageError, read_run_file
from harness.tuning.holdout import choose, judge
from harness.tuning.objective import Objective, normalised_distance, pareto_front
from harness.tuning.space import SpaceError, declared_space, narrowed_space

METHOD = Method(name="m", fn=lambda *a: None, space={
    "epochs": Int(1, 30, default=4),
    "lr": Float(1e-5, 1e-1, default=1e-3, log=True),
    "layers": Choice(["conv1", "all"], default="conv1"),
    "momentum": Float(0.0, 0.99, default=0.9, tune=False),
})


# -- space -----------------------------------------------------------------------------------------------
def test_declared_space_tunes_what_the_method_declares_tunable():
    space = declared_space(METHOD)
    assert set(space.tuned) == {"epochs", "lr", "layers"} and space.fixed == {}
    assert space.defaults == {"epochs": 4, "lr": 1e-3, "layers": "conv1", "momentum": 0.9}


def test_narrowing_fixing_and_tuning_a_declared_untuned_parameter():
    space = narrowed_space(METHOD, {"epochs": {"low": 2, "high": 6}, "layers": "all",
                                    "momentum": {"low": 0.5, "high": 0.95}, "lr": {"low": 1e-4}})
    assert (space.tuned["epochs"].low, space.tuned["epochs"].high) == (2, 6)
    assert space.tuned["lr"].low == 1e-4 and space.tuned["lr"].high == 1e-1 and space.tuned["lr"].log
    assert "momentum" in space.tuned and "layers" not in space.tuned
    assert space.fixed == {"layers": "all"} and space.defaults["layers"] == "all"
    trial = optuna.create_study().ask()
    params = space.sample(trial)
    assert 2 <= params["epochs"] <= 6 and 0.5 <= params["momentum"] <= 0.95 and params["layers"] == "all"


@pytest.mark.parametrize("overrides, message", [
    ({"epoch": 3}, "unknown parameter(s) epoch; declared: epochs, layers, lr, momentum"),
    ({"epochs": {"low": 0, "high": 5}}, "outside the declared range"),
    ({"epochs": {"low": 6, "high": 2}}, "low 6 is above high 2"),
    ({"epochs": {"low": 1.5}}, "bounds must be integers"),
    ({"epochs": {"lo": 1}}, "got keys lo"),
    ({"layers": {"choices": ["conv2"]}}, "not among the declared"),
    ({"epochs": 99}, "out of range"),
    ({"epochs": 3, "lr": 0.01, "layers": "all"}, "nothing left to tune"),
])
def test_bad_spaces_are_refused_with_the_reason(overrides, message):
    with pytest.raises(SpaceError) as err:
        narrowed_space(METHOD, overrides)
    assert message in str(err.value)


# -- objectives ------------------------------------------------------------------------------------------
OBJECTIVE = Objective("pareto", "mia/signed_auc", Metric(target=0.5), tolerance=0.03, time_budget=20.0)


def test_signals_distances_and_constraints():
    s = OBJECTIVE.signals({"forget_val_ratio": 1.2, "mia/signed_auc": 0.45, "acc_validation": 0.46,
                           "pct_retrain_time": 25.0}, original_validation=0.5)
    assert s.ratio == pytest.approx(0.2) and s.attack == pytest.approx(0.05)
    assert s.utility == pytest.approx(0.01) and s.time == pytest.approx(0.05) and not s.feasible
    assert s.score == pytest.approx(0.2 + 2 * 0.05 + 10 * (0.01 + 0.05))
    ok = OBJECTIVE.signals({"forget_val_ratio": 1.0, "mia/signed_auc": 0.5, "acc_validation": 0.48,
                            "pct_retrain_time": 10.0}, original_validation=0.5)
    assert ok.feasible and ok.score == 0 and OBJECTIVE.values(ok) == [0.0, 0.0]


def test_pareto_front_matches_a_brute_force_definition():
    rng = np.random.default_rng(0)
    points = [tuple(p) for p in rng.integers(0, 6, size=(40, 2)).tolist()]
    dominated = {i for i, j in itertools.permutations(range(len(points)), 2)
                 if all(a <= b for a, b in zip(points[j], points[i])) and points[j] != points[i]}
    assert pareto_front(points) == [i for i in range(len(points)) if i not in dominated]


def _row(number, ratio, attack, feasible=True, state="COMPLETE", params=None):
    return {"number": number, "state": state, "values": [ratio, attack], "feasible": feasible,
            "objective": {"ratio": ratio, "attack": attack}, "params": params or {"x": number}}


def test_choose_takes_the_feasible_front_point_nearest_the_ideal_after_normalising():
    original = {"objective/ratio": 1.0, "objective/attack": 0.4}
    rows = [_row(0, 0.05, 0.30), _row(1, 0.30, 0.02), _row(2, 0.01, 0.01, feasible=False),
            _row(3, 0.40, 0.35), _row(4, 0.0, 0.0, state="PRUNED", feasible=None)]
    best = choose(rows, "pareto", original)
    # normalised: trial 0 -> hypot(0.05, 0.75) = 0.75; trial 1 -> hypot(0.3, 0.05) = 0.30
    assert best["number"] == 1 and sorted(best["front"]) == [0, 1]
    assert best["distance"] == pytest.approx(normalised_distance(0.30, 0.02, 1.0, 0.4))
    # nothing feasible: the least violating complete trial, for the record only
    rows = [{**_row(0, 0.1, 0.1, feasible=False), "constraints": {"utility": 0.05, "time": -0.1}},
            {**_row(1, 0.0, 0.0, feasible=False), "constraints": {"utility": 0.30, "time": -0.1}},
            {**_row(2, 0.0, 0.0, state="PRUNED", feasible=None), "constraints": {"time": 1.01}}]
    closest = choose(rows, "pareto", original)
    assert closest["number"] == 0 and closest["infeasible"]
    assert "nothing to recommend" in judge([], OBJECTIVE, closest)["verdict"]
    assert judge([], OBJECTIVE, closest)["recommended"] == "default"
    assert choose([rows[2]], "pareto", original) is None


def _holdout(config, seed, ratio, auc, valid=0.5, pct=10.0):
    return {"config": config, "seed": seed, "status": "FINISHED", "forget_val_ratio": ratio, "mia/signed_auc": auc,
            "acc_validation": valid, "pct_retrain_time": pct, "acc_forget": ratio * valid}


def test_judge_recommends_only_a_feasible_configuration_better_on_held_out_seeds():
    original = [_holdout("original", s, 2.0, 0.9) for s in (1, 2)]
    better = original + [_holdout("default", s, 1.4, 0.65) for s in (1, 2)] + \
        [_holdout("tuned", s, 1.05, 0.52) for s in (1, 2)]
    verdict = judge(better, OBJECTIVE, {"number": 3})
    assert verdict["recommended"] == "tuned" and "2 of 2 seeds" in verdict["verdict"]
    assert verdict["summary"]["tuned"]["distance"][0] < verdict["summary"]["default"]["distance"][0]

    worse = original + [_holdout("default", s, 1.1, 0.55) for s in (1, 2)] + \
        [_holdout("tuned", s, 1.3, 0.6) for s in (1, 2)]
    assert judge(worse, OBJECTIVE, {"number": 3})["recommended"] == "default"
    broken = original + [_holdout("default", s, 1.4, 0.65) for s in (1, 2)] + \
        [_holdout("tuned", s, 1.0, 0.5, valid=0.3) for s in (1, 2)]  # ideal numbers, but utility is gone
    result = judge(broken, OBJECTIVE, {"number": 3})
    assert result["recommended"] == "default" and "breaks a constraint" in result["verdict"]


# -- storages --------------------------------------------------------------------------------------------
def test_storage_defaults_and_refusals(tmp_path):
    assert resolve_storage(None, 1, tmp_path).url == f"sqlite:///{tmp_path / 'optuna.db'}"
    assert resolve_storage(None, 2, tmp_path).kind == "journal"
    with pytest.raises(StorageError, match="not for parallel workers"):
        resolve_storage(f"sqlite:///{tmp_path}/s.db", 2, tmp_path)
    with pytest.raises(StorageError, match="not a valid URL"):
        resolve_storage("postgres//nohost", 1, tmp_path)
    with pytest.raises(StorageError, match="name the journal file"):
        resolve_storage(f"journal:{tmp_path}", 1, tmp_path)
    with pytest.raises(StorageError, match="unreachable") as err:
        resolve_storage("postgresql+psycopg2://me:secret@127.0.0.1:1/db", 1, tmp_path)
    assert "secret" not in str(err.value)
    assert not list(tmp_path.iterdir())  # nothing created by checking


@pytest.mark.slow
def test_a_running_trial_of_a_dead_local_worker_is_failed_and_queued_again(tmp_path):
    study = optuna.create_study(storage=f"sqlite:///{tmp_path}/s.db")
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    trial = study.ask()
    trial.suggest_float("x", 0, 1)
    trial.set_user_attr("worker", worker_id().rsplit(":", 1)[0] + ":" + dead.stdout.strip())
    mine = study.ask()
    mine.set_user_attr("worker", worker_id())  # this process: alive, left alone
    killed = []
    assert fail_dead_local_trials(study, lambda t, reason: killed.append((t.number, reason))) == 1
    states = {t.number: t.state.name for t in study.get_trials()}
    assert states == {0: "FAIL", 1: "RUNNING", 2: "WAITING"} and killed[0][0] == 0
    retry = study.get_trials()[2]
    assert retry.params == study.get_trials()[0].params and retry.system_attrs["failed_trial"] == 0


# -- config files ----------------------------------------------------------------------------------------
def test_toml_written_by_the_harness_reads_back(tmp_path):
    data = {"methods": ["deviation"], "profile": "cpu", "seeds": [1, 2],
            "params": {"deviation": {"sigma": 1e-05, "layers": "all", "epochs": 4, "flag": True, "x": math.inf}},
            "scenario_options": {}}
    path = tmp_path / "c.toml"
    path.write_text(dump_toml(data, ["a header line"]))
    spec, site = read_run_file(path)
    assert site == {} and Spec.from_dict(spec) == Spec(methods=("deviation",), profile="cpu", seeds=(1, 2),
                                                         params=data["params"])


def test_spec_and_its_dict_round_trip_through_json_and_toml(tmp_path):
    """The one serialiser: what config.json, a benchmark's study and a tuning worker store reads back to
    the same spec, and so does its TOML form."""
    import json

    spec = Spec(methods=("simple", "rotate"), params={"simple": {"epochs": 3}}, scenarios=("random", "class"),
                scenario_options={"target_class": "cat"}, seeds=(0, 4), epochs=(2, 5.5), profile="cpu",
                precision="bf16", attacks=(), attack_options={"mia": {"folds": 5}}, bank_size=2, heldout_part="tune")
    assert Spec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec
    path = tmp_path / "spec.toml"
    path.write_text(dump_toml({k: v for k, v in spec.to_dict().items() if v is not None}))
    assert Spec.from_dict(read_run_file(path)[0]) == spec


@pytest.mark.parametrize("text, message", [
    ("methodz = 'x'\n", "unknown key 'methodz'; valid keys: attack_options, attacks, bank_size"),
    ("params = 3\n", "params must be a table"),
    ("[params]\nsigma = 0.3\n", "one table per component"),
    ("methods = [\n", "config file"),
    ("seeds = '2-1'\n", "the range is empty"),
    ("references = 2\nbank_size = 3\n", "given twice"),
])
def test_bad_config_files_are_refused(tmp_path, text, message):
    path = tmp_path / "c.toml"
    path.write_text(text)
    with pytest.raises(UsageError) as err:
        read_run_file(path)
    assert message in str(err.value)
    with pytest.raises(UsageError, match="does not exist"):
        read_run_file(tmp_path / "missing.toml")


# -- dashboard -------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_dashboard_serves_a_journal_study_on_loopback(tmp_path):
    import json
    import socket
    import time
    import urllib.request

    from optuna.storages.journal import JournalFileBackend

    journal = tmp_path / "studies.log"
    storage = optuna.storages.JournalStorage(JournalFileBackend(str(journal)))
    optuna.create_study(study_name="seen", storage=storage).optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=1)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "harness.cli", "dashboard", "--storage", f"journal:{journal}",
                             "--port", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline, body = time.monotonic() + 30, None
        while body is None and time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/studies", timeout=2) as resp:
                    body = json.load(resp)
            except OSError:
                time.sleep(0.3)
        assert body is not None, "the dashboard did not answer"
        assert [s["study_name"] for s in body["study_summaries"]] == ["seen"]
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_processes_sharing_a_study_draw_different_start_up_points(monkeypatch):
    """Seen on PostgreSQL: two machines, each `--workers 1`, both seeded 0, sampled the same first trials."""
    from harness.tuning.study import sampler_seed

    monkeypatch.delenv("HARNESS_TUNE_WORKER", raising=False)
    assert sampler_seed(7, 1, "sqlite") == sampler_seed(7, 1, "journal") == 7  # the study's only process
    shared = sampler_seed(7, 1, "rdb")
    assert shared != 7 and sampler_seed(7, 2, "sqlite") != 7
    monkeypatch.setattr("socket.gethostname", lambda: "other-machine")  # same pid, another container
    assert sampler_seed(7, 1, "rdb") != shared
    monkeypatch.setenv("HARNESS_TUNE_WORKER", "1")
    assert sampler_seed(7, 1, "sqlite") != 7
