"""Hindsight reflection (H2R): planning and execution memories from segmented rollouts.

Every trajectory is cut into subgoal segments at the environment's milestones
(`memory/segment.py`). For each task played, its success (the shortest real win,
`base.really_won`, among the task's rollouts and references) yields:

- a planning memory (scope = task type): the realised plan, `hierarchy.plan_text`;
- an execution memory per subgoal it closed (scope = the subgoal): the segment's
  actions in brief, "To cool the apple with the fridge: go to a fridge, cool ...".

Each failed rollout is contrasted with the closest real success (`llm.closest_reference`:
same task first), its plan restated for the failure's goal, which yields insights:

- planning, skipped: the failure closed a later subgoal of the plan but never this one;
- planning, order: it closed the plan's subgoals in another order;
- execution, stalled: it closed a prefix of the plan and never the next subgoal; the
  insight gives the success's way there (in words that do not depend on the failure,
  so the same finding upvotes one memory rather than adding near copies);
- execution, different means: both closed a subgoal with different milestones
  (WebShop: the right steps with an option the goal does not ask for).

Insights are capped at `max_ops`; winning rollouts UPVOTE the planning memories they
were shown (within the same cap). Two back ends find insights: the deterministic one
above (default, offline) and an LLM one (`reflect_hindsight_llm`) that is shown the
same segments and answers in a two-line grammar; segmentation is the same for both.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from jerp.envs.actions import ActionAbstraction
from jerp.envs.registry import action_abstraction
from jerp.memory.base import really_won
from jerp.memory.hierarchy import EXECUTION, PLANNING, plan_text
from jerp.memory.reflect.llm import closest_reference
from jerp.memory.segment import Segment, closed, segment
from jerp.records import Evidence, Level, Proposal, RuleSnapshot, Trajectory

BRIEF_STEPS = 5  # a segment's brief keeps its last few actions (those nearest the milestone)


@dataclass(frozen=True)
class Insight:
    """One finding of a contrast: its level, scope (task type or subgoal) and text."""

    level: Level
    scope: str
    text: str


# ---------------------------------------------------------------- briefs


def brief(seg: Segment, goal: str, ax: ActionAbstraction, keep: int = BRIEF_STEPS) -> str:
    """A segment's actions as advice words, repeats folded, the last `keep` kept."""
    phrases: list[str] = []
    for act in ax.abstract(list(seg.actions), goal):
        p = ax.phrase(act.generic())
        if not phrases or phrases[-1] != p:
            phrases.append(p)
    cut = len(phrases) > keep
    return ("..., " if cut else "") + ", ".join(phrases[-keep:])


def execution_text(seg: Segment, goal: str, ax: ActionAbstraction) -> str:
    return f"To {seg.name}: {brief(seg, goal, ax)}."


def _quote(s: str) -> str:
    return f'"{s}"'


# ---------------------------------------------------------------- contrasts


def contrast(failed: Trajectory, success: Trajectory, ax: ActionAbstraction) -> Insight | None:
    """The first difference between a failure and a success, as an insight (module doc)."""
    plan_segs = closed(segment(success.actions, success.goal, ax))
    plan = [ax.adapt_subgoal(s.name, success.goal, failed.goal) for s in plan_segs]
    segs = segment(failed.actions, failed.goal, ax)
    done = [s.name for s in closed(segs)]
    in_plan = [n for n in done if n in plan]
    for i, name in enumerate(plan):
        if in_plan.count(name) > plan[:i].count(name):
            continue
        if len(in_plan) > i:  # it went on to other planned subgoals: skipped this one
            text = f"Do not skip {_quote(name)}: successful runs do it"
            if i > 0:
                text += f" after {_quote(plan[i - 1])}"
            if i + 1 < len(plan):
                text += f" and before {_quote(plan[i + 1])}"
            return Insight(PLANNING, failed.task_type, text + ".")
        return _stalled(name, plan_segs[i], segs, success.goal, ax)
    for want, did in zip(plan, in_plan, strict=False):
        if want != did:
            return Insight(PLANNING, failed.task_type,
                           f"Do {_quote(want)} before {_quote(did)}: a failed attempt did "
                           "them in the other order.")
    return _different_means(plan_segs, segs, plan, success.goal, failed.goal, ax)


def _first_occurrences(names: list[str]) -> list[str]:
    seen: list[str] = []
    for n in names:
        if n not in seen:
            seen.append(n)
    return seen


def _stalled(name: str, good: Segment, segs: list[Segment], good_goal: str,
             ax: ActionAbstraction) -> Insight:
    """The success's way to the subgoal the failure never closed. The text does not
    describe the failure's own wandering, so the same finding from another failure (or
    iteration) is the same text: the pool upvotes it instead of adding a near copy."""
    text = f"To {name}: {brief(good, good_goal, ax)}."
    if segs and not segs[-1].done:
        text += f" Attempts that went elsewhere ran out of steps before they could {name}."
    return Insight(EXECUTION, name, text)


