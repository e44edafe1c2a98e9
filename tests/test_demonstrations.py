"""Stage `references` with the searching expert, and what reaches training: nothing
played on an eval game (its walkthrough ranks states; the expert's ceiling is
measured apart) and DAgger plays warm-start games only."""

import pytest

from jerp import paths
from jerp.config import parse_params
from jerp.envs.registry import WARMSTART
from jerp.metrics_schema import ReferenceStats, read_record
from jerp.records import read_tasks, read_trajectories
from jerp.stages import prepare, references

TYPE = "pick_and_place_simple"


@pytest.fixture(scope="module")
def project(tmp_path_factory, alf_root):
    root = tmp_path_factory.mktemp("demos")
    p = parse_params({
        "env": {"data_dir": str(alf_root), "max_steps": 12, "train_per_type": 1,
                "eval_per_type": 2, "task_types": [TYPE]},
        "warmstart": {"games_per_type": 2, "dagger_rounds": 2},
        "runner": {"kind": "local"},
    })
    prepare.run(p, root)
    references.run(p, root)
    return p, root


def test_train_games_are_demonstrated_by_the_expert_and_eval_games_by_walkthroughs(project):
    p, root = project
    tl = read_tasks(root / paths.tasks_file())
    learn = {t.task_id for s in ("train", WARMSTART) for t in tl.tasks(s)}
    evals = {t.task_id for t in tl.tasks("eval_out")}
    refs = read_trajectories(root / paths.references_file())
    assert {r.task_id for r in refs} == learn | evals and len(refs) == 5
    assert all(r.won for r in refs)
    for r in refs:
        if r.task_id in evals:
            assert r.reference_kind == "walkthrough" and all(s.valid for s in r.steps)
        elif r.reference_kind == "expert":
            assert all(s.expert == s.action for s in r.steps)  # its own labels
    demos = read_record(root / paths.references_stats_file(), ReferenceStats).demos
    kinds = [r.reference_kind for r in refs if r.task_id in learn]
    assert demos.games == 3 and demos.asked == "expert"
    assert demos.by == {"expert": kinds.count("expert"),
                        "walkthrough": kinds.count("walkthrough")}
    assert demos.fallbacks == kinds.count("walkthrough")


def test_the_ceiling_is_the_expert_on_the_eval_games_at_the_step_limit(project):
    p, root = project
    evals = {t.task_id for t in read_tasks(root / paths.tasks_file()).tasks("eval_out")}
    ceiling = read_trajectories(root / paths.ceiling_file())
    assert {t.task_id for t in ceiling} == evals
    assert all(t.reference_kind == "expert" and t.n_steps <= p.env.max_steps for t in ceiling)
    stats = read_record(root / paths.references_stats_file(), ReferenceStats).ceiling
    assert stats.episodes == 2 and stats.success == sum(t.won for t in ceiling) / 2


def test_dagger_plays_warm_start_games_only(project, monkeypatch):
    """The warm start's DAgger rounds, with training stubbed out: every game they play is
    a warm-start game (never a train game of the loop, never an eval game)."""
    from jerp.policy.train import TrainStats
    from jerp.stages import warmstart

    p, root = project
    played: list[list[str]] = []

    class Model:
        def train(self):
            pass

        def save_pretrained(self, path):
            pass

    class Policy:
        model = Model()

    monkeypatch.setattr(warmstart, "load_trainable", lambda *a, **k: Policy())
    monkeypatch.setattr("jerp.policy.train.train", lambda *a, **k: TrainStats())

    def fake_play(p_, root_, policy, games, k, memory=None):
        assert memory is None  # policy.visited off, not an H2R method: no slot
        played.append([g.task_id for g in games])
        return []

    monkeypatch.setattr(warmstart, "dagger_play", fake_play)
    stats = warmstart.run(p, root)
    warm = [t.task_id for t in read_tasks(root / paths.tasks_file()).tasks(WARMSTART)]
    assert played == [warm, warm]
    assert [r["round"] for r in stats["dagger"]] == [1, 2]
