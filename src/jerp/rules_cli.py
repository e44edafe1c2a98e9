"""`jerp rules show|diff|history`: read rule-pool snapshots across iterations and revisions.

A version is `I` (iteration I in this workspace) or `REV:I` (iteration I at a
git revision or DVC experiment, read through dvc.api, so nothing is checked out).
`--level planning|execution|rule` keeps one memory level (H2R's two, or the flat
rules); without it, tables are grouped by level.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from jerp import paths
from jerp.memory.diff import LEVELS, at_level, levels_in
from jerp.records import RuleSnapshot


def parse_version(spec: str) -> tuple[str | None, int]:
    rev, _, it = spec.rpartition(":")
    if not it.isdigit():
        raise ValueError(
            f"bad version {spec!r}: accepted forms are I (an iteration) or REV:I "
            "(a git revision or DVC experiment, then the iteration)"
        )
    return (rev or None), int(it)


def load_version(root: Path, spec: str) -> RuleSnapshot:
    rev, it = parse_version(spec)
    rel = paths.rules_file(it)
    if rev is None:
        path = root / rel
        if not path.exists():
            raise FileNotFoundError(f"no snapshot for iteration {it}: {path} (run `dvc repro`)")
        return RuleSnapshot.model_validate_json(path.read_text())
    import dvc.api

    try:
        with dvc.api.open(str(rel), repo=str(root), rev=rev) as fh:
            return RuleSnapshot.model_validate_json(fh.read())
    except Exception as e:  # dvc raises many types for a missing rev/path
        raise FileNotFoundError(f"no snapshot {rel} at revision {rev!r}: {e}") from None


def available_iterations(root: Path) -> list[int]:
    its = []
    for p in (root / paths.DATA).glob("iter_*/rules.json"):
        suffix = p.parent.name.removeprefix("iter_")
        if suffix.isdigit():
            its.append(int(suffix))
    return sorted(its)


def cmd_show(args) -> None:
    from rich.console import Console
    from rich.table import Table

    its = available_iterations(args.root)
    spec = args.iteration or (str(its[-1]) if its else "0")
    full = load_version(args.root, spec)
    snap = at_level(full, args.level)
    if args.json:
        print(snap.model_dump_json(indent=2))
        return
    console = Console()
    for level in _levels(args.level, snap):
        rules = [r for r in snap.rules if r.level == level]
        what = "rule pool" if level == "rule" else f"{level} memories"
        t = Table(title=f"{what} at {spec} ({len(rules)} of {len(full.rules)}/"
                        f"{full.capacity} in the snapshot)")
        for col in ("id", "score", "scope", "text", "created", "updated"):
            t.add_column(col, overflow="fold")
        for r in sorted(rules, key=lambda r: (-r.score, r.id)):
            t.add_row(r.id, str(r.score), r.scope, r.text, str(r.created), str(r.updated))
        console.print(t)


def _levels(chosen: str | None, *snaps: RuleSnapshot) -> list[str]:
    """The levels a view prints, one table each (an empty pool still prints one)."""
    if chosen is not None:
        return [chosen]
    return levels_in(*snaps) or ["rule"]


def cmd_diff(args) -> None:
    from rich.console import Console

    from jerp.memory.diff import diff_json, diff_snapshots, diff_table

    a = at_level(load_version(args.root, args.a), args.level)
    b = at_level(load_version(args.root, args.b), args.level)
    if args.json:
        print(json.dumps(diff_json(diff_snapshots(a, b)), indent=2))
        return
    shown = False
    for level in _levels(args.level, a, b):
        d = diff_snapshots(at_level(a, level), at_level(b, level))
        if not d.empty:
            Console().print(diff_table(d, None if level == "rule" else level))
            shown = True
    if not shown:
        print(f"no changes between {args.a} and {args.b}")


def cmd_history(args) -> None:
    from rich.console import Console

    from jerp.memory.diff import history_table, rule_history

    its = available_iterations(args.root)
    snaps = [at_level(load_version(args.root, str(i)), args.level) for i in its]
    hist = rule_history(snaps, args.rule_id)
    if args.json:
        print(json.dumps([h.model_dump() for h in hist], indent=2))
    else:
        Console().print(history_table(args.rule_id, hist))


def _guard(fn):
    def run(args):
        try:
            fn(args)
        except (FileNotFoundError, ValueError) as e:
            sys.exit(f"jerp rules: {e}")

    return run


def _level_arg(parser) -> None:
    parser.add_argument("--level", choices=LEVELS, default=None,
                        help="one memory level (default: all, grouped by level)")


def add_rules_parser(sub) -> None:
    r = sub.add_parser("rules", help="show, diff and trace rule-pool snapshots",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    rs = r.add_subparsers(dest="rules_cmd", required=True)
    s = rs.add_parser("show", help="the pool at one version (default: the latest iteration)")
    s.add_argument("--iteration", default=None, help="I or REV:I")
    s.add_argument("--json", action="store_true")
    _level_arg(s)
    s.set_defaults(func=_guard(cmd_show))
    d = rs.add_parser("diff", help="added, removed, edited rules and score changes from A to B")
    d.add_argument("a", help="I or REV:I")
    d.add_argument("b", help="I or REV:I")
    d.add_argument("--json", action="store_true")
    _level_arg(d)
    d.set_defaults(func=_guard(cmd_diff))
    h = rs.add_parser("history", help="one rule across every iteration in the workspace")
    h.add_argument("rule_id")
    h.add_argument("--json", action="store_true")
    _level_arg(h)
    h.set_defaults(func=_guard(cmd_history))
