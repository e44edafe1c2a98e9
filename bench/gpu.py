"""The local policy on a CUDA GPU (`policy.device`): does it score and train as on the CPU,
and how fast is it there?

    .venv/bin/python bench/gpu.py --dump bench/gpu_work.pkl [--games 12]  # here (ALFWorld)
    python bench/gpu.py --work bench/gpu_work.pkl [--runs 3]            # on the GPU machine

`--dump` replays the reference walkthroughs of train games and records, as plain data,
what the policy computes on them: each step's prompt tokens and its admissible commands'
tokens (rank mode, in episode order, so the prompt's KV cache is extended as when acting)
and the packed history windows a LoRA update trains on, plus SmolLM2's tokenizer and
config. Nothing else is needed after that: no engine, no game files.

The second half builds models with random weights from two configs, SmolLM2-135M's (the
default policy) and Qwen2.5-1.5B-Instruct's (the papers' policy): no weights can be
downloaded on such a machine, and the weights do not change the time. Each model is saved
and loaded back through `load_policy(..., device=...)`, the stages' path. Printed:
  parity   the same random SmolLM2 in fp32 on the CPU and on the GPU: every command's
           log-probability (max |difference|), the top-ranked command at each decision,
           and one LoRA update's loss and gradient norm
  rank     decisions/s acting as a stage does (KV cache per episode, one trie forward
           over each decision's commands), bf16, median of --runs
  train    LoRA forward-backward tokens/s over the packed windows, bf16, median of --runs
"""

from __future__ import annotations

import argparse
import json
import pickle
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

# Qwen2.5-1.5B-Instruct's config.json (the architecture; weights are random here).
QWEN25_15B = {
    "architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", "hidden_act": "silu",
    "hidden_size": 1536, "intermediate_size": 8960, "num_hidden_layers": 28,
    "num_attention_heads": 12, "num_key_value_heads": 2, "max_position_embeddings": 32768,
    "rms_norm_eps": 1e-6, "rope_theta": 1000000.0, "tie_word_embeddings": True,
    "vocab_size": 151936, "use_sliding_window": False, "bos_token_id": 151643,
    "eos_token_id": 151645,
}
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja",
                   "special_tokens_map.json")


