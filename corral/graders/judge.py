"""Judge-model graders of the OpenAI grader JSON (score_model, label_model).

They ask through the one judge, `graders.judging.Judge`, over a Generator: a batch of samples
is ONE `Generator.chat` call, so a local model answers it in one generation pass and an
endpoint answers it concurrently, with `infer/remote`'s retries and Retry-After. Replies are
read by `judge_prompts.parse_score` / `parse_label`.

The `judge` a grader is given may be a Generator, a `Judge` (its cache and call budget then
apply), or the older callable `judge(messages, sampling_params) -> reply` (with an optional
`.batch(conversations, sampling_params)`). `http_judge`, `local_judge` and `default_judge`
make callables of that last kind, backed by a Generator that is made at the first grading.

The judge's model, without one given: $CORRAL_JUDGE_MODEL, any generator spec (a corral
model name, a directory, a run, `openai:MODEL`, `http(s)://HOST/v1#MODEL`; endpoint keys in
$CORRAL_OPENAI_API_KEY / $OPENAI_API_KEY), else the grader's `model`, else the embedded
SmolLM2. The older $CORRAL_JUDGE_BASE_URL and $CORRAL_JUDGE_API_KEY are still read, with a note.
"""
from __future__ import annotations

import os
import warnings

from corral.core.config import ConfigNote
from corral.core.errors import CorralError
from corral.graders.base import Score
from corral.graders.judge_prompts import parse_label, parse_score
from corral.graders.judging import Judge
from corral.graders.spec import (
    JudgeFn,
    SpecGrader,
    _is_number,
    _threshold_errors,
    _Unrenderable,
    render,
    template_errors,
)
from corral.infer.engine import Generation, SamplingParams
from corral.infer.generators import EndpointGenerator, Generator
from corral.infer.remote import ChatClient, Endpoint, Usage, is_endpoint_spec

__all__ = ["DEFAULT_JUDGE_MODEL", "GeneratorJudge", "Judge", "JudgeError", "JudgeFn",
           "LabelModelGrader", "ScoreModelGrader", "default_judge", "http_judge", "judge_params",
           "local_judge", "parse_label", "parse_score"]

GRADER_BATCH = 1024  # samples per chat call: a grade_batch is one call, as before


class JudgeError(Exception):
    """A judge call failed; `kind` is one of ERROR_FLAGS."""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind


def _message_errors(messages, path: str) -> list[str]:
    if not isinstance(messages, list) or not messages:
        return [f"{path}: expected a non-empty list of messages with 'role' and 'content'"]
    errors = []
    for i, message in enumerate(messages):
        where = f"{path}[{i}]"
        if not isinstance(message, dict) or "content" not in message:
            errors.append(f"{where}: expected an object with 'role' and 'content'")
            continue
        if message.get("role", "user") not in ("system", "developer", "user", "assistant"):
            errors.append(f"{where}.role: unknown role {message.get('role')!r}; use system, "
                          "developer, user or assistant")
        content = message["content"]
        if isinstance(content, list):  # OpenAI's [{"type": "input_text", "text": ...}] form
            for j, part in enumerate(content):
                text = part.get("text") if isinstance(part, dict) else None
                errors += template_errors(text, f"{where}.content[{j}].text")
        else:
            errors += template_errors(content, f"{where}.content")
    return errors


# A failed judge call's kind (infer/remote's RequestError.kind) as OpenAI's grader error.
_ERROR_KIND = {"refusal": "model_grader_refusal_error", "server_error": "model_grader_server_error"}


