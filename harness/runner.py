"""`unlearn run`: for each seed, build the split, get the original and retrain models, run every method,
evaluate once, attack, and log everything as one parent run with a child run per (method, seed)."""
from __future__ import annotations

import copy
import hashlib
import json
import logging
import traceback
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import pandas as pd
from torch import nn

from . import __version__, engine
from .cache import ModelCache
from .context import Context, UnlearningData
from .data import cache_dir, load_cifar10
from .evaluation import AttackInput, Outputs, model_outputs, run_attacks, utility_metrics
from .host import Host, default_host
from .profiles import PROFILES, Profile, default_profile_name
from .registry import Attack, Method, UnknownComponent
from .scratch import ScratchTrainer
from .splits import Split, make_split
from .tracking import FAILED, FINISHED, KILLED, MemoryTracker, git_commit

log = logging.getLogger(__name__)
ORIGINAL_SEED = 0  # one original model per (data, training pool, model, recipe): shared by all split seeds
REFERENCE = "retrain"
SUMMARY_COLUMNS = ["acc_retain", "acc_forget", "acc_validation", "acc_test", "forget_val_ratio", "mia_auc",
                   "mia_signed_auc", "unlearn_seconds", "pct_retrain_time"]


@dataclass
class RunConfig:
    methods: list[str] | None = None  # None: every registered method
    scenario: str = "random"
    seeds: list[int] = field(default_factory=lambda: [0])
    profile: str | None = None  # None: 'paper' with CUDA, else 'cpu'
    precision: str | None = None  # None: the profile's ("bf16" or "fp32")
    model: str = "resnet18"
    attacks: list[str] | None = None  # None: every registered attack
    method_params: dict[str, dict[str, Any]] = field(default_factory=dict)
    scenario_options: dict[str, Any] = field(default_factory=dict)
    data_dir: str | None = None
    cache_dir: str | None = None
    device: str | None = None
    experiment: str | None = None  # None: one experiment per scenario
    log_models: bool = True
    show_progress: bool = True
    resume: bool = False
    epoch_eval_size: int | None = 2000
    command: str | None = None  # the command line, kept as a tag so reports can say how to regenerate them


@dataclass
class Plan:
    """A validated configuration: every name resolved, every parameter checked, before any work."""

    config: RunConfig
    profile: Profile
    methods: list[Method]
    params: dict[str, dict]
    attacks: list[Attack]
    scenario: Any
    model: Any

    @property
    def experiment(self) -> str:
        return self.config.experiment or f"unlearning-{self.scenario.name}"


@dataclass
class RunResult:
    rows: list[dict]
    failures: list[dict]
    parent_run_id: str | None
    split_hashes: dict[int, str]

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.rows)

    def summary(self) -> pd.DataFrame:
        """Mean and standard deviation over seeds, one row per method (original first)."""
        df = self.frame()
        if df.empty:
            return df
        df = df[df["status"] == FINISHED]
        cols = [c for c in SUMMARY_COLUMNS if c in df.columns]
        grouped = df.groupby("method", sort=False)[cols]
        mean, std = grouped.mean(), grouped.std(ddof=1).fillna(0.0)
        out = mean.copy()
        for c in cols:
            out[f"{c}_std"] = std[c]
        out.insert(0, "seeds", grouped.size())
        return out


class UsageError(ValueError):
    """Bad names or parameters: reported with exit status 2."""


def plan(config: RunConfig, host: Host | None = None) -> Plan:
    host = host or default_host()
    profile_name = config.profile or default_profile_name()
    if profile_name not in PROFILES:
        raise UsageError(str(UnknownComponent("profile", profile_name, sorted(PROFILES))))
    try:
        names = config.methods or host.methods.names()
        names = [REFERENCE, *[n for n in names if n != REFERENCE]]  # every comparison needs the reference first
        methods = [host.methods.get(n) for n in dict.fromkeys(names)]
        unknown_params = set(config.method_params) - {m.name for m in methods}
        if unknown_params:
            raise UsageError(f"parameters given for method(s) not in this run: {', '.join(sorted(unknown_params))}")
        params = {m.name: m.resolve(config.method_params.get(m.name)) for m in methods}
        attacks = [host.attacks.get(n) for n in (config.attacks or host.attacks.names())]
        scenario = host.scenarios.get(config.scenario)
        model = host.models.get(config.model)
    except (LookupError, ValueError) as exc:
        raise UsageError(str(exc)) from None
    if not config.seeds:
        raise UsageError("no seeds given")
    profile = PROFILES[profile_name]
    if config.precision is not None:
        if config.precision not in ("bf16", "fp32"):
            raise UsageError(f"unknown precision {config.precision!r}. Valid precisions: bf16, fp32")
        profile = replace(profile, precision=config.precision)
    return Plan(config, profile, methods, params, attacks, scenario, model)


