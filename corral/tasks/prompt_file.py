"""Prompt programs as files: a JSON artifact with a hash, read by every command that takes
`--prompt FILE` (eval, chat, synth) and by RL (`rl.prompt=FILE`).

    {"format": "corral.prompt/1", "hash": "3f2a...", "system": "Answer briefly.",
     "template": "{input}", "layout": "chat", "select": "fixed", "k": 0, "order": "given",
     "demos": [{"input": "What is 2+2?", "output": "#### 4"}], "pool": [],
     "made_by": {...}}                # optional: how the search chose it, its scores

`hash` is the sha256 (first 16 hex digits) of the program's canonical JSON without `hash`
and `made_by`; a file whose program no longer matches its hash was edited by hand, and is
refused (drop the `hash` key to accept the edit).
"""
from __future__ import annotations

import json
from pathlib import Path

from corral.core.config import closest
from corral.core.errors import CorralError
from corral.core.io import atomic_write_text, content_hash
from corral.tasks.prompt import PromptProgram

FORMAT = "corral.prompt/1"
KEYS = ("format", "hash", "system", "template", "layout", "select", "k", "order",
        "mmr_lambda", "demos", "pool", "made_by")


def to_dict(program: PromptProgram, made_by: dict | None = None) -> dict:
    body = {"format": FORMAT, "system": program.system_prompt, "template": program.template,
            "layout": program.layout, "select": program.select, "k": program.k,
            "order": program.order, "mmr_lambda": program.mmr_lambda,
            "demos": [_demo_json(d) for d in program.few_shot],
            "pool": [_demo_json(d) for d in program.pool]}
    out = {"format": FORMAT, "hash": program_hash(body), **body}
    if made_by:
        out["made_by"] = made_by
    return out


def program_hash(program) -> str:
    """The program's identity: equal programs, equal hashes (a dict from `to_dict` or a
    PromptProgram)."""
    body = to_dict(program) if isinstance(program, PromptProgram) else program
    return content_hash({k: v for k, v in body.items() if k not in ("hash", "made_by")})[:16]


def save_program(program: PromptProgram, path, made_by: dict | None = None) -> str:
    """Write the program atomically; returns its hash."""
    data = to_dict(program, made_by)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(data, indent=1, ensure_ascii=False) + "\n")
    return data["hash"]


def load_program(path) -> PromptProgram:
    """A saved program; every mistake is one sentence naming the file and the key."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise CorralError(f"prompt program {path} not found; make one with `corral prompt "
                          "search` or check the path") from None
    except json.JSONDecodeError as exc:
        raise CorralError(f"prompt program {path}: not JSON ({exc.msg} at line {exc.lineno})"
                          "; fix the file or make it again") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise CorralError(f"prompt program {path}: key 'format' must be \"{FORMAT}\"; is this "
                          "a file `corral prompt search` wrote?")
    for key in data:
        if key not in KEYS:
            close = closest(key, KEYS)
            raise CorralError(f"prompt program {path}: unknown key '{key}'"
                              + (f"; did you mean '{close}'?" if close else
                                 f"; keys are {', '.join(KEYS)}"))
    if "hash" in data and data["hash"] != program_hash(data):
        raise CorralError(f"prompt program {path}: its content does not match its hash "
                          f"{data['hash']} (edited by hand?); delete the 'hash' key to use "
                          "the edited program")
    try:
        return PromptProgram(
            system_prompt=_typed(data, "system", str, "", path),
            few_shot=tuple(_demo(d, path, "demos", i) for i, d in
                           enumerate(_typed(data, "demos", list, [], path))),
            template=_typed(data, "template", str, "", path),
            layout=_typed(data, "layout", str, "chat", path),
            select=_typed(data, "select", str, "fixed", path),
            k=_typed(data, "k", int, 0, path),
            pool=tuple(_demo(d, path, "pool", i) for i, d in
                       enumerate(_typed(data, "pool", list, [], path))),
            order=_typed(data, "order", str, "given", path),
            mmr_lambda=float(_typed(data, "mmr_lambda", (int, float), 0.5, path)))
    except CorralError as exc:
        if str(exc).startswith("prompt program:"):
            raise CorralError(f"prompt program {path}:{str(exc)[15:]}") from None
        raise


def made_by(path) -> dict:
    return json.loads(Path(path).read_text()).get("made_by", {})


def _typed(data: dict, key: str, kind, default, path):
    value = data.get(key, default)
    if not isinstance(value, kind) or isinstance(value, bool):
        name = kind.__name__ if isinstance(kind, type) else "number"
        raise CorralError(f"prompt program {path}: key '{key}' must be a {name}, not "
                          f"{type(value).__name__}")
    return value


def _demo(d, path, key: str, i: int) -> tuple:
    if not (isinstance(d, dict) and isinstance(d.get("input"), str)
            and isinstance(d.get("output"), str)):
        raise CorralError(f"prompt program {path}: {key}[{i}] must be an object with string "
                          "'input' and 'output' (and optional 'fields')")
    extra = d.get("fields") or {}
    if not isinstance(extra, dict):
        raise CorralError(f"prompt program {path}: {key}[{i}].fields must be an object")
    return (d["input"], d["output"], tuple(sorted(extra.items()))) if extra else \
        (d["input"], d["output"])


def _demo_json(d: tuple) -> dict:
    out = {"input": d[0], "output": d[1]}
    if len(d) > 2 and d[2]:
        out["fields"] = dict(d[2])
    return out
