"""Environments by name: one table of specs, and the functions the stages call.

Each `EnvSpec` says everything the pipeline needs to know about a text world:
how to build it (a picklable factory), where its data folder is (resolved at the
edge: params `env.data_dir`, else an env var, else ../shared/<name> beside the
project), its tasks and task types, where its reference successes come from, and
its action abstraction (roles, milestones, subgoal boundaries: `envs/actions.py`).
Adding an environment is adding a row to `SPECS`. Engines load when an env is built
(ALFWorld imports TextWorld in `AlfWorldEnv.__init__`, WebShop reads its catalogue then).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from jerp.config import EnvParams, Params
from jerp.envs import alfworld, webshop
from jerp.envs.actions import ActionAbstraction
from jerp.envs.alfworld_actions import ALFWORLD_ACTIONS
from jerp.envs.base import Env, Task
from jerp.envs.webshop.actions import WEBSHOP_ACTIONS

SPLITS = ("train", "eval_in", "eval_out")
WARMSTART = "warmstart"  # train games whose references the warm start learns (tasks.json)
FRESH = "fresh"  # train games outside the warm start, rolled out k an iteration (tasks.json)


@dataclass(frozen=True)
class EnvSpec:
    """One environment, as the pipeline sees it."""

    name: str
    # (params env.data_dir, environment variables, project folder) -> data folder
    resolve_data: Callable[[str | None, Mapping[str, str], Path], Path]
    # (data folder, split, seed) -> every task of the split
    list_tasks: Callable[[Path, str, int], list[Task]]
    # (params env, data folder) -> a picklable zero-argument env constructor
    factory: Callable[[EnvParams, Path], Callable[[], Env]]
    task_types: tuple[str, ...]
    reference_source: str  # what `Env.reference` replays
    actions: ActionAbstraction
    expert: bool = False  # its observations carry a searching expert's label (DAgger)


def _alf_tasks(root: Path, split: str, seed: int) -> list[Task]:
    return alfworld.list_tasks(root, split)  # a split is an official folder: no seed


def _alf_factory(p: EnvParams, root: Path) -> Callable[[], Env]:
    return partial(alfworld.AlfWorldEnv, root, max_steps=p.max_steps)


def _web_data(explicit: str | None, environ: Mapping[str, str], project: Path) -> Path:
    return webshop.resolve_data_dir(explicit, project, environ)


def _web_tasks(root: Path, split: str, seed: int) -> list[Task]:
    return webshop.list_tasks(root, split, seed)  # goals and splits are drawn per seed


def _web_factory(p: EnvParams, root: Path) -> Callable[[], Env]:
    return partial(webshop.WebShopEnv, root)  # step limits are the rollout's


SPECS: dict[str, EnvSpec] = {
    "alfworld": EnvSpec(
        name="alfworld",
        resolve_data=alfworld.resolve_data_root,
        list_tasks=_alf_tasks,
        factory=_alf_factory,
        task_types=alfworld.TASK_TYPES,
        reference_source="the game's walkthrough (expert plan), replayed on the engine",
        actions=ALFWORLD_ACTIONS,
        expert=True,
    ),
    "webshop": EnvSpec(
        name="webshop",
        resolve_data=_web_data,
        list_tasks=_web_tasks,
        factory=_web_factory,
        task_types=webshop.CATEGORIES,
        reference_source="an oracle scripted purchase (search, page to the goal's "
                         "product, choose the goal's options, buy); the searching expert "
                         "is a scripted shopper that knows only the instruction "
                         "(webshop/shopper.py)",
        actions=WEBSHOP_ACTIONS,
        expert=True,
    ),
}


def env_spec(name: str) -> EnvSpec:
    """The spec of environment `name`; an error naming it and the accepted names."""
    try:
        return SPECS[name]
    except KeyError:
        raise ValueError(f"unknown environment {name!r}; accepted: {sorted(SPECS)}") from None


def action_abstraction(name: str) -> ActionAbstraction:
    """The action abstraction of environment `name` (e.g. a trajectory's `env`)."""
    return env_spec(name).actions


def data_root(p: EnvParams, environ: Mapping[str, str], project: Path) -> Path:
    """The env's data folder; `../shared/...` is beside the user's project, also when a
    queued DVC experiment runs in a copy of it (runtime.origin)."""
    from jerp.runtime import origin

    return env_spec(p.name).resolve_data(p.data_dir, environ, origin(project))


def sample_split(p: EnvParams, root: Path, split: str, seed: int,
                 per_type: int | None = None, exclude: set[str] | None = None) -> list[Task]:
    """The tasks a run uses for one split: `*_per_type` per task type, chosen by seed
    (`per_type` overrides; `exclude`: task ids not to choose, e.g. the rollout games)."""
    spec = env_spec(p.name)
    unknown = sorted(set(p.task_types or ()) - set(spec.task_types))
    if unknown:
        raise ValueError(f"unknown {spec.name} task types {unknown} in env.task_types; "
                         f"accepted: {list(spec.task_types)}")
    if per_type is None:
        per_type = p.train_per_type if split == "train" else p.eval_per_type
    tasks = spec.list_tasks(root, split, seed)
    if exclude:
        tasks = [t for t in tasks if t.task_id not in exclude]
    return alfworld.sample_tasks(tasks, per_type, seed, p.task_types)


def env_factory(p: EnvParams, root: Path) -> Callable[[], Env]:
    """A picklable factory (a partial, not a lambda): env worker processes call it."""
    return env_spec(p.name).factory(p, root)


def make_env(p: Params, root: Path) -> Callable[[], Env]:
    """The run's environment factory, with its data folder resolved at the edge."""
    return env_factory(p.env, data_root(p.env, os.environ, root))
