"""Build environments and task lists by name, from the validated params."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import partial
from pathlib import Path

from jerp.config import EnvParams
from jerp.envs.base import Env, Task

SPLITS = ("train", "eval_in", "eval_out")
WARMSTART = "warmstart"  # train games whose references the warm start learns (tasks.json)


def data_root(p: EnvParams, environ: Mapping[str, str], project: Path) -> Path:
    """The env's data folder; `../shared/...` is beside the user's project, also when a
    queued DVC experiment runs in a copy of it (runtime.origin)."""
    from jerp.runtime import origin

    project = origin(project)
    if p.name == "alfworld":
        from jerp.envs.alfworld import resolve_data_root

        return resolve_data_root(p.data_dir, environ, project)
    from jerp.envs.webshop import resolve_data_dir

    return resolve_data_dir(p.data_dir, project)


def sample_split(p: EnvParams, root: Path, split: str, seed: int,
                 per_type: int | None = None, exclude: set[str] | None = None) -> list[Task]:
    """The tasks a run uses for one split: `*_per_type` per task type, chosen by seed
    (`per_type` overrides; `exclude`: task ids not to choose, e.g. the rollout games)."""
    if per_type is None:
        per_type = p.train_per_type if split == "train" else p.eval_per_type
    if p.name == "alfworld":
        from jerp.envs import alfworld

        tasks = alfworld.list_tasks(root, split)
    else:
        from jerp.envs import webshop

        tasks = webshop.list_tasks(root, split, seed)
    from jerp.envs.alfworld import sample_tasks

    if exclude:
        tasks = [t for t in tasks if t.task_id not in exclude]
    return sample_tasks(tasks, per_type, seed, p.task_types)


def env_factory(p: EnvParams, root: Path) -> Callable[[], Env]:
    """A picklable factory (a partial, not a lambda): env worker processes call it."""
    if p.name == "alfworld":
        from jerp.envs.alfworld import AlfWorldEnv

        return partial(AlfWorldEnv, root, max_steps=p.max_steps)
    from jerp.envs.webshop import WebShopEnv

    return partial(WebShopEnv, root)
