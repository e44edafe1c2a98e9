"""The LoRA update loop shared by the warm start and finetune@i (rank mode).

Data arrive as trajectories with per-step `Target`s (packing.py); each history
window of an episode is one packed forward that scores every target decision's
candidates; H2R's planner decisions (`TrainItem.plan`) are short windows of their own,
the planner's prompt and its options (`packing.pack_choice`). The loss of a batch is
the mean over its decisions of
  rft_weight * candidate CE  (decisions with `ce`)
+ grpo_weight * clipped GRPO term (decisions with an advantage; grpo.py).
Stops after `epochs` (the budget: the same work on any machine and under any load) or,
as a safety net, at the wall-clock cap, between batches. With
`policy.score: calibrated` each window also scores its distinct commands after
the empty context, with gradients (calibration.py says why not detached).

Generate mode has no candidate set: a decision is the prompt (with its list of
valid commands) followed by the command's tokens; the same advantages weight
the command's summed log-probability, with the ratio taken against the policy
before the update (computed in a first no-grad pass), and CE is its NLL.

The KL term (finetune.kl) is to a reference policy: by default the weights the update
starts from (adapter i-1, which played the rollouts), else the LoRA weights the caller
passes (iteration 0's: finetune.kl_reference). Never the adapter-free base, which after
a warm start is the untrained model.

pi_old, the ratio's denominator, is by default recomputed by this scorer in one no-grad
pass over the windows the update will visit, before its first step (`finetune.old_probs:
recompute`, as RL trainers that act with another engine do): bf16 rollouts (KV cache,
trie) and bf16 training (packed tree attention) round differently, and measured on the
quick pipeline's rollouts 2.4% of decisions differed by more than the clip range before
any step. The recorded-vs-recomputed ratios are kept as a diagnostic
(`rollout_ratio_*`); the first batch's ratios (`ratio_first_*`) are then 1 up to
rounding, so any clipping is the update moving. With `rollout` the recorded pi(a|s) is
used as it is.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace

import torch
from tqdm import tqdm

from jerp.memory.planner import PlanChoice
from jerp.policy.calibration import decision_offsets, premise_ids
from jerp.policy.grpo import candidate_logits, clipped_surrogate, grpo_decision_loss
from jerp.policy.model import Policy
from jerp.policy.packing import (
    PackedWindow,
    PieceTokenizer,
    Target,
    context_of,
    pack_choice,
    pack_trajectory,
    target_class,
    window_scores,
)
from jerp.policy.prompts import action_piece, build_prompt
from jerp.policy.rft import candidate_ce
from jerp.policy.scoring import encode_candidates
from jerp.records import Trajectory


@dataclass
class TrainItem:
    """One trajectory to learn from, the prompt's rules, and its target steps; H2R's
    planner decisions that write its realised plan (candidate CE, memory/planner.py)."""

    traj: Trajectory
    targets: dict[int, Target]
    rules: list[str] | None = None  # None: the working set it was recorded with
    plan: list[PlanChoice] = field(default_factory=list)


@dataclass(frozen=True, kw_only=True)
class TrainConfig:
    """One update's settings. No defaults: every value comes from params (the schema in
    jerp.config is their one source; adapters.train_config fills this)."""

    lr: float
    epochs: float
    steps: int | None  # optimizer steps, overriding epochs (finetune.optimizer_steps)
    batch_sequences: int
    max_minutes: float
    window: int  # policy.history: how prompts were windowed
    score: str  # policy.score ("calibrated": offsets recomputed per window, calibration.py)
    mode: str  # policy.mode
    clip: float
    entropy: float
    kl: float
    rft_weight: float
    grpo_weight: float
    seed: int
    grad_clip: float
    old_probs: str  # "recompute" (pi_old from this scorer before any step) | "rollout"


@dataclass
class TrainStats:
    decisions: int = 0
    windows: int = 0
    optimizer_steps: int = 0
    tokens: int = 0
    seconds: float = 0.0
    epochs_done: float = 0.0
    stopped_by_time: bool = False
    ce_first: float | None = None  # mean candidate CE of the first / last batch
    ce_last: float | None = None
    pg_first: float | None = None
    pg_last: float | None = None
    mean_ratio: float | None = None
    ratio_first_mean: float | None = None  # the first batch's ratios (before any step)
    ratio_first_max_dev: float | None = None  # max |r - 1| over them
    # recomputed / recorded pi_old(a|s), same weights (finetune.old_probs: recompute)
    rollout_ratio_max_dev: float | None = None  # max |r - 1|
    rollout_ratio_out_of_clip: float | None = None  # share with |r - 1| > clip
    clip_fraction: float | None = None
    entropy: float | None = None
    kl: float | None = None
    history: list[dict] = field(default_factory=list)  # per optimizer step

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.seconds if self.seconds else 0.0

    def summary(self) -> dict:
        d = {k: v for k, v in self.__dict__.items() if k != "history"}
        d["tokens_per_s"] = round(self.tokens_per_s, 1)
        return {k: round(v, 5) if isinstance(v, float) else v for k, v in d.items()}


def pack_items(policy: Policy, items: list[TrainItem], window: int) -> list[PackedWindow]:
    """Each item's packed windows, then a window per planner decision."""
    pt = PieceTokenizer(policy.tokenizer)
    out = []
    for i, it in enumerate(items):
        out += pack_trajectory(pt, it.traj, it.targets, window, it.rules, traj_index=i)
        out += [pack_choice(pt, c.prompt, list(c.offered), c.chosen, it.traj.env, i, k)
                for k, c in enumerate(it.plan)]
    return out


