"""Schemas and the one reader/writer for every file that crosses a stage boundary.

Every writer is atomic (temp file in the same directory, then rename), so a
failing stage never leaves a half-written output behind.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from jerp.envs.base import Task

# ---------------------------------------------------------------- atomic I/O

M = TypeVar("M", bound=BaseModel)


@contextmanager
def atomic_open(path: str | Path, mode: str = "w") -> Iterator:
    """Open a temp file beside `path`; rename it over `path` only on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, mode, encoding=None if "b" in mode else "utf-8") as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; outputs are ordinary files
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_json(path: str | Path, obj: object) -> None:
    with atomic_open(path) as fh:
        json.dump(obj, fh, indent=2, sort_keys=False)
        fh.write("\n")


class CorruptInputError(ValueError):
    """A stage input that exists but cannot be read: the message names the file and
    what is wrong with it (truncated, hand-edited, not the expected schema)."""


def read_json(path: str | Path) -> object:
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CorruptInputError(f"{path}: not valid JSON ({e})") from e


def read_model(path: str | Path, model: type[M]) -> M:
    """One JSON file validated as `model`; a bad file names itself and the problem."""
    try:
        return model.model_validate(read_json(path))
    except ValidationError as e:
        raise CorruptInputError(f"{path}: not a valid {model.__name__}: {e}") from e


def write_jsonl(path: str | Path, models: Iterable[BaseModel]) -> None:
    with atomic_open(path) as fh:
        for m in models:
            fh.write(m.model_dump_json())
            fh.write("\n")


def read_jsonl(path: str | Path, model: type[M]) -> list[M]:
    out = []
    with open(path, encoding="utf-8") as fh:
        try:
            for n, line in enumerate(fh, 1):
                if line.strip():
                    try:
                        out.append(model.model_validate_json(line))
                    except ValueError as e:
                        hint = " (truncated?)" if not line.endswith("\n") else ""
                        raise CorruptInputError(
                            f"{path}:{n}: not a valid {model.__name__}{hint}: {e}") from e
        except UnicodeDecodeError as e:
            raise CorruptInputError(f"{path}: not UTF-8 text ({e})") from e
    return out


# ---------------------------------------------------------------- tasks

Split = Literal["train", "eval_in", "eval_out"]


class TaskList(BaseModel):
    """data/tasks.json: the games each split uses in this run (written by `prepare`)."""

    env: str
    seed: int
    splits: dict[str, list[dict]]

    def tasks(self, split: str) -> list[Task]:
        if split not in self.splits:
            raise KeyError(f"split {split!r} not in task list; have {sorted(self.splits)}")
        return [Task(**t) for t in self.splits[split]]

    def optional(self, split: str) -> list[Task]:
        """A split only some runs have (warmstart, fresh): none of its games where absent."""
        return self.tasks(split) if split in self.splits else []


def write_tasks(path: str | Path, tasks: TaskList) -> None:
    write_json(path, tasks.model_dump())


def read_tasks(path: str | Path) -> TaskList:
    return read_model(path, TaskList)


class WarmstartSettings(BaseModel):
    """The warm start's settings that follow from run.method (jerp.methods.
    warmstart_settings), as `prepare` wrote them for the warm start to read."""

    model_config = ConfigDict(extra="forbid")
    subgoal_slots: bool
    plan_choices: bool = False  # H2R's policy planner learns its decisions (older files: no)


# ---------------------------------------------------------------- trajectories


