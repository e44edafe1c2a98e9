"""Reflexion's trial loop: retry each failed task, showing the notes of its failed trials.

Trial 1 plays every task. After trial t, each task that failed gets a note on that
attempt (`note`, a reflector: memory/reflect/reflexion.py), and trial t + 1 replays
only the failed tasks, each shown the notes of ITS earlier trials, oldest first.
A task leaves the loop at its first success; at most `trials` attempts per task.
All trials of a stage are batched per trial, so episodes still run in parallel.
"""

from __future__ import annotations

from collections.abc import Callable

from jerp.policy.rollout import EpisodeSpec
from jerp.records import Trajectory

Play = Callable[[list[EpisodeSpec]], list[Trajectory]]  # one trial's episodes, in order
Note = Callable[[Trajectory], str]  # a failed trajectory -> its self-reflection note


def play_trials(specs: list[EpisodeSpec], play: Play, note: Note,
                trials: int) -> list[Trajectory]:
    """Every trial's trajectories, trial by trial (each trial in the order of `specs`);
    a spec's trajectories carry `trial` 0..k-1 and the notes they were shown."""
    if trials < 1:
        raise ValueError(f"trials = {trials}: must be at least 1")
    out: list[Trajectory] = []
    pending = [EpisodeSpec(s.task, s.episode, 0, list(s.notes)) for s in specs]
    for t in range(trials):
        if not pending:
            break
        played = play(pending)
        if len(played) != len(pending):
            raise ValueError(f"trial {t}: play returned {len(played)} trajectories for "
                             f"{len(pending)} episodes")
        out += played
        if t + 1 == trials:
            break
        pending = [EpisodeSpec(s.task, s.episode, t + 1, [*s.notes, note(traj)])
                   for s, traj in zip(pending, played, strict=True) if not traj.won]
    return out


def success_at(trajs: list[Trajectory], trials: int) -> dict[str, float]:
    """success@k for k = 1..trials: the share of episodes won within their first k trials
    (keys "1".."k", nested so MLflow and DVC flatten them to success_at.k)."""
    episodes = {(t.task_id, t.episode) for t in trajs}
    if not episodes:
        return {}
    first_win: dict[tuple[str, int], int] = {}
    for t in trajs:
        key = (t.task_id, t.episode)
        if t.won:
            first_win[key] = min(first_win.get(key, t.trial), t.trial)
    return {str(k): round(sum(w < k for w in first_win.values()) / len(episodes), 4)
            for k in range(1, trials + 1)}
