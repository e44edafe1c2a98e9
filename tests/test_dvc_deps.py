"""dvc.yaml's code deps and params are the ones `python -m jerp.deps` generates from each
stage's import closure, or `dvc repro` serves stale results (a missing dep or param)
or reruns stages for nothing (an unneeded one)."""

from __future__ import annotations

import difflib
from pathlib import Path

import pytest
import yaml

from jerp import deps

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.faults  # stale results are a fault too: `pytest -m faults` runs it


def _stages() -> dict[str, dict]:
    spec = yaml.safe_load((ROOT / "dvc.yaml").read_text())
    return {name: st.get("do", st) for name, st in spec["stages"].items()}


def _flow(body: dict) -> str:
    return next(w for w in body["cmd"].split() if w.startswith("flows/") and w.endswith(".py"))


def test_committed_dvc_yaml_is_the_generated_one():
    """Either direction fails: a dep or param missing, or one the code does not need."""
    text = (ROOT / "dvc.yaml").read_text()
    new = deps.generate(ROOT, text)
    diff = "".join(difflib.unified_diff(text.splitlines(True), new.splitlines(True),
                                        "dvc.yaml", "generated"))
    assert not diff, f"run `python -m jerp.deps`:\n{diff}"


@pytest.mark.parametrize("name", list(_stages()))
def test_stage_deps_cover_its_imports(name):
    """Every file the flow's imports reach lies under one of the stage's deps."""
    body = _stages()[name]
    covered = [ROOT / d for d in body["deps"] if "${" not in d]
    missing = sorted(str(f.relative_to(ROOT)) for f in deps.closure(ROOT, _flow(body))
                     if not any(f == c or c in f.parents for c in covered))
    assert not missing, f"stage {name}: imported but not in deps: {missing}"


def test_generator_notices_a_dropped_dep_and_an_extra_param():
    text = (ROOT / "dvc.yaml").read_text()
    dropped = text.replace("      - src/jerp/replay.py\n", "", 1)
    assert dropped != text and "src/jerp/replay.py" in deps.generate(ROOT, dropped)
    refs_params = "    params:\n      - env\n"
    extra = text.replace(refs_params, refs_params + "      - lora\n", 1)
    assert extra != text and deps.generate(ROOT, extra) == text


def _reaches(stage: str, path: str) -> bool:
    body = _stages()[stage]
    files = deps.closure(ROOT, _flow(body))
    return ROOT / path in files


def test_an_edit_under_memory_reflect_reruns_reflect_not_the_warm_start():
    """memory/reflect/ is in reflect's code (revise, finetune and evaluate follow it
    through its outputs) and in none of the stages before it, rollout included."""
    edited = "src/jerp/memory/reflect/contrastive.py"
    assert _reaches("reflect", edited)
    for stage in ("prepare", "references", "states", "warmstart", "rollout"):
        assert not _reaches(stage, edited), stage
    covered = [d for d in _stages()["reflect"]["deps"]
               if (ROOT / edited).is_relative_to(ROOT / d)]
    assert covered


def test_references_and_prepare_load_no_model():
    for stage in ("prepare", "references", "states"):
        code = [d for d in _stages()[stage]["deps"] if d.startswith("src/")]
        assert not [d for d in code if d.startswith(("src/jerp/policy", "src/jerp/memory"))]


def test_params_follow_what_the_code_reads():
    """The LLM reflector's model settings are reflect's params; the warm start, shared
    by every method and every fine-tuning ablation through DVC's run cache, reads no
    method or finetune setting; `runner` (where
    chunks run) is nobody's param."""
    st = _stages()
    assert {"policy.dtype", "policy.device", "policy.cache_dir"} <= set(st["reflect"]["params"])
    assert not [x for x in st["warmstart"]["params"] if x in ("run", "run.method")]
    # a fine-tuning ablation (make ablations: -S finetune.algorithm=rft) reuses it too
    assert not [x for x in st["warmstart"]["params"] if x.split(".")[0] == "finetune"]
    assert not [x for n, b in st.items() for x in b.get("params", []) if x.startswith("runner")]


def test_params_read_sees_fields_aliases_and_whole_sections(tmp_path):
    f = tmp_path / "m.py"
    f.write_text(
        "def a(p, job):\n"
        "    fp = p.finetune\n"
        "    x = fp.lr + job.params.rules.top_k\n"
        "    use(p.env)\n"
        "    return p.policy.model_copy(update={}), task.env, x\n"
        "def b(PARAMS):\n"
        "    return PARAMS.learned_iterations, PARAMS.eval_iterations, other.iterations\n")
    got = deps.params_read(f, deps._sections())
    assert got == {"finetune.lr", "rules.top_k", "env", "policy", "iterations",
                   "eval_iterations"}


def test_check_exits_1_with_a_diff_when_dvc_yaml_is_stale(tmp_path, capsys):
    for name in ("src", "flows", "params.yaml"):
        (tmp_path / name).symlink_to(ROOT / name)
    text = (ROOT / "dvc.yaml").read_text()
    (tmp_path / "dvc.yaml").write_text(text)
    assert deps.main(["--check", "--root", str(tmp_path)]) == 0
    (tmp_path / "dvc.yaml").write_text(text.replace("      - src/jerp/replay.py\n", "", 1))
    assert deps.main(["--check", "--root", str(tmp_path)]) == 1
    assert "+      - src/jerp/replay.py" in capsys.readouterr().out
    assert deps.main(["--root", str(tmp_path)]) == 0  # rewrites it
    assert (tmp_path / "dvc.yaml").read_text() == text
