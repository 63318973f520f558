"""An OpenAI-compatible chat-completions client (stdlib only) that answers with corral
`Generation`s: endpoint specs, bounded retries with backoff that honour Retry-After, a
concurrency limit, and usage accounting.

Endpoint specs:

    openai:MODEL                      the server at $CORRAL_OPENAI_BASE_URL, else
                                      $OPENAI_BASE_URL, else https://api.openai.com/v1
    http(s)://HOST[:PORT]/v1#MODEL    that server (a trailing /chat/completions is dropped)

The key is $CORRAL_OPENAI_API_KEY, else $OPENAI_API_KEY; a URL spec may do without one (a
local vLLM or llama.cpp server), api.openai.com may not.

    client = ChatClient(parse_endpoint("http://localhost:8000/v1#qwen"), concurrency=8)
    gens = client.chat([[{"role": "user", "content": "hi"}]], SamplingParams(n=2))
"""
from __future__ import annotations

import http.client
import json
import os
import random
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass
from email.utils import parsedate_to_datetime

from corral.core.errors import CorralError
from corral.core.records import as_dicts
from corral.infer.engine import Generation, SamplingParams

DEFAULT_BASE_URL = "https://api.openai.com/v1"
BASE_URL_VARS = ("CORRAL_OPENAI_BASE_URL", "OPENAI_BASE_URL")
API_KEY_VARS = ("CORRAL_OPENAI_API_KEY", "OPENAI_API_KEY")
SPEC_HELP = "an endpoint spec is openai:MODEL or http(s)://HOST[:PORT]/v1#MODEL"
_RETRY_STATUS = {408, 409, 429}  # and every 5xx: the server may answer the same request later


class RequestError(Exception):
    """One request failed for good (HTTP 400, a malformed reply, retries used up). The other
    requests go on; a generation job records the message against the row."""

    kind = "server_error"


class Refused(RequestError):
    """The model refused (the reply's message carries `refusal`): an answer, not a fault, so
    it is not retried; graders score it as OpenAI's model_grader_refusal_error."""

    kind = "refusal"


@dataclass(frozen=True)
class Endpoint:
    base_url: str
    model: str
    api_key: str | None = None

    def identity(self) -> dict:
        """What answered, for lineage and cache keys; never the key."""
        return {"kind": "endpoint", "url": self.base_url, "model": self.model}


@dataclass
class Usage:
    """Counters a generator keeps: tokens as the server reports them, HTTP requests sent
    (retries included) and how many of those were retries."""
    prompt_tokens: int = 0
    completion_tokens: int = 0
    requests: int = 0
    retries: int = 0

    def as_dict(self) -> dict:
        return {"prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens,
                "requests": self.requests, "retries": self.retries}


def is_endpoint_spec(spec: str) -> bool:
    return spec.startswith(("openai:", "http://", "https://"))


def parse_endpoint(spec: str, environ=None) -> Endpoint:
    """`openai:MODEL` or `http(s)://HOST[:PORT]/v1#MODEL` -> Endpoint (URL, model, key)."""
    env = os.environ if environ is None else environ
    key = next((env[v] for v in API_KEY_VARS if env.get(v)), None)
    if spec.startswith("openai:"):
        model = spec[len("openai:"):].strip()
        base = _base_url(next((env[v] for v in BASE_URL_VARS if env.get(v)), DEFAULT_BASE_URL))
        if not model:
            raise CorralError(f"endpoint {spec!r} names no model; {SPEC_HELP}.")
        if base == DEFAULT_BASE_URL and not key:
            raise CorralError(f"endpoint {spec!r} needs an API key for {base}; set "
                              "OPENAI_API_KEY (or CORRAL_OPENAI_API_KEY), or point "
                              "CORRAL_OPENAI_BASE_URL at a server that needs none.")
        return Endpoint(base, model, key)
    url, _, model = spec.partition("#")
    if not urllib.parse.urlsplit(url).netloc:
        raise CorralError(f"endpoint {spec!r} has no host; {SPEC_HELP}.")
    if not model.strip():
        raise CorralError(f"endpoint {spec!r} names no model; add it after '#', as in "
                          f"{url}#MODEL.")
    return Endpoint(_base_url(url), model.strip(), key)


def _base_url(url: str) -> str:
    url = url.strip().rstrip("/")
    return url.removesuffix("/chat/completions")


