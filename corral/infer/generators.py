"""Generators: one interface for anything that answers chat conversations, a local model
through the engine or an OpenAI-compatible endpoint (remote.py). Synthesis, judges and
feedback jobs take a Generator and never care which.

    gen = generator_for("smollm2-135m-instruct")          # or a run, a dir, openai:MODEL, URL#MODEL
    gens = gen.chat([[{"role": "user", "content": "hi"}]], SamplingParams(n=2))
    gen.identity(), gen.usage.as_dict()                  # for lineage and manifests
"""
from __future__ import annotations

import hashlib
from pathlib import Path

from corral.core.errors import CorralError
from corral.core.records import as_dicts
from corral.infer.engine import Engine, SamplingParams, engine_for
from corral.infer.remote import ChatClient, RequestError, Usage, is_endpoint_spec, parse_endpoint
from corral.store.runs import resolve_run, run_model_path

__all__ = ["EndpointGenerator", "Generator", "LocalGenerator", "RequestError", "Usage",
           "generator_for"]

_MODEL_FILES = (".json", ".safetensors", ".bin", ".model", ".jinja", ".txt")


class Generator:
    """Answers chat conversations. `name` is the spec it was made from; `usage` counts
    requests and tokens; `identity()` says what answered, for lineage and cache keys."""

    name: str
    usage: Usage

    def chat(self, conversations: list[list[dict]], params: SamplingParams | None = None, *,
             return_errors: bool = False) -> list:
        """For each conversation, params.n Generations. A conversation that fails alone (a
        rejected request, a template that will not render it) raises, or with
        `return_errors` stands in the result as its exception, for a job to record."""
        raise NotImplementedError

    def identity(self) -> dict:
        raise NotImplementedError

    def count_prompt_tokens(self, conversations: list[list[dict]]) -> list[int] | None:
        """Each conversation's prompt length in tokens, exactly as `chat` adds it to
        usage.prompt_tokens, or None where only totals are known (an endpoint's server
        reports usage per request, and requests run concurrently). Strategies use it to
        charge each item its own share of the compute."""
        return None

    @classmethod
    def from_engine(cls, engine: Engine, name: str = "engine",
                    identity: dict | None = None, template: str | None = None) -> LocalGenerator:
        """A generator over an engine a caller already has (a loaded policy, a test model);
        `template` renders its conversations instead of the tokenizer's chat template."""
        return LocalGenerator(engine, name, identity, template)


class LocalGenerator(Generator):
    """A local model through the one Engine. usage.requests counts conversations answered,
    prompt_tokens each rendered prompt once (its n samples share the prefill), and
    completion_tokens every sampled token."""

    def __init__(self, engine: Engine, name: str, identity: dict | None = None,
                 template: str | None = None):
        self.engine, self.name, self.usage, self.template = engine, name, Usage(), template
        model = getattr(engine.backend, "model", None)
        self._identity = identity or {"kind": "local",
                                      "model": str(getattr(model, "name_or_path", "") or name)}

    def identity(self) -> dict:
        return dict(self._identity)

    def chat(self, conversations, params=None, *, return_errors=False) -> list:
        params = params or SamplingParams()
        prompts, failed = [], {}
        for i, conversation in enumerate(conversations):
            try:
                prompts.append(self._prompt_ids(conversation))
            except CorralError:  # no chat template at all: every conversation would fail
                raise
            except Exception as exc:  # noqa: BLE001  (jinja raises many types for one chat)
                if not return_errors:
                    raise
                failed[i] = exc
        answered = iter(self.engine.generate(prompts, params) if prompts else [])
        out = [failed[i] if i in failed else next(answered) for i in range(len(conversations))]
        self._count(prompts, out)
        for k, gens in enumerate(out):  # prompt_index means the caller's conversation
            if not isinstance(gens, Exception):
                for g in gens:
                    g.prompt_index = k
        return out

    def choice_logprobs(self, conversations, options: list[str],
                        batch_size: int = 8) -> list[list[float]]:
        """For each conversation, the log-probability that the reply starts with each option
        (the option's first token after the generation prompt): one forward pass, no
        sampling — how a small model is made to give a verdict it would not write out.
        Counted as one request per conversation, its prompt tokens and no completion."""
        import torch

        model = getattr(self.engine.backend, "model", None)
        if model is None:
            raise CorralError(f"{self.name}: this engine exposes no model to score options "
                              "with; use generated verdicts instead")
        tokenizer = self.engine.tokenizer
        first = [tokenizer(o, add_special_tokens=False)["input_ids"][0] for o in options]
        prompts = [self._prompt_ids(c) for c in conversations]
        device = next(model.parameters()).device
        out = []
        with torch.no_grad():
            for at in range(0, len(prompts), batch_size):
                chunk = prompts[at:at + batch_size]
                width = max(len(p) for p in chunk)
                ids = torch.zeros(len(chunk), width, dtype=torch.long)
                mask = torch.zeros(len(chunk), width, dtype=torch.long)
                for k, p in enumerate(chunk):  # left padding: every last position is the prompt's
                    ids[k, width - len(p):] = torch.tensor(p)
                    mask[k, width - len(p):] = 1
                positions = (mask.cumsum(-1) - 1).clamp(min=0)
                logits = model(input_ids=ids.to(device), attention_mask=mask.to(device),
                               position_ids=positions.to(device)).logits[:, -1].float()
                logp = torch.log_softmax(logits, -1)[:, first]
                out += logp.tolist()
        self.usage.requests += len(prompts)
        self.usage.prompt_tokens += sum(len(p) for p in prompts)
        return out

    def count_prompt_tokens(self, conversations) -> list[int]:
        return [len(self._prompt_ids(c)) for c in conversations]

    def _prompt_ids(self, conversation) -> list[int]:
        text = self.engine.render_chat(as_dicts(conversation), self.template)
        tokenizer = self.engine.tokenizer
        return list(tokenizer(text, add_special_tokens=False)["input_ids"])

    def _count(self, prompts, out) -> None:
        self.usage.requests += len(prompts)
        self.usage.prompt_tokens += sum(len(p) for p in prompts)
        self.usage.completion_tokens += sum(len(g.token_ids) for gens in out
                                            if not isinstance(gens, Exception) for g in gens)