class StepRecord(BaseModel):
    """One decision, with what its policy update needs to rebuild the exact prompt and
    the acting distribution: the candidates, pi_old and the window start."""

    observation: str
    admissible_count: int
    action: str
    logprob: float | None = None  # log p(command tokens | prompt): the chosen action's score
    valid: bool = True  # False: generate-mode text that did not parse to an admissible command
    reward: float = 0.0
    admissible: list[str] | None = None  # the candidates the policy chose among
    prob: float | None = None  # pi_old(action | s) under the candidate softmax at `temperature`
    temperature: float | None = None  # T of that softmax (0 = greedy)
    history_from: int | None = None  # first past step shown in the prompt (window start)
    # The per-step memory slot (memory.base.StepMemory): the subgoal the step acted for
    # (None: the episode had no slot; "": none at this step) and the ids of the
    # execution memories shown in the slot; `slot`: the slot's text as shown, so training
    # (policy/packing.py) rebuilds exactly the prompt the step acted with.
    subgoal: str | None = None
    memories: list[str] = Field(default_factory=list)
    slot: str = ""
    # The searching expert's action at this state (envs/alfworld_expert.py,
    # envs/webshop/shopper.py), whatever action was then played: DAgger's label and the
    # expert-agreement metric's reference.
    expert: str | None = None


class RuleShown(BaseModel):
    id: str
    text: str


# Who wrote an H2R episode's subgoal plan (memory/planner.py): the acting policy, the
# model at rules.llm_endpoint, or the fallback (a remembered plan, the hand-written one).
PlanSource = Literal["policy", "endpoint", "memory", "default"]


class Trajectory(BaseModel):
    """One episode, as every stage after a rollout sees it."""

    traj_id: str
    task_id: str
    env: str
    split: str
    task_type: str
    goal: str
    steps: list[StepRecord]
    reward: float
    won: bool
    n_steps: int
    invalid_actions: int = 0
    rules_shown: list[RuleShown] = Field(default_factory=list)
    subgoals: list[str] = Field(default_factory=list)  # the subgoal sequence, in order
    # H2R: the plan the executor followed and who wrote it (None: no planner; files
    # written before the planner read as None and []).
    plan: list[str] = Field(default_factory=list)
    plan_source: PlanSource | None = None
    policy_version: str = "base"
    pool_version: str = "none"
    method: str | None = None  # run.method of the stage that played it; None: a reference
    # or the warm start's DAgger play, which belong to no method
    iteration: int = 0
    episode: int = 0  # index within a task's group of G episodes
    seed: int = 0
    # No wall time or other timing here: a stage's data outputs must be a function of its
    # inputs, or DVC sees every re-run of `references` as new data and re-trains the warm
    # start it feeds (timings go to metrics/*.json). Older files' `wall_s` is ignored.
    source: Literal["rollout", "reference"] = "rollout"
    # A reference success's demonstrator: the searching expert, or the env's own reference
    # (ALFWorld's walkthrough, an oracle plan; WebShop's oracle scripted purchase).
    reference_kind: Literal["expert", "walkthrough"] | None = None
    score: Literal["sum", "mean", "calibrated"] = "sum"  # the acting softmax's candidate score
    # Baselines (run.method reflexion / expel): which attempt at the task this is (0: the
    # first; Reflexion retries failures), the notes of the earlier failed attempts it was
    # shown, and the ids of the successful trajectories shown as in-context examples.
    trial: int = 0
    notes_shown: list[str] = Field(default_factory=list)
    examples_shown: list[str] = Field(default_factory=list)

    @property
    def initial_observation(self) -> str:
        """The first observation (room and receptacles): kept in the prompt's header."""
        return self.steps[0].observation if self.steps else ""

    @property
    def actions(self) -> list[str]:
        return [s.action for s in self.steps]


def first_trials(trajs: Iterable[Trajectory]) -> list[Trajectory]:
    """Each episode's first attempt: what success@1, every method's headline, counts."""
    return [t for t in trajs if t.trial == 0]


def final_trials(trajs: Iterable[Trajectory]) -> list[Trajectory]:
    """Each episode's last trial (Reflexion's success@k); else the trajectories."""
    last: dict[tuple[str, int], Trajectory] = {}
    for t in trajs:
        key = (t.task_id, t.episode)
        if key not in last or t.trial >= last[key].trial:
            last[key] = t
    return list(last.values())


def write_trajectories(path: str | Path, trajs: Iterable[Trajectory]) -> None:
    write_jsonl(path, trajs)


