"""A judge: a model (any Generator: local, run, embedded, endpoint) asked for a verdict.

    judge = Judge(generator_for("smollm2-135m-instruct"), rubric="correctness")
    verdicts = judge.score(conversations, answers)          # points on the rubric
    pairs = judge.pairwise(conversations, answers_a, answers_b)   # both orders
    notes = judge.critique(conversations, answers, principle="Be concise.")

Three kinds of question, one machinery: every prompt is batched into one `chat` call, every
reply parsed strictly (judge_prompts.py); a reply with no verdict is asked again with a reminder up
to `retries` times and then counted as unparsed — never scored 0. If *every* verdict of a
batch is unparsed the judge is not following the format at all, and the job stops with one of
its replies shown, rather than labelling a dataset with noise.

Pairwise judging shows each pair in both orders. The pair is `consistent` when the two
verdicts name the same answer, a `tie` when both say tie, and `inconsistent` otherwise
(position won, not content): MT-Bench found GPT-4 consistent about 65 % of the time, so this
is measured, not assumed.

Verdicts can be cached on disk (JudgeCache: same judge, template, question and answers → one
call, ever; this also makes a killed labelling job resume without asking again) and a judge
can carry a call budget: `BudgetSpent` is raised before a call that would exceed it.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from corral.core.errors import BudgetSpent, CorralError
from corral.core.io import content_hash
from corral.graders import judge_prompts as P
from corral.graders.judge_cache import CallBudget, JudgeCache
from corral.infer.engine import SamplingParams

__all__ = ["BudgetSpent", "Judge", "JudgeCache", "JudgeStats", "PairVerdict", "Verdict"]


@dataclass
class Verdict:
    """value: points (score), "A"/"B"/"tie" (compare), the critique text (critique), or None
    when no reply could be parsed (error says why). calls: model calls made for it, 0 when
    it came from the cache."""
    value: float | str | None
    reply: str
    calls: int = 0
    error: str = ""
    cached: bool = False
    margin: float | None = None  # logprob verdicts: log p(first option) − log p(second)
    failure: str = ""  # a failed call: the exception's `kind` when it has one (JudgeError)

    @property
    def ok(self) -> bool:
        return self.value is not None


@dataclass
class PairVerdict:
    """One pair judged in both orders. outcome: "a" or "b" (the better answer, in the
    caller's order), "tie", "inconsistent" (the verdict followed the position) or
    "unparsed" (an order gave no verdict)."""
    forward: Verdict  # a shown as response A
    backward: Verdict | None  # b shown as response A; None when only one order was asked

    @property
    def outcome(self) -> str:
        first = self.forward.value
        if first is None or (self.backward is not None and self.backward.value is None):
            return "unparsed"
        if self.backward is None:
            return {"A": "a", "B": "b", "tie": "tie"}[first]
        forward = {"A": "a", "B": "b", "tie": "tie"}[first]
        backward = {"A": "b", "B": "a", "tie": "tie"}[self.backward.value]  # b was shown first
        return forward if forward == backward else "inconsistent"

    @property
    def calibrated(self) -> str | None:
        """Logprob verdicts in both orders: "a" or "b" by the mean of the two margins for a
        (forward: log p(A) − log p(B) with a shown as A; backward: the same with b as A, so
        a's margin is its negative). A constant pull towards one position adds to both
        margins and cancels; None without margins."""
        if self.backward is None or self.forward.margin is None or self.backward.margin is None:
            return None
        score = self.forward.margin - self.backward.margin
        return "a" if score > 0 else "b" if score < 0 else "tie"

    @property
    def first_position_won(self) -> list[bool]:
        """For each order with a decisive verdict: did the answer shown first win?"""
        return [v.value == "A" for v in (self.forward, self.backward)
                if v is not None and v.value in ("A", "B")]


@dataclass
class JudgeStats:
    calls: int = 0  # model calls (first asks and retries)
    retries: int = 0
    unparsed: int = 0  # verdicts still unparsed after every retry
    failed: int = 0  # calls that raised (endpoint errors)
    cache_hits: int = 0
    verdicts: int = 0
    programs: int = 0  # the pal rubric: programs run in the sandbox, and their wall seconds
    sandbox_s: float = 0.0

    def as_dict(self) -> dict:
        out = dict(self.__dict__)
        if not self.programs:
            out.pop("programs")
            out.pop("sandbox_s")
        return out


@dataclass
class Judge:
    """See the module docstring. rubric: "additive" (Self-Rewarding's 5 points), "correctness"
    (0/1), "pal" (a program computes the answer, graders/pal_judge.py), or a template text
    with {question} and {answer}, scored `low`..`high`."""
    generator: object
    rubric: str = "additive"
    low: float | None = None
    high: float | None = None
    reasoning: bool = True
    retries: int = 2
    max_new_tokens: int = 256
    temperature: float = 0.0
    pairwise_template: str = P.PAIRWISE
    critique_template: str = P.CRITIQUE
    cache: JudgeCache | None = None
    max_calls: int | None = None
    batch_size: int = 32
    verdict: str = "generate"  # or "logprob": the likeliest verdict token, local judges only
    stats: JudgeStats = field(default_factory=JudgeStats)

    def __post_init__(self):
        if self.rubric in P.RUBRICS:
            self.template, low, high = P.RUBRICS[self.rubric]
            self.low = low if self.low is None else self.low
            self.high = high if self.high is None else self.high
        else:
            if "{answer}" not in self.rubric:
                raise CorralError("the judge's rubric has no {answer} field; write the "
                                  "template with {question} and {answer}, or use a built-in: "
                                  f"{', '.join(P.RUBRICS)}")
            self.template = self.rubric
            self.low = 0.0 if self.low is None else self.low
            self.high = 5.0 if self.high is None else self.high
        if self.rubric == "pal" and self.verdict != "generate":
            raise CorralError("--rubric pal writes and runs a program, it reads no verdict "
                              "token; drop --verdict logprob")
        if self.verdict not in ("generate", "logprob"):
            raise CorralError(f"judge verdict '{self.verdict}': use generate or logprob")
        if self.verdict == "logprob" and not hasattr(self.generator, "choice_logprobs"):
            raise CorralError(f"judge {self.generator.name}: --verdict logprob reads the "
                              "model's next-token probabilities, which only a local model "
                              "gives; use --verdict generate for an endpoint")
        if self.retries < 0:
            raise CorralError(f"judge retries {self.retries}: give 0 or more")

    def identity(self) -> dict:
        """What judged: the model and a hash of every template, for manifests and keys."""
        return {"model": self.generator.identity(), "rubric": self.rubric if self.rubric in
                P.RUBRICS else "custom", "templates": content_hash(
                    {"score": self.template, "pair": self.pairwise_template,
                     "critique": self.critique_template, "reasoning": self.reasoning}),
                "range": [self.low, self.high], "max_new_tokens": self.max_new_tokens,
                "temperature": self.temperature, "verdict": self.verdict,
                **({"programs": _pal().prompt_hash()} if self.rubric == "pal" else {})}

    # -- the three questions -------------------------------------------------------------
    def score(self, conversations, answers, principle: str = "") -> list[Verdict]:
        if self.rubric == "pal":
            return _pal().score(self, conversations, answers)
        if self.verdict == "logprob":
            return self._score_by_choice(conversations, answers, principle)
        suffix = P.REASON_SCORE if self.reasoning else P.BARE_SCORE
        prompts = [P.fill(self.template, question=P.question_text(c), answer=a,
                          principle=principle) + suffix for c, a in zip(conversations, answers)]
        retry = P.RETRY_SCORE.format(low=self.low, high=self.high)
        return self._ask("score", prompts, lambda r: P.parse_points(r, self.low, self.high),
                         retry)

    def compare(self, conversations, answers_a, answers_b, principle: str = "") -> list[Verdict]:
        """One order: answers_a shown as response A."""
        if self.rubric == "pal":
            return _pal().compare(self, conversations, answers_a, answers_b)
        choose = self.verdict == "logprob"
        suffix = P.CHOOSE_PAIR if choose else P.REASON_PAIR if self.reasoning else P.BARE_PAIR
        prompts = [P.fill(self.pairwise_template, question=P.question_text(c), answer_a=a,
                          answer_b=b, principle=principle) + suffix
                   for c, a, b in zip(conversations, answers_a, answers_b)]
        if choose:
            return self._ask("compare", prompts, batch=lambda ps: self._choose(ps, {"A": "A",
                                                                                   "B": "B"}))
        return self._ask("compare", prompts, P.parse_preference, P.RETRY_PAIR)

    def _score_by_choice(self, conversations, answers, principle) -> list[Verdict]:
        """Pointwise by the likeliest verdict token: Yes/No for a 0/1 rubric, else the digit
        of the points (integer ranges up to 9)."""
        binary = (self.low, self.high) == (0, 1)
        if not binary and not (float(self.low).is_integer() and float(self.high).is_integer()
                               and 0 <= self.low < self.high <= 9):
            raise CorralError(f"--verdict logprob scores a rubric of whole points 0..9; this "
                              f"one runs {self.low:g}..{self.high:g}: use --verdict generate")
        suffix = P.CHOOSE_CORRECT if binary else P.CHOOSE_POINTS
        options = {"Yes": 1.0, "No": 0.0} if binary else \
            {str(k): float(k) for k in range(int(self.low), int(self.high) + 1)}
        prompts = [P.fill(self.template, question=P.question_text(c), answer=a,
                          principle=principle) + suffix for c, a in zip(conversations, answers)]
        return self._ask("score", prompts, batch=lambda ps: self._choose(ps, options))

    def _choose(self, prompts: list[str], options: dict) -> list[Verdict]:
        """One forward pass per prompt; the verdict is the option whose first token the judge
        finds likeliest (never unparsed). The reply records every option's log-probability."""
        conversations = [[{"role": "user", "content": p}] for p in prompts]
        self._charge(len(conversations))
        rows = self.generator.choice_logprobs(conversations, list(options))
        verdicts = []
        for row in rows:
            best = max(range(len(row)), key=row.__getitem__)
            reply = " ".join(f"{o}:{lp:.3f}" for o, lp in zip(options, row))
            verdicts.append(Verdict(list(options.values())[best], f"logprob {reply}", 1,
                                    margin=row[0] - row[1]))
        return verdicts

    def pairwise(self, conversations, answers_a, answers_b, principle: str = "",
                 both_orders: bool = True) -> list[PairVerdict]:
        conversations = list(conversations)
        n = len(conversations)
        if not both_orders:
            return [PairVerdict(v, None) for v in
                    self.compare(conversations, answers_a, answers_b, principle)]
        verdicts = self.compare(conversations * 2, list(answers_a) + list(answers_b),
                                list(answers_b) + list(answers_a), principle)
        return [PairVerdict(verdicts[k], verdicts[n + k]) for k in range(n)]

    def critique(self, conversations, answers, principle: str = "") -> list[Verdict]:
        if self.rubric == "pal":
            raise CorralError("the pal rubric checks final answers with a program and writes "
                              "no critique; give a text rubric (correctness, additive) to "
                              "critique with")
        prompts = [P.fill(self.critique_template, question=P.question_text(c), answer=a,
                          request=P.DEFAULT_CRITIQUE, principle=principle)
                   for c, a in zip(conversations, answers)]
        return self._ask("critique", prompts, lambda r: (r.strip() or None,
                                                         "an empty critique"), "")

    def ask(self, conversations, parse, params: SamplingParams | None = None,
            kind: str = "ask") -> list[Verdict]:
        """Whole conversations (a grader's own messages) asked as they are, one verdict each
        by `parse` (reply -> (value, why)), through the same batching, cache and budget.
        Nothing raises for a bad reply or a failed call here (a grader scores those 0):
        a failed call is a verdict whose error starts "the judge failed"."""
        params = params or self.params()
        return self._ask(kind, [list(c) for c in conversations], parse, "", params=params,
                         strict=False)

    def params(self) -> SamplingParams:
        return SamplingParams(max_new_tokens=self.max_new_tokens,
                              temperature=self.temperature, n=1)

    # -- machinery -----------------------------------------------------------------------
    def _ask(self, kind: str, prompts: list, parse=None, retry_text: str = "",
             batch=None, params: SamplingParams | None = None,
             strict: bool = True) -> list[Verdict]:
        """Cached verdicts for `prompts` (texts, each asked as one user turn, or whole
        conversations); the rest asked a batch at a time, by `batch` (prompts → verdicts) or
        by generating replies that `parse` reads."""
        batch = batch or (lambda ps: self._ask_batch(ps, parse, retry_text, params, strict))
        ident = self.identity()
        if params is not None and params != self.params():
            ident = {**ident, "params": params.__dict__}
        keys = [content_hash({"judge": ident, "kind": kind, "prompt": p}) for p in prompts]
        out: list[Verdict | None] = [None] * len(prompts)
        todo = []
        for k, key in enumerate(keys):
            hit = self.cache.get(key) if self.cache else None
            if hit is not None:
                out[k] = Verdict(hit["value"], hit["reply"], 0, hit.get("error", ""), True,
                                 hit.get("margin"))
                self.stats.cache_hits += 1
            else:
                todo.append(k)
        for at in range(0, len(todo), self.batch_size):
            chunk = todo[at:at + self.batch_size]
            verdicts = batch([prompts[k] for k in chunk])
            for k, v in zip(chunk, verdicts):
                out[k] = v
            if self.cache:  # endpoint failures are not cached: a rerun asks again
                self.cache.put([{"key": keys[k], "kind": kind, "value": v.value,
                                 "margin": v.margin,
                                 "reply": v.reply, "error": v.error}
                                for k, v in zip(chunk, verdicts) if not v.error.startswith(
                                    "the judge failed")])
        self.stats.verdicts += len(prompts)
        return out

    def _ask_batch(self, prompts: list, parse, retry_text: str,
                   params: SamplingParams | None = None, strict: bool = True) -> list[Verdict]:
        conversations = [[{"role": "user", "content": p}] if isinstance(p, str) else list(p)
                         for p in prompts]
        first = [len(c) for c in conversations]
        verdicts: list[Verdict] = [Verdict(None, "", 0, "") for _ in prompts]
        pending = list(range(len(prompts)))
        for attempt in range(self.retries + 1):
            if not pending:
                break
            replies = self._chat([conversations[k] for k in pending], params)
            still = []
            for k, reply in zip(pending, replies):
                v = verdicts[k]
                v.calls += 1
                if isinstance(reply, Exception):
                    v.error = f"the judge failed: {type(reply).__name__}: {reply}"
                    v.failure = str(getattr(reply, "kind", "") or "")
                    self.stats.failed += 1
                    continue
                v.reply = reply
                v.value, v.error = parse(reply)
                if v.value is None and retry_text:
                    still.append(k)
                    conversations[k] = conversations[k][:first[k]] + [
                        {"role": "assistant", "content": reply},
                        {"role": "user", "content": retry_text}]
            if attempt < self.retries:
                self.stats.retries += len(still)
                pending = still
            else:
                pending = []
        unparsed = [v for v in verdicts if v.value is None and not v.error.startswith(
            "the judge failed")]
        self.stats.unparsed += len(unparsed)
        if not strict:
            return verdicts
        if unparsed and len(unparsed) == len(prompts) and len(prompts) >= 4:
            raise CorralError(
                f"judge {self.generator.name} gave no parsable verdict in any of {len(prompts)} "
                f"replies ({self.retries} retries each); its last reply was "
                f"{unparsed[-1].reply[:200]!r}. Use a stronger judge, turn reasoning off "
                "(--no-reasoning), read its verdict from token probabilities (--verdict "
                "logprob, local judges), or give a rubric that ends with the verdict format")
        if all(v.error.startswith("the judge failed") for v in verdicts) and verdicts:
            raise CorralError(f"judge {self.generator.name}: every call failed; the first: "
                              f"{verdicts[0].error}")
        return verdicts

    def _charge(self, calls: int) -> None:
        budget = CallBudget(self.max_calls, "the judge's budget of {limit} calls is spent "
                            "({made} made); raise it to judge more")
        budget.calls = self.stats.calls
        budget.charge(calls)
        self.stats.calls += calls

    def _chat(self, conversations: list[list[dict]], params: SamplingParams | None = None
              ) -> list:
        """One Generator.chat call for the batch: a local model in one generation pass, an
        endpoint concurrently with its retries. Replies, or the exception of a failed one."""
        self._charge(len(conversations))
        results = self.generator.chat(conversations, params or self.params(),
                                      return_errors=True)
        return [r if isinstance(r, Exception) else r[0].text for r in results]


def _pal():
    """graders/pal_judge.py, the pal rubric's machinery (it imports this module)."""
    from corral.graders import pal_judge

    return pal_judge
