"""`load_grader(spec)`: the one way corral turns a grader spec into a grader.

A spec is any of:
  - a rule name: `numeric`, `math`, `json_valid`, `ifeval`, ...;
  - a rule with its option: `regex:^A`, `contains:yes`, `json_schema:schema.json`
    (the option fills the rule's first parameter; a file's contents are read);
  - OpenAI grader JSON/YAML (a file, inline JSON, or a dict);
  - `{"type": "reward_model", "model": RUN}` (a file, inline JSON, or a dict).
  - `{"type": "pal_judge", "model": MODEL}`: a judge that verifies by running its own program
    in the sandbox (docs/pal.md).
Used by `corral grade run|validate`, eval, pairs, RL and the tasks alike.
"""
from __future__ import annotations

import inspect
import json
from pathlib import Path

from corral.core.errors import CorralError
from corral.graders.openai import load_openai_grader, validate_grader
from corral.graders.rules import RULE_GRADERS, make_rule_grader


def _rule(spec: str):
    if spec in RULE_GRADERS:
        return make_rule_grader(spec)
    name, sep, option = spec.partition(":")
    if not sep or name not in RULE_GRADERS:
        return None
    params = list(inspect.signature(RULE_GRADERS[name]).parameters)
    if not params:
        raise CorralError(f"rule grader {name!r} takes no option; use '{name}' alone")
    if Path(option).is_file():
        option = Path(option).read_text(encoding="utf-8")
    return make_rule_grader(name, **{params[0]: option})


def read_spec(spec: str | dict) -> tuple[dict, str]:
    """(spec dict, where) from a dict, a .json/.yaml file or inline JSON text."""
    if isinstance(spec, dict):
        return spec, "grader"
    path = Path(spec)
    if path.suffix in (".json", ".yaml", ".yml") or path.is_file():
        if not path.is_file():
            raise CorralError(f"grader file '{spec}' does not exist; check the path")
        from corral.graders.openai import read_spec_file

        return read_spec_file(path)
    try:
        parsed = json.loads(spec)
    except json.JSONDecodeError:
        raise CorralError(f"grader '{spec}' is neither a file, inline JSON, nor a built-in rule "
                          f"({', '.join(sorted(RULE_GRADERS))}, or RULE:OPTION such as "
                          "regex:PATTERN)") from None
    if not isinstance(parsed, dict):
        raise CorralError(f"grader {spec!r} must be a JSON object with a \"type\"")
    return parsed, "grader"


def load_grader(spec: str | dict, judge=None, root: str = "runs"):
    """A grader from any spec form above; a bad spec is one CorralError naming what to fix.
    `judge` answers score_model / label_model graders; `root` is where runs live."""
    if isinstance(spec, str):
        rule = _rule(spec.strip())
        if rule is not None:
            return rule
    parsed, where = read_spec(spec)
    if parsed.get("type") == "reward_model":
        from corral.graders.reward_model import reward_model_grader

        return reward_model_grader({"root": root, **parsed})
    if parsed.get("type") == "pal_judge":  # a judge that verifies by running its own program
        from corral.graders.pal_judge import pal_judge_grader

        return pal_judge_grader({"root": root, **parsed})
    return load_openai_grader(parsed if where == "grader" else Path(where), judge)


def grader_errors(spec: str | dict) -> list[str]:
    """What is wrong with a spec (empty when it loads): OpenAI specs list every problem."""
    try:
        if isinstance(spec, str) and _rule(spec.strip()) is not None:
            return []
        parsed, _ = read_spec(spec)
    except CorralError as exc:
        return [str(exc)]
    if parsed.get("type") == "reward_model":
        return []
    if parsed.get("type") == "pal_judge":
        unknown = set(parsed) - {"type", "model", "name", "max_new_tokens"}
        return ([f"pal_judge grader: unknown field(s) {', '.join(sorted(unknown))}; it takes "
                 "model, name and max_new_tokens"] if unknown else []) + \
            ([] if parsed.get("model") else ['pal_judge grader: give "model", the judge model '
                                             "that writes the programs"])
    return validate_grader(parsed)
