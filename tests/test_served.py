"""The served-policy client and agent against a real local HTTP server with canned,
hand-checkable log-probabilities (the real model server: tests/cluster/test_served_policy.py).

The canned server tokenises by character: the first token of a text has no log-prob
(nothing predicts it), whitespace scores -0.25, any other character -1.0 (or -8.0
everywhere when `shifted`: log-probs that are not next-token ones). So " x\\n" after
a prompt sums to -1.5 over 3 tokens and " yz\\n" to -2.5 over 4.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from jerp.config import PolicyParams, parse_params
from jerp.envs.base import Observation
from jerp.policy.prompts import EpisodeContext, build_prompt
from jerp.policy.served import (
    NO_PROMPT_LOGPROBS,
    PROBE,
    Client,
    EndpointAgent,
    EndpointError,
    EndpointHTTPError,
    candidate_logprob,
    connect,
    probe_mean,
    served_agent,
)
from jerp.records import ADAPTER_MANIFEST, AdapterManifest


def _echo_logprobs(text: str, shifted: bool = False) -> dict:
    values = [-8.0 if shifted else -0.25 if c.isspace() else -1.0 for c in text[1:]]
    return {"tokens": list(text), "text_offset": list(range(len(text))),
            "token_logprobs": [None, *values]}


class _Server(BaseHTTPRequestHandler):
    """/v1/completions and /v1/chat/completions. Class attributes set the behaviour:
    `lists` (takes a list of prompts), `logprobs` (echoes them), `completions` (has the
    endpoint at all), `text` (what it generates); `seen` records (path, body, auth)."""

    lists = True
    logprobs = True
    shifted = False
    completions = True
    text = " go to desk 1\nObservation: ..."
    seen: list = []

    def do_POST(self) -> None:  # noqa: N802 (http.server's name)
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).seen.append((self.path, body, self.headers.get("Authorization")))
        if self.path.endswith("/chat/completions"):
            return self._send(200, {"choices": [{"index": 0, "message": {"content": self.text}}]})
        if not self.completions:
            return self._send(404, {"error": "this is a chat model"})
        prompts = body["prompt"]
        if isinstance(prompts, list) and not self.lists:
            return self._send(400, {"error": "one prompt per request"})
        prompts = prompts if isinstance(prompts, list) else [prompts]
        if body.get("echo") and self.logprobs:
            choices = [{"index": i, "text": p + "!",
                        "logprobs": _echo_logprobs(p + "!", self.shifted)}
                       for i, p in enumerate(prompts)]
        else:
            choices = [{"index": i, "text": self.text, "logprobs": None}
                       for i, _ in enumerate(prompts)]
        self._send(200, {"choices": choices[::-1]})  # any order: the index says which

    def _send(self, status: int, obj: dict) -> None:
        out = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def server():
    """A fresh handler class per test (behaviour set on it), served on a free port."""
    handler = type("Handler", (_Server,), {"seen": []})
    srv = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    handler.url = f"http://127.0.0.1:{srv.server_port}/v1"
    try:
        yield handler
    finally:
        srv.shutdown()
        srv.server_close()


def test_candidate_logprob_sums_the_tokens_in_the_candidate_span():
    lp = {"text_offset": [0, 3, 5, 8, 10], "token_logprobs": [None, -1.0, -0.5, -2.0, -4.0]}
    assert candidate_logprob(lp, 5, 10) == (-2.5, 2)  # tokens at 5 and 8; 10 is past the end
    assert candidate_logprob(lp, 3, 11) == (-7.5, 4)
    with pytest.raises(EndpointError, match="cross the prompt/candidate boundary"):
        candidate_logprob(lp, 4, 10)  # the token at 3 runs over the boundary
    for missing in (None, {}, {"text_offset": [0, 1], "token_logprobs": None}):
        with pytest.raises(EndpointError, match="prompt log-probabilities"):
            candidate_logprob(missing, 0, 2)
    with pytest.raises(EndpointError, match="echo ignored"):
        candidate_logprob(lp, 11, 14)  # no token there: the prompt was not echoed


def test_score_batches_the_candidates_where_the_server_takes_a_list(server):
    client = Client(server.url, "m")
    assert client.score("ab>", [" x\n", " yz\n"]) == ([-1.5, -2.5], [3, 4])
    assert client.batch is True and client.checked and len(server.seen) == 2
    assert server.seen[0][1]["prompt"] == PROBE  # checked once, before the first scores
    path, body, _ = server.seen[1]
    assert path == "/v1/completions" and body["prompt"] == ["ab> x\n", "ab> yz\n"]
    assert body["echo"] is True and body["logprobs"] == 1 and body["max_tokens"] == 1
    assert body["model"] == "m"


def test_score_falls_back_to_one_request_per_candidate(server):
    server.lists = False
    client = Client(server.url, "m")
    assert client.score("ab>", [" x\n", " yz\n"]) == ([-1.5, -2.5], [3, 4])
    assert client.batch is False
    assert [b["prompt"] for _, b, _ in server.seen] == [
        PROBE, ["ab> x\n", "ab> yz\n"], "ab> x\n", "ab> yz\n"]
    client.score("ab>", [" x\n", " yz\n"])  # neither the list nor the probe again
    assert len(server.seen) == 6


def test_rank_mode_without_prompt_logprobs_says_what_it_needs(server):
    server.logprobs = False
    with pytest.raises(EndpointError) as e:
        Client(server.url, "m").score("ab>", [" x\n", " yz\n"])
    assert NO_PROMPT_LOGPROBS in str(e.value) and "vLLM" in str(e.value)
    assert "generate mode" in str(e.value)


def test_probe_mean_reads_the_second_half():
    lp = {"text_offset": [0, 2, 4, 6, 8], "token_logprobs": [None, -9.0, -1.0, -2.0, -6.0]}
    assert probe_mean(lp, 10) == -4.0  # tokens at 6 and 8 (offset >= 10 // 2)
    assert probe_mean(lp, 8) == -1.5  # tokens at 4 and 6
    with pytest.raises(EndpointError, match="prompt log-probabilities"):
        probe_mean({"text_offset": [0], "token_logprobs": [None]}, 2)


def test_log_probs_read_a_position_late_stop_rank_mode(server):
    server.shifted = True
    with pytest.raises(EndpointError) as e:
        Client(server.url, "m").score("ab>", [" x\n", " yz\n"])
    msg = str(e.value)
    assert server.url in msg and "-8.0 nats per token" in msg and "llama-cpp-python" in msg
    assert len(server.seen) == 1  # stopped at the probe: no candidate was scored


def test_unreachable_endpoint_names_the_url():
    client = Client("http://127.0.0.1:9/v1", "m", retries=0)
    with pytest.raises(EndpointError, match=r"cannot reach .*http://127\.0\.0\.1:9/v1/completions"):
        client.complete("hello")


def _flaky(answers: list[int | type[Exception]]) -> tuple[Client, list[str]]:
    """A client whose transport answers the given statuses (or raises the given transport
    errors) in turn; `calls` records each request's path."""
    calls: list[str] = []

    def handle(request: httpx.Request) -> httpx.Response:
        calls.append(request.url.path)
        answer = answers[min(len(calls), len(answers)) - 1]
        if isinstance(answer, type):
            raise answer("refused", request=request)
        return httpx.Response(answer, json={"choices": [{"text": f"HTTP {answer}"}]})

    return Client("http://h/v1", "m", retries=2, backoff=0.5,
                  transport=httpx.MockTransport(handle)), calls


