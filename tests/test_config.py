"""params.yaml validation: bad keys and values are named, with what is accepted."""

import pytest
import yaml

from jerp.config import ParamsError, load_params, parse_params


def test_repo_params_and_presets_validate(root):
    p = load_params(root / "params.yaml")
    assert p.eval_iterations == [0, *sorted(p.iterations)]
    with open(root / "presets/tiny.yaml") as fh:
        parse_params(yaml.safe_load(fh))


def test_bad_value_names_key_value_and_accepted():
    with pytest.raises(ParamsError) as e:
        parse_params({"policy": {"mode": "beam"}})
    msg = str(e.value)
    assert "policy.mode" in msg and "'beam'" in msg and "rank" in msg and "generate" in msg


def test_bad_device_names_what_is_accepted():
    with pytest.raises(ParamsError) as e:
        parse_params({"policy": {"device": "gpu"}})
    msg = str(e.value)
    assert "policy.device" in msg and "'gpu'" in msg and "cuda" in msg and "cpu" in msg
    assert parse_params({"policy": {"device": "cuda:1"}}).policy.device == "cuda:1"


def test_out_of_range_number():
    with pytest.raises(ParamsError, match=r"env\.max_steps.*-3"):
        parse_params({"env": {"max_steps": -3}})


def test_unknown_key_is_an_error():
    with pytest.raises(ParamsError, match=r"unknown key 'rules\.capacty'"):
        parse_params({"rules": {"capacty": 3}})


def test_iterations_must_chain_and_eval_iterations_be_among_them():
    with pytest.raises(ParamsError, match="prev"):
        parse_params({"iterations": {1: {"prev": 0}, 2: {"prev": 0}}, "eval_iterations": [0, 1, 2]})
    three = {i: {"prev": i - 1} for i in (1, 2, 3)}
    # before and after learning only: the standard comparison's cheap protocol
    assert parse_params({"iterations": three, "eval_iterations": [0, 3]}).eval_iterations == [0, 3]
    for bad in ([0, 4], [3, 0], [0, 1, 1], []):
        with pytest.raises(ParamsError, match=r"eval_iterations = .*among \[0, 1, 2, 3\]"):
            parse_params({"iterations": three, "eval_iterations": bad})


def test_missing_file(tmp_path):
    with pytest.raises(ParamsError, match="not found"):
        load_params(tmp_path / "params.yaml")


def _keys(d: dict, prefix: str = "") -> set[str]:
    out = set()
    for k, v in d.items():
        out.add(f"{prefix}{k}")
        if isinstance(v, dict) and k != "iterations":
            out |= _keys(v, f"{prefix}{k}.")
    return out


def test_presets_name_every_key_dvc_reads(root):
    """DVC refuses a params file that lacks a key a stage lists, so presets are complete."""
    with open(root / "params.yaml") as fh:
        full = _keys(yaml.safe_load(fh))
    for preset in (root / "presets").glob("*.yaml"):
        with open(preset) as fh:
            assert _keys(yaml.safe_load(fh)) == full, preset.name


def test_presets_are_valid_and_params_yaml_is_quick(root):
    from jerp.config import load_params

    presets = {p.stem: load_params(p) for p in sorted((root / "presets").glob("*.yaml"))}
    assert {"tiny", "quick", "standard", "paper"} <= set(presets)
    assert (root / "params.yaml").read_text() == (root / "presets/quick.yaml").read_text()
    paper = presets["paper"]
    assert paper.env.max_steps == 50 and paper.rollout.group_size == 8
    assert paper.warmstart.games_per_type == 0 and paper.finetune.progress_reward == 0
