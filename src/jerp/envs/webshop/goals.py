"""Synthetic WebShop goals, built from the attribute data the way the original builds them.

One goal per (instruction product, combination of option values); the canonical order is
the upstream one (`random.seed(233); random.shuffle(goals)`), which depends only on the
list length. Random draws (range prices, price bounds) come from one `random.Random(seed)`,
so a seed fixes every goal text, unlike upstream where they vary from run to run.
"""

from __future__ import annotations

import itertools
import math
import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from .data import Product

PRICE_RANGE = tuple(10.0 * i for i in range(1, 100))  # 10, 20, ..., 990
NO_PRICE_BOUND = 1_000_000.0
SHUFFLE_SEED = 233
SPLITS = ("train", "eval_in", "eval_out")
CATEGORIES = ("beauty", "electronics", "fashion", "garden", "grocery")  # task types
EVAL_IN_SIZE = 500  # upstream test split = canonical goals[0:500]
EVAL_OUT_QUERY_SHARE = 0.1  # share of product types (`query`) held out for eval_out


@dataclass(frozen=True)
class Goal:
    """One synthetic shopping goal."""

    index: int  # position in the canonical (shuffled) order
    asin: str
    instruction_text: str
    attributes: tuple[str, ...]
    goal_options: dict[str, str]
    price_upper: float
    category: str
    query: str
    name: str
    product_category: str
    weight: float


def draw_product_prices(products: Sequence[Product], rng: random.Random) -> dict[str, float]:
    """The numeric price of each product: its value, or a uniform draw inside its range."""
    prices: dict[str, float] = {}
    for p in products:
        prices[p.asin] = rng.uniform(p.pricing[0], p.pricing[1]) if len(p.pricing) > 1 else (
            p.pricing[0]
        )
    return prices


def price_bound(price: float, rng: random.Random) -> tuple[float, str]:
    """Upper bound: the larger of 2 draws among the 4 multiples of 10 above the price."""
    above = [p for p in PRICE_RANGE if p > price][:4]
    if len(above) < 2:
        return NO_PRICE_BOUND, ""
    upper = max(rng.sample(above, 2))
    return upper, f", and price lower than {upper:.2f} dollars"


def build_goals(
    products: Sequence[Product], prices: dict[str, float], rng: random.Random
) -> list[Goal]:
    """All synthetic goals in canonical order (upstream build order, then the 233 shuffle)."""
    raw: list[dict] = []
    for p in products:
        if p.instruction is None:
            continue
        upper, price_text = price_bound(prices[p.asin], rng)
        names = sorted(p.options)
        for combo in itertools.product(*(p.options[n] for n in names)):
            goal_options = dict(zip(names, combo, strict=True))
            text = p.instruction
            if goal_options:
                text += " with " + ", and ".join(f"{k}: {v}" for k, v in goal_options.items())
            raw.append(
                dict(
                    asin=p.asin,
                    instruction_text=text + price_text,
                    attributes=tuple(p.instruction_attributes),
                    goal_options=goal_options,
                    price_upper=upper,
                    category=p.category,
                    query=p.query,
                    name=p.title,
                    product_category=p.product_category,
                )
            )
    counts = Counter(a for g in raw for a in g["attributes"])
    for g in raw:
        attrs = g["attributes"]
        g["weight"] = sum(1.0 / counts[a] for a in attrs) / len(attrs) if attrs else 0.0
    random.Random(SHUFFLE_SEED).shuffle(raw)
    return [Goal(index=i, **g) for i, g in enumerate(raw)]


def make_goals(products: Sequence[Product], seed: int) -> tuple[list[Goal], dict[str, float]]:
    """Goals and product prices for one seed (range prices first, then price bounds)."""
    rng = random.Random(seed)
    prices = draw_product_prices(products, rng)
    return build_goals(products, prices, rng), prices


def held_out_queries(goals: Sequence[Goal], seed: int) -> frozenset[str]:
    """Product types kept out of training for the out-of-distribution split."""
    queries = sorted({g.query for g in goals})
    rng = random.Random(f"webshop-eval-out-{seed}")
    rng.shuffle(queries)
    return frozenset(queries[: max(1, math.ceil(EVAL_OUT_QUERY_SHARE * len(queries)))])


def split_goals(goals: Sequence[Goal], seed: int) -> dict[str, list[Goal]]:
    """eval_out: goals of held-out product types; eval_in: the rest of the upstream test
    range goals[0:500]; train: everything else (same product types as eval_in)."""
    held = held_out_queries(goals, seed)
    out: dict[str, list[Goal]] = {s: [] for s in SPLITS}
    for g in goals:
        if g.query in held:
            out["eval_out"].append(g)
        elif g.index < EVAL_IN_SIZE:
            out["eval_in"].append(g)
        else:
            out["train"].append(g)
    return out
