"""`corral synth rejection` and `corral synth distill`: graded samples of a task turned into
SFT records, each file with a manifest that says which generator, prompt, grader and round
made it (the lineage of priors).

Rejection sampling (STaR, ReST-EM's E-step): the model's own samples that the grader passes.
Distillation: a teacher's answers, picked by its own majority vote or taken as they come,
optionally only those the grader passes. The teacher may be the same model with more
inference compute (few-shot turns, a system prompt, n samples and a vote).
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

from corral.core.errors import CorralError
from corral.core.io import atomic_write_lines
from corral.infer.engine import SamplingParams
from corral.store.jobs import manifest_path, write_manifest
from corral.synth.sampling import Teacher, sample_task, select, sft_records

ORCA_SYSTEM = ("You are a helpful assistant. Think step by step and explain your reasoning "
               "before giving the final answer.")


@dataclass
class Recipe:
    """One synthesis run: which rule picks samples, and what the teacher sees."""
    kind: str  # rejection | distill
    rule: str = "pass"
    keep: int = 1
    min_votes: float = 0.0
    require_pass: bool = False
    star: bool = False
    round: int = 1
    teacher: Teacher = field(default_factory=Teacher)


def synthesize(generator, task, out: str, params: SamplingParams, recipe: Recipe,
               grader=None, batch_size: int = 16, samples: str = "", log=print,
               retry_failed: bool = False) -> dict:
    """Sample (resumably, into `samples`, default OUT.samples.jsonl), select, and write OUT
    (SFT chat rows) with its manifest; returns the counts. Two selections that name the same
    samples file share its generations."""
    if recipe.kind == "rejection" and grader is None:
        raise CorralError("rejection sampling needs a grader: a task with one, or --grader")
    if recipe.require_pass and grader is None:
        raise CorralError("--require-pass needs a grader: a task with one, or --grader")
    if Path(out).suffix != ".jsonl":
        raise CorralError(f"--out {out}: give a .jsonl path for the SFT records")
    samples_path = samples or f"{Path(out).with_suffix('')}.samples.jsonl"
    samples = sample_task(generator, task, samples_path, params, grader=grader,
                          teacher=recipe.teacher, star=recipe.star, batch_size=batch_size,
                          retry_failed=retry_failed,
                          extra={"recipe": recipe.kind, "round": recipe.round}, log=log)
    picks, stats = select(samples, recipe.rule, recipe.keep, recipe.min_votes,
                          recipe.require_pass)
    origin = {"recipe": recipe.kind, "rule": recipe.rule, "round": recipe.round,
              "generator": generator.identity(),
              "grader": getattr(grader, "name", None) if grader is not None else None,
              "template_sha256": _teacher_hash(recipe.teacher), "task": task.name}
    rows = sft_records(picks, {it.source: it for it in task.items}, origin)
    if not rows:
        raise CorralError(f"no sample was kept ({_summary(stats)}); sample more (-n), raise "
                          "--max-new-tokens, or give the teacher more help (--few-shot)")
    atomic_write_lines(out, [json.dumps(r, ensure_ascii=False) for r in rows])
    stats["pass_rate"] = stats["passed"] / max(1, stats["samples"])
    stats["prompt_pass_rate"] = stats["prompts_with_a_pass"] / max(1, stats["prompts"])
    samples_manifest = json.loads(manifest_path(samples_path).read_text(encoding="utf-8"))
    write_manifest(out, kind=f"synth-{recipe.kind}", recipe=_plain(recipe), counts=stats,
                   generator=generator.identity(), grader=origin["grader"], task=task.name,
                   params=_plain(params), template_sha256=origin["template_sha256"],
                   usage=samples_manifest.get("usage"), sources=[samples_manifest],
                   filters=[{"step": f"select:{recipe.rule}", "kept": len(rows),
                             "removed": stats["samples"] - len(rows)}])
    log(f"{recipe.kind}: {_summary(stats)} -> {out}")
    return stats


def _summary(stats: dict) -> str:
    return (f"{stats.get('prompts', 0)} prompts, {stats.get('samples', 0)} samples, "
            f"{stats.get('passed', 0)} passed, {stats.get('kept', 0)} kept from "
            f"{stats.get('prompts_kept', 0)} prompts")


def _teacher_hash(teacher: Teacher) -> str:
    text = json.dumps(_plain(teacher), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def _plain(obj) -> dict:
    from dataclasses import asdict

    return asdict(obj)
