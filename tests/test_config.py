"""params.yaml validation: bad keys and values are named, with what is accepted."""

import pytest

from jerp import tracking
from jerp.config import ParamsError, flatten, load_params, parse_params


def test_repo_params_validate(root):
    p = load_params(root / "params.yaml")
    assert p.eval_iterations == [0, *sorted(p.iterations)]


def test_bad_value_names_key_value_and_accepted():
    with pytest.raises(ParamsError) as e:
        parse_params({"policy": {"mode": "beam"}})
    msg = str(e.value)
    assert "policy.mode" in msg and "'beam'" in msg and "rank" in msg and "generate" in msg


def test_bad_device_names_what_is_accepted():
    with pytest.raises(ParamsError) as e:
        parse_params({"policy": {"device": "gpu"}})
    msg = str(e.value)
    assert "policy.device" in msg and "'gpu'" in msg and "cuda" in msg and "cpu" in msg
    assert parse_params({"policy": {"device": "cuda:1"}}).policy.device == "cuda:1"


def test_out_of_range_number():
    with pytest.raises(ParamsError, match=r"env\.max_steps.*-3"):
        parse_params({"env": {"max_steps": -3}})


def test_unknown_key_is_an_error():
    with pytest.raises(ParamsError, match=r"unknown key 'rules\.capacty'"):
        parse_params({"rules": {"capacty": 3}})


def test_iterations_must_chain_and_eval_iterations_be_among_them():
    with pytest.raises(ParamsError, match="prev"):
        parse_params({"iterations": {1: {"prev": 0}, 2: {"prev": 0}}, "eval_iterations": [0, 1, 2]})
    three = {i: {"prev": i - 1} for i in (1, 2, 3)}
    # before and after learning only: the standard comparison's cheap protocol
    assert parse_params({"iterations": three, "eval_iterations": [0, 3]}).eval_iterations == [0, 3]
    for bad in ([0, 4], [3, 0], [0, 1, 1], []):
        with pytest.raises(ParamsError, match=r"eval_iterations = .*among \[0, 1, 2, 3\]"):
            parse_params({"iterations": three, "eval_iterations": bad})


def test_missing_file(tmp_path):
    with pytest.raises(ParamsError, match="not found"):
        load_params(tmp_path / "params.yaml")


def test_method_names_come_from_the_methods_table():
    from jerp.methods import METHODS

    for m in METHODS:
        assert parse_params({"run": {"method": m}}).run.method == m
    with pytest.raises(ParamsError) as e:
        parse_params({"run": {"method": "jerp2"}})
    msg = str(e.value)
    assert "run.method" in msg and "'jerp2'" in msg and all(m in msg for m in METHODS)


def test_algorithm_is_checked_and_names_its_terms():
    from jerp.config import Algorithm

    got = {a.value: (a.has_rft, a.has_grpo) for a in Algorithm}
    assert got == {"rft": (True, False), "grpo": (False, True), "rft+grpo": (True, True)}
    assert parse_params({"finetune": {"algorithm": "grpo"}}).finetune.algorithm is Algorithm.grpo
    with pytest.raises(ParamsError, match=r"finetune\.algorithm.*'ppo'.*rft\+grpo"):
        parse_params({"finetune": {"algorithm": "ppo"}})


def test_subgoal_slots_follows_the_method_and_an_old_file_must_agree():
    """warmstart.subgoal_slots is derived now: an old params file may keep it only with the
    value its method implies; a contradiction names the key and says to remove it."""
    assert not hasattr(parse_params({}).warmstart, "subgoal_slots")
    parse_params({"run": {"method": "h2r"}, "warmstart": {"subgoal_slots": True}})
    parse_params({"warmstart": {"subgoal_slots": False}})  # jerp, the default method
    for method, value in (("h2r", False), ("jerp", True), ("policy_only", True)):
        with pytest.raises(ParamsError, match=r"warmstart\.subgoal_slots.*remove the key"):
            parse_params({"run": {"method": method}, "warmstart": {"subgoal_slots": value}})


def test_update_settings_come_from_params():
    """Training reads every setting from params (TrainConfig has no defaults of its own):
    the term weights and gradient clip are params; a one-term algorithm weighs its term 1;
    the warm start's CE-only loss has weight 1 whatever finetune says."""
    from jerp.adapters import warmstart_config
    from jerp.stages.finetune import finetune_config

    p = parse_params({"finetune": {"rft_weight": 0.5, "grpo_weight": 2.0, "grad_clip": 0.3,
                                   "max_minutes": 7.0, "clip": 0.1, "entropy": 0.01,
                                   "kl": 0.05, "old_probs": "recompute"},
                      "warmstart": {"grad_clip": 4.0, "batch_sequences": 6},
                      "policy": {"history": 5}})
    f = finetune_config(p, seed=11)
    assert (f.rft_weight, f.grpo_weight, f.grad_clip, f.max_minutes, f.window, f.seed) == (
        0.5, 2.0, 0.3, 7.0, 5, 11)
    assert (f.clip, f.entropy, f.kl, f.old_probs) == (0.1, 0.01, 0.05, "recompute")
    one = finetune_config(parse_params({"finetune": {"algorithm": "grpo", "rft_weight": 0.5,
                                                     "grpo_weight": 2.0}}), seed=0)
    assert (one.rft_weight, one.grpo_weight) == (1.0, 1.0)
    w = warmstart_config(p, seed=0)
    assert (w.rft_weight, w.grpo_weight, w.grad_clip, w.lr, w.max_minutes) == (
        1.0, 0.0, 4.0, p.warmstart.lr, p.warmstart.max_minutes)
    assert (w.batch_sequences, f.batch_sequences) == (6, p.finetune.batch_sequences)


def test_flatten_gives_dotted_keys_and_keeps_leaf_types():
    """Seed grouping compares leaves as values (0.5 != "0.5"); MLflow stringifies its own."""
    nested = {"run": {"method": "jerp", "seed": 1}, "finetune": {"lr": 0.5, "tags": ["a"]}}
    assert flatten(nested) == {"run.method": "jerp", "run.seed": 1, "finetune.lr": 0.5,
                               "finetune.tags": ["a"]}
    assert tracking.numeric({"a": {"b": 2, "ok": True, "x": None, "n": float("nan")}}) == {
        "a.b": 2.0}
    assert tracking._flatten({"a": {"long": "x" * 600}}) == {"a.long": "x" * 500}
