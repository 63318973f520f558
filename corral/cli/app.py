"""The `corral` command: parses arguments and wires library objects, nothing more.

    corral sft config.yaml train.lr=2e-5 lora.r=16
    corral data inspect data.jsonl --model smollm2-135m-instruct
    corral chat --model runs/my-run --prompt "Hello"
    corral export my-run --merge
    corral quickstart
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from corral.core.config import ConfigNote
from corral.core.errors import CorralError
from corral.store.runs import run_model_path


def cmd_inspect(args) -> None:
    from corral.core.sections import ModelConfig
    from corral.data.readers import load_sft_records
    from corral.data.render import inspect_report
    from corral.model.policy import load_policy

    records = load_sft_records(args.file)
    policy = load_policy(ModelConfig(name=run_model_path(args.model), template=args.template),
                         None, for_training=False, key="--model")
    print(inspect_report(records, policy.tokenizer, args.mask, args.max_length,
                         template=args.template or None, n_show=args.show))


def cmd_chat(args) -> None:
    from corral.cli.chat import chat

    chat(run_model_path(args.model), prompt=args.prompt, system=args.system,
         max_new_tokens=args.max_new_tokens, temperature=args.temperature,
         strategy=args.strategy)


def cmd_export(args) -> None:
    from corral.core.sections import ModelConfig
    from corral.model.policy import load_policy
    from corral.model.resolve import unfinished_run_message
    from corral.store.runs import resolve_run

    run = resolve_run(args.run, args.root)
    if run is not None and not (run / "final").is_dir():
        raise CorralError(unfinished_run_message(run, "export"))
    if run is None and not Path(args.run).is_dir():
        raise CorralError(f"no run '{args.run}' under {args.root}/ (and no directory of that "
                          "name); give a run name, a run directory or a model directory")
    source = str(run / "final") if run is not None else args.run  # a run, or a model dir
    out = args.out or str(Path(source).parent / "merged")
    policy = load_policy(ModelConfig(name=source), None, for_training=False, key="export")
    if args.merge:
        policy.export_merged(out)
    else:
        policy.save(out)
    print(f"exported to {out}")


def cmd_quickstart(args) -> None:
    from corral.methods.quickstart import quickstart

    quickstart(root=args.root, steps=args.steps, n_eval=args.n_eval)


def _ks(text: str) -> tuple:
    try:
        return tuple(sorted({int(k) for k in text.split(",") if k.strip()}))
    except ValueError:
        raise CorralError(f"-k takes whole numbers separated by commas, got '{text}'") from None


def cmd_eval(args) -> None:
    if args.strategy or args.plot:
        from corral.cli.strategies import run_eval_strategies

        return run_eval_strategies(args)
    from corral.eval.evaluate import compare_models, format_table
    from corral.infer.engine import SamplingParams
    from corral.store.runs import RunStore, new_run_name
    from corral.tasks import get_task

    if not 0 < args.max_grader_errors <= 1:
        raise CorralError(f"--max-grader-errors {args.max_grader_errors}: give a share in "
                          "(0, 1], e.g. 0.5 to stop once half the samples fail to grade")
    task = get_task(args.task, split=args.split, data=args.data, grader=args.grader,
                    limit=args.limit, few_shot=args.few_shot, system_prompt=args.system)
    temperature = args.temperature if args.temperature is not None else \
        (0.0 if args.n == 1 else 0.8)
    params = SamplingParams(max_new_tokens=args.max_new_tokens, temperature=temperature,
                            top_p=args.top_p, n=args.n, seed=args.seed)
    ks = _ks(args.k) if args.k else (1,)
    if any(k > args.n for k in ks):
        raise CorralError(f"-k {args.k} asks for more samples than -n {args.n}; raise -n")
    name = args.name or new_run_name("eval")

    def open_store():  # only once the first model has loaded and been graded
        store = RunStore(args.root, name)
        store.write_config({"task": args.task, "split": args.split, "models": args.model,
                            "n": args.n, "k": list(ks), "temperature": temperature,
                            "limit": args.limit, "data": args.data})
        return store

    models = [run_model_path(m, args.root) for m in args.model]
    table = compare_models(models, task, params, ks, store=open_store,
                           max_grader_errors=args.max_grader_errors)
    print(f"task {task.name} ({args.split}), {len(task.items)} items, n={args.n}")
    print(format_table(table))
    print(f"samples: {Path(args.root) / name}/samples.jsonl")


def cmd_lineage(args) -> None:
    from corral.store.lineage import lineage_tree

    lines, flags = lineage_tree(args.run, args.root)
    print("\n".join(lines))
    if flags:
        print("flags:")
        print("\n".join(f"  ! {f}" for f in dict.fromkeys(flags)))


def cmd_split(args) -> None:
    from corral.data.splits import split_file

    counts = split_file(args.data, args.dev, args.unseen, args.out or None)
    print(", ".join(f"{k}: {counts[k]}" for k in ("train", "dev", "unseen")) +
          " (unseen rows sealed: training refuses them)")
    if counts.get("duplicates"):
        print(f"note: {counts['duplicates']} rows repeat an earlier row (e.g. "
              f"{counts['first_duplicate']}); each copy went to its original's split, so none "
              "leaks across splits, but they weigh double in training: "
              "`corral curate` removes them")


def cmd_grade(args) -> None:
    """validate: what is wrong with a grader spec (any form load_grader takes); run: grade one
    sample, answering like OpenAI's graders/run (reward, sub_rewards, metadata)."""
    import json

    from corral.graders.load import grader_errors, load_grader, read_spec
    from corral.graders.openai import run_grader
    from corral.graders.spec import SpecGrader

    if args.grade_command == "validate":
        errors = grader_errors(args.grader)
        print(json.dumps({"valid": not errors, "errors": errors}, indent=2))
        if errors:
            raise SystemExit(1)
        return
    item = _read_json_arg(args.item, "--item") if args.item else {}
    if not isinstance(item, dict):
        raise CorralError(f"--item must be a JSON object (the data row), got {args.item!r}")
    grader = load_grader(args.grader, root=args.root)
    if isinstance(grader, SpecGrader):  # OpenAI grader JSON: answer as graders/run does
        spec = read_spec(args.grader)[0]
        print(json.dumps(run_grader(spec, item, args.sample), indent=2, default=str))
        return
    from corral.graders.base import Sample

    score = grader.grade(item, Sample.of(args.sample))
    print(json.dumps({"reward": score.value, "passed": score.passed, "answer": score.answer,
                      "details": score.details}, indent=2, default=str))


