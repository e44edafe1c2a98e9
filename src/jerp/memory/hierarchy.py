"""H2R's two-level memory (arXiv 2509.12810) behind the `Memory` interface.

One `RuleSnapshot` holds both levels, so snapshots stay versioned, immutable and
diffable, and revision is the flat pool's (`pool.revise`: same operations, scores,
capacity), applied to the whole snapshot:

- planning memories (`level="planning"`, scope = task type): a task's realised
  subgoal plan, "Plan for <goal>: 1. <subgoal> 2. <subgoal> ...", and planning
  insights (which subgoal orders work, which get skipped);
- execution memories (`level="execution"`, scope = a subgoal name such as "cool the
  apple with the fridge"): a successful sub-trajectory in brief and execution insights.

The two levels are looked up with different queries:

- `retrieve(query, k)`: the task is the query. The plan of the most similar
  remembered task of the type comes first (rapidfuzz token-set ratio of the goals,
  as the LLM reflector picks its reference), then planning insights by score, then
  the other plans by similarity.
- `execution(subgoal, k)`: the subgoal is the query. Only memories whose subgoal
  starts with the same action word qualify ("cool ..." never answers "put ..."; a
  character ratio alone ranks "heat the mug with the microwave" above "put the apple
  in/on the countertop" for "put the mug in/on the shelf"), ranked by rapidfuzz ratio
  of the subgoals, then score, then id.

The executor's position in its plan (`current_subgoal`) is computed here, from the
episode's segments (`memory/segment.py`); `memory/executor.py` turns it into the
per-step memory slot.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Final

from rapidfuzz import fuzz

from jerp.envs.actions import ActionAbstraction
from jerp.memory.base import Memory, Query
from jerp.memory.diff import SnapshotDiff, diff_snapshots
from jerp.memory.pool import revise, rule_number
from jerp.memory.segment import segment
from jerp.records import Proposal, Rule, RuleShown, RuleSnapshot

PLANNING: Final = "planning"
EXECUTION: Final = "execution"
PLAN_PREFIX = "Plan for "
_PLAN = re.compile(r"Plan for (?P<goal>.+?): 1\. (?P<steps>.+)", re.DOTALL)
_ITEM = re.compile(r"\s+\d+\.\s+")


# ---------------------------------------------------------------- plan texts


def plan_text(goal: str, subgoals: list[str]) -> str:
    """The planning memory of one realised plan: 'Plan for <goal>: 1. a 2. b'."""
    items = " ".join(f"{i}. {s}" for i, s in enumerate(subgoals, 1))
    return f"{PLAN_PREFIX}{goal_text(goal)}: {items}"


def goal_text(goal: str) -> str:
    """The goal as a plan names it: the task sentence, without ALFWorld's lead-in."""
    return " ".join(goal.split("Your task is to:")[-1].split()).rstrip(".")


def parse_plan(text: str) -> tuple[str, list[str]] | None:
    """(goal, subgoals) of a plan text; None for any other planning memory (an insight)."""
    m = _PLAN.fullmatch(text.strip())
    if m is None:
        return None
    return m.group("goal"), [s.strip() for s in _ITEM.split(" " + "1. " + m.group("steps"))
                             if s.strip()]


def subgoal_word(subgoal: str) -> str:
    """The action word a subgoal starts with ('cool', 'find', 'choose'): what must agree
    for an execution memory to answer a subgoal."""
    words = subgoal.lower().split()
    return words[0] if words else ""


# ---------------------------------------------------------------- retrieval


def _shown(rules: list[Rule]) -> list[RuleShown]:
    return [RuleShown(id=r.id, text=r.text) for r in rules]


