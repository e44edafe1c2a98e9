"""Read one run's per-iteration outputs, from the workspace or a git revision / DVC experiment.

The edge of the report: everything after this module works on plain data. The
files are read through a `Source` (a function from a project-relative path to
its text, or None when the run has no such file), so the report and
`jerp compare` read the workspace and `dvc.api` revisions the same way. Only
the iteration metrics are required; every other input is optional (older runs
lack the per-state ranks, react has no proposals), and is None when absent.
`load_references` reads what the `references` stage measured once per run: who
demonstrated the train games and the searching expert's ceiling on the eval games.
The metrics files are read as their typed records (jerp.metrics_schema): a key the
report needs and the file lacks fails here, naming the file and the key.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from pydantic import BaseModel

from jerp import paths
from jerp.metrics import agreement_by_kind
from jerp.metrics_schema import (
    DemoStats,
    EpisodeSummary,
    EvalMetrics,
    ReferenceStats,
    RolloutStats,
    TrainRecord,
    parse_record,
)
from jerp.records import (
    ExpertStates,
    Proposal,
    RuleSnapshot,
    StateRank,
    Trajectory,
    final_trials,
    first_trials,
)

M = TypeVar("M", bound=BaseModel)
Source = Callable[[str], "str | None"]


@dataclass
class EvalGame:
    task_id: str
    task_type: str
    won: bool
    reward: float
    # (agreeing, labelled) decisions per kind of the expert's action (metrics.agreement_by_kind)
    agreement: dict[str, tuple[int, int]] = field(default_factory=dict)
    steps: int | None = None  # the episode's steps (None: not recorded)


@dataclass
class IterationData:
    """`games`: each eval episode's first attempt (success@1); `final_games`: its last
    trial, read only where Reflexion retried (success@k), else None."""

    iteration: int
    metrics: EvalMetrics | None = None  # None: learned but not evaluated
    train: TrainRecord | None = None
    rollout: RolloutStats | None = None
    snapshot: RuleSnapshot | None = None
    proposals: list[Proposal] | None = None
    games: list[EvalGame] | None = None
    states: list[StateRank] | None = None
    final_games: list[EvalGame] | None = None


def workspace(root: Path) -> Source:
    """Read files under a project folder."""
    def read(rel: str) -> str | None:
        p = root / rel
        return p.read_text(encoding="utf-8") if p.is_file() else None
    return read


def revision(root: Path, rev: str | None) -> Source:
    """Read files at a git revision or DVC experiment through dvc.api (None: the workspace,
    DVC-tracked outputs included)."""
    def read(rel: str) -> str | None:
        import dvc.api

        try:
            return dvc.api.read(rel, repo=str(root), rev=rev, encoding="utf-8")
        except Exception:  # dvc raises many types for a missing rev or path
            return None
    return read


def _jsonl(text: str, model: type[BaseModel], where: str) -> list:
    out = []
    for n, line in enumerate(text.splitlines(), 1):
        if line.strip():
            try:
                out.append(model.model_validate_json(line))
            except ValueError as e:
                raise ValueError(f"{where}:{n}: not a valid {model.__name__}: {e}") from e
    return out


def _model(text: str, model: type[M], where: str) -> M:
    try:
        return model.model_validate_json(text)
    except ValueError as e:
        raise ValueError(f"{where}: not a valid {model.__name__}: {e}") from e


def _games(text: str, where: str) -> tuple[list[EvalGame], list[EvalGame] | None]:
    """One game per eval episode: its first attempt, and its last trial where Reflexion
    retried (eval.jsonl holds every trial), else None."""
    trajs = _jsonl(text, Trajectory, where)
    retried = any(t.trial for t in trajs)
    return eval_games(first_trials(trajs)), eval_games(final_trials(trajs)) if retried else None


def eval_games(trajs: list[Trajectory]) -> list[EvalGame]:
    """A game per episode, what the paired tests compare."""
    return [EvalGame(t.task_id, t.task_type, t.won, t.reward, agreement_by_kind([t]), t.n_steps)
            for t in trajs]


def load_iteration(read: Source, i: int, evaluated: bool = True) -> IterationData:
    """One iteration's outputs; FileNotFoundError when its metrics are missing, unless
    `evaluated` is False (an iteration that learned but was not evaluated: eval_iterations
    a subset, e.g. [0, 3], still has its snapshot, proposals and training summary)."""
    rel = str(paths.metrics_file(i))
    text = read(rel)
    if text is None and evaluated:
        raise FileNotFoundError(f"no metrics for iteration {i}: {rel} (has evaluate@{i} run?)")
    d = IterationData(iteration=i, metrics=None if text is None else
                      parse_record(text, EvalMetrics, rel))
    if (t := read(rel := str(paths.train_stats_file(i)))) is not None:
        d.train = parse_record(t, TrainRecord, rel)
    if (t := read(rel := str(paths.rollout_stats_file(i)))) is not None:
        d.rollout = parse_record(t, RolloutStats, rel)
    if (t := read(str(paths.rules_file(i)))) is not None:
        d.snapshot = _model(t, RuleSnapshot, str(paths.rules_file(i)))
    if (t := read(str(paths.proposals_file(i)))) is not None:
        d.proposals = _jsonl(t, Proposal, str(paths.proposals_file(i)))
    if (t := read(str(paths.eval_file(i)))) is not None:
        d.games, d.final_games = _games(t, str(paths.eval_file(i)))
    if (t := read(str(paths.expert_states_file(i)))) is not None:
        d.states = _model(t, ExpertStates, str(paths.expert_states_file(i))).rows
    return d


@dataclass
class References:
    """metrics/references.json: `demos`, who demonstrated the train games; `ceiling`, the
    searching expert's eval metrics (None without an expert: older WebShop runs);
    `ceiling_games`, its games from data/ceiling.jsonl when read."""

    demos: DemoStats | None = None
    ceiling: EpisodeSummary | None = None
    ceiling_games: list[EvalGame] | None = None


def load_references(read: Source, games: bool = True) -> References | None:
    """None for a run older than the `references` stats. `games`: also read the expert's
    eval games (per-type counts); `jerp compare` leaves them, a DVC-cached file per run."""
    text = read(str(paths.references_stats_file()))
    if text is None:
        return None
    d = parse_record(text, ReferenceStats, str(paths.references_stats_file()))
    ceiling = d.ceiling if d.ceiling and d.ceiling.episodes else None
    refs = References(d.demos, ceiling)
    rel = str(paths.ceiling_file())
    if games and refs.ceiling and (t := read(rel)) is not None:
        refs.ceiling_games = _games(t, rel)[0] or None
    return refs


def load_run(read: Source, iterations: list[int]) -> list[IterationData]:
    return [load_iteration(read, i) for i in iterations]


_MISSING = object()


def _param(params: dict, dotted: str) -> object:
    node: object = params
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return _MISSING
        node = node[part]
    return node


def stale_stages(lock: dict, params: dict) -> set[str]:
    """The stages of a dvc.lock that did not run under `params` (params.yaml's) or on the
    outputs the lock now records for their deps, and every stage downstream of one: what
    a `dvc exp run` of part of the pipeline keeps of its parent, whose outputs its metrics
    files then still hold (`-S ... evaluate@1` keeps iteration 2 on; `-S ... evaluate@3`
    keeps evaluate@1 and @2, which ran on the parent's adapters)."""
    stages = lock.get("stages") or {}
    made = {o["path"].rstrip("/"): name for name, st in stages.items()
            for o in st.get("outs", [])}
    hashes = {o["path"].rstrip("/"): o.get("md5") for st in stages.values()
              for o in st.get("outs", [])}

    def producer(path: str) -> str | None:
        path = path.rstrip("/")
        return next((n for out, n in made.items() if path == out or
                     path.startswith(out + "/")), None)

    def ran_on_other_inputs(st: dict) -> bool:
        return any(d.get("md5") and hashes.get(d["path"].rstrip("/")) not in (None, d["md5"])
                   for d in st.get("deps", []))

    stale = {name for name, st in stages.items()
             if ran_on_other_inputs(st) or any(
                 _param(params, key) != value
                 for kv in (st.get("params") or {}).values() for key, value in kv.items())}
    grew = True
    while grew:
        grew = False
        for name, st in stages.items():
            if name not in stale and any(producer(d["path"]) in stale
                                         for d in st.get("deps", [])):
                stale.add(name)
                grew = True
    return stale


def fresh_iterations(read: Source, its: list[int]) -> list[int]:
    """Those of `its` whose evaluation ran under the source's own params (all of them
    where there is no dvc.lock to tell)."""
    import yaml

    lock, params = read("dvc.lock"), read("params.yaml")
    if not lock or not params:
        return its
    stale = stale_stages(yaml.safe_load(lock) or {}, yaml.safe_load(params) or {})
    return [i for i in its if f"evaluate@{i}" not in stale]


def evaluated_iterations(read: Source, limit: int = 1000) -> list[int]:
    """Iterations with metrics at this source: params' eval_iterations, else probed 0, 1, ..."""
    import yaml

    text = read("params.yaml")
    its = (yaml.safe_load(text) or {}).get("eval_iterations") if text else None
    if its:
        return [int(i) for i in its if read(str(paths.metrics_file(int(i)))) is not None]
    out = []
    for i in range(limit):
        if read(str(paths.metrics_file(i))) is None:
            break
        out.append(i)
    return out


def run_params(read: Source) -> dict:
    import yaml

    text = read("params.yaml")
    return (yaml.safe_load(text) or {}) if text else {}
