"""The measurements `corral advise` ranks its advice by.

Per model and task (`ModelSignals`), all through the one evaluation path
(`corral.eval.evaluate.evaluate`) on any Generator:
  - greedy dev score zero-shot and, when the task has worked examples, few-shot (per item);
  - n samples per item at a temperature: per item how many passed (pass@k, and the share of
    items whose samples disagree: what RL learns from) and whether the majority answer passed;
  - the model's report card as a judge of its own sampled answers (`corral.feedback.audit`:
    balanced verification accuracy against the grader), unless skipped;
  - its parameter count (None for an endpoint).
Per task (`DataSignals`): the user's SFT rows, preference pairs and thumbs (KTO) rows, the
gradable train items, reference solutions, and the memory training would have.

    sig = measure(generator, "my-model", dev, few, Settings(n=8))
    sig.greedy, sig.pass_at_k, sig.verification
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field

from corral.eval import metrics as M

NOTE = 160  # characters of a failed audit's reason kept


@dataclass(frozen=True)
class Settings:
    """How the models are measured (part of every cache key). audit_items 0: no audit."""
    n: int = 8
    temperature: float = 0.8
    max_new_tokens: int = 256
    seed: int = 0
    audit_items: int = 20


@dataclass
class Share:
    """A mean over items with its standard error (None for one item) and the item count."""
    value: float
    stderr: float | None
    n: int

    @classmethod
    def of(cls, values) -> Share | None:
        values = [float(v) for v in values]
        if not values:
            return None
        mean, se = M.mean_stderr(values)
        return cls(mean, None if math.isnan(se) else se, len(values))

    def __str__(self) -> str:
        se = "" if self.stderr is None else f" ± {self.stderr:.2f}"
        return f"{self.value:.2f}{se}"


def paired(a: list, b: list) -> Share | None:
    """b − a item by item (the same items): the difference and its paired stderr."""
    return Share.of([y - x for x, y in zip(a, b)]) if a and b and len(a) == len(b) else None


@dataclass
class ModelSignals:
    """One model on one task's dev items; lists are per item, in the task's order."""
    model: str
    identity: dict
    params: int | None
    zero_shot: list  # 1/0: the greedy answer passed
    n: int
    temperature: float
    passes: list  # samples of n that passed
    majority: list | None = None  # 1/0: the most common answer passed; None: no answers
    few_shot: list | None = None
    few_shot_k: int = 0
    card: dict | None = None  # the judge report card of the model on its own answers
    audit_note: str = ""  # why there is no card
    usage: dict = field(default_factory=dict)

    @property
    def items(self) -> int:
        return len(self.zero_shot)

    @property
    def best_prompt(self) -> str:
        """"few-shot" when its greedy score is higher, else "zero-shot"."""
        few = Share.of(self.few_shot or [])
        return "few-shot" if few and few.value > Share.of(self.zero_shot).value else "zero-shot"

    @property
    def greedy(self) -> Share:
        """The dev score: greedy pass@1 with the better of the two prompts."""
        return Share.of(self.few_shot if self.best_prompt == "few-shot" else self.zero_shot)

    @property
    def zero_greedy(self) -> Share:
        """Greedy pass@1 with the zero-shot prompt: what samples (drawn with that prompt:
        pass@k, maj@k, the audit) and RL on the task's prompts are compared against."""
        return Share.of(self.zero_shot)

    @property
    def greedy_items(self) -> list:
        return self.few_shot if self.best_prompt == "few-shot" else self.zero_shot

    @property
    def pass_at_1(self) -> Share:
        """Sampled pass@1: the share of samples that pass (generation accuracy)."""
        return Share.of([c / self.n for c in self.passes])

    @property
    def pass_at_k(self) -> Share:
        return Share.of([1.0 if c else 0.0 for c in self.passes])

    @property
    def maj_at_k(self) -> Share | None:
        return Share.of(self.majority) if self.majority is not None else None

    @property
    def mixed(self) -> Share:
        """Items whose samples disagree (some pass, some fail): RL's only signal."""
        return Share.of([1.0 if 0 < c < self.n else 0.0 for c in self.passes])

    @property
    def verification(self) -> dict | None:
        """balanced accuracy, the two recalls, agreement and the verdict of the card."""
        if not self.card:
            return None
        ver = self.card.get("verification") or {}
        return {"balanced_accuracy": ver.get("balanced_accuracy"),
                "pass_recall": ver.get("pass_recall"), "fail_recall": ver.get("fail_recall"),
                "agreement": self.card.get("agreement"),
                "better": self.card.get("verifies_better_than_generates")}

    def summary(self) -> dict:
        """The derived numbers, for JSON."""
        def share(s):
            return None if s is None else {"value": s.value, "stderr": s.stderr, "n": s.n}
        return {"model": self.model, "params": self.params, "items": self.items,
                "dev_score": share(self.greedy), "prompt": self.best_prompt,
                "zero_shot": share(Share.of(self.zero_shot)),
                "few_shot": share(Share.of(self.few_shot or [])), "few_shot_k": self.few_shot_k,
                "pass@1": share(self.pass_at_1), f"pass@{self.n}": share(self.pass_at_k),
                f"maj@{self.n}": share(self.maj_at_k), "mixed": share(self.mixed),
                "n": self.n, "temperature": self.temperature,
                "verification": self.verification, "audit_note": self.audit_note,
                "usage": self.usage}


