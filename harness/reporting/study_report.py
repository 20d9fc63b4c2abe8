"""A study in words and tables: the terminal summary of `unlearn tune` and the markdown of `unlearn report`.

Both read the plain data `finish` logs as the parent's tuning.json, so a report can be regenerated from
the MLflow store alone.
"""
from __future__ import annotations

import math

from ..metrics import UTILITY
from ..tracking import shown_uri

HOLDOUT_COLUMNS = [("acc_retain", "retain"), ("acc_forget", "forget"), ("acc_validation", "valid"),
                   ("forget_val_ratio", "F/V ratio"), (None, "attack"), ("pct_retrain_time", "% retrain"),
                   ("gap_acc_forget", "forget gap to retrain"), ("distance", "distance"),
                   ("feasible_seeds", "feasible seeds")]


def _ms(value, fmt: str = "{:.3f}") -> str:
    if value is None:
        return "-"
    if isinstance(value, list):
        mean, std = value
        if mean is None or (isinstance(mean, float) and math.isnan(mean)):
            return "-"
        return f"{fmt.format(mean)} ± {fmt.format(std)}"
    return str(value)


def _params(params: dict | None) -> str:
    if not params:
        return "-"
    return ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items())


def holdout_table(summary: dict) -> list[str]:
    attack = summary["objective"]["attack_metric"]
    stats = summary["summary"]
    header = [label if key else attack for key, label in HOLDOUT_COLUMNS]
    lines = ["| config | " + " | ".join(header) + " |", "|---|" + "---|" * len(header)]
    for config in ("original", "retrain", "default", "tuned"):
        if config not in stats:
            continue
        s = stats[config]
        cells = []
        for key, _ in HOLDOUT_COLUMNS:
            key = key or attack
            value = s.get(key)
            fmt = "{:.1f}" if key == "pct_retrain_time" else "{:.3f}"
            if key == "feasible_seeds":
                cells.append(f"{value} of {len(summary['holdout_seeds'])}" if value is not None else "-")
            elif config in ("original", "retrain") and key in ("pct_retrain_time", "distance", "gap_acc_forget"):
                cells.append("-" if config == "original" or key != "pct_retrain_time" else "100")
            else:
                cells.append(_ms(value, fmt))
        lines.append(f"| {config} | " + " | ".join(cells) + " |")
    return lines


def params_table(summary: dict) -> list[str]:
    space = summary["space"]
    tuned = summary.get("tuned_params") or {}
    lines = ["| parameter | searched | default | tuned |", "|---|---|---|---|"]
    for name, default in summary["defaults"].items():
        if name in space["tuned"]:
            d = space["tuned"][name]
            searched = (f"{d['choices']}" if "choices" in d
                        else f"[{d['low']:g}, {d['high']:g}]{' log' if d.get('log') else ''}")
        elif name in space["fixed"]:
            searched = "fixed"
        else:
            searched = "not tuned"
        t = tuned.get(name, "-")

        def fmt(v):
            return f"{v:.4g}" if isinstance(v, float) else str(v)
        lines.append(f"| {name} | {searched} | {fmt(default)} | {fmt(t)}{' *' if t != default and t != '-' else ''} |")
    return lines


def trials_table(summary: dict) -> list[str]:
    attack = summary["objective"]["attack_metric"]
    names = list(summary["space"]["tuned"])
    lines = ["| # | state | " + " | ".join(names) + f" | F/V ratio | {attack} | valid | % retrain | feasible | note |",
             "|---|---|" + "---|" * (len(names) + 6)]
    chosen = (summary.get("chosen") or {}).get("number")
    front = set((summary.get("chosen") or {}).get("front") or [])
    for r in summary["trials"]:
        m = r["metrics"]
        p = [f"{r['params'][n]:.4g}" if isinstance(r["params"].get(n), float) else str(r["params"].get(n, "-"))
             for n in names]
        note = []
        if r.get("baseline"):
            note.append("defaults")
        if r["number"] == chosen:
            note.append("**chosen**")
        elif r["number"] in front:
            note.append("Pareto")
        if r["state"] != "COMPLETE" and r.get("reason"):
            note.append(r["reason"][:90])
        get = lambda k, f="{:.3f}", m=m: f.format(m[k]) if k in m else "-"  # noqa: E731
        feasible = "-" if r["feasible"] is None else ("yes" if r["feasible"] else "no")
        lines.append(f"| {r['number']} | {r['state']} | " + " | ".join(p) + f" | {get('forget_val_ratio')} | "
                     f"{get(attack)} | {get('acc_validation')} | {get('pct_retrain_time', '{:.1f}')} | {feasible} | "
                     f"{'; '.join(note)} |")
    return lines


