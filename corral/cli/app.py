"""The `corral` command: parses arguments into each command's typed options, calls its one
library function (corral.api) and prints the result, nothing more. `corral --help` lists the
commands grouped in the order a user climbs them (GROUPS).

    corral sft config.yaml train.lr=2e-5 lora.r=16
    corral data inspect data.jsonl --model smollm2-135m-instruct
    corral chat --model runs/my-run --prompt "Hello"
    corral export my-run --merge
    corral quickstart
"""
from __future__ import annotations

import argparse
import sys
import textwrap

from corral.cli.options import options
from corral.core.config import ConfigNote
from corral.core.errors import CorralError

DESCRIPTION = (
    "corral post-trains a language model on your own task. It splits your data into train, "
    "dev (checked while you work) and a sealed unseen part (never trained on, graded at the "
    "end), grades a model's answers with a grader you can check first, and measures each "
    "rung of the ladder on those same splits: a baseline evaluation, supervised "
    "fine-tuning (SFT, full or LoRA), reinforcement fine-tuning with the grader (RFT, GRPO, "
    "PPO), preference tuning (DPO, KTO), data made and cleaned by models, and AI feedback. "
    "A model is a hub id, a local directory, a .gguf file, a run name or the embedded "
    "smollm2-135m-instruct; every run is a folder under runs/. New here: `corral "
    "quickstart`, then the walk-through in README.md.")

# The commands in the order a user climbs them: `corral --help` lists them so, and the
# subparsers are added in this order (so an invalid choice lists them so too).
GROUPS = (
    ("start here", ("quickstart", "chat", "data")),
    ("evaluate", ("split", "grade", "eval")),
    ("prompt and decide", ("prompt", "advise")),
    ("make and clean data", ("synth", "curate", "pairs")),
    ("train", ("sft", "rft", "grpo", "dpo", "simpo", "orpo", "kto", "rm", "ppo")),
    ("feedback", ("judge", "feedback")),
    ("serve and export", ("serve", "dashboard", "plot", "export", "lineage")),
)


PROGRAM_HELP = ("a prompt program saved by `corral prompt search` (system prompt, template, "
                "demonstrations) instead of --system and --few-shot")


def cmd_inspect(args) -> None:
    from corral.model.commands import InspectOptions, inspect_data

    print(inspect_data(options(InspectOptions, args)).report)


def cmd_chat(args) -> None:
    from corral.cli.chat import run_chat
    from corral.strategies.chat import ChatOptions

    run_chat(options(ChatOptions, args))


def cmd_export(args) -> None:
    from corral.model.commands import ExportOptions, export_model

    print(f"exported to {export_model(options(ExportOptions, args)).path}")


def cmd_quickstart(args) -> None:
    from corral.methods.quickstart import QuickstartOptions, run_quickstart

    run_quickstart(options(QuickstartOptions, args), log=print)


def cmd_eval(args) -> None:
    from corral.api.eval import EvalOptions, run_eval
    from corral.eval.report import format_strategy_table, format_table

    report = run_eval(options(EvalOptions, args))
    if report.rows:  # inference-time strategies on one model
        print(f"task {report.task} ({report.split}), {report.n_items} items, "
              f"model {report.model}")
        print(format_strategy_table(report.rows))
    else:
        print(f"task {report.task} ({report.split}), {report.n_items} items, n={report.n}")
        print(format_table(report.table))
    print(f"samples: {report.samples_path}")
    if report.plot:
        print(f"plot: {report.plot}")


def cmd_lineage(args) -> None:
    from corral.store.commands import LineageOptions, lineage

    result = lineage(options(LineageOptions, args))
    print("\n".join(result.lines))
    if result.flags:
        print("flags:")
        print("\n".join(f"  ! {f}" for f in result.flags))


