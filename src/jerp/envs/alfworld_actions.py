"""ALFWorld's action abstraction: command forms, goal roles, milestones, rule phrases.

The goal's object and receptacle become roles ("the target object", "the target
receptacle"; "the lamp" in look_at_obj_in_light), every other entity its type
("a microwave"), instance numbers are dropped. Milestones are take, heat, cool,
clean, slice, use and move; going somewhere, opening and examining are not.
Commands outside the known forms fall back to "verb + abstracted words".

Subgoals (H2R) are named with the goal's own types, not roles: "find and take the
mug", "cool the mug with the fridge", "put the mug in/on the shelf", "turn on the
desklamp"; each task type has a default plan of such subgoals (`PLANS`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from jerp.envs.actions import Act, verbs_in

TARGET_OBJECT = "the target object"
TARGET_RECEP = "the target receptacle"
LAMP = "the lamp"

MILESTONE_VERBS = frozenset({"take", "heat", "cool", "clean", "slice", "use", "move"})

_GOAL_PATTERNS = [
    r"(?:heat|cool|clean) some (\w+) and put it (?:in|on) (\w+)",
    r"put (?:a|an|some|two) (?:hot |cool |cold |clean )?(\w+) (?:in|on) (\w+)",
    r"find two (\w+) and put them (?:in|on) (\w+)",
    r"examine the (\w+) with the (\w+)",
    r"look at (\w+) under the (\w+)",
]
_LIGHT_GOAL = re.compile(r"examine the \w+ with the|look at \w+ under the")

_COMMANDS = [
    ("go to", re.compile(r"go to (.+)")),
    ("take", re.compile(r"take (.+?) from (.+)")),
    ("move", re.compile(r"(?:move|put) (.+?) (?:to|in|on|into|onto|in/on) (.+)")),
    ("heat", re.compile(r"heat (.+?) with (.+)")),
    ("cool", re.compile(r"cool (.+?) with (.+)")),
    ("clean", re.compile(r"clean (.+?) with (.+)")),
    ("slice", re.compile(r"slice (.+?) with (.+)")),
    ("use", re.compile(r"use (.+)")),
    ("open", re.compile(r"open (.+)")),
    ("close", re.compile(r"close (.+)")),
    ("examine", re.compile(r"examine (.+)")),
]

_VERB_WORDS = {
    "take": r"take|taking|took|pick(?:ing)? up|grab",
    "heat": r"heat|heating|heated|warm|microwave it",
    "cool": r"cool|cooling|cooled|chill",
    "clean": r"clean|cleaning|cleaned|wash|rinse",
    "slice": r"slice|slicing|cut",
    "use": r"use|using|turn(?:ing)? on|switch(?:ing)? on",
    "move": r"put|putting|place|placing|move it|move the",
}


# The default subgoal plan of each task type, in role words (see `_named`).
PLANS: dict[str, tuple[str, ...]] = {
    "pick_and_place_simple": ("take", "put"),
    "look_at_obj_in_light": ("take", "light"),
    "pick_clean_then_place_in_recep": ("take", "clean", "put"),
    "pick_heat_then_place_in_recep": ("take", "heat", "put"),
    "pick_cool_then_place_in_recep": ("take", "cool", "put"),
    "pick_two_obj_and_place": ("take", "put", "take", "put"),
}
_APPLIANCE = {"clean": "sinkbasin", "heat": "microwave", "cool": "fridge"}


@dataclass(frozen=True)
class GoalRoles:
    """The goal's target object and receptacle types (None when the goal is not parsed)."""

    obj: str | None = None
    recep: str | None = None
    light: bool = False  # look_at_obj_in_light: the "receptacle" is a lamp


def parse_goal(goal: str) -> GoalRoles:
    """Target object and receptacle types of an ALFWorld goal sentence."""
    text = goal.lower().split("your task is to:")[-1].strip().rstrip(".")
    for pattern in _GOAL_PATTERNS:
        m = re.search(pattern, text)
        if m:
            return GoalRoles(m.group(1), m.group(2), bool(_LIGHT_GOAL.search(text)))
    return GoalRoles()


def entity_type(name: str) -> str:
    """'apple 2' -> 'apple'; 'desklamp 1' -> 'desklamp'."""
    return re.sub(r"\s+\d+$", "", name.strip().lower())


def _article(word: str) -> str:
    return f"an {word}" if word[:1] in "aeiou" else f"a {word}"


def entity_phrase(name: str, roles: GoalRoles) -> str:
    """An object or receptacle named by its role in the goal, else by its type."""
    kind = entity_type(name)
    if kind and kind == roles.obj:
        return TARGET_OBJECT
    if kind and kind == roles.recep:
        return LAMP if roles.light else TARGET_RECEP
    return _article(kind) if kind else kind


