"""corral as a library: one typed options object and one function per command.

    from corral import api
    report = api.run_eval(api.EvalOptions(model=["smollm2-135m-instruct"], task="arithmetic",
                                          limit=20))
    report.table, report.samples_path
    run = api.train(api.TrainOptions("sft", overrides=("data.train=chat.jsonl",)))

The CLI (`cli/`) parses arguments into these options and calls these functions; the coming
service (`serve/`) calls them the same way. A function never prints: it returns a typed result
(what the CLI prints is made from it) and says notes through `warnings.warn(..., ConfigNote)`,
which the CLI shows as `corral: note: ...` lines; long jobs take an optional `log` callable for
progress. Bad options raise `CorralError` with one sentence naming the option and the fix,
before anything is loaded or written. Options' field names are the CLI flags' names
(`--max-new-tokens` -> `max_new_tokens`), with the same defaults.

Each command's options and function live in the lowest package whose rank allows them
(`<package>/commands.py`: a synthesis command in `synth/`, a judge command in `feedback/`);
the modules of this package re-export them, and wire the few commands that chain packages of
one rank (evaluation with strategies, ReST-EM's rounds, a strategy teacher, judge audits that
sample first), so a Python user imports everything from `corral.api`. Names load lazily:
`import corral.api` stays light until a command is used.

Commands (CLI -> options -> function):
- `corral <method>` -> TrainOptions -> train (TrainResult)
- `corral eval` -> EvalOptions -> run_eval (EvalReport)
- `corral grade validate` / `run` -> ValidateGraderOptions -> validate_grader;
  GradeOptions -> grade_sample
- `corral split` -> SplitOptions -> split_data; `lineage` -> LineageOptions -> lineage;
  `data inspect` -> InspectOptions -> inspect_data
- `corral chat` -> ChatOptions -> chat / open_chat; `export` -> ExportOptions -> export_model;
  `quickstart` -> QuickstartOptions -> run_quickstart
- `corral synth rejection` -> RejectionOptions -> rejection (ReST-EM when rounds > 0);
  `distill` -> DistillOptions -> distill; `self-instruct` -> SelfInstructOptions -> self_instruct
- `corral pairs` -> PairsOptions -> pairs; `corral curate` -> CurateRunOptions -> curate_data
- `corral prompt search` -> PromptSearchOptions -> prompt_search (PromptSearchResult)
- `corral judge audit` -> AuditOptions -> judge_audit; `feedback label` -> LabelOptions ->
  label; `feedback constitutional` -> ConstitutionalOptions -> constitutional
- `corral advise` -> AdviseOptions -> advise (Advice)
"""
from __future__ import annotations

import importlib

_WHERE = {
    "corral.advisor.commands": ["AdviseOptions", "Advice", "advise"],
    "corral.prompt.commands": ["PromptSearchOptions", "PromptSearchResult", "prompt_search"],
    "corral.methods.commands": ["TrainOptions", "TrainResult", "train"],
    "corral.api.eval": ["EvalOptions", "EvalReport", "run_eval", "evaluate_models",
                        "compare_strategies", "ValidateGraderOptions", "ValidateGraderResult",
                        "validate_grader", "GradeOptions", "GradeResult", "grade_sample"],
    "corral.api.data": ["SplitOptions", "SplitResult", "split_data", "InspectOptions",
                        "InspectResult", "inspect_data", "LineageOptions", "LineageResult",
                        "lineage"],
    "corral.api.models": ["ChatOptions", "ChatReply", "ChatSession", "chat", "open_chat",
                          "ExportOptions", "ExportResult", "export_model", "QuickstartOptions",
                          "QuickstartResult", "run_quickstart"],
    "corral.api.synth": ["RejectionOptions", "DistillOptions", "SelfInstructOptions",
                         "SynthResult", "PairsOptions", "PairsResult", "RestEMResult",
                         "rejection", "distill", "self_instruct", "pairs", "rest_em",
                         "strategy_teacher"],
    "corral.api.feedback": ["AuditOptions", "AuditResult", "LabelOptions", "LabelResult",
                            "ConstitutionalOptions", "ConstitutionalResult", "judge_audit",
                            "label", "constitutional", "make_judge"],
}
_RENAMED = {"curate_data": ("corral.api.curate", "run"),
            "CurateRunOptions": ("corral.api.curate", "CurateRunOptions"),
            "CurateResult": ("corral.api.curate", "CurateResult")}
_INDEX = {name: (module, name) for module, names in _WHERE.items() for name in names}
_INDEX.update(_RENAMED)
__all__ = sorted(_INDEX)


def __getattr__(name: str):
    if name not in _INDEX:
        raise AttributeError(f"module 'corral.api' has no attribute {name!r}")
    module, attr = _INDEX[name]
    value = getattr(importlib.import_module(module), attr)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))