def cmd_split(args) -> None:
    from corral.data.commands import SplitOptions, split_data

    result = split_data(options(SplitOptions, args))
    print(", ".join(f"{k}: {result.counts[k]}" for k in ("train", "dev", "unseen")) +
          " (unseen rows sealed: training refuses them)")
    if result.duplicates:
        print(f"note: {result.duplicates} rows repeat an earlier row (e.g. "
              f"{result.first_duplicate}); each copy went to its original's split, so none "
              "leaks across splits, but they weigh double in training: "
              "`corral curate` removes them")


def cmd_grade(args) -> None:
    """validate: what is wrong with a grader spec (any form load_grader takes); run: grade one
    sample, answering like OpenAI's graders/run (reward, sub_rewards, metadata)."""
    import json

    from corral.api.eval import GradeOptions, ValidateGraderOptions, grade_sample, validate_grader

    if args.grade_command == "validate":
        result = validate_grader(options(ValidateGraderOptions, args))
        print(json.dumps(result.as_dict(), indent=2))
        if not result.valid:
            raise SystemExit(1)
        return
    print(json.dumps(grade_sample(options(GradeOptions, args)).reply, indent=2, default=str))



def _add_quickstart(sub) -> None:
    p = sub.add_parser("quickstart", help="LoRA SFT of the embedded model on built-in data, "
                       "graded before and after")
    p.add_argument("--root", default="runs")
    p.add_argument("--steps", type=int, default=0, help="optimizer steps (0 = one epoch)")
    p.add_argument("--n-eval", type=int, default=50, help="held-out problems to grade")
    p.set_defaults(func=cmd_quickstart)


def _add_data(sub) -> None:
    data = sub.add_parser("data", help="look at data before training")
    data_sub = data.add_subparsers(dest="data_command", required=True, metavar="COMMAND")
    p = data_sub.add_parser("inspect", help="render examples, mark trained tokens, length stats")
    p.add_argument("file")
    p.add_argument("--model", default="smollm2-135m-instruct")
    p.add_argument("--mask", default="assistant", choices=["assistant", "all", "last"])
    p.add_argument("--max-length", type=int, default=1024)
    p.add_argument("--template", default="", help=TEMPLATE_HELP)
    p.add_argument("--show", type=int, default=1, help="examples to print")
    p.set_defaults(func=cmd_inspect)


TEMPLATE_HELP = ("chat template instead of the model's own, as training's model.template: a "
                 ".jinja file or inline Jinja (for a base model that has none)")


def _add_chat(sub) -> None:
    p = sub.add_parser("chat", help="talk to a model or a run's final model")
    p.add_argument("--model", default="smollm2-135m-instruct")
    p.add_argument("--prompt", help="one prompt; without it, an interactive session")
    p.add_argument("--system", default="")
    p.add_argument("--program", default="", help=PROGRAM_HELP)
    p.add_argument("--max-new-tokens", type=int, default=256)
    p.add_argument("--temperature", type=float, default=0.0)
    p.add_argument("--template", default="", help=TEMPLATE_HELP)
    p.add_argument("--strategy", default="", help="answer through an inference strategy "
                   "(refine:1, majority:5, debate:3x2, best-of-n:4:judge; docs/strategies.md)")
    p.add_argument("--root", default="runs", help="where runs live")
    p.set_defaults(func=cmd_chat)


def _add_export(sub) -> None:
    p = sub.add_parser("export", help="write a run's model as a standalone HF model")
    p.add_argument("run", help="run name or directory")
    p.add_argument("--merge", action="store_true", help="merge the LoRA adapter into the base")
    p.add_argument("--out", default="")
    p.add_argument("--root", default="runs")
    p.set_defaults(func=cmd_export)