@dataclass
class GeneratedStep:
    """Generate mode: one decision as prompt tokens + the command's tokens."""

    prompt: list[int]
    action: list[int]
    target: Target
    old_logp: float | None = None

    @property
    def tokens(self) -> list[int]:
        return self.prompt + self.action


Weights = dict[str, torch.Tensor]  # trainable (LoRA) tensors by parameter name


def trainable_weights(model) -> Weights:
    """A copy of the model's trainable tensors: the reference a KL term is taken to."""
    return {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}


@contextmanager
def swapped_weights(model, weights: Weights) -> Iterator[None]:
    """The model with `weights` in place of its tensors of those names (the tensors are
    swapped, not copied, and swapped back: the optimizer's parameters are untouched)."""
    params = dict(model.named_parameters())
    missing = sorted(set(weights) - set(params))
    if missing:
        raise ValueError(f"reference weights name parameters the model lacks: {missing[:3]}")
    saved = {}
    try:
        for name, w in weights.items():
            saved[name], params[name].data = params[name].data, w
        yield
    finally:
        for name, d in saved.items():
            params[name].data = d


def generated_steps(policy: Policy, items: list[TrainItem], window: int) -> list[GeneratedStep]:
    tok = policy.tokenizer
    out = []
    for it in items:
        ctx = context_of(it.traj, it.rules)
        for k, target in sorted(it.targets.items()):
            s = it.traj.steps[k]
            ctx.history = [(x.observation, x.action) for x in it.traj.steps[:k]]
            text = build_prompt(ctx, s.observation, window, s.admissible)
            out.append(GeneratedStep(tok(text, add_special_tokens=False)["input_ids"],
                                     tok(action_piece(target_class(s, target)),
                                         add_special_tokens=False)["input_ids"], target))
        for c in it.plan:  # the planner scores its options in generate mode too
            out.append(GeneratedStep(tok(c.prompt, add_special_tokens=False)["input_ids"],
                                     encode_candidates(tok, [c.offered[c.chosen]])[0],
                                     Target(ce=True)))
    return out


def action_logprob(policy: Policy, g: GeneratedStep) -> torch.Tensor:
    """Summed log p(command tokens | prompt) (differentiable)."""
    dev = policy.model.device
    ids = torch.tensor([g.tokens], device=dev)
    n = len(g.prompt)
    keep = torch.arange(n - 1, n - 1 + len(g.action), device=dev)
    logits = policy.model(input_ids=ids, use_cache=False, logits_to_keep=keep).logits[0]
    lp = torch.log_softmax(logits.float(), dim=-1)
    return lp[torch.arange(len(g.action), device=dev), torch.tensor(g.action, device=dev)].sum()


def generated_loss(policy: Policy, g: GeneratedStep, cfg: TrainConfig) -> tuple[torch.Tensor,
                                                                                 dict]:
    lp = action_logprob(policy, g)
    total = torch.zeros((), device=lp.device)
    parts = dict(ce_sum=0.0, n_ce=0, pg_sum=0.0, n_pg=0, ratios=[], clipped=[], entropies=[],
                 kls=[])
    if g.target.ce:
        total = total - cfg.rft_weight * lp
        parts.update(ce_sum=float(-lp.detach()), n_ce=1)
    if g.target.advantage is not None:
        loss, ratio = clipped_surrogate(lp, g.old_logp, g.target.advantage, cfg.clip)
        total = total + cfg.grpo_weight * loss
        r = float(ratio.detach())
        parts.update(pg_sum=float(loss.detach()), n_pg=1, ratios=[r],
                     clipped=[abs(r - 1) > cfg.clip])
    return total, parts


