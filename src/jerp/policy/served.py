"""A served policy: the agent's decisions made by a model behind an OpenAI-compatible API.

One client (`Client`) talks to any OpenAI-compatible server: vLLM, llama.cpp's
or llama-cpp-python's server, a hosted API. The LLM reflector uses it too.
The API key is read from $OPENAI_API_KEY in `connect` only, where the client
is made: never a param, a Prefect argument, an MLflow param or a log line.

Rank mode needs log p(command | prompt) for every admissible command, exactly
what the local agent computes. The completions API gives it for *prompt*
tokens when asked to echo the prompt back with log-probabilities (`echo`,
`logprobs`, `max_tokens` 1): the text sent is prompt + candidate, and the
candidate's tokens are those whose character offset (`text_offset`) lies in
the candidate's span (`candidate_logprob`). All candidates of one decision
go in one request (a list of prompts) where the server accepts that (vLLM
does; llama-cpp-python takes one prompt per request, so the client falls
back to one request per candidate, whose shared prompt the server keeps
cached). vLLM returns prompt log-probabilities; many hosted APIs do not, and
rank mode then stops with `NO_PROMPT_LOGPROBS`. Before its first scores a
client checks that the numbers are log p(token | the tokens before it): on
a counting sequence they must be near 0 (`PROBE`). llama-cpp-python's
server (0.3.36, `--logits_all true`) fails that for models without a BOS
token, SmolLM2 among them: it reports each token's log-prob under the
distribution *after* that token (abetlen/llama-cpp-python#1983), which would
rank commands by the wrong numbers, so rank mode stops with `SHIFTED`. Generate mode works with any
server: `build_prompt`'s text goes to the completions API as it is (no chat
template, as the local model gets it), or, on a chat-only server (404 on
/completions), as one user message to /chat/completions.

The prompts are built by `jerp.policy.prompts` exactly as locally, and the
decision rules (candidate softmax, greedy ties, sampling streams per episode)
are the local `Agent`'s: `EndpointAgent` only replaces where scores and text
come from.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

import httpx
from tenacity import (
    Retrying,
    retry_if_exception_type,
    retry_if_result,
    stop_after_attempt,
    wait_exponential,
)

from jerp.config import PolicyParams
from jerp.envs.base import Observation
from jerp.policy.agent import Agent, Decision, parse_generated
from jerp.policy.prompts import EpisodeContext, action_piece, build_prompt

KEY_ENV = "OPENAI_API_KEY"
RETRY_STATUS = (429, 502, 503, 504)  # worth another try; other errors are not transient
NO_PROMPT_LOGPROBS = (
    "rank mode (policy.mode: rank) needs a server that returns prompt log-probabilities "
    "(the completions API with echo and logprobs: vLLM, or llama-cpp-python's server "
    "started with --logits_all true); generate mode (policy.mode: generate) works with "
    "any server")

# A text whose second half any language model predicts almost surely (SmolLM2-135M:
# -0.05 nats per token), and the mean below which the log-probs are not next-token
# ones (-12.8 when each is read one position late, as llama-cpp-python does).
PROBE = "1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16"
PROBE_MIN_MEAN = -3.0
SHIFTED = (
    "answered prompt log-probabilities that are not log p(token | the tokens before it): "
    "the counting sequence {probe!r} got {mean:.1f} nats per token over its second half "
    "(a real next-token log-prob is near 0). llama-cpp-python's server reports each one a "
    "position late for models without a BOS token (abetlen/llama-cpp-python#1983), so rank "
    "mode would rank by the wrong numbers: use vLLM for rank mode, or generate mode")


class EndpointError(RuntimeError):
    """The served model could not give what was asked; the message names the URL."""


class EndpointHTTPError(EndpointError):
    def __init__(self, url: str, status: int, body: str):
        super().__init__(f"{url} answered HTTP {status}: {body[:500]}")
        self.url, self.status, self.body = url, status, body


def candidate_logprob(logprobs: dict | None, start: int, end: int) -> tuple[float, int]:
    """(summed log-prob, token count) of the echoed tokens that make up text[start:end].

    `logprobs` is a completions choice's `logprobs` object (`text_offset`,
    `token_logprobs`, parallel lists over the echoed prompt and what followed).
    A token belongs to the candidate when its offset lies in [start, end). The
    first one must start exactly at `start`: a token across the boundary means
    the server tokenised prompt and candidate together differently from the
    local scorer, which tokenises them apart. Raises EndpointError with
    NO_PROMPT_LOGPROBS when the log-probabilities are not there.
    """
    offsets = (logprobs or {}).get("text_offset")
    values = (logprobs or {}).get("token_logprobs")
    if not offsets or not values or len(offsets) != len(values):
        raise EndpointError(f"{NO_PROMPT_LOGPROBS}; the answer had no prompt log-probabilities")
    idx = [i for i, o in enumerate(offsets) if start <= o < end]
    if not idx or any(values[i] is None for i in idx):
        raise EndpointError(f"{NO_PROMPT_LOGPROBS}; the answer had no log-probabilities for "
                            f"characters {start}-{end} of the text (echo ignored?)")
    if offsets[idx[0]] != start:
        raise EndpointError(f"the server's tokens cross the prompt/candidate boundary at "
                            f"character {start} (first candidate token at {offsets[idx[0]]}): "
                            "its tokenizer differs from the local policy's")
    return float(sum(values[i] for i in idx)), len(idx)


def probe_mean(logprobs: dict | None, text_len: int) -> float:
    """Mean echoed log-prob of the tokens that start in the second half of the text."""
    offsets = (logprobs or {}).get("text_offset")
    values = (logprobs or {}).get("token_logprobs")
    if not offsets or not values or len(offsets) != len(values):
        raise EndpointError(f"{NO_PROMPT_LOGPROBS}; the answer had no prompt log-probabilities")
    got = [v for o, v in zip(offsets, values, strict=True) if text_len // 2 <= o < text_len]
    if not got or any(v is None for v in got):
        raise EndpointError(f"{NO_PROMPT_LOGPROBS}; the answer had no log-probabilities for "
                            "the prompt's tokens (echo ignored?)")
    return sum(got) / len(got)


class Client:
    """An OpenAI-compatible API at `base_url` (e.g. http://127.0.0.1:8000/v1).

    `batch`: whether the server takes a list of prompts in one completions
    request (None: not yet known; found out on the first rank request).
    `retries`: further attempts after a transient failure (unreachable, or HTTP
    RETRY_STATUS), waiting `backoff` x 1, 2, 4, ... seconds before each.
    """

    def __init__(self, base_url: str, model: str, api_key: str | None = None, *,
                 timeout: float = 120.0, retries: int = 2, backoff: float = 1.0,
                 transport: httpx.BaseTransport | None = None):
        if retries < 0 or backoff < 0:
            raise ValueError(f"Client: retries and backoff must be >= 0, got {retries}, "
                             f"{backoff}")
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.retries = retries
        self.backoff = backoff
        self.batch: bool | None = None
        self.chat_only = False
        self.checked = False  # the prompt log-probs passed the PROBE check
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._http = httpx.Client(headers=headers, timeout=timeout, transport=transport)

    def __repr__(self) -> str:  # never the key
        return f"Client({self.base_url!r}, model={self.model!r})"

    def close(self) -> None:
        self._http.close()

    def post(self, path: str, payload: dict) -> dict:
        """POST {model, **payload} to base_url/path; JSON back, or an EndpointError naming
        the URL (unreachable, HTTP error, not JSON). Retries transient failures."""
        url = f"{self.base_url}/{path}"
        try:
            r = self.retrying()(self._http.post, url, json={"model": self.model, **payload})
        except httpx.TransportError as e:
            raise EndpointError(
                f"cannot reach the OpenAI-compatible endpoint {url} "
                f"({type(e).__name__}: {e}); is the server running and is the URL "
                "right (policy.endpoint / rules.llm_endpoint)?") from None
        if r.status_code >= 400:
            raise EndpointHTTPError(url, r.status_code, r.text)
        try:
            return r.json()
        except ValueError:
            raise EndpointError(f"{url} answered HTTP {r.status_code} with no "
                                f"JSON: {r.text[:200]!r}") from None

    def retrying(self) -> Retrying:
        """The retry policy of one request: up to `retries` more attempts after a transport
        error or a RETRY_STATUS answer; when they run out, the last answer is returned (or
        its error raised) for `post` to report."""
        return Retrying(
            retry=(retry_if_exception_type(httpx.TransportError)
                   | retry_if_result(lambda r: r.status_code in RETRY_STATUS)),
            stop=stop_after_attempt(self.retries + 1),
            wait=wait_exponential(multiplier=self.backoff),
            retry_error_callback=lambda state: state.outcome.result(),
        )

    def chat(self, messages: list[dict], *, temperature: float = 0.0, max_tokens: int = 512,
             seed: int | None = None) -> str:
        body = {"messages": messages, "temperature": temperature, "max_tokens": max_tokens}
        if seed is not None:
            body["seed"] = seed
        return _first_choice(self.post("chat/completions", body))["message"]["content"] or ""

    def complete(self, prompt: str, *, temperature: float = 0.0, max_tokens: int = 24,
                 seed: int | None = None) -> str:
        """The text that follows `prompt` (raw, no chat template); on a chat-only server,
        the answer to `prompt` as one user message."""
        if not self.chat_only:
            body = {"prompt": prompt, "temperature": temperature, "max_tokens": max_tokens}
            if seed is not None:
                body["seed"] = seed
            try:
                return _first_choice(self.post("completions", body))["text"] or ""
            except EndpointHTTPError as e:
                if e.status != 404:
                    raise
                self.chat_only = True
        return self.chat([{"role": "user", "content": prompt}], temperature=temperature,
                         max_tokens=max_tokens, seed=seed)

    def score(self, prompt: str, candidates: Sequence[str]) -> tuple[list[float], list[int]]:
        """log p(candidate | prompt) summed over the candidate's tokens, and token counts,
        from the server's echoed prompt log-probabilities (module docstring)."""
        if not self.checked:
            self.check_prompt_logprobs()
        texts = [prompt + c for c in candidates]
        choices = self._echo_batch(texts) if self.batch is not False and len(texts) > 1 else None
        if choices is None:
            choices = [self._echo(t)[0] for t in texts]
        out = [candidate_logprob(ch.get("logprobs"), len(prompt), len(t))
               for ch, t in zip(choices, texts, strict=True)]
        return [s for s, _ in out], [n for _, n in out]

    def check_prompt_logprobs(self) -> None:
        """Stop unless the server's echoed log-probs are next-token ones (`PROBE`)."""
        mean = probe_mean(self._echo(PROBE)[0].get("logprobs"), len(PROBE))
        if mean < PROBE_MIN_MEAN:
            raise EndpointError(f"{self.base_url} " + SHIFTED.format(probe=PROBE, mean=mean))
        self.checked = True

    def _echo(self, prompt: str | list[str]) -> list[dict]:
        body = {"prompt": prompt, "echo": True, "logprobs": 1, "max_tokens": 1,
                "temperature": 0.0}
        try:
            res = self.post("completions", body)
        except EndpointHTTPError as e:
            raise EndpointError(f"{NO_PROMPT_LOGPROBS}; {e}") from None
        return sorted(res.get("choices") or [], key=lambda c: c.get("index", 0))

    def _echo_batch(self, texts: list[str]) -> list[dict] | None:
        """All texts in one request, or None when this server does not take a list."""
        try:
            choices = self._echo(texts)
        except EndpointError:
            if self.batch:  # it took lists before: a real failure
                raise
            self.batch = False
            return None
        self.batch = len(choices) == len(texts)
        return choices if self.batch else None

    def generate_fn(self, system: str, *, temperature: float = 0.0,
                    max_tokens: int = 512) -> Callable[[str], str]:
        """A text-in, text-out chat callable (the LLM reflector's `generate`)."""

        def generate(prompt: str) -> str:
            return self.chat([{"role": "system", "content": system},
                              {"role": "user", "content": prompt}],
                             temperature=temperature, max_tokens=max_tokens)

        return generate


def _first_choice(res: dict) -> dict:
    choices = res.get("choices") or []
    if not choices:
        raise EndpointError(f"the endpoint answered without choices: {str(res)[:300]}")
    return choices[0]


def connect(base_url: str, model: str, **kw) -> Client:
    """A client for `base_url`, with the API key from $OPENAI_API_KEY (read here only)."""
    if not base_url.startswith(("http://", "https://")):
        raise ValueError(f"endpoint {base_url!r} is not an http(s) URL; expected e.g. "
                         "http://127.0.0.1:8000/v1")
    return Client(base_url, model, os.environ.get(KEY_ENV) or None, **kw)


class EndpointAgent(Agent):
    """The local `Agent`'s decisions (rank: candidate softmax, greedy ties, a sampling
    stream per episode; generate: the first line parsed), with scores and text from a
    served model. No KV cache is kept here: the server keeps its own."""

    def __init__(self, client: Client, params: PolicyParams, seed: int = 0):
        super().__init__(None, params, seed)  # no local model
        self.client = client

    def scores(self, ctx: EpisodeContext, ob: Observation) -> tuple[list[float], list[int]]:
        prompt = build_prompt(ctx, ob.text, self.params.history)
        return self.client.score(prompt, [action_piece(a) for a in ob.admissible])

    def text_scores(self, prompt: str, options: Sequence[str]) -> tuple[list[float], list[int]]:
        return self.client.score(prompt, [action_piece(o) for o in options])

    def _generate(self, ctxs: list[EpisodeContext], obs: list[Observation]) -> list[Decision]:
        temp = self.params.temperature
        out = []
        for c, o in zip(ctxs, obs, strict=True):
            prompt = build_prompt(c, o.text, self.params.history, o.admissible)
            seed = self._state(c).rng.randrange(2**31) if temp > 0 else None
            text = self.client.complete(prompt, temperature=temp,
                                        max_tokens=self.params.max_new_tokens, seed=seed)
            action, valid = parse_generated(text, o.admissible)
            out.append(Decision(action, None, valid, temperature=temp))
        return out


def served_agent(params: PolicyParams, seed: int, adapter: Path | None = None) -> EndpointAgent:
    """The agent for params `policy.endpoint`. A LoRA adapter cannot be applied by the
    client: that is an error, never a silent switch to what the server serves."""
    from jerp.policy.model import read_adapter

    if params.endpoint is None:
        raise ValueError("served_agent needs policy.endpoint (an OpenAI-compatible base URL)")
    if adapter is not None and read_adapter(adapter).kind == "lora":
        raise EndpointError(
            f"policy.endpoint ({params.endpoint}) serves a fixed model and cannot apply the "
            f"LoRA adapter {adapter} this stage acts with; play without a trained adapter "
            "(warmstart.games_per_type: 0, run.method react or rules_only) or unset "
            "policy.endpoint")
    model = params.endpoint_model or params.model
    return EndpointAgent(connect(params.endpoint, model), params, seed=seed)
