"""LoRA updates on the real SmolLM2-135M: a step changes the adapter and lowers its batch's
loss (RFT, GRPO, generate mode); adapters chain; a missing adapter is an error."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
import torch

from jerp.adapters import copy_adapter, write_adapter
from jerp.config import LoraParams, parse_params
from jerp.envs.alfworld import AlfWorldEnv, list_tasks
from jerp.policy.experience import success_items
from jerp.policy.model import AdapterError, load_policy
from jerp.policy.packing import Target
from jerp.policy.train import TrainConfig, TrainItem, pack_items, train, window_loss
from jerp.records import ADAPTER_MANIFEST, AdapterManifest
from jerp.replay import replay_reference
from jerp.stages.finetune import finetune_config

pytestmark = pytest.mark.slow  # LoRA steps on the real model: `make test`, not `make check`


@pytest.fixture(scope="module")
def reference(alf_root):
    """A real walkthrough, replayed on the engine (candidate lists recorded)."""
    env = AlfWorldEnv(alf_root, max_steps=50)
    try:
        task = next(t for t in list_tasks(alf_root, "train") if len(env.reference(t)) >= 5)
        ref = replay_reference(env, task)
    finally:
        env.close()
    assert ref.won and all(s.admissible for s in ref.steps)
    return ref


def _trainable(model_cache, adapter=None):
    return load_policy("smollm2", model_cache, "float32", adapter, trainable=True,
                       lora=LoraParams())


def _lora(policy) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in policy.model.named_parameters() if "lora_" in k}


def _cfg(**values) -> TrainConfig:
    """finetune's update settings of a default params file, VALUES replaced."""
    return replace(finetune_config(parse_params({}), seed=0), **values)


def _batch_loss(policy, items, cfg) -> float:
    with torch.no_grad():
        return sum(float(window_loss(policy, w, cfg)[0]) for w in pack_items(policy, items, 3))


def test_rft_step_changes_adapter_and_lowers_loss(model_cache, reference):
    policy = _trainable(model_cache)
    items = success_items([reference])
    cfg = _cfg(lr=1e-3, epochs=1, batch_sequences=8)
    before_w, before = _lora(policy), _batch_loss(policy, items, cfg)
    stats = train(policy, items, cfg)
    assert stats.optimizer_steps == 1 and stats.decisions == len(reference.steps)
    assert stats.windows < stats.decisions  # the episode's windows are packed
    after = _batch_loss(policy, items, cfg)
    assert after < before
    changed = [k for k, v in _lora(policy).items() if not torch.equal(v, before_w[k])]
    assert changed  # lora_B starts at zero; one step moves it


def test_optimizer_steps_override_the_epochs(model_cache, reference):
    """finetune.optimizer_steps: a control's budget matched to another run's, whatever the
    size of its data."""
    policy = _trainable(model_cache)
    stats = train(policy, success_items([reference]), _cfg(epochs=0.01, batch_sequences=1,
                                                           steps=3))
    assert stats.optimizer_steps == 3 and len(stats.history) == 3


def test_calibrated_rft_step_lowers_its_loss(model_cache, reference):
    """policy.score calibrated: the loss subtracts each command's empty-context score,
    recomputed with the weights (calibration.py), and one step lowers it."""
    policy = _trainable(model_cache)
    items = success_items([reference])
    cfg = _cfg(lr=1e-3, epochs=1, batch_sequences=8, score="calibrated")
    before = _batch_loss(policy, items, cfg)
    assert before != pytest.approx(_batch_loss(policy, items, _cfg(lr=1e-3)))
    train(policy, items, cfg)
    assert _batch_loss(policy, items, cfg) < before


def test_grpo_step_moves_probability_towards_positive_advantage(model_cache, reference):
    policy = _trainable(model_cache)
    pos = TrainItem(reference, {k: Target(advantage=1.0, old_prob=None, temperature=1.0)
                                for k in range(len(reference.steps))})
    cfg = _cfg(lr=1e-3, epochs=1, batch_sequences=8)
    w = pack_items(policy, [pos], 3)[0]
    d = w.decisions[0]

    def chosen_prob() -> float:
        from jerp.policy.packing import window_scores

        with torch.no_grad():
            s = window_scores(policy.model, w, policy.dtype)[0]
        return float(torch.softmax(s, -1)[d.chosen])

    p0 = chosen_prob()
    stats = train(policy, [pos], cfg)
    assert stats.pg_first is not None and stats.mean_ratio == pytest.approx(1.0, abs=1e-3)
    assert chosen_prob() > p0


