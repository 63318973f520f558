"""Judge-model graders of the OpenAI grader JSON (score_model, label_model): reply parsing,
message checks, `http_judge` for an OpenAI-compatible server, `local_judge` for a local model
through the generation engine, and `default_judge`, which picks one from the environment."""
from __future__ import annotations

import json
import os
import re
import urllib.error
import urllib.request

from corral.core.errors import CorralError
from corral.graders.base import Score
from corral.graders.spec import (
    Judge,
    SpecGrader,
    _is_number,
    _threshold_errors,
    _Unrenderable,
    render,
    template_errors,
)


class JudgeError(Exception):
    """A judge call failed; `kind` is one of ERROR_FLAGS."""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind


_FENCE = re.compile(r"^```\w*\s*|\s*```$")
# "7/10" is not read as 10: a number right after "/" or a digit does not count.
_NUMBER_AT_END = re.compile(r"(?<![\d/.])([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*\.?\s*$")


def _json_result(text: str):
    """The reply as JSON, or the `result` of a JSON object in it; None when there is none."""
    candidates = [text] + re.findall(r"\{[^{}]*\}", text)
    for candidate in candidates:
        try:
            value = json.loads(candidate)
        except ValueError:
            continue
        if isinstance(value, dict):
            value = value.get("result")
        if value is not None:
            return value
    return None


def parse_score(reply: str) -> float | None:
    """A number, JSON `{"result": x}` (also inside text or a ``` fence), or a number that ends
    the reply ("... so the score is 0.8"); None when the reply holds none of these."""
    text = _FENCE.sub("", reply.strip())
    value = _json_result(text)
    if _is_number(value):
        return float(value)
    match = _NUMBER_AT_END.search(text)
    return float(match.group(1)) if match else None


def parse_label(reply: str, labels: list[str]) -> str | None:
    """The label the reply names: the whole reply, JSON `{"result": label}`, or the only label
    that occurs in it as a word (case-insensitive); None when ambiguous or absent."""
    by_folded = {label.casefold(): label for label in labels}
    text = _FENCE.sub("", reply.strip())
    for candidate in (text.strip("\"'`. \n"), _json_result(text)):
        if isinstance(candidate, str) and candidate.strip().casefold() in by_folded:
            return by_folded[candidate.strip().casefold()]
    found = [label for label in labels
             if re.search(rf"(?<!\w){re.escape(label)}(?!\w)", text, re.IGNORECASE)]
    return found[0] if len(found) == 1 else None


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


class _JudgeGrader(SpecGrader):
    """A grader that asks a judge model; the judge is injected, so any engine can serve it."""

    def __init__(self, spec, judge=None):
        super().__init__(spec)
        self.judge = judge or default_judge(spec.get("model"))

    def _instruction(self) -> str:  # pragma: no cover - abstract
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
        messages = self._messages(item, sample)
        return self._call(lambda: [self.judge(messages, self._params())], 1)[0]

    def grade_batch(self, pairs):
        """One judge call for the whole batch when the judge has `.batch` (the local judge:
        one generation pass over every prompt), else one call per sample."""
        batch = getattr(self.judge, "batch", None)
        if batch is None:
            return [self.grade(item, sample) for item, sample in pairs]
        scores, asked, messages = [None] * len(pairs), [], []
        for k, (item, sample) in enumerate(pairs):
            try:
                messages.append(self._messages(item, sample))
                asked.append(k)
            except _Unrenderable as exc:
                scores[k] = self._fail(exc.kind, str(exc))
        for k, score in zip(asked, self._call(lambda: batch(messages, self._params()),
                                              len(asked))):
            scores[k] = score
        return scores

    def _params(self) -> dict:
        return dict(self.spec.get("sampling_params", {}))

    def _call(self, ask, count: int) -> list[Score]:
        """Replies -> scores; a failed call scores each of its `count` samples 0."""
        try:
            replies = list(ask())
            if len(replies) != count:
                raise RuntimeError(f"{len(replies)} replies for {count} prompts")
            return [self._score(reply) for reply in replies]
        except CorralError:  # a judge that cannot be set up stops the run: every score would be 0
            raise
        except JudgeError as exc:
            return [self._fail(exc.kind, str(exc))] * count
        except Exception as exc:  # noqa: BLE001 - an injected judge may fail any way; score 0
            return [self._fail("model_grader_server_error",
                               f"the judge failed: {type(exc).__name__}: {exc}")] * count

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

    def _score(self, reply):
        label = parse_label(reply, self.spec["labels"])
        if label is None:
            return self._fail("model_grader_parse_error",
                              f"no single label found in the judge's reply {reply[:300]!r}")
        passed = label in self.spec["passing_labels"]
        return Score(float(passed), {"label": label, "reply": reply[:1000]},
                     passed=passed, answer=label)


