"""Strategy specs as users type them (`majority:8`, `debate:3x2`) → Strategy objects.

    greedy | best-of-n:N[:SCORER] | majority:N | refine:R | reflexion:R
    | debate:MxR[:SCORER] | beam:BxD[:SCORER]

SCORER is a grader spec (a rule, a grader or reward-model JSON file) or `judge` (the model
itself, asked whether each answer is correct; `corral eval` binds it); the caller loads it,
since loading a reward model is not this layer's business: `parse_strategy` keeps it as
`strategy.scorer_spec` and takes a ready Scorer through `scorers`."""
from __future__ import annotations

import difflib
import re

from corral.core.errors import CorralError
from corral.strategies.beam import BeamSearch
from corral.strategies.debate import Debate
from corral.strategies.refine import Reflexion, SelfRefine
from corral.strategies.simple import BestOfN, Greedy, Majority

FORMS = {"greedy": "greedy", "best-of-n": "best-of-n:N[:SCORER]", "majority": "majority:N",
         "refine": "refine:R", "reflexion": "reflexion:R", "debate": "debate:MxR[:SCORER]",
         "beam": "beam:BxD[:SCORER]"}
ACCEPTED = ", ".join(FORMS.values())
_TAKES_SCORER = {"best-of-n", "debate", "beam"}
_ONE = re.compile(r"\d+")
_TWO = re.compile(r"(\d+)x(\d+)")


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
    if kind not in FORMS:
        close = difflib.get_close_matches(kind, FORMS, n=1, cutoff=0.5)
        hint = f"did you mean '{FORMS[close[0]]}'?" if close else "no such strategy"
        raise _bad(spec, f"unknown strategy '{kind}'; {hint}")
    if scorer_spec and kind not in _TAKES_SCORER:
        raise _bad(spec, f"{kind} takes no scorer (only best-of-n, debate and beam do)")
    if not arg and kind != "greedy":
        raise _bad(spec, f"{kind} needs its size, as in {FORMS[kind]}")
    kw = {"spec": spec.strip(), "max_new_tokens": max_new_tokens, "temperature": temperature,
          "seed": seed}
    if kind == "greedy":
        if rest:
            raise _bad(spec, "greedy takes no arguments")
        return Greedy(**kw)
    if kind in ("debate", "beam"):
        match = _TWO.fullmatch(arg)
        if not match or int(match[1]) < 1 or int(match[2]) < 1:
            what = "agents x rounds, e.g. debate:3x2" if kind == "debate" else \
                "width x depth, e.g. beam:4x3"
            raise _bad(spec, f"{kind} takes {what}, both at least 1")
        a, b = int(match[1]), int(match[2])
        strategy = Debate(a, b, scorer, **kw) if kind == "debate" else \
            BeamSearch(a, b, scorer, **kw)
    else:
        if not _ONE.fullmatch(arg) or int(arg) < 1:
            what = "samples" if kind in ("best-of-n", "majority") else "rounds"
            raise _bad(spec, f"{kind} takes a whole number of {what} of at least 1, e.g. "
                       f"{kind}:{8 if what == 'samples' else 2}")
        n = int(arg)
        strategy = {"best-of-n": lambda: BestOfN(n, scorer, **kw),
                    "majority": lambda: Majority(n, **kw),
                    "refine": lambda: SelfRefine(n, critic, **kw),
                    "reflexion": lambda: Reflexion(n, **kw)}[kind]()
    strategy.scorer_spec = scorer_spec
    return strategy
