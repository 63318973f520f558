"""Reading a Markdown doc for tests/doc_checks.py: its code blocks (fenced and indented),
the `corral` command lines in its shell blocks, its inline code, its python snippets and
imports, and the anchors of its headings; and looking up the names a doc uses (modules,
attributes, test names)."""
from __future__ import annotations

import importlib
import importlib.util
import re
import shlex
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

SHELL = {"", "bash", "sh", "shell", "console"}
# A command line is skipped when it holds a placeholder that cannot stand for one value:
# `<method>` (usage syntax), `...` (repeat). Other placeholders, an all-capitals word (FILE,
# RUN, N) or a shell variable (`$GSM8K`), are checked standing for `1` (a string to a string
# flag, a number to `--limit N`); an optional part of a usage line, `[--split train]`, is
# checked as if given.
PLACEHOLDER = re.compile(r"<[A-Za-z]|\.\.\.")
VARIABLE = re.compile(r"\$\{?[A-Za-z_]\w*\}?")
OPTIONAL = re.compile(r"(?:(?<=\s)|^)\[|\](?=\s|$)")


def code_blocks(text: str) -> list[tuple[int, str, list[str]]]:
    """(first line number, language, lines) of every fenced block and every indented block."""
    blocks, lines, i = [], text.split("\n"), 0
    while i < len(lines):
        line = lines[i]
        if line.lstrip().startswith("```"):
            lang, start, body = line.strip()[3:].strip().lower(), i + 2, []
            i += 1
            while i < len(lines) and not lines[i].lstrip().startswith("```"):
                body.append(lines[i])
                i += 1
            blocks.append((start, lang, body))
        elif line.startswith("    ") and (i == 0 or not lines[i - 1].strip()):
            start, body = i + 1, []
            while i < len(lines) and (lines[i].startswith("    ") or not lines[i].strip()):
                body.append(lines[i][4:])
                i += 1
            blocks.append((start, "", body))
            continue
        i += 1
    return blocks


def strip_comment(line: str) -> str:
    """The line without its shell comment: a `#` starting a word outside quotes."""
    quote = None
    for i, ch in enumerate(line):
        if quote:
            quote = None if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and (i == 0 or line[i - 1].isspace()):
            return line[:i]
    return line


def command_lines(text: str) -> list[tuple[int, list[str]]]:
    """(line number, argv after `corral`) of every corral command in a shell code block."""
    found = []
    for start, lang, body in code_blocks(text):
        if lang not in SHELL:
            continue
        j = 0
        while j < len(body):
            number, line = start + j, strip_comment(body[j]).rstrip()
            while line.endswith("\\") and j + 1 < len(body):
                j += 1
                line = line[:-1] + " " + strip_comment(body[j]).strip()
            j += 1
            line = VARIABLE.sub("1", OPTIONAL.sub("", line.strip().removeprefix("$ ")))
            if "corral " not in line or PLACEHOLDER.search(line):
                continue
            try:
                words = shlex.split(line)
            except ValueError as exc:
                found.append((number, [f"<unparsable shell: {exc}>"]))
                continue
            words = ["1" if re.fullmatch(r"[A-Z][A-Z_]*", w) else w for w in words]
            for segment in _segments(words):
                if segment and segment[0] == "corral":
                    found.append((number, segment[1:]))
    return found


def _segments(words: list[str]) -> list[list[str]]:
    """Split at `&&`, `||`, `;`, `|`; drop redirections (`> FILE`)."""
    out, current, skip = [], [], False
    for word in words:
        if skip:
            skip = False
        elif word in ("&&", "||", ";", "|"):
            out.append(current)
            current = []
        elif word in (">", ">>", "2>", "<"):
            skip = True
        else:
            current.append(word)
    return [*out, current]


def inline_code(text: str) -> list[tuple[int, str]]:
    """(line number of its start, content) of every `inline code` span outside code blocks; a
    span may run over a line break inside a paragraph (it is read with a space there)."""
    lines, fenced, code = text.split("\n"), False, set()
    for number, line in enumerate(lines, 1):
        if line.lstrip().startswith("```") or fenced:
            code.add(number)
            fenced ^= line.lstrip().startswith("```")
    code |= {start + k for start, _, body in code_blocks(text) for k in range(len(body))}
    prose = "\n".join("" if n in code else line for n, line in enumerate(lines, 1))
    spans = []
    for m in re.finditer(r"`([^`]+)`", prose):
        if "\n\n" not in m.group(1):
            spans.append((prose.count("\n", 0, m.start()) + 1, m.group(1).replace("\n", " ")))
    return spans


def imports(text: str) -> list[tuple[int, str, list[str]]]:
    """`from corral.x import a, b` (parenthesised over lines too) in any code block."""
    found = []
    for start, _, body in code_blocks(text):
        joined = "\n".join(body)
        for m in re.finditer(r"^[ \t]*from (corral[\w.]*) import (\([^)]*\)|[^\n]*)", joined,
                             re.M):
            names = [n.split(" as ")[0].strip() for n in m.group(2).strip("()").split(",")]
            number = start + joined[:m.start()].count("\n")
            found.append((number, m.group(1), [n for n in names if n and n != "*"]))
        for m in re.finditer(r"^[ \t]*import (corral\.[\w.]+)", joined, re.M):
            module, _, name = m.group(1).rpartition(".")
            found.append((start + joined[:m.start()].count("\n"), module, [name]))
    return found


def slugs(path: Path) -> set[str]:
    """GitHub's anchors for the headings of a Markdown file."""
    seen: dict[str, int] = {}
    out = set()
    fenced = False
    for line in path.read_text().split("\n"):
        if line.startswith("```"):
            fenced = not fenced
        if fenced or not re.match(r"#{1,6} ", line):
            continue
        slug = re.sub(r"[^\w\- ]", "", line.lstrip("#").strip().lower()).replace(" ", "-")
        out.add(slug if slug not in seen else f"{slug}-{seen[slug]}")
        seen[slug] = seen.get(slug, 0) + 1
    return out


def line_of(text: str, number: int) -> str:
    return text.split("\n")[number - 1]


def python_snippets(text: str) -> list[tuple[int, str, bool]]:
    """(line number, code, whether it must parse) of python code: ```python blocks (must
    parse), indented blocks that import corral, inline spans that build an `...Options(`."""
    found = []
    for start, lang, body in code_blocks(text):
        code = textwrap.dedent("\n".join(body))
        if lang == "python" or (lang == "" and re.search(r"^(from|import) corral", code, re.M)):
            found.append((start, code, lang == "python"))
    found += [(number, span, False) for number, span in inline_code(text) if "Options(" in span]
    return found


def test_names() -> set[str]:
    return {name for path in (ROOT / "tests").glob("test_*.py")
            for name in re.findall(r"^\s*def (test_\w+)", path.read_text(), re.M)}


def is_module(dotted: str) -> bool:
    try:
        return importlib.util.find_spec(dotted) is not None
    except ModuleNotFoundError:
        return False


def resolves(dotted: str) -> bool:
    """`corral.a.b.name`: the longest importable module prefix, then attributes."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ModuleNotFoundError:
            continue
        for attr in parts[cut:]:
            if not hasattr(obj, attr):
                return False
            obj = getattr(obj, attr)
        return True
    return False


def script_flags(path: Path) -> set[str] | None:
    """The flags a bench/ or scripts/ program declares (None: it parses no flags itself)."""
    found = set(re.findall(r"add_argument\(\s*(?:\"-\w\",\s*)?\"(--[\w-]+)\"", path.read_text()))
    return found or None
