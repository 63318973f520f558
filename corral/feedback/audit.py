"""`corral judge audit`: measure a judge on answers a reference grader has already scored,
before anyone trusts its labels.

    card = audit(judge, conversations, samples, max_items=60, seed=0)
    print(format_card(card))

`samples` maps each item's source to its graded samples (the rows a `corral synth` samples
job writes: text, passed). From them the audit builds, deterministically from the seed:

  - verification: up to `max_items` passing and as many failing answers, scored pointwise;
    the judge "passes" an answer scoring at least the middle of its range. Reported as
    accuracy, balanced accuracy (the mean of the pass and fail recalls — what matters when the
    model is usually wrong) and the mean score of right and of wrong answers;
  - agreement: pairs of one passing and one failing answer to the same question, judged in
    both orders; agreement = share of pairs whose consistent verdict names the passing one;
  - swap consistency: share of all judged pairs whose two orders agree (a tie both times
    counts as consistent); position bias: share of decisive verdicts won by the answer shown
    first (0.5 = none);
  - length bias: pairs of equal quality (both pass or both fail) whose lengths differ by at
    least 20 %: share of consistent decisive verdicts won by the longer answer (0.5 = none);
  - self-preference (with `other`, answers to the same questions by another model): pairs of
    equal quality, own vs other: share of consistent decisive verdicts for the own answer;
  - verification vs generation: the balanced verification accuracy next to the generation
    accuracy of the answers (the share that pass): "can this model verify better than it
    generates?" — the condition for a judge (or self-refinement) to add anything.

Every share comes with its standard error and its count: 20 pairs is a hint, not a result.
"""
from __future__ import annotations

import math
import random

from corral.core.errors import CorralError
from corral.feedback.label import distinct_answers
from corral.graders.judging import Judge

LENGTH_GAP = 1.2  # "different lengths": the longer at least 20 % longer


def _share(hits: int, n: int) -> dict:
    p = hits / n if n else None
    return {"value": p, "n": n,
            "stderr": math.sqrt(p * (1 - p) / n) if n else None}


def _pick_pairs(groups: dict, rng: random.Random, limit: int) -> list:
    """Up to `limit` pairs, at most one per question first, then more, in a seeded order."""
    keys = sorted(groups)
    rng.shuffle(keys)
    pairs, rounds = [], max((len(v) for v in groups.values()), default=0)
    for r in range(rounds):
        for key in keys:
            if len(pairs) >= limit:
                return pairs
            if r < len(groups[key]):
                pairs.append((key, *groups[key][r]))
    return pairs


def audit(judge: Judge, conversations: dict, samples: dict, other: dict | None = None,
          max_items: int = 60, seed: int = 0) -> dict:
    """The report card (see the module docstring). conversations: source → the question's
    messages; samples / other: source → graded samples."""
    rng = random.Random(seed)
    own = {k: distinct_answers(v, graded=True) for k, v in samples.items() if k in conversations}
    every = [s for v in own.values() for s in v]
    if not every:
        raise CorralError("judge audit: no graded answers to audit; give a samples file whose "
                          "rows carry 'passed' (from `corral synth rejection --samples ...`)")
    right = [(k, s) for k, v in own.items() for s in v if s["passed"]]
    wrong = [(k, s) for k, v in own.items() for s in v if not s["passed"]]
    rng.shuffle(right)
    rng.shuffle(wrong)
    card = {"judge": judge.identity(), "seed": seed,
            "answers": {"total": len(every), "passing": len(right), "failing": len(wrong)},
            "generation_accuracy": _share(len(right), len(every))}
    card["verification"] = _verification(judge, conversations, right[:max_items],
                                         wrong[:max_items])
    card.update(_pairwise(judge, conversations, own, rng, max_items))
    if other:
        card["self_preference"] = _self_preference(judge, conversations, own, other, rng,
                                                   max_items)
    card["verifies_better_than_generates"] = _verifies_better(card)
    card["judge_stats"] = judge.stats.as_dict()
    return card


