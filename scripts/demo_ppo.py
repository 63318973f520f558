"""The InstructGPT pipeline on the embedded SmolLM2-135M-Instruct (CPU), all through the CLI:
`corral sft` (arithmetic demonstrations) -> `corral rm` (correct vs. wrong worked answers) ->
`corral ppo` (LoRA on the SFT model, reward = the RM, KL to the SFT model). Reports the RM
score of greedy answers on the unseen split before and after PPO, the KL, and the task's
exact-answer accuracy for both models; see docs/rl.md.

    .venv/bin/python scripts/demo_ppo.py [--sft-steps 20] [--rm-pairs 240] [--ppo-steps 24]

Seeds: train.seed 0 for each run and evaluation seed 0; the RM's pairs come from
`make_rows(seed=100)` with wrong answers drawn by seed 1. `--model DIR` swaps the embedded
model (tests run the whole chain on the tiny test model with a few steps).
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def _demo_rm():
    spec = importlib.util.spec_from_file_location("demo_rm", REPO / "scripts" / "demo_rm.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def step(argv: list[str]) -> float:
    from corral.cli.app import main

    print("$ corral " + " ".join(argv), flush=True)
    start = time.perf_counter()
    if main(argv) != 0:
        raise SystemExit(f"corral {argv[0]} failed")
    return round(time.perf_counter() - start, 1)


def commands(args, out: Path, tag: str, pairs: str) -> dict[str, list[str]]:
    """The four corral commands of the pipeline, in order (argv without `corral`)."""
    common = ["train.progress=false", f"run.root={out}", "lora.r=16", "lora.alpha=32",
              "train.seed=0"]
    sft = str(out / f"sft-{tag}" / "final")
    return {
        "sft": ["sft", f"model.name={args.model}",
                f"data.train={REPO / 'corral/assets/quickstart_train.jsonl'}",
                f"train.max_steps={args.sft_steps}", "train.lr=2e-4", "train.batch_tokens=2048",
                f"run.name=sft-{tag}", *common],
        "rm": ["rm", f"model.name={args.model}", f"data.train={pairs}", "train.lr=2e-4",
               "train.epochs=1", "train.batch_tokens=1024", "train.warmup_ratio=0.1",
               f"run.name=rm-{tag}", *common],
        "ppo": ["ppo", f"model.name={sft}", f"rl.reward_model=rm-{tag}", "data.task=arithmetic",
                "data.limit=96", "rl.n=4", "rl.prompts_per_step=4", "rl.mu=2",
                "rl.max_new_tokens=48", "rl.temperature=0.7", "rl.kl_coef=0.05",
                "rl.missing_eos_penalty=1.0", "rl.signal_check_prompts=8", "train.lr=1e-4",
                f"train.max_steps={args.ppo_steps}", "train.batch_tokens=4096",
                f"eval.limit={args.eval_limit}", "eval.max_new_tokens=48", f"run.name=ppo-{tag}",
                *common],
        "eval": ["eval", "--model", sft, "--model", str(out / f"ppo-{tag}" / "final"), "--task",
                 "arithmetic", "--split", "unseen", "--limit", str(args.eval_limit),
                 "--max-new-tokens", "48", "--seed", "0", "--root", str(out),
                 "--name", f"eval-{tag}"],
    }


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sft-steps", type=int, default=20)
    ap.add_argument("--rm-pairs", type=int, default=240)
    ap.add_argument("--ppo-steps", type=int, default=24)
    ap.add_argument("--eval-limit", type=int, default=40)
    ap.add_argument("--out", default="runs/demo-ppo")
    ap.add_argument("--model", default="smollm2-135m-instruct")
    args = ap.parse_args(argv)
    from corral.store.runs import read_jsonl
    from corral.tasks.arithmetic import make_rows

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    tag = time.strftime("%Y%m%d-%H%M%S")
    rows = make_rows(args.rm_pairs, seed=100, levels=(2, 3))
    pairs = _demo_rm().write_pairs(out / "rm_pairs.jsonl", rows, seed=1)
    seconds = {}
    for name, argv in commands(args, out, tag, pairs).items():
        seconds[name] = step(argv)
    ppo = out / f"ppo-{tag}"
    metrics = read_jsonl(ppo / "metrics.jsonl")
    unseen = [r for r in metrics if "eval/unseen/mean" in r]
    train_rows = [r for r in metrics if "score" in r]
    report = {
        "unseen_rm_score_before": unseen[0]["eval/unseen/mean"] if unseen else None,
        "unseen_rm_score_after": unseen[-1]["eval/unseen/mean"] if unseen else None,
        "train_rm_score_first_last": [train_rows[0]["score"], train_rows[-1]["score"]],
        "kl_seq_first_last": [train_rows[0].get("kl_seq"), train_rows[-1].get("kl_seq")],
        "completion_len_first_last": [train_rows[0]["completion_len"],
                                      train_rows[-1]["completion_len"]],
        "seconds": seconds, "runs": str(out)}
    (out / f"report-{tag}.json").write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
