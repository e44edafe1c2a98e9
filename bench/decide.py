"""Benchmark: engine (E), model deciding (M), full rollouts (R) on ALFWorld valid_unseen.

    python bench/decide.py [--quick] [--games N] [--runs K] [--slot-every S] [--model-only]

1. E: replay valid_unseen walkthroughs; engine steps/s (resets timed apart).
2. M: the model deciding on the recorded walkthrough states, episode by episode
   (KV cache + trie), decisions/s; tokens encoded per decision for the naive
   method (full prompt + command per candidate), the old one (prompt
   re-encoded per step, shared by the candidates) and the product.
   M+slot: the same with a per-step memory slot (a subgoal and two execution
   memories) that changes every S steps (H2R's executor), so the prompt is
   re-forwarded from the slot on at each change. Each run times the two cases
   back to back (interleaved), so both see the same machine load: their ratio
   is the figure to read on a shared machine, not the absolute speeds.
3. R: rollouts (max 50 steps), steps/s, with env workers and without: greedy with
   the untrained policy by default; what users run is the warm-started policy's
   sampled rollouts (`--adapter data/iter_0/adapter --temperature 1`), whose
   observations are longer and candidate lists larger (it goes places).
Also: whether padding several envs' tries into one batched forward pays.
Prints medians over runs. Not a test: timings depend on the machine's load.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch
from transformers import DynamicCache

from jerp.config import EnvParams, PolicyParams
from jerp.envs.alfworld import AlfWorldEnv, list_tasks, resolve_data_root
from jerp.envs.base import Observation
from jerp.envs.registry import env_factory
from jerp.memory.base import render_slot
from jerp.policy.agent import Agent
from jerp.policy.kvcache import PrefixCache, build_trie, score_trie, tree_mask
from jerp.policy.model import cpu_has_bf16, load_policy, pick_dtype, set_threads
from jerp.policy.prompts import EpisodeContext
from jerp.policy.rollout import EpisodeSpec, play
from jerp.policy.scoring import encode_candidates, score_shared_prefix
from jerp.replay import replay_reference
from jerp.runtime import configure

ROOT = Path(__file__).resolve().parents[1]
MAX_STEPS = 50


def say(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def med(xs: list[float]) -> float:
    return statistics.median(xs)


# What an execution memory looks like (H2R: per-subgoal insights), ~25 tokens each.
MEMORIES = [
    "Go to the receptacle where the object is most likely kept before trying to take it.",
    "Open a closed receptacle first; its contents are only listed once it is open.",
    "After taking the object, go straight to the appliance the task names.",
    "Use the exact object and receptacle numbers that the observation lists.",
]


def bench_slot(k: int) -> str:
    """The memory slot of the k-th subgoal of an episode: a subgoal and two memories."""
    return render_slot(f"subgoal {k + 1} of the plan for this task",
                       [MEMORIES[k % len(MEMORIES)], MEMORIES[(k + 1) % len(MEMORIES)]])


def model_decisions(agent: Agent, refs, slot_every: int = 0) -> tuple[float, dict]:
    """Decide along each walkthrough with the episode cache; decisions/s and token counts.
    `slot_every` > 0: a memory slot that changes every that many steps."""
    tok = agent.policy.tokenizer
    naive = old = product = n = 0
    t0 = time.perf_counter()
    for ref in refs:
        ctx = EpisodeContext(env=ref.env, goal=ref.goal)
        for t, s in enumerate(ref.steps):
            if slot_every:
                ctx.slot = bench_slot(t // slot_every)
            ob = Observation(s.observation, s.admissible, ref.goal, ref.task_type)
            before = ctx.state.cache.encoded if ctx.state else 0
            agent.scores(ctx, ob)
            product += ctx.state.cache.encoded - before
            p = len(agent.prompt_ids(ctx, ob.text))
            cands = encode_candidates(tok, s.admissible)
            naive += sum(p + len(c) for c in cands)
            old += p + sum(len(c) for c in cands)
            n += 1
            ctx.history.append((s.observation, s.action))
    secs = time.perf_counter() - t0
    return n / secs, dict(decisions=n, naive=naive / n, old=old / n, product=product / n)


def old_decisions(agent: Agent, refs, limit: int) -> float:
    """The previous method: whole prompt re-encoded each step, cache repeated per command."""
    n, t0 = 0, time.perf_counter()
    for ref in refs:
        ctx = EpisodeContext(env=ref.env, goal=ref.goal)
        for s in ref.steps:
            ids = agent.prompt_ids(ctx, s.observation)
            score_shared_prefix(agent.policy, ids, encode_candidates(agent.policy.tokenizer,
                                                                     s.admissible))
            n += 1
            ctx.history.append((s.observation, s.action))
            if n >= limit:
                return n / (time.perf_counter() - t0)
    return n / (time.perf_counter() - t0)


@torch.no_grad()
def score_padded(policy, prefixes: list[PrefixCache], cand_lists) -> list[list[float]]:
    """Experiment: several envs' tries in one forward, prefixes copied into a padded cache."""
    model = policy.model
    dtype = next(model.parameters()).dtype
    tries = [build_trie(c) for c in cand_lists]
    b = len(prefixes)
    pmax = max(len(p.ids) for p in prefixes)
    nmax = max(len(t.tokens) for t in tries)
    cache = DynamicCache(config=model.config)
    for li in range(model.config.num_hidden_layers):
        ks, vs = [], []
        for p in prefixes:
            k, v = p.cache.layers[li].keys, p.cache.layers[li].values
            pad = pmax - k.shape[-2]
            ks.append(torch.nn.functional.pad(k, (0, 0, 0, pad)))
            vs.append(torch.nn.functional.pad(v, (0, 0, 0, pad)))
        cache.update(torch.cat(ks), torch.cat(vs), li)
    ids = torch.zeros((b, nmax), dtype=torch.long)
    pos = torch.zeros((b, nmax), dtype=torch.long)
    mask = torch.full((b, 1, nmax, pmax + nmax), torch.finfo(dtype).min, dtype=dtype)
    for i, (p, t) in enumerate(zip(prefixes, tries, strict=True)):
        n, plen = len(t.tokens), len(p.ids)
        ids[i, :n] = torch.tensor(t.tokens)
        pos[i, :n] = torch.tensor([plen + d for d in t.depths])
        m = tree_mask(t, plen, dtype)[0, 0]
        mask[i, 0, :n, :plen] = m[:, :plen]
        mask[i, 0, :n, pmax : pmax + n] = m[:, plen:]
        mask[i, 0, n:, 0] = 0  # padded rows attend somewhere (no NaN)
    out = model(input_ids=ids, attention_mask=mask, position_ids=pos, cache=cache)
    lp = torch.log_softmax(out.logits.float(), dim=-1)
    res = []
    for i, (p, t, cands) in enumerate(zip(prefixes, tries, cand_lists, strict=True)):
        res.append([float(p.next_logprobs[c[0]]) + sum(float(lp[i, node, c[j + 1]])
                    for j, node in enumerate(path)) for c, path in zip(cands, t.paths,
                                                                         strict=True)])
    return res


