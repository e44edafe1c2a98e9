"""A report as a list of blocks, rendered to Markdown and to one self-contained HTML page.

Building the content once and rendering it twice keeps the two pages saying
the same thing. The HTML embeds every figure as a base64 PNG data URI and its
style inline: it opens offline, with no CDN or external file.
"""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass


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


_STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;max-width:1400px;
margin:2em auto;padding:0 1em;color:#222;line-height:1.45}
h1{border-bottom:2px solid #ddd;padding-bottom:.2em}
h2{margin-top:1.8em;border-bottom:1px solid #eee}
div.wide{overflow-x:auto}table{border-collapse:collapse;margin:.6em 0 1.2em;font-size:.85em}
th,td{border:1px solid #ccc;padding:.25em .6em;vertical-align:top}th{background:#f3f3f3}
td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
img{max-width:100%;height:auto;border:1px solid #eee;margin:.4em 0}
"""


def to_html(blocks: list[Block], title: str, images: dict[str, bytes]) -> str:
    """One page; figures whose bytes are missing are replaced by their alt text."""
    esc = html.escape
    out = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
           f"<title>{esc(title)}</title>", f"<style>{_STYLE}</style></head><body>"]
    for b in blocks:
        if isinstance(b, Heading):
            out.append(f"<h{b.level}>{esc(b.text)}</h{b.level}>")
        elif isinstance(b, Text):
            out.append(f"<p>{esc(b.text)}</p>")
        elif isinstance(b, Figure):
            data = images.get(b.name)
            if data is None:
                out.append(f"<p><em>{esc(b.alt)}: figure not available</em></p>")
            else:
                uri = "data:image/png;base64," + base64.b64encode(data).decode("ascii")
                out.append(f'<figure><img src="{uri}" alt="{esc(b.alt)}"></figure>')
        else:
            head = "".join(f"<th>{esc(h)}</th>" for h in b.header)
            out.append(f'<div class="wide"><table><thead><tr>{head}</tr></thead><tbody>')
            for row in b.rows:
                cells = [f'<td{"" if j in b.left else " class=num"}>{esc(c)}</td>'
                         for j, c in enumerate(row)]
                out.append("<tr>" + "".join(cells) + "</tr>")
            out.append("</tbody></table></div>")  # a wide table scrolls, not the page
    out.append("</body></html>")
    return "\n".join(out) + "\n"