def test_transient_failures_are_retried_with_exponential_backoff(monkeypatch):
    slept: list[float] = []
    monkeypatch.setattr("time.sleep", slept.append)
    client, calls = _flaky([503, httpx.ConnectError, 200])
    assert client.complete("hi") == "HTTP 200"
    assert calls == ["/v1/completions"] * 3 and slept == [0.5, 1.0]
    # retries used up: the last answer's error, after 1 + 2 attempts
    client, calls = _flaky([429, 502, 504, 200])
    with pytest.raises(EndpointHTTPError, match="HTTP 504") as e:
        client.post("completions", {})
    assert e.value.status == 504 and len(calls) == 3
    client, calls = _flaky([httpx.ConnectError])
    with pytest.raises(EndpointError, match="cannot reach .*http://h/v1/completions"):
        client.post("completions", {})
    assert len(calls) == 3


def test_other_http_errors_are_not_retried(monkeypatch):
    monkeypatch.setattr("time.sleep", lambda s: pytest.fail("slept: retried a 400"))
    client, calls = _flaky([400, 200])
    with pytest.raises(EndpointHTTPError, match="HTTP 400"):
        client.post("completions", {})
    assert len(calls) == 1
    with pytest.raises(ValueError, match="retries and backoff"):
        Client("http://h/v1", "m", retries=-1)


