"""The advice as text a person reads: models ranked, the data and compute found, the judge's
report card in one line, then the recommendations with their measurements and commands, and
what cannot help."""
from __future__ import annotations

import textwrap

from corral.advisor.rules import fmt_params, fmt_share
from corral.advisor.signals import Share


def _model_line(rank: int, m) -> str:
    few = Share.of(m.few_shot or [])
    prompts = f"zero-shot {Share.of(m.zero_shot)}" + \
        (f", {m.few_shot_k}-shot {few}" if few else "")
    maj = f", maj@{m.n} {m.maj_at_k}" if m.maj_at_k is not None else ""
    return (f"  {rank}. {m.model}: dev {m.greedy} ({prompts}); pass@{m.n} {m.pass_at_k}{maj}; "
            f"samples disagree on {m.mixed.value:.2f} of items; "
            f"{fmt_params(m.params)} parameters")


def _judge_line(m) -> str:
    v = m.verification
    if v is None or v["balanced_accuracy"] is None:
        return f"  {m.model} as a judge: {m.audit_note or 'not measured'}"
    better = {True: "yes", False: "no", None: "n/a"}[v["better"]]
    return (f"  {m.model} as a judge of its own answers: balanced {v['balanced_accuracy']:.2f} "
            f"(right passed {fmt_share(v['pass_recall'])}, wrong failed "
            f"{fmt_share(v['fail_recall'])}) "
            f"vs generation {m.pass_at_1}; verifies better than it generates: {better}")


def _data_line(d) -> str:
    return (f"data: {d.sft} SFT rows, {d.pairs} preference pairs, {d.thumbs} thumbs rows "
            f"({d.thumbs_up} up), {d.train_items} gradable train items, {d.solutions} "
            "reference solutions")


def _wrap(text: str, indent: str) -> list[str]:
    return textwrap.wrap(text, 96, initial_indent=indent, subsequent_indent=indent)


def format_advice(advice) -> str:
    plan = advice.plan
    models = len(plan.ranking)
    lines = [f"advise: task {advice.task} ({advice.split}, {advice.items} items), {models} "
             f"model{'s' if models > 1 else ''}"
             + (f"; measurements read from the cache for {', '.join(advice.cached)}"
                if advice.cached else ""),
             "models, best dev score first (greedy pass@1 with the better prompt):"]
    lines += [_model_line(i, m) for i, m in enumerate(plan.ranking, 1)]
    if models > 1:
        lines += _wrap(f"choice: {plan.choice}", "  ")
    lines += [line for m in plan.ranking for line in _wrap(_judge_line(m).strip(), "  ")]
    lines.append(_data_line(advice.data))
    lines += _wrap(f"compute ({plan.train_model}): {plan.compute.mode}: {plan.compute.why}", "")
    lines += [f"note: {n}" for n in advice.notes]
    lines.append("\nrecommendations, most promising first:")
    for i, r in enumerate(plan.recommendations, 1):
        gain = "" if r.rung in ("as-is", "collect") else \
            f" ({'measured' if r.measured else 'up to'} {r.gain:+.2f})"
        lines.append(f"{i}. {r.rung}{gain}")
        lines += _wrap(r.why, "   ")
        lines += [f"     {c}" for c in r.commands]
    if plan.avoid:
        lines.append("\nwill not help here:")
        for r in plan.avoid:
            lines += _wrap(f"- {r.rung}: {r.why}", "  ")
    return "\n".join(lines)
