"""`corral rft`, `corral grpo` and `corral ppo`: `[config.yaml] [key=value ...]`, as `corral sft`.

    corral rft data.task=arithmetic rl.n=8 train.epochs=10
    corral grpo config.yaml rl.preset=dapo
    corral ppo model.name=runs/my-sft/final rl.reward_model=my-rm data.train=prompts.jsonl
"""
from __future__ import annotations

HELP = ("Config keys: model.*, lora.*, data.* (task, train, validation, unseen, limit), "
        "train.*, run.*, eval.*, rl.* (preset, grader, graders, n, prompts_per_step, "
        "max_new_tokens, temperature, advantage, scale, aggregation, clip_low, clip_high, "
        "kl_coef, kl_kind, kl_in, mu, mini_batches, signal_check; PPO: reward_model, "
        "value_coef, value_clip, gamma, lam, missing_eos_penalty); see docs/rl.md.")


def _run(args, method: str) -> None:
    from corral.cli.app import config_and_overrides
    from corral.methods.ppo import load_ppo_config, run_ppo
    from corral.methods.rl import load_rl_config, run_grpo, run_rft

    args.config, overrides = config_and_overrides(args)
    if method == "ppo":
        store = run_ppo(load_ppo_config(args.config, overrides))
    else:
        cfg = load_rl_config(args.config, overrides)
        store = (run_rft if method == "rft" else run_grpo)(cfg)
    print(f"done: {store.path}/final")


def cmd_rft(args) -> None:
    _run(args, "rft")


def cmd_grpo(args) -> None:
    _run(args, "grpo")


def cmd_ppo(args) -> None:
    _run(args, "ppo")


def register(subparsers) -> None:
    """Add the `rft` and `grpo` commands to corral's subparsers."""
    for name, func, summary in (
            ("rft", cmd_rft, ("reinforcement fine-tuning on graded prompts (OpenAI RFT data "
                             "or a built-in task)")),
            ("grpo", cmd_grpo, ("policy-gradient RL; rl.preset=grpo|dr_grpo|dapo|rloo|"
                               "reinforce_pp")),
            ("ppo", cmd_ppo, ("PPO with a value head and a reward model (rl.reward_model=RUN), "
                             "the InstructGPT recipe after `corral sft` and `corral rm`"))):
        p = subparsers.add_parser(name, help=summary, description=f"{summary}. {HELP}")
        p.add_argument("config", nargs="?", help="YAML config file (optional)")
        p.add_argument("overrides", nargs="*", help="key=value overrides, e.g. rl.n=8")
        p.add_argument("--resume", metavar="RUN", help="continue RUN from its latest checkpoint")
        p.set_defaults(func=func)
