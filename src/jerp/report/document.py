"""A report as a list of blocks, rendered to Markdown and to one self-contained HTML page.

Building the content once and rendering it twice keeps the two pages saying
the same thing. The HTML (a jinja2 template, autoescaped) embeds every figure as a
base64 PNG data URI and its style inline: it opens offline, with no CDN or external
file.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from functools import cache


@dataclass
class Heading:
    text: str
    level: int = 2


@dataclass
class Text:
    text: str


@dataclass
class Table:
    header: list[str]
    rows: list[list[str]]
    left: tuple[int, ...] = (0,)  # left-aligned (text) columns; the others hold numbers


@dataclass
class Figure:
    name: str  # file name beside index.md, e.g. success.png
    alt: str


Block = Heading | Text | Table | Figure


def to_markdown(blocks: list[Block]) -> str:
    out: list[str] = []
    for b in blocks:
        if isinstance(b, Heading):
            out += ["#" * b.level + " " + b.text, ""]
        elif isinstance(b, Text):
            out += [b.text, ""]
        elif isinstance(b, Figure):
            out += [f"![{b.alt}]({b.name})", ""]
        else:
            sep = ["---" if j in b.left else "---:" for j in range(len(b.header))]
            out.append("| " + " | ".join(b.header) + " |")
            out.append("|" + "|".join(sep) + "|")
            out += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |"
                    for row in b.rows]
            out.append("")
    return "\n".join(out).rstrip() + "\n"


_TEMPLATE = "report.html.j2"  # templates/, package data


@cache
def _environment():
    import jinja2

    return jinja2.Environment(loader=jinja2.PackageLoader("jerp.report", "templates"),
                              autoescape=True, trim_blocks=True, lstrip_blocks=True,
                              keep_trailing_newline=True, undefined=jinja2.StrictUndefined)


def to_html(blocks: list[Block], title: str, images: dict[str, bytes]) -> str:
    """One page (templates/report.html.j2, autoescaped); figures whose bytes are missing
    are replaced by their alt text."""
    uris = {name: "data:image/png;base64," + base64.b64encode(data).decode("ascii")
            for name, data in images.items()}
    kinds = [(type(b).__name__.lower(), b) for b in blocks]
    return _environment().get_template(_TEMPLATE).render(title=title, blocks=kinds, uris=uris)
