"""`corral advise` as a library call: measure one task on one or more starting models, then
rank what to do next, each recommendation with the measurement behind it and the commands.

    from corral.api import AdviseOptions, advise
    advice = advise(AdviseOptions(model=["smollm2-135m-instruct"], task="arithmetic"))
    advice.recommendations[0].rung, advice.recommendations[0].commands, advice.text

Every mistake in the options or the data files is raised before a model loads. The
measurements are cached per model under `<root>/advise/` (advisor/cache.py): the same
command again makes no model call. The rules are advisor/rules.py, the signals
advisor/signals.py; docs/advise.md has both.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from corral.advisor.lines import Context
from corral.advisor.rules import Plan, recommend
from corral.advisor.signals import DataSignals, Settings, count_rows, detect_memory
from corral.core.errors import CorralError

FILE_TASK = (".jsonl", ".json", ".parquet")
Log = Callable[[str], None]


@dataclass(frozen=True)
class AdviseOptions:
    """The options of `corral advise` (field names are its flags). `model`: one spec or a
    list (models, runs, directories, endpoints); memory_gb 0: detect it."""
    model: list = field(default_factory=list)
    task: str = ""
    split: str = "dev"
    data: str = ""  # a built-in task's local data file (gsm8k)
    grader: str = ""  # a FILE task's grader
    train: str = ""  # a FILE task's train items (default: its sibling NAME.train.jsonl)
    limit: int = 50
    n: int = 8
    temperature: float = 0.8
    few_shot: int = 4
    max_new_tokens: int = 256
    sft: str = ""
    pairs: str = ""
    thumbs: str = ""
    memory_gb: float = 0.0
    no_audit: bool = False
    audit_items: int = 20
    json: bool = False  # the CLI prints JSON; the library returns the same Advice
    root: str = "runs"
    seed: int = 0

    def __post_init__(self):
        models = [self.model] if isinstance(self.model, str) else list(self.model or [])
        object.__setattr__(self, "model", list(dict.fromkeys(models)))


@dataclass
class Advice:
    """What advise found: the plan (models ranked, compute, recommendations, what cannot
    help), the data it counted, which models came from the cache, and notes."""
    task: str
    split: str
    items: int
    plan: Plan
    data: DataSignals
    cached: list = field(default_factory=list)
    notes: list = field(default_factory=list)

    @property
    def recommendations(self) -> list:
        return self.plan.recommendations

    @property
    def avoid(self) -> list:
        return self.plan.avoid

    @property
    def models(self) -> list:
        return self.plan.ranking

    @property
    def text(self) -> str:
        from corral.advisor.report import format_advice

        return format_advice(self)

    def to_json(self) -> dict:
        plan = self.plan
        return {"task": self.task, "split": self.split, "items": self.items,
                "models": [m.summary() for m in plan.ranking], "choice": plan.choice,
                "train_model": plan.train_model, "compute": asdict(plan.compute),
                "data": asdict(self.data),
                "recommendations": [asdict(r) for r in plan.recommendations],
                "avoid": [asdict(r) for r in plan.avoid], "cached": list(self.cached),
                "notes": list(self.notes)}


def _check(opts: AdviseOptions) -> None:
    if not opts.model:
        raise CorralError("advise: give --model (a model, a run, a directory or an endpoint "
                          "such as openai:MODEL); repeat it to compare models")
    if not opts.task:
        raise CorralError("advise: give --task (arithmetic, gsm8k, ifeval-like or "
                          "DEV.jsonl with --grader)")
    if opts.split == "unseen":
        raise CorralError("--split unseen: advise makes choices, so it measures on dev; grade "
                          "the sealed unseen split once at the end with corral eval")
    checks = [(opts.n >= 2, f"--n {opts.n}: pass@k needs several samples per item; give 2 "
                            "or more, e.g. 8"),
              (opts.temperature > 0, f"--temperature {opts.temperature:g}: greedy samples "
                                     "are all the same answer; give one above 0, e.g. 0.8"),
              (opts.memory_gb >= 0, f"--memory-gb {opts.memory_gb:g}: give the memory in GB, "
                                    "or 0 to detect it"),
              (opts.no_audit or opts.audit_items >= 1,
               f"--audit-items {opts.audit_items}: give 1 or more, or --no-audit"),
              (opts.max_new_tokens >= 1, f"--max-new-tokens {opts.max_new_tokens}: give 1 "
                                         "or more")]
    for ok, message in checks:
        if not ok:
            raise CorralError(message)


def _count_data(opts: AdviseOptions) -> DataSignals:
    data = DataSignals()
    if opts.sft:
        data.sft, data.sft_path = len(count_rows(opts.sft, "--sft", "SFT")), opts.sft
    if opts.pairs:
        data.pairs = len(count_rows(opts.pairs, "--pairs", "preference"))
        data.pairs_path = opts.pairs
    if opts.thumbs:
        rows = count_rows(opts.thumbs, "--thumbs", "thumbs (KTO: prompt, completion, label)")
        data.thumbs_up = sum(bool(r.label) for r in rows)
        data.thumbs_down, data.thumbs_path = len(rows) - data.thumbs_up, opts.thumbs
    return data


def _sibling(path: str, split: str) -> str:
    """NAME.<split>.jsonl beside NAME.dev.jsonl (what `corral split` writes), if it exists."""
    p = Path(path)
    if ".dev." not in p.name:
        return ""
    other = p.with_name(p.name.replace(".dev.", f".{split}."))
    return str(other) if other.is_file() else ""


def _tasks(opts: AdviseOptions, data: DataSignals, notes: list):
    """(dev task, its few-shot form or None, Context); counts the gradable train items."""
    from corral.data.readers import load_items
    from corral.tasks import get_task

    file_task = opts.task.endswith(FILE_TASK)
    if not file_task:
        for key in ("grader", "train"):
            if getattr(opts, key):
                raise CorralError(f"--{key} is for a FILE task; {opts.task} has its own "
                                  "splits and grader")
    dev = get_task(opts.task, split=opts.split, data=opts.data, grader=opts.grader,
                   limit=opts.limit, seed=opts.seed)
    few = None
    if file_task:
        if opts.train and not Path(opts.train).is_file():
            raise CorralError(f"--train {opts.train}: no such file; give the task's train "
                              "items (JSONL), or drop --train")
        train_path = opts.train or _sibling(opts.task, "train")
        data.train_items, data.train_path = (len(load_items(train_path)), train_path) \
            if train_path else (0, "")
        notes.append("a FILE task has no worked examples: few-shot not measured")
    else:
        train = get_task(opts.task, split="train", data=opts.data, seed=opts.seed)
        data.train_items, data.solutions = len(train.items), len(train.solutions)
        if opts.few_shot:
            few = get_task(opts.task, split=opts.split, data=opts.data, limit=opts.limit,
                           few_shot=opts.few_shot, seed=opts.seed)
            few, dev = _same_items(few, dev) if few.few_shot else (None, dev)
    ctx = Context(task=opts.task, split=opts.split, data=opts.data, grader=opts.grader,
                  file_task=file_task, train_path=data.train_path,
                  unseen_path=_sibling(opts.task, "unseen") if file_task else "", n=opts.n,
                  few_shot=len(few.few_shot) if few else 0)
    return dev, few, ctx


def _same_items(few, dev):
    """Both forms over the items they share (a worked example is never also an item)."""
    shared = {it.source for it in few.items} & {it.source for it in dev.items}
    dev.items = [it for it in dev.items if it.source in shared]
    few.items = [it for it in few.items if it.source in shared]
    return few, dev


def advise(opts: AdviseOptions, *, generator_for=None, log: Log | None = None) -> Advice:
    """Measure (or read from the cache) every model on the task, then rank the advice.
    `generator_for(spec) -> Generator` replaces loading (tests, callers with a model)."""
    from corral.advisor.cache import measured

    _check(opts)
    notes: list = []
    data = _count_data(opts)  # the user's files: every mistake before a model loads
    dev, few, ctx = _tasks(opts, data, notes)
    data.memory_gb, data.memory_source = (opts.memory_gb, "given") if opts.memory_gb \
        else detect_memory()
    settings = Settings(n=opts.n, temperature=opts.temperature,
                        max_new_tokens=opts.max_new_tokens, seed=opts.seed,
                        audit_items=0 if opts.no_audit else opts.audit_items)
    signals, cached = [], []
    for spec in opts.model:  # one at a time: two large models need not fit together
        one, hit = measured(spec, opts.root, dev, few, settings, generator_for=generator_for,
                            log=log)
        signals.append(one)
        if hit:
            cached.append(spec)
    return Advice(dev.name, opts.split, len(dev.items), recommend(signals, data, ctx), data,
                  cached, notes)
