"""The flat rule pool (ExpeL-style) behind the `Memory` interface.

A thin adapter: revision is `pool.revise`, retrieval `retrieve.working_set`
(by score, or by embedding similarity to the goal), diffs `diff.diff_snapshots`;
the snapshot is the pool's own `RuleSnapshot`, so files on disk do not change.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from jerp.memory.base import Memory, Query
from jerp.memory.diff import SnapshotDiff, diff_snapshots
from jerp.memory.pool import revise
from jerp.memory.retrieve import working_set
from jerp.records import Proposal, RuleShown, RuleSnapshot


@dataclass(frozen=True)
class FlatPool:
    """A rule snapshot plus how episodes retrieve from it."""

    pool: RuleSnapshot
    retrieval: str = "score"  # "score" | "embedding" (retrieve.working_set)
    index_dir: Path | None = None  # the embedding index (retrieval "embedding")

    def revise(self, proposals: list[Proposal], iteration: int,
               capacity: int) -> tuple[FlatPool, list[Proposal]]:
        after, applied = revise(self.pool, proposals, iteration, capacity)
        return replace(self, pool=after), applied

    def retrieve(self, query: Query, k: int) -> list[RuleShown]:
        rules = working_set(self.pool, query.task_type, query.goal, k, self.retrieval,
                            self.index_dir)
        return [RuleShown(id=r.id, text=r.text) for r in rules]

    def snapshot(self) -> RuleSnapshot:
        return self.pool

    def diff(self, before: Memory) -> SnapshotDiff:
        return diff_snapshots(before.snapshot(), self.pool)
