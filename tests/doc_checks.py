"""Doc-drift checks (tests/test_docs.py runs them): each is a function from a doc's text to its
problems, ["doc:line: what is wrong", ...].

Over README.md, every docs/*.md, bench/README.md and examples/README.md:
- every repository path a doc names (`corral/graders/judging.py`, `scripts/demo_rft.py`,
  `graders/cached.py` relative to `corral/`) and every `corral.x.y` module or attribute in
  backticks exists; every relative Markdown link points at a file, and at a heading there when
  it has an anchor;
- every `corral ...` line of a shell code block (fenced ``` / ```bash, or indented) parses
  through the real `corral` argparse parser; for a training command every `key=value` override
  is loaded by the method's config loader (unknown keys, renamed keys, bad values fail); a
  `corral ...` in inline code names commands, flags and override keys that exist;
- every config key a doc names in backticks (`rl.kl_coef`, `ppo.value_coef=0.1`, `rl.*`)
  exists for the command it is used with: a training command named on the same line, else
  the methods of the page (docs/rl.md: rft, grpo, ppo), else any method;
- every backticked `--flag` exists for some corral command (or a bench/ or scripts/ program);
- a ```yaml block is a config that loads for some method (one starting `# examples/X.yaml`
  holds that file's keys and values); ```python blocks parse, and every `corral.api` options
  object in an example is built with fields it has (TrainOptions' overrides load);
- no `../shared/` path and no issue number (the docs stand alone).

What is skipped, and why, is said beside each rule below (placeholders in command lines, old
names given as `old` → `new`, a how-to's new file). Nothing is loaded or run.
"""
from __future__ import annotations

import argparse
import contextlib
import functools
import io
import re
import shlex
import warnings
from pathlib import Path

from doc_reading import (
    OPTIONAL,
    PLACEHOLDER,
    code_blocks,
    command_lines,
    imports,
    inline_code,
    is_module,
    line_of,
    python_snippets,
    resolves,
    script_flags,
    slugs,
    test_names,
)

ROOT = Path(__file__).resolve().parents[1]
DOCS = ["README.md", *sorted(str(p.relative_to(ROOT)) for p in (ROOT / "docs").glob("*.md")),
        "bench/README.md", "examples/README.md"]
TOP_DIRS = ("corral", "scripts", "bench", "examples", "tests", "docs", ".ci")
# The benchmarks' column "corral x" (corral's speed-up); the how-to's new method `my`.
NOT_COMMANDS = {"corral x", "corral my --help"}
# Paths a how-to tells the reader to create.
NEW_FILES = {"corral/methods/mymethod.py"}
# Per-page scope of config keys: a key on these pages must exist for a method the page is about.
PAGE_METHODS = {"docs/rl.md": ("rft", "grpo", "ppo"),
                "docs/preference.md": ("dpo", "simpo", "orpo", "kto"),
                "docs/reward.md": ("rm",)}
FILE_EXT = ("jsonl", "json", "yaml", "yml", "py", "md", "txt", "csv", "parquet", "svg",
            "safetensors", "jinja", "gguf", "log")


# ---- the checks: each returns ["doc:line: problem", ...] ------------------------------------

def path_problems(doc: str, text: str) -> list[str]:
    """Repository paths and `corral.x.y` names that do not exist."""
    problems, subpackages = [], {p.name for p in (ROOT / "corral").iterdir() if p.is_dir()}
    top = "|".join(re.escape(d) for d in TOP_DIRS)
    for number, line in enumerate(text.split("\n"), 1):
        for m in re.finditer(rf"(?<![\w./-])((?:{top})/[\w./-]*[\w/])(?![\w*{{<])", line):
            path = m.group(1)
            if path not in NEW_FILES and not (ROOT / path).exists():
                problems.append(f"{doc}:{number}: no such path {path}")
        for m in re.finditer(r"(?<![\w./-])([a-z_]+)/([\w/]+\.py)\b", line):
            if m.group(1) in subpackages and m.group(1) not in TOP_DIRS:
                path = f"corral/{m.group(1)}/{m.group(2)}"
                if not (ROOT / path).exists():
                    problems.append(f"{doc}:{number}: no such path {path}")
    for number, span in inline_code(text):
        for m in re.finditer(r"(?<![\w./-])(corral(?:\.[A-Za-z_]\w*)+)", span):
            if not resolves(m.group(1)) and not renamed_here(text, number, span):
                problems.append(f"{doc}:{number}: no such module or name {m.group(1)}")
    tests = test_names()
    for number, span in inline_code(text):
        if re.fullmatch(r"test_\w+", span) and span not in tests:
            problems.append(f"{doc}:{number}: no test named {span} in tests/")
    for number, module, names in imports(text):
        for name in names:
            if not resolves(f"{module}.{name}"):
                problems.append(f"{doc}:{number}: cannot import {name} from {module}")
    return problems