def _milestone_phrases(seg: Segment, goal: str, ax: ActionAbstraction) -> list[str]:
    return _first_occurrences([ax.phrase(a.generic()) for a in ax.abstract(list(seg.actions),
                                                                          goal)
                               if a.is_milestone])


def _different_means(plan_segs: list[Segment], segs: list[Segment], plan: list[str],
                     good_goal: str, goal: str, ax: ActionAbstraction) -> Insight | None:
    by_name = {s.name: s for s in reversed(closed(segs))}  # first occurrence wins
    for name, good in zip(plan, plan_segs, strict=True):
        bad = by_name.get(name)
        if bad is None:
            continue
        want, did = _milestone_phrases(good, good_goal, ax), _milestone_phrases(bad, goal, ax)
        extra = [p for p in did if p not in want]
        if extra:
            return Insight(EXECUTION, name, f"To {name}: {' and '.join(want)}, not "
                                            f"{' and '.join(extra)}.")
    return None


# ---------------------------------------------------------------- proposals


def task_successes(rollouts: list[Trajectory], references: list[Trajectory]
                   ) -> dict[str, Trajectory]:
    """Per task played this iteration, its shortest real win (rollouts and references)."""
    played = {t.task_id for t in rollouts}
    best: dict[str, Trajectory] = {}
    for t in [*rollouts, *references]:
        if t.task_id in played and really_won(t):
            cur = best.get(t.task_id)
            if cur is None or (len(t.actions), t.traj_id) < (len(cur.actions), cur.traj_id):
                best[t.task_id] = t
    return best


def experience_proposals(successes: list[Trajectory], ax: ActionAbstraction) -> list[Proposal]:
    """The realised plan of each success and an execution memory per subgoal it closed
    (one per subgoal: the first success's, in the order given)."""
    props: list[Proposal] = []
    seen: set[str] = set()  # subgoals with an execution memory in this batch
    for t in successes:
        segs = closed(segment(t.actions, t.goal, ax))
        if not segs:
            continue
        ev = Evidence(reference=t.traj_id)
        props.append(Proposal(op="ADD", text=plan_text(t.goal, [s.name for s in segs]),
                              scope=t.task_type, level=PLANNING, evidence=ev,
                              rationale="hindsight: realised plan"))
        for s in segs:
            if s.name in seen:
                continue
            seen.add(s.name)
            props.append(Proposal(op="ADD", text=execution_text(s, t.goal, ax), scope=s.name,
                                  level=EXECUTION, evidence=ev,
                                  rationale="hindsight: successful sub-trajectory"))
    return props


def _insight_proposal(ins: Insight, failed: Trajectory, ref: Trajectory, why: str) -> Proposal:
    return Proposal(op="ADD", text=ins.text, scope=ins.scope, level=ins.level,
                    evidence=Evidence(failed=failed.traj_id, reference=ref.traj_id),
                    rationale=why)


def _votes(rollouts: list[Trajectory], pool: RuleSnapshot, budget: int) -> list[Proposal]:
    """UPVOTE each planning memory shown to a winning rollout (once per rule)."""
    planning = {r.id for r in pool.rules if r.level == PLANNING}
    ids: list[tuple[str, str]] = []
    for t in rollouts:
        if t.won:
            ids += [(r.id, t.traj_id) for r in t.rules_shown
                    if r.id in planning and r.id not in {i for i, _ in ids}]
    return [Proposal(op="UPVOTE", rule_ids=[i], evidence=Evidence(reference=tid),
                     rationale="hindsight: shown to a win") for i, tid in ids[:max(budget, 0)]]


Contrast = Callable[[Trajectory, Trajectory, ActionAbstraction], list[Insight]]


def _offline(failed: Trajectory, ref: Trajectory, ax: ActionAbstraction) -> list[Insight]:
    ins = contrast(failed, ref, ax)
    return [ins] if ins is not None else []


def reflect_hindsight(
    rollouts: list[Trajectory],
    references: list[Trajectory],
    pool: RuleSnapshot,
    max_ops: int,
    abstraction: ActionAbstraction | None = None,
    contrast_fn: Contrast = _offline,
) -> list[Proposal]:
    """Proposals for the H2R memory from one iteration's rollouts (module docstring):
    plans and sub-trajectories of the successes, then at most `max_ops` insights and
    votes. `contrast_fn` is the back end that finds insights (default: offline)."""
    if not rollouts:
        return []
    ax = abstraction or action_abstraction(rollouts[0].env)
    wins = task_successes(rollouts, references)
    props = experience_proposals([wins[k] for k in sorted(wins)], ax)
    found: list[Proposal] = []
    texts: set[tuple[str, str]] = set()
    for t in rollouts:
        if t.won or len(found) >= max_ops:
            continue
        ref = closest_reference(t, [*rollouts, *references])
        if ref is None:
            continue
        for ins in contrast_fn(t, ref, ax):
            if (ins.scope, ins.text) not in texts and len(found) < max_ops:
                texts.add((ins.scope, ins.text))
                found.append(_insight_proposal(ins, t, ref, f"hindsight {ins.level} insight"))
    return props + found + _votes(rollouts, pool, max_ops - len(found))


