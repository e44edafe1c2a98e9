"""Evaluation metrics over trajectories: pure functions, JSON-ready output."""

from __future__ import annotations

from collections import Counter, defaultdict
from statistics import mean

from jerp.records import Trajectory
from jerp.stats import wilson


def summarize(trajs: list[Trajectory]) -> dict:
    """Success overall and per task type, score (mean reward x 100), steps, invalid rate."""
    if not trajs:
        return {"episodes": 0}
    by_type: dict[str, list[Trajectory]] = defaultdict(list)
    for t in trajs:
        by_type[t.task_type].append(t)
    steps = sum(t.n_steps for t in trajs)
    won = sum(t.won for t in trajs)
    return {
        "episodes": len(trajs),
        "success": round(won / len(trajs), 4),
        "success_ci": [round(x, 4) for x in wilson(won, len(trajs))],
        "score": round(100 * mean(t.reward for t in trajs), 2),
        "mean_steps": round(steps / len(trajs), 2),
        "invalid_action_rate": round(sum(t.invalid_actions for t in trajs) / max(steps, 1), 4),
        "success_by_type": {
            k: round(mean(t.won for t in v), 4) for k, v in sorted(by_type.items())
        },
        **expert_agreement(trajs),
        **plan_sources(trajs),
    }


def plan_sources(trajs: list[Trajectory]) -> dict:
    """How many episodes' plans each source wrote (H2R: policy, endpoint, memory,
    default): how often the planner model's plan was used rather than the fallback.
    Empty when no episode had a planner."""
    counts = Counter(t.plan_source for t in trajs if t.plan_source is not None)
    return {"plan_sources": dict(sorted(counts.items()))} if counts else {}


def expert_agreement(trajs: list[Trajectory]) -> dict:
    """Share of the policy's own decisions that equal the searching expert's action at
    that state (Observation.expert), over the decisions the expert labelled: a proxy
    for success measured on the states the policy reaches, unlike reference-state top-1,
    which ranks actions at states of an oracle plan. Empty without labels."""
    labelled = [s for t in trajs for s in t.steps if s.expert is not None]
    if not labelled:
        return {}
    agree = sum(s.action == s.expert for s in labelled)
    return {"expert_agreement": round(agree / len(labelled), 4),
            "expert_agreement_ci": [round(x, 4) for x in wilson(agree, len(labelled))],
            "expert_labels": len(labelled)}


def decision_kind(action: str) -> str:
    """What a command does, to break agreement down: its verb ("go to" whole: ALFWorld's
    search moves), WebShop's `search` or `click`."""
    a = action.strip()
    return "go to" if a.startswith("go to ") else a.split("[", 1)[0].split(" ", 1)[0]


def agreement_by_kind(trajs: list[Trajectory]) -> dict[str, tuple[int, int]]:
    """(decisions equal to the expert's, decisions it labelled) per kind of the expert's
    action, most labelled first. ALFWorld's expert searches receptacles in an order of its
    own, remembered over the episode; agreement on `go to` measures following that order,
    on the other kinds handling the objects once found."""
    counts: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for t in trajs:
        for s in t.steps:
            if s.expert is not None:
                c = counts[decision_kind(s.expert)]
                c[0] += s.action == s.expert
                c[1] += 1
    return {k: (a, n) for k, (a, n) in sorted(counts.items(), key=lambda kv: (-kv[1][1],
                                                                               kv[0]))}


def demo_stats(refs: list[Trajectory], asked: str) -> dict:
    """What the train references are: who demonstrated each game, how often the expert was
    asked and fell back to the walkthrough, and the expert's wins and steps per type."""
    by_type: dict[str, list[Trajectory]] = defaultdict(list)
    for r in refs:
        by_type[r.task_type].append(r)
    expert = [r for r in refs if r.reference_kind == "expert"]
    expert_by_type: dict[str, list[Trajectory]] = defaultdict(list)
    for r in expert:
        expert_by_type[r.task_type].append(r)
    out: dict = {
        "asked": asked,
        "games": len(refs),
        "won": sum(r.won for r in refs),
        "by": {k: sum(r.reference_kind == k for r in refs) for k in ("expert", "walkthrough")},
        "mean_steps": round(mean(r.n_steps for r in refs), 2) if refs else None,
    }
    if asked == "expert":
        out["fallbacks"] = len(refs) - len(expert)
        out["expert_by_type"] = {
            k: {"games": len(v), "expert_won": len(expert_by_type[k]),
                "expert_mean_steps": round(mean(r.n_steps for r in expert_by_type[k]), 2)
                if expert_by_type[k] else None}
            for k, v in sorted(by_type.items())}
    return out


def expert_metrics(rows: list[dict]) -> dict:
    """Reference-state accuracy (the reference action ranked first) and its mean
    reciprocal rank, overall and per task type, for each prompt condition present.

    `rows`: {"task_type": str, "rank": {condition: 1-based rank}}; the "shown"
    condition gives the unsuffixed keys (expert_top1, expert_mrr, ..._by_type),
    the others a suffix (expert_top1_none, expert_mrr_wrong)."""
    out: dict = {"expert_states": len(rows)}
    conds = sorted({c for r in rows for c in r["rank"]}, key=lambda c: c != "shown")
    for c in conds:
        sfx = "" if c == "shown" else f"_{c}"
        ranks = [(r["task_type"], r["rank"][c]) for r in rows if c in r["rank"]]
        by_type: dict[str, list[int]] = defaultdict(list)
        for t, k in ranks:
            by_type[t].append(k)
        out[f"expert_top1{sfx}"] = _top1([k for _, k in ranks])
        out[f"expert_mrr{sfx}"] = _mrr([k for _, k in ranks])
        if c == "shown":
            out["expert_top1_by_type"] = {t: _top1(v) for t, v in sorted(by_type.items())}
            out["expert_mrr_by_type"] = {t: _mrr(v) for t, v in sorted(by_type.items())}
    return out


def _top1(ranks: list[int]) -> float:
    return round(mean(k == 1 for k in ranks), 4) if ranks else 0.0


def _mrr(ranks: list[int]) -> float:
    return round(mean(1 / k for k in ranks), 4) if ranks else 0.0
