"""Constitutional AI (Bai et al. 2022): training data from a model's own responses, judged by
written principles rather than by human labels.

    constitution = load_constitution("my.txt")                 # or None: the shipped default
    sl_cai(policy, critic, constitution, rows, "cai.sft.jsonl", rounds=2)     # SFT rows
    rl_cai(policy, Judge(critic), constitution, rows, "cai.dpo.jsonl")      # preference rows

SL-CAI: the policy answers; then, up to `rounds` times, the critic critiques the current
response under a principle drawn at random and the policy rewrites it given that critique; a
critic that replies NO ISSUES ends the row early. The SFT row is the prompt with the final
revision; its provenance keeps the original, every principle, critique and revision.

RL-CAI: the policy answers twice (temperature > 0), or a row brings its own two `responses`;
the feedback model compares them under one drawn principle, in both orders. Only a consistent
verdict becomes a preference row; ties, position-following (inconsistent) and unparsed
verdicts are dropped and counted, since a DPO row must say which response is better.

Both run as row-level resumable jobs (store/jobs.py): each batch of prompts is saved when it
is done, a killed job run again redoes only the unfinished rows, and a row whose call failed
(an endpoint down mid-job) is kept with its error and redone with `retry_failed`. Principles
are drawn from a generator seeded by `seed` and the row, so a rerun draws the same ones.
"""
from __future__ import annotations

import json
import random
from collections import Counter
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from corral.core.errors import CorralError
from corral.core.io import atomic_write_lines, content_hash, read_jsonl
from corral.core.records import as_dicts
from corral.feedback.principles import CRITIQUE, REVISION
from corral.graders import judge_prompts as P
from corral.infer.engine import SamplingParams
from corral.store.jobs import GenerationJob, write_manifest


def prompt_rows(items) -> list[dict]:
    """Job rows from task or file items: source, messages, and `responses` when an item brings
    its own two (RL-CAI then judges those instead of sampling)."""
    rows = []
    for item in items:
        row = {"source": item.source, "messages": as_dicts(item.messages)}
        given = item.fields.get("responses")
        if given is not None:
            if not (isinstance(given, list) and len(given) == 2 and all(
                    isinstance(r, str) and r.strip() for r in given)):
                raise CorralError(f"{item.source}: 'responses' must be a list of two non-empty "
                                  "texts to compare; remove it to sample them instead")
            row["responses"] = given
        rows.append(row)
    if not rows:
        raise CorralError("no prompts to work on; give a task or a prompts file with rows")
    return rows


@dataclass
class _Row:
    """One prompt's SL-CAI state between the batched calls."""
    row: dict
    rng: random.Random
    response: str
    original: str
    finish: str
    principles: list = field(default_factory=list)
    critiques: list = field(default_factory=list)
    revisions: list = field(default_factory=list)
    satisfied: bool = False
    done: bool = False
    error: Exception | None = None


def _rng(seed: int, row: dict) -> random.Random:
    return random.Random(content_hash({"seed": seed, "row": row}))


def _context(row: dict) -> list[dict]:
    """The prompt's system turns: the policy keeps its instructions while it revises."""
    return [m for m in row["messages"] if m["role"] == "system"]


