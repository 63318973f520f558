"""`corral prompt search` as a library call: prompt programs scored on dev under a budget of
model calls, the winner graded once on the sealed unseen split beside zero-shot, and saved.

    from corral.api import PromptSearchOptions, prompt_search
    result = prompt_search(PromptSearchOptions(task="arithmetic", budget=400))
    result.program_path, result.unseen["paired"], result.spread

The run folder (`runs/prompt-<task>-<hash of the options>` unless `name` is given, so the
same command resumes) holds `scores.jsonl` (every answer: the resumable job), `search.json`
(every candidate's score, stderr, calls and tokens, the ordering spread, the unseen scores)
and `program.json` (the winner, with how it was chosen).
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from corral.core.errors import CorralError
from corral.core.io import content_hash
from corral.prompt.candidates import CHOICES, parse_list
from corral.tasks.prompt import LAYOUTS, ORDERS, PromptProgram, check_fields

FILE_TASK = (".jsonl", ".json", ".parquet")


@dataclass(frozen=True)
class PromptSearchOptions:
    """The options of `corral prompt search` (field names are its flags)."""
    task: str = ""
    model: str = "smollm2-135m-instruct"
    data: str = ""  # the task's local data file (gsm8k)
    grader: str = ""  # a FILE task's grader
    train: str = ""  # a FILE task's train rows: the demonstration pool
    unseen: str = ""  # a FILE task's sealed unseen rows
    k: str = "0,2,4"
    choose: str = "first,random,similar,mmr,bootstrap"
    layout: str = "chat"
    order: str = "given"
    system: tuple = ()  # system prompts to try besides none
    instruction: tuple = ()  # instruction templates to try besides the bare input
    budget: int = 400  # model calls for scoring candidates on dev
    bootstrap: int = 48  # train items answered zero-shot, at most, to bootstrap demonstrations
    orderings: int = 4  # orders of the winner's demonstrations, for the ordering spread
    limit: int = 0  # dev items (0 = all)
    unseen_limit: int = 0  # unseen items (0 = all)
    max_new_tokens: int = 256
    engine_batch: int = 16
    seed: int = 0
    root: str = "runs"
    name: str = ""
    out: str = ""  # also save the winner here

    def __post_init__(self):
        for key in ("system", "instruction"):
            value = getattr(self, key)
            object.__setattr__(self, key, (value,) if isinstance(value, str) else
                               tuple(value or ()))
        if not self.task:
            raise CorralError("prompt search: give --task (arithmetic, gsm8k, ifeval-like or "
                              "DEV.jsonl with --grader and --train)")
        for key in ("budget", "limit", "unseen_limit", "bootstrap", "orderings"):
            if getattr(self, key) < 0:
                raise CorralError(f"--{key.replace('_', '-')} {getattr(self, key)}: give 0 "
                                  "or more")


@dataclass
class PromptSearchResult:
    run: Path
    program_path: Path
    winner: dict
    standings: list
    spread: dict | None
    unseen: dict
    calls: dict
    wall_s: float
    task: str = ""
    n_dev: int = 0
    skipped: list = field(default_factory=list)  # candidates left out, and why


@dataclass
class _Grid:
    ks: list
    choices: list
    layouts: list
    orders: list
    systems: list = field(default_factory=list)
    templates: list = field(default_factory=list)


def _grid(opts: PromptSearchOptions) -> _Grid:
    ks = parse_list(opts.k, "--k", kind=int)
    if any(k < 0 for k in ks):
        raise CorralError(f"--k {opts.k}: give 0 or more demonstrations")
    grid = _Grid(ks, parse_list(opts.choose, "--choose", CHOICES),
                 parse_list(opts.layout, "--layout", LAYOUTS),
                 parse_list(opts.order, "--order", ORDERS),
                 [""] + [s for s in opts.system if s], [""] + [t for t in opts.instruction if t])
    if "bootstrap" in grid.choices and max(ks) > opts.bootstrap:
        raise CorralError(f"--k {max(ks)} with --choose bootstrap: at most --bootstrap "
                          f"{opts.bootstrap} answers can pass; raise --bootstrap or lower --k")
    for template in grid.templates:
        PromptProgram(template=template)  # a malformed template, before any load
    return grid


def load_splits(opts: PromptSearchOptions) -> dict:
    """{"train", "dev", "unseen"} tasks (unseen None for a FILE task without --unseen)."""
    from corral.tasks import get_task

    if opts.task.endswith(FILE_TASK):
        if not opts.grader:
            raise CorralError(f"task file {opts.task} needs --grader (a rule name or grader "
                              "JSON)")
        return {"dev": get_task(opts.task, split="dev", grader=opts.grader, limit=opts.limit),
                "train": pool_task(opts.train, opts.grader) if opts.train else None,
                "unseen": get_task(opts.unseen, split="unseen", grader=opts.grader,
                                   limit=opts.unseen_limit) if opts.unseen else None}
    for key in ("train", "unseen", "grader"):
        if getattr(opts, key):
            raise CorralError(f"--{key} is for a FILE task; {opts.task} has its own splits "
                              "and grader")
    return {s: get_task(opts.task, split=s, data=opts.data, seed=opts.seed,
                        limit={"dev": opts.limit, "unseen": opts.unseen_limit}.get(s, 0))
            for s in ("train", "dev", "unseen")}


def pool_task(path: str, grader: str):
    """A FILE task's train rows as a task: chat rows ending with the assistant's answer
    (that answer is the demonstration's output), or items with an `answer` field."""
    from corral.core.records import Chat, Item
    from corral.data.readers import load_sft_records
    from corral.graders.load import load_grader
    from corral.tasks import Task

    records = load_sft_records(path)
    bad = next((r for r in records if not isinstance(r, Chat)
                or r.messages[-1].role != "assistant"), None)
    if bad is not None:
        raise CorralError(f"--train {path}: {getattr(bad, 'source', path)} is not a chat row "
                          "ending with the assistant's answer; give train rows as "
                          '{"messages": [..., {"role": "assistant", "content": ANSWER}]}')
    return Task(name=path, grader=load_grader(grader),
                items=[Item(messages=r.messages[:-1], fields={}, source=r.source)
                       for r in records],
                solutions=[r.messages[-1].content for r in records])


def run_name(opts: PromptSearchOptions) -> str:
    """The same options, the same run (so rerunning a killed search resumes it)."""
    if opts.name:
        return opts.name
    keyed = {k: v for k, v in asdict(opts).items() if k not in ("name", "out", "root",
                                                                "engine_batch")}
    stem = Path(opts.task).stem if opts.task.endswith(FILE_TASK) else opts.task
    return f"prompt-{stem}-{content_hash(keyed)[:8]}"


def prompt_search(opts: PromptSearchOptions, *, generator=None, log=None) -> PromptSearchResult:
    """Search, spread, unseen, save. `generator`: a Generator to use instead of loading
    `opts.model` (tests, or a caller holding a model)."""
    from corral.prompt import candidates as cands
    from corral.prompt.pool import bootstrap, check_pool, gold_demos

    log = log or (lambda _: None)
    grid = _grid(opts)
    splits = load_splits(opts)
    train, dev, unseen = splits["train"], splits["dev"], splits["unseen"]
    gold = gold_demos(train) if train is not None else []
    if train is not None:
        check_pool(gold, train.items, {"dev": dev.items,
                                       "unseen": unseen.items if unseen else []})
    needs_gold = [c for c in grid.choices if c != "bootstrap"] and max(grid.ks) > 0
    if needs_gold and not gold:
        raise CorralError("no train items with answers to show as demonstrations; give "
                          "--train FILE (rows ending with the assistant's answer), or "
                          "--choose bootstrap, or --k 0")
    for template in grid.templates:
        for part, items in (("dev", dev.items), ("unseen", unseen.items if unseen else [])):
            check_fields(PromptProgram(template=template), items, f"--instruction ({part})")
    started = time.perf_counter()
    scorer, run = _scorer(opts, dev, generator)
    boot, boot_calls = [], 0
    if "bootstrap" in grid.choices and max(grid.ks) > 0:
        if train is None:
            raise CorralError("--choose bootstrap needs train items to answer: give --train")
        boot, boot_calls = bootstrap(lambda items: scorer.score(_zero_shot(items)),
                                     train.items, opts.bootstrap, max(grid.ks))
        log(f"bootstrap: {len(boot)} of {boot_calls} train items answered zero-shot passed")
    skipped: list[str] = []
    candidates = cands.build(grid.ks, grid.choices, grid.layouts, grid.orders, grid.systems,
                             grid.templates, gold, boot, opts.seed, skipped)
    for note in skipped:
        log(f"skipped {note}")
    return _finish(opts, scorer, run, candidates, splits, started, boot_calls, log, skipped)


def _zero_shot(items) -> list[tuple]:
    from corral.tasks.prompt_file import program_hash

    program = PromptProgram()
    return [(program_hash(program), program, item) for item in items]


def _scorer(opts, dev, generator):
    from corral.infer.engine import SamplingParams
    from corral.infer.generators import generator_for
    from corral.prompt.search import ScoreJob, Scorer
    from corral.store.runs import RunStore

    run = RunStore(opts.root, run_name(opts))
    if generator is None:
        generator = generator_for(opts.model, root=opts.root, batch_size=opts.engine_batch,
                                  key="--model")
    run.write_config({"command": "prompt search", **asdict(opts),
                      "generator": generator.identity()})
    params = SamplingParams(temperature=0.0, max_new_tokens=opts.max_new_tokens,
                            seed=opts.seed)
    return Scorer(generator, dev.grader, params, ScoreJob(run.path / "scores.jsonl")), run


def _finish(opts, scorer, run, candidates, splits, started, boot_calls, log, skipped):
    from corral.prompt.search import dump, halving, ordering_spread
    from corral.tasks.prompt_file import save_program

    dev, unseen = splits["dev"], splits["unseen"]
    before = scorer.job.sent
    standings = halving(scorer, candidates, dev.items, opts.budget - boot_calls, opts.seed,
                        log)
    search_calls = scorer.job.sent - before
    winner = standings[0]
    final_items = [it for it in dev.items if it.source in
                   {r["item"] for r in winner.rows}]
    before = scorer.job.sent
    spread = ordering_spread(scorer, winner, final_items, opts.orderings, opts.seed)
    spread_calls = scorer.job.sent - before
    before = scorer.job.sent
    unseen_scores = _unseen(scorer, winner.candidate, unseen.items) if unseen else {}
    calls = {"bootstrap": boot_calls, "search": search_calls, "spread": spread_calls,
             "unseen": scorer.job.sent - before, "budget": opts.budget}
    report = {"task": dev.name, "model": opts.model, "dev_items": len(dev.items),
              "candidates": [s.summary() for s in standings], "skipped": skipped,
              "spread": spread,
              "unseen": unseen_scores, "calls": calls,
              "wall_s": round(time.perf_counter() - started, 1)}
    dump(run.path / "search.json", report)
    made_by = {"command": "corral prompt search", "task": dev.name, "model": opts.model,
               "dev": winner.summary(), "unseen": unseen_scores, "run": str(run.path)}
    program_path = run.path / "program.json"
    save_program(winner.candidate.program, program_path, made_by)
    if opts.out:
        save_program(winner.candidate.program, opts.out, made_by)
    return PromptSearchResult(run.path, Path(opts.out) if opts.out else program_path,
                              winner.summary(), report["candidates"], spread, unseen_scores,
                              calls, report["wall_s"], dev.name, len(dev.items), skipped)


def _unseen(scorer, winner, items) -> dict:
    """The winner and zero-shot on every unseen item, paired (the same items)."""
    from corral.eval.metrics import mean_stderr

    zero = _zero_shot(items)
    best = [(winner.hash, winner.program, item) for item in items]
    rows = scorer.score(zero + (best if winner.hash != zero[0][0] else []))
    base, won = rows[:len(items)], rows[len(items):] or rows[:len(items)]
    diffs = [w["score"] - b["score"] for w, b in zip(won, base)]
    pack = (lambda rs: dict(zip(("score", "stderr"), (round(v, 4) for v in mean_stderr(
        [r["score"] for r in rs])))))
    return {"items": len(items), "winner": pack(won), "zero_shot": pack(base),
            "paired": dict(zip(("diff", "stderr"), (round(v, 4) for v in mean_stderr(diffs))))}
