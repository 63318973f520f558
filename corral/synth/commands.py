"""`corral synth rejection|distill|self-instruct` as library calls: one typed options object
and one function per command, returning a typed result. The CLI parses into these options
(field names are its flags' dest names) and prints the result.

    from corral.synth.commands import DistillOptions, distill
    result = distill(DistillOptions(model="smollm2-135m-instruct", task="arithmetic",
                                    few_shot=4, out="data/distill.jsonl"))

ReST-EM (`rejection --rounds K`) trains between rounds, so it lives a layer up:
`corral.methods.rest_em.run(opts)`; `corral.api.synth.rejection` picks it when rounds > 0,
and `corral.api.synth.distill` wires a `--strategy` teacher (inference strategies are a
package of this rank).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from corral.core.errors import CorralError
from corral.data.splits import refuse_sealed_items
from corral.infer.engine import SamplingParams

FILE_TASK = (".jsonl", ".json", ".parquet")


@dataclass(frozen=True)
class _SynthOptions:
    """What rejection sampling and distillation share (their flags' dest names)."""
    task: str = ""
    out: str = ""
    model: str = "smollm2-135m-instruct"
    split: str = "train"
    data: str = ""
    task_grader: str = ""
    grader: str = ""
    limit: int = 0
    few_shot: int = 0
    system: str = ""
    program: str = ""  # a saved prompt program the generator sees instead of the above
    keep: int = 1
    round: int = 1
    samples: str = ""
    top_p: float = 1.0
    max_new_tokens: int = 256
    seed: int = 0
    batch_size: int = 16
    engine_batch: int = 64
    root: str = "runs"
    retry_failed: bool = False


@dataclass(frozen=True)
class RejectionOptions(_SynthOptions):
    """`corral synth rejection`: samples of the model that the grader passes. rounds > 0:
    ReST-EM (`corral.methods.rest_em.run`), with the dev and training settings below."""
    n: int = 8
    temperature: float = 0.8
    star: bool = False
    rounds: int = 0
    from_last: bool = False
    min_gain: float = 0.0
    dev_limit: int = 100
    dev_data: str = ""
    run_prefix: str = ""
    train: tuple = ()


@dataclass(frozen=True)
class DistillOptions(_SynthOptions):
    """`corral synth distill`: a teacher's answers as SFT records."""
    n: int = 1
    temperature: float = 0.0
    rule: str = "first"
    min_votes: float = 0.0
    require_pass: bool = False
    orca: bool = False
    strategy: str = ""


@dataclass(frozen=True)
class SelfInstructOptions:
    """`corral synth self-instruct`: new instructions grown from seed tasks."""
    seeds: str = ""
    out: str = ""
    model: str = "smollm2-135m-instruct"
    num: int = 50
    in_context: int = 8
    max_rouge: float = 0.7
    min_words: int = 3
    max_words: int = 150
    block: tuple | None = None
    evolve: bool = False
    temperature: float = 1.0
    top_p: float = 1.0
    max_new_tokens: int = 256
    seed: int = 0
    engine_batch: int = 64
    root: str = "runs"


@dataclass
class SynthResult:
    """What a synthesis command wrote: the SFT records, the graded samples (the resumable
    job), the records' manifest, and the counts (prompts, samples, passed, kept, rates)."""
    out: str
    samples: str
    manifest: str
    counts: dict = field(default_factory=dict)


def _quiet(log):
    return log or (lambda _: None)


def load_task(opts: _SynthOptions, kind: str):
    """The task a synthesis command samples: a built-in task or task file (with its grader),
    or, for distillation, a prompt file without one; refused when its prompts are sealed."""
    from corral.data.readers import load_items
    from corral.tasks import Task, get_task

    refuse_sealed_items((), opts.split, "training data", "--split")
    task_grader = task_grader_spec(opts.task, opts.task_grader, opts.grader)
    if opts.task.endswith(FILE_TASK) and not task_grader:
        if kind == "rejection":
            raise CorralError(f"rejection sampling on {opts.task} needs a grader to tell "
                              "passing samples from failing ones: pass --grader GRADER (or "
                              "--task-grader GRADER)")
        items = load_items(opts.task)[:opts.limit or None]  # prompts only: distillation
        if not items:
            raise CorralError(f"{opts.task}: no prompts")
        task = Task(name=opts.task, items=items, grader=None)
    else:
        task = get_task(opts.task, split=opts.split, data=opts.data, grader=task_grader,
                        limit=opts.limit, few_shot=opts.few_shot, grader_flag="--grader")
    refuse_sealed_items(task.items, opts.split, "training data", "--split")
    if opts.program:  # what the generator sees; the records keep the plain prompt
        from corral.eval.commands import check_program_flags

        check_program_flags(opts)
        task.use_program(opts.program)
    return task


def task_grader_spec(task: str, task_grader: str, grader: str) -> str:
    """The grader a task is built with. --task-grader is a FILE task's own grader (what
    grades it wherever it is used: a ReST-EM dev split too); a built-in task has its own and
    refuses one. A FILE task given only --grader takes that as its grader."""
    if not task.endswith(FILE_TASK):
        if task_grader:
            raise CorralError(f"--task-grader is the grader of a FILE.jsonl task; {task} "
                              f"grades with its own; to grade the samples with {task_grader} "
                              f"instead, pass --grader {task_grader}")
        return ""
    return task_grader or grader


def sample_grader(opts, task):
    """What grades the samples: --grader, else the task's own grader (loaded once)."""
    from corral.graders.load import load_grader

    if opts.grader and opts.grader != task_grader_spec(opts.task, opts.task_grader, opts.grader):
        return load_grader(opts.grader, root=opts.root)
    return task.grader


def _check(opts: _SynthOptions) -> None:
    if not opts.task:
        raise CorralError("--task is missing: give gsm8k | arithmetic | ifeval-like | FILE.jsonl")
    if not opts.out:
        raise CorralError("--out is missing: give the .jsonl path for the SFT records")


def recipe_of(opts: _SynthOptions, kind: str, task):
    """The Recipe (selection rule, teacher) the options describe."""
    from corral.synth.recipes import ORCA_SYSTEM, Recipe
    from corral.synth.sampling import Teacher

    distill = kind == "distill"
    system = opts.system or (ORCA_SYSTEM if distill and opts.orca else "")
    return Recipe(kind=kind, rule=opts.rule if distill else "pass", keep=opts.keep,
                  min_votes=opts.min_votes if distill else 0.0,
                  require_pass=opts.require_pass if distill else False,
                  star=False if distill else opts.star, round=opts.round,
                  teacher=Teacher.of(task.program) if task.program is not None else
                  Teacher(system_prompt=system, few_shot=tuple(task.few_shot)))


def sampling_params(opts) -> SamplingParams:
    return SamplingParams(n=getattr(opts, "n", 1), temperature=opts.temperature,
                          top_p=opts.top_p, max_new_tokens=opts.max_new_tokens, seed=opts.seed)


def _synthesize(opts: _SynthOptions, kind: str, log, teacher: Callable | None = None,
                ) -> SynthResult:
    from corral.infer.generators import generator_for
    from corral.store.jobs import manifest_path
    from corral.synth.recipes import synthesize

    task = load_task(opts, kind)
    grader = sample_grader(opts, task)
    recipe = recipe_of(opts, kind, task)
    generator = generator_for(opts.model, root=opts.root, batch_size=opts.engine_batch,
                              key="--model")
    if teacher is not None:
        generator = teacher(generator)
    samples = opts.samples or f"{Path(opts.out).with_suffix('')}.samples.jsonl"
    counts = synthesize(generator, task, opts.out, sampling_params(opts), recipe, grader=grader,
                        batch_size=opts.batch_size, samples=opts.samples, log=_quiet(log),
                        retry_failed=opts.retry_failed)
    return SynthResult(opts.out, samples, str(manifest_path(opts.out)), counts)


def rejection(opts: RejectionOptions, log: Callable[[str], None] | None = None) -> SynthResult:
    """`corral synth rejection` (without --rounds): the model's own samples that pass."""
    _check(opts)
    if opts.rounds:
        raise CorralError(f"--rounds {opts.rounds} trains between rounds: call "
                          "corral.methods.rest_em.run(opts) (or corral.api.synth.rejection)")
    return _synthesize(opts, "rejection", log)


def distill(opts: DistillOptions, log: Callable[[str], None] | None = None,
            teacher: Callable | None = None) -> SynthResult:
    """`corral synth distill`. teacher: wraps the loaded generator (an inference strategy;
    `corral.api.synth.distill` passes it for --strategy)."""
    _check(opts)
    if opts.strategy and opts.n != 1:
        raise CorralError(f"--strategy {opts.strategy} gives one answer per prompt; drop -n "
                          "(or use -n 1) and let the strategy spend the samples")
    if opts.strategy and teacher is None:
        raise CorralError(f"--strategy {opts.strategy}: call corral.api.synth.distill, which "
                          "wires the strategy as the teacher")
    return _synthesize(opts, "distill", log, teacher)


def self_instruct(opts: SelfInstructOptions,
                  log: Callable[[str], None] | None = None) -> SynthResult:
    """`corral synth self-instruct`: grow, filter and answer instructions; counts as the
    self-instruct step reports them (candidates, kept, removed by reason, rows)."""
    from corral.infer.generators import generator_for
    from corral.store.jobs import manifest_path
    from corral.synth import self_instruct as si

    if not opts.seeds or not opts.out:
        raise CorralError("--seeds and --out are needed: the seed tasks (JSONL rows with an "
                          "instruction) and the output .jsonl")
    _refuse_sealed_seeds(opts.seeds)
    filters = si.Filters(max_rouge=opts.max_rouge, min_words=opts.min_words,
                         max_words=opts.max_words, blocklist=tuple(opts.block or ()))
    params = SamplingParams(temperature=opts.temperature, top_p=opts.top_p,
                            max_new_tokens=opts.max_new_tokens, seed=opts.seed)
    generator = generator_for(opts.model, root=opts.root, batch_size=opts.engine_batch,
                              key="--model")
    counts = si.self_instruct(generator, opts.seeds, opts.out, opts.num, params, filters,
                              in_context=opts.in_context, evolve=opts.evolve, seed=opts.seed,
                              log=_quiet(log))
    return SynthResult(opts.out, f"{opts.out}.answers.jsonl", str(manifest_path(opts.out)),
                       counts)


def _refuse_sealed_seeds(path: str) -> None:
    """Seed tasks read from a sealed unseen split would leak it through the instructions
    grown from them (and answered): the one guard, on the seed rows where they came from."""
    from types import SimpleNamespace

    from corral.data.files import read_rows

    if Path(path).is_file():
        refuse_sealed_items([SimpleNamespace(source=source) for source, _ in read_rows(path)],
                            what="instructions grown from them", flag="--seeds")


__all__ = ["DistillOptions", "RejectionOptions", "SelfInstructOptions", "SynthResult",
           "distill", "load_task", "recipe_of", "rejection", "sample_grader",
           "sampling_params", "self_instruct", "task_grader_spec"]
