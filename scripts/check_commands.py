"""Check that `corral ...` command lines parse with today's CLI, without running anything:
each goes through the real argparse parser, and a training command's `key=value` overrides
through its method's config loader (unknown keys, bad values and forced-preset conflicts fail
here as they would in a real run; a built-in task's split, limit and few-shot count as its
loader checks them; no model or data file is read).

    python scripts/check_commands.py docs/results.md      # every `corral` line of its fenced blocks
    python scripts/check_commands.py --recorded FILE      # argv lists recorded by the demo scripts

The shell demos record their commands instead of running them when CORRAL_RECORD=FILE is set
(one JSON list per line), which is how tests/test_scripts.py keeps them in step with the CLI.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import re
import shlex
import sys

FENCE = re.compile(r"^[ \t]*```[^\n]*\n(.*?)^[ \t]*```", re.M | re.S)  # list items indent


def commands_in_markdown(text: str) -> list[list[str]]:
    """The argv (without `corral`) of every line of a fenced block that starts with `corral `;
    a trailing backslash continues the line, `#` starts a comment."""
    found = []
    for block in FENCE.findall(text):
        lines, current = [], ""
        for line in block.splitlines():
            current += line.strip()
            if current.endswith("\\"):
                current = current[:-1] + " "
                continue
            lines.append(current.strip())
            current = ""
        found += [shlex.split(line, comments=True)[1:] for line in lines
                  if line.startswith("corral ")]
    return found


def check(argv: list[str]) -> None:
    """Raise ValueError naming the command and the parser's or the config loader's complaint."""
    from corral.cli.app import build_parser
    from corral.core.errors import CorralError

    command = "corral " + shlex.join(argv)
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            args = build_parser().parse_args(argv)
    except SystemExit:
        raise ValueError(f"{command}: {err.getvalue().strip().splitlines()[-1]}") from None
    _check_task(command, args)
    if getattr(args.func, "__name__", "") != "cmd_train":
        return
    from corral.cli.options import options
    from corral.methods import registry
    from corral.methods.commands import TrainOptions, load_method_config

    opts = options(TrainOptions, args, overrides=tuple(args.overrides),
                   allow_change=tuple(args.allow_change))
    try:
        load_method_config(registry().get(args.command), opts)
    except CorralError as exc:
        raise ValueError(f"{command}: {exc}") from None


def _check_task(command: str, args) -> None:
    """A built-in task's split, limit and few-shot count, as the task loader checks them."""
    from corral.core.errors import CorralError
    from corral.tasks import SPLITS, _check_options

    task = getattr(args, "task", None)
    if not task or not hasattr(args, "split"):
        return
    if task not in SPLITS and not task.endswith((".jsonl", ".json", ".parquet")):
        raise ValueError(f"{command}: --task {task!r} is neither a built-in task "
                         f"({', '.join(SPLITS)}) nor a data file")
    try:
        _check_options(task, args.split, getattr(args, "limit", 0) or 0,
                       getattr(args, "few_shot", 0) or 0, task not in SPLITS)
    except CorralError as exc:
        raise ValueError(f"{command}: {exc}") from None


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("markdown", nargs="*", help="markdown files whose fenced commands to check")
    ap.add_argument("--recorded", action="append", default=[],
                    help="a file of recorded argv lists (JSON, one per line)")
    args = ap.parse_args(argv)
    commands = []
    for path in args.markdown:
        with open(path, encoding="utf-8") as f:
            commands += commands_in_markdown(f.read())
    for path in args.recorded:
        with open(path, encoding="utf-8") as f:
            commands += [json.loads(line) for line in f if line.strip()]
    bad = 0
    for command in commands:
        try:
            check(command)
        except ValueError as exc:
            bad += 1
            print(f"FAIL {exc}")
    print(f"{len(commands) - bad} of {len(commands)} commands parse")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
