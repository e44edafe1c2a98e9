"""The served policy against a real model server: llama-cpp-python's OpenAI-compatible
server, started here on 127.0.0.1 with the same SmolLM2 GGUF the local policy loads
(jerp.policy.model.smollm2_gguf), and stopped after (no process left behind).

On real ALFWorld states: rank-mode scores from the server agree with the local
transformers model (same weights; the server computes with the GGUF's 4-bit
blocks, the local model with them dequantised to fp32), a generate-mode decision
parses, an episode plays through `rollout.play`, and a server that gives no
prompt log-probabilities (`--logits_all false`) stops rank mode with the error
that says what it needs, while generate mode still works there. The server
checks an API key, which the client reads from $OPENAI_API_KEY only.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from jerp.config import EnvParams, PolicyParams
from jerp.envs.alfworld import AlfWorldEnv, list_tasks
from jerp.envs.registry import env_factory
from jerp.policy.agent import Agent
from jerp.policy.endpoint import (
    NO_PROMPT_LOGPROBS,
    Client,
    EndpointError,
    EndpointHTTPError,
    served_agent,
)
from jerp.policy.model import smollm2_gguf
from jerp.policy.prompts import EpisodeContext
from jerp.policy.rollout import EpisodeSpec, play

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

KEY = "sk-jerp-served-policy-test"
STATES = 8  # states along a valid_unseen walkthrough (history 3: the window slides once)
MIN_AGREE = 0.75  # share of states whose top-ranked command is the local model's
MAX_ABS = 1.5  # nats, summed log-prob of a command (see test_rank_scores_match_local)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def llama_server(log: Path, logits_all: bool) -> Iterator[str]:
    """`python -m llama_cpp.server` on a free port; yields its base URL; always stopped."""
    port = _free_port()
    cmd = [sys.executable, "-m", "llama_cpp.server", "--model", str(smollm2_gguf()),
           "--model_alias", "smollm2", "--host", "127.0.0.1", "--port", str(port),
           "--n_ctx", "4096", "--logits_all", str(logits_all).lower(), "--api_key", KEY]
    url = f"http://127.0.0.1:{port}/v1"
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
        try:
            _wait_ready(proc, url, log)
            yield url
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _wait_ready(proc: subprocess.Popen, url: str, log: Path, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"llama_cpp.server exited with {proc.returncode}:\n"
                        f"{log.read_text()[-3000:]}")
        try:
            if httpx.get(f"{url}/models", timeout=5,
                         headers={"Authorization": f"Bearer {KEY}"}).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    pytest.fail(f"llama_cpp.server not ready at {url} after {timeout} s:\n"
                f"{log.read_text()[-3000:]}")


@pytest.fixture(scope="module")
def served(tmp_path_factory) -> Iterator[str]:
    with llama_server(tmp_path_factory.mktemp("llama") / "server.log", True) as url:
        yield url


@pytest.fixture(autouse=True)
def api_key(monkeypatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", KEY)


@pytest.fixture(scope="module")
def states(alf_root):
    """(observation, walkthrough action) at the first STATES steps of a real game."""
    env = AlfWorldEnv(alf_root, max_steps=50)
    try:
        for task in list_tasks(alf_root, "eval_out"):
            walk = env.reference(task)
            if len(walk) >= STATES:
                break
        ob = env.reset(task)
        out = []
        for a in walk[:STATES]:
            out.append((ob, a))
            ob = env.step(a).observation
        return out
    finally:
        env.close()


def _params(url: str | None = None, **kw) -> PolicyParams:
    return PolicyParams(history=3, endpoint=url, endpoint_model="smollm2", **kw)


def test_rank_scores_match_local(served, policy_fp32, states):
    """Same prompt, same tokens: each command's summed log-prob from the server's echoed
    prompt log-probabilities against the local fp32 model's. The server multiplies the
    GGUF's Q4_1 blocks with 8-bit-quantised activations, the local model uses the
    dequantised weights in fp32, so scores differ by a little per token; a misaligned
    token or a shifted log-prob moves a command's score by several nats."""
    local = Agent(policy_fp32, _params())
    remote = served_agent(_params(served), seed=0)
    ctxs = [EpisodeContext(env="alfworld", goal=states[0][0].goal,
                           initial=states[0][0].text) for _ in range(2)]
    agree, diffs = 0, []
    for ob, action in states:
        mine, n_mine = local.scores(ctxs[0], ob)
        theirs, n_theirs = remote.scores(ctxs[1], ob)
        assert n_theirs == n_mine  # the server tokenises every command as we do
        best = max(range(len(mine)), key=mine.__getitem__)
        agree += best == max(range(len(theirs)), key=theirs.__getitem__)
        diffs += [abs(a - b) for a, b in zip(mine, theirs, strict=True)]
        for c in ctxs:
            c.history.append((ob.text, action))
    print(f"\nserved vs local on {len(states)} states, {len(diffs)} commands: top-1 agrees "
          f"{agree}/{len(states)}; |score diff| max {max(diffs):.3f}, "
          f"mean {sum(diffs) / len(diffs):.3f} nats; batched requests: {remote.client.batch}")
    assert agree >= MIN_AGREE * len(states)
    assert max(diffs) < MAX_ABS