def link_problems(doc: str, text: str) -> list[str]:
    """Relative Markdown links to a missing file, or to a missing heading."""
    problems = []
    for number, line in enumerate(text.split("\n"), 1):
        for m in re.finditer(r"\[[^\]]*\]\(([^)\s]+)\)", line):
            target = m.group(1)
            if re.match(r"[a-z]+:", target):
                continue
            file, _, anchor = target.partition("#")
            path = (ROOT / doc).parent / file if file else ROOT / doc
            if not path.exists():
                problems.append(f"{doc}:{number}: link to missing {target}")
            elif anchor and path.suffix == ".md" and anchor not in slugs(path):
                problems.append(f"{doc}:{number}: link to missing heading {target}")
    return problems


def command_problems(doc: str, text: str) -> list[str]:
    """corral command lines the parser refuses, or whose overrides the config loader refuses."""
    problems = []
    for number, argv in command_lines(text):
        err = io.StringIO()
        try:
            with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
                args = corral_parser().parse_args(argv)
        except SystemExit as exc:
            if exc.code == 0:  # --help of a command that exists
                continue
            why = err.getvalue().strip().split("\n")[-1]
            problems.append(f"{doc}:{number}: `corral {' '.join(argv)}` does not parse: {why}")
            continue
        error = config_error(args)
        if error:
            problems.append(f"{doc}:{number}: `corral {' '.join(argv)}`: {error}")
    return problems


def inline_command_problems(doc: str, text: str) -> list[str]:
    """`corral ...` in inline code (often a fragment, `corral eval --strategy`): its commands,
    flags and, for a training command, override keys must exist."""
    keys, problems = method_keys(), []
    for number, span in inline_code(text):
        if not span.startswith("corral ") or PLACEHOLDER.search(span) or span in NOT_COMMANDS:
            continue
        words = shlex.split(OPTIONAL.sub("", span).replace("|", " "))[1:]
        parser, path = corral_parser(), []
        top_flags = set(parser._option_string_actions)
        while words and not words[0].startswith("-"):
            choices = next((a.choices for a in parser._actions
                            if isinstance(a, argparse._SubParsersAction)), None)
            if choices is None:
                break
            if words[0] not in choices:
                problems.append(f"{doc}:{number}: no command `corral {' '.join(path + words[:1])}`")
                words = []
                break
            path.append(words.pop(0))
            parser = choices[path[-1]]
        for word in words:
            flag, _, value = word.partition("=")
            if word.startswith("-") and flag not in {*parser._option_string_actions, *top_flags}:
                problems.append(f"{doc}:{number}: `corral {' '.join(path)}` has no flag {flag}")
            elif path and path[0] in keys and re.fullmatch(r"[a-z_]+\.[a-z_]\w*", flag) and \
                    value and flag not in keys[path[0]]:
                problems.append(f"{doc}:{number}: `corral {path[0]}` has no config key {flag}")
    return problems


# Flags of other programs the docs name: pip, bubblewrap.
OTHER_FLAGS = {"--no-deps", "--disable-userns", "--die-with-parent", "--clearenv",
               "--unshare-all"}


@functools.cache
def corral_parser() -> argparse.ArgumentParser:
    """The real `corral` parser (parsing does not change it, so one serves every line)."""
    from corral.cli.app import build_parser

    return build_parser()


@functools.cache
def all_flags() -> set[str]:
    """Every flag of every `corral` command, and of the bench/ and scripts/ programs."""
    flags, todo = set(OTHER_FLAGS), [corral_parser()]
    while todo:
        parser = todo.pop()
        flags |= {f for f in parser._option_string_actions if f.startswith("--")}  # --no-x too
        todo += [p for a in parser._actions if isinstance(a, argparse._SubParsersAction)
                 for p in a.choices.values()]
    for script in [*(ROOT / "bench").glob("*.py"), *(ROOT / "scripts").glob("*.py")]:
        flags |= script_flags(script) or set()
    return flags


