"""Sample, grade, select: the shared core of rejection sampling (STaR, ReST-EM) and
distillation. Each prompt is answered n times by a generator, through a row-level resumable
job; the graded samples are kept on disk, and a selection rule turns them into SFT records
that say where they came from.

    samples = sample_task(generator, task, out, params, grader=task.grader, star=True)
    records, stats = select(samples, "pass", keep=1)

The teacher may see more than the student (few-shot turns, a system prompt: "more inference
compute"); the record's prompt is always the student's plain prompt (the item's messages),
so the student learns to answer without the help.
"""
from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass, fields

from corral.core.errors import CorralError
from corral.core.io import read_jsonl
from corral.core.records import Item, as_dicts, as_messages
from corral.graders.base import Sample, check_grader_errors, passed, score_error
from corral.infer.engine import SamplingParams
from corral.store.jobs import GenerationJob
from corral.tasks.prompt import PromptProgram

HINT = "(Hint: the correct final answer is {answer}. Explain the steps that lead to it, " \
       "without mentioning the hint.)"


@dataclass(frozen=True)
class Teacher(PromptProgram):
    """What the generator sees beyond the student's prompt: a prompt program (system prompt,
    few-shot turns), rendered by the one renderer, `corral.tasks.prompt.PromptProgram`."""

    def conversation(self, item) -> list[dict]:
        """An item (its fields fill the template) or bare messages, as the generator sees it."""
        return self.render(item)

    @classmethod
    def of(cls, program: PromptProgram) -> Teacher:
        return cls(**{f.name: getattr(program, f.name) for f in fields(program)})


def sample_task(generator, task, out, params: SamplingParams, grader=None,
                teacher: Teacher | None = None, star: bool = False, batch_size: int = 16,
                retry_failed: bool = False, extra: dict | None = None, log=print,
                threshold: float = 1.0):
    """Graded samples of every task item, one job row per item, kept in `out` (resumable).

    star: a prompt none of whose samples passed is asked again with the reference answer
    as a hint (STaR's rationalisation); those samples are marked `rationalised`.
    threshold: the score that passes when the grader sets no pass/fail."""
    teacher = teacher or Teacher()
    if star and grader is None:
        raise CorralError("--star needs a grader and reference answers to hint with")
    rows = [{"source": it.source, "messages": as_dicts(it.messages), "fields": it.fields}
            for it in task.items]
    template = {"teacher": teacher.spec(), "star": star, "hint": HINT if star else "",
                "grader": getattr(grader, "name", None)}
    if threshold != 1.0:  # only then, so the keys of rows sampled before it existed hold
        template["threshold"] = threshold
    template = json.dumps(template, sort_keys=True)
    job = GenerationJob(out, template=template, model=generator.identity(), params=params,
                        batch_size=batch_size, retry_failed=retry_failed, usage=generator.usage,
                        extra={"stage": "samples", "task": task.name, **(extra or {})})
    by_source = {it.source: it for it in task.items}

    def answer(batch):
        items = [by_source[row["source"]] for row in batch]
        convs = teacher.render_all(items)
        outs = generator.chat(convs, params, return_errors=True)
        graded = _grade(items, outs, grader, threshold)
        if star:
            _rationalise(generator, items, batch, graded, grader, teacher, params, threshold)
        return graded

    report = job.run(rows, answer)
    log(f"samples: {report.generated} prompts generated, {report.reused} reused, "
        f"{report.failed} failed -> {out}")
    report.require_output("prompt", "run again with --retry-failed")
    return read_jsonl(out)


def _grade(items, outs, grader, threshold: float = 1.0) -> list:
    """One row per item: its samples with text, finish reason, score, pass and answer."""
    rows, pairs, where = [], [], []
    for k, (item, gens) in enumerate(zip(items, outs)):
        if isinstance(gens, Exception):
            rows.append(gens)  # the job records it as a failed row, with its error
            continue
        rows.append({"source": item.source, "samples": [
            {"text": g.text, "finish": g.finish_reason, "tokens": len(g.token_ids)}
            for g in gens]})
        for j, g in enumerate(gens):
            pairs.append((item.grader_item(), Sample.of(g.text)))
            where.append((k, j))
    if grader is not None and pairs:
        scores = grader.grade_batch(pairs)
        check_grader_errors(scores, grader)
        for (k, j), s in zip(where, scores):
            rows[k]["samples"][j].update(score=float(s.value), passed=passed(s, threshold),
                                         answer=s.answer, error=score_error(s))
    return rows


