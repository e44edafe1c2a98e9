"""What changed in the pool between two snapshots, and the life of one rule.

Snapshots are immutable and written per iteration, so the interesting
question for a reader (and the report) is the difference: which rules were
added, removed, rewritten, and how scores moved. Rendered as a rich table
for the terminal and as plain JSON for reports and MLflow artifacts. H2R's
snapshots hold two levels beside the flat rules: `at_level` cuts a snapshot to
one, so every view works per level.
"""

from __future__ import annotations

import io
from typing import Literal

from pydantic import BaseModel
from rich.console import Console
from rich.table import Table

from jerp.memory.pool import rule_number
from jerp.records import Level, Rule, RuleSnapshot

LEVELS: tuple[Level, ...] = ("planning", "execution", "rule")  # the order views list them


class RuleEdit(BaseModel):
    id: str
    old_text: str
    new_text: str


class ScoreChange(BaseModel):
    id: str
    old: int
    new: int
    text: str = ""  # the rule's text in `b`, so a score-only row still says which rule

    @property
    def delta(self) -> int:
        return self.new - self.old


class SnapshotDiff(BaseModel):
    from_iteration: int
    to_iteration: int
    added: list[Rule]
    removed: list[Rule]
    edited: list[RuleEdit]
    score_changes: list[ScoreChange]

    @property
    def empty(self) -> bool:
        return not (self.added or self.removed or self.edited or self.score_changes)


Event = Literal["added", "edited", "rescored", "unchanged", "removed"]


class HistoryEntry(BaseModel):
    iteration: int
    event: Event
    text: str | None = None
    score: int | None = None


def at_level(snap: RuleSnapshot, level: str | None) -> RuleSnapshot:
    """The snapshot with only the rules of `level` (None: all of them)."""
    if level is None:
        return snap
    if level not in LEVELS:
        raise ValueError(f"unknown level {level!r}; accepted: {list(LEVELS)}")
    return snap.model_copy(update={"rules": [r for r in snap.rules if r.level == level]})


def levels_in(*snaps: RuleSnapshot) -> list[str]:
    """The levels any of the snapshots holds, in `LEVELS` order."""
    present = {r.level for s in snaps for r in s.rules}
    return [lv for lv in LEVELS if lv in present]


def _by_id(snap: RuleSnapshot) -> dict[str, Rule]:
    return {r.id: r for r in snap.rules}


def _sorted_ids(ids: set[str]) -> list[str]:
    return sorted(ids, key=rule_number)


def diff_snapshots(a: RuleSnapshot, b: RuleSnapshot) -> SnapshotDiff:
    """Changes from snapshot `a` to snapshot `b` (rules matched by id)."""
    old, new = _by_id(a), _by_id(b)
    both = _sorted_ids(set(old) & set(new))
    return SnapshotDiff(
        from_iteration=a.iteration,
        to_iteration=b.iteration,
        added=[new[i] for i in _sorted_ids(set(new) - set(old))],
        removed=[old[i] for i in _sorted_ids(set(old) - set(new))],
        edited=[RuleEdit(id=i, old_text=old[i].text, new_text=new[i].text)
                for i in both if old[i].text != new[i].text],
        score_changes=[ScoreChange(id=i, old=old[i].score, new=new[i].score, text=new[i].text)
                       for i in both if old[i].score != new[i].score],
    )


def rule_history(snapshots: list[RuleSnapshot], rule_id: str) -> list[HistoryEntry]:
    """One entry per snapshot (in iteration order) from the rule's creation to its removal."""
    out: list[HistoryEntry] = []
    prev: Rule | None = None
    for snap in sorted(snapshots, key=lambda s: s.iteration):
        rule = _by_id(snap).get(rule_id)
        if rule is None:
            if prev is not None:
                out.append(HistoryEntry(iteration=snap.iteration, event="removed"))
            prev = None
            continue
        if prev is None:
            event: Event = "added"
        elif rule.text != prev.text:
            event = "edited"
        else:
            event = "rescored" if rule.score != prev.score else "unchanged"
        out.append(HistoryEntry(iteration=snap.iteration, event=event, text=rule.text,
                                score=rule.score))
        prev = rule
    return out


# ---------------------------------------------------------------- renderers


def diff_json(d: SnapshotDiff) -> dict:
    """Plain JSON form (score changes carry their delta)."""
    out = d.model_dump()
    for sc, dumped in zip(d.score_changes, out["score_changes"], strict=True):
        dumped["delta"] = sc.delta
    return out


def diff_table(d: SnapshotDiff, level: str | None = None) -> Table:
    what = f"{level} memories" if level else "rule pool"
    table = Table(title=f"{what}: iteration {d.from_iteration} -> {d.to_iteration}")
    for col in ("change", "id", "score", "text"):
        table.add_column(col, overflow="fold")
    for r in d.added:
        table.add_row("[green]added[/]", r.id, str(r.score), r.text)
    for e in d.edited:
        table.add_row("[yellow]edited[/]", e.id, "", f"{e.old_text}\n-> {e.new_text}")
    for s in d.score_changes:
        table.add_row("score", s.id, f"{s.old} -> {s.new} ({s.delta:+d})", s.text)
    for r in d.removed:
        table.add_row("[red]removed[/]", r.id, str(r.score), r.text)
    return table


def history_table(rule_id: str, history: list[HistoryEntry]) -> Table:
    table = Table(title=f"history of {rule_id}")
    for col in ("iteration", "event", "score", "text"):
        table.add_column(col, overflow="fold")
    for h in history:
        table.add_row(str(h.iteration), h.event, "" if h.score is None else str(h.score),
                      h.text or "")
    return table


def render_text(table: Table, width: int = 100) -> str:
    """A rich table as plain text (no colour codes), for logs and tests."""
    buf = io.StringIO()
    Console(file=buf, width=width, color_system=None, force_terminal=False).print(table)
    return buf.getvalue()
