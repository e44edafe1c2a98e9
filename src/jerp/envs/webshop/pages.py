"""Text-rich page rendering, as the original `text_rich` observation mode shows pages.

Each visible text node is on its own line; clickable elements are marked `[button] X
[button_]`, a chosen option `  [clicked button] X [clicked button_]` (and the page then
starts with `You have clicked X.`), a result link `\\n[button] ASIN [button_]`, or
`[clicked button]` for an ASIN already visited in this session. Every renderer returns the
text and the page's clickables (lowercased, in page order), which are the only valid
`click[...]` arguments.
"""

from __future__ import annotations

from collections.abc import Sequence

from .data import Product

RESULTS_PER_PAGE = 10
BACK_TO_SEARCH = "Back to Search"
NEXT = "Next >"
PREV = "< Prev"
SUB_PAGES = ("Description", "Features", "Reviews")
BUY_NOW = "Buy Now"


def button(label: str) -> str:
    return f"[button] {label} [button_]"


def clicked(label: str) -> str:
    return f"[clicked button] {label} [clicked button_]"


def search_page(instruction: str) -> tuple[str, list[str]]:
    text = "\n".join(["WebShop", "Instruction:", instruction, button("Search")])
    return text, []  # `click[search]` is refused; the page takes `search[...]`


def results_page(
    instruction: str,
    hits: Sequence[Product],
    total: int,
    page: int,
    visited: set[str],
) -> tuple[str, list[str]]:
    """Page `page` (1-based) of the hits: 10 per page, `< Prev` from page 2, `Next >` always."""
    lines = ["Instruction:", instruction, button(BACK_TO_SEARCH)]
    lines.append(f"Page {page} (Total results: {total})")
    clickables = [BACK_TO_SEARCH.lower()]
    if page > 1:
        lines.append(button(PREV))
        clickables.append(PREV.lower())
    lines.append(button(NEXT))
    clickables.append(NEXT.lower())
    for p in hits:
        mark = clicked(p.asin) if p.asin in visited else button(p.asin)
        lines.append("\n" + mark)
        lines.append(p.title.strip())
        lines.append(p.price_tag)
        clickables.append(p.asin.lower())
    return "\n".join(x for x in lines if x.strip()), clickables


def item_page(
    instruction: str, product: Product, chosen: dict[str, str]
) -> tuple[str, list[str]]:
    """Item page: option names and value buttons, title, price, sub-page links, Buy Now."""
    lines = ["Instruction:", instruction, button(BACK_TO_SEARCH), button(PREV)]
    clickables = [BACK_TO_SEARCH.lower(), PREV.lower()]
    header: list[str] = []
    for name, values in product.options.items():
        lines.append(name)
        for v in values:
            if chosen.get(name) == v:
                lines.append("  " + clicked(v))
                header.insert(0, f"You have clicked {v}.")
            else:
                lines.append(button(v))
            if v not in clickables:
                clickables.append(v)
    lines += [product.title.strip(), f"Price: {product.price_tag}", "Rating: N.A."]
    for sub in SUB_PAGES:
        lines.append(button(sub))
        clickables.append(sub.lower())
    lines.append(button(BUY_NOW))
    clickables.append(BUY_NOW.lower())
    return "\n".join(header + [x for x in lines if x.strip()]), clickables


def sub_page(instruction: str, product: Product, which: str) -> tuple[str, list[str]]:
    """Description / Features (one line per bullet) / Reviews (always empty)."""
    lines = ["Instruction:", instruction, button(BACK_TO_SEARCH), button(PREV)]
    if which == "description":
        lines.append(product.description.strip())
    elif which == "features":
        lines += [b.strip() for b in product.bullet_points]
    return "\n".join(x for x in lines if x.strip()), [BACK_TO_SEARCH.lower(), PREV.lower()]


def done_page(instruction: str, product: Product, chosen: dict[str, str], reward: float) -> str:
    lines = ["Thank you for shopping with us!", "Instruction:", instruction, "Purchased"]
    lines += [product.asin, product.title.strip()]
    lines += [f"{k}: {v}" for k, v in chosen.items()]
    lines += ["Your score (min 0.0, max 1.0)", f"{reward:.4g}"]
    return "\n".join(lines)