def sl_cai(generator, critic, constitution, rows: list[dict], out, *, rounds: int = 2,
           params: SamplingParams | None = None, critic_params: SamplingParams | None = None,
           seed: int = 0, batch_size: int = 16, retry_failed: bool = False,
           keep_truncated: bool = False, log=print) -> dict:
    """Write SFT rows of final revisions to `out` (see the module docstring); every row the
    job finished is in OUT-stem.rounds.jsonl. A final response cut at max_new_tokens is left
    out unless keep_truncated (a cut-off target teaches stopping mid-sentence). Returns
    counts."""
    if rounds < 1:
        raise CorralError(f"--rounds {rounds}: give at least 1 critique-and-revise round")
    params = params or SamplingParams(temperature=0.7, max_new_tokens=256, seed=seed)
    critic_params = critic_params or SamplingParams(temperature=0.0, max_new_tokens=256)
    params = replace(params, n=1)
    template = {"mode": "sl", "critique": CRITIQUE, "revision": REVISION, "rounds": rounds,
                "seed": seed, "constitution": constitution.sha256,
                "critic": critic.identity(), "critic_params": asdict(critic_params)}

    def work(batch: list[dict]) -> list:
        first = generator.chat([r["messages"] for r in batch], params, return_errors=True)
        states = [g if isinstance(g, Exception) else _Row(
            r, _rng(seed, r), g[0].text.strip(), g[0].text.strip(), g[0].finish_reason)
            for r, g in zip(batch, first)]
        live = [s for s in states if isinstance(s, _Row)]
        for _ in range(rounds):
            live = [s for s in live if not s.done]
            if not live:
                break
            drawn = [constitution.draw(s.rng) for s in live]
            replies = critic.chat([_critique_prompt(s, p) for s, p in zip(live, drawn)],
                                  critic_params, return_errors=True)
            revise = _take_critiques(live, drawn, replies)
            if revise:
                revised = generator.chat([_revision_prompt(s, p) for s, p in revise], params,
                                         return_errors=True)
                _take_revisions(revise, revised)
        return [s if isinstance(s, Exception) else _sft_row(s, generator, critic, constitution)
                for s in states]

    job = GenerationJob(f"{Path(out).with_suffix('')}.rounds.jsonl", template=template,
                        model=generator.identity(), params=params, batch_size=batch_size,
                        retry_failed=retry_failed, usage=generator.usage)
    report, usage = _run(job, rows, work, generator, critic)
    report.require_output("prompt", "run again (with --retry-failed)")
    done = read_jsonl(job.out_path)
    kept = [r for r in done if keep_truncated or not r["provenance"]["truncated"]]
    counts = _sl_counts(rows, done, kept, report)
    summary = (f"{len(rows)} prompts, {counts['revised']} revised, "
               f"{counts['satisfied_at_round_0']} satisfied at round 0, "
               f"{counts['dropped_truncated']} cut at max_new_tokens, {report.failed} failed")
    if not kept:
        raise CorralError(f"constitutional sl: no row to write ({summary}; rows in "
                          f"{job.out_path}); raise --max-new-tokens, or pass --keep-truncated")
    _write(out, kept, "constitutional-sl", job, constitution, counts, usage, rounds=rounds,
           generator=generator.identity(), critic=critic.identity(), params=params,
           critic_params=critic_params, seed=seed, keep_truncated=keep_truncated)
    log(f"constitutional sl: {summary}, {report.reused} reused -> {out}")
    return dict(counts)


def _critique_prompt(s: _Row, principle) -> list[dict]:
    text = P.fill(CRITIQUE, question=P.question_text(s.row["messages"]),
                  answer=s.response, request=principle.critique)
    return [{"role": "user", "content": text}]


def _revision_prompt(s: _Row, principle) -> list[dict]:
    text = P.fill(REVISION, question=P.question_text(s.row["messages"]), response=s.response,
                  critique=s.critiques[-1], request=principle.revision)
    return _context(s.row) + [{"role": "user", "content": text}]


def _take_critiques(live: list, drawn: list, replies: list) -> list:
    """Record each row's critique; the rows still to revise, with their principle."""
    revise = []
    for s, p, reply in zip(live, drawn, replies):
        s.principles.append(p.name)
        if isinstance(reply, Exception):
            s.error, s.done = reply, True
            continue
        s.critiques.append(reply[0].text.strip())
        s.satisfied = P.satisfied(s.critiques[-1])
        s.done = s.satisfied or not s.critiques[-1]  # nothing to revise by
        if not s.done:
            revise.append((s, p))
    return revise


def _take_revisions(revise: list, revised: list) -> None:
    for (s, _p), gens in zip(revise, revised):
        if isinstance(gens, Exception):
            s.error, s.done = gens, True
            continue
        s.revisions.append(gens[0].text.strip())
        if s.revisions[-1]:  # an empty rewrite keeps the response it was given
            s.response, s.finish = s.revisions[-1], gens[0].finish_reason