def _add_eval(sub) -> None:
    p = sub.add_parser("eval", help="grade one or more models on a task (pass@k, maj@k)")
    p.add_argument("--model", action="append", required=True, help="repeat to compare models")
    p.add_argument("--task", required=True, help="gsm8k | arithmetic | ifeval-like | FILE.jsonl")
    p.add_argument("--split", default="dev")
    p.add_argument("--data", default="", help="local data file for the task (e.g. GSM8K)")
    p.add_argument("--grader", default="", help="grader JSON (file or inline) for a file task")
    p.add_argument("-n", type=int, default=1, help="samples per item")
    p.add_argument("-k", default="", help="k values for pass@k / maj@k, e.g. 1,4,8")
    p.add_argument("--limit", type=int, default=0, help="first N items only")
    p.add_argument("--few-shot", type=int, default=0)
    p.add_argument("--system", default="")
    p.add_argument("--program", default="", help=PROGRAM_HELP)
    p.add_argument("--template", default="", help=TEMPLATE_HELP + "; local models only")
    p.add_argument("--temperature", type=float, default=None)
    p.add_argument("--top-p", type=float, default=1.0)
    p.add_argument("--max-new-tokens", type=int, default=256)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--root", default="runs")
    p.add_argument("--name", default="")
    p.add_argument("--max-grader-errors", type=float, default=1.0,
                   help="stop when grading fails on this share of samples (default 1: all)")
    p.add_argument("--strategy", default="", metavar="SPEC[,SPEC...]",
                   help="compare inference-time strategies (greedy, best-of-n:N, majority:N, "
                   "refine:R, reflexion:R, debate:MxR, beam:BxD): score against compute")
    p.add_argument("--plot", default="", metavar="FILE.svg",
                   help="with --strategy: draw score against generated tokens per item")
    p.set_defaults(func=cmd_eval)


def _add_lineage(sub) -> None:
    p = sub.add_parser("lineage", help="where a run's behaviour came from: base model, "
                       "teachers, data, students")
    p.add_argument("run", help="run name or directory")
    p.add_argument("--root", default="runs")
    p.set_defaults(func=cmd_lineage)


def _add_split(sub) -> None:
    p = sub.add_parser("split", help="assign rows to train/dev/unseen by content hash")
    p.add_argument("data")
    p.add_argument("--dev", type=float, default=0.1)
    p.add_argument("--unseen", type=float, default=0.1)
    p.add_argument("--out", default="")
    p.set_defaults(func=cmd_split)


def _add_grade(sub) -> None:
    grade = sub.add_parser("grade", help="validate or dry-run a grader (rule, OpenAI JSON, RM)")
    grade_sub = grade.add_subparsers(dest="grade_command", required=True, metavar="COMMAND")
    p = grade_sub.add_parser("validate", help="what is wrong with a grader spec, before use")
    p.add_argument("grader", help="grader spec: rule, RULE:OPTION, GRADER.json or inline JSON")
    p.set_defaults(func=cmd_grade)
    p = grade_sub.add_parser("run", help="grade one sample, answering like OpenAI's graders/run")
    p.add_argument("grader", help="grader spec: rule, RULE:OPTION, grader JSON (file or "
                   "inline), or a reward_model spec")
    p.add_argument("--root", default="runs", help="where reward-model runs live")
    p.add_argument("--item", default="", help="the data row as JSON")
    p.add_argument("--sample", default="", help="the model output text")
    p.set_defaults(func=cmd_grade)


def _registrars() -> dict:
    """Command name -> the function adding its parser (feedback.register adds `judge` too)."""
    from corral.cli import advise, curate, dashboard, feedback, pairs, prompt, serve, synthesize

    return {"quickstart": _add_quickstart, "chat": _add_chat, "data": _add_data,
            "split": _add_split, "grade": _add_grade, "eval": _add_eval,
            "synth": synthesize.register, "curate": curate.register, "pairs": pairs.register,
            "judge": feedback.register, "feedback": feedback.register,
            "export": _add_export, "lineage": _add_lineage, "serve": serve.register,
            "dashboard": dashboard.register, "plot": dashboard.register,
            "prompt": prompt.register, "advise": advise.register}


def _children(parser) -> dict:
    """A parser's subcommands (name -> parser), {} for a leaf."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _helps(parser) -> dict:
    """A parser's subcommands' one-line helps (name -> help)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return {a.dest: a.help or "" for a in action._choices_actions}
    return {}