def batching(agent: Agent, refs, groups: int) -> tuple[float, float, float]:
    """Seconds per decision: per-env tries vs one padded forward over 4 envs' tries."""
    tok = agent.policy.tokenizer
    states = []
    for ref in refs:
        for k in range(1, len(ref.steps), 2):  # a few states along each walkthrough
            ctx = EpisodeContext(env=ref.env, goal=ref.goal)
            ctx.history += [(s.observation, s.action) for s in ref.steps[:k]]
            s = ref.steps[k]
            pc = PrefixCache()
            pc.extend(agent.policy, agent.prompt_ids(ctx, s.observation))
            states.append((pc, encode_candidates(tok, s.admissible)))
    sets = [states[i : i + 4] for i in range(0, len(states) - 3, 4)][:groups]
    one, pad, diff = [], [], 0.0
    for group in sets:
        t0 = time.perf_counter()
        a = [score_trie(agent.policy, pc, c) for pc, c in group]
        one.append((time.perf_counter() - t0) / len(group))
        t0 = time.perf_counter()
        b = score_padded(agent.policy, [pc for pc, _ in group], [c for _, c in group])
        pad.append((time.perf_counter() - t0) / len(group))
        diff = max(diff, max(abs(x - y) for u, v in zip(a, b, strict=True)
                             for x, y in zip(u, v, strict=True)))
    return med(one), med(pad), diff