# ---------------------------------------------------------------- the LLM back end

Generate = Callable[[str], str]

GRAMMAR = """\
Answer with insights only, one per line, in exactly these forms:
PLAN: <one sentence about which subgoals to do, or in which order, for this task type>
STEP <subgoal, exactly as named above>: <one sentence on how to achieve that subgoal>
NONE
An insight is short, general advice (no object numbers). Write NONE if nothing helps."""

_LINE = re.compile(r"(?:PLAN|STEP\s+(?P<subgoal>[^:]+?))\s*:\s*(?P<text>.+)", re.IGNORECASE)
_BULLET = re.compile(r"^\s*(?:[-*+\u2022>]+|\(?\d+[.)])\s*")
_SUSPICIOUS = re.compile(r"ignore (?:all |any |the )?(?:previous|prior|above)|system prompt",
                         re.IGNORECASE)


def render_segments(t: Trajectory, ax: ActionAbstraction) -> str:
    outcome = "SUCCESS" if t.won else f"FAILURE (reward {t.reward:g})"
    lines = [f"Goal: {t.goal}", f"Outcome: {outcome} after {len(t.steps)} steps"]
    for s in segment(t.actions, t.goal, ax):
        head = f"Subgoal {_quote(s.name)}" if s.done else "Unfinished"
        lines.append(f"- {head}: " + "; ".join(s.actions))
    return "\n".join(lines)


def build_prompt(failed: Trajectory, ref: Trajectory, ax: ActionAbstraction) -> str:
    """The prompt: both trajectories cut into named subgoals, then the grammar."""
    return "\n\n".join([
        f"Task type: {failed.task_type}",
        f"FAILED attempt, by subgoal:\n{render_segments(failed, ax)}",
        f"SUCCESSFUL attempt, by subgoal:\n{render_segments(ref, ax)}",
        "Compare the subgoal sequences (planning) and the actions within each subgoal "
        f"(execution): what should the failed attempt have done?\n{GRAMMAR}"])


def parse_insights(answer: str, task_type: str, subgoals: set[str], max_chars: int
                   ) -> tuple[list[Insight], list[str]]:
    """The grammar lines of an answer as insights, and a reason for each line refused
    (a STEP naming a subgoal not shown, an empty, long or instruction-like text)."""
    found, refused = [], []
    for raw in answer.splitlines():
        line = _BULLET.sub("", raw.strip().replace("**", "")).strip()
        m = _LINE.fullmatch(line)
        if m is None:
            continue
        text = m.group("text").strip().strip('"')
        sub = (m.group("subgoal") or "").strip().strip('"')
        if not text or len(text) > max_chars or _SUSPICIOUS.search(text):
            refused.append(f"bad text: {line[:80]!r}")
        elif m.group("subgoal") is not None and sub not in subgoals:
            refused.append(f"unknown subgoal {sub!r}; shown: {sorted(subgoals)}")
        else:
            found.append(Insight(EXECUTION, sub, text) if sub else
                         Insight(PLANNING, task_type, text))
    return found, refused


@dataclass(frozen=True)
class LLMContrast:
    """The LLM back end as a `contrast_fn`: one model call per failure."""

    generate: Generate
    max_chars: int  # rules.max_rule_chars

    def __call__(self, failed: Trajectory, ref: Trajectory,
                 ax: ActionAbstraction) -> list[Insight]:
        names = {s.name for t in (failed, ref) for s in closed(segment(t.actions, t.goal, ax))}
        answer = self.generate(build_prompt(failed, ref, ax))
        return parse_insights(answer, failed.task_type, names, self.max_chars)[0]


def reflect_hindsight_llm(generate: Generate, rollouts: list[Trajectory],
                          references: list[Trajectory], pool: RuleSnapshot, max_ops: int,
                          abstraction: ActionAbstraction | None,
                          max_chars: int) -> list[Proposal]:
    """`reflect_hindsight` with the insights found by a model (`generate`: the LLM
    reflector's callable, llm.openai_generate or jerp.llm.local_generate)."""
    return reflect_hindsight(rollouts, references, pool, max_ops, abstraction,
                             LLMContrast(generate, max_chars))