def _groups(parser) -> list:
    """GROUPS with the commands the parser has; a method missing from GROUPS joins `train`."""
    from corral.methods import registry

    listed = {name for _, names in GROUPS for name in names}
    extra = tuple(m for m in registry().names() if m not in listed)
    present = _children(parser)
    return [(title, tuple(n for n in names + (extra if title == "train" else ()) if n in present))
            for title, names in GROUPS]


def _epilog(parser) -> str:
    """The commands by group, in climbing order; a command with subcommands shows each."""
    lines = ["commands, in the order you climb them (`corral COMMAND --help` for each):"]
    helps = _helps(parser)
    for title, names in _groups(parser):
        lines.append(f"\n{title}:")
        for name in names:
            nested = _helps(_children(parser)[name])
            rows = [(f"{name} {sub}", text) for sub, text in nested.items()] or \
                [(name, helps.get(name, ""))]
            for label, text in rows:
                lines += textwrap.wrap(text, 96, initial_indent=f"  {label:<24}",
                                       subsequent_indent=" " * 26) or [f"  {label}"]
    return "\n".join(lines)


def add_unsandboxed_flag(parser, top: bool = True) -> None:
    """--allow-unsandboxed-graders on the parser and on every subcommand, so it may come before
    or after the command's name (a subcommand sets it only when given)."""
    parser.add_argument("--allow-unsandboxed-graders", action="store_true",
                        default=False if top else argparse.SUPPRESS,
                        help="run python graders even where the sandbox (bubblewrap) is not "
                        "available; they can then read your files and processes")
    for child in _children(parser).values():
        add_unsandboxed_flag(child, top=False)


def build_parser() -> argparse.ArgumentParser:
    from corral.cli import train
    from corral.methods import registry

    parser = argparse.ArgumentParser(
        prog="corral", formatter_class=argparse.RawDescriptionHelpFormatter,
        description=textwrap.fill(DESCRIPTION, 96))
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND",
                                help=argparse.SUPPRESS)
    # set after add_subparsers, which names the subcommands' prog from the usage ("corral")
    parser.usage = "corral [-h] [--allow-unsandboxed-graders] COMMAND ..."
    registrars, methods = _registrars(), registry().names()
    for _, names in GROUPS:
        for name in names:
            if name in sub.choices:
                continue
            if name in methods:
                train.register(sub, [name])
            else:
                registrars[name](sub)
    train.register(sub, [m for m in methods if m not in sub.choices])
    parser.epilog = _epilog(parser)
    add_unsandboxed_flag(parser)
    return parser


def quiet_libraries() -> None:
    """Keep library progress bars and deprecation chatter out of corral's output."""
    import os
    import warnings

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    warnings.filterwarnings("ignore", category=FutureWarning)
    show = warnings.showwarning

    def one_line(message, category, *args, **kwargs):  # corral's notes: one line, no source
        if issubclass(category, ConfigNote):
            print(f"corral: note: {message}", file=sys.stderr)
        else:
            show(message, category, *args, **kwargs)
    warnings.showwarning = one_line
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        hf_logging.set_verbosity_error()
    except ImportError:
        pass


def main(argv=None) -> int:
    """Run one command. A user's mistake is one `corral: error:` line (exit 2); Ctrl-C is exit
    130; anything else is a bug in corral: its traceback, and a line asking for a report."""
    try:
        args = build_parser().parse_args(argv)
        if args.allow_unsandboxed_graders:
            from corral.graders.sandbox import allow_unsandboxed

            allow_unsandboxed(True)
        quiet_libraries()
        args.func(args)
    except CorralError as exc:
        print(f"corral: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("corral: interrupted", file=sys.stderr)
        return 130
    except Exception:  # noqa: BLE001  (not a user mistake: corral's own bug)
        import traceback

        traceback.print_exc()
        print("corral: internal error: this is a bug in corral, not in your input; please "
              "report it to the maintainers with the command line and the traceback above",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