def test_generate_mode_update_step(model_cache, reference):
    policy = _trainable(model_cache)
    item = TrainItem(reference, {0: Target(ce=True, advantage=1.0)})
    cfg = _cfg(lr=1e-3, epochs=1, mode="generate")
    before = _lora(policy)
    stats = train(policy, [item], cfg)
    assert stats.optimizer_steps == 1 and stats.ce_first is not None
    assert stats.pg_first is not None and stats.mean_ratio == pytest.approx(1.0, abs=1e-4)
    assert any(not torch.equal(v, before[k]) for k, v in _lora(policy).items())


def test_adapters_chain_and_pass_through(model_cache, reference, tmp_path):
    items = success_items([reference])
    cfg = _cfg(lr=1e-3, epochs=1, batch_sequences=8)
    one = _trainable(model_cache)
    train(one, items, cfg)
    write_adapter(tmp_path / "iter_1", one, AdapterManifest(kind="lora", base="smollm2",
                                                            iteration=1, stage="finetune"))
    saved = _lora(one)
    two = _trainable(model_cache, tmp_path / "iter_1")  # iteration 2 starts from 1's weights
    assert all(torch.allclose(v, saved[k]) for k, v in _lora(two).items())
    assert all(p.requires_grad for k, p in two.model.named_parameters() if "lora_" in k)
    train(two, items, cfg)
    assert any(not torch.equal(v, saved[k]) for k, v in _lora(two).items())
    copy_adapter(tmp_path / "iter_1", tmp_path / "iter_2", 2)  # a method without updates
    m = json.loads((tmp_path / "iter_2" / ADAPTER_MANIFEST).read_text())
    assert m["iteration"] == 2 and m["stage"] == "passthrough" and m["kind"] == "lora"
    acting = load_policy("smollm2", model_cache, "float32", tmp_path / "iter_2")
    assert acting.version == str(tmp_path / "iter_2")
    assert all(torch.allclose(v, saved[k]) for k, v in _lora(acting).items())


def test_missing_or_broken_adapter_is_an_error_naming_it(model_cache, tmp_path):
    with pytest.raises(AdapterError, match=str(tmp_path / "nope")):
        load_policy("smollm2", model_cache, "float32", tmp_path / "nope")
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / ADAPTER_MANIFEST).write_text(
        AdapterManifest(kind="lora", base="smollm2", iteration=1).model_dump_json())
    with pytest.raises(AdapterError, match="no adapter_config.json"):
        load_policy("smollm2", model_cache, "float32", broken)
    (broken / "adapter_config.json").write_text("{}")
    with pytest.raises(AdapterError, match=f"{broken} says kind 'lora' but has no weights"):
        load_policy("smollm2", model_cache, "float32", broken)
    (broken / ADAPTER_MANIFEST).write_text("{not json")
    with pytest.raises(AdapterError, match="not a valid adapter manifest"):
        load_policy("smollm2", model_cache, "float32", broken)
    none = tmp_path / "none"
    write_adapter(none, None, AdapterManifest(kind="none", base="smollm2", iteration=0))
    assert load_policy("smollm2", model_cache, "float32", none).version == "base"



def _moved(model_cache, reference):
    """A trainable policy one RFT step away from the base (lora_B no longer zero)."""
    policy = _trainable(model_cache)
    train(policy, success_items([reference]), _cfg(lr=1e-2, epochs=1, batch_sequences=64))
    return policy


