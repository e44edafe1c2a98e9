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
  The options are listed and offered in an order drawn per goal (`plan_options`: by a
  hash of the goal and the option), never the abstraction's take, clean, heat, cool,
  put: an untrained 135M model copies the list it is shown, and a fixed order would
  let it look like a planner by copying.
- endpoint (params rules.planner: endpoint, which needs rules.llm_endpoint): the served
  model writes a numbered list; each line becomes the option it names (`match_option`:
  one whose milestone verb it asks for, the nearest by rapidfuzz token-set ratio; an
  option without a milestone verb by that ratio alone, at least MATCH_CUTOFF), lines
  that name none are dropped, and the list is capped.
- fallback (rules.planner: memory, or a model plan that came out empty): the most
  similar remembered plan restated for the goal ("memory"), else the environment's
  hand-written default plan ("default").

Training the policy planner (`plan_choices`, `EpisodePlanner.choices`): a success's
realised plan (`segment.subgoal_sequence`: the subgoals its closed segments name, in
order) restated as the planner's decisions, each with the prompt and the offered
options `choose_plan` scores at that step, and a final DONE: one candidate
cross-entropy target per decision (policy/train.py), built by the same functions the
planner acts with, so training and acting see identical prompts and orders.

The trajectory records the plan and its source (records.PlanSource). The model calls
come in as callables (`Score`, `Write`), built where the model lives (jerp.agents):
this module never imports the policy.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final

from rapidfuzz import fuzz

from jerp.envs.actions import ActionAbstraction
from jerp.envs.base import Task
from jerp.memory.base import Plan, Query
from jerp.memory.hierarchy import H2RMemory, goal_text, parse_plan, planning_rules
from jerp.memory.segment import subgoal_sequence
from jerp.records import RuleSnapshot, Trajectory

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
    """The subgoals a plan for `goal` may name: the abstraction's and the remembered plan
    steps (restated for the goal), each once, in the goal's drawn order (`option_order`)."""
    return option_order(goal, dict.fromkeys([*ax.subgoal_options(goal), *remembered]))


def option_order(goal: str, options: Sequence[str]) -> list[str]:
    """`options` sorted by a hash of (goal, option): the same order for a goal in every
    process and at training and acting alike, a different one from goal to goal, and
    unrelated to the order the steps are done in (module docstring)."""
    g = goal_text(goal).lower()

    def key(o: str) -> str:
        return hashlib.sha256(f"{g}\n{o}".encode()).hexdigest()

    return sorted(options, key=lambda o: (key(o), o))


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


def offered(options: Sequence[str], so_far: Sequence[str]) -> list[str]:
    """What the policy chooses the next step among: the options, and DONE once the plan
    has a step (an empty plan is no plan)."""
    return [*options, DONE] if so_far else list(options)


def choose_plan(score: Score, goal: str, memories: Sequence[str], options: Sequence[str],
                cap: int) -> list[str]:
    """The policy's plan, one greedy choice among the options (+ DONE) per step."""
    plan: list[str] = []
    while len(plan) < cap:
        cands = offered(options, plan)
        values = score(choice_prompt(goal, memories, options, plan), cands)
        pick = cands[max(range(len(values)), key=values.__getitem__)]  # ties: the first
        if pick == DONE:
            break
        plan.append(pick)
    return plan


@dataclass(frozen=True)
class PlanChoice:
    """One decision of the policy planner: the prompt, the options offered after it (in
    the order scored) and the index of the one to choose."""

    prompt: str
    offered: tuple[str, ...]
    chosen: int


def plan_choices(goal: str, memories: Sequence[str], options: Sequence[str],
                 plan: Sequence[str], cap: int) -> list[PlanChoice]:
    """The decisions `choose_plan` takes to write `plan`: each step chosen after the plan
    before it, then DONE (left out when the plan fills the cap: the planner stops there
    without asking). [] when the planner cannot write the plan: empty, longer than the
    cap, or a step that is no option."""
    if not plan or len(plan) > cap or not set(plan) <= set(options):
        return []
    out = []
    for i, step in enumerate([*plan, DONE] if len(plan) < cap else plan):
        cands = offered(options, plan[:i])
        out.append(PlanChoice(choice_prompt(goal, memories, options, plan[:i]),
                              tuple(cands), cands.index(step)))
    return out


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

    def choices(self, task: Task, goal: str, plan: Sequence[str]) -> list[PlanChoice]:
        """The policy planner's decisions that write `plan` for this episode, with the
        memories and options it would be shown (`plan_choices`): what the warm start and
        RFT train it on, a success's realised plan as `plan`."""
        query = Query(task.task_type, goal)
        shown, options, cap = self._inputs(query)
        return plan_choices(goal, shown, options, plan, cap)

    def realised_choices(self, traj: Trajectory) -> list[PlanChoice]:
        """The decisions that write a success's realised plan (`subgoal_sequence` of its
        actions); [] when the planner could not write it (`plan_choices`)."""
        task = Task(traj.task_id, traj.env, traj.split, traj.task_type, "")
        return self.choices(task, traj.goal,
                            subgoal_sequence(traj.actions, traj.goal, self.ax))

    def _inputs(self, query: Query) -> tuple[list[str], list[str], int]:
        """(planning memories shown, options, cap) of a plan for `query`."""
        shown = [r.text for r in planning_rules(self.pool, query, self.k)]
        options = plan_options(self.ax, query.goal, self._remembered_steps(query))
        return shown, options, plan_cap(self.ax, self.task_types, query.goal)

    def _written(self, query: Query) -> list[str]:
        shown, options, cap = self._inputs(query)
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
