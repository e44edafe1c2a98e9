"""From trajectories to training targets: which decisions learn what.

* GRPO: rollouts grouped by game (the G episodes of one train task); each
  decision gets its episode's advantage (plus the GiGPO step term), its
  recorded pi_old and temperature. Zero-advantage decisions are left out when
  nothing else (entropy, KL) would use them, and their share is reported: users
  must see when RL has no signal.
* RFT / warm start: every step of a success (reference or own win) is a
  candidate cross-entropy target; with H2R's policy planner, so is each decision of
  the planner that writes the success's realised plan (memory/planner.py).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass

from jerp.envs.actions import milestones
from jerp.envs.registry import action_abstraction
from jerp.memory.planner import PlanChoice
from jerp.policy.grpo import discounted_returns, episode_advantages, step_advantages
from jerp.policy.packing import Target
from jerp.policy.train import TrainItem
from jerp.records import Trajectory


def milestone_progress(actions: list[str], reference: list[str], goal: str,
                       env: str = "alfworld") -> float:
    """Share of the reference's milestones (the env's action abstraction: ALFWorld take,
    heat, cool, clean, use, move; WebShop search, the goal's product, each option the goal
    asks for, buy) that the episode reached, each occurrence counted once."""
    ax = action_abstraction(env)
    want = Counter(a.key for a in milestones(ax.abstract(reference, goal)))
    if not want:
        return 0.0
    have = Counter(a.key for a in milestones(ax.abstract(actions, goal)))
    return sum(min(n, have[k]) for k, n in want.items()) / sum(want.values())


@dataclass
class GRPOData:
    items: list[TrainItem]
    groups: int
    zero_adv_groups: int  # groups whose episodes all got the same return
    steps: int
    zero_adv_steps: int
    identical_groups: int  # groups whose episodes took the same actions

    def summary(self) -> dict:
        return {
            "grpo_groups": self.groups,
            "zero_advantage_group_share": round(self.zero_adv_groups / self.groups, 4)
            if self.groups else None,
            "grpo_steps": self.steps,
            "zero_advantage_step_share": round(self.zero_adv_steps / self.steps, 4)
            if self.steps else None,
            "identical_group_share": round(self.identical_groups / self.groups, 4)
            if self.groups else None,
        }


def episode_return(t: Trajectory, progress_weight: float, reference: Trajectory | None) -> float:
    r = t.reward
    if progress_weight > 0 and reference is not None:
        r += progress_weight * milestone_progress(t.actions, reference.actions, t.goal, t.env)
    return r


def grpo_items(rollouts: list[Trajectory], references: dict[str, Trajectory], *,
               std_normalize: bool = False, step_weight: float = 0.0, gamma: float = 0.95,
               progress_weight: float = 0.0, keep_zero: bool = False) -> GRPOData:
    """Advantage-weighted decisions (pi_old as recorded; generate mode records none and
    the trainer takes the pre-update policy's)."""
    returns = [episode_return(t, progress_weight, references.get(t.task_id)) for t in rollouts]
    groups = [t.task_id for t in rollouts]
    adv = episode_advantages(returns, groups, std_normalize)
    step_adv: list[list[float]] = [[0.0] * len(t.steps) for t in rollouts]
    if step_weight > 0:
        anchors = [[f"{t.task_id}|{s.observation}|{'|'.join(s.admissible or [])}"
                    for s in t.steps] for t in rollouts]
        rets = []
        for t, ret in zip(rollouts, returns, strict=True):
            rewards = [0.0] * len(t.steps)
            if rewards:
                rewards[-1] = ret
            rets.append(discounted_returns(rewards, gamma))
        step_adv = step_advantages(anchors, rets)
    by_group: dict[str, list[int]] = defaultdict(list)
    for i, g in enumerate(groups):
        by_group[g].append(i)
    zero_groups = sum(len({returns[i] for i in ix}) == 1 for ix in by_group.values())
    identical = sum(len({tuple(rollouts[i].actions) for i in ix}) == 1 and len(ix) > 1
                    for ix in by_group.values())
    items, steps, zero_steps = [], 0, 0
    for i, t in enumerate(rollouts):
        targets = {}
        for k, s in enumerate(t.steps):
            if not s.admissible or not s.valid:
                continue
            steps += 1
            a = adv[i] + step_weight * step_adv[i][k]
            if abs(a) < 1e-8:
                zero_steps += 1
                if not keep_zero:
                    continue
            targets[k] = Target(advantage=a, old_prob=s.prob,
                                temperature=s.temperature or 1.0)
        if targets:
            items.append(TrainItem(t, targets))
    return GRPOData(items, len(by_group), zero_groups, steps, zero_steps, identical)


def success_items(successes: list[Trajectory], rules_for=None,
                  plan_for: Callable[[Trajectory], list[PlanChoice]] | None = None
                  ) -> list[TrainItem]:
    """Every step of each success as a candidate-CE target. `rules_for(traj)`: the working
    set to show (None: the one it was recorded with; references have none). `plan_for`
    (H2R's policy planner, `EpisodePlanner.realised_choices`): the planner decisions that
    write the success's realised plan, CE targets too."""
    items = []
    for t in successes:
        targets = {k: Target(ce=True) for k, s in enumerate(t.steps)
                   if s.admissible and s.action in s.admissible}
        plan = plan_for(t) if plan_for else []
        if targets or plan:
            items.append(TrainItem(t, targets, rules_for(t) if rules_for else None, plan))
    return items


def dagger_items(trajs: list[Trajectory]) -> list[TrainItem]:
    """DAgger: the states the policy reached that the expert labelled, with the expert's
    action as the candidate-CE class; the prompt's history shows what the policy did.

    Each state (game, observation, label) is learnt once, at its first visit: a policy in
    a loop revisits one state many times with one label, and those copies outweighed
    everything else in the update (quick, iteration 1: 424 states, 5 of 12 games won
    against 7 without DAgger)."""
    seen: set[tuple[str, str, str]] = set()
    items = []
    for t in trajs:
        targets = {}
        for k, s in enumerate(t.steps):
            if not (s.admissible and s.expert in s.admissible):
                continue
            state = (t.task_id, s.observation, s.expert)
            if state not in seen:
                seen.add(state)
                targets[k] = Target(ce=True, label=s.expert)
        if targets:
            items.append(TrainItem(t, targets))
    return items


def rollout_diversity(rollouts: list[Trajectory]) -> dict:
    """Can these rollouts teach? Share of groups whose episodes are identical, and the
    mean number of distinct actions per episode."""
    by: dict[str, list[Trajectory]] = defaultdict(list)
    for t in rollouts:
        by[t.task_id].append(t)
    multi = [g for g in by.values() if len(g) > 1]
    ident = sum(len({tuple(t.actions) for t in g}) == 1 for g in multi)
    return {
        "identical_group_share": round(ident / len(multi), 4) if multi else None,
        "distinct_actions_per_episode": round(
            sum(len(set(t.actions)) for t in rollouts) / len(rollouts), 2) if rollouts else 0,
        "distinct_returns_group_share": round(
            sum(len({t.reward for t in g}) > 1 for g in multi) / len(multi), 4)
        if multi else None,
    }
