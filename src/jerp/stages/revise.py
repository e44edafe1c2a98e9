"""revise@i: apply the accepted proposals to pool i-1 and write the immutable snapshot i."""

from __future__ import annotations

from pathlib import Path

from jerp import paths
from jerp.config import Params
from jerp.memory.choose import memory_for
from jerp.records import RuleSnapshot, read_proposals, read_snapshot, write_snapshot


def run(p: Params, root: Path, iteration: int, prev: int) -> tuple[RuleSnapshot, dict]:
    before = memory_for(p, read_snapshot(root / paths.rules_file(prev)), root)
    proposals = [x for x in read_proposals(root / paths.proposals_file(iteration)) if x.accepted]
    memory, applied = before.revise(proposals, iteration, p.rules.capacity)
    after = memory.snapshot()
    counts: dict[str, int] = {}
    for a in applied:
        if a.accepted:
            counts[a.op] = counts.get(a.op, 0) + 1
    write_snapshot(root / paths.rules_file(iteration), after)
    return after, counts
