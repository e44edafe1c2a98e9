"""Where every stage output lives, relative to the project root.

dvc.yaml spells the same paths; keeping them here means code never guesses.
"""

from __future__ import annotations

from pathlib import Path

DATA = Path("data")
METRICS = Path("metrics")
REPORTS = Path("reports")
CACHE = Path(".cache")


def tasks_file() -> Path:
    return DATA / "tasks.json"


def warmstart_settings_file() -> Path:
    """The warm start's settings that follow from run.method (prepare writes them; the
    warm start depends on this file, not on run.method: jerp.methods.warmstart_settings)."""
    return DATA / "warmstart_settings.json"


def references_file() -> Path:
    return DATA / "references.jsonl"


def state_references_file() -> Path:
    """The reference solutions of the extra eval games whose states `evaluate` ranks
    (stage `states`): apart from references_file so that ranking more of them
    changes no training stage's inputs."""
    return DATA / "state_references.jsonl"


def ceiling_file() -> Path:
    """The searching expert on the eval games, at the run's step limit: the report's
    ceiling row. Measured only: no training stage reads it."""
    return DATA / "ceiling.jsonl"


def references_stats_file() -> Path:
    return METRICS / "references.json"


def iter_dir(i: int) -> Path:
    return DATA / f"iter_{i}"


def rules_file(i: int) -> Path:
    return iter_dir(i) / "rules.json"


def rollouts_file(i: int) -> Path:
    return iter_dir(i) / "rollouts.jsonl"


def proposals_file(i: int) -> Path:
    return iter_dir(i) / "proposals.jsonl"


def wins_file(i: int) -> Path:
    """The agent's own successes up to iteration i (they join the references)."""
    return iter_dir(i) / "wins.jsonl"


def adapter_dir(i: int) -> Path:
    """The policy iteration i acts with (0: the warm start, or the base model)."""
    return iter_dir(i) / "adapter"


def rollout_stats_file(i: int) -> Path:
    return METRICS / f"rollout_{i}.json"


def train_stats_file(i: int) -> Path:
    """Training summary of iteration i (0: the warm start)."""
    return METRICS / f"train_{i}.json"


def eval_file(i: int) -> Path:
    return iter_dir(i) / "eval.jsonl"


def expert_states_file(i: int) -> Path:
    """Per reference state of the eval games: the reference action's rank (evaluate@i)."""
    return iter_dir(i) / "expert_states.json"


def metrics_file(i: int) -> Path:
    return METRICS / f"iter_{i}.json"


def model_cache() -> Path:
    return CACHE / "models"


def index_cache() -> Path:
    return CACHE / "index"