def flag_problems(doc: str, text: str) -> list[str]:
    """Backticked flags (`--resume RUN`, `--no-audit`) that no command or script has."""
    flags, problems = all_flags(), []
    for number, span in inline_code(text):
        m = re.match(r"(--[a-z][\w-]*)", span)
        if m and m.group(1) not in flags:
            problems.append(f"{doc}:{number}: no command has the flag {m.group(1)}")
    return problems


def script_problems(doc: str, text: str) -> list[str]:
    """`python bench/x.py --flag` / `scripts/x.py`: every flag is one the program declares."""
    problems = []
    for number, line in enumerate(text.split("\n"), 1):
        for m in re.finditer(r"python ((?:bench|scripts)/[\w-]+\.py)([^`#\n]*)", line):
            path = ROOT / m.group(1)
            flags = script_flags(path) if path.is_file() else None
            for flag in re.findall(r"(?<!\S)(--[\w-]+)", m.group(2)):
                if flags is not None and flag not in flags | {"--help"}:
                    problems.append(f"{doc}:{number}: {m.group(1)} has no flag {flag}")
    return problems


def config_error(args) -> str:
    """For a training command: the method's config loader's complaint about its overrides."""
    from corral.core.config import ConfigNote
    from corral.methods import registry
    from corral.methods.commands import TrainOptions, load_method_config

    if args.command not in registry().names():
        return ""
    path, overrides = args.config, list(args.overrides)
    if path and "=" in path:
        path, overrides = None, [path, *overrides]
    # A YAML file of the repository is read; a user's own file (config.yaml) cannot be.
    path = str(ROOT / path) if path and (ROOT / path).is_file() else None
    opts = TrainOptions(args.command, config=path, overrides=tuple(overrides))
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConfigNote)
        try:
            load_method_config(registry().get(args.command), opts)
        except Exception as exc:  # noqa: BLE001  (CorralError, or a ConfigNote: a renamed key)
            return str(exc)
    return ""


@functools.cache
def method_keys() -> dict[str, set[str]]:
    from corral.core.config import describe
    from corral.methods import registry

    return {name: {row["key"] for row in describe(m.config)} for name, m in registry().items()}


@functools.cache
def renamed_keys() -> set[str]:
    """Old key names a config still accepts with a note (`rl.value_coef` -> `ppo.value_coef`)."""
    from corral.methods import registry

    return {old for _, m in registry().items() for old in getattr(m.config, "RENAMED", {})}


# A renamed key may be named only where the line says it is old; an old module name only as
# `old` → `new`.
OLD_NAME = re.compile(r"(?i)\b(old|renamed|moved|ignored|deprecated|still accepted|is now|was)\b")


def renamed_here(text: str, number: int, span: str) -> bool:
    return re.search(rf"`{re.escape(span)}`\s*(→|->)", line_of(text, number)) is not None


def key_problems(doc: str, text: str) -> list[str]:
    """Backticked config keys (`rl.kl_coef`, `ppo.value_coef=0.1`, `rl.*`) that the command
    they are used with lacks: the training commands the line names (`corral ppo ...`), else
    the methods of the page (docs/rl.md: rft, grpo, ppo), else every method."""
    keys = method_keys()
    everywhere = set().union(*keys.values())
    sections = {k.split(".")[0] for k in everywhere}
    problems = []
    for number, span in inline_code(text):
        named = [m for m in re.findall(r"\bcorral (\w+)", line_of(text, number)) if m in keys]
        scope = tuple(dict.fromkeys(named)) or PAGE_METHODS.get(doc, tuple(keys))
        allowed = set().union(*(keys[m] for m in scope))
        for m in re.finditer(r"(?<![\w./@-])([a-z_]+)\.([a-z_][a-z0-9_]*|\*)(?![\w/(-])", span):
            section, name = m.groups()
            key = f"{section}.{name}"
            if section not in sections or name in FILE_EXT:
                continue
            if span[m.end():m.end() + 1] == "." and name != "*" or is_module(f"corral.{key}"):
                continue  # a module path (`data.preference`, `corral.eval.evaluate`), not a key
            if name == "*":
                if not any(k.startswith(section + ".") for k in allowed):
                    problems.append(f"{doc}:{number}: no config section {section}")
            elif key in renamed_keys() and OLD_NAME.search(line_of(text, number)):
                continue
            elif key not in allowed:
                where = "any method" if key not in everywhere else f"{'/'.join(scope)}"
                problems.append(f"{doc}:{number}: config key {key} does not exist for {where}")
    return problems


