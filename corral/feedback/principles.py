"""A constitution: the principles a critic and a feedback model judge responses by.

Two file forms, picked by the file's suffix.

Text (`.txt`, `.md`, anything not `.jsonl`): one principle per non-empty line. A line
starting with `#` is a comment (so Markdown headings are comments too), a leading list mark
(`-`, `*`, `1.`) is dropped, and a line may open with a name, `name: text`, where the name
is one word of letters, digits, `-` or `_`. Unnamed principles are called `principle-N` (N
counts the principles from 1).

    # Format
    direct: Answer the question directly, in the first sentence.
    - Be concise: no filler, no repetition.

JSON lines (`.jsonl`): one object per line with `text` (the principle, as a judge reads it),
and optionally `name`, `critique` (the critique request) and `revision` (the revision
request), after Anthropic's critique/revision request pairs; one of `text` or `critique` is
needed. Requests left out are made from `text`.

The critique and revision prompts below are where a principle's requests reach the models
(constitutional.py asks them). This module was `feedback/constitution.py`; that import path
still works.

Every mistake is reported with its file:line and raised together, so one edit fixes them all.
"""
from __future__ import annotations

import json
import random
import re
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path

from corral.core.errors import CorralError
from corral.core.io import file_sha256
from corral.graders import judge_prompts as P

CRITIQUE_REQUEST = "Identify the specific ways in which the response does not follow this " \
    "principle: {text}"
REVISION_REQUEST = "Rewrite the response so that it follows this principle: {text}"
JSONL_KEYS = ("name", "text", "critique", "revision")

# The critic's question is the one critique (graders/judge_prompts.CRITIQUE) with the
# principle's critique request; NO ISSUES is the critic's way to stop early, read by the one
# rule, judge_prompts.satisfied. The policy's rewrite, under the revision request, given the
# critique:
CRITIQUE = P.CRITIQUE

REVISION = """Here is a user's question, a response to it, and a critique of the response.

<question>
{question}
</question>
<response>
{response}
</response>
<critique>
{critique}
</critique>

{request} Fix the problems the critique names. Reply with only the rewritten response."""

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")
_NAMED = re.compile(r"([A-Za-z0-9][A-Za-z0-9_-]*)\s*:\s*(.*)")
_LIST_MARK = re.compile(r"(?:[-*+]|\d+[.)])\s+")


@dataclass(frozen=True)
class Principle:
    """text: the principle as a judge reads it; critique / revision: the requests the critic
    and the policy are given; line: where it was written."""
    name: str
    text: str
    critique: str
    revision: str
    line: int = 0

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Constitution:
    path: str
    principles: tuple
    sha256: str

    def draw(self, rng: random.Random) -> Principle:
        """A principle drawn at random (Constitutional AI draws one per critique)."""
        return self.principles[rng.randrange(len(self.principles))]

    def by_name(self, name: str) -> Principle:
        return next(p for p in self.principles if p.name == name)

    def summary(self) -> dict:
        """For manifests: where the constitution came from and what it says."""
        return {"path": self.path, "sha256": self.sha256,
                "principles": [p.as_dict() for p in self.principles]}


def default_path() -> Path:
    """The constitution that ships with corral (corral/assets/constitution.txt)."""
    return Path(str(resources.files("corral") / "assets" / "constitution.txt"))


def load_constitution(path=None) -> Constitution:
    """The constitution in `path` (the shipped default when None or "")."""
    path = Path(path) if path else default_path()
    if not path.is_file():
        raise CorralError(f"constitution file not found: {path}; give a text file with one "
                          "principle per line (see docs/feedback.md), or leave --constitution "
                          "out to use the default")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise CorralError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start}); save "
                          "the constitution as UTF-8") from None
    parse = _parse_jsonl if path.suffix == ".jsonl" else _parse_text
    principles, problems = parse(str(path), text.splitlines())
    if not problems:
        problems = _duplicates(str(path), principles)
    if problems:
        raise CorralError("\n".join([f"{path}: {len(problems)} problem(s) in the constitution:",
                                     *problems, "fix these lines and run again"]))
    if not principles:
        raise CorralError(f"{path} has no principles; write one per line, such as "
                          "'concise: Be concise, with no filler.' (lines starting with # are "
                          "comments)")
    return Constitution(str(path), tuple(principles), file_sha256(path))


def _principle(name: str, text: str, line: int, critique: str = "",
               revision: str = "") -> Principle:
    return Principle(name, text, critique or CRITIQUE_REQUEST.format(text=text),
                     revision or REVISION_REQUEST.format(text=text), line)


def _parse_text(path: str, lines: list[str]) -> tuple[list[Principle], list[str]]:
    principles, problems = [], []
    for number, raw in enumerate(lines, 1):
        line = "" if raw.lstrip().startswith("#") else _LIST_MARK.sub("", raw.strip(), count=1)
        if not line:
            continue
        named = _NAMED.fullmatch(line)
        if (named and not named.group(2).strip()) or _NAME.fullmatch(line):
            name = named.group(1) if named else line
            problems.append(f"{path}:{number}: '{name}' is only a name; write the principle "
                            f"after it, as '{name}: <the principle>'")
            continue
        name, text = (named.group(1), named.group(2).strip()) if named else \
            (f"principle-{len(principles) + 1}", line)
        principles.append(_principle(name, text, number))
    return principles, problems


def _parse_jsonl(path: str, lines: list[str]) -> tuple[list[Principle], list[str]]:
    principles, problems = [], []
    example = '{"name": "concise", "text": "Be concise."}'
    for number, raw in enumerate(lines, 1):
        if not raw.strip():
            continue
        where = f"{path}:{number}"
        try:
            row = json.loads(raw)
        except json.JSONDecodeError as exc:
            problems.append(f"{where}: not valid JSON ({exc.msg}); write one object per line, "
                            f"such as {example}")
            continue
        if not isinstance(row, dict):
            problems.append(f"{where}: a principle must be a JSON object, such as {example}")
            continue
        unknown = sorted(set(row) - set(JSONL_KEYS))
        if unknown:
            problems.append(f"{where}: unknown key(s) {unknown}; a principle has "
                            f"{', '.join(JSONL_KEYS)}")
            continue
        bad = [k for k, v in row.items() if not isinstance(v, str) or not v.strip()]
        if bad:
            problems.append(f"{where}: {', '.join(bad)} must be non-empty text")
            continue
        if "text" not in row and "critique" not in row:
            problems.append(f"{where}: the principle has no 'text' (or 'critique'); give the "
                            "principle as a judge should read it")
            continue
        name = row.get("name", f"principle-{len(principles) + 1}")
        if not _NAME.fullmatch(name):
            problems.append(f"{where}: name {name!r} must be one word of letters, digits, "
                            "'-' or '_'")
            continue
        text = row.get("text", row.get("critique"))
        principles.append(_principle(name, text.strip(), number, row.get("critique", ""),
                                     row.get("revision", "")))
    return principles, problems


def _duplicates(path: str, principles: list[Principle]) -> list[str]:
    first: dict[str, int] = {}
    problems = []
    for p in principles:
        if p.name in first:
            problems.append(f"{path}:{p.line}: principle name '{p.name}' is already used on "
                            f"line {first[p.name]}; give each principle its own name")
        else:
            first[p.name] = p.line
    return problems
