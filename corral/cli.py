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

from corral.errors import CorralError


def run_model_path(name: str, root: str = "runs") -> str:
    """A run name or run dir means its final model; anything else is a model name."""
    for candidate in (Path(name), Path(root) / name):
        if (candidate / "final").is_dir():
            return str(candidate / "final")
    return name


def cmd_sft(args) -> None:
    from corral.config import SFTConfig, load_config
    from corral.sft import run_sft

    overrides = list(args.overrides)
    if args.resume:
        overrides += [f"run.name={args.resume}", "run.resume=true"]
    cfg = load_config(SFTConfig, args.config, overrides)
    store = run_sft(cfg)
    print(f"done: {store.path}/final")


def cmd_inspect(args) -> None:
    from corral.config import ModelConfig
    from corral.data.readers import load_sft_records
    from corral.data.render import inspect_report
    from corral.policy import load_policy

    records = load_sft_records(args.file)
    policy = load_policy(ModelConfig(name=run_model_path(args.model), template=args.template),
                         None, for_training=False)
    print(inspect_report(records, policy.tokenizer, args.mask, args.max_length,
                         template=args.template or None, n_show=args.show))


def cmd_chat(args) -> None:
    from corral.chat import chat

    chat(run_model_path(args.model), prompt=args.prompt, system=args.system,
         max_new_tokens=args.max_new_tokens, temperature=args.temperature)


def cmd_export(args) -> None:
    from corral.config import ModelConfig
    from corral.policy import load_policy

    source = run_model_path(args.run, args.root)
    if source == args.run and not Path(args.run).is_dir():
        raise CorralError(f"no run '{args.run}' with a final/ model under {args.root}/; "
                          "give a run name or a run directory")
    out = args.out or str(Path(source).parent / "merged")
    policy = load_policy(ModelConfig(name=source), None, for_training=False)
    if args.merge:
        policy.export_merged(out)
    else:
        policy.save(out)
    print(f"exported to {out}")


def cmd_quickstart(args) -> None:
    from corral.quickstart import quickstart

    quickstart(root=args.root, steps=args.steps, n_eval=args.n_eval)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="corral", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("sft", help="supervised fine-tuning (full or LoRA)",
                       description="Supervised fine-tuning. Config keys: model.*, lora.*, "
                       "data.*, train.*, run.* (see docs/config.md).")
    p.add_argument("config", nargs="?", help="YAML config file (optional)")
    p.add_argument("overrides", nargs="*", help="key=value overrides, e.g. train.lr=2e-5")
    p.add_argument("--resume", metavar="RUN", help="continue RUN from its latest checkpoint")
    p.set_defaults(func=cmd_sft)

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
    p.set_defaults(func=cmd_chat)

    p = sub.add_parser("export", help="write a run's model as a standalone HF model")
    p.add_argument("run", help="run name or directory")
    p.add_argument("--merge", action="store_true", help="merge the LoRA adapter into the base")
    p.add_argument("--out", default="")
    p.add_argument("--root", default="runs")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("quickstart", help="LoRA SFT of the embedded model on built-in data")
    p.add_argument("--root", default="runs")
    p.add_argument("--steps", type=int, default=0, help="optimizer steps (0 = one epoch)")
    p.add_argument("--n-eval", type=int, default=100, help="held-out problems to grade")
    p.set_defaults(func=cmd_quickstart)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except CorralError as exc:
        print(f"corral: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("corral: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
