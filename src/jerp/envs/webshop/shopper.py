"""A scripted WebShop shopper: WebShop's searching expert (DAgger labels, demonstrations).

The env's `reference` is an oracle: it knows the goal's product and pages straight to
it. The shopper knows only what a player knows: the instruction as stated (`Wanted`:
the product described, the options named, the price bound) and what the pages show
(result titles and prices, the open product's options, which products this session
opened). It plays as a careful person would:

* search page, or the results of a search it would not make: search the first
  admissible query;
* results: open the best result (title closest to the described product, price within
  the bound), never one it opened and rejected; page on when none is left on the seen
  pages, then try the next admissible query, then give up (None);
* item page: keep the product when it offers every named option and no better result is
  left; then click each named option not yet chosen, then buy. Otherwise go back;
* description / features / reviews: go back to the item.

It is a function of the state, not of the actions that led there (its memory is the
env's own: the session's visited products), so it labels the state any trajectory
reached, the policy's own included. A rejected product is one opened that lacks a named
option (the goal's product offers them all: goals are built from its option values).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache

from . import pages
from .instruction import Wanted
from .pages import RESULTS_PER_PAGE
from .search import analyze

BACK = f"click[{pages.PREV.lower()}]"
NEXT = f"click[{pages.NEXT.lower()}]"
BUY = f"click[{pages.BUY_NOW.lower()}]"
_SUB_PAGES = tuple(s.lower() for s in pages.SUB_PAGES)
# BM25's order against title overlap. On 200 seed-0 train goals (bench/webshop_shopper.py)
# weights 0 to 3 all win 167; 0.5 opens fewer wrong products: 8.1 steps a game, not 9.7.
RANK_WEIGHT = 0.5


@dataclass(frozen=True)
class Listing:
    """A search result as the results page shows it."""

    asin: str
    title: str
    low_price: float  # a range's lower end: its price is drawn inside it


@dataclass(frozen=True)
class View:
    """The state as a player sees it: the page, the current search's results (only the
    pages up to `page_num` are read: those were shown), the open product, and the options
    of each product opened this session (seen on its page)."""

    page: str  # search | results | item | description | features | reviews | done
    query: str = ""
    hits: Sequence[Listing] = ()
    page_num: int = 1
    item: str | None = None
    chosen: Mapping[str, str] = field(default_factory=dict)
    opened: Mapping[str, Mapping[str, Sequence[str]]] = field(default_factory=dict)


def next_action(want: Wanted, view: View) -> str | None:
    """The shopper's action at `view`; None when the episode is over or it gives up."""
    if view.page == "done":
        return None
    if view.query not in want.queries:  # the search page, or another's search: its own
        return f"search[{want.queries[0]}]"
    if view.page in _SUB_PAGES:
        return BACK
    if view.page == "results":
        return _on_results(want, view)
    if view.page == "item":
        return _on_item(want, view)
    return None


def _on_results(want: Wanted, view: View) -> str | None:
    best = _best(want, view)
    if best is not None:
        return BACK if best.page < view.page_num else f"click[{best.listing.asin.lower()}]"
    if view.page_num * RESULTS_PER_PAGE < len(view.hits):
        return NEXT
    tried = want.queries.index(view.query)
    return f"search[{want.queries[tried + 1]}]" if tried + 1 < len(want.queries) else None


def _on_item(want: Wanted, view: View) -> str:
    best = _best(want, view)
    item = next((c for c in _candidates(want, view) if c.listing.asin == view.item), None)
    if best is None or item is None or item.score < best.score:
        return BACK
    offered = view.opened.get(item.listing.asin, {})
    for value in want.options.values():
        name = next((n for n, vals in offered.items() if value in vals), None)
        if name is not None and view.chosen.get(name) != value:
            return f"click[{value}]"
    return BUY


@dataclass(frozen=True)
class _Candidate:
    page: int  # 1-based results page
    score: float
    listing: Listing


def _best(want: Wanted, view: View) -> _Candidate | None:
    """The result the shopper wants: the best-scoring candidate of the first seen page
    that has one (ties: the first shown)."""
    cands = _candidates(want, view)
    first = min((c.page for c in cands), default=None)
    return max((c for c in cands if c.page == first), key=lambda c: c.score, default=None)


def _candidates(want: Wanted, view: View) -> list[_Candidate]:
    """The seen results within the price bound and not opened and found lacking a named
    option, scored: the share of the described product's words (Lucene-analysed) in the
    title, plus up to RANK_WEIGHT for BM25's order on the page (its index reads the
    description and options too, the results page only shows the title)."""
    wanted = _words(want.description)
    out = []
    for i, h in enumerate(view.hits[: view.page_num * RESULTS_PER_PAGE]):
        offered = view.opened.get(h.asin)
        if h.low_price > want.price_upper or offered is not None and not all(
                any(v in vals for vals in offered.values()) for v in want.options.values()):
            continue
        page, pos = divmod(i, RESULTS_PER_PAGE)
        overlap = len(wanted & _words(h.title)) / len(wanted) if wanted else 0.0
        out.append(_Candidate(page + 1, overlap + RANK_WEIGHT * (1 - pos / RESULTS_PER_PAGE), h))
    return out


@lru_cache(maxsize=65536)
def _words(text: str) -> frozenset[str]:
    return frozenset(analyze(text))
