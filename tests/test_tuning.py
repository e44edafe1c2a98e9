"""`jerp tune`: choices measured on valid_seen (eval_in) games, never the reported split."""

from __future__ import annotations

import pytest

from jerp.config import ParamsError, parse_params
from jerp.envs.alfworld import list_tasks
from jerp.records import StepRecord, Trajectory
from jerp.tuning import (
    TUNING_SPLIT,
    Choice,
    EpisodeTuning,
    Tuning,
    choice_of,
    episode_cells,
    grid_cells,
    params_for,
    rank_rows,
    tune,
    tune_episodes,
    tuning_games,
)

TYPE = "pick_and_place_simple"


def _params(alf_root, model_cache, **policy):
    return parse_params({
        "env": {"data_dir": str(alf_root), "task_types": [TYPE]},
        "policy": {"cache_dir": str(model_cache), "dtype": "float32", **policy},
        "runner": {"kind": "local"},
    })


def test_tuning_games_are_valid_seen_and_refused_when_that_is_the_reported_split(
        alf_root, model_cache, tmp_path):
    p = _params(alf_root, model_cache)
    games = tuning_games(p, tmp_path, 3)
    seen = {t.task_id for t in list_tasks(alf_root, TUNING_SPLIT)}
    assert len(games) == 3 and all(g.task_id in seen for g in games)
    assert not {g.task_id for g in games} & {t.task_id for t in list_tasks(alf_root, "eval_out")}
    on_seen = p.model_copy(update={"env": p.env.model_copy(update={"eval_split": "eval_in"})})
    with pytest.raises(ValueError, match="eval_split is 'eval_in', the tuning split"):
        tuning_games(on_seen, tmp_path, 3)


def test_grid_cells_resample_games_and_rank_the_choices():
    """Game a: 3 states, game b: 1. `sum` ranks every state first; `mean` only game a's;
    `calibrated` none. Top-1 pools states, its interval resamples whole games."""
    rows = [{"task_id": g, "rank": {"sum": 1, "mean": 1 if g == "a" else 2, "calibrated": 3}}
            for g in "aaab"]
    cells = {c.score: c for c in grid_cells({3: rows})}
    assert (cells["sum"].top1, cells["sum"].low, cells["sum"].high) == (1.0, 1.0, 1.0)
    m = cells["mean"]
    # resampled games: (a, a) 1.0, (a, b) 0.75, (b, b) 0.0
    assert (m.top1, m.states, m.games) == (0.75, 4, 2) and m.low == 0.0 and m.high == 1.0
    cal = cells["calibrated"]
    assert cal.top1 == 0.0 and cal.mrr == pytest.approx(1 / 3, abs=1e-4)
    t = Tuning("eval_in", "none", ["a", "b"], {"history": 3, "score": "mean"},
               list(cells.values()))
    assert t.best().score == "sum"
    marks = {r[1]: r[-1] for r in t.table()[1]}
    assert marks == {"sum": "best", "mean": "configured", "calibrated": ""}
    with pytest.raises(ValueError, match="history 1: no reference states"):
        grid_cells({1: []})


def test_sum_ranks_are_the_evaluate_stages_ranks(alf_root, model_cache, tmp_path):
    """rank_rows' `sum` column is what evaluate records (jobs.rank_states, no rules) for
    the same policy and history: the tuning loop measures what the pipeline does."""
    from jerp.jobs import AgentSpec, Job, rank_states
    from jerp.replay import REPLAY_LIMIT, play_references

    p = _params(alf_root, model_cache, history=2)
    games = tuning_games(p, tmp_path, 1)
    refs = play_references(p, tmp_path, [(g, "walkthrough", REPLAY_LIMIT) for g in games], "r")
    job = Job(p, tmp_path, AgentSpec(None, seed=0))
    rows = rank_rows(job, refs)
    staged = rank_states(job, refs, {})
    assert len(rows) == len(staged) > 3
    assert [r["rank"]["sum"] for r in rows] == [s.rank["shown"] for s in staged]


@pytest.mark.slow
def test_tune_measures_every_history_and_scoring(alf_root, model_cache, tmp_path):
    p = _params(alf_root, model_cache)
    t = tune(p, tmp_path, None, [1, 3], per_type=1)
    assert [(c.history, c.score) for c in t.cells] == [
        (h, s) for h in (1, 3) for s in ("sum", "mean", "calibrated")]
    assert len(t.games) == 1 and len({c.states for c in t.cells}) == 1
    assert all(c.games == 1 and c.states > 3 for c in t.cells)
    # one game: nothing to resample, the interval is the figure itself
    assert all(c.low == c.top1 == c.high for c in t.cells)
    assert t.configured == {"history": p.policy.history, "score": p.policy.score}


def _episode(game: str, won: bool, agree: list[bool]) -> Trajectory:
    """A hand-made greedy episode: one step per entry, agreeing with the expert or not."""
    steps = [StepRecord(observation="o", admissible_count=2, action="go to a",
                        admissible=["go to a", "go to b"], expert="go to a" if a else "go to b")
             for a in agree]
    return Trajectory(traj_id=f"{game}#0", task_id=game, env="alfworld", split="eval_in",
                      task_type=TYPE, goal="g", steps=steps, reward=float(won), won=won,
                      n_steps=len(steps))