def window_loss(policy: Policy, w: PackedWindow | GeneratedStep, cfg: TrainConfig,
                reference: Weights | None = None) -> tuple[torch.Tensor, dict]:
    """Summed loss of a window's decisions and its parts (for logging). `reference`: the
    KL term's weights, required when cfg.kl > 0 (rank mode)."""
    if isinstance(w, GeneratedStep):
        return generated_loss(policy, w, cfg)
    model = policy.model
    scores = window_scores(model, w, policy.dtype)
    need_ref = cfg.kl > 0 and any(d.target.advantage is not None for d in w.decisions)
    if need_ref and reference is None:
        raise ValueError("finetune.kl > 0 needs the reference weights (train passes them)")
    ref = None
    if need_ref:
        with torch.no_grad(), swapped_weights(model, reference):
            ref = window_scores(model, w, policy.dtype)
    off = ref_off = [None] * len(w.decisions)
    if cfg.score == "calibrated":
        premise = premise_ids(policy.tokenizer, w.env)
        off = decision_offsets(model, policy.dtype, premise, w.decisions)
        if need_ref:
            with torch.no_grad(), swapped_weights(model, reference):
                ref_off = decision_offsets(model, policy.dtype, premise, w.decisions)
    total = torch.zeros((), device=model.device)
    ce_sum = pg_sum = 0.0
    n_ce = n_pg = 0
    ratios, probs, clipped, ents, kls = [], [], [], [], []
    for j, (d, s) in enumerate(zip(w.decisions, scores, strict=True)):
        t = d.target
        if t.ce:
            ce = candidate_ce(candidate_logits(s, d.lengths, cfg.score, 1.0, off[j]), d.chosen)
            total = total + cfg.rft_weight * ce
            ce_sum += float(ce.detach())
            n_ce += 1
        if t.advantage is not None:
            logits = candidate_logits(s, d.lengths, cfg.score, t.temperature, off[j])
            ref_logits = (candidate_logits(ref[j], d.lengths, cfg.score, t.temperature,
                                           ref_off[j])
                          if ref is not None else None)
            prob = float(torch.softmax(logits.detach(), -1)[d.chosen])
            old = t.old_prob if t.old_prob is not None else prob
            g = grpo_decision_loss(logits, d.chosen, t.advantage, old, cfg.clip, cfg.entropy,
                                   ref_logits, cfg.kl)
            total = total + cfg.grpo_weight * g.loss
            pg_sum += float(g.loss.detach())
            n_pg += 1
            ratios.append(g.ratio)
            probs.append(prob)
            clipped.append(g.clipped)
            ents.append(g.entropy)
            kls.append(g.kl)
    parts = dict(ce_sum=ce_sum, n_ce=n_ce, pg_sum=pg_sum, n_pg=n_pg, ratios=ratios,
                 probs=probs, clipped=clipped, entropies=ents, kls=kls)
    return total, parts