def parameter_count(generator) -> int | None:
    """The model's parameters: a generator's `num_parameters`, else its local model's; None
    for an endpoint (nothing to count, nothing to train here)."""
    count = getattr(generator, "num_parameters", None)
    if count is not None:
        return int(count() if callable(count) else count)
    model = getattr(getattr(getattr(generator, "engine", None), "backend", None), "model", None)
    if model is None:
        return None
    return int(sum(p.numel() for p in model.parameters()))


def _per_item(result) -> list[list]:
    """The grader's scores of each item's samples, from one evaluation."""
    out, i = [], 0
    for outcome in result.outcomes:
        size = len(outcome.samples) or 1
        out.append(result.scores[i:i + size])
        i += size
    return out


def _greedy(generator, task, settings: Settings) -> list[int]:
    from corral.eval.evaluate import evaluate
    from corral.graders.base import passed
    from corral.infer.engine import SamplingParams

    params = SamplingParams(temperature=0.0, n=1, max_new_tokens=settings.max_new_tokens,
                            seed=settings.seed)
    result = evaluate(generator, task.prompt_items(), task.grader, params)
    return [int(passed(scores[0])) for scores in _per_item(result)]


def _sampled(generator, task, settings: Settings):
    from corral.eval.evaluate import evaluate
    from corral.infer.engine import SamplingParams

    params = SamplingParams(temperature=settings.temperature, n=settings.n,
                            max_new_tokens=settings.max_new_tokens, seed=settings.seed)
    return evaluate(generator, task.prompt_items(), task.grader, params, ks=(1, settings.n))


def _counts(result, n: int) -> tuple[list, list | None]:
    from corral.graders.base import passed

    per_item = _per_item(result)
    flags = [[passed(s) for s in scores] for scores in per_item]
    answers = [[getattr(s, "answer", None) for s in scores] for scores in per_item]
    majority = None
    if any(a is not None for item in answers for a in item):
        majority = [int(M.maj_at_k(a, f, len(f))) for a, f in zip(answers, flags)]
    return [sum(f) for f in flags], majority


