"""dvc.yaml's code deps and params, generated from each stage's imports.

A stage's code is its flow file's import closure: every `import` (at module level
or inside a function: stages import lazily) followed through flows/ and src/jerp,
a package's `__init__` included, with the data files (prompt templates) of every
package reached. A package folder is listed when the whole folder is in the closure,
else its files. A stage's params are the ones that code reads: `p.<section>.<field>`
(on any params object: `p`, `params`, `PARAMS`, `full`, `x.params`, or an alias
`fp = p.finetune`), and the whole section where one is passed along or copied; a
top-level key (`p.eval_iterations`, or `p.learned_iterations`, which reads `iterations`)
by its name.
Over-approximate on purpose: a param read anywhere in a file of the closure counts.
`runner` and `policy.threads` are left out (NOT_INPUTS).
Whole-params dumps (MLflow's logged params, the chunk cache key) are bookkeeping,
not inputs.

`python -m jerp.deps` rewrites dvc.yaml (comments and everything else kept);
`python -m jerp.deps --check` exits 1 with a diff when the committed file differs.
"""

from __future__ import annotations

import argparse
import ast
import difflib
import io
import sys
from collections.abc import Iterable
from pathlib import Path

from jerp.config import Params

CODE = ("flows/", "src/")  # a dvc.yaml dep under these is code; the rest is data
PARAM_ROOTS = {"p", "params", "PARAMS", "full"}  # names a Params object goes by
# Not inputs: where chunks run and how many threads a process uses change how fast a
# stage runs, never what it returns (jobs.py).
NOT_INPUTS = {"runner", "policy.threads"}
DUMPS = {"model_dump", "model_dump_json"}
# Properties of Params, by the top-level key they read.
DERIVED = {"learned_iterations": "iterations"}


def module_file(src: Path, name: str) -> Path | None:
    base = src / Path(*name.split("."))
    for cand in (base.with_suffix(".py"), base / "__init__.py"):
        if cand.is_file():
            return cand
    return None


def imported_names(path: Path, src: Path) -> set[str]:
    """Every module name `path` imports, anywhere in it (relative imports resolved)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    pkg = ".".join(path.relative_to(src).with_suffix("").parts[:-1]) \
        if path.is_relative_to(src) else ""
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            mod = node.module or ""
            if node.level:
                parts = pkg.split(".")[: len(pkg.split(".")) - node.level + 1]
                mod = ".".join([*parts, mod] if mod else parts)
            out.add(mod)
            out |= {f"{mod}.{a.name}" for a in node.names}  # `from pkg import module`
    return out


def closure(root: Path, flow: str) -> set[Path]:
    """The files `flow` runs: its imports followed through flows/ and src/jerp."""
    src = root / "src"
    seen: set[Path] = set()
    todo = [root / flow]
    while todo:
        f = todo.pop()
        if f in seen:
            continue
        seen.add(f)
        for name in imported_names(f, src):
            local = root / "flows" / f"{name}.py"  # flows/common.py, imported as `common`
            if f.parent == root / "flows" and local.is_file():
                todo.append(local)
            if name != "jerp" and not name.startswith("jerp."):
                continue
            parts = name.split(".")
            for i in range(1, len(parts) + 1):  # a package's __init__ runs too
                m = module_file(src, ".".join(parts[:i]))
                if m is not None:
                    todo.append(m)
    return seen | _package_data(seen)


def _package_data(files: Iterable[Path]) -> set[Path]:
    """Non-Python files beside the modules reached, and in their data-only subfolders."""
    out: set[Path] = set()
    for d in {f.parent for f in files if f.suffix == ".py"}:
        if not (d / "__init__.py").is_file():
            continue
        for f in d.rglob("*"):
            if not f.is_file() or f.suffix in (".py", ".pyc") or "__pycache__" in f.parts:
                continue
            sub = f.parent.relative_to(d).parts
            if not any((d.joinpath(*sub[: i + 1]) / "__init__.py").is_file()
                       for i in range(len(sub))):
                out.add(f)
    return out


def _package_files(d: Path) -> set[Path]:
    return {f for f in d.rglob("*")
            if f.is_file() and "__pycache__" not in f.parts and f.suffix != ".pyc"}


def collapse(root: Path, files: set[Path]) -> list[str]:
    """`files` under src/, as folders where a whole package is in, else as files."""
    out: list[str] = []

    def walk(d: Path) -> None:
        for child in sorted(d.iterdir()):
            if child.name == "__pycache__":
                continue
            if child.is_dir():
                inside = _package_files(child)
                if not inside & files:
                    continue
                if inside <= files and (child / "__init__.py").is_file():
                    out.append(child.relative_to(root).as_posix())
                else:
                    walk(child)
            elif child in files:
                out.append(child.relative_to(root).as_posix())

    walk(root / "src" / "jerp")
    return out


def code_deps(root: Path, flow: str) -> list[str]:
    files = closure(root, flow)
    flows = sorted(f.relative_to(root).as_posix() for f in files
                   if f.parent == root / "flows" and f != root / flow)
    src = {f for f in files if f.is_relative_to(root / "src")}
    return [flow, *flows, "flows/python", *collapse(root, src)]


def _sections() -> dict[str, set[str]]:
    out = {}
    for name, field in Params.model_fields.items():
        model = field.annotation
        if isinstance(model, type) and hasattr(model, "model_fields"):
            out[name] = set(model.model_fields)
    return out


def _top_keys(sections: dict[str, set[str]]) -> list[str]:
    """Params' keys that are no section (iterations, eval_iterations), in schema order."""
    return [k for k in Params.model_fields if k not in sections]


