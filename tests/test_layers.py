"""The layers of src/jerp hold: pyproject.toml's import-linter contracts, and no cycle.

Function-level imports count: a lazy import is still a dependency (DVC reruns, the
code a stage loads), so it may not point upwards either.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import grimp

ROOT = Path(__file__).resolve().parents[1]


def test_import_contracts_are_kept():
    """Layers, stages independent of each other, references/states/prepare torch-free."""
    lint = Path(sys.executable).parent / "lint-imports"
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    r = subprocess.run([str(lint), "--no-cache"], cwd=ROOT, env=env, capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
    assert "0 broken" in r.stdout


def import_cycles(graph) -> list[list[str]]:
    """One shortest cycle through each direct import that closes one (empty: acyclic)."""
    out = []
    for a in sorted(graph.modules):
        for b in sorted(graph.find_modules_directly_imported_by(a)):
            back = graph.find_shortest_chain(importer=b, imported=a)
            if back:
                out.append([a, *back])
    return out


def test_the_import_graph_of_jerp_has_no_cycle():
    cycles = import_cycles(grimp.build_graph("jerp", cache_dir=None))
    assert not cycles, "import cycles (first module imports the second ...):\n" + \
        "\n".join(" -> ".join(c) for c in cycles[:10])


def test_a_cycle_is_found():
    """The check above can fail: a back-edge added to the real graph is reported."""
    g = grimp.build_graph("jerp", cache_dir=None)
    g.add_import(importer="jerp.paths", imported="jerp.stages.prepare")
    cycles = import_cycles(g)
    assert cycles and all("jerp.paths" in c for c in cycles)
