"""`corral data inspect` and `corral export` as library calls.

    print(inspect_data(InspectOptions("data.jsonl", model="smollm2-135m-instruct")).report)
    export_model(ExportOptions("my-run", merge=True)).path    # runs/my-run/merged
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from corral.core.errors import CorralError


@dataclass(frozen=True)
class InspectOptions:
    file: str
    model: str = "smollm2-135m-instruct"  # a model name, a run or a directory: its tokenizer
    mask: str = "assistant"  # assistant | all | last
    max_length: int = 1024
    template: str = ""  # chat template (.jinja file or inline)
    show: int = 1  # examples to print


@dataclass
class InspectResult:
    report: str  # examples with trained tokens marked, length statistics, template problems


def inspect_data(opts: InspectOptions) -> InspectResult:
    from corral.core.sections import ModelConfig
    from corral.data.readers import load_sft_records
    from corral.data.render import inspect_report
    from corral.model.policy import load_policy
    from corral.store.runs import run_model_path

    records = load_sft_records(opts.file)
    policy = load_policy(ModelConfig(name=run_model_path(opts.model), template=opts.template),
                         None, for_training=False, key="--model")
    return InspectResult(inspect_report(records, policy.tokenizer, opts.mask, opts.max_length,
                                        template=opts.template or None, n_show=opts.show))


@dataclass(frozen=True)
class ExportOptions:
    run: str  # run name or directory, or a model directory
    merge: bool = False  # merge the LoRA adapter into the base
    out: str = ""  # default: merged/ beside the model
    root: str = "runs"


@dataclass
class ExportResult:
    path: str


def export_model(opts: ExportOptions) -> ExportResult:
    from corral.core.sections import ModelConfig
    from corral.model.policy import load_policy
    from corral.model.resolve import unfinished_run_message
    from corral.store.runs import resolve_run

    run = resolve_run(opts.run, opts.root)
    if run is not None and not (run / "final").is_dir():
        raise CorralError(unfinished_run_message(run, "export"))
    if run is None and not Path(opts.run).is_dir():
        raise CorralError(f"no run '{opts.run}' under {opts.root}/ (and no directory of that "
                          "name); give a run name, a run directory or a model directory")
    source = str(run / "final") if run is not None else opts.run  # a run, or a model dir
    out = opts.out or str(Path(source).parent / "merged")
    policy = load_policy(ModelConfig(name=source), None, for_training=False, key="export")
    if opts.merge:
        policy.export_merged(out)
    else:
        policy.save(out)
    return ExportResult(out)