def test_episode_cells_pair_games_against_the_configured_history():
    """History 3 (configured) wins a, b; history 1 wins b, c, d: 1 game only there, 2 only
    here. Agreement pools the labelled decisions; its interval resamples whole games."""
    h3 = [_episode("a", True, [True, True]), _episode("b", True, [True]),
          _episode("c", False, [False]), _episode("d", False, [False, False])]
    h1 = [_episode("a", False, [False]), _episode("b", True, [True]),
          _episode("c", True, [True]), _episode("d", True, [True])]
    cells = {c.history: c for c in episode_cells({Choice(3): h3, Choice(1): h1},
                                                 configured=Choice(3))}
    c3, c1 = cells[3], cells[1]
    assert (c3.won, c3.games, c3.only_here, c3.p) == (2, 4, None, None)
    assert (c1.won, c1.only_here, c1.only_configured) == (3, 2, 1) and c1.p == 1.0
    assert c3.agreement == 0.5 and c1.agreement == 0.75
    assert c3.low < 0.5 < c3.high and c3.agreement_low < 0.5 < c3.agreement_high
    assert (c3.mean_steps, c1.mean_steps) == (1.5, 1.0)
    t = EpisodeTuning("eval_in", "none", 30, list("abcd"), Choice(3), list(cells.values()))
    assert t.best().history == 1
    marks = {r[0]: (r[-2], r[-1]) for r in t.table()[1]}
    assert marks == {"3": ("-", "configured"), "1": ("+2 / -1, p = 1", "best")}
    with pytest.raises(ValueError, match=r"configured choice \(history 5\) was not played"):
        episode_cells({Choice(3): h3}, configured=Choice(5))
    with pytest.raises(ValueError, match="history 1: its episodes are not"):
        episode_cells({Choice(3): h3, Choice(1): h1[::-1]}, configured=Choice(3))


def test_episode_cells_tell_avoid_repeats_apart_from_its_history():
    """The same history with and without policy.avoid_repeats: two rows, paired."""
    plain = [_episode("a", True, [True]), _episode("b", False, [False])]
    avoid = [_episode("a", True, [True]), _episode("b", True, [True])]
    cells = episode_cells({Choice(3): plain, Choice(3, True): avoid}, configured=Choice(3))
    assert [choice_of(c) for c in cells] == [Choice(3), Choice(3, True)]
    assert (cells[1].won, cells[1].only_here, cells[1].only_configured) == (2, 1, 0)
    t = EpisodeTuning("eval_in", "none", 30, ["a", "b"], Choice(3), cells)
    rows = {r[0]: r[-1] for r in t.table()[1]}
    assert rows == {"3": "configured", "3, avoid repeats": "best"}


def test_episode_cells_tell_temperatures_apart():
    """The configured greedy history against itself sampled at T = 1: two rows, paired,
    and a choice's name says all three of what it was played with."""
    greedy = [_episode("a", False, [False]), _episode("b", False, [False])]
    sampled = [_episode("a", True, [True]), _episode("b", False, [True])]
    cells = episode_cells({Choice(3): greedy, Choice(3, False, 1.0): sampled},
                          configured=Choice(3))
    assert [choice_of(c) for c in cells] == [Choice(3), Choice(3, False, 1.0)]
    assert (cells[1].won, cells[1].only_here, cells[1].only_configured) == (1, 1, 0)
    assert cells[1].agreement == 1.0 and cells[0].agreement == 0.0
    t = EpisodeTuning("eval_in", "none", 30, ["a", "b"], Choice(3), cells)
    assert {r[0]: r[-1] for r in t.table()[1]} == {"3": "configured", "3, T = 1": "best"}
    assert str(Choice(5, True, 0.5)) == "5, avoid repeats, T = 0.5"


@pytest.mark.slow
def test_tune_episodes_plays_each_history_on_the_tuning_games(alf_root, model_cache, tmp_path):
    """On the real engine and model: the configured history is played even when not asked
    for, every history plays the same valid_seen games, and the step limit reaches them."""
    p = _params(alf_root, model_cache, history=2)
    p = p.model_copy(update={"env": p.env.model_copy(update={"max_steps": 3})})
    t = tune_episodes(p, tmp_path, None, [1], per_type=1, avoid_repeats=True,
                      temperatures=[1.0])
    assert [choice_of(c) for c in t.cells] == [Choice(1), Choice(1, True), Choice(2),
                                               Choice(2, False, 1.0), Choice(2, True)]
    assert t.configured == Choice(2)
    assert t.games == [g.task_id for g in tuning_games(p, tmp_path, 1)] and len(t.games) == 1
    assert all(c.games == 1 and 1 <= c.mean_steps <= 3 for c in t.cells)
    # the searching expert labels every step, so agreement is measured on each history
    assert all(c.agreement is not None and 0 <= c.agreement <= 1 for c in t.cells)
    assert [c.p is None for c in t.cells] == [False, False, True, False, False]


def test_a_choice_the_schema_refuses_stops_tuning_before_any_game(tmp_path):
    """Each choice's params go through the schema (a model_copy would not validate): a
    negative temperature or history is named before a game is listed (the data folder here
    does not exist, so reaching the games would fail differently)."""
    p = parse_params({"env": {"data_dir": str(tmp_path / "absent")}})
    with pytest.raises(ParamsError, match=r"'policy\.temperature' = -1\.0: Input should be "
                       "greater than or equal to 0"):
        tune_episodes(p, tmp_path, None, [3], per_type=1, temperatures=[0.5, -1.0])
    with pytest.raises(ParamsError, match=r"'policy\.history' = -2: Input should be greater"):
        tune_episodes(p, tmp_path, None, [-2], per_type=1)
    q = params_for(p, Choice(5, True, 0.5))
    assert (q.policy.history, q.policy.avoid_repeats, q.policy.temperature) == (5, True, 0.5)
    assert q.model_dump(exclude={"policy"}) == p.model_dump(exclude={"policy"})
    assert q.policy.model_dump(exclude={"history", "avoid_repeats", "temperature"}) == \
        p.policy.model_dump(exclude={"history", "avoid_repeats", "temperature"})