def test_kl_is_to_the_weights_the_update_starts_from(model_cache, reference, tmp_path):
    """Issue 29: the KL reference is the adapter the update starts from, not the
    adapter-free base. Before the first step it is 0; to the base it is not; once the
    weights move it grows."""
    from jerp.adapters import adapter_weights
    from jerp.policy.train import trainable_weights

    policy = _moved(model_cache, reference)
    pos = TrainItem(reference, {k: Target(advantage=1.0, temperature=1.0)
                                for k in range(len(reference.steps))})
    cfg = _cfg(lr=1e-2, epochs=1, batch_sequences=1, kl=0.5)
    w = pack_items(policy, [pos], 3)[0]
    none = tmp_path / "none"  # no warm start: iteration 0 is the base model
    write_adapter(none, None, AdapterManifest(kind="none", base="smollm2", iteration=0))
    with torch.no_grad():
        own = window_loss(policy, w, cfg, trainable_weights(policy.model))[1]["kls"]
        base = window_loss(policy, w, cfg, adapter_weights(policy, none))[1]["kls"]
    assert own and max(own) == pytest.approx(0.0, abs=1e-6)
    assert min(base) > 1e-4  # the base scores the commands differently
    with pytest.raises(ValueError, match="reference weights"):
        window_loss(policy, w, cfg)
    stats = train(policy, [pos], replace(cfg, steps=2))  # a curve: two points suffice
    curve = [h["kl"] for h in stats.history]
    assert len(curve) >= 2 and curve[0] == pytest.approx(0.0, abs=1e-6) and curve[-1] > 1e-6


def test_warmstart_reference_is_that_folders_weights(model_cache, reference, tmp_path):
    """finetune.kl_reference: warmstart reads iteration 0's LoRA weights under the
    policy's own tensor names and leaves the policy's weights as they were."""
    from jerp.adapters import adapter_weights

    warm = _moved(model_cache, reference)
    write_adapter(tmp_path / "iter_0", warm, AdapterManifest(kind="lora", base="smollm2",
                                                             iteration=0, stage="warmstart"))
    policy = _trainable(model_cache)  # fresh LoRA weights: not the warm start's
    own = _lora(policy)
    ref = adapter_weights(policy, tmp_path / "iter_0")
    assert set(ref) == set(own)
    assert all(torch.allclose(ref[k], v) for k, v in _lora(warm).items())
    assert all(torch.equal(v, own[k]) for k, v in _lora(policy).items())


BF16_RATIO_TOLERANCE = 0.05  # measured here: max |r - 1| 0.004-0.013 over 3 games


def _rollout_item(model_cache, alf_root, dtype):
    """A trainable policy and one 6-step rollout of it at T=1 (pi(a|s) recorded)."""
    from jerp.config import EnvParams, PolicyParams
    from jerp.envs.registry import env_factory
    from jerp.policy.agent import Agent
    from jerp.policy.model import cpu_has_bf16
    from jerp.policy.rollout import EpisodeSpec, play

    if dtype == "bfloat16" and not cpu_has_bf16():
        pytest.skip("this CPU has no bf16 (the pipeline runs fp32 here)")
    policy = load_policy("smollm2", model_cache, dtype, None, trainable=True,
                         lora=LoraParams())
    task = list_tasks(alf_root, "train")[0]
    agent = Agent(policy, PolicyParams(history=3, temperature=1.0), seed=3)
    (traj,) = play([EpisodeSpec(task)], env_factory(EnvParams(max_steps=6), alf_root), agent,
                   6, 1, {}, env_workers=0)
    targets = {k: Target(advantage=1.0, old_prob=s.prob, temperature=s.temperature)
               for k, s in enumerate(traj.steps) if s.prob is not None}
    assert len(targets) >= 3
    return policy, TrainItem(traj, targets)


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_first_batch_ratios_are_one_before_any_step(model_cache, alf_root, dtype):
    """Issue 29: with pi_old as recorded (finetune.old_probs: rollout) the first batch's
    ratios, before any step, compare training's scores with the rollout's (KV cache,
    trie) for the same weights: 1 in fp32, within BF16_RATIO_TOLERANCE in bf16 (a
    quarter of the clip range) on this short episode."""
    policy, item = _rollout_item(model_cache, alf_root, dtype)
    stats = train(policy, [item], _cfg(lr=1e-3, epochs=1, batch_sequences=64, window=3,
                                       old_probs="rollout"))
    tolerance = 1e-3 if dtype == "float32" else BF16_RATIO_TOLERANCE
    assert stats.ratio_first_mean == pytest.approx(1.0, abs=tolerance)
    assert stats.ratio_first_max_dev < tolerance
    assert stats.rollout_ratio_max_dev is None  # nothing recomputed


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_recomputed_old_probs_make_first_ratios_exactly_one(model_cache, alf_root, dtype):
    """finetune.old_probs: recompute takes pi_old from the training scorer before any step,
    so the first batch's ratios are 1 up to float rounding in either dtype (the rollout's
    own disagreement is kept apart, in rollout_ratio_*), and the recorded probabilities
    are not what the ratio divides by."""
    policy, item = _rollout_item(model_cache, alf_root, dtype)
    recorded = {k: t.old_prob for k, t in item.targets.items()}
    stats = train(policy, [item], _cfg(lr=1e-3, epochs=1, batch_sequences=64, window=3,
                                       old_probs="recompute"))
    assert stats.ratio_first_max_dev < 1e-5
    assert stats.rollout_ratio_max_dev is not None
    assert stats.rollout_ratio_max_dev < (1e-3 if dtype == "float32" else BF16_RATIO_TOLERANCE)
    assert 0.0 <= stats.rollout_ratio_out_of_clip <= 1.0
    assert {k: t.old_prob for k, t in item.targets.items()} == recorded  # caller's untouched


