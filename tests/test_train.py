"""LoRA updates on the real SmolLM2-135M: a step changes the adapter and lowers its batch's
loss (RFT, GRPO, generate mode); adapters chain; a missing adapter is an error."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
import torch

from jerp.adapters import copy_adapter, finetune_config, write_adapter
from jerp.config import LoraParams, parse_params
from jerp.envs.alfworld import AlfWorldEnv, list_tasks
from jerp.policy.experience import success_items
from jerp.policy.model import AdapterError, load_policy
from jerp.policy.packing import Target
from jerp.policy.train import TrainConfig, TrainItem, pack_items, train, window_loss
from jerp.records import ADAPTER_MANIFEST, AdapterManifest
from jerp.replay import replay_reference

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