def _rationalise(generator, items, batch, graded, grader, teacher, params,
                 threshold: float = 1.0) -> None:
    todo = [k for k, row in enumerate(graded) if isinstance(row, dict)
            and not any(s.get("passed") for s in row["samples"])
            and items[k].fields.get("answer") not in (None, "")]
    if not todo:
        return
    convs = []
    for k in todo:
        messages = [dict(m) for m in batch[k]["messages"]]
        hint = HINT.format(answer=items[k].fields["answer"])
        messages[-1] = {**messages[-1], "content": f"{messages[-1]['content']}\n{hint}"}
        convs.append(teacher.conversation(Item(as_messages(messages), items[k].fields,
                                               items[k].source)))
    outs = _grade([items[k] for k in todo], generator.chat(convs, params, return_errors=True),
                  grader, threshold)
    for k, row in zip(todo, outs):
        if isinstance(row, dict):
            graded[k]["samples"] += [{**s, "rationalised": True} for s in row["samples"]]


def _normalised(text: str) -> str:
    return re.sub(r"\s+", " ", text.strip().casefold())


def _vote_key(sample: dict) -> str | None:
    """What a majority vote counts: the grader's extracted answer, else the last line."""
    if sample.get("answer") not in (None, ""):
        return str(sample["answer"]).strip()
    lines = [line for line in sample["text"].strip().splitlines() if line.strip()]
    return _normalised(lines[-1]) if lines else None


RULES = ("pass", "majority", "first")


def select(samples: list[dict], rule: str = "pass", keep: int = 1, min_votes: float = 0.0,
           require_pass: bool = False) -> tuple[list[dict], dict]:
    """SFT-ready picks per prompt, and counts.

    pass: samples the grader passed, best score first (rejection sampling, STaR, ReST-EM).
    majority: samples whose answer is the most common one among the finished samples, when
      its share is at least min_votes (self-consistency as the teacher); require_pass also
      drops picks the grader failed (distillation with a grader).
    first: the first finished sample (plain distillation).
    Samples cut at max_new_tokens never count; repeats of one text count once; keep caps the
    picks per prompt."""
    if rule not in RULES:
        raise CorralError(f"selection rule '{rule}': use one of {', '.join(RULES)}")
    if keep < 1:
        raise CorralError(f"--keep {keep}: keep at least 1 sample per prompt")
    picks, stats = [], Counter()
    for row in samples:
        finished = [s for s in row["samples"] if s["finish"] != "length" and s["text"].strip()]
        stats["prompts"] += 1
        stats["samples"] += len(row["samples"])
        stats["passed"] += sum(bool(s.get("passed")) for s in row["samples"])
        stats["prompts_with_a_pass"] += any(s.get("passed") for s in row["samples"])
        chosen, votes = _choose(finished, rule, min_votes)
        if require_pass:
            chosen = [s for s in chosen if s.get("passed")]
        seen, kept = set(), []
        for s in chosen:
            if _normalised(s["text"]) not in seen and len(kept) < keep:
                seen.add(_normalised(s["text"]))
                kept.append(s)
        stats["prompts_kept"] += bool(kept)
        stats["majority_correct"] += bool(rule == "majority" and kept and kept[0].get("passed"))
        picks += [{"source": row["source"], "sample": s, "votes": votes} for s in kept]
    stats["kept"] = len(picks)
    return picks, dict(stats)


def _choose(finished: list[dict], rule: str, min_votes: float) -> tuple[list[dict], float]:
    if rule == "pass":
        return sorted((s for s in finished if s.get("passed")),
                      key=lambda s: -s.get("score", 0.0)), 0.0
    if rule == "first":
        return finished[:1], 0.0
    counts = Counter(k for k in map(_vote_key, finished) if k is not None)
    if not counts:
        return [], 0.0
    top, count = counts.most_common(1)[0]
    share = count / len(finished)
    if share < min_votes:
        return [], share
    return [s for s in finished if _vote_key(s) == top], share


def sft_records(picks: list[dict], items_by_source: dict, origin: dict) -> list[dict]:
    """Chat rows (student prompt + picked answer) with provenance per row."""
    rows = []
    for pick in picks:
        item, s = items_by_source[pick["source"]], pick["sample"]
        provenance = {**origin, "source": pick["source"], "score": s.get("score"),
                      "rationalised": bool(s.get("rationalised")), "votes": pick["votes"]}
        rows.append({"messages": as_dicts(item.messages) +
                     [{"role": "assistant", "content": s["text"].strip()}],
                     "provenance": provenance})
    return rows
