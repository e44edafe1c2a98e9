"""`dvc plots show` offline: an HTML template with vega, vega-lite and vega-embed inlined.

DVC's default page loads the three scripts from a CDN, so it shows nothing without a
network. `.dvc/config` names `.dvc/plots_template.html` as `plots.html_template`; this
module writes it from the packages `npm ci` installed (package.json pins them, the same
major versions as DVC's CDN defaults, whose vega-lite v5 specs they draw). The template
has no `{scripts}` slot, so DVC's CDN tags are never added; the page it fills is one file
that opens anywhere. Without node_modules it writes DVC's own page (CDN: online only)
and says so.

    python -m jerp.dvc_plots          # what `make install` runs after `npm ci`
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping
from pathlib import Path

from jerp.records import atomic_open

# Load order matters: vega-embed's UMD build reads the `vega` and `vegaLite` globals.
SCRIPTS = {
    "vega": "vega/build/vega.min.js",
    "vega-lite": "vega-lite/build/vega-lite.min.js",
    "vega-embed": "vega-embed/build/vega-embed.min.js",
}
TEMPLATE_NAME = "plots_template.html"  # beside .dvc/config, which names it

_PAGE = """<!DOCTYPE html>
<html>
<head>
    {refresh_tag}
    <meta charset="utf-8">
    <title>DVC Plot</title>
{inline_scripts}
    <style>
        table {
            border-spacing: 15px;
        }
    </style>
</head>
<body>
    {plot_divs}
</body>
</html>
"""
# DVC's default page (dvc_render.html.PAGE_HTML): its `{scripts}` slot gets the CDN tags.
_ONLINE_PAGE = """<!DOCTYPE html>
<html>
<head>
    {refresh_tag}
    <title>DVC Plot</title>
    {scripts}
</head>
<body>
    {plot_divs}
</body>
</html>
"""
_DVC_SLOTS = ("{scripts}", "{plot_divs}", "{refresh_tag}")


def offline_template(scripts: Mapping[str, str], versions: Mapping[str, str]) -> str:
    """The page with each script's source inlined, in `SCRIPTS` order.

    `scripts` maps each name of `SCRIPTS` to its JavaScript. `</script` inside a source is
    written `<\\/script` (the same string to JavaScript) so it cannot close the tag; a source
    holding one of DVC's slot names is refused, since DVC would fill it in."""
    missing = [name for name in SCRIPTS if name not in scripts]
    if missing:
        raise ValueError(f"missing scripts {missing}; expected all of {list(SCRIPTS)}")
    blocks = []
    for name in SCRIPTS:
        src = scripts[name]
        slot = next((s for s in _DVC_SLOTS if s in src), None)
        if slot:
            raise ValueError(f"{name}'s source contains DVC's template slot {slot}")
        label = f"{name} {versions.get(name, '?')} (BSD-3-Clause)"
        body = src.replace("</script", "<\\/script")
        blocks.append(f"    <script>/* {label} */\n{body}\n    </script>")
    return _PAGE.replace("{inline_scripts}", "\n".join(blocks))


def read_scripts(node_modules: Path) -> tuple[dict[str, str], dict[str, str]]:
    """(name -> source, name -> version) of the installed packages."""
    import json

    scripts, versions = {}, {}
    for name, rel in SCRIPTS.items():
        path = node_modules / rel
        if not path.is_file():
            raise FileNotFoundError(f"{path} is missing: run `npm ci` in {node_modules.parent}")
        scripts[name] = path.read_text(encoding="utf-8")
        meta = json.loads((node_modules / name / "package.json").read_text(encoding="utf-8"))
        versions[name] = meta["version"]
    return scripts, versions


def write_template(root: Path) -> tuple[Path, bool]:
    """Write `<root>/.dvc/plots_template.html`; (its path, whether it works offline)."""
    out = root / ".dvc" / TEMPLATE_NAME
    try:
        page, offline = offline_template(*read_scripts(root / "node_modules")), True
    except FileNotFoundError:
        page, offline = _ONLINE_PAGE, False
    with atomic_open(out) as fh:
        fh.write(page)
    return out, offline


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", type=Path, default=Path.cwd(), help="the project folder")
    args = ap.parse_args(argv)
    out, offline = write_template(args.root.resolve())
    if offline:
        print(f"wrote {out}: `dvc plots show` draws offline")
    else:
        print(f"wrote {out} with DVC's CDN scripts (no {args.root / 'node_modules'}: "
              "install node and npm, then `npm ci`); `dvc plots show` needs a network",
              file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
