"""Episode KV cache + candidate trie: same numbers as re-encoding the prompt every step."""

from __future__ import annotations

import pytest
import walkthroughs

from jerp.config import EnvParams, PolicyParams
from jerp.envs.alfworld import list_tasks
from jerp.envs.base import Observation
from jerp.envs.registry import env_factory
from jerp.policy.agent import Agent
from jerp.policy.kvcache import PrefixCache, build_trie, score_trie
from jerp.policy.prompts import EpisodeContext, build_prompt, prompt_pieces, window_start
from jerp.policy.rollout import EpisodeSpec, play
from jerp.policy.scoring import encode_candidates, score_naive, score_shared_prefix

STEPS = 7  # with history 2 the window slides at steps 4 and 6


def test_window_keeps_between_h_and_2h_minus_1_steps():
    assert [window_start(t, 3) for t in range(10)] == [0, 0, 0, 0, 0, 0, 3, 3, 3, 6]
    assert all(3 <= t - window_start(t, 3) <= 5 for t in range(3, 40))
    assert window_start(7, 0) == 7  # history 0: no past step


def test_prompt_is_append_only_and_matches_build_prompt():
    ctx = EpisodeContext(env="alfworld", goal="put a mug in the fridge.", rules=["Open it first."])
    texts = []
    for t in range(6):
        text = "".join(prompt_pieces(ctx, f"obs {t}", window=3))
        assert text == build_prompt(ctx, f"obs {t}", 3)
        texts.append(text)
        ctx.history.append((f"obs {t}", f"go to shelf {t}"))
    # Until the window slides (t = 6) each prompt extends the previous one by "> action".
    for a, b in zip(texts, texts[1:], strict=False):
        assert b.startswith(a)
    assert texts[0].endswith("Observation: obs 0\n>") and "Open it first." in texts[0]
    with_cmds = build_prompt(ctx, "now", 3, ["look", "go to desk 1"])
    assert with_cmds.endswith("Valid commands: look, go to desk 1\n>")
    assert "obs 0" not in build_prompt(ctx, "now", 0) and "obs 0" not in with_cmds


def test_trie_shares_leading_tokens():
    trie = build_trie([[1, 2, 3, 9], [1, 2, 4, 9], [5, 9]])
    assert trie.tokens == [1, 2, 3, 4, 5]  # final tokens (9) are never forwarded
    assert trie.parents == [-1, 0, 1, 1, -1]
    assert trie.paths == [[0, 1, 2], [0, 1, 3], [4]]


@pytest.fixture(scope="module")
def walkthrough_states(alf_root):
    """Real ALFWorld states along a valid_unseen walkthrough of at least STEPS steps."""
    return walkthroughs.walkthrough_states(alf_root, STEPS)


def _episode(policy, states, history: int):
    """(episode-path scores, full re-encode scores, prompt ids) at each state."""
    agent = Agent(policy, PolicyParams(history=history))
    ctx = EpisodeContext(env="alfworld", goal=states[0][0].goal, rules=["Look before you leap."])
    tok = policy.tokenizer
    out = []
    for ob, action in states:
        got, _ = agent.scores(ctx, ob)
        text_ids = tok(build_prompt(ctx, ob.text, history), add_special_tokens=False)["input_ids"]
        assert agent.prompt_ids(ctx, ob.text) == text_ids  # pieces tokenize like the text
        ref = score_shared_prefix(policy, text_ids, encode_candidates(tok, ob.admissible))
        out.append((got, ref, text_ids))
        ctx.history.append((ob.text, action))
    return out, ctx.state.cache


def test_episode_cache_matches_reencoding_fp32(policy_fp32, walkthrough_states):
    """history 2: the cache grows, then the window slides twice; every step's scores
    equal re-encoding the whole prompt (itself checked against per-candidate naive)."""
    steps, cache = _episode(policy_fp32, walkthrough_states, history=2)
    for got, ref, _ in steps:
        assert got == pytest.approx(ref, abs=1e-4)
    assert cache.rebuilds == 2
    full = sum(len(ids) for _, _, ids in steps)
    assert cache.encoded < full  # prompt tokens are not re-encoded every step
    # Against the per-candidate naive method too, on a few candidates of the last state.
    ob = walkthrough_states[-1][0]
    few = encode_candidates(policy_fp32.tokenizer, ob.admissible[:4])
    naive = score_naive(policy_fp32, steps[-1][2], few)
    assert steps[-1][0][:4] == pytest.approx(naive, abs=1e-4)


