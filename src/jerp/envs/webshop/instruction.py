"""What a goal's instruction says: the searches it suggests and what it asks for.

Everything here reads only what the instruction states (its text, the options and the
price bound it names), never the goal's product: the search page's admissible queries
and the scripted shopper (shopper.py) both start from it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .goals import Goal

_PRICE_CLAUSE = re.compile(r", and price lower than [\d.]+ dollars$")
_LEAD_IN = re.compile(r"^(find me|i need|i want|i am looking for|i'm looking for|buy me)\s+")


def _parts(goal: Goal) -> tuple[str, str, str]:
    """(instruction lowercased, without its price clause, and also without its options)."""
    text = goal.instruction_text.lower()
    no_price = _PRICE_CLAUSE.sub("", text)
    opts = ", and ".join(f"{k}: {v}" for k, v in goal.goal_options.items()).lower()
    base = no_price[: -len(" with " + opts)] if opts and no_price.endswith(opts) else no_price
    return text, no_price, base


def search_candidates(goal: Goal) -> list[str]:
    """The search queries offered as admissible on the search page, best first.

    1. the instruction without its lead-in ("find me") and price clause (options kept: their
       values are indexed text, and they single the product out);
    2. the whole instruction, lowercased;
    3. the product description alone (no options, no price).
    On the 6,910 goals (seed 0) they rank the goal's product in the top 10 for 91%, 88% and
    56% of goals, and in the top 50 for 99.5%, 97% and 97%."""
    text, no_price, base = _parts(goal)
    cands = [_LEAD_IN.sub("", no_price), text, _LEAD_IN.sub("", base)]
    out: list[str] = []
    for c in cands:
        c = " ".join(c.split())
        if c and c not in out:
            out.append(c)
    return out


@dataclass(frozen=True)
class Wanted:
    """A goal as its instruction states it: the product described, the options named
    (as written, so a value compares equal to the option button it names) and the price
    bound (`goals.NO_PRICE_BOUND` when none is stated)."""

    description: str
    options: dict[str, str]
    price_upper: float
    queries: tuple[str, ...]  # search_candidates, best first

    @classmethod
    def of(cls, goal: Goal) -> Wanted:
        return cls(description=" ".join(_LEAD_IN.sub("", _parts(goal)[2]).split()),
                   options={k.lower(): v.lower() for k, v in goal.goal_options.items()},
                   price_upper=goal.price_upper, queries=tuple(search_candidates(goal)))
