"""Config machinery: frozen dataclasses; defaults <- YAML file <- dotted CLI overrides.

    cfg = load_config(SFTConfig, "sft.yaml", ["train.lr=2e-5", "lora.r=16"])

Unknown or misspelt keys are rejected with a did-you-mean. Each section validates itself
(`validate()`, called as it is built), a config class may add cross-section checks (`check()`)
and fill defaults from what the user set (`resolve(cfg, given)`, e.g. RL presets), and
`RENAMED` keys are accepted with a one-line deprecation note. `describe(cls, values)` lists
every key with its type, default (a method's effective one, given its default config) and
meaning, for `--help` and docs/config.md (stdlib + yaml only).
"""
from __future__ import annotations

import dataclasses
import difflib
import json
import math
import typing
import warnings
from dataclasses import field

from corral.core.errors import CorralError


class ConfigNote(UserWarning):
    """A one-line note about the config (a renamed key); the CLI prints it as `corral: note:`."""


def opt(default, meaning: str = "", inline_json: bool = False):
    """A config field with its one-line meaning (shown by --help and docs/config.md).
    inline_json: a string field that may hold a JSON object (a grader spec), so a mapping the
    YAML or CLI parser made of it is turned back into JSON text rather than refused."""
    if dataclasses.is_dataclass(default):
        return field(default_factory=type(default), metadata={"help": meaning})
    return field(default=default, metadata={"help": meaning, "inline_json": inline_json})


def closest(word, options, cutoff: float = 0.6) -> str | None:
    """The one did-you-mean matching rule: the option most like `word`, or None. Callers keep
    their own wording (a registry lists every valid name, a run folder lists ten)."""
    close = difflib.get_close_matches(str(word), [str(o) for o in options], n=1, cutoff=cutoff)
    return close[0] if close else None


def did_you_mean(word: str, options, noun: str = "keys") -> str:
    close = closest(word, options)
    return f"; did you mean '{close}'?" if close else f"; valid {noun}: {', '.join(options)}"


def check_choice(key: str, value, choices) -> None:
    """Refuse a value outside `choices`, naming the key and the closest valid value."""
    if value not in choices:
        raise CorralError(f"config key '{key}' is '{value}'"
                          f"{did_you_mean(value, choices, 'values')}")


def require(checks) -> None:
    """[(ok, message)]: raise one CorralError joining the messages of the failed checks."""
    problems = [message for ok, message in checks if not ok]
    if problems:
        raise CorralError("; ".join(problems))


def _fields(cls) -> dict:
    return {f.name: f for f in dataclasses.fields(cls)}


def _coerce_number(value, hint, key: str):
    try:
        number = hint(value) if not isinstance(value, str) else hint(float(value))
    except (TypeError, ValueError, OverflowError):
        raise CorralError(f"config key '{key}' must be a number, got {value!r}") from None
    if hint is int and isinstance(value, (str, float)) and float(value) != number:
        raise CorralError(f"config key '{key}' must be a whole number, got {value!r}")
    if isinstance(number, float) and not math.isfinite(number):
        raise CorralError(f"config key '{key}' must be finite, got {value!r}")
    return number


def _coerce(value, hint, key: str):
    """Turn YAML / CLI values into the field's declared type, or say what was expected."""
    if hint is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
            return value.lower() in ("true", "1", "yes")
        raise CorralError(f"config key '{key}' must be true or false, got {value!r}")
    if hint in (int, float):
        if isinstance(value, bool):
            raise CorralError(f"config key '{key}' must be a number, got {value!r}")
        return _coerce_number(value, hint, key)
    if hint is str:
        if isinstance(value, (dict, list)):
            raise CorralError(f"config key '{key}' must be a string, got {value!r}")
        if isinstance(value, bool):  # YAML reads a bare no/yes as a bool
            return "no" if value is False else "yes"
        return "" if value is None else str(value)
    if hint is tuple:
        if isinstance(value, str):
            value = [v.strip() for v in value.strip("[]()").split(",") if v.strip()]
        if not isinstance(value, (list, tuple)):
            raise CorralError(f"config key '{key}' must be a list, got {value!r}")
        return tuple(value)
    return value


def _build(cls, data: dict, prefix: str = ""):
    if not isinstance(data, dict):
        raise CorralError(f"config section '{prefix.rstrip('.') or 'top level'}' must be a mapping")
    fields = _fields(cls)
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for key, value in data.items():
        if key not in fields:
            raise CorralError(f"unknown config key '{prefix}{key}'{did_you_mean(key, fields)}")
        hint = hints[key]
        if dataclasses.is_dataclass(hint):
            kwargs[key] = _build(hint, value or {}, f"{prefix}{key}.")
        elif isinstance(value, dict) and fields[key].metadata.get("inline_json"):
            kwargs[key] = json.dumps(value)
        else:
            kwargs[key] = _coerce(value, hint, prefix + key)
    return cls(**kwargs)


def _parse_scalar(text: str):
    import yaml

    try:
        return yaml.safe_load(text) if text != "" else ""
    except yaml.YAMLError:
        return text


