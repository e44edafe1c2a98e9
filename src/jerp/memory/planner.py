"""H2R's planner: the subgoal plan an episode follows, written by a model, with the
hand-written plans only as the fallback (issue 29).

The executor follows a plan by subgoal *name* (`hierarchy.current_subgoal` moves on when
a segment closes the subgoal it names), so a plan is only useful in the names the action
abstraction closes subgoals with. The model therefore never writes free text that stays
free: every step is one of the episode's OPTIONS, the subgoals the abstraction names
for the goal (`ActionAbstraction.subgoal_options`) plus the steps of the remembered
plans restated for it.

- policy (params rules.planner: policy): constrained choice. Each step, the acting
  policy scores every option (and DONE, from the second step on: an empty plan is no
  plan) after a prompt with the goal, the planning memories the episode is shown and
  the plan so far, with the score it ranks actions by (`policy.score`); the greedy
  choice is appended until DONE or the cap: the longest default plan + PLAN_SLACK.
- endpoint (the same, with rules.llm_endpoint set): the served model writes a numbered
  list; each line becomes the option it names (`match_option`: one whose milestone verb
  it asks for, the nearest by rapidfuzz token-set ratio; an option without a milestone
  verb by that ratio alone, at least MATCH_CUTOFF), lines that name none are dropped,
  and the list is capped.
- fallback (rules.planner: memory, or a model plan that came out empty): the most
  similar remembered plan restated for the goal ("memory"), else the environment's
  hand-written default plan ("default").

The trajectory records the plan and its source (records.PlanSource). The model calls
come in as callables (`Score`, `Write`), built where the model lives (jerp.agents):
this module never imports the policy.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final

from rapidfuzz import fuzz

from jerp.envs.actions import ActionAbstraction
from jerp.envs.base import Task
from jerp.memory.base import Plan, Query
from jerp.memory.hierarchy import H2RMemory, goal_text, parse_plan, planning_rules
from jerp.records import RuleSnapshot

DONE: Final = "done"  # the option that ends a plan written by choice
PLAN_SLACK: Final = 2  # steps a written plan may run past the longest default plan
MATCH_CUTOFF: Final = 60  # token-set ratio a written line needs to name an option
PLAN_SYSTEM: Final = ("You plan tasks for an agent in a text world. Answer with a numbered "
                      "list of subgoals and nothing else.")

# (prompt, options) -> each option's value under the policy's candidate score
Score = Callable[[str, list[str]], list[float]]
# prompt -> the model's text
Write = Callable[[str], str]
# text -> the milestone verbs it names, None when it names none (ActionAbstraction.rule_verbs)
Verbs = Callable[[str], set[str] | None]

_NUMBERING = re.compile(r"^\s*(?:\d+\s*[.):]|[-*•])\s*")


# ---------------------------------------------------------------- options and cap


def plan_options(ax: ActionAbstraction, goal: str, remembered: Sequence[str] = ()) -> list[str]:
    """The subgoals a plan for `goal` may name: the abstraction's, then the remembered
    plan steps (restated for the goal) it does not name, each once, in that order."""
    return list(dict.fromkeys([*ax.subgoal_options(goal), *remembered]))


def plan_cap(ax: ActionAbstraction, task_types: Sequence[str], goal: str) -> int:
    """How many steps a written plan may have: the longest default plan + PLAN_SLACK."""
    return max((len(ax.default_plan(t, goal)) for t in task_types), default=0) + PLAN_SLACK


# ---------------------------------------------------------------- prompts


def choice_prompt(goal: str, memories: Sequence[str], options: Sequence[str],
                  so_far: Sequence[str]) -> str:
    """The prompt the policy picks the next step after: the options, the planning
    memories, the goal and the numbered plan so far, ending where the next step's name
    goes (each option is scored as ' <option>\\n', as commands are)."""
    text = ("Plan the task as a short list of subgoals, one per line, each one of:\n"
            + "".join(f"- {o}\n" for o in (*options, DONE)))
    if memories:
        text += "Useful experience:\n" + "".join(f"- {m}\n" for m in memories)
    text += f"Task: {goal_text(goal)}.\nPlan:\n"
    text += "".join(f"{i}. {s}\n" for i, s in enumerate(so_far, 1))
    return text + f"{len(so_far) + 1}."


def list_prompt(goal: str, memories: Sequence[str], options: Sequence[str]) -> str:
    """The prompt the endpoint writes the whole plan after, as a numbered list."""
    text = ("Plan the task below as a numbered list of subgoals, one per line, in the "
            "order to do them, using only these subgoals:\n"
            + "".join(f"- {o}\n" for o in options))
    if memories:
        text += "Useful experience:\n" + "".join(f"- {m}\n" for m in memories)
    return text + f"Task: {goal_text(goal)}.\nAnswer with the numbered list only."


# ---------------------------------------------------------------- writing


def choose_plan(score: Score, goal: str, memories: Sequence[str], options: Sequence[str],
                cap: int) -> list[str]:
    """The policy's plan, one greedy choice among the options (+ DONE) per step."""
    plan: list[str] = []
    while len(plan) < cap:
        offered = [*options, DONE] if plan else list(options)
        values = score(choice_prompt(goal, memories, options, plan), offered)
        pick = offered[max(range(len(values)), key=values.__getitem__)]  # ties: the first
        if pick == DONE:
            break
        plan.append(pick)
    return plan


