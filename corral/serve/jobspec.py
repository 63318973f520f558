"""A `POST /v1/fine_tuning/jobs` body -> the job's spec, checked field by field before
anything is stored; and the spec -> corral's method and config overrides (`overrides`).

The mapping of OpenAI's hyperparameters onto corral's keys (docs/serve.md):
- `n_epochs` -> `train.epochs`; "auto" -> corral's default (1).
- `batch_size` (examples) -> `train.batch_tokens` = batch_size x `data.max_length` (corral
  packs micro-batches by a token budget, so a batch holds at most that many full-length
  examples); "auto" -> corral's default budget (4096 tokens).
- `learning_rate_multiplier` -> `train.lr` = multiplier x the base rate, which is corral's
  default `train.lr` (2e-4, a LoRA rate) unless the operator set `train.lr` with `--set`;
  "auto" -> multiplier 1.
- dpo `beta` -> `dpo.beta`; "auto" -> corral's default for the loss (0.1 for sigmoid).
- `seed` -> `train.seed` (a job without one gets a random seed, shown in the job).
Accepted but ignored (each listed in the job's events): `integrations`."""
from __future__ import annotations

import re
import secrets

from corral.serve.errors import bad

FIELDS = ("model", "training_file", "validation_file", "suffix", "seed", "metadata",
          "method", "hyperparameters", "integrations")
IGNORED = ("integrations",)
HYPER = {"supervised": ("n_epochs", "batch_size", "learning_rate_multiplier"),
         "dpo": ("n_epochs", "batch_size", "learning_rate_multiplier", "beta")}
# name: (type, low, high) — inclusive bounds
LIMITS = {"n_epochs": (int, 1, 1000), "batch_size": (int, 1, 256),
          "learning_rate_multiplier": (float, 1e-6, 100.0), "beta": (float, 1e-6, 2.0)}
METHODS = {"supervised": "sft", "dpo": "dpo"}
_SUFFIX = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


def parse(body, file_ok) -> dict:
    """The spec of a create request; `file_ok(id, param)` raises unless the file is usable."""
    if not isinstance(body, dict):
        raise bad("the request body must be a JSON object with 'model' and 'training_file'")
    unknown = [k for k in body if k not in FIELDS]
    if unknown:
        raise bad(f"unrecognized request argument supplied: {unknown[0]}; accepted: "
                  f"{', '.join(FIELDS)}", unknown[0], "unknown_parameter")
    model = _string(body, "model", required=True, limit=512)
    training = _string(body, "training_file", required=True, limit=80)
    validation = _string(body, "validation_file", limit=80)
    for param, ident in (("training_file", training), ("validation_file", validation)):
        if ident is not None:
            file_ok(ident, param)
    suffix = _string(body, "suffix", limit=64)
    if suffix is not None and not _SUFFIX.match(suffix):
        raise bad("suffix must be 1-64 letters, digits, '_', '.' or '-'", "suffix")
    kind, hyper = _method(body)
    return {"model": model, "training_file": training, "validation_file": validation,
            "suffix": suffix, "seed": _seed(body.get("seed")), "metadata":
            _metadata(body.get("metadata")), "type": kind, "method": METHODS[kind],
            "hyperparameters": hyper,
            "ignored": [k for k in IGNORED if body.get(k) not in (None, [], {})]}


def _string(body: dict, key: str, required: bool = False, limit: int = 512) -> str | None:
    value = body.get(key)
    if value is None:
        if required:
            raise bad(f"missing required parameter '{key}'", key, "missing_required_parameter")
        return None
    if not isinstance(value, str) or not value or len(value) > limit or "\x00" in value:
        raise bad(f"'{key}' must be a non-empty string of at most {limit} characters", key,
                  "invalid_type")
    return value


def _seed(value) -> int:
    if value is None:
        return secrets.randbelow(2**31)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**31:
        raise bad("seed must be an integer between 0 and 2147483647", "seed", "invalid_type")
    return value


def _metadata(value) -> dict | None:
    if value is None:
        return None
    if not isinstance(value, dict) or len(value) > 16 or not all(
            isinstance(k, str) and isinstance(v, str) and 0 < len(k) <= 64 and len(v) <= 512
            for k, v in value.items()):
        raise bad("metadata must be an object of at most 16 string keys (64 characters) and "
                  "string values (512 characters)", "metadata", "invalid_type")
    return value