def apply_override(data: dict, override: str) -> None:
    """Set `a.b.c=value` inside a nested dict (the value parsed as YAML)."""
    if "=" not in override:
        raise CorralError(f"override '{override}' must look like key=value, e.g. train.lr=2e-5")
    key, _, value = override.partition("=")
    parts = key.strip().split(".")
    node = data
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise CorralError(f"override '{override}': '{part}' is not a section")
    node[parts[-1]] = _parse_scalar(value)


def read_yaml(path: str) -> dict:
    """A YAML config file as a dict; a missing file or bad YAML is a CorralError naming it."""
    import yaml

    try:
        with open(path, encoding="utf-8") as handle:
            data = yaml.safe_load(handle) or {}
    except FileNotFoundError:
        raise CorralError(f"config file '{path}' does not exist; check the path") from None
    except IsADirectoryError:
        raise CorralError(f"config file '{path}' is a directory; give a .yaml file") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else path
        raise CorralError(f"{where}: not valid YAML ({getattr(exc, 'problem', exc)})") from None
    if not isinstance(data, dict):
        raise CorralError(f"config file '{path}' must hold a mapping of sections")
    return data


def given_keys(data: dict, prefix: str = "") -> frozenset:
    """Dotted keys present in a raw config dict: what the user set."""
    keys = set()
    for key, value in data.items():
        keys.add(prefix + key)
        if isinstance(value, dict):
            keys |= given_keys(value, f"{prefix}{key}.")
    return frozenset(keys)


def _apply_renames(cls, data: dict) -> None:
    for old, new in getattr(cls, "RENAMED", {}).items():
        section, _, key = old.partition(".")
        node = data.get(section)
        if not isinstance(node, dict) or key not in node:
            continue
        value = node.pop(key)
        if new is None:
            warnings.warn(ConfigNote(f"'{old}' has no effect here and is ignored"), stacklevel=3)
            continue
        new_section, _, new_key = new.partition(".")
        data.setdefault(new_section, {}).setdefault(new_key, value)
        warnings.warn(ConfigNote(f"'{old}' is now '{new}'; please rename it"), stacklevel=3)


def merge(base: dict, top: dict) -> dict:
    """`top`'s keys over `base`'s, section by section (neither is changed)."""
    out = dict(base)
    for key, value in top.items():
        out[key] = merge(out[key], value) if isinstance(value, dict) and \
            isinstance(out.get(key), dict) else value
    return out


def load_config(cls, path: str | None = None, overrides: list[str] = (),
                base: dict | None = None):
    """Defaults <- `base` (a saved run's config, on resume) <- YAML file <- dotted overrides;
    unknown keys rejected with a did-you-mean."""
    data: dict = merge(base or {}, read_yaml(path) if path else {})
    for override in overrides:
        apply_override(data, override)
    _apply_renames(cls, data)
    cfg = _build(cls, data)
    resolve = getattr(cls, "resolve", None)
    if resolve is not None:
        cfg = resolve(cfg, given_keys(data))
    validate_config(cfg)
    return cfg


def validate_config(cfg) -> None:
    """Every section's own `validate()`, then the config's cross-section `check()`."""
    for f in dataclasses.fields(cfg):
        section = getattr(cfg, f.name)
        if dataclasses.is_dataclass(section) and hasattr(section, "validate"):
            section.validate()
    if hasattr(cfg, "check"):
        cfg.check()


def to_dict(cfg) -> dict:
    """A plain dict (tuples as lists) for saving as YAML / JSON."""
    def plain(value):
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [plain(v) for v in value]
        return value
    return plain(dataclasses.asdict(cfg))


def describe(cls, prefix: str = "", values=None) -> list[dict]:
    """Every key of a config class: {key, type, default, help}, sections in order. `values`, a
    config of that class (a method's after its forced keys and presets: what a run gets with
    nothing set), gives the defaults instead of the class's own."""
    rows, hints = [], typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        hint = hints[f.name]
        if dataclasses.is_dataclass(hint):
            rows += describe(hint, f"{prefix}{f.name}.",
                             None if values is None else getattr(values, f.name))
            continue
        if values is not None:
            default = getattr(values, f.name)
        else:
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        rows.append({"key": prefix + f.name, "type": getattr(hint, "__name__", str(hint)),
                     "default": list(default) if isinstance(default, tuple) else default,
                     "help": f.metadata.get("help", "")})
    return rows


def help_text(cls, values=None) -> str:
    """The keys of a config class as plain text, one per line, grouped by section; `values`
    as in `describe` (the effective defaults)."""
    lines, section = [], None
    for row in describe(cls, values=values):
        head = row["key"].split(".")[0]
        if head != section:
            section = head
            lines.append(f"\n{head}:")
        lines.append(f"  {row['key']} ({row['type']}, default {row['default']!r})"
                     + (f": {row['help']}" if row["help"] else ""))
    return "\n".join(lines).lstrip("\n")
