"""Presets: short override files applied over one base.

presets/base.yaml holds every key with the schema's default and its comment;
presets/NAME.yaml holds only what NAME changes. `python -m jerp.presets NAME`
(`make params PRESET=NAME`) writes params.yaml = base with NAME over it, comments
kept: the header is NAME's, a changed key keeps the preset's comment (else the
base's). Schema sections (run, env, ...) merge key by key; any other value (a
list, the `iterations` table) is replaced whole, so a preset can shorten it.
"""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap

from jerp.config import Params, Section, parse_params

PRESETS = Path("presets")
BASE = "base"
PARAMS = Path("params.yaml")


class PresetError(ValueError):
    """A preset is unknown or names a key the base does not have."""


def _yaml() -> YAML:
    y = YAML()
    y.preserve_quotes = True
    y.width = 4096  # never re-wrap a line
    y.indent(mapping=2, sequence=4, offset=2)
    y.representer.add_representer(
        type(None), lambda r, _: r.represent_scalar("tag:yaml.org,2002:null", "null"))
    return y


def names(root: Path) -> list[str]:
    """The presets under root/presets, base excluded."""
    return sorted(p.stem for p in (root / PRESETS).glob("*.yaml") if p.stem != BASE)


def _sections() -> set[str]:
    return {k for k, f in Params.model_fields.items()
            if isinstance(f.annotation, type) and issubclass(f.annotation, Section)}


def merge(base: CommentedMap, override: CommentedMap, where: str) -> CommentedMap:
    """Override's values over base's, in place on base (its order and comments kept)."""
    sections = _sections()
    for key, value in override.items():
        if key not in base:
            raise PresetError(f"{where}: unknown key '{key}'; the base has: {', '.join(base)}")
        if key in sections and isinstance(value, dict):
            for sub, v in value.items():
                if sub not in base[key]:
                    raise PresetError(f"{where}: unknown key '{key}.{sub}'; "
                                      f"'{key}' has: {', '.join(base[key])}")
                base[key][sub] = v
                _keep_comment(base[key], value, sub)
        else:
            base[key] = value
            _keep_comment(base, override, key)
    return base


def _keep_comment(dst: CommentedMap, src: CommentedMap, key: str) -> None:
    """The preset's comment on KEY, where it has one, replaces the base's; the base's
    blank lines after it stay (they part the base's sections, not the preset's)."""
    if key not in src.ca.items or not _token(src, key):
        return
    new, old = _token(src, key), _token(dst, key)
    tail = len(old.value) - len(old.value.rstrip("\n")) - 1 if old is not None else 0
    new.value = new.value.rstrip("\n") + "\n" * (1 + max(tail, 0))
    dst.ca.items[key] = src.ca.items[key]


def _token(m: CommentedMap, key: str):
    """KEY's end-of-line comment token, or None."""
    items = m.ca.items.get(key)
    return items[2] if items and len(items) > 2 else None


def _trim_blank_lines(node: object) -> None:
    """Drop the blank lines that end a preset's comments (its layout, not the base's)."""
    ca = getattr(node, "ca", None)
    if ca is None:
        return
    for entry in ca.items.values():
        for tok in entry:
            if tok is not None and hasattr(tok, "value"):
                tok.value = tok.value.rstrip("\n") + "\n"
    for v in node.values() if isinstance(node, dict) else node:
        _trim_blank_lines(v)


def _head(text: str) -> tuple[list[str], str]:
    """(the leading comment blocks, the rest) of a YAML text; blocks part at blank lines."""
    lines = text.splitlines(keepends=True)
    blocks: list[str] = []
    n, cur = 0, ""
    while n < len(lines) and (lines[n].startswith("#") or not lines[n].strip()):
        if lines[n].strip():
            cur += lines[n]
        elif cur:
            blocks, cur = [*blocks, cur], ""
        n += 1
    return [*blocks, cur] if cur else blocks, "".join(lines[n:])


def render(root: Path, name: str) -> str:
    """The params.yaml text of preset NAME; it validates against the schema."""
    accepted = names(root)
    if name not in accepted:
        raise PresetError(f"no preset {name!r}; accepted: {', '.join(accepted)}")
    y = _yaml()
    base_file, file = root / PRESETS / f"{BASE}.yaml", root / PRESETS / f"{name}.yaml"
    base = y.load(base_file.read_text(encoding="utf-8"))
    text = file.read_text(encoding="utf-8")
    override = y.load(text) or CommentedMap()
    _trim_blank_lines(override)
    merged = merge(base, override, str(file.relative_to(root)))
    buf = io.StringIO()
    y.dump(merged, buf)
    about = _head(text)[0][:1]  # the preset's first comment block says what it is
    validated = _head(base_file.read_text(encoding="utf-8"))[0][1:]
    _, body = _head(buf.getvalue())
    written = (f"# Written by `make params PRESET={name}` (python -m jerp.presets {name}): "
               f"presets/{BASE}.yaml\n# with presets/{name}.yaml over it.\n")
    out = "".join(about) + written + "".join(validated) + "\n" + body
    parse_params(_yaml().load(out))  # a preset that breaks the schema fails here, by name
    return out


def _uncommitted(root: Path, path: Path) -> bool:
    """Whether PATH has edits git has not committed (or git cannot tell)."""
    r = subprocess.run(["git", "diff", "--quiet", "--", str(path)], cwd=root,
                       capture_output=True, check=False)
    return r.returncode != 0


def write(root: Path, name: str) -> Path:
    """Write root/params.yaml from preset NAME, atomically; refused while params.yaml has
    uncommitted edits that the preset would overwrite, so none is lost."""
    from jerp.records import atomic_open

    text = render(root, name)
    dest = root / PARAMS
    if dest.exists() and dest.read_text(encoding="utf-8") != text and _uncommitted(root, PARAMS):
        raise PresetError(f"{PARAMS} has uncommitted edits: commit or stash them before "
                          f"PRESET={name}")
    with atomic_open(dest) as fh:
        fh.write(text)
    return dest


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    root = Path.cwd()
    if len(args) != 1:
        print(f"usage: python -m jerp.presets NAME; accepted: {', '.join(names(root))}",
              file=sys.stderr)
        return 2
    try:
        dest = write(root, args[0])
    except PresetError as e:
        print(e, file=sys.stderr)
        return 2
    print(f"{dest.name}: presets/{BASE}.yaml + presets/{args[0]}.yaml")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
