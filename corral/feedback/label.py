"""RLAIF labels: pairs of answers judged into preference rows (and KTO rows) that `corral dpo`,
`corral rm` and `corral kto` read unchanged.

    rows, kto, counts = label_pairs(judge, conversations, samples, other=None, per_prompt=1)

Pairs come from one samples file (two distinct samples of one model per question) or, with
`other`, from two (a stronger and a weaker configuration, ALMoST-style: one answer from each,
and the judge — not the configuration — decides which is better). Each pair is judged in both
orders; only consistent verdicts become rows. Ties and inconsistent pairs are dropped and
counted: a DPO row needs a winner, and a verdict that follows the position is not one.

Every row keeps its provenance: the question's source, the judge's identity, both verdicts
and, when the samples were graded, whether the judge agreed with the grader — so the cost of
using a judge instead of the grader can be read off the data itself.
"""
from __future__ import annotations

import random

from corral.core.errors import CorralError
from corral.graders.judging import Judge


def distinct_answers(samples: list[dict], graded: bool = False) -> list[dict]:
    """Samples with distinct non-empty texts (whitespace-normalised), first of each kept;
    graded: only those a grader scored (`passed` set)."""
    seen, out = set(), []
    for s in samples:
        text = " ".join(str(s.get("text", "")).split())
        if text and text not in seen and not (graded and s.get("passed") is None):
            seen.add(text)
            out.append(s)
    return out


def candidate_pairs(samples: dict, other: dict | None, per_prompt: int,
                    rng: random.Random) -> list[tuple]:
    """(source, a, b) with a and b distinct answers; at most `per_prompt` per question."""
    pairs = []
    for source in sorted(samples):
        mine = distinct_answers(samples[source])
        if other is not None:
            theirs = distinct_answers(other.get(source, []))
            options = [(a, b) for a in mine for b in theirs
                       if " ".join(a["text"].split()) != " ".join(b["text"].split())]
        else:
            options = [(a, b) for i, a in enumerate(mine) for b in mine[i + 1:]]
        rng.shuffle(options)
        pairs += [(source, a, b) for a, b in options[:per_prompt]]
    return pairs


def label_pairs(judge: Judge, conversations: dict, samples: dict, other: dict | None = None,
                per_prompt: int = 1, seed: int = 0, principle: str = "",
                calibrated: bool = False) -> tuple:
    """(preference rows, KTO rows, counts). conversations: source → the student's prompt
    messages (what the rows train on); samples/other: source → samples ({"text", ...}).
    calibrated: with logprob verdicts, decide by the two orders' mean margin (position bias
    cancels) instead of requiring the two verdicts to agree."""
    rng = random.Random(seed)
    pairs = [p for p in candidate_pairs(samples, other, per_prompt, rng) if p[0] in conversations]
    if not pairs:
        raise CorralError("feedback label: no pair of distinct answers to judge; sample more "
                          "answers per prompt (-n 4) or give --other SAMPLES")
    verdicts = judge.pairwise([conversations[s] for s, _, _ in pairs],
                              [a["text"] for _, a, _ in pairs], [b["text"] for _, _, b in pairs],
                              principle=principle)
    rows, kto = [], []
    counts = {"pairs": len(pairs), "consistent": 0, "tie": 0, "inconsistent": 0, "unparsed": 0,
              "graded_pairs": 0, "agrees_with_grader": 0}
    ident = judge.identity()
    for (source, a, b), v in zip(pairs, verdicts):
        outcome = (v.calibrated or v.outcome) if calibrated else v.outcome
        if outcome not in ("a", "b"):
            counts[outcome] += 1
            continue
        counts["consistent"] += 1
        chosen, rejected = (a, b) if outcome == "a" else (b, a)
        provenance = {"source": source, "judge": ident, "outcome": outcome,
                      "verdicts": [v.forward.value, v.backward.value if v.backward else None],
                      **({"principle": principle} if principle else {})}
        if chosen.get("passed") is not None and rejected.get("passed") is not None \
                and chosen["passed"] != rejected["passed"]:
            counts["graded_pairs"] += 1
            counts["agrees_with_grader"] += bool(chosen["passed"])
            provenance["grader_agrees"] = bool(chosen["passed"])
        prompt = [dict(m) for m in conversations[source]]
        rows.append({"prompt": prompt,
                     "chosen": [{"role": "assistant", "content": chosen["text"].strip()}],
                     "rejected": [{"role": "assistant", "content": rejected["text"].strip()}],
                     "provenance": provenance})
        for answer, label in ((chosen, True), (rejected, False)):
            kto.append({"prompt": prompt,
                        "completion": [{"role": "assistant", "content": answer["text"].strip()}],
                        "label": label, "provenance": provenance})
    return rows, kto, counts
