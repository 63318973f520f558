"""`corral eval` as a library call: one or more models (local, runs, or OpenAI-compatible
endpoints) graded on a task through the one evaluation path, saved to a run folder.

    report = evaluate_models(EvalOptions(model=["openai:gpt-4o-mini"], task="arithmetic",
                                         limit=20, n=4, k="1,4"))
    report.table["openai:gpt-4o-mini"]["pass@4"], report.run   # runs/<name>/samples.jsonl

With `strategy` set the comparison of inference-time strategies runs instead
(`corral.strategies.commands.compare_strategies`; `corral.api.run_eval` picks either).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from corral.core.errors import CorralError


@dataclass(frozen=True)
class EvalOptions:
    """The options of `corral eval` (field names are its flags: --max-new-tokens is
    max_new_tokens). `model`: one spec or a list to compare; `k`: "1,4,8"."""
    model: list = field(default_factory=list)
    task: str = ""
    split: str = "dev"
    data: str = ""
    grader: str = ""
    n: int = 1
    k: str = ""
    limit: int = 0
    few_shot: int = 0
    system: str = ""
    program: str = ""  # a saved prompt program (corral prompt search) instead of the above
    template: str = ""  # a chat template (.jinja file or inline Jinja) instead of the model's
    temperature: float | None = None
    top_p: float = 1.0
    max_new_tokens: int = 256
    seed: int = 0
    root: str = "runs"
    name: str = ""
    max_grader_errors: float = 1.0
    strategy: str = ""
    plot: str = ""

    def __post_init__(self):
        if isinstance(self.model, str):
            object.__setattr__(self, "model", [self.model])
        if not self.model:
            raise CorralError("eval: give --model (a model, a run, a directory or an endpoint "
                              "such as openai:MODEL); repeat it to compare models")
        if not self.task:
            raise CorralError("eval: give --task (gsm8k, arithmetic, ifeval-like or FILE.jsonl)")


@dataclass
class EvalReport:
    """What an evaluation produced: the run folder (samples.jsonl, metrics.jsonl,
    config.yaml), the task as evaluated, and the metrics: `table` (model -> metrics) for
    models, `rows` (one summary row per strategy) for a strategy comparison."""
    run: Path
    task: str
    split: str
    n_items: int
    n: int = 1
    table: dict = field(default_factory=dict)
    rows: list = field(default_factory=list)
    model: str = ""
    plot: str = ""

    @property
    def samples_path(self) -> Path:
        return self.run / "samples.jsonl"


def check_share(value: float) -> None:
    if not 0 < value <= 1:
        raise CorralError(f"--max-grader-errors {value}: give a share in "
                          "(0, 1], e.g. 0.5 to stop once half the samples fail to grade")


def parse_ks(text: str) -> tuple:
    try:
        return tuple(sorted({int(k) for k in text.split(",") if k.strip()}))
    except ValueError:
        raise CorralError(f"-k takes whole numbers separated by commas, got '{text}'") from None


def load_task(opts: EvalOptions):
    from corral.tasks import get_task

    check_program_flags(opts)
    task = get_task(opts.task, split=opts.split, data=opts.data, grader=opts.grader,
                    limit=opts.limit, few_shot=opts.few_shot, system_prompt=opts.system)
    return task.use_program(opts.program) if opts.program else task


def check_program_flags(opts) -> None:
    """--program holds the system prompt and the demonstrations: either it or the flags."""
    for flag, value in (("--few-shot", getattr(opts, "few_shot", 0)),
                        ("--system", getattr(opts, "system", ""))):
        if opts.program and value:
            raise CorralError(f"{flag} with --program {opts.program}: the program holds the "
                              f"system prompt and demonstrations; drop {flag} or --program")


def evaluate_models(opts: EvalOptions) -> EvalReport:
    """Grade each model of `opts.model` on the task, one at a time, through its Generator
    (`generator_for`: endpoints too). The run folder opens only once the first model has
    loaded and been graded, so a failed start writes nothing."""
    from corral.eval.evaluate import compare_models
    from corral.infer.engine import SamplingParams
    from corral.store.runs import RunStore, new_run_name, run_model_path

    check_share(opts.max_grader_errors)
    task = load_task(opts)
    temperature = opts.temperature if opts.temperature is not None else \
        (0.0 if opts.n == 1 else 0.8)
    params = SamplingParams(max_new_tokens=opts.max_new_tokens, temperature=temperature,
                            top_p=opts.top_p, n=opts.n, seed=opts.seed)
    ks = parse_ks(opts.k) if opts.k else (1,)
    if any(k > opts.n for k in ks):
        raise CorralError(f"-k {opts.k} asks for more samples than -n {opts.n}; raise -n")
    name = opts.name or new_run_name("eval")

    def open_store():  # only once the first model has loaded and been graded
        store = RunStore(opts.root, name)
        store.write_config({"task": opts.task, "split": opts.split, "models": list(opts.model),
                            "n": opts.n, "k": list(ks), "temperature": temperature,
                            "limit": opts.limit, "data": opts.data,
                            **_program_config(opts.program)})
        return store

    models = [run_model_path(m, opts.root) for m in opts.model]
    table = compare_models(models, task, params, ks, store=open_store,
                           load=lambda spec: load_generator(spec, opts.root, opts.template),
                           max_grader_errors=opts.max_grader_errors)
    return EvalReport(Path(opts.root) / name, task.name, opts.split, len(task.items), opts.n,
                      table=table)


def _program_config(path: str) -> dict:
    from corral.tasks.prompt_file import load_program, program_hash

    return {"program": path, "program_hash": program_hash(load_program(path))} if path else {}


def load_generator(spec: str, root: str = "runs", template: str = "", key: str = "--model"):
    """`generator_for(spec)`, rendering prompts with `template` (a .jinja file or inline Jinja,
    as training's model.template) instead of the model's own chat template, so a base model
    without one can be tried. An endpoint renders with its own template: one given is refused."""
    from corral.infer.generators import generator_for

    if not template:
        return generator_for(spec, root=root, key=key)
    import hashlib

    from corral.core.sections import ModelConfig
    from corral.infer.engine import engine_for
    from corral.infer.generators import LocalGenerator, local_identity
    from corral.infer.remote import is_endpoint_spec
    from corral.model.policy import load_policy
    from corral.store.runs import run_model_path

    if is_endpoint_spec(spec):
        raise CorralError(f"--template applies to local models; the endpoint {spec} renders "
                          "prompts with its own chat template (drop --template)")
    path = run_model_path(spec, root)
    policy = load_policy(ModelConfig(name=path, template=template), None, for_training=False,
                         key=key)
    digest = hashlib.sha256(policy.tokenizer.chat_template.encode()).hexdigest()[:16]
    identity = {**local_identity(spec, path, root), "template": digest}
    return LocalGenerator(engine_for(policy, batch_size=16), spec, identity)
