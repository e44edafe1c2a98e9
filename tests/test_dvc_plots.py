"""`dvc plots show` offline: the template inlines vega, vega-lite and vega-embed, so the
page DVC writes loads no script from the network (checked by rendering it in headless
Chromium with the network closed: all five curves of dvc.yaml's `plots` drawn)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from dvc_render.vega import VegaRenderer

from jerp.dvc_plots import (
    SCRIPTS,
    TEMPLATE_NAME,
    offline_template,
    read_scripts,
    write_template,
)

ROOT = Path(__file__).resolve().parents[1]
# A <script> tag whose src is fetched over the network (http, https or protocol-relative).
_REMOTE_SCRIPT = re.compile(r"<script\b[^>]*\bsrc\s*=\s*[\"']?\s*(https?:)?//", re.IGNORECASE)


def test_template_inlines_scripts_in_load_order() -> None:
    scripts = {"vega-embed": "embed();", "vega": "var v = '</script>';", "vega-lite": "vl();"}
    page = offline_template(scripts, {"vega": "5.33.1"})
    at = [page.index(src) for src in ("var v = '<\\/script>';", "vl();", "embed();")]
    assert at == sorted(at)  # vega, vega-lite, then vega-embed (it reads their globals)
    assert "/* vega 5.33.1 (BSD-3-Clause) */" in page and "/* vega-lite ? " in page
    assert page.count("<script>") == page.count("</script>") == 3
    assert "{plot_divs}" in page and "{refresh_tag}" in page and "{scripts}" not in page
    assert not _REMOTE_SCRIPT.search(page)


def test_template_refuses_bad_input() -> None:
    with pytest.raises(ValueError, match=r"missing scripts \['vega-embed'\]"):
        offline_template({"vega": "", "vega-lite": ""}, {})
    with pytest.raises(ValueError, match=r"vega-lite's source contains .*\{plot_divs\}"):
        offline_template({"vega": "", "vega-lite": "'{plot_divs}'", "vega-embed": ""}, {})


def test_remote_script_pattern() -> None:
    for tag in ['<script src="https://cdn.example/npm/vega@5"></script>',
                "<script type='text/javascript' src='http://x/v.js'>", '<SCRIPT SRC="//x/v.js">']:
        assert _REMOTE_SCRIPT.search(tag), tag
    for tag in ['<script src="vega.min.js">', "<script>var u = 'https://x';</script>"]:
        assert not _REMOTE_SCRIPT.search(tag), tag


@pytest.mark.skipif(shutil.which("npm") is None, reason="no npm: make install skips npm ci")
def test_dvc_plots_show_loads_no_remote_script(tmp_path: Path) -> None:
    """The real packages (make install's `npm ci`) and the real `dvc plots show` on the
    committed reports/iterations.csv."""
    if not all((ROOT / "node_modules" / rel).is_file() for rel in SCRIPTS.values()):
        pytest.fail(f"{ROOT / 'node_modules'} lacks the vega packages: run `make install`")
    scripts, versions = read_scripts(ROOT / "node_modules")
    assert versions == {"vega": "5.33.1", "vega-lite": "5.23.0", "vega-embed": "6.29.0"}
    template = tmp_path / "template.html"
    template.write_text(offline_template(scripts, versions), encoding="utf-8")
    dvc = Path(sys.executable).with_name("dvc")
    subprocess.run([str(dvc), "plots", "show", "--html-template", str(template),
                    "-o", str(tmp_path / "out")], cwd=ROOT, check=True, capture_output=True)
    page = (tmp_path / "out" / "index.html").read_text(encoding="utf-8")
    assert not _REMOTE_SCRIPT.search(page)
    assert VegaRenderer.SCRIPTS.strip() not in page  # DVC's own CDN tags
    assert page.count("vegaEmbed('#") == 5  # dvc.yaml's five plots
    assert all(scripts[name] in page for name in SCRIPTS)


def test_write_template_falls_back_to_dvc_page_without_node_modules(tmp_path: Path) -> None:
    out, offline = write_template(tmp_path)
    assert out == tmp_path / ".dvc" / "plots_template.html" and not offline
    assert "{scripts}" in out.read_text() and "{plot_divs}" in out.read_text()
    # ... at the path the project's DVC config names (relative to .dvc/)
    assert f"html_template = {TEMPLATE_NAME}" in (ROOT / ".dvc" / "config").read_text()