def retry_after_seconds(value: str | None, now: float | None = None) -> float | None:
    """A Retry-After header as seconds to wait: delta-seconds or an HTTP date; None if absent
    or unreadable."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError, IndexError):
        return None
    return max(0.0, when - (time.time() if now is None else now))


class ChatClient:
    """POSTs {base_url}/chat/completions, at most `concurrency` requests in flight.

    429, 408, 409, 5xx and connection errors are retried up to `max_retries` times, waiting
    backoff_s * 2**attempt (capped at max_wait_s) with jitter, and at least the server's
    Retry-After (seconds or an HTTP date; a longer one is cut to max_wait_s, retries being
    bounded anyway).
    401/403 (bad key) and 404 (no such model or URL) raise CorralError and stop the client:
    no more requests, no retries. 400 and malformed replies fail that request (RequestError).
    A server that has never answered and is still unreachable once a request's retries are
    used up (connection refused, unknown host, timeouts) stops the client the same way, with
    that cause: every other request would fail alike.
    """

    def __init__(self, endpoint: Endpoint, *, timeout_s: float = 120.0, max_retries: int = 5,
                 concurrency: int = 8, backoff_s: float = 1.0, max_wait_s: float = 60.0):
        for ok, what in [(timeout_s > 0, f"timeout_s must be > 0; got {timeout_s}"),
                         (max_retries >= 0, f"max_retries must be >= 0; got {max_retries}"),
                         (concurrency >= 1, f"concurrency must be >= 1; got {concurrency}")]:
            if not ok:
                raise CorralError(f"endpoint {endpoint.base_url}: {what}.")
        self.endpoint, self.url = endpoint, endpoint.base_url + "/chat/completions"
        self.timeout_s, self.max_retries, self.concurrency = timeout_s, max_retries, concurrency
        self.backoff_s, self.max_wait_s = backoff_s, max_wait_s
        self.usage = Usage()
        self._lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(concurrency)  # shared by every chat() call
        self._checked = False  # set once the server has accepted the key
        self._reached = False  # set once the server has answered at all (any HTTP status)
        self._fatal: CorralError | None = None
        self._n_ignored = False  # the server answered fewer choices than n asked

    # -- public
    def chat(self, conversations, params: SamplingParams | None = None, *,
             return_errors: bool = False) -> list:
        """For each conversation its params.n Generations (text only: no token ids or
        logprobs from a remote server). A failed conversation raises its RequestError, or
        with `return_errors` stands in the list as that RequestError instance."""
        params = params or SamplingParams()
        chats = [[_message(m) for m in as_dicts(c)] for c in conversations]
        per_task = 1 if self._n_ignored else params.n
        tasks = [(i, s, min(per_task, params.n - s))
                 for i in range(len(chats)) for s in range(0, params.n, per_task)]
        out: list = [[None] * params.n for _ in chats]
        errors: dict[int, RequestError] = {}
        for (i, first, _), result in self._run(tasks, chats, params):
            if isinstance(result, RequestError):
                errors.setdefault(i, result)
            else:
                for k, (text, finish) in enumerate(result):
                    out[i][first + k] = Generation(text, [], [], finish, i, first + k)
        for i, err in sorted(errors.items()):
            if not return_errors:
                raise err
            out[i] = err
        return out

    # -- scheduling
    def _run(self, tasks, chats, params):
        """(task, list of (text, finish) or RequestError) for every task, in any order."""
        def one(task):
            i, first, count = task
            try:
                return task, self._samples(chats[i], params, first, count)
            except RequestError as err:
                return task, err

        if tasks and not self._checked:  # alone first: a bad key costs one request, not eight
            yield one(tasks[0])
            tasks = tasks[1:]
        if not tasks:
            return
        with ThreadPoolExecutor(min(self.concurrency, len(tasks))) as pool:
            futures = [pool.submit(one, t) for t in tasks]
            done, _ = wait(futures, return_when=FIRST_EXCEPTION)
            failed = next((f for f in done if f.exception() is not None), None)
            if failed is not None:  # a fatal error (bad key): drop what has not started
                pool.shutdown(cancel_futures=True)
                raise failed.exception()
            yield from (f.result() for f in futures)

    def _samples(self, messages, params, first: int, count: int) -> list[tuple[str, str]]:
        """`count` choices for one conversation, asking again while the server gives fewer
        than n (many servers ignore n); split requests get seed + sample index, so they differ."""
        got: list[tuple[str, str]] = []
        while len(got) < count:
            want = count - len(got)
            seed = None if params.seed is None else params.seed + first + len(got)
            choices = self._post(_body(self.endpoint.model, messages, params, want, seed))
            if want > 1 and len(choices) < want:
                self._n_ignored = True
            got += choices[:want]
        return got

    # -- one request, with retries
    def _post(self, body: dict) -> list[tuple[str, str]]:
        data = json.dumps(body).encode()
        for attempt in range(self.max_retries + 1):
            if self._fatal is not None:
                raise self._fatal
            self._count(requests=1, retries=int(attempt > 0))
            try:
                with self._slots:
                    raw = self._send(data)
                self._checked = True
                return self._parse(raw)
            except urllib.error.HTTPError as exc:
                self._reached = True
                delay, why = self._http_error(exc, attempt)
            except (OSError, http.client.HTTPException) as exc:  # refused, reset, timed out
                delay, why = self._backoff(attempt), f"{type(exc).__name__}: {exc}"
            if attempt == self.max_retries:
                self._stop_if_unreachable(why)
                raise RequestError(f"{self.url}: gave up after {self.max_retries} retries "
                                   f"({why}).")
            time.sleep(delay)
        raise AssertionError("unreachable")

    def _stop_if_unreachable(self, why: str) -> None:
        """A server that has never answered and still cannot be reached after every retry
        (connection refused, no such host, timed out) will not answer the other requests
        either: stop the client with that cause, rather than fail every row the same way."""
        if not self._reached and self._fatal is None:
            self._fatal = CorralError(
                f"{self.url} could not be reached ({why}; {self.max_retries + 1} attempts, "
                "no answer yet); start the server or fix the endpoint's host and port, then "
                "run again.")
            raise self._fatal

    def _send(self, data: bytes) -> bytes:
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self.endpoint.api_key:
            headers["Authorization"] = f"Bearer {self.endpoint.api_key}"
        request = urllib.request.Request(self.url, data=data, headers=headers, method="POST")
        with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
            self._reached = True
            return response.read()

    def _http_error(self, exc: urllib.error.HTTPError, attempt: int) -> tuple[float, str]:
        """(seconds to wait, why) for a retryable status; raises for the others."""
        code, message = exc.code, _server_message(exc)
        if code in (401, 403):
            self._fatal = CorralError(
                f"{self.endpoint.base_url} refused the API key (HTTP {code}: {message}); set "
                "OPENAI_API_KEY (or CORRAL_OPENAI_API_KEY) to a valid key for this server.")
        elif code == 404:
            self._fatal = CorralError(
                f"{self.url} answered 404 for model {self.endpoint.model!r} ({message}); check "
                "the endpoint spec's URL (it usually ends in /v1) and the model name.")
        if self._fatal is not None:
            raise self._fatal
        if code not in _RETRY_STATUS and code < 500:
            raise RequestError(f"{self.url} rejected the request (HTTP {code}): {message}")
        wait_s = retry_after_seconds(exc.headers.get("Retry-After") if exc.headers else None)
        delay = self._backoff(attempt)
        if wait_s is not None:
            delay = max(delay, min(wait_s, self.max_wait_s))
        return delay, f"HTTP {code}: {message}"

    def _backoff(self, attempt: int) -> float:
        # "Equal jitter": half fixed, half random, so clients that failed together spread out.
        cap = min(self.max_wait_s, self.backoff_s * 2 ** attempt)
        return cap / 2 + random.uniform(0, cap / 2)

    def _parse(self, raw: bytes) -> list[tuple[str, str]]:
        try:
            reply = json.loads(raw)
            choices = reply["choices"]
            if not isinstance(choices, list) or not choices:
                raise ValueError("no choices")
            refusal = next((c["message"]["refusal"] for c in choices
                            if isinstance(c.get("message"), dict) and c["message"].get("refusal")),
                           None)
            out = [(c["message"].get("content") or "",
                    "length" if c.get("finish_reason") == "length" else "stop")
                   for c in choices]
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise RequestError(f"{self.url} sent a malformed reply ({exc!r}): "
                               f"{raw[:200]!r}") from None
        if refusal:
            raise Refused(f"the model refused: {str(refusal)[:300]}")
        usage = reply.get("usage") or {}
        self._count(prompt_tokens=_int(usage.get("prompt_tokens")),
                    completion_tokens=_int(usage.get("completion_tokens")))
        return out

    def _count(self, **counts: int) -> None:
        with self._lock:
            for name, value in counts.items():
                setattr(self.usage, name, getattr(self.usage, name) + value)


def _body(model: str, messages, params: SamplingParams, n: int, seed: int | None) -> dict:
    body = {"model": model, "messages": messages, "max_tokens": params.max_new_tokens,
            "temperature": params.temperature, "top_p": params.top_p}
    if n > 1:
        body["n"] = n
    if params.stop:
        body["stop"] = list(params.stop)
    if seed is not None:
        body["seed"] = seed
    if params.top_k:  # not OpenAI's API; vLLM and llama.cpp servers take it
        body["top_k"] = params.top_k
    return body


def _message(m: dict) -> dict:
    # Only what the chat API knows: corral's own keys (a turn's loss weight) would be a 400.
    return {k: m[k] for k in ("role", "content", "name") if k in m}


def _server_message(exc: urllib.error.HTTPError) -> str:
    try:
        raw = exc.read()
    except (OSError, http.client.HTTPException):
        raw = b""
    try:
        body = json.loads(raw)
        err = body.get("error", body) if isinstance(body, dict) else body
        text = err.get("message") or err.get("detail") if isinstance(err, dict) else err
        text = str(text or body)
    except ValueError:
        text = raw.decode("utf-8", "replace").strip() or (exc.reason or "")
    return str(text)[:300]


def _int(value) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0