def test_generate_mode_decision_parses(served, policy_fp32, states):
    ob = states[0][0]
    decide = [a.decide([EpisodeContext(env="alfworld", goal=ob.goal, initial=ob.text)], [ob])[0]
              for a in (Agent(policy_fp32, _params(mode="generate")),
                        served_agent(_params(served, mode="generate"), seed=0))]
    print(f"\ngenerate: local {decide[0].action!r}, served {decide[1].action!r}")
    assert decide[1].action and decide[1].valid is (decide[1].action in ob.admissible)
    assert decide[1].valid


def test_an_episode_plays_through_the_rollout(served, policy_fp32, alf_root):
    """One 4-step greedy episode on a real game, served and local: every action is
    admissible, and the served policy takes the local one's actions."""
    task = list_tasks(alf_root, "eval_out")[0]
    make_env = env_factory(EnvParams(max_steps=50), alf_root)
    runs = [play([EpisodeSpec(task)], make_env, agent, 4, 1, {"stage": "eval"}, env_workers=0)[0]
            for agent in (served_agent(_params(served), seed=0), Agent(policy_fp32, _params()))]
    served_traj, local_traj = runs
    assert served_traj.n_steps == 4 and all(s.valid for s in served_traj.steps)
    same = sum(a.action == b.action for a, b in zip(served_traj.steps, local_traj.steps,
                                                    strict=True))
    print(f"\nepisode: served actions {[s.action for s in served_traj.steps]}, "
          f"{same}/4 as the local model's")
    assert same >= 3


def test_the_key_comes_from_the_environment(served, monkeypatch):
    assert served_agent(_params(served), seed=0).client.complete("Hello", max_tokens=2)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-wrong")
    with pytest.raises(EndpointHTTPError) as e:
        served_agent(_params(served), seed=0).client.complete("Hello", max_tokens=2)
    assert e.value.status == 401 and served in str(e.value)


def test_a_server_without_prompt_logprobs(tmp_path, states):
    ob = states[0][0]
    ctx = EpisodeContext(env="alfworld", goal=ob.goal, initial=ob.text)
    with llama_server(tmp_path / "server.log", logits_all=False) as url:
        with pytest.raises(EndpointError) as e:
            served_agent(_params(url), seed=0).decide([ctx], [ob])
        assert NO_PROMPT_LOGPROBS in str(e.value)
        d = served_agent(_params(url, mode="generate"), seed=0).decide([ctx], [ob])[0]
        assert d.action  # generate mode works with any server
    with pytest.raises(EndpointError, match=f"cannot reach .*{url}"):
        Client(url, "smollm2", retries=0).complete("Hello")  # stopped: nothing listens