def test_key_comes_from_the_environment_and_stays_out_of_repr(server, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-123")
    client = connect(server.url, "m")
    assert client.complete("hi") == _Server.text
    assert server.seen[-1][2] == "Bearer sk-test-123"
    assert "sk-test" not in repr(client)
    monkeypatch.delenv("OPENAI_API_KEY")
    connect(server.url, "m").complete("hi")
    assert server.seen[-1][2] is None  # no key: no Authorization header
    with pytest.raises(ValueError, match="not an http"):
        connect("127.0.0.1:8000", "m")


def test_generate_falls_back_to_chat_on_a_chat_only_server(server):
    server.completions = False
    client = Client(server.url, "m")
    assert client.complete("prompt text", max_tokens=5) == _Server.text
    assert client.chat_only and [p for p, _, _ in server.seen] == [
        "/v1/completions", "/v1/chat/completions"]
    assert server.seen[-1][1]["messages"] == [{"role": "user", "content": "prompt text"}]


def _state():
    ctx = EpisodeContext(env="alfworld", goal="put a mug in the fridge.", initial="A room.")
    ob = Observation("You see a desk 1.", ["look", "go to desk 1", "inventory"],
                     ctx.goal, "pick_and_place_simple")
    return ctx, ob


def test_endpoint_agent_ranks_like_the_local_agent(server):
    """Scores per character (module docstring): the shortest command wins greedily; the
    text sent is build_prompt's prompt + the candidate."""
    ctx, ob = _state()
    agent = EndpointAgent(Client(server.url, "m"), PolicyParams(history=2))
    scores, lengths = agent.scores(ctx, ob)
    # " look\n": 2 spaces x -0.25 + 4 letters x -1 = -4.5; " go to desk 1\n": 5 x -0.25 + 9
    # x -1 = -10.25; " inventory\n": 2 x -0.25 + 9 x -1 = -9.5.
    assert scores == [-4.5, -10.25, -9.5] and lengths == [6, 14, 11]
    (d,) = agent.decide([ctx], [ob])
    assert (d.action, d.valid, d.prob, d.logprob) == ("look", True, 1.0, -4.5)
    assert agent.expert_rank(ctx, ob, "inventory") == 2
    assert agent.expert_rank(ctx, ob, "go to desk 1") == 3
    assert agent.expert_rank(ctx, ob, "open fridge 1") == 4  # not admissible
    prompt = build_prompt(ctx, ob.text, 2)
    assert server.seen[1][1]["prompt"][0] == prompt + " look\n"


def test_endpoint_agent_samples_from_the_episode_stream(server):
    pp = PolicyParams(temperature=5.0)
    a = [EndpointAgent(Client(server.url, "m"), pp, seed=3).decide([ctx], [ob])[0]
         for ctx, ob in (_state(), _state())]
    assert a[0].action == a[1].action and a[0].prob == a[1].prob  # same seed, same draw
    assert 0 < a[0].prob < 1 and a[0].temperature == 5.0


def test_endpoint_agent_generate_mode_parses_the_first_line(server):
    ctx, ob = _state()
    agent = EndpointAgent(Client(server.url, "m"), PolicyParams(mode="generate",
                                                                max_new_tokens=7))
    (d,) = agent.decide([ctx], [ob])
    assert (d.action, d.valid, d.logprob) == ("go to desk 1", True, None)
    body = server.seen[0][1]
    assert body["prompt"] == build_prompt(ctx, ob.text, 3, ob.admissible)
    assert body["max_tokens"] == 7 and "seed" not in body  # greedy: no seed needed


def test_served_agent_refuses_a_lora_adapter(tmp_path: Path):
    pp = PolicyParams(endpoint="http://127.0.0.1:9/v1")
    (tmp_path / ADAPTER_MANIFEST).write_text(
        AdapterManifest(kind="none", base="smollm2", iteration=0).model_dump_json())
    agent = served_agent(pp, seed=0, adapter=tmp_path)  # the base model: fine
    assert agent.client.model == "smollm2"  # endpoint_model None: policy.model's value
    (tmp_path / ADAPTER_MANIFEST).write_text(
        AdapterManifest(kind="lora", base="smollm2", iteration=1).model_dump_json())
    (tmp_path / "adapter_config.json").write_text("{}")
    (tmp_path / "adapter_model.safetensors").write_bytes(b"")
    with pytest.raises(EndpointError, match=f"cannot apply the LoRA adapter {tmp_path}"):
        served_agent(pp, seed=0, adapter=tmp_path)


def test_params_check_the_endpoint_and_fingerprint_names_it():
    from jerp.jobs import AgentSpec, Job, fingerprint

    with pytest.raises(ValueError, match="not an http"):
        parse_params({"policy": {"endpoint": "localhost:8000"}})

    def fp(**policy) -> str:
        p = parse_params({"policy": policy})
        return fingerprint(Job(p, Path("."), AgentSpec(None, 0)), ["game"])

    local = fp()
    served = fp(endpoint="http://127.0.0.1:8000/v1", endpoint_model="a")
    assert len({local, served, fp(endpoint="http://127.0.0.1:8000/v1", endpoint_model="b"),
                fp(endpoint="http://10.0.0.2:8000/v1", endpoint_model="a")}) == 4
    assert fp(endpoint="http://127.0.0.1:8000/v1", endpoint_model="a") == served


def test_local_agent_loads_no_model_when_served(tmp_path):
    """load_agent and the workers' agent give the served agent and touch no model
    (the model cache is an empty folder: a local load would fail)."""
    from jerp.agents import load_agent
    from jerp.jobs import AgentSpec, Job, agent

    p = parse_params({"policy": {"endpoint": "http://127.0.0.1:9/v1", "endpoint_model": "x",
                                 "model": "no-such-model", "cache_dir": str(tmp_path)}})
    a = load_agent(p, tmp_path, seed=1, temperature=0.5)
    assert isinstance(a, EndpointAgent) and a.params.temperature == 0.5
    assert a.client.model == "x"
    b = agent(Job(p, tmp_path, AgentSpec(None, 2)))
    assert isinstance(b, EndpointAgent) and b.seed == 2