class _JudgeGrader(SpecGrader):
    """A grader that asks a judge model (see the module docstring for what `judge` may be)."""

    def __init__(self, spec, judge=None):
        super().__init__(spec)
        self.judge = judge or default_judge(spec.get("model"))
        self.asker = as_judge(self.judge, self._params())

    def _instruction(self) -> str:  # pragma: no cover - abstract
        raise NotImplementedError

    def _parse(self, reply: str) -> tuple[object, str]:  # pragma: no cover - abstract
        raise NotImplementedError

    def _messages(self, item, sample) -> list[dict]:
        messages = []
        for message in self.spec["input"]:
            content = message["content"]
            if isinstance(content, list):  # local judges read text only: join the text parts
                content = "\n".join(part["text"] for part in content)
            messages.append({"role": message.get("role", "user"),
                             "content": render(content, item, sample)})
        # OpenAI constrains the judge's output format itself; a local judge gets told instead.
        if messages[0]["role"] in ("system", "developer"):
            messages[0]["content"] += "\n\n" + self._instruction()
        else:
            messages.insert(0, {"role": "system", "content": self._instruction()})
        return messages

    def _grade(self, item, sample):
        return self.grade_batch([(item, sample)])[0]

    def grade_batch(self, pairs):
        """The whole batch in one judge call (see the module docstring)."""
        scores, asked, messages = [None] * len(pairs), [], []
        for k, (item, sample) in enumerate(pairs):
            try:
                messages.append(self._messages(item, sample))
                asked.append(k)
            except _Unrenderable as exc:
                scores[k] = self._fail(exc.kind, str(exc))
        if not messages:
            return scores
        if not isinstance(self.asker.generator, (_CallableGenerator, EndpointGenerator)):
            messages = _system_for_developer(messages)  # a chat template knows "system"
        try:
            verdicts = self.asker.ask(messages, self._parse, judge_params(self._params()),
                                      kind=self.type)
        except CorralError:  # a judge that cannot be set up stops the run: every score would be 0
            raise
        except Exception as exc:  # noqa: BLE001 - an injected judge may fail any way; score 0
            failed = self._fail("model_grader_server_error",
                                f"the judge failed: {type(exc).__name__}: {exc}")
            verdicts = None
        for n, k in enumerate(asked):
            if verdicts is None:
                scores[k] = failed
            elif verdicts[n].error.startswith("the judge failed"):
                scores[k] = self._fail(_ERROR_KIND.get(verdicts[n].failure,
                                                       verdicts[n].failure
                                                       or "model_grader_server_error"),
                                       verdicts[n].error)
            else:
                scores[k] = self._score(verdicts[n].reply)
        return scores

    def _params(self) -> dict:
        return dict(self.spec.get("sampling_params", {}))

    def _score(self, reply: str) -> Score:  # pragma: no cover - abstract
        raise NotImplementedError


class ScoreModelGrader(_JudgeGrader):
    type = "score_model"
    required = ("input",)
    optional = ("model", "range", "sampling_params", "pass_threshold")

    def __init__(self, spec, judge=None):
        super().__init__(spec, judge)
        self.low, self.high = spec.get("range", (0.0, 1.0))
        self.has_pass = "pass_threshold" in spec

    @classmethod
    def value_errors(cls, spec, path):
        errors = _message_errors(spec["input"], f"{path}.input") + _threshold_errors(spec, path)
        bounds = spec.get("range", [0, 1])
        if not (isinstance(bounds, list) and len(bounds) == 2 and all(map(_is_number, bounds))
                and bounds[0] < bounds[1]):
            errors.append(f"{path}.range: expected [low, high] with low < high, got {bounds!r}")
        if not isinstance(spec.get("sampling_params", {}), dict):
            errors.append(f"{path}.sampling_params: expected an object such as "
                          '{"temperature": 0}')
        return errors

    def _instruction(self):
        return (f"Reply with only a number from {self.low:g} to {self.high:g}, "
                'or JSON {"result": <number>}.')

    def _parse(self, reply):
        return parse_score(reply), "no score found in the judge's reply"

    def _score(self, reply):
        raw = parse_score(reply)
        if raw is None:
            return self._fail("model_grader_parse_error",
                              f"no score found in the judge's reply {reply[:300]!r}")
        value = min(max(raw, self.low), self.high)
        threshold = self.spec.get("pass_threshold")
        passed = None if threshold is None else value >= threshold
        return Score(value, {"raw": raw, "reply": reply[:1000]}, passed=passed)


class LabelModelGrader(_JudgeGrader):
    type = "label_model"
    required = ("input", "labels", "passing_labels")
    optional = ("model", "sampling_params")
    has_pass = True

    @classmethod
    def value_errors(cls, spec, path):
        errors = _message_errors(spec["input"], f"{path}.input")
        labels, passing = spec["labels"], spec["passing_labels"]
        for key, value in (("labels", labels), ("passing_labels", passing)):
            if not (isinstance(value, list) and value and all(isinstance(v, str) for v in value)):
                errors.append(f"{path}.{key}: expected a non-empty list of strings")
        if not errors:
            errors += [f"{path}.passing_labels: {label!r} is not one of labels {labels}; "
                       "add it to labels or remove it" for label in passing if label not in labels]
        return errors

    def _instruction(self):
        return ("Reply with exactly one of these labels and nothing else: "
                f"{', '.join(self.spec['labels'])}.")

    def _parse(self, reply):
        return parse_label(reply, self.spec["labels"]), "no single label in the judge's reply"

    def _score(self, reply):
        label = parse_label(reply, self.spec["labels"])
        if label is None:
            return self._fail("model_grader_parse_error",
                              f"no single label found in the judge's reply {reply[:300]!r}")
        passed = label in self.spec["passing_labels"]
        return Score(float(passed), {"label": label, "reply": reply[:1000]},
                     passed=passed, answer=label)


