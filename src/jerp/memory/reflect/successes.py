"""ExpeL's insights from a set of successes: what every success of a task type does.

ExpeL (Zhao et al. 2024) draws insights both from failure/success pairs (here the
contrastive reflector) and from sets of successes of similar tasks. This is the
deterministic second half. Per task type with at least `MIN_SUCCESSES` real
successes (won with the full reward):

1. abstract each success's actions with the environment's action abstraction
   (envs/actions.py) and keep its milestones, without instance identities;
2. the common pattern: the longest common subsequence of those milestone
   sequences, folded over the successes in trajectory-id order (compared by
   `Act.key`, so "take the target object" matches wherever it was taken from);
3. the insight: "Every success of this task type did, in this order: A, then B,
   then C." (`PATTERN_PREFIX` marks it), scoped to the task type;
4. against the pool, with ExpeL's operations: no pattern rule in the scope ->
   ADD; one with the same meaning -> UPVOTE (ExpeL's AGREE), only when the set
   holds a success new in this iteration (fresh evidence agrees); one with other
   text -> EDIT it to the new pattern. A pattern longer than `max_chars` is dropped.
"""

from __future__ import annotations

from collections import defaultdict

from jerp.envs.actions import Act, ActionAbstraction, generic
from jerp.memory.base import really_won
from jerp.memory.pool import normalise
from jerp.records import Evidence, Proposal, RuleSnapshot, Trajectory

MIN_SUCCESSES = 2
PATTERN_PREFIX = "Every success of this task type did, in this order:"


def common_subsequence(a: list[Act], b: list[Act]) -> list[Act]:
    """The longest common subsequence of two act sequences by `key` (a's acts; ties:
    the earliest in a)."""
    n, m = len(a), len(b)
    best = [[0] * (m + 1) for _ in range(n + 1)]
    for i in range(n - 1, -1, -1):
        for j in range(m - 1, -1, -1):
            best[i][j] = (best[i + 1][j + 1] + 1 if a[i].key == b[j].key
                          else max(best[i + 1][j], best[i][j + 1]))
    out, i, j = [], 0, 0
    while i < n and j < m:
        if a[i].key == b[j].key:
            out.append(a[i])
            i, j = i + 1, j + 1
        elif best[i + 1][j] >= best[i][j + 1]:
            i += 1
        else:
            j += 1
    return out


def success_pattern(successes: list[Trajectory], ax: ActionAbstraction) -> list[Act]:
    """The milestones every success shares, in order (see the module docstring)."""
    pattern: list[Act] | None = None
    for t in sorted(successes, key=lambda t: t.traj_id):
        acts = [a for a in generic(ax.abstract(t.actions, t.goal)) if a.is_milestone]
        pattern = acts if pattern is None else common_subsequence(pattern, acts)
    return pattern or []


def pattern_rule(pattern: list[Act], ax: ActionAbstraction) -> str:
    """The insight's text: the pattern's milestones as advice, in order."""
    return f"{PATTERN_PREFIX} " + ", then ".join(ax.phrase(a) for a in pattern) + "."


def reflect_successes(
    successes: list[Trajectory], new_ids: set[str], pool: RuleSnapshot,
    ax: ActionAbstraction, max_chars: int,
) -> list[Proposal]:
    """ADD / UPVOTE / EDIT proposals from the sets of successes per task type (module
    docstring); `new_ids`: ids of this iteration's new successes."""
    by_type: dict[str, list[Trajectory]] = defaultdict(list)
    for t in successes:
        if really_won(t):
            by_type[t.task_type].append(t)
    props: list[Proposal] = []
    for task_type, wins in sorted(by_type.items()):
        if len(wins) < MIN_SUCCESSES:
            continue
        pattern = success_pattern(wins, ax)
        if not pattern:
            continue
        text = pattern_rule(pattern, ax)
        if len(text) > max_chars:
            continue
        ids = sorted(t.traj_id for t in wins)
        ev = Evidence(reference=ids[0])
        why = f"success set: {len(wins)} successes of {task_type} share it ({', '.join(ids)})"
        old = next((r for r in pool.rules if r.scope == task_type
                    and r.text.startswith(PATTERN_PREFIX)), None)
        if old is None:
            props.append(Proposal(op="ADD", text=text, scope=task_type, evidence=ev,
                                  rationale=why))
        elif normalise(old.text) != normalise(text):
            props.append(Proposal(op="EDIT", rule_ids=[old.id], text=text, scope=task_type,
                                  evidence=ev, rationale=why + f"; replaces {old.id}'s pattern"))
        elif new_ids & set(ids):
            props.append(Proposal(op="UPVOTE", rule_ids=[old.id], scope=task_type,
                                  evidence=Evidence(reference=sorted(new_ids & set(ids))[0]),
                                  rationale=why + "; new successes agree"))
    return props
