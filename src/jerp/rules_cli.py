"""`jerp rules show|diff|history`: read rule-pool snapshots across iterations and revisions.

A version is `I` (iteration I in this workspace) or `REV:I` (iteration I at a
git revision or DVC experiment, read through dvc.api, so nothing is checked out).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from jerp import paths
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
    snap = load_version(args.root, spec)
    if args.json:
        print(snap.model_dump_json(indent=2))
        return
    t = Table(title=f"rule pool at {spec} ({len(snap.rules)}/{snap.capacity} rules)")
    for col in ("id", "score", "scope", "rule", "created", "updated"):
        t.add_column(col, overflow="fold")
    for r in sorted(snap.rules, key=lambda r: (-r.score, r.id)):
        t.add_row(r.id, str(r.score), r.scope, r.text, str(r.created), str(r.updated))
    Console().print(t)


def cmd_diff(args) -> None:
    from rich.console import Console

    from jerp.memory.diff import diff_json, diff_snapshots, diff_table

    d = diff_snapshots(load_version(args.root, args.a), load_version(args.root, args.b))
    if args.json:
        print(json.dumps(diff_json(d), indent=2))
    elif d.empty:
        print(f"no changes between {args.a} and {args.b}")
    else:
        Console().print(diff_table(d))


def cmd_history(args) -> None:
    from rich.console import Console

    from jerp.memory.diff import history_table, rule_history

    its = available_iterations(args.root)
    snaps = [load_version(args.root, str(i)) for i in its]
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


def add_rules_parser(sub) -> None:
    r = sub.add_parser("rules", help="show, diff and trace rule-pool snapshots",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    rs = r.add_subparsers(dest="rules_cmd", required=True)
    s = rs.add_parser("show", help="the pool at one version (default: the latest iteration)")
    s.add_argument("--iteration", default=None, help="I or REV:I")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=_guard(cmd_show))
    d = rs.add_parser("diff", help="added, removed, edited rules and score changes from A to B")
    d.add_argument("a", help="I or REV:I")
    d.add_argument("b", help="I or REV:I")
    d.add_argument("--json", action="store_true")
    d.set_defaults(func=_guard(cmd_diff))
    h = rs.add_parser("history", help="one rule across every iteration in the workspace")
    h.add_argument("rule_id")
    h.add_argument("--json", action="store_true")
    h.set_defaults(func=_guard(cmd_history))