def _method(body: dict) -> tuple[str, dict]:
    """(type, hyperparameters as given, "auto" filled in) from `method`, or the deprecated
    top-level `hyperparameters` (supervised)."""
    method = body.get("method")
    if method is None:
        return "supervised", _hyper(body.get("hyperparameters"), "supervised",
                                    "hyperparameters")
    if not isinstance(method, dict):
        raise bad("method must be an object such as {\"type\": \"supervised\"}", "method")
    kind = method.get("type")
    if kind == "reinforcement":
        raise bad("method.type 'reinforcement' is not available on this corral server yet; "
                  "use 'supervised' or 'dpo'", "method.type", "unsupported_method")
    if kind not in METHODS:
        raise bad(f"method.type must be 'supervised' or 'dpo', got {kind!r}", "method.type")
    extra = [k for k in method if k not in ("type", kind)]
    if extra:
        raise bad(f"unrecognized argument method.{extra[0]} for method.type '{kind}'",
                  f"method.{extra[0]}", "unknown_parameter")
    if body.get("hyperparameters") is not None:
        raise bad("give hyperparameters in method.{kind}.hyperparameters, not both there and "
                  "at the top level", "hyperparameters")
    inner = method.get(kind) or {}
    if not isinstance(inner, dict) or any(k != "hyperparameters" for k in inner):
        raise bad(f"method.{kind} must be an object holding only 'hyperparameters'",
                  f"method.{kind}")
    return kind, _hyper(inner.get("hyperparameters"), kind, f"method.{kind}.hyperparameters")


def _hyper(value, kind: str, where: str) -> dict:
    if value is None:
        value = {}
    if not isinstance(value, dict):
        raise bad(f"{where} must be an object", where)
    out = {}
    for key, got in value.items():
        if key not in HYPER[kind]:
            raise bad(f"unknown hyperparameter {where}.{key}; {kind} accepts "
                      f"{', '.join(HYPER[kind])}", f"{where}.{key}", "unknown_parameter")
        out[key] = _number(got, key, f"{where}.{key}")
    return {key: out.get(key, "auto") for key in HYPER[kind]}


def _number(value, key: str, param: str):
    kind, low, high = LIMITS[key]
    if value == "auto":
        return value
    ok = not isinstance(value, bool) and isinstance(value, (int, float) if kind is float
                                                    else int)
    if not ok or not low <= value <= high:
        what = "an integer" if kind is int else "a number"
        raise bad(f"{param} must be \"auto\" or {what} from {low:g} to {high:g}, got "
                  f"{value!r}", param, "invalid_value")
    return kind(value)


def overrides(spec: dict, paths: dict, base_lr: float) -> list[str]:
    """corral config overrides of the job: `paths` has model, train, validation, run_root,
    run_name; the operator's own overrides come after these in the worker."""
    hyper = spec["hyperparameters"]
    out = [f"model.name={paths['model']}", f"data.train={paths['train']}",
           f"run.root={paths['run_root']}", f"run.name={paths['run_name']}",
           f"train.seed={spec['seed']}", "train.progress=false"]
    if paths.get("validation"):
        out.append(f"data.validation={paths['validation']}")
    if hyper.get("n_epochs", "auto") != "auto":
        out.append(f"train.epochs={hyper['n_epochs']}")
    if hyper.get("batch_size", "auto") != "auto":
        out.append(f"train.batch_tokens={hyper['batch_size'] * paths['max_length']}")
    if hyper.get("learning_rate_multiplier", "auto") != "auto":
        out.append(f"train.lr={hyper['learning_rate_multiplier'] * base_lr:.6g}")
    if hyper.get("beta", "auto") != "auto":
        out.append(f"dpo.beta={hyper['beta']}")
    return out


def ft_name(model: str, suffix: str | None, job_id: str) -> str:
    """OpenAI's pattern ft:BASE:ORG:SUFFIX:ID; BASE is the base model's last path part (an
    ft: model's own base), ORG is 'corral'."""
    base = model.split(":")[1] if model.startswith("ft:") else \
        model.rstrip("/").rsplit("/", 1)[-1]
    base = re.sub(r"[^A-Za-z0-9_.-]", "-", base) or "model"
    return f"ft:{base}:corral:{suffix or ''}:{job_id.removeprefix('ftjob-')[:12]}"
