"""WebShop's action abstraction: which button a click is, and what it chose.

`search[...]` and `click[...]` become verbs (search, click product, select option,
buy; back to search, next page, go back, read details are not milestones). A verb-only
view cannot tell the commonest failure (the right sequence of actions on the wrong
product, or with the wrong option) from a success, so the abstraction also says:

* which product was opened: the ASIN is the act's `ident` (compared only between
  trajectories of the same goal: there the reference's product is the goal's);
* whether a chosen option is one the goal asks for: the goal sentence lists its
  options ("... with color: black, and size: large, and price lower than 40.00
  dollars"); a clicked value that matches one of them, with the reward's own fuzzy
  rule (`reward.option_matches`), becomes "the size the goal asks for", any other
  value "an option the goal does not ask for".

Subgoals (H2R) are the four steps of a purchase: "search for the product", "open a
matching product", "choose the options" (every option click; skipped in the default
plan when the goal names no option) and "buy".
"""

from __future__ import annotations

import re

from jerp.envs.actions import Act, verbs_in

from .reward import option_matches

MILESTONE_VERBS = frozenset({"search", "click product", "select option", "buy"})
OTHER_OPTION = "an option the goal does not ask for"

_BUTTONS = {"back to search": "back to search", "next >": "next page", "< prev": "go back",
            "description": "read details", "features": "read details",
            "reviews": "read details", "attributes": "read details", "buy now": "buy"}
_ACTION = re.compile(r"(search|click)\[(.*)\]", re.DOTALL)
_ASIN = re.compile(r"b[0-9a-z]{9}")
_PRICE = re.compile(r",? and price lower than [\d.]+ dollars\.?$")
_OPTION = re.compile(r"([a-z][a-z ]*?): (.+)")

_PHRASES = {
    "search": "search with the key words of the goal",
    "click product": "open the product the goal describes (check its title and price "
                     "against the goal before you choose options)",
    "buy": "click Buy Now",
}
_SHORT = {"click product": "open the product the goal describes"}
SUBGOALS = {"search": "search for the product", "click product": "open a matching product",
            "select option": "choose the options", "buy": "buy"}
_VERB_WORDS = {
    "search": r"search",
    "click product": r"open the product|open a product|open the result",
    "select option": r"select|choose|option",
    "buy": r"buy now|buy",
}


def goal_options(goal: str) -> dict[str, str]:
    """The options a synthetic goal sentence asks for: 'with color: black, and size: l'
    -> {'color': 'black', 'size': 'l'} (lowercased; {} when it names none)."""
    text = _PRICE.sub("", " ".join(goal.lower().split()))
    end = len(text)
    while (i := text.rfind(" with ", 0, end)) >= 0:  # the last " with " that parses
        parts = re.split(r", and (?=[a-z][a-z ]*?: )", text[i + len(" with "):])
        found = [_OPTION.fullmatch(p) for p in parts]
        if all(found):
            return {m.group(1): m.group(2) for m in found if m}
        end = i
    return {}


def option_role(value: str, wanted: dict[str, str]) -> str:
    """'the size the goal asks for' when `value` matches the goal's size, else OTHER_OPTION."""
    for name, target in wanted.items():
        if option_matches([value], {name: target}):
            return f"the {name} the goal asks for"
    return OTHER_OPTION


class WebShopActions:
    """The `ActionAbstraction` of WebShop (stateless)."""

    name = "webshop"

    def abstract(self, actions: list[str], goal: str) -> list[Act]:
        wanted = goal_options(goal)
        return [self._act(a, wanted) for a in actions]

    @staticmethod
    def _act(action: str, wanted: dict[str, str]) -> Act:
        m = _ACTION.fullmatch(" ".join(action.strip().lower().split()))
        if m is None:  # not a WebShop command: the env treats it as a no-op
            verb = action.strip().lower().split(" ", 1)[0] if action.strip() else ""
            return Act(verb, (), action)
        kind, arg = m.group(1), m.group(2).strip()
        if kind == "search":
            return Act("search", (), action, True)
        if arg in _BUTTONS:
            verb = _BUTTONS[arg]
            return Act(verb, (), action, verb in MILESTONE_VERBS)
        if _ASIN.fullmatch(arg):
            return Act("click product", (), action, True, ident=arg)
        return Act("select option", (option_role(arg, wanted),), action, True)

    def phrase(self, act: Act) -> str:
        if act.verb == "select option" and act.args:
            return f"select {act.args[0]}"
        return _PHRASES.get(act.verb) or " ".join((act.verb, *act.args)).strip()

    def short_phrase(self, act: Act) -> str:
        return _SHORT.get(act.verb) or self.phrase(act)

    def rule_verbs(self, text: str) -> set[str] | None:
        return verbs_in(text, _VERB_WORDS)

    def subgoal_name(self, act: Act, goal: str) -> str:
        return SUBGOALS.get(act.verb, act.verb)

    def default_plan(self, task_type: str, goal: str) -> list[str]:
        verbs = ["search", "click product", "select option", "buy"]
        if not goal_options(goal):
            verbs.remove("select option")
        return [SUBGOALS[v] for v in verbs]

    def subgoal_options(self, goal: str) -> list[str]:
        return list(SUBGOALS.values())  # choosing options is offered even when none is asked

    def adapt_subgoal(self, name: str, from_goal: str, to_goal: str) -> str:
        return name  # the purchase's subgoals name no product


WEBSHOP_ACTIONS = WebShopActions()