def options_problems(doc: str, text: str) -> list[str]:
    """Python examples: ```python blocks parse; every `corral.api` options object is built with
    fields it has, and TrainOptions' overrides load for its method."""
    import ast
    import dataclasses

    from corral import api

    problems = []
    for number, code, strict in python_snippets(text):
        try:
            tree = ast.parse(code)
        except SyntaxError as exc:
            if strict:
                problems.append(f"{doc}:{number + (exc.lineno or 1) - 1}: python does not "
                                f"parse: {exc.msg}")
            continue
        for node in ast.walk(tree):
            name = getattr(node, "func", None)
            name = getattr(name, "attr", None) or getattr(name, "id", None)
            if not isinstance(node, ast.Call) or name not in api.__all__ or \
                    not name.endswith("Options"):
                continue
            at = number + node.lineno - 1
            fields = {f.name for f in dataclasses.fields(getattr(api, name))}
            for keyword in node.keywords:
                if keyword.arg and keyword.arg not in fields:
                    problems.append(f"{doc}:{at}: {name} has no field {keyword.arg}")
            if name == "TrainOptions":
                problems += [f"{doc}:{at}: {e}" for e in train_options_error(node)]
    return problems


def train_options_error(node) -> list[str]:
    """`TrainOptions("dpo", overrides=("key=value", ...))` with literal strings: its config."""
    import ast

    try:
        method = ast.literal_eval(node.args[0]) if node.args else None
        overrides = next((ast.literal_eval(k.value) for k in node.keywords
                          if k.arg == "overrides"), ())
    except ValueError:
        return []  # not literals: nothing to check
    if not isinstance(method, str) or not isinstance(overrides, (tuple, list)) or \
            not all(isinstance(o, str) for o in overrides):
        return []
    args = corral_parser().parse_args([method, *overrides]) if method else None
    error = config_error(args) if args else ""
    return [f"TrainOptions({method!r}): {error}"] if error else []


def yaml_problems(doc: str, text: str) -> list[str]:
    """A ```yaml block is a config: it must load for some method (or the one its first
    comment names, `# corral rm`); one whose first line is `# examples/rm.yaml` must hold that
    file's keys and values."""
    import yaml

    from corral.core.config import ConfigNote, load_config
    from corral.methods import registry

    problems = []
    for start, lang, body in code_blocks(text):
        if lang not in ("yaml", "yml"):
            continue
        data = yaml.safe_load("\n".join(body)) or {}
        shown = re.match(r"#\s*(examples/\S+\.yaml)", body[0].strip()) if body else None
        if shown:  # a copy of an example config: the same keys and values as the file
            if not (ROOT / shown.group(1)).is_file() or \
                    yaml.safe_load((ROOT / shown.group(1)).read_text()) != data:
                problems.append(f"{doc}:{start}: the YAML differs from {shown.group(1)}")
            continue
        named = re.match(r"#\s*corral (\w+)", body[0].strip()) if body else None
        methods = [named.group(1)] if named else list(registry().names())
        errors = []
        for name in methods:
            with warnings.catch_warnings():
                warnings.simplefilter("error", ConfigNote)
                try:
                    load_config(registry().get(name).config, None, [], base=data)
                    break
                except Exception as exc:  # noqa: BLE001  (CorralError, a note, a bad name)
                    errors.append(f"{name}: {exc}")
        else:
            problems.append(f"{doc}:{start}: the YAML config loads for no method "
                            f"({'; '.join(errors)[:300]})")
    return problems


def standalone_problems(doc: str, text: str) -> list[str]:
    """Paths into the development machine's shared folder and issue numbers."""
    problems = []
    for number, line in enumerate(text.split("\n"), 1):
        if "../shared" in line:
            problems.append(f"{doc}:{number}: path outside the repository (../shared)")
        if re.search(r"(?i)\b(?:issue|PR)s?[\s-]*#?\d+|(?<![\w#&/])#\d+\b(?!#)|/issues/\d+",
                     line):
            problems.append(f"{doc}:{number}: issue number (name the capability instead)")
    return problems


CHECKS = {"paths": path_problems, "links": link_problems, "commands": command_problems,
          "inline_commands": inline_command_problems, "flags": flag_problems,
          "scripts": script_problems, "keys": key_problems, "yaml": yaml_problems,
          "python": options_problems,
          "standalone": standalone_problems}
