"""The judge's prompt templates and the strict parsers of its verdicts.

Templates are plain text with `{question}`, `{answer}` (pointwise, critique), `{answer_a}`,
`{answer_b}` (pairwise) and `{principle}`; a user's own template (`--rubric FILE`) uses the
same names. Each template ends by naming the one verdict format its parser accepts, because a
small judge follows a format it was just shown far more often than one it must guess.

The parsers of OpenAI's grader JSON (`score_model`, `label_model`) live here too:
`parse_score` and `parse_label` read the looser reply forms that format allows (a bare
number, JSON `{"result": ...}`, a fenced block).

Parsers are strict on purpose: a reply that holds no verdict, or two different ones, is
*unparsed* — counted and retried — never read as 0 or as the first letter that happens to
appear ("A" is also an article).
"""
from __future__ import annotations

import json
import re

from corral.graders.spec import _is_number

# The question and the one response a pointwise rubric judges, closing each rubric.
_QUESTION_AND_RESPONSE = """
<question>
{question}
</question>
<response>
{answer}
</response>
{principle}"""

# Self-Rewarding LMs' additive 5-point rubric (Yuan et al. 2024), lightly shortened.
ADDITIVE = """Review the user's question and the response below using the additive 5-point \
scoring system. Points accumulate for each criterion met:
- Add 1 point if the response is relevant and gives some information related to the question, \
even if incomplete.
- Add another point if it addresses a substantial part of the question but does not completely \
resolve it.
- Award a third point if it answers the basic elements of the question in a useful way.
- Grant a fourth point if it addresses the question directly and comprehensively, clearly \
written and well organised.
- Bestow a fifth point if it is impeccable: correct, focused, with no extraneous content.
""" + _QUESTION_AND_RESPONSE

CORRECTNESS = """Check whether the response answers the question correctly. Work the problem \
out yourself, then compare the response's final answer with yours. Give 1 point if the final \
answer is correct and 0 points if it is wrong or missing.
""" + _QUESTION_AND_RESPONSE

PAIRWISE = """Please act as an impartial judge and compare the two responses to the user's \
question below. Choose the response that answers the question better: more correct, more \
helpful, more relevant. Do not let the order of the responses, their length or the names of \
the assistants influence you.

<question>
{question}
</question>
<response_a>
{answer_a}
</response_a>
<response_b>
{answer_b}
</response_b>
{principle}"""

# The one critique: the critic's closing instruction and its one "satisfied" rule (see
# `satisfied`) are shared by the judge's critique, SL-CAI's critic and self-refine's review.
SATISFIED = "NO ISSUES"
CRITIQUE_CLOSING = "List the problems briefly. If there is nothing to improve, reply with " \
    f"exactly: {SATISFIED}"
# {request} says what to look for (a principle's critique request, or DEFAULT_CRITIQUE);
# {principle} is a judge's principle line (fill() writes it), empty otherwise.
CRITIQUE = """Critique the response to the user's question below. {request}{principle}

<question>
{question}
</question>
<response>
{answer}
</response>

""" + CRITIQUE_CLOSING
DEFAULT_CRITIQUE = "Point out specific problems: mistakes, missing steps, unclear or " \
    "unnecessary parts."


def critique_turn(request: str) -> str:
    """The critique asked as a follow-up turn of a conversation that already holds the
    question and the answer (self-refine's review): the request and the same closing."""
    return f"{request} {CRITIQUE_CLOSING}"


# The program-aided rubric (graders/pal_judge.py): the judge writes a program computing the
# answer (graders/programs.py's prompt), the sandbox runs it, and its printed value is compared
# with the response's final answer. No template is filled; this text names the check.
PAL = "program-aided: a program computes the answer to {question}; {answer} must match it"
RUBRICS = {"additive": (ADDITIVE, 0, 5), "correctness": (CORRECTNESS, 0, 1), "pal": (PAL, 0, 1)}

REASON_SCORE = '\nFirst explain your assessment in at most 80 words, then end with a line ' \
    '"Score: <points>".'
BARE_SCORE = '\nReply with only one line: "Score: <points>".'
REASON_PAIR = '\nFirst explain your comparison in at most 80 words, then end with your final ' \
    'verdict: "[[A]]" if response A is better, "[[B]]" if response B is better, or "[[C]]" ' \
    'for a tie.'
BARE_PAIR = '\nReply with only your verdict: "[[A]]" if response A is better, "[[B]]" if ' \
    'response B is better, or "[[C]]" for a tie.'
CHOOSE_CORRECT = "\nIs the response's final answer correct? Reply with only Yes or No."
CHOOSE_POINTS = "\nReply with only the total number of points, a single digit."
CHOOSE_PAIR = "\nWhich response is better? Reply with only the letter A or B."
RETRY_SCORE = 'Your reply did not end with a score in the required form. Reply with only ' \
    'one line: "Score: <points>", points from {low:g} to {high:g}.'
RETRY_PAIR = 'Your reply did not give a verdict in the required form. Reply with only ' \
    '"[[A]]", "[[B]]" or "[[C]]".'

