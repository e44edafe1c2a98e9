"""The table of environment specs: dispatch, data folders at the edge, clear errors."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import pytest

from jerp.config import EnvParams
from jerp.envs.alfworld import AlfWorldEnv
from jerp.envs.alfworld_actions import ALFWORLD_ACTIONS
from jerp.envs.registry import (
    SPECS,
    action_abstraction,
    data_root,
    env_factory,
    env_spec,
    sample_split,
)
from jerp.envs.webshop import WebShopEnv
from jerp.envs.webshop.actions import WEBSHOP_ACTIONS
from jerp.envs.webshop.data import DATA_ENV_VAR, resolve_data_dir

WEB = resolve_data_dir()


def test_every_params_env_has_a_spec() -> None:
    accepted = EnvParams.model_fields["name"].annotation.__args__
    assert sorted(SPECS) == sorted(accepted)
    assert action_abstraction("alfworld") is ALFWORLD_ACTIONS
    assert action_abstraction("webshop") is WEBSHOP_ACTIONS
    assert all(s.task_types and s.reference_source for s in SPECS.values())


def test_unknown_env_names_it_and_the_accepted_ones() -> None:
    with pytest.raises(ValueError, match=r"unknown environment 'minigrid'.*alfworld.*webshop"):
        env_spec("minigrid")


def test_factories_are_picklable_partials(tmp_path: Path) -> None:
    alf = env_factory(EnvParams(max_steps=7), tmp_path)
    assert isinstance(alf, partial) and alf.func is AlfWorldEnv
    assert alf.args == (tmp_path,) and alf.keywords == {"max_steps": 7}
    web = env_factory(EnvParams(name="webshop"), WEB)
    assert isinstance(web, partial) and web.func is WebShopEnv and web.args == (WEB,)


def test_webshop_data_folder_resolved_at_the_edge(tmp_path: Path) -> None:
    project = tmp_path / "proj"
    project.mkdir()
    p = EnvParams(name="webshop")
    # the environment passed in is the one read, not the process's
    assert data_root(p, {DATA_ENV_VAR: str(WEB)}, project) == WEB
    (tmp_path / "shared").mkdir()
    (tmp_path / "shared" / "webshop").symlink_to(WEB)
    assert data_root(p, {}, project) == (tmp_path / "shared" / "webshop").resolve()
    explicit = EnvParams(name="webshop", data_dir=str(tmp_path / "nope"))
    with pytest.raises(FileNotFoundError, match="nope"):
        data_root(explicit, {DATA_ENV_VAR: str(WEB)}, project)


def test_alfworld_data_folder_from_environ(tmp_path: Path, alf_root: Path) -> None:
    assert data_root(EnvParams(), {"ALFWORLD_DATA": str(alf_root)}, tmp_path) == alf_root


def test_sample_split_per_env(alf_root: Path) -> None:
    web = sample_split(EnvParams(name="webshop", task_types=["beauty", "grocery"]), WEB,
                       "train", seed=0, per_type=2)
    assert [t.task_type for t in web] == ["beauty", "beauty", "grocery", "grocery"]
    assert all(t.env == "webshop" and t.source.startswith("synthetic/0/") for t in web)
    alf = sample_split(EnvParams(), alf_root, "eval_out", seed=0, per_type=1)
    assert len(alf) == len(SPECS["alfworld"].task_types) and alf[0].env == "alfworld"


def test_unknown_task_type_names_the_env_and_the_accepted_ones() -> None:
    p = EnvParams(name="webshop", task_types=["pick_and_place_simple"])
    with pytest.raises(ValueError, match=r"unknown webshop task types.*'beauty'"):
        sample_split(p, WEB, "train", seed=0)