def judge_params(sampling_params: dict, max_new_tokens: int = 512) -> SamplingParams:
    """The grader JSON's sampling_params as corral's: temperature default 0 (greedy),
    max_completions_tokens (or max_tokens) default `max_new_tokens`, top_p, seed."""
    sp = sampling_params or {}
    limit = sp.get("max_completions_tokens") or sp.get("max_tokens") or max_new_tokens
    seed = sp.get("seed")
    return SamplingParams(max_new_tokens=int(limit), temperature=float(sp.get("temperature", 0)),
                          top_p=float(sp.get("top_p", 1.0)),
                          seed=None if seed is None else int(seed))


def as_judge(judge, sampling_params: dict | None = None) -> Judge:
    """The one Judge that a grader asks through, from whatever it was given: a Judge as it
    is, a Generator, or an older callable judge (its raw sampling_params passed on)."""
    if isinstance(judge, Judge):
        return judge
    generator = judge if isinstance(judge, Generator) else \
        _CallableGenerator(judge, dict(sampling_params or {}))
    return Judge(generator, retries=0, batch_size=GRADER_BATCH)


class GeneratorJudge:
    """A callable judge `judge(messages, sampling_params) -> reply` backed by a Generator
    that `make()` builds at the first call; `batch` asks many conversations in one
    `Generator.chat` call (a failed one stands in the list as its exception)."""

    def __init__(self, make, name: str, max_new_tokens: int = 512):
        self._make, self.name, self._generator = make, name, None
        self.max_new_tokens = max_new_tokens

    @property
    def generator(self) -> Generator:
        if self._generator is None:
            self._generator = self._make()
        return self._generator

    def batch(self, conversations: list[list[dict]], sampling_params: dict) -> list:
        generator = self.generator
        if not isinstance(generator, EndpointGenerator):  # a chat template knows "system"
            conversations = _system_for_developer(conversations)
        results = generator.chat(conversations,
                                 judge_params(sampling_params, self.max_new_tokens),
                                 return_errors=True)
        return [r if isinstance(r, Exception) else r[0].text for r in results]

    def __call__(self, messages: list[dict], sampling_params: dict) -> str:
        reply = self.batch([messages], sampling_params)[0]
        if isinstance(reply, Exception):
            raise JudgeError("model_grader_server_error", str(reply))
        return reply


def _system_for_developer(conversations: list[list[dict]]) -> list[list[dict]]:
    return [[{**m, "role": "system" if m["role"] == "developer" else m["role"]}
             for m in messages] for messages in conversations]


class _CallableGenerator(Generator):
    """An older callable judge seen as a Generator, so the one Judge can ask it: its
    `.batch` answers a whole chat call, else it is called once per conversation; it gets
    the grader's raw sampling_params, as it always did."""

    def __init__(self, judge, sampling_params: dict):
        self.judge, self.sampling_params = judge, sampling_params
        self.name = getattr(judge, "name", None) or getattr(judge, "__name__", "judge")
        self.usage = Usage()

    def identity(self) -> dict:
        return {"kind": "callable", "name": str(self.name)}

    def chat(self, conversations, params=None, *, return_errors=False) -> list:
        conversations = [list(c) for c in conversations]
        batch = getattr(self.judge, "batch", None)
        if batch is not None:
            try:
                replies = list(batch(conversations, self.sampling_params))
                if len(replies) != len(conversations):
                    raise RuntimeError(f"{len(replies)} replies for {len(conversations)} prompts")
            except CorralError:
                raise
            except Exception as exc:  # noqa: BLE001 - every prompt of the call failed
                replies = [exc] * len(conversations)
        else:
            replies = []
            for messages in conversations:
                try:
                    replies.append(self.judge(messages, self.sampling_params))
                except CorralError:
                    raise
                except Exception as exc:  # noqa: BLE001 - an injected judge may fail any way
                    replies.append(exc)
        self.usage.requests += len(conversations)
        out = [r if isinstance(r, Exception) else [Generation(str(r), [], [], "stop", i, 0)]
               for i, r in enumerate(replies)]
        failed = next((r for r in out if isinstance(r, Exception)), None)
        if failed is not None and not return_errors:
            raise failed
        return out