def _read_json_arg(text: str, what: str):
    import json

    try:
        if Path(text).is_file():
            return json.loads(Path(text).read_text(encoding="utf-8"))
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise CorralError(f"{what} is not valid JSON ({exc.msg} at line {exc.lineno}); "
                          "pass a .json file or quote the JSON") from None


def _add_training(sub) -> None:
    from corral.cli import curate, feedback, synth, synthesize, train

    train.register(sub)
    synth.register(sub)
    synthesize.register(sub)
    curate.register(sub)
    feedback.register(sub)

    p = sub.add_parser("quickstart", help="LoRA SFT of the embedded model on built-in data")
    p.add_argument("--root", default="runs")
    p.add_argument("--steps", type=int, default=0, help="optimizer steps (0 = one epoch)")
    p.add_argument("--n-eval", type=int, default=50, help="held-out problems to grade")
    p.set_defaults(func=cmd_quickstart)


def _add_models(sub) -> None:
    data = sub.add_parser("data", help="look at data before training")
    data_sub = data.add_subparsers(dest="data_command", required=True)
    p = data_sub.add_parser("inspect", help="render examples, mark trained tokens, length stats")
    p.add_argument("file")
    p.add_argument("--model", default="smollm2-135m-instruct")
    p.add_argument("--mask", default="assistant", choices=["assistant", "all", "last"])
    p.add_argument("--max-length", type=int, default=1024)
    p.add_argument("--template", default="", help="chat template (.jinja file or inline)")
    p.add_argument("--show", type=int, default=1, help="examples to print")
    p.set_defaults(func=cmd_inspect)

    p = sub.add_parser("chat", help="talk to a model or a run's final model")
    p.add_argument("--model", default="smollm2-135m-instruct")
    p.add_argument("--prompt", help="one prompt; without it, an interactive session")
    p.add_argument("--system", default="")
    p.add_argument("--max-new-tokens", type=int, default=256)
    p.add_argument("--temperature", type=float, default=0.0)
    p.add_argument("--strategy", default="", help="answer through an inference strategy "
                   "(refine:1, majority:5, debate:3x2, best-of-n:4:judge; docs/strategies.md)")
    p.set_defaults(func=cmd_chat)

    p = sub.add_parser("export", help="write a run's model as a standalone HF model")
    p.add_argument("run", help="run name or directory")
    p.add_argument("--merge", action="store_true", help="merge the LoRA adapter into the base")
    p.add_argument("--out", default="")
    p.add_argument("--root", default="runs")
    p.set_defaults(func=cmd_export)


def _add_evaluation(sub) -> None:
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

    p = sub.add_parser("lineage", help="where a run's behaviour came from: base model, "
                       "teachers, data, students")
    p.add_argument("run", help="run name or directory")
    p.add_argument("--root", default="runs")
    p.set_defaults(func=cmd_lineage)

    p = sub.add_parser("split", help="assign rows to train/dev/unseen by content hash")
    p.add_argument("data")
    p.add_argument("--dev", type=float, default=0.1)
    p.add_argument("--unseen", type=float, default=0.1)
    p.add_argument("--out", default="")
    p.set_defaults(func=cmd_split)

    grade = sub.add_parser("grade", help="validate or dry-run a grader (rule, OpenAI JSON, RM)")
    grade_sub = grade.add_subparsers(dest="grade_command", required=True)
    p = grade_sub.add_parser("validate")
    p.add_argument("grader", help="grader spec: rule, RULE:OPTION, GRADER.json or inline JSON")
    p.set_defaults(func=cmd_grade)
    p = grade_sub.add_parser("run")
    p.add_argument("grader", help="grader spec: rule, RULE:OPTION, grader JSON (file or "
                   "inline), or a reward_model spec")
    p.add_argument("--root", default="runs", help="where reward-model runs live")
    p.add_argument("--item", default="", help="the data row as JSON")
    p.add_argument("--sample", default="", help="the model output text")
    p.set_defaults(func=cmd_grade)




def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="corral", description=__doc__.split("\n")[0])
    parser.add_argument("--allow-unsandboxed-graders", action="store_true",
                        help="run python graders even where the sandbox (bubblewrap) is not "
                        "available; they can then read your files and processes")
    sub = parser.add_subparsers(dest="command", required=True)
    _add_training(sub)
    _add_models(sub)
    _add_evaluation(sub)
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