def facts(summary: dict) -> list[str]:
    o, c, pr = summary["objective"], summary["counts"], summary["pruning"]
    label = UTILITY["forget_val_ratio"].label
    goal = (f"Pareto: minimise |{label} - 1| and the distance of {o['attack_metric']} to its ideal"
            if o["kind"] == "pareto" else "score = |ratio - 1| + 2 * attack distance + 10 * constraint violations")
    counts = ", ".join(f"{k} {v}" for k, v in c.items() if k != "feasible")
    return [
        f"- study `{summary['study']}` in `{shown_uri(summary['storage'])}`",
        f"- {summary['profile']} profile, {summary['scenario']} scenario, {summary['device']}, {summary['precision']}",
        f"- objective: {goal}; constraints: validation accuracy at least the original's minus "
        f"{o['tolerance']:g}, time at most {o['time_budget']:g}% of a retrain",
        f"- tuned on seed(s) {', '.join(map(str, summary['tuning_seeds']))} (validation and test from the 'tune' half "
        f"of the held-out images); judged on seeds {', '.join(map(str, summary['holdout_seeds']))} ('judge' half)",
        f"- trials: {len(summary['trials'])} ({counts}), {c['feasible']} feasible; pruned {pr['pruned']} "
        f"({', '.join(f'{k}: {v}' for k, v in pr['reasons'].items()) or 'none'}), "
        f"which ran {pr['pruned_seconds']:.0f} s "
        f"and saved about {pr['saved_seconds_estimate']:.0f} s (had they run all their epochs)",
        f"- time: {summary['wall_seconds']:.0f} s from the first trial's start to the last one's end "
        f"({summary['trial_seconds']:.0f} s in trials), held-out evaluation after",
        f"- the original on the tuning split: F/V ratio {summary['original_tuning']['forget_val_ratio']:.3f}, "
        f"{o['attack_metric']} {summary['original_tuning'][o['attack_metric']]:.3f}, validation "
        f"{summary['original_tuning']['acc_validation']:.3f}",
        "- held-out forget sets share "
        + ", ".join(f"{float(v):.0%} (seed {k})" for k, v in summary["forget_overlap"].items())
        + " of their images with the tuning forget set(s), by chance",
    ]


def study_markdown(summary: dict, parent_run_id: str, figure: str | None = None) -> str:
    chosen = summary.get("chosen")
    rule = ("the feasible Pareto trial with the smallest normalised distance sqrt((ratio/ratio_0)^2 + "
            "(attack/attack_0)^2), ratio_0 and attack_0 being the original's"
            if summary["objective"]["kind"] == "pareto"
            else "the feasible trial with the lowest score")
    lines = [f"## {summary['method']} (study {summary['study']})", "", *facts(summary),
             f"- parent run `{parent_run_id}`", "",
             f"### Held-out seeds {', '.join(map(str, summary['holdout_seeds']))}: mean ± std", "",
             *holdout_table(summary), "",
             "distance: the normalised distance to (ratio 1, attack ideal) on each seed, 0 ideal, 1.41 as far as the "
             "original. Gaps to retrain are shown, never optimised.", "",
             f"**Verdict:** {summary['verdict']}.", "",
             (f"No trial was feasible on the tuning seeds; 'tuned' is the complete trial closest to the constraints, "
              f"trial {chosen['number']}, for the record." if chosen and chosen.get("infeasible") else
              f"Chosen from the tuning trials: {rule}: trial {chosen['number'] if chosen else '-'}."), "",
             "### Parameters", "", *params_table(summary), ""]
    if figure:
        lines += [f"![Pareto front of {summary['study']}]({figure})", ""]
    lines += ["### Trials", "", *trials_table(summary), ""]
    return "\n".join(lines)


def terminal_summary(result) -> str:
    s = result.summary
    if "summary" not in s:
        return (f"study {result.study}: {len(s['trials'])} trials in {result.storage}; "
                f"parent run {result.parent_run_id} "
                f"(judged and reported by the worker with held-out seeds)")
    return "\n".join([f"\n{s['method']}: study {result.study} ({result.storage}), parent run {result.parent_run_id}",
                      *facts(s), "", *holdout_table(s), "", f"verdict: {s['verdict']}",
                      f"recommended: {_params(s['recommended_params'])}",
                      "continue or re-judge: the same command; "
                      f"browse: unlearn dashboard --storage '{result.storage}'"])
