"""Self-Instruct (Wang et al. 2022): grow instructions from seed tasks, filter them, answer them.

Each request shows the generator `in_context` tasks (seeds, and up to two already generated,
as the paper mixes 6 human + 2 machine) as a numbered list and lets it continue the list.
New instructions are kept when they pass the filters, in the paper's order: length in words,
a keyword blocklist (things a text model cannot do), exact duplicates (normalised), and
ROUGE-L against the *whole* pool (seeds + kept) below `max_rouge` (0.7 in the paper).
Evol-Instruct (Xu et al. 2023), as an option, mutates kept instructions in depth (add
constraints, deepen, concretise, more reasoning steps) or breadth, and eliminates evolutions
by the paper's rules (see `eliminated`).

Resumable: every request's outcome (kept and rejected instructions, with the reason) is
appended to OUT.instructions.jsonl, and a restart rebuilds the pool from it; the answers are
a row-level resumable GenerationJob. ROUGE-L is the similarity graders' (LCS over lower-cased
words, F-measure as rouge-score's rougeL), computed on the pool's tokens split once.
"""
from __future__ import annotations

import json
import random
import re
from dataclasses import asdict, dataclass
from pathlib import Path

from corral.core.errors import CorralError
from corral.core.io import append_jsonl, atomic_write_lines, read_jsonl
from corral.graders.similarity import rouge_l_tokens, tokenize
from corral.infer.engine import SamplingParams
from corral.store.jobs import GenerationJob, manifest_path, write_manifest

BLOCKLIST = ("image", "images", "graph", "graphs", "picture", "pictures", "file", "files",
             "map", "maps", "draw", "plot", "go to", "video", "audio", "music", "flowchart",
             "diagram")
PROMPT = "Come up with a series of tasks:\n"
EVOLVE = {
    "constraints": "Add one more constraint or requirement to the following task, making it "
                   "a bit harder. Reply with the new task only.\nTask: {t}",
    "deepen": "Rewrite the following task so that it asks about the topic in more depth. "
              "Reply with the new task only.\nTask: {t}",
    "concretise": "Rewrite the following task replacing general concepts with more specific "
                  "ones. Reply with the new task only.\nTask: {t}",
    "reasoning": "Rewrite the following task so that answering it needs several explicit "
                 "reasoning steps. Reply with the new task only.\nTask: {t}",
    "breadth": "Write a brand-new task in the same domain as the following one but rarer. "
               "Reply with the new task only.\nTask: {t}",
}
_LEAKED = ("given prompt", "rewritten prompt", "#rewritten", "new task:", "the following task")


@dataclass
class Filters:
    max_rouge: float = 0.7
    min_words: int = 3
    max_words: int = 150
    blocklist: tuple = ()


def words(text: str) -> list[str]:
    """Lower-cased word tokens: the similarity graders' tokenizer, so ROUGE-L is theirs."""
    return tokenize(text)


rouge_l = rouge_l_tokens  # ROUGE-L F-measure of two token lists (graders/similarity)


def reject_reason(text: str, pool_words: list[list[str]], seen: set, f: Filters) -> str | None:
    """Why a new instruction is dropped, or None when it is kept."""
    tokens = words(text)
    if not f.min_words <= len(tokens) <= f.max_words:
        return f"length {len(tokens)} words outside [{f.min_words}, {f.max_words}]"
    blocked = [w for w in BLOCKLIST + tuple(f.blocklist)
               if re.search(rf"\b{re.escape(w.lower())}\b", text.lower())]
    if blocked:
        return f"blocklisted word '{blocked[0]}'"
    if not text[0].isalnum():
        return "starts with punctuation"
    if " ".join(tokens) in seen:
        return "exact duplicate"
    best = max((rouge_l(tokens, other) for other in pool_words), default=0.0)
    if best >= f.max_rouge:
        return f"ROUGE-L {best:.2f} >= {f.max_rouge} with the pool"
    return None


def parse_tasks(reply: str, first: int) -> list[str]:
    """Numbered tasks in a continuation that starts at number `first`."""
    text = f"{first}. {reply.strip()}" if not re.match(r"\s*\d+\s*[.)]", reply) else reply
    found = []
    for part in re.split(r"(?:^|\n)\s*\d+\s*[.)]\s*", text):
        part = part.strip().split("\n\n")[0].strip()
        if part:
            found.append(re.sub(r"\s+", " ", part))
    return found


def eliminated(original: str, evolved: str, answer: str) -> str | None:
    """Evol-Instruct's elimination rules: no information gain (here: ROUGE-L ≥ 0.9 with the
    original, as no judge is assumed), an answer that declines ("sorry") and is short, an
    answer of punctuation and stop words only, or an evolution that leaks the mutation prompt."""
    if rouge_l(words(original), words(evolved)) >= 0.9:
        return "no information gain over the original"
    if "sorry" in answer.lower() and len(words(answer)) < 80:
        return "the answer declines"
    if len(words(answer)) < 2:
        return "the answer is only punctuation or a word"
    if any(leak in evolved.lower() for leak in _LEAKED):
        return "copies words of the mutation prompt"
    return None


def read_seeds(path: str) -> list[str]:
    from corral.data.readers import read_rows

    seeds, seen = [], set()
    for source, row in read_rows(path):
        if isinstance(row, Exception) or not isinstance(row, dict):
            raise CorralError(f"{source}: not a JSON object; fix the seed row")
        text = row.get("instruction") or row.get("prompt") or next(
            (m.get("content") for m in row.get("messages", []) if m.get("role") == "user"), None)
        if not isinstance(text, str) or not text.strip():
            raise CorralError(f"{source}: no 'instruction' (or 'prompt', or a user message); "
                              "give each seed task as {\"instruction\": \"...\"}")
        key = " ".join(words(text))
        if key not in seen:  # duplicate seeds would only skew the in-context draw
            seen.add(key)
            seeds.append(text.strip())
    if len(seeds) < 2:
        raise CorralError(f"{path}: {len(seeds)} distinct seed task(s); give at least 2 "
                          "(the paper starts from 175)")
    return seeds


