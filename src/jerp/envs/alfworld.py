"""The real ALFWorld engine (TextWorld PDDL backend) behind the Env protocol.

One TextWorld env is registered per `AlfWorldEnv` and re-pointed at the next
game on every reset: building an env per game leaks about 5 MB a game.
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Mapping
from pathlib import Path

from jerp.envs.alfworld_expert import TASK_TYPES  # noqa: F401  (registry, tests name it here)
from jerp.envs.base import Observation, StepResult, Task

# Our split names -> the official folder names.
SPLIT_DIRS = {"train": "train", "eval_in": "valid_seen", "eval_out": "valid_unseen"}
GAME_FILE = "game.tw-pddl"
_META_COMMANDS = {"help"}


class DataNotFoundError(FileNotFoundError):
    pass


class GameFileError(ValueError):
    """A game file that is there but cannot be played (truncated, edited, wrong format)."""


def resolve_data_root(explicit: str | None, environ: Mapping[str, str], project: Path) -> Path:
    """params env.data_dir, else $ALFWORLD_DATA, else ../shared/alfworld beside the project."""
    tried = []
    for cand in (explicit, environ.get("ALFWORLD_DATA"), str(project.parent / "shared/alfworld")):
        if not cand:
            continue
        root = Path(cand).expanduser().resolve()
        tried.append(str(root))
        if (root / "json_2.1.1").is_dir():
            return root
    raise DataNotFoundError(
        "no ALFWorld games found: looked for a json_2.1.1/ folder in "
        + (", ".join(tried) or "nothing")
        + ". Set env.data_dir in params.yaml or $ALFWORLD_DATA to the official download layout."
    )


def task_type_of(task_dir: str) -> str:
    return task_dir.split("-", 1)[0]


def list_tasks(root: Path, split: str) -> list[Task]:
    """Every game of a split, sorted by id; the task type comes from the folder name."""
    if split not in SPLIT_DIRS:
        raise ValueError(f"unknown split {split!r}; accepted: {sorted(SPLIT_DIRS)}")
    split_dir = root / "json_2.1.1" / SPLIT_DIRS[split]
    files = sorted(split_dir.glob(f"*/*/{GAME_FILE}"))
    if not files:
        raise DataNotFoundError(f"no {GAME_FILE} files under {split_dir}")
    tasks = []
    for f in files:
        rel = f.parent.relative_to(root / "json_2.1.1")
        tasks.append(
            Task(
                task_id=str(rel),
                env="alfworld",
                split=split,
                task_type=task_type_of(rel.parts[1]),
                source=str(f.relative_to(root)),
            )
        )
    return tasks


def sample_tasks(
    tasks: list[Task], per_type: int, seed: int, task_types: list[str] | None = None
) -> list[Task]:
    """`per_type` tasks of each type, chosen by `seed`, in a stable order."""
    by_type: dict[str, list[Task]] = defaultdict(list)
    for t in tasks:
        by_type[t.task_type].append(t)
    if task_types:
        unknown = set(task_types) - set(by_type)
        if unknown:
            raise ValueError(f"unknown task types {sorted(unknown)}; accepted: {sorted(by_type)}")
    rng = random.Random(seed)
    out = []
    for tt in sorted(by_type):
        if task_types and tt not in task_types:
            continue
        pool = by_type[tt]
        out.extend(rng.sample(pool, min(per_type, len(pool))))
    return out


def _clean_obs(text: str) -> str:
    return text.replace("-= Welcome to TextWorld, ALFRED! =-", "").strip()


class AlfWorldEnv:
    """Plays one ALFWorld game at a time; `reset(task)` loads the task's game file."""

    name = "alfworld"

    def __init__(self, root: Path, max_steps: int = 50, expert: bool = True, seed: int = 0):
        import textworld
        import textworld.gym
        from alfworld.agents.environment.alfred_tw_env import AlfredDemangler, AlfredInfos

        self.root = Path(root)
        self.max_steps = max_steps
        self.expert = expert  # label every state with the searching expert's action
        self.seed = seed
        self._textworld_gym = textworld.gym
        infos = textworld.EnvInfos(
            won=True, admissible_commands=True, facts=expert,
            extras=["gamefile", "walkthrough"]
        )
        first = next((self.root / "json_2.1.1").glob(f"*/*/*/{GAME_FILE}"), None)
        if first is None:
            raise DataNotFoundError(f"no {GAME_FILE} files under {self.root / 'json_2.1.1'}")
        env_id = textworld.gym.register_games(
            [str(first)],
            infos,
            batch_size=1,
            asynchronous=False,
            max_episode_steps=max_steps,
            wrappers=[AlfredDemangler(shuffle=False), AlfredInfos],
        )
        self._env = textworld.gym.make(env_id)
        self._goal = ""
        self._task_type = ""
        self._walkthrough: list[str] = []
        self._last: Observation | None = None
        self._expert = None

    def _load(self, task: Task) -> tuple[list[str], dict]:
        path = self.root / task.source
        if not path.is_file():
            raise DataNotFoundError(f"game file for {task.task_id} not found: {path}")
        # Re-point the registered env at this one game; seed() rebuilds its game iterator.
        self._env.gamefiles = [str(path)]
        self._env.seed(0)
        try:
            return self._env.reset()
        except Exception as e:  # the engine's own errors (JSON, PDDL) do not name the file
            raise GameFileError(f"{path}: not a playable ALFWorld game "
                                f"({type(e).__name__}: {e})") from e

    def reset(self, task: Task) -> Observation:
        obs, info = self._load(task)
        text = _clean_obs(obs[0])
        self._goal = text.split("Your task is to: ")[-1].strip()
        self._task_type = task.task_type
        self._walkthrough = list(info["extra.walkthrough"][0])
        label = None
        if self.expert:
            from jerp.envs.alfworld_expert import Expert, task_params

            self._expert = Expert(task_params(task.task_id), seed=self.seed)
            label = self._expert.start(obs[0], info["facts"][0], info["admissible_commands"][0])
        self._last = self._observation(text, info, label)
        return self._last

    def _observation(self, text: str, info: dict, expert: str | None) -> Observation:
        admissible = [c for c in info["admissible_commands"][0] if c not in _META_COMMANDS]
        return Observation(text=text, admissible=admissible, goal=self._goal,
                           task_type=self._task_type, expert=expert)

    def step(self, action: str) -> StepResult:
        obs, scores, dones, info = self._env.step([action])
        won = bool(info["won"][0])
        label = None
        if self._expert is not None and not won:
            label = self._expert.next(action, obs[0], info["facts"][0],
                                      info["admissible_commands"][0])
        self._last = self._observation(_clean_obs(obs[0]), info, label)
        return StepResult(self._last, reward=1.0 if won else 0.0, done=bool(dones[0]) or won,
                          won=won)

    def reference(self, task: Task) -> list[str]:
        """The game's walkthrough: its reference successful trajectory."""
        import json

        path = self.root / task.source
        try:
            with open(path, encoding="utf-8") as fh:
                return list(json.load(fh)["walkthrough"])
        except (ValueError, KeyError, TypeError) as e:
            raise GameFileError(f"{path}: no readable walkthrough "
                                f"({type(e).__name__}: {e})") from e

    def close(self) -> None:
        self._env.close()
