"""A /v1/chat/completions body, as the official client sends it, checked into a `Chat`: the
conversation, corral's SamplingParams and the response options. Each wrong field is a 400
naming it (`param`); fields corral cannot honour (tools, penalties, top_logprobs > 0, ...)
are refused by name rather than ignored, and a few that change nothing here (`user`,
`metadata`, `store`, ...) are accepted and ignored."""
from __future__ import annotations

from dataclasses import dataclass

from corral.serve.errors import bad

MAX_TOKENS = 4096
DEFAULT_MAX_TOKENS = 256
MAX_N = 16
IGNORED = {"user", "metadata", "store", "service_tier", "parallel_tool_calls",
           "prompt_cache_key", "safety_identifier", "prompt_cache_retention"}
# Accepted when they ask for nothing (their neutral value); otherwise refused by name.
NEUTRAL = {"frequency_penalty": (0, 0.0), "presence_penalty": (0, 0.0),
           "logit_bias": ({},), "tools": ([],), "tool_choice": ("none",),
           "response_format": ({"type": "text"},), "modalities": (["text"],)}
KNOWN = {"model", "messages", "n", "temperature", "top_p", "max_tokens",
         "max_completion_tokens", "stop", "seed", "logprobs", "top_logprobs", "stream",
         "stream_options"} | IGNORED | set(NEUTRAL)
ROLES = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant"}


@dataclass
class Chat:
    model: str
    messages: list
    params: object  # corral SamplingParams
    logprobs: bool
    stream: bool
    include_usage: bool


def _number(body: dict, name: str, default, low, high, integer: bool = False):
    value = body.get(name)
    if value is None:
        return default
    kind = "an integer" if integer else "a number"
    if isinstance(value, bool) or not isinstance(value, (int,) if integer else (int, float)):
        raise bad(f"'{name}' must be {kind}, got {type(value).__name__}", name, "invalid_type")
    if not low <= value <= high:
        raise bad(f"'{name}' must be from {low} to {high}, got {value}", name, "invalid_value")
    return value


def _flag(body: dict, name: str) -> bool:
    value = body.get(name)
    if value is not None and not isinstance(value, bool):
        raise bad(f"'{name}' must be true or false, got {value!r}", name, "invalid_type")
    return bool(value)


def _content(message: dict, i: int) -> str:
    content = message.get("content")
    if content is None and message.get("role") == "assistant":
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = []
        for part in content:
            if not isinstance(part, dict) or part.get("type") != "text" or \
                    not isinstance(part.get("text"), str):
                raise bad(f"messages[{i}].content: only text parts ({{'type': 'text', "
                          "'text': ...}) are supported by this server", f"messages[{i}].content",
                          "unsupported_content")
            texts.append(part["text"])
        return "".join(texts)
    raise bad(f"messages[{i}].content must be a string or a list of text parts",
              f"messages[{i}].content", "invalid_type")


def messages_of(body: dict) -> list[dict]:
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise bad("'messages' must be a non-empty list of {role, content} objects", "messages",
                  "invalid_type" if messages else "missing_required_parameter")
    out = []
    for i, message in enumerate(messages):
        role = message.get("role") if isinstance(message, dict) else None
        if role not in ROLES:
            raise bad(f"messages[{i}].role must be one of {', '.join(ROLES)}, got {role!r} "
                      "(tool messages are not supported)", f"messages[{i}].role",
                      "invalid_value")
        out.append({"role": ROLES[role], "content": _content(message, i)})
    return out


def _stop(body: dict) -> tuple:
    stop = body.get("stop")
    if stop is None:
        return ()
    stops = [stop] if isinstance(stop, str) else stop
    if not isinstance(stops, list) or len(stops) > 4 or \
            not all(isinstance(s, str) and s for s in stops):
        raise bad("'stop' must be a non-empty string or a list of up to 4 of them", "stop",
                  "invalid_value")
    return tuple(stops)


def _refuse_unsupported(body: dict) -> None:
    for name in body:
        if name not in KNOWN:
            raise bad(f"unknown field '{name}'; this server takes "
                      f"{', '.join(sorted(KNOWN - IGNORED - set(NEUTRAL)))}", name,
                      "unknown_parameter")
    for name, neutral in NEUTRAL.items():
        if name in body and body[name] is not None and body[name] not in neutral:
            raise bad(f"'{name}' is not supported by this corral server; leave it out",
                      name, "unsupported_parameter")


def parse(body) -> Chat:
    from corral.infer.engine import SamplingParams

    if not isinstance(body, dict):
        raise bad("the request body must be a JSON object")
    _refuse_unsupported(body)
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise bad("'model' must be a model id (see GET /v1/models)", "model",
                  "missing_required_parameter" if model is None else "invalid_type")
    messages = messages_of(body)
    name = "max_completion_tokens" if body.get("max_completion_tokens") is not None \
        else "max_tokens"
    max_new = _number(body, name, DEFAULT_MAX_TOKENS, 1, MAX_TOKENS, integer=True)
    top = _number(body, "top_logprobs", 0, 0, 20, integer=True)
    if top:
        raise bad("'top_logprobs' above 0 is not supported by this server yet; use "
                  "logprobs=true for the sampled tokens' log-probabilities", "top_logprobs",
                  "unsupported_parameter")
    top_p = _number(body, "top_p", 1.0, 0, 1)
    if top_p == 0:
        raise bad("'top_p' must be above 0", "top_p", "invalid_value")
    params = SamplingParams(max_new_tokens=max_new, n=_number(body, "n", 1, 1, MAX_N, True),
                            temperature=float(_number(body, "temperature", 1.0, 0, 2)),
                            top_p=float(top_p), stop=_stop(body),
                            seed=_number(body, "seed", None, -2**63, 2**63 - 1, True))
    options = body.get("stream_options")
    if options is not None and (not isinstance(options, dict) or not _flag(body, "stream")):
        raise bad("'stream_options' must be an object and needs stream=true",
                  "stream_options", "invalid_value")
    usage = bool(options and options.get("include_usage"))
    return Chat(model, messages, params, _flag(body, "logprobs"), _flag(body, "stream"), usage)
