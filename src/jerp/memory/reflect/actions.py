"""Abstract actions: the vocabulary in which rollouts are compared and rules are written.

Two rollouts of the same task type act on different object instances in
different rooms ("take apple 2 from countertop 1" vs "take egg 1 from
fridge 1"), so they are compared after abstraction: instance numbers are
dropped, the goal's object and receptacle become roles ("the target object",
"the target receptacle"), everything else becomes its type ("a microwave").
Milestones are the state-changing actions (take, heat, cool, clean, slice,
use, move; on WebShop search, pick a product, choose an option, buy), the
steps a success cannot skip; navigation and looking around are not.

ALFWorld's command forms and goal sentences are parsed explicitly; any other
action falls back to "verb + abstracted words", which keeps the reflector
usable on other text worlds (WebShop's `search[...]` / `click[...]` get a
small dedicated abstraction).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

TARGET_OBJECT = "the target object"
TARGET_RECEP = "the target receptacle"
LAMP = "the lamp"

MILESTONE_VERBS = frozenset(
    {"take", "heat", "cool", "clean", "slice", "use", "move", "search", "click product",
     "select option", "buy"}
)

_GOAL_PATTERNS = [
    r"(?:heat|cool|clean) some (\w+) and put it (?:in|on) (\w+)",
    r"put (?:a|an|some|two) (?:hot |cool |cold |clean )?(\w+) (?:in|on) (\w+)",
    r"find two (\w+) and put them (?:in|on) (\w+)",
    r"examine the (\w+) with the (\w+)",
    r"look at (\w+) under the (\w+)",
]
_LIGHT_GOAL = re.compile(r"examine the \w+ with the|look at \w+ under the")

_ALF_COMMANDS = [
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
_WEB_BUTTONS = {"back to search": "back to search", "next >": "next page", "< prev": "go back",
                "description": "read details", "features": "read details",
                "reviews": "read details", "attributes": "read details", "buy now": "buy"}
_ASIN = re.compile(r"b[0-9a-z]{9}")


@dataclass(frozen=True)
class GoalRoles:
    """The goal's target object and receptacle types (None when the goal is not parsed)."""

    obj: str | None = None
    recep: str | None = None
    light: bool = False  # look_at_obj_in_light: the "receptacle" is a lamp


@dataclass(frozen=True)
class Act:
    """One action, abstracted. `args` are role or type phrases; `raw` is the command."""

    verb: str
    args: tuple[str, ...]
    raw: str

    @property
    def key(self) -> str:
        """What a milestone is identified by (where an object was taken from does not count)."""
        args = self.args[:1] if self.verb == "take" else self.args
        return " ".join((self.verb, *args))

    @property
    def align_key(self) -> str:
        """What two sequences are aligned on: verb and every abstracted argument."""
        return " ".join((self.verb, *self.args))

    @property
    def is_milestone(self) -> bool:
        return self.verb in MILESTONE_VERBS


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


def _web_act(verb: str, arg: str) -> Act | None:
    raw = f"{verb}[{arg}]"
    if verb == "search":
        return Act("search", (), raw)
    if verb != "click":
        return None
    if arg in _WEB_BUTTONS:
        return Act(_WEB_BUTTONS[arg], (), raw)
    if _ASIN.fullmatch(arg):
        return Act("click product", (), raw)
    return Act("select option", (), raw)


def abstract_action(action: str, roles: GoalRoles) -> Act:
    """Parse a command and abstract its arguments (see the module docstring)."""
    text = " ".join(action.strip().lower().split())
    web = re.fullmatch(r"(search|click)\[(.*)\]", text)
    if web:
        act = _web_act(web.group(1), web.group(2).strip())
        if act:
            return act
    for verb, pattern in _ALF_COMMANDS:
        m = pattern.fullmatch(text)
        if m:
            return Act(verb, tuple(entity_phrase(g, roles) for g in m.groups()), action)
    words = text.split()
    rest = re.sub(r"\s+\d+\b", "", " ".join(words[1:])).strip()
    return Act(words[0] if words else "", (rest,) if rest else (), action)


def abstract_actions(actions: list[str], goal: str) -> list[Act]:
    roles = parse_goal(goal)
    return [abstract_action(a, roles) for a in actions]


# ---------------------------------------------------------------- rule language


def _definite(phrase: str) -> str:
    """'a microwave' -> 'the microwave' (second mention)."""
    return re.sub(r"^an? ", "the ", phrase)


_WEB_PHRASES = {
    "search": "search with the key words of the goal",
    "click product": "open a product from the results that matches the goal",
    "select option": "select the options (size, colour, ...) the goal asks for",
    "buy": "click Buy Now",
}


def action_phrase(act: Act) -> str:
    """The action as advice: 'heat the target object with a microwave'."""
    a, verb = act.args, act.verb
    if verb == "take" and a:
        return f"find and take {a[0]}"
    if verb == "move" and len(a) == 2:
        return f"put {a[0]} in {a[1]}"
    if verb in ("heat", "cool", "clean", "slice") and len(a) == 2:
        return f"{verb} {a[0]} with {a[1]}"
    if verb == "use" and a == (LAMP,):
        return f"turn on {LAMP}"
    if verb in _WEB_PHRASES:
        return _WEB_PHRASES[verb]
    return " ".join((verb, *a)).strip()


def short_phrase(act: Act) -> str:
    """The action as a point in time: 'take the target object', 'heat it'."""
    if act.verb == "take" and act.args:
        return f"take {act.args[0]}"
    if act.verb in ("heat", "cool", "clean", "slice") and act.args:
        return f"{act.verb} {act.args[0]}"
    return action_phrase(act)


def with_pronoun(phrase: str, obj: str) -> str:
    """Refer to an object already named in the sentence as 'it' (first occurrence only)."""
    return phrase.replace(obj, "it", 1) if obj else phrase


def second_mention(phrase: str, first: str) -> str:
    """After 'go to a microwave', say 'the microwave' in the same sentence."""
    if first.startswith(("a ", "an ")):
        return phrase.replace(first, _definite(first))
    return phrase.replace(f" in {first}", " there")


# ---------------------------------------------------------------- does a trajectory follow a rule

_VERB_WORDS = {
    "take": r"take|taking|took|pick(?:ing)? up|grab",
    "heat": r"heat|heating|heated|warm|microwave it",
    "cool": r"cool|cooling|cooled|chill",
    "clean": r"clean|cleaning|cleaned|wash|rinse",
    "slice": r"slice|slicing|cut",
    "use": r"use|using|turn(?:ing)? on|switch(?:ing)? on",
    "move": r"put|putting|place|placing|move it|move the",
    "search": r"search",
    "select option": r"select|choose|option",
    "buy": r"buy now|buy",
}
_NEGATION = re.compile(r"\b(?:do not|don't|never|avoid|instead of|rather than|without)\b", re.I)


def rule_verbs(text: str) -> set[str] | None:
    """Milestone verbs a rule asks for; None when it cannot be judged (negated, or none)."""
    if _NEGATION.search(text):
        return None
    low = text.lower()
    verbs = {v for v, words in _VERB_WORDS.items() if re.search(rf"\b(?:{words})\b", low)}
    return verbs or None


def followed(rule_text: str, acts: list[Act]) -> bool | None:
    """Whether a trajectory did every milestone the rule asks for (None: cannot tell)."""
    verbs = rule_verbs(rule_text)
    if verbs is None:
        return None
    done = {a.verb for a in acts if a.is_milestone}
    return verbs <= done