def config_hash(p: Plan, fingerprint: str) -> str:
    blob = json.dumps({
        "methods": [m.name for m in p.methods], "params": p.params, "attacks": [a.name for a in p.attacks],
        "scenario": p.scenario.name, "options": p.config.scenario_options, "seeds": p.config.seeds,
        "profile": p.profile.as_dict(), "model": p.model.name, "data": fingerprint,
    }, sort_keys=True, default=str)
    return hashlib.blake2b(blob.encode(), digest_size=8).hexdigest()


def run(config: RunConfig, host: Host | None = None, tracker=None) -> RunResult:
    p = plan(config, host)
    return Runner(p, tracker if tracker is not None else MemoryTracker()).run()


class Runner:
    def __init__(self, p: Plan, tracker):
        self.p, self.tracker, self.cfg = p, tracker, p.config
        self.compute = engine.Compute(engine.resolve_device(self.cfg.device), p.profile.precision,
                                      p.profile.channels_last)
        self.rows: list[dict] = []
        self.failures: list[dict] = []
        self.active = None  # the child run in progress, ended as KILLED on Ctrl-C

    # -- the whole run ---------------------------------------------------------------------------------
    def run(self) -> RunResult:
        cfg, p = self.cfg, self.p
        data = load_cifar10(cfg.data_dir, cfg.cache_dir).to(self.compute.device)
        num_classes = data.num_classes
        self.data = data
        self.factory = lambda: p.model.fn(num_classes)
        self.trainer = ScratchTrainer(data, self.compute, p.model.name, self.factory, p.profile.recipe,
                                      ModelCache(cache_dir(cfg.cache_dir) / "models"), cfg.show_progress)
        chash = config_hash(p, data.fingerprint)
        done: dict[tuple[str, int], dict] = {}
        parent_id = self.tracker.find_resumable(chash) if cfg.resume else None
        if parent_id is not None:
            parent = self.tracker.reopen(parent_id)
            for child in self.tracker.finished_children(parent_id):
                done[(child["tags"]["method"], int(child["tags"]["seed"]))] = child["metrics"]
            log.info("resuming run %s: %d finished child runs reused", parent_id, len(done))
        else:
            parent = self.tracker.start_parent(
                f"{p.profile.name}-{p.scenario.name}",
                tags=self._tags(run_kind="parent", config_hash=chash, command=cfg.command))
            parent.log_params(self._parent_params(data))
            parent.log_dict(self._config_dict(data), "config.json")
        self.parent = parent
        split_hashes: dict[int, str] = {}
        try:
            for seed in cfg.seeds:
                split = make_split(data, p.profile, p.scenario, seed, cfg.scenario_options)
                split_hashes[seed] = split.hash
                self._run_seed(split, done)
        except KeyboardInterrupt:
            if self.active is not None:
                self.active.end(KILLED)
            parent.set_tags({"interrupted": "true"})
            parent.end(KILLED)
            raise
        except BaseException:
            if self.active is not None:
                self.active.end(FAILED)
            parent.log_text(traceback.format_exc(), "traceback.txt")
            parent.end(FAILED)
            raise
        result = RunResult(self.rows, self.failures, getattr(parent, "run_id", None), split_hashes)
        self._log_summary(parent, result)
        parent.end(FAILED if self.failures else FINISHED)
        return result

    # -- one seed ----------------------------------------------------------------------------------------
    def _run_seed(self, split: Split, done: dict) -> None:
        seed, data = split.seed, self.data
        original, meta = self.trainer.get(split.train, ORIGINAL_SEED, desc="original")
        for param in original.parameters():
            param.requires_grad_(False)
        original_out = model_outputs(original, data, split, self.compute)
        if ("original", seed) in done:
            self._add_row("original", seed, FINISHED, done[("original", seed)])
        else:
            self._log_reference(split, original, meta, original_out)

        retrain_out: Outputs | None = None
        retrain_seconds: float | None = None
        for method in self.p.methods:
            key = (method.name, seed)
            if key in done:
                self._add_row(method.name, seed, FINISHED, done[key])
                if method.name == REFERENCE:
                    model, rmeta = self.trainer.get(split.retain, seed, epochs=self.p.params[REFERENCE]["epochs"] or None)
                    retrain_out = model_outputs(model, data, split, self.compute)
                    retrain_seconds = done[key].get("unlearn_seconds", rmeta["train_seconds"])
                continue
            outcome = self._run_method(method, split, original, original_out, retrain_out, retrain_seconds)
            if method.name == REFERENCE:
                if outcome is None:
                    raise RuntimeError("the retrain reference failed; nothing can be compared without it")
                retrain_out, retrain_seconds = outcome

    def _run_method(self, method: Method, split: Split, original: nn.Module, original_out: Outputs,
                    retrain_out: Outputs | None, retrain_seconds: float | None):
        seed, params = split.seed, self.p.params[method.name]
        child = self.tracker.start_child(self.parent, f"{method.name} seed={seed}",
                                         tags=self._tags(run_kind="child", method=method.name, seed=seed,
                                                         split_hash=split.hash))
        self.active = child
        child.log_params({**params, **self._split_params(split)})
        try:
            frozen = copy.deepcopy(original).eval()
            model = copy.deepcopy(original)
            for param in model.parameters():
                param.requires_grad_(True)
            unlearning_data = UnlearningData(self.data, split.retain, split.forget, split.validation, frozen)
            engine.seed_everything(seed)
            ctx = Context(unlearning_data, self.compute, seed, self.factory,
                          log_metrics=lambda m, step: child.log_metrics(m, step=step),
                          show_progress=self.cfg.show_progress, epoch_eval_size=self.cfg.epoch_eval_size,
                          scratch=self.trainer.get)
            clock = engine.Stopwatch(self.compute.device)
            start = clock.now()
            result = method.fn(model, unlearning_data, dict(params), ctx)
            elapsed = clock.now() - start - ctx.overhead_s + ctx.cached_s
            if not isinstance(result, nn.Module):
                raise TypeError(f"method {method.name!r} returned {type(result).__name__}, expected a torch.nn.Module")
            result.eval()
            out = model_outputs(result, self.data, split, self.compute)
            if method.name == REFERENCE:
                retrain_out, retrain_seconds = out, elapsed
            metrics = utility_metrics(out, retrain_out)
            attack_metrics, attack_errors = run_attacks(self.p.attacks, AttackInput(
                out, original_out, retrain_out, seed, split.scenario, split.info))
            metrics.update(attack_metrics)
            metrics["unlearn_seconds"] = elapsed
            metrics["eval_overhead_seconds"] = ctx.overhead_s
            if retrain_seconds:
                metrics["pct_retrain_time"] = 100.0 * elapsed / retrain_seconds
            child.log_metrics(metrics)
            for name, tb in attack_errors.items():
                child.log_text(tb, f"attack_errors/{name}.txt")
            if method.name == REFERENCE and self.cfg.log_models:
                child.log_artifact(self.trainer.cache.path(self.trainer.key(
                    split.retain, seed, params["epochs"] or self.p.profile.recipe.epochs)), "model")
            child.end(FINISHED)
            self.active = None
            self._add_row(method.name, seed, FINISHED, metrics)
            log.info("%s seed=%d: %.1f s (%s%% of retrain), retain %.3f forget %.3f valid %.3f, ratio %.3f, MIA AUC %.3f",
                     method.name, seed, elapsed, f"{metrics.get('pct_retrain_time', float('nan')):.1f}",
                     metrics["acc_retain"], metrics["acc_forget"], metrics["acc_validation"],
                     metrics.get("forget_val_ratio", float("nan")), metrics.get("mia_auc", float("nan")))
            return out, elapsed
        except KeyboardInterrupt:
            raise
        except Exception as exc:
            child.log_text(traceback.format_exc(), "traceback.txt")
            child.set_tags({"error": f"{type(exc).__name__}: {exc}"[:500]})
            child.end(FAILED)
            self.active = None
            log.error("method %s failed on seed %d: %s: %s", method.name, seed, type(exc).__name__, exc)
            self.failures.append({"method": method.name, "seed": seed, "error": f"{type(exc).__name__}: {exc}"})
            self._add_row(method.name, seed, FAILED, {})
            return None

    def _log_reference(self, split: Split, original: nn.Module, meta: dict, out: Outputs) -> None:
        child = self.tracker.start_child(self.parent, f"original seed={split.seed}",
                                         tags=self._tags(run_kind="child", method="original", seed=split.seed,
                                                         split_hash=split.hash, cached=meta["cached"]))
        self.active = child
        child.log_params({"train_seed": ORIGINAL_SEED, **self.p.profile.recipe.as_dict(), **self._split_params(split)})
        for row in meta.get("history", []):
            child.log_metrics({"train_loss": row["loss"], "train_acc": row["acc"]}, step=row["epoch"])
        metrics = utility_metrics(out)
        attack_metrics, _ = run_attacks(self.p.attacks, AttackInput(out, out, None, split.seed, split.scenario, split.info))
        metrics.update(attack_metrics)
        metrics["train_seconds"] = float(meta["train_seconds"])
        child.log_metrics(metrics)
        if self.cfg.log_models and split.seed == self.cfg.seeds[0]:
            child.log_artifact(self.trainer.cache.path(meta["cache_key"]), "model")
        child.end(FINISHED)
        self.active = None
        self._add_row("original", split.seed, FINISHED, metrics)
        log.info("original seed=%d: trained in %.1f s (cached: %s), retain %.3f forget %.3f valid %.3f, ratio %.3f, "
                 "MIA AUC %.3f", split.seed, metrics["train_seconds"], meta["cached"], metrics["acc_retain"],
                 metrics["acc_forget"], metrics["acc_validation"], metrics.get("forget_val_ratio", float("nan")),
                 metrics.get("mia_auc", float("nan")))

    # -- bookkeeping ---------------------------------------------------------------------------------
    def _add_row(self, method: str, seed: int, status: str, metrics: dict) -> None:
        self.rows.append({"method": method, "seed": seed, "status": status, **metrics})

    def _tags(self, **extra) -> dict:
        return {"harness_version": __version__, "git_commit": git_commit(), "device": str(self.compute.device),
                "profile": self.p.profile.name, "scenario": self.p.scenario.name, "model": self.p.model.name,
                **extra}

    def _split_params(self, split: Split) -> dict:
        return {"seed": split.seed, "scenario": split.scenario, "profile": self.p.profile.name,
                "split_hash": split.hash, "model": self.p.model.name, "precision": self.compute.precision,
                **{f"n_{k}": v for k, v in split.sizes().items()},
                **{f"scenario_{k}": v for k, v in {**split.options, **split.info}.items()}}

    def _parent_params(self, data) -> dict:
        return {"methods": ",".join(m.name for m in self.p.methods), "attacks": ",".join(a.name for a in self.p.attacks),
                "scenario": self.p.scenario.name, "seeds": ",".join(map(str, self.cfg.seeds)),
                "profile": self.p.profile.name, "model": self.p.model.name, "data_fingerprint": data.fingerprint,
                **{f"recipe.{k}": v for k, v in self.p.profile.recipe.as_dict().items()},
                "train_size": self.p.profile.train_size, "precision": self.compute.precision}

    def _config_dict(self, data) -> dict:
        return {"config": asdict(self.cfg), "profile": self.p.profile.as_dict(), "params": self.p.params,
                "data": {"source": data.source, "fingerprint": data.fingerprint}}

    def _log_summary(self, parent, result: RunResult) -> None:
        frame, summary = result.frame(), result.summary()
        if frame.empty:
            return
        parent.log_table(frame, "results.json")
        parent.log_text(summary.to_csv(), "summary.csv")
        if result.failures:
            parent.log_dict(result.failures, "failures.json")
        try:
            from .report import summary_figure

            figure = summary_figure(summary)
            parent.log_figure(figure, "summary.png")
        except Exception as exc:  # a plotting problem must not fail a finished benchmark
            log.warning("summary figure not logged: %s", exc)