_SCORE = re.compile(r"(?:score|rating|points?|total)\s*[:=]\s*\**\s*([-+]?\d+(?:\.\d+)?)",
                    re.IGNORECASE)
_BRACKET_NUMBER = re.compile(r"\[\[\s*([-+]?\d+(?:\.\d+)?)\s*\]\]")
_BRACKET_LABEL = re.compile(r"\[\[\s*(A|B|C|tie)\s*\]\]", re.IGNORECASE)
_VERDICT_WORD = re.compile(r"(?:final verdict|verdict|winner|better response)\s*(?:is)?\s*[:=]?"
                           r"\s*\**\s*(?:response\s+)?\b(A|B|tie)\b", re.IGNORECASE)


def parse_points(reply: str, low: float, high: float) -> tuple[float | None, str]:
    """(points, "") from "Score: 4", "[[4]]", or a reply that is only a number; the last such
    mark counts (a reasoning judge may quote the rubric first). (None, why) when none is there
    or it falls outside [low, high]."""
    text = reply.strip()
    marks = _SCORE.findall(text) or _BRACKET_NUMBER.findall(text)
    if not marks and re.fullmatch(r"[-+]?\d+(?:\.\d+)?\.?", text):
        marks = [text.rstrip(".")]
    if not marks:
        return None, "no 'Score: <points>' in the reply"
    value = float(marks[-1])
    if not low <= value <= high:
        return None, f"score {value:g} is outside {low:g}..{high:g}"
    return value, ""


def parse_preference(reply: str) -> tuple[str | None, str]:
    """("A" | "B" | "tie", "") from "[[A]]"/"[[B]]"/"[[C]]" (MT-Bench's marks), "Verdict: A",
    or a reply that is only "A", "B" or "tie". Marks that disagree, or none, are (None, why)."""
    text = reply.strip()
    marks = [m.upper() for m in _BRACKET_LABEL.findall(text)] or \
        [m.upper() for m in _VERDICT_WORD.findall(text)]
    if not marks and text.strip("\"'.*` ").upper() in ("A", "B", "C", "TIE"):
        marks = [text.strip("\"'.*` ").upper()]
    marks = ["tie" if m in ("C", "TIE") else m for m in marks]
    if not marks:
        return None, "no verdict [[A]], [[B]] or [[C]] in the reply"
    if len(set(marks)) > 1:
        return None, f"the reply gives different verdicts {sorted(set(marks))}"
    return marks[0], ""


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
    """score_model: a number, JSON `{"result": x}` (also inside text or a ``` fence), or a
    number that ends the reply ("... so the score is 0.8"); None when the reply holds none."""
    text = _FENCE.sub("", reply.strip())
    value = _json_result(text)
    if _is_number(value):
        return float(value)
    match = _NUMBER_AT_END.search(text)
    return float(match.group(1)) if match else None


def parse_label(reply: str, labels: list[str]) -> str | None:
    """label_model: the label the reply names: the whole reply, JSON `{"result": label}`, or
    the only label that occurs in it as a word (case-insensitive); None when ambiguous or
    absent."""
    by_folded = {label.casefold(): label for label in labels}
    text = _FENCE.sub("", reply.strip())
    for candidate in (text.strip("\"'`. \n"), _json_result(text)):
        if isinstance(candidate, str) and candidate.strip().casefold() in by_folded:
            return by_folded[candidate.strip().casefold()]
    found = [label for label in labels
             if re.search(rf"(?<!\w){re.escape(label)}(?!\w)", text, re.IGNORECASE)]
    return found[0] if len(found) == 1 else None


def satisfied(critique: str) -> bool:
    """THE rule for a critic's reply (self-refine and SL-CAI alike): satisfied when its last
    non-empty line is NO ISSUES (case, spacing and a final full stop aside). "No issues,
    except ..." and "There are NO ISSUES with style, but ..." are critiques, not passes."""
    lines = [line for line in critique.splitlines() if line.strip()]
    if not lines:
        return False
    return " ".join(lines[-1].split()).rstrip(".!").strip().upper() == SATISFIED


def question_text(conversation) -> str:
    """The question a judge reads: the conversation's user turns (system turns left out: they
    are the policy's instructions, not the user's request)."""
    if isinstance(conversation, str):
        return conversation
    turns = [m for m in conversation if m["role"] != "system"]
    if len(turns) == 1:
        return str(turns[0]["content"])
    return "\n".join(f"{m['role']}: {m['content']}" for m in turns)


def fill(template: str, **fields) -> str:
    """The template with its fields; a principle, when given, becomes its own line."""
    principle = fields.pop("principle", "") or ""
    if principle:
        principle = f"\nJudge by this principle: {principle}\n"
    fields["principle"] = principle
    # One pass, so an answer that itself contains "{question}" is left as written, and so is
    # any other {word} or brace in a user's rubric.
    return _FIELD.sub(lambda m: str(fields.get(m.group(1), m.group(0))), template)


_FIELD = re.compile(r"\{(\w+)\}")