def http_judge(base_url: str, api_key: str | None, model: str, timeout_s: float = 120.0,
               max_retries: int = 2, concurrency: int = 8, backoff_s: float = 0.5
               ) -> GeneratorJudge:
    """A judge backed by an OpenAI-compatible server: POST {base_url}/chat/completions
    through `infer/remote`'s client (retries, Retry-After, `concurrency` requests at once)."""
    endpoint = Endpoint(base_url.strip().rstrip("/").removesuffix("/chat/completions"),
                        model, api_key)

    def make() -> Generator:
        client = ChatClient(endpoint, timeout_s=timeout_s, max_retries=max_retries,
                            concurrency=concurrency, backoff_s=backoff_s)
        return EndpointGenerator(f"{endpoint.base_url}#{model}", client)

    return GeneratorJudge(make, f"{endpoint.base_url}#{model}")


DEFAULT_JUDGE_MODEL = "smollm2-135m-instruct"
_JUDGE_HELP = ("set CORRAL_JUDGE_MODEL to a local model (a corral model name, a directory or a "
               "run) or an endpoint (openai:MODEL, or http(s)://HOST/v1#MODEL, its key in "
               "CORRAL_OPENAI_API_KEY); the older CORRAL_JUDGE_BASE_URL (with "
               "CORRAL_JUDGE_API_KEY) is still read")


def default_judge(model: str | None = None, root: str = "runs") -> GeneratorJudge:
    """The judge of a grader built without one: $CORRAL_JUDGE_MODEL, else the grader's
    `model`, else the embedded SmolLM2; any generator spec (local or endpoint). The older
    $CORRAL_JUDGE_BASE_URL (+ $CORRAL_JUDGE_API_KEY, else $OPENAI_API_KEY) still names a
    server, with a note. Nothing is loaded until the first sample is graded."""
    chosen = os.environ.get("CORRAL_JUDGE_MODEL") or model
    base_url = os.environ.get("CORRAL_JUDGE_BASE_URL")
    old_key = os.environ.get("CORRAL_JUDGE_API_KEY")
    if base_url:
        warnings.warn(ConfigNote("CORRAL_JUDGE_BASE_URL is an older name: set "
                                 "CORRAL_JUDGE_MODEL=URL#MODEL (key in CORRAL_OPENAI_API_KEY)"),
                      stacklevel=2)
        if not chosen:
            raise CorralError("CORRAL_JUDGE_BASE_URL is set but no judge model is named; set "
                              "CORRAL_JUDGE_MODEL or the grader's \"model\".")
        key = old_key or os.environ.get("CORRAL_OPENAI_API_KEY") or \
            os.environ.get("OPENAI_API_KEY")
        return http_judge(base_url, key, chosen, max_retries=5, backoff_s=1.0)
    spec = chosen or DEFAULT_JUDGE_MODEL
    if old_key and is_endpoint_spec(spec):
        warnings.warn(ConfigNote("CORRAL_JUDGE_API_KEY is an older name: set "
                                 "CORRAL_OPENAI_API_KEY"), stacklevel=2)
    return GeneratorJudge(lambda: _judge_generator(spec, root, old_key), spec)


def local_judge(model: str, max_new_tokens: int = 512) -> GeneratorJudge:
    """A judge answered by a local model through corral's generation engine. The grader's
    sampling_params apply (temperature default 0 = greedy; max_completions_tokens, top_p,
    seed); a "developer" message is given to the model as "system". The model loads at the
    first batch and stays with this judge (every grader of one spec shares it)."""
    return GeneratorJudge(lambda: _judge_generator(model, "runs", None), model, max_new_tokens)


def _judge_generator(spec: str, root: str, api_key: str | None) -> Generator:
    from corral.infer.generators import generator_for
    from corral.infer.remote import parse_endpoint

    if is_endpoint_spec(spec):
        environ = dict(os.environ, CORRAL_OPENAI_API_KEY=api_key) if api_key else None
        client = ChatClient(parse_endpoint(spec, environ))
        return EndpointGenerator(spec, client)
    try:
        return generator_for(spec, root=root, key="CORRAL_JUDGE_MODEL")
    except CorralError as exc:
        raise CorralError(f"judge model {spec!r} cannot be loaded here ({exc}); "
                          f"{_JUDGE_HELP}.") from None
