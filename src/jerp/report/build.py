"""report: one row per iteration (success, per-type success, expert accuracy, pool size,
and the policy update that produced its adapter), as a CSV for `dvc plots`, a PNG, and
a Markdown page with the tables and the rules."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from jerp import paths
from jerp.records import atomic_open, read_json, read_snapshot


def _optional(path: Path) -> dict:
    return read_json(path) if path.exists() else {}


def collect(root: Path, iterations: list[int]) -> list[dict]:
    rows = []
    for i in iterations:
        m = read_json(root / paths.metrics_file(i))
        tr = _optional(root / paths.train_stats_file(i))
        ro = _optional(root / paths.rollout_stats_file(i))
        rows.append({
            "iteration": i,
            "success": m.get("success", 0.0),
            "score": m.get("score", 0.0),
            "expert_top1": m.get("expert_top1", 0.0),
            "mean_steps": m.get("mean_steps", 0.0),
            "invalid_action_rate": m.get("invalid_action_rate", 0.0),
            "rules": m.get("rules_in_pool", 0),
            # how adapter i was made (0: the warm start) and from what rollouts
            "policy_update": _update_kind(tr),
            "train_ce": tr.get("ce_last"),
            "train_pg": tr.get("pg_last"),
            "train_tokens_per_s": tr.get("tokens_per_s"),
            "train_minutes": round(tr["seconds"] / 60, 2) if "seconds" in tr else None,
            "rollout_success": ro.get("success"),
            "zero_adv_groups": tr.get("zero_advantage_group_share"),
            "identical_groups": ro.get("identical_group_share"),
            "distinct_actions": ro.get("distinct_actions_per_episode"),
            "by_type": m.get("success_by_type", {}),
        })
    return rows


def _update_kind(tr: dict) -> str:
    if not tr:
        return "-"
    if not tr.get("enabled"):
        return "none"
    return tr.get("algorithm", tr.get("stage", "?"))


def _fmt(v, spec: str = ".2f") -> str:
    return "-" if v is None else format(v, spec)


def write_csv(path: Path, rows: list[dict]) -> None:
    keys = [k for k in rows[0] if k != "by_type"]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=keys, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    with atomic_open(path) as fh:
        fh.write(buf.getvalue())


def plot(path: Path, rows: list[dict], title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    its = [r["iteration"] for r in rows]
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 3.8))
    a1.plot(its, [r["success"] for r in rows], "o-", label="eval success")
    a1.plot(its, [r["expert_top1"] for r in rows], "s--", label="expert action ranked 1st")
    a1.set_xlabel("iteration")
    a1.set_ylim(-0.02, 1.02)
    a1.set_xticks(its)
    a1.legend(loc="upper left", fontsize=8)
    a1.set_title("policy quality")
    a2.bar(its, [r["rules"] for r in rows], color="tab:green")
    a2.set_xlabel("iteration")
    a2.set_xticks(its)
    a2.set_title("rules in the pool")
    fig.suptitle(title)
    fig.tight_layout()
    with atomic_open(path, "wb") as fh:
        fig.savefig(fh, format="png", dpi=110)
    plt.close(fig)


def markdown(rows: list[dict], root: Path, title: str) -> str:
    types = sorted({t for r in rows for t in r["by_type"]})
    out = [f"# {title}\n", "![per-iteration results](success.png)\n",
           "| iteration | success | expert top-1 | mean steps | invalid | rules |",
           "|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        out.append(f"| {r['iteration']} | {r['success']:.2f} | {r['expert_top1']:.2f} | "
                   f"{r['mean_steps']:.1f} | {r['invalid_action_rate']:.2f} | {r['rules']} |")
    out += ["", "## Policy updates", "",
            "Adapter i is trained after rollout i (0: the warm start on reference successes). "
            "CE: candidate cross-entropy of the last batch; PG: GRPO term. A group whose "
            "episodes all get the same return has zero advantage: no RL signal.", "",
            "| iteration | update | CE | PG | tokens/s | minutes | rollout success | "
            "zero-adv. groups | identical groups | distinct actions/ep. |",
            "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        out.append(f"| {r['iteration']} | {r['policy_update']} | {_fmt(r['train_ce'], '.3f')} | "
                   f"{_fmt(r['train_pg'], '.3f')} | {_fmt(r['train_tokens_per_s'], '.0f')} | "
                   f"{_fmt(r['train_minutes'])} | {_fmt(r['rollout_success'])} | "
                   f"{_fmt(r['zero_adv_groups'])} | {_fmt(r['identical_groups'])} | "
                   f"{_fmt(r['distinct_actions'], '.1f')} |")
    if types:
        out += ["", "## Success per task type", "",
                "| iteration | " + " | ".join(types) + " |",
                "|---:|" + "---:|" * len(types)]
        for r in rows:
            cells = " | ".join(f"{r['by_type'].get(t, 0):.2f}" for t in types)
            out.append(f"| {r['iteration']} | {cells} |")
    last = rows[-1]["iteration"]
    snap_path = root / paths.rules_file(last)
    if snap_path.exists():
        snap = read_snapshot(snap_path)
        out += ["", f"## Rule pool after iteration {last}", "",
                "| id | score | scope | rule |", "|---|---:|---|---|"]
        for rule in sorted(snap.rules, key=lambda x: -x.score):
            out.append(f"| {rule.id} | {rule.score} | {rule.scope} | {rule.text} |")
    return "\n".join(out) + "\n"


def build(root: Path, iterations: list[int], title: str) -> list[dict]:
    rows = collect(root, iterations)
    out = root / paths.REPORTS
    write_csv(out / "iterations.csv", rows)
    plot(out / "success.png", rows, title)
    with atomic_open(out / "index.md") as fh:
        fh.write(markdown(rows, root, title))
    return rows
