"""Typed records for the metrics and run statistics the stages write under metrics/.

One model per file kind, one writer (`write_record`, atomic) and one reader
(`parse_record` for text read from a workspace or a DVC revision, `read_record`
for a path), so the report and `jerp compare` read attributes instead of string
keys: a renamed or missing key fails where the file is read, naming the key and
the file, not as a blank cell in a table.

The JSON keeps the keys dvc.yaml's `metrics:` entries and older runs use. A field
every current writer writes is required; a field newer than some committed runs
(success_ci, the expert agreement, success_at) is optional and reads as None.
Extra keys are kept (`extra="allow"`), so a trainer that reports one more figure
does not break reading older or newer files.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError, model_validator

from jerp.records import CorruptInputError, atomic_open

R = TypeVar("R", bound="MetricsRecord")


class MetricsRecord(BaseModel):
    model_config = ConfigDict(extra="allow")


# ---------------------------------------------------------------- episodes


class EpisodeSummary(MetricsRecord):
    """metrics.summarize over a list of episodes: the ceiling in metrics/references.json,
    and the common part of the eval metrics."""

    episodes: int
    success: float  # success@1: every method's first attempt (Reflexion: see success_at)
    success_ci: list[float] | None = None  # Wilson 95%; absent in runs before it
    score: float
    mean_steps: float
    invalid_action_rate: float
    success_by_type: dict[str, float]
    expert_agreement: float | None = None  # None: no expert labels (older runs)
    expert_agreement_ci: list[float] | None = None
    expert_labels: int | None = None
    plan_sources: dict[str, int] | None = None  # H2R: episodes per plan source


PROMPTS = ("shown", "none", "wrong")  # the prompt conditions reference states are ranked in


class EvalMetrics(EpisodeSummary):
    """metrics/iter_<i>.json, written by evaluate@i."""

    iteration: int
    rules_in_pool: int
    # A method that learns nothing (react, reflexion) at a later iteration: the iteration
    # whose episodes these are (its own are iteration 0's exact job, stages/evaluate.py).
    acts_as_iteration: int | None = None
    # Reflexion only: success@k for k = 1..trials ("1".."k"), and the trials played.
    success_at: dict[str, float] | None = None
    trial_episodes: int | None = None
    # Reference-state ranks (eval.expert_states): "shown" unsuffixed, then _none, _wrong.
    expert_states: int | None = None
    expert_top1: float | None = None
    expert_mrr: float | None = None
    expert_top1_by_type: dict[str, float] | None = None
    expert_mrr_by_type: dict[str, float] | None = None
    expert_top1_none: float | None = None
    expert_mrr_none: float | None = None
    expert_top1_wrong: float | None = None
    expert_mrr_wrong: float | None = None

    @property
    def success_at_1(self) -> float:
        """The first attempt's success; runs before success@1 was the headline recorded
        Reflexion's `success` after its last trial, but success_at["1"] already."""
        return self.success_at["1"] if self.success_at else self.success

    @property
    def success_at_k(self) -> float:
        """Success after Reflexion's last trial (k = trials); success@1 for other methods."""
        if not self.success_at:
            return self.success
        return self.success_at[max(self.success_at, key=int)]

    @property
    def trials(self) -> int:
        """k of success@k: Reflexion's trials per game, 1 for every other method."""
        return max(map(int, self.success_at)) if self.success_at else 1

    def top1(self, prompt: str) -> float | None:
        return getattr(self, "expert_top1" + ("" if prompt == "shown" else f"_{prompt}"))

    def mrr(self, prompt: str) -> float | None:
        return getattr(self, "expert_mrr" + ("" if prompt == "shown" else f"_{prompt}"))


class RolloutStats(MetricsRecord):
    """metrics/rollout_<i>.json: rollout@i's episodes and whether they can teach. A method
    that learns nothing from experience writes `skipped` and no summary."""

    iteration: int
    episodes: int
    skipped: str | None = None
    success: float | None = None
    success_ci: list[float] | None = None
    score: float | None = None
    mean_steps: float | None = None
    invalid_action_rate: float | None = None
    success_by_type: dict[str, float] | None = None
    expert_agreement: float | None = None
    expert_agreement_ci: list[float] | None = None
    expert_labels: int | None = None
    plan_sources: dict[str, int] | None = None
    identical_group_share: float | None = None
    distinct_actions_per_episode: float | None = None
    distinct_returns_group_share: float | None = None

    @model_validator(mode="after")
    def _played(self) -> RolloutStats:
        if self.skipped is None and self.episodes and self.success is None:
            raise ValueError("success: required when episodes were played (not skipped)")
        return self


# ---------------------------------------------------------------- training

TRAINER_FIELDS = ("decisions", "windows", "optimizer_steps", "tokens", "seconds",
                  "epochs_done", "stopped_by_time", "tokens_per_s")


class LossPoint(MetricsRecord):
    """One optimizer step of a loss curve; `round`: the warm start's DAgger round."""

    step: int
    ce: float | None = None
    pg: float | None = None
    kl: float | None = None  # mean KL to the reference over the step's GRPO decisions
    round: int | None = None


