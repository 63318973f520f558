"""`corral judge audit`, `corral feedback label` and `corral feedback constitutional` as
library calls: one typed options object and one function per command, returning a typed
result. Option field names are the CLI flags' dest names, with the same defaults.

    from corral.api.feedback import LabelOptions, label
    result = label(LabelOptions(task="arithmetic", samples="s.jsonl", out="pairs.jsonl"))

Audit and label read graded answers from a samples file; when it does not exist yet and
`model` is given, they sample it first through `sampler` (`synth.sampling.sample_task`,
a package of this rank: `corral.api.feedback` passes it in). Nothing here prints: progress
lines go to `log`, and the results carry what the CLI prints.
"""
from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from corral.core.errors import CorralError
from corral.data.splits import refuse_sealed_items

FILE_TASK = (".jsonl", ".json", ".parquet")
DEFAULT_MODEL = "smollm2-135m-instruct"
Log = Callable[[str], None]


def _quiet(log: Log | None) -> Log:
    return log or (lambda _: None)


# ---------------------------------------------------------------- options
@dataclass(frozen=True)
class _JudgeTaskOptions:
    """What audit and label share: the task, sampling the answers, and the judge."""
    task: str = ""
    split: str = "dev"
    data: str = ""
    limit: int = 0
    model: str = ""
    n: int = 4
    temperature: float = 0.8
    max_new_tokens: int = 128
    engine_batch: int = 64
    seed: int = 0
    root: str = "runs"
    judge: str = DEFAULT_MODEL
    rubric: str = "correctness"
    reasoning: bool = True
    verdict: str = "generate"
    retries: int = 2
    judge_max_new_tokens: int = 256
    cache: str = ""
    max_calls: int = 0
    max_items: int = 60


@dataclass(frozen=True)
class AuditOptions(_JudgeTaskOptions):
    """`corral judge audit`: the judge's report card on answers a grader scored."""
    samples: str = ""  # default OUT.samples.jsonl
    other_samples: str = ""
    out: str = ""


@dataclass(frozen=True)
class LabelOptions(_JudgeTaskOptions):
    """`corral feedback label`: pairs of answers judged in both orders into DPO/KTO rows."""
    samples: str = ""
    other: str = ""
    per_prompt: int = 1
    audit: bool = True
    calibrate: bool = False
    kto_out: str = ""
    out: str = ""


@dataclass(frozen=True)
class ConstitutionalOptions:
    """`corral feedback constitutional`: SL-CAI SFT rows or RL-CAI preference rows."""
    mode: str = "sl"
    task: str = ""
    split: str = "train"
    data: str = ""
    limit: int = 0
    prompts: str = ""
    model: str = DEFAULT_MODEL
    critic: str = ""
    constitution: str = ""
    rounds: int = 2
    max_new_tokens: int = 256
    critic_max_new_tokens: int = 0
    temperature: float = 0.7
    seed: int = 0
    no_judge_reasoning: bool = False
    keep_truncated: bool = False
    batch_size: int = 16
    engine_batch: int = 64
    retry_failed: bool = False
    out: str = ""
    root: str = "runs"


# ---------------------------------------------------------------- results
@dataclass
class AuditResult:
    """The report card (see feedback/audit.py), its text, and where it was written ("")."""
    card: dict
    text: str
    out: str = ""


@dataclass
class LabelResult:
    """The preference rows written, the KTO rows (""), the counts, the judge's report card
    on the graded samples (None without one), and the one-line summary."""
    out: str
    kto_out: str
    counts: dict
    card: dict | None
    card_text: str
    summary: str


@dataclass
class ConstitutionalResult:
    mode: str
    out: str
    counts: dict = field(default_factory=dict)


# ---------------------------------------------------------------- judge audit, label
def make_judge(opts: _JudgeTaskOptions, generator=None):
    """The judge the options name (its rubric file read, its cache opened)."""
    from corral.graders.judging import Judge, JudgeCache
    from corral.infer.generators import generator_for

    rubric = opts.rubric
    if rubric not in ("additive", "correctness", "pal"):
        path = Path(rubric)
        if not path.is_file():
            raise CorralError(f"--rubric {rubric}: not a built-in (additive, correctness, pal) "
                              "and no such file; give a template with {question} and {answer}")
        rubric = path.read_text(encoding="utf-8")
    gen = generator or generator_for(opts.judge, root=opts.root, key="--judge",
                                     batch_size=opts.engine_batch)
    cache = JudgeCache(opts.cache) if opts.cache else None
    return Judge(gen, rubric=rubric, reasoning=opts.reasoning, retries=opts.retries,
                 max_new_tokens=opts.judge_max_new_tokens, cache=cache,
                 max_calls=opts.max_calls or None, verdict=opts.verdict)