def _audit(generator, task, result, settings: Settings) -> tuple[dict | None, str]:
    """The model as a judge (correctness rubric) of its own sampled answers, audited
    against the grader's verdicts; (None, why) when it cannot be."""
    from corral.core.errors import CorralError
    from corral.eval.evaluate import item_conversation
    from corral.feedback.audit import audit
    from corral.graders.judging import Judge

    samples: dict = {}
    for row in result.samples:
        samples.setdefault(row["item"], []).append({"text": row["output"],
                                                    "passed": row["passed"]})
    kinds = {s["passed"] for rows in samples.values() for s in rows}
    if len(kinds) < 2:  # a balanced accuracy needs right and wrong answers to verify
        return None, "not audited: its sampled answers were all " + \
            ("right" if True in kinds else "wrong")
    conversations = {it.source: item_conversation(it) for it in task.prompt_items()}
    try:
        card = audit(Judge(generator, rubric="correctness"), conversations, samples,
                     max_items=settings.audit_items, seed=settings.seed)
    except CorralError as exc:  # no verdict the judge could give, or nothing to audit
        why = str(exc).split(";")[0]
        return None, why if len(why) <= NOTE else why[:NOTE] + "..."
    return card, ""


def measure(generator, spec: str, dev, few=None, settings: Settings | None = None,
            log=None) -> ModelSignals:
    """Every per-model signal of `generator` on the dev task (and its few-shot form `few`)."""
    settings, log = settings or Settings(), log or (lambda _: None)
    log(f"advise: {spec}: greedy zero-shot on {len(dev.items)} dev items")
    zero = _greedy(generator, dev, settings)
    few_items = None
    if few is not None:
        log(f"advise: {spec}: greedy {len(few.few_shot)}-shot")
        few_items = _greedy(generator, few, settings)
    log(f"advise: {spec}: {settings.n} samples per item at temperature {settings.temperature:g}")
    result = _sampled(generator, dev, settings)
    passes, majority = _counts(result, settings.n)
    card, note = None, "skipped (--no-audit)"
    if settings.audit_items:
        log(f"advise: {spec}: auditing it as a judge of its own answers")
        card, note = _audit(generator, dev, result, settings)
    usage = getattr(generator, "usage", None)
    return ModelSignals(spec, dict(generator.identity()), parameter_count(generator), zero,
                        settings.n, settings.temperature, passes, majority, few_items,
                        len(few.few_shot) if few is not None else 0, card, note,
                        usage.as_dict() if hasattr(usage, "as_dict") else {})


# ---------------------------------------------------------------- the task's side
@dataclass
class DataSignals:
    """What can be trained on, and with how much memory. Paths "" when not given."""
    sft: int = 0
    sft_path: str = ""
    pairs: int = 0
    pairs_path: str = ""
    thumbs_up: int = 0
    thumbs_down: int = 0
    thumbs_path: str = ""
    train_items: int = 0  # gradable: the task's train split, which its grader scores
    train_path: str = ""  # a FILE task's train items ("" for a built-in task's split)
    solutions: int = 0  # train items with a reference solution (SFT on data.task)
    memory_gb: float = 0.0
    memory_source: str = ""

    @property
    def thumbs(self) -> int:
        return self.thumbs_up + self.thumbs_down


def count_rows(path: str, flag: str, kind: str) -> list:
    """The validated records of a data file a flag names; a missing file is one error."""
    from pathlib import Path

    from corral.core.errors import CorralError
    from corral.data import readers

    if not Path(path).is_file():
        raise CorralError(f"{flag} {path}: no such file; give the path of your {kind} rows "
                          f"(JSONL), or drop {flag}")
    load = {"--sft": readers.load_sft_records, "--pairs": readers.load_preference_records,
            "--thumbs": readers.load_feedback_records}[flag]
    return load(path)


def detect_memory() -> tuple[float, str]:
    """(GB, where from): a GPU's free memory when there is one, else the machine's RAM."""
    try:
        import torch

        if torch.cuda.is_available():
            free, _ = torch.cuda.mem_get_info()
            return free / 1e9, "free GPU memory"
    except ImportError:
        pass
    return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") / 1e9, "total RAM"