def abstract_action(action: str, roles: GoalRoles) -> Act:
    """Parse a command and abstract its arguments (see the module docstring)."""
    text = " ".join(action.strip().lower().split())
    for verb, pattern in _COMMANDS:
        m = pattern.fullmatch(text)
        if m:
            args = tuple(entity_phrase(g, roles) for g in m.groups())
            return Act(verb, args, action, verb in MILESTONE_VERBS)
    words = text.split()
    rest = re.sub(r"\s+\d+\b", "", " ".join(words[1:])).strip()
    verb = words[0] if words else ""
    return Act(verb, (rest,) if rest else (), action, verb in MILESTONE_VERBS)


class AlfWorldActions:
    """The `ActionAbstraction` of ALFWorld (stateless)."""

    name = "alfworld"

    def abstract(self, actions: list[str], goal: str) -> list[Act]:
        roles = parse_goal(goal)
        return [abstract_action(a, roles) for a in actions]

    def phrase(self, act: Act) -> str:
        a, verb = act.args, act.verb
        if verb == "take" and a:
            return f"find and take {a[0]}"
        if verb == "move" and len(a) == 2:
            return f"put {a[0]} in {a[1]}"
        if verb in ("heat", "cool", "clean", "slice") and len(a) == 2:
            return f"{verb} {a[0]} with {a[1]}"
        if verb == "use" and a == (LAMP,):
            return f"turn on {LAMP}"
        return " ".join((verb, *a)).strip()

    def short_phrase(self, act: Act) -> str:
        if act.verb == "take" and act.args:
            return f"take {act.args[0]}"
        if act.verb in ("heat", "cool", "clean", "slice") and act.args:
            return f"{act.verb} {act.args[0]}"
        return self.phrase(act)

    def rule_verbs(self, text: str) -> set[str] | None:
        return verbs_in(text, _VERB_WORDS)

    def subgoal_name(self, act: Act, goal: str) -> str:
        roles = parse_goal(goal)
        a = [_named(x, roles) for x in act.args]
        if act.verb == "take" and a:
            return f"find and take {a[0]}"
        if act.verb == "move" and len(a) == 2:
            return f"put {a[0]} in/on {a[1]}"
        if act.verb in ("heat", "cool", "clean", "slice") and len(a) == 2:
            return f"{act.verb} {a[0]} with {a[1]}"
        if act.verb == "use" and a:
            return f"turn on {a[0]}"
        return " ".join((act.verb, *a)).strip()

    def default_plan(self, task_type: str, goal: str) -> list[str]:
        if task_type not in PLANS:
            raise ValueError(f"no default plan for ALFWorld task type {task_type!r}; "
                             f"accepted: {sorted(PLANS)}")
        steps = _plan_steps(parse_goal(goal))
        return [steps[s] for s in PLANS[task_type]]

    def subgoal_options(self, goal: str) -> list[str]:
        """Take, clean, heat, cool and put the goal's object; turn on the lamp only in a
        look-at-in-light goal (its "receptacle" is the lamp)."""
        roles = parse_goal(goal)
        steps = _plan_steps(roles)
        return [steps[s] for s in ("take", *_APPLIANCE, "put", *(("light",) * roles.light))]

    def adapt_subgoal(self, name: str, from_goal: str, to_goal: str) -> str:
        old, new = parse_goal(from_goal), parse_goal(to_goal)
        swaps = {w: v for w, v in ((old.obj, new.obj), (old.recep, new.recep)) if w and v}
        if not swaps:
            return name
        pattern = re.compile(r"\b(" + "|".join(map(re.escape, swaps)) + r")\b")
        return pattern.sub(lambda m: swaps[m.group(1)], name)


def _plan_steps(roles: GoalRoles) -> dict[str, str]:
    """Each role word of `PLANS` as a subgoal named with the goal's own types."""
    obj, recep = f"the {roles.obj or 'object'}", f"the {roles.recep or 'receptacle'}"
    steps = {"take": f"find and take {obj}", "put": f"put {obj} in/on {recep}",
             "light": f"turn on {recep}"}
    steps.update({v: f"{v} {obj} with the {_APPLIANCE[v]}" for v in _APPLIANCE})
    return steps


def _named(arg: str, roles: GoalRoles) -> str:
    """A role or type phrase of an `Act`, back in the goal's own words: 'the mug'."""
    if arg == TARGET_OBJECT and roles.obj:
        return f"the {roles.obj}"
    if arg in (TARGET_RECEP, LAMP) and roles.recep:
        return f"the {roles.recep}"
    return re.sub(r"^(?:a|an) ", "the ", arg)


ALFWORLD_ACTIONS = AlfWorldActions()
