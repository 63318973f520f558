"""Strategy specs as users type them (`majority:8`, `debate:3x2`) → Strategy objects.

    greedy | best-of-n:N[:SCORER] | majority:N | refine:R | reflexion:R
    | debate:MxR[:SCORER] | beam:BxD[:SCORER] | pal[:N]

SCORER is a grader spec (a rule, a grader or reward-model JSON file) or `judge` (the model
itself, asked whether each answer is correct; `corral eval` binds it); the caller loads it,
since loading a reward model is not this layer's business: `parse_strategy` keeps it as
`strategy.scorer_spec` and takes a ready Scorer through `scorers`."""
from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from corral.core.config import closest
from corral.core.errors import CorralError
from corral.core.registry import Registry
from corral.strategies.beam import BeamSearch
from corral.strategies.debate import Debate
from corral.strategies.pal import ProgramAided
from corral.strategies.refine import Reflexion, SelfRefine
from corral.strategies.simple import BestOfN, Greedy, Majority

_ONE = re.compile(r"\d+")
_TWO = re.compile(r"(\d+)x(\d+)")


@dataclass(frozen=True)
class StrategyKind:
    """A registered strategy: the form users type, whether it takes a SCORER, and how its
    size argument (`8`, `3x2`) becomes the Strategy (`build(size, scorer, critic, **kw)`)."""
    form: str
    build: Callable
    size: str = ""  # "", "one" (a whole number), "two" (AxB) or "optional" (one or none)
    takes_scorer: bool = False


STRATEGIES = Registry("strategy")
STRATEGIES.add("greedy", StrategyKind("greedy", lambda size, scorer, critic, **kw: Greedy(**kw)))
STRATEGIES.add("best-of-n", StrategyKind(
    "best-of-n:N[:SCORER]", lambda n, scorer, critic, **kw: BestOfN(n, scorer, **kw), "one",
    True))
STRATEGIES.add("majority", StrategyKind(
    "majority:N", lambda n, scorer, critic, **kw: Majority(n, **kw), "one"))
STRATEGIES.add("refine", StrategyKind(
    "refine:R", lambda n, scorer, critic, **kw: SelfRefine(n, critic, **kw), "one"))
STRATEGIES.add("reflexion", StrategyKind(
    "reflexion:R", lambda n, scorer, critic, **kw: Reflexion(n, **kw), "one"))
STRATEGIES.add("debate", StrategyKind(
    "debate:MxR[:SCORER]", lambda ab, scorer, critic, **kw: Debate(*ab, scorer, **kw), "two",
    True))
STRATEGIES.add("beam", StrategyKind(
    "beam:BxD[:SCORER]", lambda ab, scorer, critic, **kw: BeamSearch(*ab, scorer, **kw), "two",
    True))
STRATEGIES.add("pal", StrategyKind(
    "pal[:N]", lambda n, scorer, critic, **kw: ProgramAided(n, **kw), "optional"))
FORMS = {name: kind.form for name, kind in STRATEGIES.items()}
ACCEPTED = ", ".join(FORMS.values())


def split_specs(text: str) -> list[str]:
    """`--strategy greedy,majority:8` → ["greedy", "majority:8"] (blank entries dropped)."""
    specs = [s.strip() for s in text.split(",") if s.strip()]
    if not specs:
        raise CorralError(f"--strategy is empty; give one or more of {ACCEPTED}, "
                          "separated by commas")
    return specs


def _bad(spec: str, why: str) -> CorralError:
    return CorralError(f"--strategy '{spec}': {why}; accepted forms are {ACCEPTED}")


def parse_strategy(spec: str, *, scorer=None, critic=None, max_new_tokens: int = 256,
                   temperature: float = 0.8, seed: int | None = 0):
    """The Strategy `spec` names. `scorer` ranks answers for best-of-n, debate and beam when
    the spec names a SCORER (or always, when given); `critic` is a separate generator for
    refine's critiques; the rest set every model call's sampling."""
    kind, _, rest = spec.strip().partition(":")
    arg, _, scorer_spec = rest.partition(":")
    if kind not in STRATEGIES:  # the hint names the form to type, which Registry's cannot
        close = closest(kind, STRATEGIES.names(), cutoff=0.5)
        hint = f"did you mean '{FORMS[close]}'?" if close else "no such strategy"
        raise _bad(spec, f"unknown strategy '{kind}'; {hint}")
    entry = STRATEGIES.get(kind)
    if scorer_spec and not entry.takes_scorer:
        *most, final = [n for n, k in STRATEGIES.items() if k.takes_scorer]
        takers = f"{', '.join(most)} and {final}"
        raise _bad(spec, f"{kind} takes no scorer (only {takers} do)")
    if not arg and entry.size and entry.size != "optional":
        raise _bad(spec, f"{kind} needs its size, as in {entry.form}")
    kw = {"spec": spec.strip(), "max_new_tokens": max_new_tokens, "temperature": temperature,
          "seed": seed}
    if not entry.size or (entry.size == "optional" and not rest):
        if rest:
            raise _bad(spec, f"{kind} takes no arguments")
        size = None
    elif entry.size == "two":
        match = _TWO.fullmatch(arg)
        if not match or int(match[1]) < 1 or int(match[2]) < 1:
            what = "agents x rounds, e.g. debate:3x2" if kind == "debate" else \
                "width x depth, e.g. beam:4x3"
            raise _bad(spec, f"{kind} takes {what}, both at least 1")
        size = (int(match[1]), int(match[2]))
    else:
        if not _ONE.fullmatch(arg) or int(arg) < 1:
            what = "samples" if kind in ("best-of-n", "majority", "pal") else "rounds"
            raise _bad(spec, f"{kind} takes a whole number of {what} of at least 1, e.g. "
                       f"{kind}:{8 if what == 'samples' else 2}")
        size = int(arg)
    strategy = entry.build(size, scorer, critic, **kw)
    strategy.scorer_spec = scorer_spec
    return strategy
