"""POST /v1/chat/completions: a base model alias (`--model NAME=MODEL`), the `ft:` model of
a succeeded job, or a job's run (its id: the run's final model), answered by corral's engine
through the model pool (pool.py: lazy loading, LRU eviction, dynamic batching).

Non-streaming answers are `chat.completion` objects; `stream: true` answers server-sent
events, one `chat.completion.chunk` per `data:` line and `data: [DONE]` last, with a final
chunk of `usage` (empty `choices`) when `stream_options.include_usage`. The text is
generated before the first chunk is sent (the engine has no token callback yet), then
streamed token by token; the streamed text always equals the non-streamed text."""
from __future__ import annotations

import asyncio
import json
import time

from fastapi import APIRouter, Request
from fastapi.responses import Response, StreamingResponse
from starlette.concurrency import run_in_threadpool

from corral.serve import chatparams
from corral.serve.errors import APIError, bad, not_found
from corral.serve.ids import new_id, valid
from corral.serve.jobs import json_body

router = APIRouter()
FINISH = {"eos": "stop", "stop": "stop", "length": "length"}


def resolver(state):
    """model id -> (load key, path): an alias, an ft: model, or a job's run by its id."""
    def resolve(model: str) -> tuple[str, str]:
        if model in state.models:
            path = state.models[model]
            return path, path
        job_id = None
        if model.startswith("ft:") and len(model) < 600:
            job = state.store.model_job(model)
            job_id = job["id"] if job else None
        elif valid(model, "ftjob"):
            job_id = model
        final = state.root / "runs" / job_id / "final" if job_id else None
        if final is None or not final.is_dir():
            raise not_found("model", model, "model")
        return str(final), str(final)
    return resolve


def _logprobs(gen, tokenizer) -> dict:
    ids = gen.token_ids[:-1] if gen.finish_reason == "eos" else gen.token_ids
    content = []
    for token_id, logp in zip(ids, gen.logprobs):
        token = tokenizer.decode([token_id])
        content.append({"token": token, "logprob": logp, "bytes": list(token.encode()),
                        "top_logprobs": []})
    return {"content": content, "refusal": None}


def _usage(gens_list, prompt_tokens: int) -> dict:
    completion = sum(len(g.token_ids) for g in gens_list)
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion,
            "total_tokens": prompt_tokens + completion}


def completion(chat, gens, prompt_tokens: int, tokenizer) -> dict:
    choices = [{"index": g.sample_index, "finish_reason": FINISH[g.finish_reason],
                "message": {"role": "assistant", "content": g.text, "refusal": None},
                "logprobs": _logprobs(g, tokenizer) if chat.logprobs else None}
               for g in gens]
    return {"id": new_id("chatcmpl"), "object": "chat.completion", "created": int(time.time()),
            "model": chat.model, "choices": choices, "usage": _usage(gens, prompt_tokens),
            "system_fingerprint": None}


def deltas(gen, tokenizer) -> list[tuple[str, int]]:
    """(text, token index) pieces whose concatenation is exactly `gen.text`, one per token
    that adds text (a token that ends mid-character adds it with the next one)."""
    ids = gen.token_ids[:-1] if gen.finish_reason == "eos" else gen.token_ids
    out, at = [], 0
    for k in range(len(ids)):
        so_far = tokenizer.decode(ids[:k + 1], skip_special_tokens=True)
        if so_far.endswith("\ufffd"):
            continue
        upto = min(len(so_far), len(gen.text))
        if upto > at:
            out.append((gen.text[at:upto], k))
            at = upto
    if at < len(gen.text):
        out.append((gen.text[at:], max(0, len(ids) - 1)))
    return out


def chunks(chat, gens, prompt_tokens: int, tokenizer):
    """The stream's chunks, in order (each choice's role, its text, its finish reason)."""
    base = {"id": new_id("chatcmpl"), "object": "chat.completion.chunk",
            "created": int(time.time()), "model": chat.model, "system_fingerprint": None}
    extra = {"usage": None} if chat.include_usage else {}

    def chunk(index, delta, finish=None, logprobs=None):
        return {**base, **extra, "choices": [{"index": index, "delta": delta,
                                              "finish_reason": finish, "logprobs": logprobs}]}
    for g in gens:
        yield chunk(g.sample_index, {"role": "assistant", "content": ""})
        lp = _logprobs(g, tokenizer)["content"] if chat.logprobs else None
        last = -1
        for text, k in deltas(g, tokenizer):
            piece = {"content": lp[last + 1:k + 1], "refusal": None} if lp is not None else None
            last = k
            yield chunk(g.sample_index, {"content": text}, logprobs=piece)
        rest = {"content": lp[last + 1:], "refusal": None} if lp and lp[last + 1:] else None
        yield chunk(g.sample_index, {}, FINISH[g.finish_reason], rest)  # a stop string's
    if chat.include_usage:
        yield {**base, "choices": [], "usage": _usage(gens, prompt_tokens)}


async def _sse(items):
    """A client that leaves mid-stream cancels this generator (Starlette watches for the
    disconnect); the generation is already done, so nothing is left behind."""
    for item in items:
        yield f"data: {json.dumps(item)}\n\n"
        await asyncio.sleep(0)  # let a disconnect be noticed between chunks
    yield "data: [DONE]\n\n"


def _engine_error(exc: Exception) -> APIError:
    from corral.core.errors import CorralError

    if isinstance(exc, APIError):
        return exc
    if isinstance(exc, CorralError):
        return bad(str(exc), "messages", "invalid_request")
    return APIError(500, f"generation failed ({type(exc).__name__}: {exc}); the server keeps "
                    "running", None, "server_error")


async def _answer(request: Request, future, poll_s: float = 0.25):
    """The pool's answer; None when the client disconnected first (a request whose batch
    has not started is then dropped from the queue, never generated)."""
    wrapped = asyncio.wrap_future(future)
    while True:
        done, _ = await asyncio.wait({wrapped}, timeout=poll_s)
        if done:
            return wrapped.result()
        if await request.is_disconnected():
            future.cancel()  # False once generating: that answer is then dropped
            return None


@router.post("/chat/completions")
async def create(request: Request):
    state = request.app.state.corral
    chat = chatparams.parse(await json_body(request))
    await run_in_threadpool(state.pool.resolve, chat.model)  # 404 before queueing
    future = state.pool.submit(chat.model, chat.messages, chat.params)
    try:
        answer = await _answer(request, future)
    except Exception as exc:  # noqa: BLE001  (each becomes an OpenAI error object)
        raise _engine_error(exc) from None
    if answer is None:  # the client left while its request waited: nothing to send
        return Response(status_code=499)
    gens, prompt_tokens, tokenizer = answer
    if not chat.stream:
        return completion(chat, gens, prompt_tokens, tokenizer)
    items = list(chunks(chat, gens, prompt_tokens, tokenizer))
    return StreamingResponse(_sse(items), media_type="text/event-stream",
                             headers={"cache-control": "no-cache"})


@router.get("/chat/serving")
def serving(request: Request):
    """corral's own view of the model pool (not an OpenAI route): loaded models and their
    bytes, requests, batches and generate calls so far."""
    return {"object": "corral.serving", **request.app.state.corral.pool.snapshot()}