def test_batch_schedule_covers_passes_in_shuffled_order():
    """Batches are cut from shuffled passes: every window once per pass, a pass's tail
    joined to the next pass's head, the same batches for the same seed."""
    from jerp.policy.train import batch_schedule

    s = batch_schedule(5, 2, 5, seed=1)
    flat = [i for b in s for i in b]
    assert [len(b) for b in s] == [2] * 5
    assert sorted(flat[:5]) == list(range(5)) and sorted(flat[5:]) == list(range(5))
    assert s == batch_schedule(5, 2, 5, seed=1) and s != batch_schedule(5, 2, 5, seed=2)
    # fewer windows than a batch: each batch one pass, each window once (not 64 / 5
    # passes: a batch of 64 over 5 windows would train on each ~13 times)
    big = batch_schedule(5, 64, 3, seed=1)
    assert all(sorted(b) == list(range(5)) for b in big)


@pytest.mark.parametrize("dagger", [True, False])
def test_finetune_dagger_learns_the_experts_action_at_rollout_states(model_cache, reference,
                                                                     tmp_path, dagger):
    """finetune.dagger: the update also learns the expert's label at every state a
    rollout reached. A lone failed rollout gives GRPO no advantage, so with DAgger off
    the update has nothing to learn; on, it learns every labelled state, and the saved
    adapter ranks the expert's actions higher than the policy it started from."""
    from jerp import paths
    from jerp.metrics_schema import TrainRecord, read_record
    from jerp.policy.experience import dagger_items
    from jerp.records import StepRecord, write_trajectories
    from jerp.stages import finetune

    steps = [StepRecord(observation=s.observation, admissible_count=len(s.admissible),
                        admissible=s.admissible, expert=s.action,
                        action=next(a for a in s.admissible if a != s.action))
             for s in reference.steps]
    rollout = reference.model_copy(update={"traj_id": "roll1:x#0", "source": "rollout",
                                           "steps": steps, "won": False, "reward": 0.0})
    write_trajectories(tmp_path / paths.references_file(), [])
    write_trajectories(tmp_path / paths.rollouts_file(1), [rollout])
    write_adapter(tmp_path / paths.adapter_dir(0), None,
                  AdapterManifest(kind="none", base="smollm2", iteration=0))
    p = parse_params({"run": {"method": "policy_only"}, "iterations": {1: {"prev": 0}},
                      "eval_iterations": [0, 1],
                      "policy": {"cache_dir": str(model_cache), "dtype": "float32"},
                      "finetune": {"algorithm": "grpo", "dagger": dagger, "lr": 1e-3,
                                   "optimizer_steps": 1, "batch_sequences": 8}})
    stats = finetune.run(p, tmp_path, 1, 0)
    record = read_record(tmp_path / paths.train_stats_file(1), TrainRecord)
    if not dagger:
        assert stats["decisions"] == 0 and record.dagger_states is None
        return
    items = dagger_items([rollout])
    assert stats["dagger_states"] == record.dagger_states == len(steps) == stats["decisions"]
    assert record.optimizer_steps == 1
    cfg = _cfg()
    before = _batch_loss(_trainable(model_cache), items, cfg)
    after = _batch_loss(_trainable(model_cache, tmp_path / paths.adapter_dir(1)), items, cfg)
    assert after < before