class DaggerRound(MetricsRecord):
    """One DAgger round of the warm start: how the policy played the games it was then
    taught on, and the round's training summary."""

    round: int
    games: int
    won: int
    labels: int
    expert_agreement: float | None = None  # None: no labelled decision
    ce_first: float | None = None
    ce_last: float | None = None


class TrainRecord(MetricsRecord):
    """metrics/train_<i>.json: the warm start (i = 0) or finetune@i. Disabled: only
    stage, enabled (and finetune's iteration); enabled: the trainer's summary too."""

    stage: Literal["warmstart", "finetune"]
    enabled: bool
    iteration: int | None = None  # finetune only
    references: int | None = None  # warm start: the reference successes imitated
    algorithm: str | None = None  # finetune: finetune.algorithm
    # finetune's data (grpo_items.summary, rft_data)
    grpo_groups: int | None = None
    zero_advantage_group_share: float | None = None
    grpo_steps: int | None = None
    zero_advantage_step_share: float | None = None
    identical_group_share: float | None = None
    rft_references: int | None = None
    rft_wins: int | None = None
    dagger_states: int | None = None  # finetune.dagger: rollout states with the expert's label
    # H2R's policy planner (memory/planner.py): its decisions trained on, and the
    # successes whose realised plan they write (warm start and RFT)
    plan_choices: int | None = None
    plans_taught: int | None = None
    # the trainer (policy/train.TrainStats.summary); required when enabled
    decisions: int | None = None
    windows: int | None = None
    optimizer_steps: int | None = None
    tokens: int | None = None
    seconds: float | None = None
    epochs_done: float | None = None
    stopped_by_time: bool | None = None
    tokens_per_s: float | None = None
    ce_first: float | None = None
    ce_last: float | None = None
    pg_first: float | None = None
    pg_last: float | None = None
    mean_ratio: float | None = None
    # the first batch's importance ratios, before any step: 1 up to how rollout and
    # training scores differ (bf16, the KV cache); policy/train.py
    ratio_first_mean: float | None = None
    ratio_first_max_dev: float | None = None
    # finetune.old_probs recompute: training's pi_old over the rollout's recorded one, same
    # weights (the two scorers' disagreement before any step)
    rollout_ratio_max_dev: float | None = None
    rollout_ratio_out_of_clip: float | None = None
    clip_fraction: float | None = None
    entropy: float | None = None
    kl: float | None = None
    dagger: list[DaggerRound] | None = None
    loss_curve: list[LossPoint] | None = None

    @model_validator(mode="after")
    def _trained(self) -> TrainRecord:
        if self.enabled:
            missing = [f for f in TRAINER_FIELDS if getattr(self, f) is None]
            if missing:
                raise ValueError(f"enabled training lacks {', '.join(missing)}")
        if self.stage == "finetune" and self.iteration is None:
            raise ValueError("iteration: required for stage finetune")
        return self

    @property
    def kind(self) -> str:
        """What the update was: none (disabled), the finetune algorithm, or warmstart."""
        return "none" if not self.enabled else (self.algorithm or self.stage)


# ---------------------------------------------------------------- references


class TypeDemos(MetricsRecord):
    games: int
    expert_won: int
    expert_mean_steps: float | None = None  # None: the expert won none of the type


class DemoStats(MetricsRecord):
    """metrics.demo_stats: who demonstrated the train games."""

    asked: str  # expert | walkthrough
    games: int
    won: int
    by: dict[str, int]  # expert / walkthrough -> games
    mean_steps: float | None = None  # None: no train games
    fallbacks: int | None = None  # asked == expert only
    expert_by_type: dict[str, TypeDemos] | None = None


class ReferenceStats(MetricsRecord):
    """metrics/references.json: the train games' demonstrations and the searching
    expert's ceiling on the eval games (None without an expert, as in WebShop runs
    before its scripted shopper)."""

    demos: DemoStats | None
    ceiling: EpisodeSummary | None


# ---------------------------------------------------------------- I/O


def write_record(path: str | Path, rec: MetricsRecord) -> None:
    """The one writer: atomic, the keys that were set (a None set explicitly is kept, as
    the trainer's pg_first is on a warm start), in the model's field order."""
    with atomic_open(path) as fh:
        json.dump(rec.model_dump(mode="json", exclude_unset=True), fh, indent=2)
        fh.write("\n")


def parse_record(text: str, model: type[R], where: str) -> R:
    """The one reader, on a file's text (`where`: its path, for the message); a missing
    or malformed key raises CorruptInputError naming the file, the record and the key."""
    try:
        return model.model_validate_json(text)
    except ValidationError as e:
        problems = "; ".join(f"{'.'.join(map(str, err['loc'])) or '(file)'}: {err['msg']}"
                             for err in e.errors())
        raise CorruptInputError(f"{where}: not a valid {model.__name__} ({problems})") from e


def read_record(path: str | Path, model: type[R]) -> R:
    return parse_record(Path(path).read_text(encoding="utf-8"), model, str(path))
