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

llama-cpp-python 0.3.36 reads echoed prompt log-probs one position late for
SmolLM2 (no BOS token; abetlen/llama-cpp-python#1983): the stock server is
refused by the client's probe (tested), and the rank-mode comparisons run on
the same server with that one line corrected (llama_server_aligned.py).
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
import walkthroughs

from jerp.config import EnvParams, PolicyParams
from jerp.crashes import dies_with_parent, free_port
from jerp.envs.alfworld import list_tasks
from jerp.envs.base import Observation
from jerp.envs.registry import env_factory
from jerp.policy.agent import Agent
from jerp.policy.model import smollm2_gguf
from jerp.policy.prompts import EpisodeContext
from jerp.policy.rollout import EpisodeSpec, play
from jerp.policy.served import (
    NO_PROMPT_LOGPROBS,
    Client,
    EndpointError,
    EndpointHTTPError,
    served_agent,
)

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

KEY = "sk-jerp-served-policy-test"
ALIGNED = Path(__file__).with_name("llama_server_aligned.py")
STATES = 3  # states along a valid_unseen walkthrough
CANDIDATES = 5  # commands scored per state: the walkthrough's and the first others
# (llama-cpp-python's echo sorts the whole 49k vocabulary in Python for every prompt
# token: ~10 s per command on 2 busy cores, so a few states and commands only)
MIN_AGREE = 0.75  # share of states whose top-ranked command is the local model's
MAX_ABS = 1.5  # nats, summed log-prob of a command (see test_rank_scores_match_local)


class Server(str):
    """A running server's base URL that also knows its process and log."""

    proc: subprocess.Popen
    log: Path

    def check_alive(self) -> None:
        """Fail naming how the server stopped and what it logged last: a request that
        finds nothing listening says only "Connection refused"."""
        code = self.proc.poll()
        if code is not None:
            how = f"signal {signal.Signals(-code).name}" if code < 0 else f"exit {code}"
            pytest.fail(f"llama_cpp.server at {self} stopped ({how}); its log ends:\n"
                        f"{self.log.read_text(errors='replace')[-3000:]}")


@contextmanager
def llama_server(log: Path, logits_all: bool, aligned: bool = True) -> Iterator[Server]:
    """llama-cpp-python's server on a free port (`aligned`: with echoed log-probs at the
    right position, llama_server_aligned.py); yields its base URL; always stopped."""
    port = free_port()
    entry = [str(ALIGNED)] if aligned else ["-m", "llama_cpp.server"]
    cmd = [sys.executable, *entry, "--model", str(smollm2_gguf()),
           "--model_alias", "smollm2", "--host", "127.0.0.1", "--port", str(port),
           "--n_ctx", "4096", "--logits_all", str(logits_all).lower(), "--api_key", KEY]
    url = Server(f"http://127.0.0.1:{port}/v1")
    with open(log, "w") as out:
        # Dies with the test process even if pytest is killed (no orphaned server).
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT,
                                preexec_fn=dies_with_parent())
        url.proc, url.log = proc, log
        try:
            _wait_ready(proc, url, log)
            try:
                yield url
            except BaseException:
                url.check_alive()  # a server that died explains the failure: say so
                raise
            url.check_alive()
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
def server(tmp_path_factory) -> Iterator[Server]:
    with llama_server(tmp_path_factory.mktemp("llama") / "server.log", True) as url:
        yield url


@pytest.fixture
def served(server) -> Iterator[Server]:
    """The module's server, checked after each test that used it."""
    yield server
    server.check_alive()


@pytest.fixture(autouse=True)
def api_key(monkeypatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", KEY)


@pytest.fixture(scope="module")
def states(alf_root):
    """(observation, walkthrough action) at the first STATES steps of a real game."""
    return walkthroughs.walkthrough_states(alf_root, STATES)


def _params(url: str | None = None, **kw) -> PolicyParams:
    return PolicyParams(history=1, endpoint=url, endpoint_model="smollm2", **kw)


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
    for full, action in states:
        others = [a for a in full.admissible if a != action][: CANDIDATES - 1]
        ob = Observation(full.text, [action, *others], full.goal, full.task_type)
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
    # Greedy on the same weights: the same text, parsed the same way (the base model
    # answers with its goal line here, which is no admissible command: valid False).
    assert decide[1].action and decide[1].action == decide[0].action
    assert decide[1].valid == decide[0].valid == (decide[1].action in ob.admissible)


def test_an_episode_plays_through_the_rollout(served, alf_root):
    """A 3-step episode on a real game through `rollout.play`, in generate mode (rank
    mode's decisions are the ones compared above, and cost ~10 s a command here)."""
    task = list_tasks(alf_root, "eval_out")[0]
    make_env = env_factory(EnvParams(max_steps=50), alf_root)
    agent = served_agent(_params(served, mode="generate"), seed=0)
    traj = play([EpisodeSpec(task)], make_env, agent, 3, 1, {"stage": "eval"},
                env_workers=0)[0]
    print(f"\nepisode: served actions {[(s.action, s.valid) for s in traj.steps]}")
    assert traj.n_steps == 3 and all(s.action for s in traj.steps)
    assert traj.task_id == task.task_id


def test_the_key_comes_from_the_environment(served, monkeypatch):
    assert served_agent(_params(served), seed=0).client.complete("Hello", max_tokens=2)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-wrong")
    with pytest.raises(EndpointHTTPError) as e:
        served_agent(_params(served), seed=0).client.complete("Hello", max_tokens=2)
    assert e.value.status == 401 and served in str(e.value)


def test_a_server_without_prompt_logprobs(tmp_path, states):
    ob = states[0][0]
    ctx = EpisodeContext(env="alfworld", goal=ob.goal, initial=ob.text)
    with llama_server(tmp_path / "server.log", logits_all=False, aligned=False) as url:
        with pytest.raises(EndpointError) as e:
            served_agent(_params(url), seed=0).decide([ctx], [ob])
        assert NO_PROMPT_LOGPROBS in str(e.value)
        d = served_agent(_params(url, mode="generate"), seed=0).decide([ctx], [ob])[0]
        assert d.action  # generate mode works with any server
    with pytest.raises(EndpointError, match=f"cannot reach .*{url}"):
        Client(url, "smollm2", retries=0).complete("Hello")  # stopped: nothing listens


def test_the_stock_server_is_refused_for_rank_mode(tmp_path, states):
    """The unpatched server's log-probs fail the probe: rank mode stops, naming why."""
    ob = states[0][0]
    ctx = EpisodeContext(env="alfworld", goal=ob.goal, initial=ob.text)
    with llama_server(tmp_path / "server.log", logits_all=True, aligned=False) as url:
        with pytest.raises(EndpointError) as e:
            served_agent(_params(url), seed=0).decide([ctx], [ob])
    print(f"\nstock llama-cpp-python server: {e.value}")
    assert "abetlen/llama-cpp-python#1983" in str(e.value)
