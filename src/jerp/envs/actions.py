"""Action abstraction: the vocabulary in which trajectories are compared and rules written.

Two rollouts of the same task type act on different instances ("take apple 2 from
countertop 1" vs "take egg 1 from fridge 1"; product B07... vs B08...), so the
reflectors and the progress reward compare them after abstraction. Each environment
supplies its own `ActionAbstraction` (envs/alfworld_actions.py, envs/webshop/actions.py)
through its spec in `envs/registry.py`; the reflectors only see the `Act`s it returns:

* roles: an action's arguments as roles in the goal ("the target object") or types
  ("a microwave"), never instance names;
* milestones: the state-changing actions a success cannot skip (ALFWorld: take,
  heat, cool, clean, slice, use, move; WebShop: search, open a product, choose an
  option, buy); navigation and looking around are not;
* subgoal boundaries: a subgoal ends at each milestone (H2R segments trajectories there),
  and each environment names the subgoal a milestone closes in plain language
  ("cool the mug with the fridge", "choose the options"), says which subgoals a task
  type needs when no plan is known and which a plan for a goal may name at all, and
  carries a plan over to another goal.

An `Act` may also carry an instance `ident` that names *which* instance it acted on
(WebShop: the product's ASIN). It counts in the comparison keys, never in rule text,
and only means something between two trajectories of the same goal (`generic()` drops it).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Protocol


@dataclass(frozen=True)
class Act:
    """One action, abstracted. `args` are role or type phrases; `raw` is the command."""

    verb: str
    args: tuple[str, ...]
    raw: str
    milestone: bool = False
    ident: str = ""  # which instance (same goal only); never shown in rules

    @property
    def key(self) -> str:
        """What a milestone is identified by (where an object was taken from does not count)."""
        args = self.args[:1] if self.verb == "take" else self.args
        return " ".join((self.verb, *args, *((self.ident,) if self.ident else ())))

    @property
    def align_key(self) -> str:
        """What two sequences are aligned on: verb, every abstracted argument, identity."""
        return " ".join((self.verb, *self.args, *((self.ident,) if self.ident else ())))

    @property
    def is_milestone(self) -> bool:
        return self.milestone

    def generic(self) -> Act:
        """The same act without its instance identity (to compare across goals)."""
        return replace(self, ident="") if self.ident else self


class ActionAbstraction(Protocol):
    """What an environment tells the reflectors about its actions (see the module doc)."""

    name: str

    def abstract(self, actions: list[str], goal: str) -> list[Act]:
        """Each action with its roles, milestone flag and identity, given the goal text."""
        ...

    def phrase(self, act: Act) -> str:
        """The action as advice: 'heat the target object with a microwave'."""
        ...

    def short_phrase(self, act: Act) -> str:
        """The action as a point in time: 'take the target object', 'heat it'."""
        ...

    def rule_verbs(self, text: str) -> set[str] | None:
        """Milestone verbs a rule asks for; None when it cannot be judged."""
        ...

    def subgoal_name(self, act: Act, goal: str) -> str:
        """The subgoal a milestone closes, in plain language with the goal's own types:
        'find and take the mug', 'put the mug in/on the shelf', 'choose the options'."""
        ...

    def default_plan(self, task_type: str, goal: str) -> list[str]:
        """The subgoals a task of this type needs, in order, when no plan is remembered."""
        ...

    def subgoal_options(self, goal: str) -> list[str]:
        """Every subgoal a plan for `goal` may name (H2R's planner chooses among them), in
        the words `subgoal_name` closes them with, so the executor can follow any plan."""
        ...

    def adapt_subgoal(self, name: str, from_goal: str, to_goal: str) -> str:
        """A subgoal of a plan made for `from_goal`, restated for `to_goal`."""
        ...


def milestones(acts: list[Act]) -> list[Act]:
    """The state-changing acts of a trajectory, in order."""
    return [a for a in acts if a.is_milestone]


def subgoal_boundaries(acts: list[Act]) -> list[int]:
    """End index (exclusive) of each subgoal: a subgoal closes with each milestone; steps
    after the last milestone form a final, unfinished subgoal."""
    ends = [i + 1 for i, a in enumerate(acts) if a.is_milestone]
    if acts and (not ends or ends[-1] < len(acts)):
        ends.append(len(acts))
    return ends


def generic(acts: list[Act]) -> list[Act]:
    return [a.generic() for a in acts]


_NEGATION = re.compile(r"\b(?:do not|don't|never|avoid|instead of|rather than|without)\b", re.I)


def verbs_in(text: str, verb_words: dict[str, str]) -> set[str] | None:
    """The verbs of `verb_words` (verb -> regex alternation) a rule text asks for; None
    when it cannot be judged (negated advice, or no known verb)."""
    if _NEGATION.search(text):
        return None
    low = text.lower()
    verbs = {v for v, words in verb_words.items() if re.search(rf"\b(?:{words})\b", low)}
    return verbs or None


def followed(rule_text: str, acts: list[Act], abstraction: ActionAbstraction) -> bool | None:
    """Whether a trajectory did every milestone verb the rule asks for (None: cannot tell)."""
    verbs = abstraction.rule_verbs(rule_text)
    if verbs is None:
        return None
    done = {a.verb for a in acts if a.is_milestone}
    return verbs <= done
