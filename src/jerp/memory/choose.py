"""Which `Memory` a run's rule snapshot is read as: the flat pool, or H2R's hierarchy
for the methods that use it (`methods.MethodParts.hierarchy`)."""

from __future__ import annotations

from pathlib import Path

from jerp import paths
from jerp.config import Params
from jerp.memory.base import Memory
from jerp.memory.flat import FlatPool
from jerp.memory.hierarchy import H2RMemory
from jerp.methods import parts
from jerp.records import RuleSnapshot


def memory_for(p: Params, pool: RuleSnapshot, root: Path) -> Memory:
    """The run's memory over `pool` (params run.method; the flat pool's retrieval
    settings and its embedding index under `root`)."""
    if parts(p.run.method).hierarchy:
        return H2RMemory(pool)
    return FlatPool(pool, p.rules.retrieval, root / paths.index_cache())