def test_history_zero_keeps_only_the_header(policy_fp32, walkthrough_states):
    steps, cache = _episode(policy_fp32, walkthrough_states[:3], history=0)
    for got, ref, _ in steps:
        assert got == pytest.approx(ref, abs=1e-4)
    assert len(cache.ids) == len(steps[-1][2])


def test_episode_cache_bf16_close_to_fp32(policy_fp32, policy_bf16, walkthrough_states):
    """Tolerance 1.0 nat. bf16 keeps 8 mantissa bits (~0.4% relative error per
    value) through 30 layers and a 150-300-token prompt; on these states the
    cached bf16 path and the one-shot bf16 path (prompt re-encoded, cache shared)
    already differ by up to ~0.35 nats, and each is further from fp32. A
    misplaced token, position or mask moves a command's score by several nats,
    which 1.0 still catches."""
    ref, _ = _episode(policy_fp32, walkthrough_states[:5], history=2)
    got, _ = _episode(policy_bf16, walkthrough_states[:5], history=2)
    for (g, _, _), (r, _, _) in zip(got, ref, strict=True):
        assert g == pytest.approx(r, abs=1.0)


def test_scores_are_reusable_on_a_hand_built_context(policy_fp32, walkthrough_states):
    """`agent.scores` twice on the same state, and on a fresh context: same numbers."""
    ob = walkthrough_states[0][0]
    agent = Agent(policy_fp32, PolicyParams(history=2))
    ctx = EpisodeContext(env="alfworld", goal=ob.goal)
    a, _ = agent.scores(ctx, ob)
    b, _ = agent.scores(ctx, ob)
    c, _ = agent.scores(EpisodeContext(env="alfworld", goal=ob.goal), ob)
    assert a == b == pytest.approx(c, abs=1e-5)
    one = Observation(ob.text, ob.admissible[:1], ob.goal, ob.task_type)
    assert agent.scores(ctx, one)[0] == pytest.approx(a[:1], abs=1e-5)


def test_prefix_cache_reuses_the_common_prefix(policy_fp32):
    ids = policy_fp32.tokenizer("Your task is to: put a mug in the fridge.")["input_ids"]
    pc = PrefixCache()
    pc.extend(policy_fp32, ids[:5])
    pc.extend(policy_fp32, ids)
    assert pc.encoded == len(ids)
    pc.extend(policy_fp32, ids[:3] + [42])  # diverges: crop to 3, forward 1
    assert pc.encoded == len(ids) + 1 and pc.cache.get_seq_length() == 4
    fresh = PrefixCache()
    fresh.extend(policy_fp32, ids[:3] + [42])
    cands = [[11, 12, 13], [11, 12, 14], [7]]
    assert score_trie(policy_fp32, pc, cands) == pytest.approx(
        score_trie(policy_fp32, fresh, cands), abs=1e-4)


def test_actions_do_not_depend_on_workers_or_batch(policy_fp32, alf_root):
    """Greedy fp32 rollouts on real games: in-process one at a time, and two envs in
    worker processes, give the same actions and scores in the same order."""
    tasks = list_tasks(alf_root, "eval_out")[:2]
    make_env = env_factory(EnvParams(max_steps=50), alf_root)
    specs = [EpisodeSpec(t) for t in tasks]
    agent = Agent(policy_fp32, PolicyParams(history=1))
    one = play(specs, make_env, agent, 3, 1, {}, env_workers=0)
    two = play(specs, make_env, agent, 3, 2, {}, env_workers=2)
    assert [t.task_id for t in two] == [t.task_id for t in tasks]
    for a, b in zip(one, two, strict=True):
        assert [s.action for s in a.steps] == [s.action for s in b.steps]
        assert [s.logprob for s in a.steps] == pytest.approx([s.logprob for s in b.steps],
                                                              abs=1e-5)
        assert a.n_steps == 3