def planning_rules(pool: RuleSnapshot, query: Query, k: int) -> list[Rule]:
    """The planning memories an episode of `query` is shown (module docstring)."""
    cands = [r for r in pool.rules
             if r.level == PLANNING and r.scope in (query.task_type, "general")]
    goal = goal_text(query.goal).lower()
    plans, insights = [], []
    for r in cands:
        parsed = parse_plan(r.text)
        if parsed is None:
            insights.append(r)
        else:
            plans.append((-fuzz.token_set_ratio(goal, parsed[0].lower()), -r.score,
                          rule_number(r.id), r))
    ranked = [p[-1] for p in sorted(plans, key=lambda p: p[:3])]
    insights.sort(key=lambda r: (-r.score, rule_number(r.id)))
    return (ranked[:1] + insights + ranked[1:])[: max(k, 0)]


def execution_rules(pool: RuleSnapshot, subgoal: str, k: int) -> list[Rule]:
    """The execution memories shown while working on `subgoal` (module docstring)."""
    word, q = subgoal_word(subgoal), subgoal.lower()
    cands = [r for r in pool.rules
             if r.level == EXECUTION and word and subgoal_word(r.scope) == word]
    cands.sort(key=lambda r: (-fuzz.ratio(q, r.scope.lower()), -r.score, rule_number(r.id)))
    return cands[: max(k, 0)]


@dataclass(frozen=True)
class H2RMemory:
    """Planning and execution memories in one snapshot (see the module docstring)."""

    pool: RuleSnapshot

    def revise(self, proposals: list[Proposal], iteration: int,
               capacity: int) -> tuple[H2RMemory, list[Proposal]]:
        after, applied = revise(self.pool, proposals, iteration, capacity)
        return replace(self, pool=after), applied

    def retrieve(self, query: Query, k: int) -> list[RuleShown]:
        """Planning memories, the task as the query."""
        return _shown(planning_rules(self.pool, query, k))

    def execution(self, subgoal: str, k: int) -> list[RuleShown]:
        """Execution memories, the subgoal as the query."""
        return _shown(execution_rules(self.pool, subgoal, k))

    def remembered_plan(self, query: Query, abstraction: ActionAbstraction) -> list[str] | None:
        """The most similar remembered plan of the task type, restated for this goal;
        None when none is remembered."""
        for r in planning_rules(self.pool, query, 1):
            parsed = parse_plan(r.text)
            if parsed is not None:
                from_goal, steps = parsed
                return [abstraction.adapt_subgoal(s, from_goal, query.goal) for s in steps]
        return None

    def plan(self, query: Query, abstraction: ActionAbstraction) -> list[str]:
        """The subgoals to follow without a planner model: the remembered plan, else the
        environment's default plan for the task type (memory/planner.py labels which)."""
        remembered = self.remembered_plan(query, abstraction)
        return remembered if remembered is not None else abstraction.default_plan(
            query.task_type, query.goal)

    def snapshot(self) -> RuleSnapshot:
        return self.pool

    def diff(self, before: Memory) -> SnapshotDiff:
        return diff_snapshots(before.snapshot(), self.pool)


# ---------------------------------------------------------------- the executor


def current_subgoal(plan: list[str], actions: list[str], goal: str,
                    abstraction: ActionAbstraction, budget: int) -> int:
    """Index in `plan` of the subgoal the next decision works on (len(plan): all done).

    Walks the episode's segments: a closed segment whose subgoal is the current one,
    or a later one of the plan, moves past it; any other closed segment (a subgoal not
    in the plan, or one already passed) does not. A subgoal that has taken `budget`
    steps without closing is given up for the next one (never past the last).
    """
    pos, spent = 0, 0
    for seg in segment(actions, goal, abstraction):
        for _ in seg.actions[: len(seg.actions) - seg.done]:  # steps before its milestone
            spent += 1
            if spent >= budget and pos < len(plan) - 1:
                pos, spent = pos + 1, 0
        if seg.done:
            later = [j for j in range(pos, len(plan)) if plan[j] == seg.name]
            if later:
                pos, spent = later[0] + 1, 0
            else:
                spent += 1
                if spent >= budget and pos < len(plan) - 1:
                    pos, spent = pos + 1, 0
    return pos