def rollouts(agent: Agent, make_env, tasks, workers: int, batch: int) -> tuple[float, float, int]:
    t0 = time.perf_counter()
    trajs = play([EpisodeSpec(t) for t in tasks], make_env, agent, MAX_STEPS, batch, {},
                 desc=f"rollouts w={workers}", env_workers=workers)
    secs = time.perf_counter() - t0
    steps = sum(t.n_steps for t in trajs)
    return steps / secs, secs, steps


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="few games, one run")
    ap.add_argument("--games", type=int, default=None, help="walkthroughs for E and M")
    ap.add_argument("--rollout-games", type=int, default=None)
    ap.add_argument("--runs", type=int, default=None)
    ap.add_argument("--history", type=int, default=3)
    ap.add_argument("--batch-envs", type=int, default=4)
    ap.add_argument("--adapter", default=None, help="a pipeline adapter folder")
    ap.add_argument("--temperature", type=float, default=0.0, help="rollout sampling T")
    ap.add_argument("--slot-every", type=int, default=5,
                    help="M+slot: the memory slot changes every this many steps")
    ap.add_argument("--model-only", action="store_true",
                    help="E and M (with and without slot) only: no old method, batching, "
                         "rollouts")
    a = ap.parse_args()
    games = a.games or (4 if a.quick else 12)
    rgames = a.rollout_games or (4 if a.quick else 8)
    runs = a.runs or (1 if a.quick else 3)

    configure(ROOT)
    threads = set_threads(0)
    dtype = pick_dtype("auto")
    root = resolve_data_root(None, os.environ, ROOT)
    tasks = list_tasks(root, "eval_out")
    # The same games every run: every 11th game of the split (spread over task types).
    walk_tasks = tasks[::11][:games]
    roll_tasks = tasks[5::11][:rgames]
    policy = load_policy("smollm2", ROOT / ".cache" / "models", dtype="auto", adapter=a.adapter)
    params = PolicyParams(history=a.history, batch_envs=a.batch_envs)
    roll_params = params.model_copy(update={"temperature": a.temperature})
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cpus, "
          f"{threads} torch threads, bf16 native: {cpu_has_bf16()}, dtype {dtype}")

    env = AlfWorldEnv(root, max_steps=MAX_STEPS)
    say("E: replaying walkthroughs")
    e_rates, resets, refs = [], [], []
    for _ in range(runs):
        t_steps = t_reset = 0.0
        n = 0
        refs = []
        for t in walk_tasks:
            r0 = time.perf_counter()
            env.reset(t)
            r1 = time.perf_counter()
            ref = replay_reference(env, t)
            r2 = time.perf_counter()
            t_reset += r1 - r0
            t_steps += max(r2 - r1 - (r1 - r0), 1e-6)  # replay = reset + steps
            n += ref.n_steps
            refs.append(ref)
        e_rates.append(n / t_steps)
        resets.append(t_reset / len(walk_tasks))
    env.close()
    E, reset_s = med(e_rates), med(resets)
    e_eff = 1 / (1 / E + reset_s / MAX_STEPS)  # resets amortised over 50-step episodes

    say(f"E = {E:.1f} steps/s, reset {reset_s:.2f} s; M: deciding on recorded states, "
        f"without and with a memory slot, interleaved")
    m_rates, s_rates, info, sinfo = [], [], {}, {}
    for r in range(runs):  # alternate which case goes first, so neither always runs warmer
        for every in ((0, a.slot_every) if r % 2 == 0 else (a.slot_every, 0)):
            rate, got = model_decisions(Agent(policy, params), refs, every)
            (s_rates if every else m_rates).append(rate)
            sinfo, info = (got, info) if every else (sinfo, got)
    M, MS = med(m_rates), med(s_rates)
    ratios = [b / a_ for a_, b in zip(m_rates, s_rates, strict=True)]
    slot_rows = [
        ("M decisions/s (episode cache + trie)", f"{M:.2f}"),
        (f"M+slot decisions/s (slot changes every {a.slot_every} steps)", f"{MS:.2f}"),
        ("M+slot / M, median of the interleaved runs' ratios",
         f"{med(ratios):.3f} (runs: {', '.join(f'{r:.3f}' for r in ratios)})"),
        ("tokens/decision product: no slot / slot", f"{info['product']:.0f} / "
         f"{sinfo['product']:.0f}"),
    ]
    if a.model_only:
        print(f"\nmedians of {runs} interleaved run(s); {len(walk_tasks)} walkthroughs "
              f"({info['decisions']} states), history {a.history}, policy {policy.version}")
        print("| what | figure |\n|---|---|")
        for k, v in slot_rows:
            print(f"| {k} | {v} |")
        return
    say(f"M = {M:.2f} decisions/s {info}; M+slot = {MS:.2f} {sinfo}; old method")
    old_rate = old_decisions(Agent(policy, params), refs, limit=10 if a.quick else 30)

    say(f"old = {old_rate:.2f} decisions/s; cross-env batching")
    one, pad, diff = batching(Agent(policy, params), refs, groups=1 if a.quick else 3)

    say(f"per env {one:.3f} s, padded {pad:.3f} s per decision; rollouts")
    make_env = env_factory(EnvParams(max_steps=MAX_STEPS), root)
    r_by: dict[int, list[float]] = {}
    secs_by: dict[int, list[float]] = {}
    default_w = PolicyParams().env_workers
    for w in ([default_w, a.batch_envs] if not a.quick else [default_w]):
        for _ in range(max(1, runs - 1)):
            rate, secs, steps = rollouts(Agent(policy, roll_params), make_env, roll_tasks, w,
                                         a.batch_envs)
            say(f"R = {rate:.2f} steps/s with {w} workers ({steps} steps, {secs:.0f} s)")
            r_by.setdefault(w, []).append(rate)
            secs_by.setdefault(w, []).append(secs)
    R = med(r_by[default_w])
    ideal = 1 / (1 / e_eff + 1 / M)
    per_game = med(secs_by[default_w]) / len(roll_tasks)

    rows = [
        ("E engine steps/s (no resets)", f"{E:.1f}"),
        ("engine reset, s", f"{reset_s:.2f}"),
        ("E' engine steps/s, resets over 50-step episodes", f"{e_eff:.1f}"),
        *slot_rows[:3],
        ("decisions/s, old (prompt re-encoded per step)", f"{old_rate:.2f}"),
        (f"R rollout steps/s ({a.batch_envs} envs, {default_w} workers)", f"{R:.2f}"),
    ]
    for w, rs in r_by.items():
        if w != default_w:
            rows.append((f"R rollout steps/s ({a.batch_envs} envs, {w} workers)", f"{med(rs):.2f}"))
    rows += [
        ("R / (1/(1/E' + 1/M))", f"{R / ideal:.2f}"),
        ("tokens/decision naive (prompt per candidate)", f"{info['naive']:.0f}"),
        ("tokens/decision old (prompt once per step)", f"{info['old']:.0f}"),
        ("tokens/decision product", f"{info['product']:.0f}"),
        slot_rows[3],
        ("ratio naive / product", f"{info['naive'] / info['product']:.1f}x"),
        ("trie scoring s/decision: per env / 4 envs padded", f"{one:.3f} / {pad:.3f} "
         f"(max diff {diff:.2g})"),
        ("134 valid_unseen games x 50 steps, wall (extrapolated from "
         f"{len(roll_tasks)} games)", f"{134 * per_game / 60:.1f} min"),
    ]
    print(f"\nmedians of {runs} run(s); {len(walk_tasks)} walkthroughs "
          f"({info['decisions']} states), {len(roll_tasks)} rollout games, history {a.history}, "
          f"policy {policy.version}, rollout temperature {a.temperature}")
    print("| what | figure |\n|---|---|")
    for k, v in rows:
        print(f"| {k} | {v} |")


if __name__ == "__main__":
    main()