def http_judge(base_url: str, api_key: str | None, model: str, timeout_s: float = 120.0) -> Judge:
    """A judge backed by an OpenAI-compatible server: POST {base_url}/chat/completions."""
    url = base_url.rstrip("/") + "/chat/completions"

    def judge(messages: list[dict], sampling_params: dict) -> str:
        params = dict(sampling_params)
        if "max_completions_tokens" in params:  # the grader JSON's name for it
            params["max_tokens"] = params.pop("max_completions_tokens")
        headers = {"Content-Type": "application/json"}
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        body = json.dumps({"model": model, "messages": messages, **params}).encode()
        request = urllib.request.Request(url, data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=timeout_s) as response:
                message = json.loads(response.read())["choices"][0]["message"]
        except urllib.error.HTTPError as exc:
            raise JudgeError("model_grader_server_error",
                             f"{url} answered HTTP {exc.code}: {exc.read()[:300]!r}") from None
        except (OSError, ValueError, KeyError, IndexError, TypeError) as exc:
            raise JudgeError("model_grader_server_error", f"{url}: {exc!r}") from None
        if message.get("refusal"):
            raise JudgeError("model_grader_refusal_error",
                             f"the judge refused: {message['refusal']}")
        return message.get("content") or ""

    return judge


DEFAULT_JUDGE_MODEL = "smollm2-135m-instruct"
_JUDGE_HELP = ("set CORRAL_JUDGE_MODEL to a local model (a corral model name, a directory or a "
               "run) or CORRAL_JUDGE_BASE_URL to an OpenAI-compatible server (key in "
               "CORRAL_JUDGE_API_KEY)")


def default_judge(model: str | None = None) -> Judge:
    """The judge of a grader built without one. With $CORRAL_JUDGE_BASE_URL set: that server
    (key from $CORRAL_JUDGE_API_KEY, else $OPENAI_API_KEY); otherwise a local model through the
    generation engine. The model is $CORRAL_JUDGE_MODEL, else the grader's `model`, else the
    embedded SmolLM2. Nothing is loaded until the first sample is graded."""
    chosen = os.environ.get("CORRAL_JUDGE_MODEL") or model
    base_url = os.environ.get("CORRAL_JUDGE_BASE_URL")
    if base_url:
        if not chosen:
            raise CorralError("CORRAL_JUDGE_BASE_URL is set but no judge model is named; set "
                              "CORRAL_JUDGE_MODEL or the grader's \"model\".")
        key = os.environ.get("CORRAL_JUDGE_API_KEY") or os.environ.get("OPENAI_API_KEY")
        return http_judge(base_url, key, chosen)
    return local_judge(chosen or DEFAULT_JUDGE_MODEL)


def local_judge(model: str, max_new_tokens: int = 512) -> Judge:
    """A judge answered by a local model through corral's generation engine. The grader's
    sampling_params apply (temperature default 0 = greedy; max_completions_tokens, top_p,
    seed); a "developer" message is given to the model as "system". The model loads at the
    first batch and stays with this judge (every grader of one spec shares it)."""
    from corral.infer.engine import SamplingParams

    engine = []  # loaded on first use

    def batch(conversations: list[list[dict]], sp: dict) -> list[str]:
        limit = sp.get("max_completions_tokens") or sp.get("max_tokens") or max_new_tokens
        params = SamplingParams(max_new_tokens=int(limit),
                                temperature=float(sp.get("temperature", 0)),
                                top_p=float(sp.get("top_p", 1.0)), seed=int(sp.get("seed", 0)))
        chats = [[{"role": "system" if m["role"] == "developer" else m["role"],
                   "content": m["content"]} for m in messages] for messages in conversations]
        if not engine:
            engine.append(_local_engine(model))
        return [gens[0].text for gens in engine[0].generate_chat(chats, params)]

    def judge(messages: list[dict], sampling_params: dict) -> str:
        return batch([messages], sampling_params)[0]

    judge.batch = batch  # grade_batch asks for all its samples in one generation pass
    return judge


def _local_engine(model: str):
    from corral.core.sections import ModelConfig
    from corral.infer.engine import engine_for
    from corral.model.policy import load_policy

    try:
        policy = load_policy(ModelConfig(name=model), None, for_training=False)
    except CorralError as exc:
        raise CorralError(f"judge model {model!r} cannot be loaded here ({exc}); "
                          f"{_JUDGE_HELP}.") from None
    return engine_for(policy)