def _sl_counts(rows, done, kept, report) -> Counter:
    counts = Counter(rows_in=len(rows), written=len(kept), failed=report.failed,
                     reused=report.reused, dropped_truncated=len(done) - len(kept))
    for row in done:
        prov = row["provenance"]
        counts["revised"] += prov["rounds"] > 0
        counts["satisfied_at_round_0"] += prov["satisfied"] and prov["rounds"] == 0
        counts["satisfied_later"] += prov["satisfied"] and prov["rounds"] > 0
        counts["stopped_on_empty_critique"] += prov["critiques"][-1:] == [""]
        counts["revisions"] += prov["rounds"]
    return counts


def _sft_row(s: _Row, generator, critic, constitution):
    if s.error is not None:
        return s.error
    if not s.response:
        return ValueError("the policy's response is empty after every revision; raise "
                          "--max-new-tokens or use a stronger model")
    return {"messages": s.row["messages"] + [{"role": "assistant", "content": s.response}],
            "provenance": {"method": "constitutional-sl", "source": s.row["source"],
                           "principles": s.principles, "rounds": len(s.revisions),
                           "satisfied": s.satisfied, "original": s.original,
                           "critiques": s.critiques, "revisions": s.revisions,
                           "truncated": s.finish == "length",
                           "constitution": constitution.sha256,
                           "generator": generator.identity(), "critic": critic.identity()}}


def rl_cai(generator, judge, constitution, rows: list[dict], out, *,
           params: SamplingParams | None = None, seed: int = 0, batch_size: int = 16,
           retry_failed: bool = False, keep_truncated: bool = False, log=print) -> dict:
    """Write preference rows to `out`; every judged pair (kept or dropped) is in the job file
    OUT-stem.pairs.jsonl. A sampled pair with a response cut at max_new_tokens is not judged
    unless keep_truncated. Returns the counts by outcome."""
    params = replace(params or SamplingParams(temperature=0.8, max_new_tokens=256, seed=seed),
                     n=2)
    if params.temperature <= 0 and any("responses" not in r for r in rows):
        raise CorralError(f"--temperature {params.temperature:g}: RL-CAI samples two responses "
                          "to compare and greedy decoding makes them identical; give a "
                          "temperature above 0, such as 0.8")
    pairs_path = f"{Path(out).with_suffix('')}.pairs.jsonl"
    template = {"mode": "rl", "seed": seed, "constitution": constitution.sha256,
                "judge": judge.identity(), "keep_truncated": keep_truncated}

    def work(batch: list[dict]) -> list:
        pairs, cut = _sample_pairs(generator, batch, params, keep_truncated)
        outs: list = [None] * len(batch)
        groups: dict[str, list[int]] = {}
        for k, (r, pair) in enumerate(zip(batch, pairs)):
            if isinstance(pair, Exception):
                outs[k] = pair
                continue
            principle = constitution.draw(_rng(seed, r))
            outs[k] = {"source": r["source"], "prompt": r["messages"],
                       "principle": principle.name, "responses": pair}
            if k in cut or not all(pair) or pair[0] == pair[1]:
                outs[k]["outcome"] = "truncated" if k in cut else \
                    "identical" if all(pair) else "empty"
            else:
                groups.setdefault(principle.name, []).append(k)
        _judge_groups(judge, constitution, batch, pairs, groups, outs)
        return outs

    job = GenerationJob(pairs_path, template=template, model=generator.identity(),
                        params=params, batch_size=batch_size, retry_failed=retry_failed,
                        usage=generator.usage)
    report, usage = _run(job, rows, work, generator, judge.generator)
    report.require_output("prompt", "run again (with --retry-failed)")
    judged = read_jsonl(pairs_path)
    counts = Counter(rows_in=len(rows), failed=report.failed, reused=report.reused)
    counts.update(f"outcome_{p['outcome']}" for p in judged)
    prefs = [_preference(p, generator, judge, constitution)
             for p in judged if p["outcome"] in ("a", "b")]
    counts["written"] = len(prefs)
    counts["dropped"] = len(judged) - len(prefs)
    summary = ", ".join(f"{k.removeprefix('outcome_')} {v}" for k, v in sorted(counts.items())
                        if k.startswith("outcome_"))
    if not prefs:
        raise CorralError(f"constitutional rl: no pair got a consistent verdict ({summary}, "
                          f"{report.failed} failed; judged pairs in {pairs_path}); use a "
                          "stronger feedback model (--critic), turn its reasoning off, or "
                          "raise --max-new-tokens")
    _write(out, prefs, "constitutional-rl", job, constitution, counts, usage,
              generator=generator.identity(), judge=judge.identity(), params=params, seed=seed,
              judge_stats=judge.stats.as_dict(), keep_truncated=keep_truncated)
    log(f"constitutional rl: {len(rows)} prompts; {summary}; {report.failed} failed; "
        f"{len(prefs)} preference rows -> {out}")
    return dict(counts)