def dump(out: Path, games: int) -> None:
    """Record the work (needs the project's environment and ALFWorld's games)."""
    import os

    from jerp.runtime import configure

    configure(ROOT)

    from transformers import AutoTokenizer

    from jerp.config import load_params
    from jerp.envs.alfworld import AlfWorldEnv, list_tasks, resolve_data_root
    from jerp.policy.agent import Agent
    from jerp.policy.experience import success_items
    from jerp.policy.model import Policy, resolve_base
    from jerp.policy.packing import context_of
    from jerp.policy.scoring import encode_candidates
    from jerp.policy.train import pack_items
    from jerp.replay import replay_reference

    p = load_params(ROOT / "params.yaml")
    base = Path(resolve_base(p.policy.model, ROOT / ".cache/models"))
    policy = Policy(model=None, tokenizer=AutoTokenizer.from_pretrained(base), version="base",
                    dtype=None)
    root = resolve_data_root(p.env.data_dir, os.environ, ROOT)
    env = AlfWorldEnv(root)
    tasks = list_tasks(root, "train")
    tasks = tasks[:: max(1, len(tasks) // games)][:games]  # spread over the task types
    refs = [replay_reference(env, t) for t in tasks]
    env.close()
    agent = Agent(policy, p.policy)
    episodes = []
    for traj in refs:
        ctx, steps = context_of(traj), []
        for k, s in enumerate(traj.steps):
            ctx.history = [(x.observation, x.action) for x in traj.steps[:k]]
            steps.append((agent.prompt_ids(ctx, s.observation),
                          encode_candidates(policy.tokenizer, s.admissible),
                          s.admissible.index(s.action) if s.action in s.admissible else -1))
        episodes.append(steps)
    windows = pack_items(policy, success_items(refs), p.policy.history)
    files = {f: (base / f).read_bytes() for f in TOKENIZER_FILES if (base / f).is_file()}
    work = dict(episodes=episodes, windows=windows, history=p.policy.history,
                config=json.loads((base / "config.json").read_text()), tokenizer=files,
                lora=p.lora.model_dump())
    out.write_bytes(pickle.dumps(work))
    print(f"{out}: {len(episodes)} walkthroughs, {sum(map(len, episodes))} decisions, "
          f"{len(windows)} training windows ({sum(len(w.tokens) for w in windows)} tokens)")


def build(config: dict, tokenizer: dict, folder: Path, device: str, dtype: str, lora,
          seed: int = 0):
    """A random-weight model of `config`, saved and loaded back with load_policy."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from jerp.policy.model import load_policy

    if not (folder / "config.json").is_file():
        torch.manual_seed(seed)
        cfg = AutoConfig.for_model(**config)
        with torch.device("cuda" if torch.cuda.is_available() else "cpu"):
            model = AutoModelForCausalLM.from_config(cfg, dtype=torch.bfloat16)
        model.save_pretrained(folder)
        for name, data in tokenizer.items():
            (folder / name).write_bytes(data)
        del model
    torch.manual_seed(seed)  # the same fresh LoRA weights on every device
    return load_policy(str(folder), folder, dtype, trainable=True, lora=lora, device=device)


def act(policy, episodes) -> tuple[list[list[float]], float]:
    """Every decision's command scores, as a stage computes them; and the seconds taken."""
    import torch

    from jerp.policy.kvcache import PrefixCache, score_trie

    out = []
    if policy.model.device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for steps in episodes:
        cache = PrefixCache()
        for prompt, cands, _ in steps:
            cache.extend(policy, prompt)
            out.append(score_trie(policy, cache, cands))
    return out, time.perf_counter() - t0


def train(policy, windows, history: int) -> tuple[float, float, float]:
    """(loss, gradient norm, seconds) of one forward-backward over every window."""
    from dataclasses import replace

    import torch

    from jerp.config import parse_params
    from jerp.policy.train import window_loss
    from jerp.stages.finetune import finetune_config

    cfg = replace(finetune_config(parse_params({}), seed=0), lr=1e-4, window=history,
                  score="sum")
    policy.model.zero_grad(set_to_none=True)
    if policy.model.device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    total = 0.0
    with torch.enable_grad():
        for w in windows:
            loss, _ = window_loss(policy, w, cfg)
            loss.backward()
            total += float(loss.detach())
    if policy.model.device.type == "cuda":
        torch.cuda.synchronize()
    sec = time.perf_counter() - t0
    grads = [p.grad.float().norm() ** 2 for p in policy.model.parameters() if p.grad is not None]
    return total, float(torch.stack(grads).sum().sqrt()), sec


def run(work_file: Path, runs: int, device: str, archs: list[str], rank_only: bool) -> None:
    import os

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    from jerp.config import LoraParams

    work = pickle.loads(work_file.read_bytes())
    episodes, windows = work["episodes"], work["windows"]
    lora = LoraParams(**work["lora"])
    decisions = sum(map(len, episodes))
    tokens = sum(len(w.tokens) for w in windows)
    name = torch.cuda.get_device_name() if torch.cuda.is_available() else "no GPU"
    print(f"torch {torch.__version__}, {name}; {len(episodes)} walkthroughs, {decisions} "
          f"decisions, {len(windows)} training windows ({tokens} tokens)")
    tmp = Path(tempfile.mkdtemp())
    small = tmp / "smollm2-135m-random"
    models = {"smollm2": ("SmolLM2-135M", work["config"], small),
              "qwen2.5-1.5b": ("Qwen2.5-1.5B", QWEN25_15B, tmp / "qwen2.5-1.5b-random")}
    if rank_only:  # one of several workers sharing the device: its decisions/s alone
        for label, config, folder in (models[a] for a in archs):
            policy = build(config, work["tokenizer"], folder, device, "auto", lora)
            act(policy, episodes[:1])
            rates = [decisions / act(policy, episodes)[1] for _ in range(runs)]
            print(f"{label} rank {statistics.median(rates):.2f} decisions/s")
        return

    # Parity: the same weights in fp32 on the CPU and on the device.
    cpu = build(work["config"], work["tokenizer"], small, "cpu", "float32", lora)
    gpu = build(work["config"], work["tokenizer"], small, device, "float32", lora)
    s_cpu, _ = act(cpu, episodes)
    s_gpu, _ = act(gpu, episodes)
    diff = max(abs(a - b) for x, y in zip(s_cpu, s_gpu, strict=True)
               for a, b in zip(x, y, strict=True))
    top = sum(max(range(len(x)), key=x.__getitem__) == max(range(len(y)), key=y.__getitem__)
              for x, y in zip(s_cpu, s_gpu, strict=True))
    l_cpu, g_cpu, _ = train(cpu, windows, work["history"])
    l_gpu, g_gpu, _ = train(gpu, windows, work["history"])
    print(f"parity (fp32, CPU vs {device}): command log-probs max |diff| {diff:.2e} over "
          f"{sum(map(len, s_cpu))} commands; top-1 agrees at {top}/{decisions} decisions; "
          f"LoRA loss {l_cpu:.4f} vs {l_gpu:.4f}, gradient norm {g_cpu:.4f} vs {g_gpu:.4f}")
    del cpu, gpu

    print(f"{'model (random weights)':26s} {'dtype':9s} {'decisions/s':>11s} "
          f"{'train tokens/s':>14s} {'memory GiB':>10s}")
    for label, config, folder in (models[a] for a in archs):
        policy = build(config, work["tokenizer"], folder, device, "auto", lora)
        act(policy, episodes[:1])  # warm-up
        train(policy, windows[:1], work["history"])
        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()
        rank = statistics.median(decisions / act(policy, episodes)[1] for _ in range(runs))
        fit = statistics.median(tokens / train(policy, windows, work["history"])[2]
                                for _ in range(runs))
        mem = torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else 0.0
        print(f"{label:26s} {str(policy.dtype).removeprefix('torch.'):9s} {rank:11.1f} "
              f"{fit:14.0f} {mem:10.1f}")
        del policy
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    print(f"(median of {runs}; rank: {decisions} decisions one after another, as one worker "
          "acts; train: forward-backward of every window, no optimizer step)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dump", type=Path, help="record the work here (needs ALFWorld)")
    ap.add_argument("--work", type=Path, help="time and check the recorded work")
    ap.add_argument("--games", type=int, default=12)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--archs", default="smollm2,qwen2.5-1.5b")
    ap.add_argument("--rank-only", action="store_true",
                    help="only time rank-mode decisions (one of N worker processes)")
    a = ap.parse_args()
    if a.dump:
        dump(a.dump, a.games)
    elif a.work:
        run(a.work, a.runs, a.device, a.archs.split(","), a.rank_only)
    else:
        ap.error("give --dump FILE (here) or --work FILE (on the GPU machine)")


if __name__ == "__main__":
    main()