def self_instruct(generator, seeds_path: str, out: str, num: int, params: SamplingParams,
                  filters: Filters, in_context: int = 8, evolve: bool = False, seed: int = 0,
                  max_requests: int = 0, log=print) -> dict:
    """Grow `num` new instructions from the seeds, answer them, write chat rows to `out`."""
    if num < 1 or in_context < 1:
        raise CorralError("--num and --in-context must be at least 1")
    seeds = read_seeds(seeds_path)
    log_path = Path(f"{out}.instructions.jsonl")
    history = read_jsonl(log_path)
    kept = [r["instruction"] for r in history if r.get("kept")]
    pool = [words(s) for s in seeds] + [words(k) for k in kept]
    seen = {" ".join(w) for w in pool}
    rng = random.Random(seed + len(history))
    requests, limit = 0, max_requests or 4 * num + 8
    while len(kept) < num and requests < limit:
        shots = rng.sample(seeds, min(len(seeds), in_context - min(2, len(kept))))
        shots += rng.sample(kept, min(2, len(kept), in_context - len(shots)))
        prompt = PROMPT + "".join(f"{i + 1}. {t}\n" for i, t in enumerate(shots))
        reply = generator.chat([[{"role": "user", "content": prompt}]], params)[0][0].text
        requests += 1
        records = []
        for text in parse_tasks(reply, len(shots) + 1):
            reason = reject_reason(text, pool, seen, filters)
            if reason is None and len(kept) < num:
                kept.append(text)
                pool.append(words(text))
                seen.add(" ".join(words(text)))
            records.append({"instruction": text, "kept": reason is None, "reason": reason})
        append_jsonl(log_path, records or [{"request": requests, "kept": False,
                                            "reason": "no task"}])
    if not kept:
        raise CorralError(f"no instruction passed the filters after {requests} requests; see "
                          f"{log_path} for why each was dropped")
    rows = _answer(generator, kept, out, params, evolve)
    counts = _counts(read_jsonl(log_path), rows)
    atomic_write_lines(out, [json.dumps(r, ensure_ascii=False) for r in rows])
    answers = json.loads(manifest_path(f"{out}.answers.jsonl").read_text(encoding="utf-8"))
    write_manifest(out, kind="synth-self-instruct", generator=generator.identity(),
                   seeds={"path": seeds_path, "count": len(seeds)}, filters=asdict(filters),
                   counts=counts, params=asdict(params), usage=answers.get("usage"),
                   sources=[answers])
    log(f"self-instruct: {counts} -> {out}")
    return counts


def _answer(generator, instructions: list[str], out: str, params, evolve: bool) -> list[dict]:
    """Answers (and, with evolve, one evolution each, eliminated by the rules), resumably."""
    job = GenerationJob(f"{out}.answers.jsonl", template={"evolve": sorted(EVOLVE) if evolve
                                                          else None},
                        model=generator.identity(), params=params, usage=generator.usage)
    greedy = SamplingParams(max_new_tokens=params.max_new_tokens, temperature=0.0)

    def answer(batch):
        texts = [r["instruction"] for r in batch]
        outs = [{"instruction": t, "answer": g[0].text.strip()} for t, g in zip(
            texts, generator.chat([[{"role": "user", "content": t}] for t in texts], greedy))]
        if evolve:
            kinds = [sorted(EVOLVE)[r["index"] % len(EVOLVE)] for r in batch]
            asks = [[{"role": "user", "content": EVOLVE[k].format(t=t)}]
                    for k, t in zip(kinds, texts)]
            evolved = [g[0].text.strip() for g in generator.chat(asks, greedy)]
            replies = [g[0].text.strip() for g in generator.chat(
                [[{"role": "user", "content": e}] for e in evolved], greedy)]
            for o, k, e, a in zip(outs, kinds, evolved, replies):
                o["evolved"] = {"kind": k, "instruction": e, "answer": a,
                                "eliminated": eliminated(o["instruction"], e, a)}
        return outs

    report = job.run([{"index": i, "instruction": t} for i, t in enumerate(instructions)],
                     answer)
    report.require_output("instruction's answer", f"delete {job.partial_path} and run again")
    rows = []
    for o in read_jsonl(report.out_path):
        for inst, ans, how in [(o["instruction"], o["answer"], "self-instruct")] + (
                [(o["evolved"]["instruction"], o["evolved"]["answer"],
                  f"evol-{o['evolved']['kind']}")]
                if o.get("evolved") and not o["evolved"]["eliminated"] else []):
            if ans:
                rows.append({"messages": [{"role": "user", "content": inst},
                                          {"role": "assistant", "content": ans}],
                             "provenance": {"recipe": how, "generator": generator.identity()}})
    return rows


def _counts(history: list[dict], rows: list[dict]) -> dict:
    reasons: dict[str, int] = {}
    for r in history:
        if not r.get("kept"):
            key = re.sub(r"[\d.]+", "N", str(r.get("reason")))
            reasons[key] = reasons.get(key, 0) + 1
    return {"candidates": len(history), "kept": sum(bool(r.get("kept")) for r in history),
            "removed": reasons, "rows": len(rows),
            "evolved_rows": sum(r["provenance"]["recipe"].startswith("evol") for r in rows)}