def match_option(line: str, options: Sequence[str], verbs: Verbs) -> str | None:
    """The option a written line names, None when it names none. An option qualifies
    when the line asks for one of its milestone verbs ("select size" names "choose the
    options"), or, for an option without any, on words alone (token-set ratio at least
    MATCH_CUTOFF); the qualifying options are ranked by verb agreement, then that ratio,
    then their order."""
    text = _NUMBERING.sub("", line).strip().rstrip(".").lower()
    if not text:
        return None
    said = verbs(text) or set()
    ranked = []
    for i, o in enumerate(options):
        named, ratio = verbs(o), fuzz.token_set_ratio(text, o.lower())
        agrees = bool(named and named & said)
        if agrees or (named is None and ratio >= MATCH_CUTOFF):
            ranked.append((-agrees, -ratio, i, o))
    return min(ranked)[-1] if ranked else None


def parse_written_plan(text: str, options: Sequence[str], verbs: Verbs, cap: int) -> list[str]:
    """A written numbered list as options: each line its option, lines that name none
    dropped, at most `cap` steps."""
    steps = (match_option(line, options, verbs) for line in text.splitlines())
    return [s for s in steps if s is not None][:cap]


# ---------------------------------------------------------------- the planner


@dataclass(frozen=True)
class EpisodePlanner:
    """The `memory.base.Planner` of an H2R run: the model's plan (`score`: the policy
    chooses; else `write`: the endpoint writes), else the fallback (module docstring).
    Neither callable given: the fallback alone (rules.planner: memory)."""

    pool: RuleSnapshot
    ax: ActionAbstraction
    task_types: tuple[str, ...]
    k: int  # planning memories shown to the planner (rules.top_k)
    score: Score | None = None
    write: Write | None = None

    def __call__(self, task: Task, goal: str) -> Plan:
        query = Query(task.task_type, goal)
        memory = H2RMemory(self.pool)
        remembered = memory.remembered_plan(query, self.ax)
        if self.score is not None or self.write is not None:
            steps = self._written(query)
            if steps:
                return Plan(steps, "policy" if self.score is not None else "endpoint")
        if remembered is not None:
            return Plan(remembered, "memory")
        return Plan(self.ax.default_plan(task.task_type, goal), "default")

    def _written(self, query: Query) -> list[str]:
        shown = [r.text for r in planning_rules(self.pool, query, self.k)]
        options = plan_options(self.ax, query.goal, self._remembered_steps(query))
        cap = plan_cap(self.ax, self.task_types, query.goal)
        if self.score is not None:
            return choose_plan(self.score, query.goal, shown, options, cap)
        text = self.write(list_prompt(query.goal, shown, options))
        return parse_written_plan(text, options, self.ax.rule_verbs, cap)

    def _remembered_steps(self, query: Query) -> list[str]:
        """The steps of every remembered plan of the task type, restated for the goal."""
        steps: list[str] = []
        for r in planning_rules(self.pool, query, len(self.pool.rules)):
            parsed = parse_plan(r.text)
            if parsed is not None:
                steps += [self.ax.adapt_subgoal(s, parsed[0], query.goal) for s in parsed[1]]
        return steps
