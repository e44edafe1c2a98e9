"""Records that training can trust: a recorded rollout step rebuilds the exact prompt the
agent scored, and the packed training forward gives the scores (hence pi_old) it acted on."""

from __future__ import annotations

import pytest
import torch

from jerp.config import EnvParams, PolicyParams
from jerp.envs.alfworld import list_tasks
from jerp.envs.registry import env_factory
from jerp.policy.agent import Agent
from jerp.policy.packing import (
    PieceTokenizer,
    Target,
    pack_trajectory,
    step_prompt_ids,
    window_scores,
)
from jerp.policy.rollout import EpisodeSpec, play
from jerp.policy.scoring import candidate_probs
from jerp.records import RuleShown

# Real episodes, then every window re-scored with the real model: `make test`, not `make check`.
pytestmark = pytest.mark.slow

HISTORY = 2
STEPS = 7  # the window slides at steps 4 and 6


class RecordingAgent(Agent):
    """The real agent, remembering the prompt tokens of every decision it scored."""

    def __init__(self, *a, **k):
        super().__init__(*a, **k)
        self.scored: dict[int, list[list[int]]] = {}

    def scores(self, ctx, ob):
        self.scored.setdefault(ctx.seed, []).append(self.prompt_ids(ctx, ob.text))
        return super().scores(ctx, ob)


def _rollout(policy, make_env, tasks, rules=None, step_memory=None):
    agent = RecordingAgent(policy, PolicyParams(history=HISTORY, temperature=1.0), seed=3)
    retrieve = (lambda task, goal: rules) if rules else None
    trajs = play([EpisodeSpec(t, g) for g, t in enumerate(tasks)], make_env, agent, STEPS, 2,
                 {}, retrieve=retrieve, env_workers=0, step_memory=step_memory)
    return agent, trajs


def _check(policy, agent, trajs):
    pt = PieceTokenizer(policy.tokenizer)
    for seed, t in enumerate(trajs):
        assert t.steps and all(s.admissible and s.prob is not None for s in t.steps)
        scored = agent.scored[seed]
        assert len(scored) == len(t.steps)
        for k in range(len(t.steps)):
            assert step_prompt_ids(pt, t, k, HISTORY) == scored[k], f"step {k}"
        # The packed training forward reproduces the acting distribution.
        targets = {k: Target(advantage=1.0) for k in range(len(t.steps))}
        windows = pack_trajectory(pt, t, targets, HISTORY)
        assert len(windows) < len(t.steps)  # packed: fewer forwards than decisions
        with torch.no_grad():
            for w in windows:
                for d, s in zip(w.decisions, window_scores(policy.model, w, policy.dtype),
                                strict=True):
                    step = t.steps[d.step]
                    assert s.tolist() == pytest.approx(
                        _agent_scores(agent, t, d.step), abs=2e-3)
                    probs = candidate_probs(s.tolist(), d.lengths, "sum", step.temperature)
                    assert probs[d.chosen] == pytest.approx(step.prob, abs=2e-3)


def _agent_scores(agent, traj, k):
    """The agent's own (KV-cached) scores at step k, replayed from the record."""
    from jerp.envs.base import Observation
    from jerp.policy.packing import context_of

    ctx = context_of(traj)
    ctx.history = [(s.observation, s.action) for s in traj.steps[:k]]
    s = traj.steps[k]
    ctx.slot = s.slot
    got, _ = Agent.scores(agent, ctx, Observation(s.observation, s.admissible, traj.goal,
                                                   traj.task_type))
    return got


def test_alfworld_records_rebuild_the_scored_prompt(policy_fp32, alf_root):
    """Rules in the header and a memory slot that changes between steps (H2R's executor):
    training packs a window per (window start, slot) and still scores exactly what the
    agent acted with. (Both in one rollout: re-scoring one, window by window, takes ~40 s
    on one core.)"""
    from slot_fixtures import ScriptedStepMemory

    tasks = list_tasks(alf_root, "eval_out")[:2]
    rules = [RuleShown(id="R1", text="Find and take the target object first.")]
    agent, trajs = _rollout(policy_fp32, env_factory(EnvParams(max_steps=50), alf_root),
                            tasks, rules, step_memory=ScriptedStepMemory(per_subgoal=3))
    assert all(t.rules_shown == rules for t in trajs)
    assert trajs[0].initial_observation.startswith("You are in the middle of a room")
    assert len({s.slot for s in trajs[0].steps}) == 3
    assert all(s.slot.startswith(f"Current subgoal: {s.subgoal}\n") for s in trajs[0].steps)
    _check(policy_fp32, agent, trajs)


def test_webshop_records_rebuild_the_scored_prompt(policy_fp32, root):
    from jerp.envs.webshop import list_tasks as web_tasks
    from jerp.envs.webshop import resolve_data_dir

    data = resolve_data_dir(None, root)
    tasks = web_tasks(data, "eval_in", 0)[:1]  # one: its pages carry ~10x ALFWorld's candidates
    agent, trajs = _rollout(policy_fp32, env_factory(EnvParams(name="webshop"), data), tasks)
    _check(policy_fp32, agent, trajs)


def test_dagger_targets_pack_the_played_history_with_the_expert_label_as_class(
        policy_fp32, alf_root):
    """A DAgger item trains the expert's label at a state the policy reached: the window's
    tokens are those of the actions played (as when acting), only the class differs."""
    from jerp.policy.experience import dagger_items
    from jerp.replay import replay_reference

    task = next(t for t in list_tasks(alf_root, "eval_out")
                if t.task_type == "pick_heat_then_place_in_recep")
    env = env_factory(EnvParams(max_steps=50), alf_root)()
    try:
        first = env.reset(task).admissible
        played = [a for a in first if a.startswith("go to")][-3:] + ["look", "inventory"]
        t = replay_reference(env, task, played)
    finally:
        env.close()
    assert any(s.expert != s.action for s in t.steps if s.expert)
    (item,) = dagger_items([t])
    pt = PieceTokenizer(policy_fp32.tokenizer)
    as_played = pack_trajectory(pt, t, {k: Target(advantage=1.0) for k in item.targets},
                                HISTORY)
    dagger = pack_trajectory(pt, t, item.targets, HISTORY)
    assert [w.tokens for w in dagger] == [w.tokens for w in as_played]
    decisions = [d for w in dagger for d in w.decisions]
    assert len(decisions) == len(item.targets)
    for d in decisions:
        s = t.steps[d.step]
        assert s.admissible[d.chosen] == s.expert