def _task(opts: _JudgeTaskOptions):
    """A built-in task, or a prompts file (its answers are graded in the samples file)."""
    from corral.data.readers import load_items
    from corral.tasks import Task, get_task

    if not opts.task:
        raise CorralError("--task is missing: give arithmetic | gsm8k | ... | FILE.jsonl")
    if opts.task.endswith(FILE_TASK):
        items = load_items(opts.task)[:opts.limit or None]
        if not items:
            raise CorralError(f"{opts.task}: no prompts")
        return Task(name=opts.task, items=items, grader=None)
    return get_task(opts.task, split=opts.split, data=opts.data, limit=opts.limit)


def _samples(opts: _JudgeTaskOptions, task, path: str, sampler, log: Log) -> dict:
    """source → graded samples, read from `path`, or sampled into it with `model` first."""
    from corral.core.io import read_jsonl

    if not Path(path).is_file():
        if not opts.model:
            raise CorralError(f"--samples {path} does not exist; give a samples file from "
                              "`corral synth rejection --samples FILE`, or --model MODEL to "
                              "sample one now")
        if sampler is None:
            raise CorralError(f"--samples {path} does not exist; sampling it needs the "
                              "synthesis package: call corral.api.feedback instead")
        from corral.infer.engine import SamplingParams
        from corral.infer.generators import generator_for

        params = SamplingParams(n=opts.n, temperature=opts.temperature,
                                max_new_tokens=opts.max_new_tokens, seed=opts.seed)
        gen = generator_for(opts.model, root=opts.root, key="--model",
                            batch_size=opts.engine_batch)
        sampler(gen, task, path, params, grader=task.grader, log=log)
    rows = read_jsonl(path)
    samples = {r["source"]: r["samples"] for r in rows
               if isinstance(r, dict) and isinstance(r.get("samples"), list) and "source" in r}
    known = {it.source for it in task.items}
    if not samples or not known & set(samples):
        raise CorralError(f"{path}: no samples for the questions of task {task.name} "
                          f"({opts.split}); sample them with the same --task, --split and --data")
    return {k: v for k, v in samples.items() if k in known}


def _conversations(task) -> dict:
    from corral.core.records import as_dicts

    return {it.source: as_dicts(it.messages) for it in task.items}


def judge_audit(opts: AuditOptions, log: Log | None = None, sampler=None) -> AuditResult:
    """`corral judge audit`: the judge's report card; written to `out` when given."""
    from corral.core.io import atomic_write_text
    from corral.feedback.audit import audit, format_card

    log = _quiet(log)
    task = _task(opts)
    samples = _samples(opts, task, opts.samples or f"{opts.out or 'judge-audit'}.samples.jsonl",
                       sampler, log)
    other = _samples(opts, task, opts.other_samples, sampler, log) if opts.other_samples \
        else None
    card = audit(make_judge(opts), _conversations(task), samples, other=other,
                 max_items=opts.max_items, seed=opts.seed)
    card["task"] = {"name": task.name, "split": opts.split, "items": len(task.items)}
    if opts.out:
        atomic_write_text(opts.out, json.dumps(card, indent=2, default=str) + "\n")
    return AuditResult(card, format_card(card), opts.out)


def label(opts: LabelOptions, log: Log | None = None, sampler=None) -> LabelResult:
    """`corral feedback label`: preference rows (and KTO rows) from judged pairs, with the
    judge's report card on the graded samples in their manifest. Prompts of a sealed unseen
    split are refused: the rows are training data."""
    from corral.core.io import atomic_write_lines, file_sha256
    from corral.feedback.audit import audit, format_card
    from corral.feedback.label import label_pairs
    from corral.store.jobs import manifest_path, write_manifest

    if not opts.samples:
        raise CorralError("--samples is missing: give the graded samples file (made with "
                          "--model when it does not exist)")
    if not opts.out:
        raise CorralError("--out is missing: give the .jsonl path for the preference rows")
    log = _quiet(log)
    refuse_sealed_items((), opts.split, "preference rows", "--split")
    task = _task(opts)
    refuse_sealed_items(task.items, opts.split, "preference rows", "--split")
    samples = _samples(opts, task, opts.samples, sampler, log)
    other = _samples(opts, task, opts.other, sampler, log) if opts.other else None
    judge = make_judge(opts)
    conversations = _conversations(task)
    rows, kto, counts = label_pairs(judge, conversations, samples, other=other,
                                    per_prompt=opts.per_prompt, seed=opts.seed,
                                    calibrated=opts.calibrate)
    card = None
    if opts.audit and any(s.get("passed") is not None for v in samples.values() for s in v):
        card = audit(judge, conversations, samples, max_items=opts.max_items, seed=opts.seed)
    atomic_write_lines(opts.out, [json.dumps(r, ensure_ascii=False) for r in rows])
    sources = [json.loads(manifest_path(p).read_text(encoding="utf-8"))
               for p in (opts.samples, opts.other) if p and manifest_path(p).is_file()]
    fields = dict(kind="feedback-label", judge=judge.identity(), counts=counts,
                  judge_stats=judge.stats.as_dict(), report_card=card, sources=sources,
                  inputs=[{"path": p, "sha256": file_sha256(p)}
                          for p in (opts.samples, opts.other) if p])
    write_manifest(opts.out, **fields)
    if opts.kto_out:
        atomic_write_lines(opts.kto_out, [json.dumps(r, ensure_ascii=False) for r in kto])
        write_manifest(opts.kto_out, **fields)
    agree = f", agrees with the grader on {counts['agrees_with_grader']}/" \
        f"{counts['graded_pairs']} graded pairs" if counts["graded_pairs"] else ""
    summary = (f"label: {counts['pairs']} pairs judged in both orders: {counts['consistent']} "
               f"consistent -> {opts.out}; dropped {counts['tie']} ties, "
               f"{counts['inconsistent']} inconsistent, {counts['unparsed']} unparsed{agree}")
    return LabelResult(opts.out, opts.kto_out, dict(counts), card,
                       format_card(card) if card else "", summary)


