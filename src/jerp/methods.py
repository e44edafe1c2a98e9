"""Which parts of the loop each method uses: the only place that knows.

Stages a method does not use pass their input through, so every method runs
on the same DAG and `dvc exp run -S run.method=...` compares them on the same tasks.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class MethodParts:
    rules: bool  # reflect + revise the pool, show the working set in prompts
    finetune: bool  # finetune@i updates the LoRA policy from rollouts i
    hierarchy: bool = False  # H2R: planning + execution memories (memory/hierarchy.py),
    # hindsight reflection, and the executor's per-step subgoal slot
    trials: bool = False  # Reflexion: evaluate retries a failed task with notes on its failures
    success_insights: bool = False  # ExpeL: reflect also draws rules from sets of successes
    examples: bool = False  # ExpeL: evaluate shows the most similar successes in the prompt

    @property
    def learns(self) -> bool:
        """Whether anything carries from one iteration to the next (a pool, the weights).
        A method that learns nothing acts at every iteration as at iteration 0, so its
        later evaluations reuse iteration 0's episodes (stages/evaluate.py)."""
        return self.rules or self.finetune


# Every method starts from the same warm-started policy (iteration 0).
METHODS: dict[str, MethodParts] = {
    "react": MethodParts(rules=False, finetune=False),
    "rules_only": MethodParts(rules=True, finetune=False),
    "policy_only": MethodParts(rules=False, finetune=True),
    "jerp": MethodParts(rules=True, finetune=True),
    "h2r": MethodParts(rules=True, finetune=False, hierarchy=True),  # frozen policy
    "jerp_h2r": MethodParts(rules=True, finetune=True, hierarchy=True),
    # The H2R paper's baselines, frozen policy. Reflexion (Shinn et al. 2023): up to
    # `reflexion.trials` attempts per eval task, each shown the notes of the earlier ones.
    "reflexion": MethodParts(rules=False, finetune=False, trials=True),
    # ExpeL (Zhao et al. 2024): a rule pool revised from failure/success pairs and from
    # sets of successes, plus the top `expel.examples` similar successes in the prompt.
    "expel": MethodParts(rules=True, finetune=False, success_insights=True, examples=True),
}


def parts(method: str) -> MethodParts:
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; accepted: {sorted(METHODS)}")
    return METHODS[method]


def warmstart_settings(method: str, subgoal_slot: bool = True,
                       planner: str = "policy") -> dict[str, bool]:
    """The warm start's settings that follow from METHOD (and rules.subgoal_slot, the
    slot's ablation switch, and rules.planner). `prepare` writes them to
    paths.warmstart_settings_file() and `warmstart` reads that file, never run.method,
    so methods with equal settings share one warm start through DVC. subgoal_slots: an
    H2R method trains on the prompts its executor shows, the subgoal slot filled from
    the first step; the others never see the slot. plan_choices: an H2R method whose
    policy writes the plan (rules.planner policy) also learns the planner's decisions
    that write each reference's realised plan (memory/planner.py)."""
    slots = parts(method).hierarchy and subgoal_slot
    return {"subgoal_slots": slots, "plan_choices": slots and planner == "policy"}
