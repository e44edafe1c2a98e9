"""How the rule pool changed per iteration: added, edited, merged, removed, rescored.

Counted from consecutive snapshots with `memory.diff` (rules matched by id).
A MERGE replaces k rules by one new rule, so the diff alone sees one add and k
removals; the accepted MERGE proposals of the iteration say which they were.
Without proposals (older runs), a new rule whose provenance covers the
provenance of two or more removed rules is counted as a merge of them (the
pool gives a merged rule the union of its parents' provenance).
"""

from __future__ import annotations

from dataclasses import dataclass

from jerp.memory.diff import diff_snapshots
from jerp.records import Proposal, Rule, RuleSnapshot


@dataclass
class PoolOps:
    iteration: int
    size: int
    added: int
    edited: int
    merged: int  # merges (each one new rule from two or more)
    removed: int  # rules dropped other than by merging (downvoted to 0, pruned)
    rescored: int  # same text, score moved (upvotes, downvotes)


def _merged_from_provenance(added: list[Rule], removed: list[Rule]) -> dict[str, list[str]]:
    out = {}
    for r in added:
        prov = set(r.provenance)
        parents = [o.id for o in removed if o.provenance and set(o.provenance) <= prov]
        if len(parents) >= 2:
            out[r.id] = parents
    return out


def pool_ops(prev: RuleSnapshot, snap: RuleSnapshot,
             proposals: list[Proposal] | None = None) -> PoolOps:
    """Operations that took `prev` to `snap` (proposals: that iteration's reflect output)."""
    d = diff_snapshots(prev, snap)
    removed_ids = {r.id for r in d.removed}
    if proposals is not None:
        merges = [p for p in proposals if p.op == "MERGE" and p.accepted]
        merged_away = {i for p in merges for i in p.rule_ids} & removed_ids
        n_merges = min(len(merges), len(d.added))
    else:
        found = _merged_from_provenance(d.added, d.removed)
        merged_away = {i for ids in found.values() for i in ids}
        n_merges = len(found)
    edited = {e.id for e in d.edited}
    return PoolOps(
        iteration=snap.iteration, size=len(snap.rules), added=len(d.added) - n_merges,
        edited=len(edited), merged=n_merges, removed=len(removed_ids - merged_away),
        rescored=sum(1 for s in d.score_changes if s.id not in edited),
    )


def evolution(snapshots: list[RuleSnapshot], proposals: dict[int, list[Proposal] | None]
              ) -> list[PoolOps]:
    """PoolOps per iteration after the first snapshot (iteration order)."""
    snaps = sorted(snapshots, key=lambda s: s.iteration)
    first = snaps[0] if snaps else None
    out = [PoolOps(first.iteration, len(first.rules), len(first.rules), 0, 0, 0, 0)] \
        if first else []
    for a, b in zip(snaps, snaps[1:], strict=False):
        out.append(pool_ops(a, b, proposals.get(b.iteration)))
    return out


@dataclass
class RuleRow:
    id: str
    text: str
    score: int
    scope: str
    age: int  # iterations since the rule was created
    trajectories: int  # distinct trajectories in its provenance
    created: int
    updated: int


def top_rules(snap: RuleSnapshot, k: int = 10) -> list[RuleRow]:
    """The k highest-scoring rules (ties: older first), with age and evidence count."""
    rules = sorted(snap.rules, key=lambda r: (-r.score, r.created, r.id))[:k]
    return [RuleRow(r.id, r.text, r.score, r.scope, snap.iteration - r.created,
                    len(set(r.provenance)), r.created, r.updated) for r in rules]
