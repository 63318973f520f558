"""The prompt programs a search tries: every combination of a number of demonstrations k,
how they are chosen, how they are shown, in which order, with which system prompt and
instruction template — deduplicated (k = 0 ignores the choice, layout and order), in a
reproducible order.

Choosing k demonstrations: `first` (the pool's first k), `random` (k drawn with the seed),
`similar` (the k nearest the query, per query), `mmr` (near the query, unlike each other),
`bootstrap` (the first k of the model's own grader-passed answers on train items).
"""
from __future__ import annotations

import itertools
import random
from dataclasses import dataclass

from corral.core.errors import CorralError
from corral.tasks.prompt import ORDERS, PromptProgram
from corral.tasks.prompt_file import program_hash

CHOICES = ("first", "random", "similar", "mmr", "bootstrap")


@dataclass(frozen=True)
class Candidate:
    name: str
    program: PromptProgram

    @property
    def hash(self) -> str:
        return program_hash(self.program)


def parse_list(text: str, flag: str, allowed=None, kind=str) -> list:
    """A comma-separated option as a list, each value checked."""
    values = [v.strip() for v in str(text).split(",") if v.strip()]
    try:
        values = [kind(v) for v in values]
    except ValueError:
        raise CorralError(f"{flag} {text}: give {kind.__name__} values separated by commas"
                          ) from None
    for v in values:
        if allowed is not None and v not in allowed:
            raise CorralError(f"{flag} {text}: '{v}' is not one of {', '.join(allowed)}")
    if not values:
        raise CorralError(f"{flag}: give at least one value")
    return values


def build(ks, choices, layouts, orders, systems, templates, gold: list, boot: list,
          seed: int = 0, skipped: list | None = None) -> list[Candidate]:
    """Every distinct program of the grid. `gold`: the train pool; `boot`: bootstrapped
    demonstrations. A k larger than the gold pool is refused, naming both; one larger than
    what bootstrapping found (the model passed too few) is skipped and said in `skipped`."""
    out, seen = [], set()
    for k, choice, layout, order, (s, system), (t, template) in itertools.product(
            ks, choices, layouts, orders, enumerate(systems), enumerate(templates)):
        if k == 0 and (choice, layout, order) != (choices[0], layouts[0], orders[0]):
            continue
        if choice == "bootstrap" and k > len(boot):
            note = f"{k}-shot bootstrap: the model passed only {len(boot)} train items"
            if skipped is not None and note not in skipped:
                skipped.append(note)
            continue
        program = _program(k, choice, layout, order, system, template, gold, boot, seed)
        name = _name(k, choice, layout, order, s, t, len(systems), len(templates))
        candidate = Candidate(name, program)
        if candidate.hash not in seen:
            seen.add(candidate.hash)
            out.append(candidate)
    return out


def _program(k, choice, layout, order, system, template, gold, boot, seed) -> PromptProgram:
    common = {"system_prompt": system, "template": template, "layout": layout, "order": order}
    if k == 0:
        return PromptProgram(system_prompt=system, template=template)
    pool = boot if choice == "bootstrap" else gold
    if k > len(pool):
        what = ("bootstrapped demonstrations (the model's passed answers on train items)"
                if choice == "bootstrap" else "train items with answers")
        raise CorralError(f"--k {k} with --choose {choice}: only {len(pool)} {what}; lower "
                          f"--k, or drop {choice} from --choose")
    if choice in ("similar", "mmr"):
        return PromptProgram(select=choice, k=k, pool=tuple(pool), **common)
    if choice == "random":
        picks = random.Random(f"{seed}:{k}").sample(range(len(pool)), k)
        return PromptProgram(few_shot=tuple(pool[i] for i in picks), **common)
    return PromptProgram(few_shot=tuple(pool[:k]), **common)


def _name(k, choice, layout, order, s, t, n_systems, n_templates) -> str:
    parts = ["zero-shot"] if k == 0 else [f"{k}-shot {choice}"]
    if k and layout != "chat":
        parts.append(layout)
    if k and order != ORDERS[0]:
        parts.append(order)
    if n_systems > 1:
        parts.append(f"system {s}")
    if n_templates > 1:
        parts.append(f"template {t}")
    return " ".join(parts)