# ---------------------------------------------------------------- constitutional
def _cai_rows(opts: ConstitutionalOptions) -> list[dict]:
    from corral.data.readers import load_items
    from corral.feedback.constitutional import prompt_rows
    from corral.tasks import get_task

    if bool(opts.task) == bool(opts.prompts):
        raise CorralError("give the prompts with exactly one of --task NAME (a built-in task) "
                          "or --prompts FILE (rows with 'messages' or 'prompt')")
    refuse_sealed_items((), opts.split, "training data", "--split")
    if opts.limit < 0:
        raise CorralError(f"--limit {opts.limit}: give a positive number of prompts, or 0 for "
                          "all")
    path = opts.prompts or (opts.task if opts.task.endswith(FILE_TASK) else "")
    if path:
        items = load_items(path)[:opts.limit or None]
    else:
        items = get_task(opts.task, split=opts.split, data=opts.data, limit=opts.limit).items
    refuse_sealed_items(items, opts.split, "training data", "--split")
    return prompt_rows(items)


def constitutional(opts: ConstitutionalOptions, log: Log | None = None) -> ConstitutionalResult:
    """`corral feedback constitutional`: every mistake in the options, the constitution or
    the prompts is raised before a model loads."""
    from corral.feedback.constitutional import rl_cai, sl_cai
    from corral.feedback.principles import load_constitution
    from corral.graders.judging import Judge, JudgeCache
    from corral.infer.engine import SamplingParams
    from corral.infer.generators import generator_for

    if opts.mode not in ("sl", "rl"):
        raise CorralError(f"--mode {opts.mode}: use sl (critique and revise) or rl (compare "
                          "two responses)")
    if Path(opts.out).suffix != ".jsonl":
        raise CorralError(f"--out {opts.out}: give a .jsonl path for the rows")
    if opts.rounds < 1:
        raise CorralError(f"--rounds {opts.rounds}: give at least 1 critique-and-revise round")
    if opts.mode == "rl" and opts.temperature <= 0:
        raise CorralError(f"--temperature {opts.temperature:g}: RL-CAI samples two responses "
                          "to compare, and greedy decoding makes them identical; give a "
                          "temperature above 0, such as 0.8")
    log = _quiet(log)
    constitution = load_constitution(opts.constitution)  # a mistake shows before models load
    rows = _cai_rows(opts)
    policy = generator_for(opts.model, root=opts.root, batch_size=opts.engine_batch,
                           key="--model")
    critic = policy if opts.critic in ("", opts.model) else generator_for(
        opts.critic, root=opts.root, batch_size=opts.engine_batch, key="--critic")
    params = SamplingParams(temperature=opts.temperature, max_new_tokens=opts.max_new_tokens,
                            seed=opts.seed)
    critic_tokens = opts.critic_max_new_tokens or opts.max_new_tokens
    if opts.mode == "sl":
        critic_params = SamplingParams(temperature=0.0, max_new_tokens=critic_tokens)
        counts = sl_cai(policy, critic, constitution, rows, opts.out, rounds=opts.rounds,
                        params=params, critic_params=critic_params, seed=opts.seed,
                        batch_size=opts.batch_size, retry_failed=opts.retry_failed,
                        keep_truncated=opts.keep_truncated, log=log)
        return ConstitutionalResult("sl", opts.out, counts)
    judge = Judge(critic, reasoning=not opts.no_judge_reasoning, max_new_tokens=critic_tokens,
                  cache=JudgeCache(f"{opts.out}.judge.jsonl"))
    counts = rl_cai(policy, judge, constitution, rows, opts.out, params=params, seed=opts.seed,
                    batch_size=opts.batch_size, retry_failed=opts.retry_failed,
                    keep_truncated=opts.keep_truncated, log=log)
    return ConstitutionalResult("rl", opts.out, counts)