def train(policy: Policy, items: list[TrainItem], cfg: TrainConfig,
          desc: str = "train", reference: Weights | None = None) -> TrainStats:
    """Run the update in place on `policy.model` (a trainable peft model). `reference`:
    the KL term's LoRA weights; None = the weights the update starts from."""
    if cfg.mode == "generate":
        windows = generated_steps(policy, items, cfg.window)
        with torch.no_grad():
            for g in windows:
                if g.target.advantage is not None:
                    g.old_logp = float(action_logprob(policy, g))
        n_decisions = len(windows)
    else:
        windows = pack_items(policy, items, cfg.window)
        n_decisions = sum(len(w.decisions) for w in windows)
    stats = TrainStats(windows=len(windows), decisions=n_decisions)
    if not windows:
        return stats
    params = [p for p in policy.model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("the policy has no trainable parameters (load it with trainable=True)")
    if cfg.kl > 0 and reference is None:
        reference = trainable_weights(policy.model)
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=0.0)
    per_epoch = (len(windows) + cfg.batch_sequences - 1) // cfg.batch_sequences
    total_batches = cfg.steps or max(1, round(cfg.epochs * per_epoch))
    schedule = batch_schedule(len(windows), cfg.batch_sequences, total_batches, cfg.seed)
    t0 = time.perf_counter()
    if cfg.old_probs == "recompute" and cfg.mode != "generate":
        visited = sorted({i for batch in schedule for i in batch})
        rr = recompute_old_probs(policy, [windows[i] for i in visited], cfg)
        if rr:
            stats.rollout_ratio_max_dev = max(abs(r - 1) for r in rr)
            stats.rollout_ratio_out_of_clip = _mean([abs(r - 1) > cfg.clip for r in rr])
    all_ratios, all_clipped, all_ents, all_kls = [], [], [], []
    bar = tqdm(total=total_batches, desc=desc, unit="batch", dynamic_ncols=True)
    try:
        with torch.enable_grad():
            for batch in schedule:
                if time.perf_counter() - t0 > cfg.max_minutes * 60:
                    stats.stopped_by_time = True
                    tqdm.write(f"{desc}: stopped at the {cfg.max_minutes:g}-minute cap after "
                               f"{stats.optimizer_steps} of {total_batches} batches: what it "
                               "learned now depends on this machine's speed and load")
                    break
                n_dec = sum(_decisions(windows[i]) for i in batch)
                opt.zero_grad(set_to_none=True)
                agg = dict(ce_sum=0.0, n_ce=0, pg_sum=0.0, n_pg=0)
                step_ratios, step_kls = [], []
                for i in batch:
                    loss, parts = window_loss(policy, windows[i], cfg, reference)
                    if loss.requires_grad:
                        (loss / n_dec).backward()
                    for k in agg:
                        agg[k] += parts[k]
                    all_ratios += parts["ratios"]
                    all_clipped += parts["clipped"]
                    all_ents += parts["entropies"]
                    all_kls += parts["kls"]
                    step_ratios += parts["ratios"]
                    step_kls += parts["kls"]
                    stats.tokens += len(windows[i].tokens)
                torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
                opt.step()
                stats.optimizer_steps += 1
                ce = agg["ce_sum"] / agg["n_ce"] if agg["n_ce"] else None
                pg = agg["pg_sum"] / agg["n_pg"] if agg["n_pg"] else None
                kl = _mean(step_kls) if cfg.kl > 0 else None
                if stats.optimizer_steps == 1:
                    stats.ce_first, stats.pg_first = ce, pg
                    if step_ratios:
                        stats.ratio_first_mean = _mean(step_ratios)
                        stats.ratio_first_max_dev = max(abs(r - 1) for r in step_ratios)
                stats.ce_last, stats.pg_last = ce, pg
                stats.history.append({"step": stats.optimizer_steps, "ce": ce, "pg": pg,
                                      **({"kl": kl} if kl is not None else {})})
                bar.update(1)
                bar.set_postfix(ce=f"{ce:.3f}" if ce is not None else "-",
                                pg=f"{pg:.3f}" if pg is not None else "-")
    finally:
        bar.close()
    stats.seconds = time.perf_counter() - t0
    stats.epochs_done = stats.optimizer_steps / per_epoch
    stats.mean_ratio = _mean(all_ratios)
    stats.clip_fraction = _mean(all_clipped)
    stats.entropy = _mean(all_ents)
    stats.kl = _mean(all_kls)
    return stats


def batch_schedule(n: int, batch: int, total: int, seed: int) -> list[list[int]]:
    """The update's batches of window indices: shuffled passes over the n windows, cut
    into `total` batches of `batch` (a pass's tail joins the next pass's head). A batch
    takes at most one new pass: with fewer windows than `batch` it holds each window
    exactly once, never the same windows over and over."""
    rng = random.Random(seed)
    order: list[int] = []
    out = []
    for _ in range(total):
        if len(order) < batch:
            fresh = list(range(n))
            rng.shuffle(fresh)
            order += fresh
        out.append(order[:batch])
        order = order[batch:]
    return out


@torch.no_grad()
def recompute_old_probs(policy: Policy, windows: list[PackedWindow],
                        cfg: TrainConfig) -> list[float]:
    """Set every GRPO decision's pi_old to this scorer's pi(a|s) at the current weights;
    returns recomputed / recorded for the decisions that had a recorded one."""
    quiet = replace(cfg, kl=0.0, entropy=0.0)  # no reference forward, no extra terms
    out = []
    for w in windows:
        grpo = [d for d in w.decisions if d.target.advantage is not None]
        if not grpo:
            continue
        _, parts = window_loss(policy, w, quiet)
        for d, prob in zip(grpo, parts["probs"], strict=True):
            if d.target.old_prob is not None:
                out.append(prob / max(d.target.old_prob, 1e-12))
            d.target = replace(d.target, old_prob=prob)
    return out


def _mean(xs: list) -> float | None:
    return sum(xs) / len(xs) if xs else None


def _decisions(w: PackedWindow | GeneratedStep) -> int:
    return 1 if isinstance(w, GeneratedStep) else len(w.decisions)
