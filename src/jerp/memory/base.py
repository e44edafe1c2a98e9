"""The memory interface every method's experience store implements.

A memory is an immutable value: `revise` returns a new one (the old one is the
previous iteration's snapshot, still on disk), `retrieve` picks what an episode is
shown for a query, `snapshot` is the on-disk record (records.RuleSnapshot, written
once per iteration), and `diff` says what changed since another memory. The flat
rule pool (`memory/flat.py`) implements it; H2R's planning/execution hierarchy is
meant to implement it too, so the stages call this interface, not the pool.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from jerp.memory.diff import SnapshotDiff
from jerp.records import Proposal, RuleShown, RuleSnapshot


@dataclass(frozen=True)
class Query:
    """What an episode looks memory up with: its task type and goal sentence."""

    task_type: str
    goal: str


class Memory(Protocol):
    """Versioned experience outside the model (see the module docstring)."""

    def revise(self, proposals: list[Proposal], iteration: int,
               capacity: int) -> tuple[Memory, list[Proposal]]:
        """A new memory with the proposals applied, and each proposal marked applied or
        rejected (with the reason)."""
        ...

    def retrieve(self, query: Query, k: int) -> list[RuleShown]:
        """The at most `k` memories shown to an episode of `query`."""
        ...

    def snapshot(self) -> RuleSnapshot:
        """The immutable on-disk record of this memory."""
        ...

    def diff(self, before: Memory) -> SnapshotDiff:
        """What changed from `before` to this memory."""
        ...