def read_trajectories(path: str | Path) -> list[Trajectory]:
    return read_jsonl(path, Trajectory)


# ---------------------------------------------------------------- rules

Scope = str  # a task type, or "general"
Level = Literal["rule", "planning", "execution"]  # H2R adds the two hierarchical levels


class Rule(BaseModel):
    id: str
    text: str
    score: int
    scope: Scope = "general"
    level: Level = "rule"
    created: int  # iteration that created it
    updated: int  # iteration that last changed it
    provenance: list[str] = Field(default_factory=list)  # trajectory ids


class RuleSnapshot(BaseModel):
    """data/iter_<i>/rules.json: the pool after revision at iteration i. Immutable."""

    iteration: int
    capacity: int
    rules: list[Rule]
    next_id: int = 1

    @classmethod
    def empty(cls, capacity: int) -> RuleSnapshot:
        """Iteration 0's pool: what every method starts from, and what a policy sees
        when it is played with no rules (evaluate, tune, the warm start's prompts)."""
        return cls(iteration=0, capacity=capacity, rules=[])


def write_snapshot(path: str | Path, snap: RuleSnapshot) -> None:
    """Snapshots are immutable: written once, then made read-only."""
    write_json(path, snap.model_dump())
    os.chmod(path, 0o444)


def read_snapshot(path: str | Path) -> RuleSnapshot:
    return read_model(path, RuleSnapshot)


OpName = Literal["ADD", "EDIT", "UPVOTE", "DOWNVOTE", "MERGE"]


class Evidence(BaseModel):
    failed: str | None = None  # trajectory id
    reference: str | None = None  # trajectory id (walkthrough or earlier win)
    diverge_step: int | None = None


class Proposal(BaseModel):
    """One proposed pool operation (reflect stage output, one per line)."""

    op: OpName
    rule_ids: list[str] = Field(default_factory=list)
    text: str | None = None
    scope: Scope = "general"
    level: Level = "rule"  # the memory level an ADD writes to (H2R: planning / execution)
    evidence: Evidence = Field(default_factory=Evidence)
    rationale: str = ""
    accepted: bool = True
    reject_reason: str | None = None


def write_proposals(path: str | Path, props: Iterable[Proposal]) -> None:
    write_jsonl(path, props)


def read_proposals(path: str | Path) -> list[Proposal]:
    return read_jsonl(path, Proposal)


@contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """Build a directory beside `path`, then swap it in whole (old one removed after)."""
    import shutil

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"))
    try:
        yield tmp
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes 0700
        old = None
        if path.exists():
            old = path.with_name(f".{path.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(path, old)
        os.replace(tmp, path)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


# ---------------------------------------------------------------- adapters

ADAPTER_MANIFEST = "adapter.json"


class StateRank(BaseModel):
    """One reference state: the 1-based rank of the reference action under each prompt."""

    task_id: str
    task_type: str = ""
    step: int
    n_candidates: int = 0
    rank: dict[str, int] = Field(default_factory=dict)  # shown, and none / wrong if rules shown


class ExpertStates(BaseModel):
    """data/iter_<i>/expert_states.json: evaluate@i's reference-state ranks (the report
    and `jerp compare` pair them across iterations and methods)."""

    iteration: int
    rows: list[StateRank]


class AdapterManifest(BaseModel):
    """data/iter_<i>/adapter/adapter.json: which policy iteration i acts with.

    `kind: none` is the base model (no warm start, and no update yet); `lora` means a
    peft adapter folder sits beside it. Methods without policy updates copy their
    predecessor's folder, so every method has the same DAG.
    """

    kind: Literal["none", "lora"]
    base: str  # params policy.model it was trained on
    iteration: int
    parent: str | None = None  # the adapter folder it started from
    stage: str = ""  # warmstart | finetune | passthrough
    stats: dict = Field(default_factory=dict)  # training summary (losses, tokens/s, ...)