def _sample_pairs(generator, batch: list[dict], params, keep_truncated: bool):
    """Each row's two responses: its own `responses`, or two samples; `cut`: rows with a
    response stopped by max_new_tokens (not judged unless keep_truncated)."""
    sample = [k for k, r in enumerate(batch) if "responses" not in r]
    answers = generator.chat([batch[k]["messages"] for k in sample], params,
                             return_errors=True) if sample else []
    pairs: list = [r.get("responses") for r in batch]
    cut = set()
    for k, gens in zip(sample, answers):
        pairs[k] = gens if isinstance(gens, Exception) else [g.text.strip() for g in gens]
        if not isinstance(gens, Exception) and not keep_truncated and any(
                g.finish_reason == "length" for g in gens):
            cut.add(k)
    return pairs, cut


def _judge_groups(judge, constitution, batch, pairs, groups: dict, outs: list) -> None:
    """One judge call per principle drawn in the batch; a judge failure fails its row."""
    for name, ks in groups.items():
        verdicts = judge.pairwise([batch[k]["messages"] for k in ks],
                                  [pairs[k][0] for k in ks], [pairs[k][1] for k in ks],
                                  principle=constitution.by_name(name).text)
        for k, v in zip(ks, verdicts):
            failed = [x.error for x in (v.forward, v.backward)
                      if x is not None and x.error.startswith("the judge failed")]
            outs[k] = RuntimeError(failed[0]) if failed else {
                **outs[k], "outcome": v.outcome,
                "replies": [v.forward.reply, v.backward.reply if v.backward else None]}


def _preference(pair: dict, generator, judge, constitution) -> dict:
    a, b = pair["responses"]
    chosen, rejected = (a, b) if pair["outcome"] == "a" else (b, a)
    return {"prompt": pair["prompt"], "chosen": [{"role": "assistant", "content": chosen}],
            "rejected": [{"role": "assistant", "content": rejected}],
            "provenance": {"method": "constitutional-rl", "source": pair["source"],
                           "principle": pair["principle"], "outcome": pair["outcome"],
                           "constitution": constitution.sha256,
                           "generator": generator.identity(), "judge": judge.identity()}}


def _run(job: GenerationJob, rows, work, generator, critic):
    """The job, and the tokens each model spent in this run (one entry when they are one)."""
    models = {"generator": generator} if critic is generator else \
        {"generator": generator, "critic": critic}
    before = {k: _usage(m) for k, m in models.items()}
    report = job.run(rows, work)
    usage = {k: {n: v - before[k].get(n, 0) for n, v in _usage(m).items()}
             for k, m in models.items()}
    return report, usage


def _usage(model) -> dict:
    usage = getattr(model, "usage", None)
    return dict(usage.as_dict()) if hasattr(usage, "as_dict") else {}


def _write(out, rows, kind: str, job: GenerationJob, constitution, counts, usage,
           **fields) -> None:
    """The rows, and their manifest: the constitution (path, sha256, principles), the models,
    the counts, the tokens, and the job's own manifest (row cache, failures) as its source."""
    atomic_write_lines(out, [json.dumps(r, ensure_ascii=False) for r in rows])
    job_manifest = json.loads(job.manifest_path.read_text(encoding="utf-8"))
    write_manifest(out, kind=kind, constitution=constitution.summary(), counts=dict(counts),
                   usage=usage, sources=[job_manifest], **fields)