class EndpointGenerator(Generator):
    """An OpenAI-compatible endpoint (see remote.py for the spec syntax and retries)."""

    def __init__(self, spec: str, client: ChatClient):
        self.name, self.client = spec, client

    @property
    def usage(self) -> Usage:
        return self.client.usage

    def identity(self) -> dict:
        return self.client.endpoint.identity()

    def chat(self, conversations, params=None, *, return_errors=False) -> list:
        return self.client.chat(conversations, params, return_errors=return_errors)


def generator_for(spec: str, root: str = "runs", batch_size: int = 16, *,
                  concurrency: int = 8, timeout_s: float = 120.0, max_retries: int = 5,
                  key: str = "generator") -> Generator:
    """The generator `spec` names: an endpoint spec (openai:MODEL, http(s)://HOST/v1#MODEL),
    else a model loaded for inference: the embedded model name, a run under `root`, a local
    model directory or a hub id. `batch_size` bounds a local engine's decode rows;
    concurrency, timeout_s and max_retries apply to an endpoint. `key` names the setting the
    user gave the spec in (for error messages)."""
    if not spec or not spec.strip():
        raise CorralError(f"{key} is empty; give a model name, a run, a model directory or an "
                          "endpoint such as openai:MODEL.")
    if is_endpoint_spec(spec):
        client = ChatClient(parse_endpoint(spec), concurrency=concurrency, timeout_s=timeout_s,
                            max_retries=max_retries)
        return EndpointGenerator(spec, client)
    from corral.core.sections import ModelConfig
    from corral.model.policy import load_policy

    path = run_model_path(spec, root)
    policy = load_policy(ModelConfig(name=path), None, for_training=False, key=key)
    engine = engine_for(policy, batch_size=batch_size)
    return LocalGenerator(engine, spec, local_identity(spec, path, root))


def local_identity(spec: str, path: str, root: str = "runs") -> dict:
    """kind, the model as loaded (an absolute directory, or a hub id), a fingerprint of a
    directory's files (so a model retrained in place is not mistaken for the old one) and, for
    a run, the run directory and its lineage.json."""
    identity: dict = {"kind": "local", "model": path}
    model_dir = Path(path).expanduser()
    if model_dir.is_file():  # a .gguf file
        identity["model"] = str(model_dir.resolve())
    if model_dir.is_dir():
        identity["model"] = str(model_dir.resolve())
        identity["fingerprint"] = _fingerprint(model_dir)
    run = resolve_run(spec, root)
    if run is not None:
        identity["run"] = str(run.resolve())
        lineage = run / "lineage.json"
        identity["lineage"] = str(lineage.resolve()) if lineage.is_file() else None
    return identity


def _fingerprint(model_dir: Path) -> str:
    # Names, sizes and mtimes, not contents: hashing gigabytes of weights per job is too slow.
    digest = hashlib.sha256()
    for f in sorted(model_dir.rglob("*")):
        if f.is_file() and f.suffix in _MODEL_FILES:
            st = f.stat()
            digest.update(f"{f.relative_to(model_dir)}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:16]
