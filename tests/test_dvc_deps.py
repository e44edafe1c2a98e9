"""dvc.yaml's deps cover every module a stage imports, or `dvc repro` serves stale results.

Each stage's flow file is parsed and its imports followed through src/jerp
(every `import`, at module level or inside a function, since stages import
lazily); each module reached must sit under one of the stage's deps.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"

pytestmark = pytest.mark.faults  # stale results are a fault too: `pytest -m faults` runs it


def _module_file(name: str) -> Path | None:
    base = SRC / Path(*name.split("."))
    for cand in (base.with_suffix(".py"), base / "__init__.py"):
        if cand.is_file():
            return cand
    return None


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    pkg = ".".join(path.relative_to(SRC).with_suffix("").parts[:-1]) if SRC in path.parents \
        else ""
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            mod = node.module or ""
            if node.level:  # relative import inside the package
                parts = pkg.split(".")[: len(pkg.split(".")) - node.level + 1]
                mod = ".".join([*parts, mod] if mod else parts)
            out.add(mod)
            out |= {f"{mod}.{a.name}" for a in node.names}  # `from pkg import module`
    return out


def _closure(start: Path) -> set[Path]:
    seen: set[Path] = set()
    todo = [start]
    while todo:
        f = todo.pop()
        if f in seen:
            continue
        seen.add(f)
        for name in _imports(f):
            if name == "common":  # flows/common.py
                todo.append(ROOT / "flows" / "common.py")
            if not name.startswith("jerp"):
                continue
            parts = name.split(".")
            for i in range(1, len(parts) + 1):  # a package's __init__ runs too
                m = _module_file(".".join(parts[:i]))
                if m is not None:
                    todo.append(m)
    return seen


def _stages() -> list[tuple[str, str, list[str]]]:
    spec = yaml.safe_load((ROOT / "dvc.yaml").read_text())
    out = []
    for name, st in spec["stages"].items():
        body = st.get("do", st)
        out.append((name, body["cmd"], body["deps"]))
    return out


@pytest.mark.parametrize("name,cmd,deps", _stages(), ids=[s[0] for s in _stages()])
def test_stage_deps_cover_its_imports(name, cmd, deps):
    flow = next(w for w in cmd.split() if w.startswith("flows/") and w.endswith(".py"))
    assert flow in deps and "flows/python" in deps
    covered = [ROOT / d for d in deps if "${" not in d]
    missing = sorted(
        str(f.relative_to(ROOT)) for f in _closure(ROOT / flow)
        if not any(f == c or c in f.parents for c in covered)
    )
    assert not missing, f"stage {name}: imported but not in deps: {missing}"