def _verifies_better(card: dict) -> bool | None:
    """Yes when the balanced verification accuracy beats both chance (0.5: passing or failing
    everything scores that) and the generation accuracy, each by two standard errors of the
    verification recalls; None without both kinds of answer to verify."""
    ver = card["verification"]
    balanced = ver.get("balanced_accuracy")
    recalls = [ver.get(k) or {} for k in ("pass_recall", "fail_recall")]
    if balanced is None or any(r.get("value") is None for r in recalls):
        return None
    stderr = 0.5 * (recalls[0]["stderr"] ** 2 + recalls[1]["stderr"] ** 2) ** 0.5
    return balanced - 2 * stderr > max(0.5, card["generation_accuracy"]["value"])


def _verification(judge, conversations, right, wrong) -> dict:
    picked = right + wrong
    if not picked:
        return {"accuracy": None, "balanced_accuracy": None}
    verdicts = judge.score([conversations[k] for k, _ in picked], [s["text"] for _, s in picked])
    middle = (judge.low + judge.high) / 2
    says = [None if v.value is None else v.value >= middle for v in verdicts]
    truth = [True] * len(right) + [False] * len(wrong)
    parsed = [(s, t) for s, t in zip(says, truth) if s is not None]
    recall = {flag: _share(sum(s == t for s, t in parsed if t == flag),
                           sum(t == flag for _, t in parsed)) for flag in (True, False)}
    recalls = [r["value"] for r in recall.values() if r["value"] is not None]

    def mean_score(flag):
        values = [v.value for v, t in zip(verdicts, truth) if t == flag and v.value is not None]
        return sum(values) / len(values) if values else None

    return {"accuracy": _share(sum(s == t for s, t in parsed), len(parsed)),
            "balanced_accuracy": sum(recalls) / len(recalls) if recalls else None,
            "pass_recall": recall[True], "fail_recall": recall[False],
            "mean_score_right": mean_score(True), "mean_score_wrong": mean_score(False),
            "unparsed": sum(s is None for s in says), "threshold": middle}


def _pairwise(judge, conversations, own, rng, limit) -> dict:
    mixed, even = {}, {}
    for k, v in own.items():
        good, bad = [s for s in v if s["passed"]], [s for s in v if not s["passed"]]
        mixed[k] = [(g, b) for g in good for b in bad]
        pairs = [(a, b) for i, a in enumerate(v) for b in v[i + 1:]
                 if a["passed"] == b["passed"] and _length_gap(a, b)]
        even[k] = pairs
    mixed_pairs = [(k, *(p if rng.random() < 0.5 else p[::-1]), p[0])
                   for k, *p in _pick_pairs(mixed, rng, limit)]
    even_pairs = [(k, a, b, None) for k, a, b in _pick_pairs(even, rng, limit)]
    every = mixed_pairs + even_pairs
    if not every:
        return {"agreement": _share(0, 0), "swap_consistency": _share(0, 0),
                "position_bias": _share(0, 0), "length_bias": _share(0, 0)}
    verdicts = judge.pairwise([conversations[k] for k, *_ in every],
                              [a["text"] for _, a, _, _ in every],
                              [b["text"] for _, _, b, _ in every])
    agree = sum((v.outcome == "a") == (good is a) and v.outcome in ("a", "b")
                for v, (_, a, _, good) in zip(verdicts[:len(mixed_pairs)], mixed_pairs))
    parsed = [v for v in verdicts if v.outcome != "unparsed"]
    firsts = [won for v in verdicts for won in v.first_position_won]
    longer_won, decisive = 0, 0
    for v, (_, a, b, _) in zip(verdicts[len(mixed_pairs):], even_pairs):
        if v.outcome in ("a", "b"):
            decisive += 1
            winner, loser = (a, b) if v.outcome == "a" else (b, a)
            longer_won += len(winner["text"]) > len(loser["text"])
    outcomes = [v.outcome for v in verdicts]
    calibrated = [v.calibrated for v in verdicts[:len(mixed_pairs)]]
    extra = {}
    if any(c is not None for c in calibrated):  # logprob verdicts: position bias cancelled
        extra["calibrated_agreement"] = _share(
            sum(c in ("a", "b") and (c == "a") == (good is a)
                for c, (_, a, _, good) in zip(calibrated, mixed_pairs)), len(mixed_pairs))
    return {"equal_quality_pairs": len(even_pairs),
            "agreement": _share(agree, len(mixed_pairs)),
            "swap_consistency": _share(sum(o in ("a", "b", "tie") for o in outcomes),
                                       len(parsed)),
            "position_bias": _share(sum(firsts), len(firsts)),
            "length_bias": _share(longer_won, decisive),
            "pair_outcomes": {o: outcomes.count(o) for o in sorted(set(outcomes))}, **extra}


