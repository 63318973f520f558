"""Preference and KTO rows from graded samples: sample each prompt n times, grade the samples,
pair a passing one (chosen) with a failing one (rejected). With a judge as grader: RLAIF."""
from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path

from corral.core.errors import CorralError
from corral.core.io import atomic_write_text
from corral.core.records import as_dicts
from corral.graders.base import Sample, check_grader_errors, passed
from corral.infer.engine import SamplingParams, engine_for


@dataclass
class PairsResult:
    preference: list = field(default_factory=list)  # prompt/chosen/rejected rows
    feedback: list = field(default_factory=list)  # prompt/completion/label rows
    stats: dict = field(default_factory=dict)
    origin: dict = field(default_factory=dict)  # model, grader, task, sampling


def _assistant(text: str) -> list[dict]:
    return [{"role": "assistant", "content": text}]


def _item_rows(prompt, graded, origin: dict, threshold: float):
    """Rows of one prompt. graded: [(text, score, finished)]. A passing sample must have
    finished (not cut at max_new_tokens) to be chosen or desirable; duplicates count once."""
    seen, good, bad = set(), [], []
    for text, score, finished in graded:
        if not text.strip() or text in seen:
            continue  # empty content is not a valid message; a repeat adds no information
        seen.add(text)
        if passed(score, threshold):
            if finished:
                good.append((text, score.value))
        else:
            bad.append((text, score.value))
    feedback = [{"prompt": prompt, "completion": _assistant(t), "label": label,
                 "provenance": {**origin, "score": v}}
                for label, side in ((True, good), (False, bad)) for t, v in side]
    preference = [{"prompt": prompt, "chosen": _assistant(c), "rejected": _assistant(r),
                   "provenance": {**origin, "chosen_score": cv, "rejected_score": rv}}
                  for (c, cv), (r, rv) in zip(good, bad)]  # each sample in one pair at most
    return preference, feedback


def make_pairs(policy, task, n: int = 4, params: SamplingParams | None = None, grader=None,
               threshold: float = 1.0, model_name: str = "", split: str = "",
               batch_size: int = 32, log=print) -> PairsResult:
    """Sample n completions per task prompt, grade them, and build rows that say where they
    came from (model, grader, task, item, sampling). grader defaults to the task's."""
    if split == "unseen":
        raise CorralError("pairs from the unseen split would leak it into training; "
                          "use --split train")
    if n < 2:
        raise CorralError(f"-n {n}: pairs need at least 2 samples per prompt")
    params = replace(params or SamplingParams(temperature=1.0, max_new_tokens=256, seed=0), n=n)
    grader = grader or task.grader
    items = task.prompt_items()
    engine = engine_for(policy, batch_size=batch_size)
    conversations = [as_dicts(it.messages)
                     for it in items]
    generations = engine.generate_chat(conversations, params)
    scores = grader.grade_batch([(it.grader_item(), Sample.of(g.text))
                                 for it, gens in zip(items, generations) for g in gens])
    check_grader_errors(scores, grader)
    origin = {"model": model_name or str(getattr(policy, "source", "")),
              "grader": getattr(grader, "name", type(grader).__name__), "task": task.name,
              "split": split, "temperature": params.temperature, "n": n, "seed": params.seed}
    result, i = PairsResult(origin=origin), 0
    for item, conv, gens in zip(items, conversations, generations):
        graded = [(g.text, s, g.finish_reason != "length")
                  for g, s in zip(gens, scores[i:i + len(gens)])]
        i += len(gens)
        pref, feed = _item_rows(conv, graded, {**origin, "item": item.source}, threshold)
        result.preference += pref
        result.feedback += feed
    n_passed = sum(passed(s, threshold) for s in scores)
    result.stats = {"prompts": len(items), "samples": len(scores),
                    "pass_rate": n_passed / max(1, len(scores)),
                    "pairs": len(result.preference), "kto_rows": len(result.feedback),
                    "kto_desirable": sum(r["label"] for r in result.feedback)}
    log("pairs: " + ", ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}"
                              for k, v in result.stats.items()))
    return result


def write_pairs(result: PairsResult, out_dir) -> dict:
    """Write pairs.jsonl, kto.jsonl and manifest.json into out_dir, each atomically."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"pairs": out / "pairs.jsonl", "kto": out / "kto.jsonl"}
    for rows, path in ((result.preference, paths["pairs"]), (result.feedback, paths["kto"])):
        atomic_write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    manifest = {"stats": result.stats, "files": {k: str(p) for k, p in paths.items()},
                "origin": result.origin}
    atomic_write_text(out / "manifest.json", json.dumps(manifest, indent=2) + "\n")
    return {k: str(p) for k, p in paths.items()}
