"""Presets: presets/base.yaml (the schema's defaults) with a short override file over it."""

import shutil
import subprocess

import pytest
import yaml

from jerp.config import Params, load_params, parse_params
from jerp.presets import PresetError, main, names, render, write


def _keys(d: dict, prefix: str = "") -> set[str]:
    out = set()
    for k, v in d.items():
        out.add(f"{prefix}{k}")
        if isinstance(v, dict) and k != "iterations":
            out |= _keys(v, f"{prefix}{k}.")
    return out


def test_base_is_the_schemas_defaults(root):
    """The schema is the one source of every default: the base writes them out, nothing more."""
    base = yaml.safe_load((root / "presets/base.yaml").read_text())
    assert base == Params().model_dump(mode="json")


def test_every_preset_merges_to_a_complete_valid_params_file(root):
    """DVC refuses a params file that lacks a key a stage lists: every merged preset has
    every key of the base, and the schema accepts it."""
    full = _keys(yaml.safe_load((root / "presets/base.yaml").read_text()))
    assert {"tiny", "quick", "standard", "paper"} <= set(names(root))
    merged = {n: yaml.safe_load(render(root, n)) for n in names(root)}
    for n, raw in merged.items():
        assert _keys(raw) == full, n
        parse_params(raw)
    paper = parse_params(merged["paper"])
    assert paper.env.max_steps == 50 and paper.rollout.group_size == 8
    assert paper.warmstart.games_per_type == 0 and paper.finetune.progress_reward == 0
    tiny = parse_params(merged["tiny"])
    # a preset's table replaces the base's whole (one iteration, not the base's merge)
    assert sorted(tiny.iterations) == [1] and tiny.eval_iterations == [0, 1]
    assert tiny.env.task_types == ["pick_heat_then_place_in_recep"] and tiny.env.max_steps == 4
    assert tiny.env.eval_split == "eval_out"  # not in tiny.yaml: the base's
    # one warm-start recipe, the one measured to win games (docs/methods.md): quick's
    # iteration 0 is standard's warm start, held to 30 steps
    quick, standard = parse_params(merged["quick"]), parse_params(merged["standard"])
    assert quick.warmstart == standard.warmstart and quick.warmstart.games_per_type == 25
    assert (quick.env.max_steps, standard.env.max_steps) == (30, 50)


def test_presets_hold_only_what_differs_from_the_base(root):
    base = yaml.safe_load((root / "presets/base.yaml").read_text())
    for n in names(root):
        over = yaml.safe_load((root / f"presets/{n}.yaml").read_text()) or {}
        for section, values in over.items():
            if isinstance(values, dict) and section != "iterations":
                same = [k for k, v in values.items() if base[section][k] == v]
                assert not same, f"{n}.yaml repeats the base's {section}: {same}"


def test_params_yaml_is_base_plus_quick(root):
    assert (root / "params.yaml").read_text() == render(root, "quick")
    assert load_params(root / "params.yaml").env.max_steps == 30


def test_merge_keeps_the_comments(root):
    text = render(root, "quick")
    assert text.startswith("# jerp pipeline parameters: the QUICK preset")
    assert "presets/base.yaml\n# with presets/quick.yaml over it." in text
    assert "  max_steps: 30         # step limit per episode" in text  # the preset's value
    assert "  eval_split: eval_out  # eval_out = valid_unseen" in text  # the base's line


def _project(tmp_path, root, **presets: str):
    proj = tmp_path / "proj"
    shutil.copytree(root / "presets", proj / "presets")
    for name, text in presets.items():
        (proj / "presets" / f"{name}.yaml").write_text(text)
    return proj


def test_unknown_preset_and_unknown_key_are_named(tmp_path, root, capsys, monkeypatch):
    with pytest.raises(PresetError, match=r"no preset 'fast'; accepted: paper, quick, "
                                          r"standard, tiny"):
        render(root, "fast")
    proj = _project(tmp_path, root, typo="env:\n  max_stpes: 3\n")
    with pytest.raises(PresetError, match=r"presets/typo.yaml: unknown key 'env.max_stpes'"):
        render(proj, "typo")
    monkeypatch.chdir(proj)
    assert main(["base"]) == 2  # the base alone is not a preset
    assert "accepted: paper, quick, standard, tiny, typo" in capsys.readouterr().err


def test_a_preset_that_breaks_the_schema_fails_by_key(tmp_path, root):
    proj = _project(tmp_path, root, bad="env:\n  max_steps: -1\n")
    with pytest.raises(ValueError, match=r"env\.max_steps"):
        render(proj, "bad")


def _git(proj, *args):
    subprocess.run(["git", *args], cwd=proj, check=True, capture_output=True)


def test_write_refuses_to_overwrite_uncommitted_edits(tmp_path, root):
    proj = _project(tmp_path, root)
    _git(proj, "init", "-q")
    write(proj, "quick")
    _git(proj, "add", "params.yaml")
    _git(proj, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "quick")
    write(proj, "tiny")  # committed: replaced
    assert load_params(proj / "params.yaml").env.max_steps == 4
    (proj / "params.yaml").write_text(render(proj, "tiny") + "# my edit\n")
    with pytest.raises(PresetError, match="uncommitted edits"):
        write(proj, "standard")
    assert (proj / "params.yaml").read_text().endswith("# my edit\n")  # nothing lost
    assert not list(proj.glob(".params.yaml.*"))  # no temp file left behind