def _length_gap(a: dict, b: dict) -> bool:
    la, lb = len(a["text"]), len(b["text"])
    return max(la, lb) >= LENGTH_GAP * max(1, min(la, lb))


def _self_preference(judge, conversations, own, other, rng, limit) -> dict:
    groups = {}
    for k, mine in own.items():
        theirs = distinct_answers(other.get(k, []), graded=True)
        groups[k] = [(m, t) for m in mine for t in theirs if m["passed"] == t["passed"]]
    pairs = _pick_pairs(groups, rng, limit)
    if not pairs:
        return _share(0, 0)
    flips = [rng.random() < 0.5 for _ in pairs]  # own answer shown as `a` or as `b`
    shown = [(m, t) if f else (t, m) for (_, m, t), f in zip(pairs, flips)]
    verdicts = judge.pairwise([conversations[k] for k, _, _ in pairs],
                              [a["text"] for a, _ in shown], [b["text"] for _, b in shown])
    mine_won = decisive = 0
    for v, f in zip(verdicts, flips):
        if v.outcome in ("a", "b"):
            decisive += 1
            mine_won += (v.outcome == "a") == f
    return _share(mine_won, decisive)


def _fmt(entry) -> str:
    if not isinstance(entry, dict) or entry.get("value") is None:
        return "n/a (no decisive verdict)"
    return f"{entry['value']:.2f} ± {entry['stderr']:.2f} (n={entry['n']})"


def format_card(card: dict) -> str:
    """The report card as a few lines a person reads before trusting the judge."""
    ver = card["verification"]
    model = card["judge"]["model"]
    lines = [f"judge report card: {model.get('model', model)} "
             f"(rubric {card['judge']['rubric']})",
             f"  answers audited: {card['answers']['passing']} right, "
             f"{card['answers']['failing']} wrong",
             f"  generation accuracy (answers that pass): {_fmt(card['generation_accuracy'])}",
             f"  verification accuracy: {_fmt(ver.get('accuracy'))}; balanced "
             + ("n/a" if ver.get("balanced_accuracy") is None else
                f"{ver['balanced_accuracy']:.2f}")
             + f" (right passed {_fmt(ver.get('pass_recall'))}, wrong failed "
             f"{_fmt(ver.get('fail_recall'))}; unparsed {ver.get('unparsed', 0)})",
             f"  agreement with the grader on right-vs-wrong pairs: {_fmt(card['agreement'])}",
             *([f"  agreement, both orders' log-prob margins averaged (position bias "
                f"cancelled): {_fmt(card['calibrated_agreement'])}"]
               if "calibrated_agreement" in card else []),
             f"  swap consistency: {_fmt(card['swap_consistency'])}; first position wins "
             f"{_fmt(card['position_bias'])}",
             f"  longer answer wins at equal quality: {_fmt(card['length_bias'])}"
             f" ({card.get('equal_quality_pairs', 0)} pairs of equal quality judged)"]
    if "self_preference" in card:
        lines.append(f"  own answer wins at equal quality: {_fmt(card['self_preference'])}")
    better = card["verifies_better_than_generates"]
    lines.append("  verifies better than it generates (and than chance, by 2 stderr): "
                 + ("n/a" if better is None else "yes" if better else "no"))
    stats = card["judge_stats"]
    lines.append(f"  judge calls {stats['calls']} (retries {stats['retries']}, unparsed "
                 f"{stats['unparsed']}, cache hits {stats['cache_hits']})")
    return "\n".join(lines)