def _top_level(sections: dict[str, set[str]]) -> dict[str, str]:
    """The top-level keys, and the properties that read one, each mapped to the key."""
    keys = {k: k for k in _top_keys(sections)}
    return keys | {prop: key for prop, key in DERIVED.items() if key in keys}


def _is_root(node: ast.AST) -> bool:
    return (isinstance(node, ast.Name) and node.id in PARAM_ROOTS) or \
        (isinstance(node, ast.Attribute) and node.attr == "params")


def params_read(path: Path, sections: dict[str, set[str]]) -> set[str]:
    """The params `path` reads: "section.field", or "section" where a whole one is used."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    parent = {c: n for n in ast.walk(tree) for c in ast.iter_child_nodes(n)}
    aliases: dict[str, str] = {}
    for n in ast.walk(tree):  # fp = p.finetune
        if isinstance(n, ast.Assign) and len(n.targets) == 1 and \
                isinstance(n.targets[0], ast.Name) and isinstance(n.value, ast.Attribute) and \
                _is_root(n.value.value) and n.value.attr in sections:
            aliases[n.targets[0].id] = n.value.attr
    out: set[str] = set()
    top = _top_level(sections)

    def use(node: ast.AST, sec: str) -> None:
        up = parent.get(node)
        if isinstance(up, ast.Attribute) and up.attr in sections[sec]:
            out.add(f"{sec}.{up.attr}")
        elif isinstance(up, ast.Assign) and isinstance(up.targets[0], ast.Name) and \
                aliases.get(up.targets[0].id) == sec and up.value is node:
            return  # the alias's own uses decide
        else:
            out.add(sec)

    for n in ast.walk(tree):
        if isinstance(n, ast.Attribute) and n.attr in sections and _is_root(n.value):
            use(n, n.attr)
        elif isinstance(n, ast.Attribute) and n.attr in top and _is_root(n.value):
            out.add(top[n.attr])
        elif isinstance(n, ast.Name) and n.id in aliases and isinstance(n.ctx, ast.Load):
            use(n, aliases[n.id])
    return out


def stage_params(root: Path, flow: str) -> list[str]:
    """The params `flow`'s code reads, in the schema's order; a whole section absorbs
    its fields."""
    sections = _sections()
    read: set[str] = set()
    for f in closure(root, flow):
        if f.suffix == ".py":
            read |= params_read(f, sections)
    whole = {r for r in read if "." not in r}
    out = []
    for sec, fields in sections.items():
        if sec in NOT_INPUTS:
            continue
        if sec in whole:
            out.append(sec)
            continue
        out += [f"{sec}.{x}" for x in sorted(fields)
                if f"{sec}.{x}" in read and f"{sec}.{x}" not in NOT_INPUTS]
    return out + [k for k in _top_keys(sections) if k in read]


def _yaml():
    from ruamel.yaml import YAML

    y = YAML()
    y.indent(mapping=2, sequence=4, offset=2)
    y.width = 4096
    y.preserve_quotes = True
    return y


def generate(root: Path, text: str) -> str:
    """dvc.yaml's text with every stage's code deps and params regenerated."""
    y = _yaml()
    doc = y.load(text)
    for st in doc["stages"].values():
        body = st.get("do", st)
        flow = next(w for w in body["cmd"].split() if w.startswith("flows/") and w.endswith(".py"))
        data = [d for d in body["deps"] if not str(d).startswith(CODE)]
        deps = body["deps"]
        del deps[:]
        deps.extend([*code_deps(root, flow), *data])
        others = [x for x in body.get("params", []) if not isinstance(x, str)]
        params = stage_params(root, flow) + others
        if "params" in body:
            del body["params"][:]
            body["params"].extend(params)
        elif params:
            body.insert(list(body).index("deps") + 1, "params", params)
    buf = io.StringIO()
    y.dump(doc, buf)
    return buf.getvalue()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m jerp.deps", description=__doc__.split("\n")[0])
    ap.add_argument("--check", action="store_true",
                    help="exit 1 with a diff when dvc.yaml differs from the generated one")
    ap.add_argument("--root", type=Path, default=None, help="project root (default: found "
                    "from the current folder)")
    args = ap.parse_args(argv)
    from jerp.runtime import project_root

    root = (args.root or project_root()).resolve()
    path = root / "dvc.yaml"
    old = path.read_text(encoding="utf-8")
    new = generate(root, old)
    if args.check:
        if old == new:
            return 0
        sys.stdout.writelines(difflib.unified_diff(
            old.splitlines(keepends=True), new.splitlines(keepends=True),
            "dvc.yaml (committed)", "dvc.yaml (generated: python -m jerp.deps)"))
        print("dvc.yaml's code deps or params are out of date: run `python -m jerp.deps`",
              file=sys.stderr)
        return 1
    if old != new:
        path.write_text(new, encoding="utf-8")
        print("dvc.yaml: code deps and params regenerated")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
