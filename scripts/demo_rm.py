"""Train a reward model on the embedded SmolLM2 with arithmetic pairs (correct worked answer
vs. the same working with a perturbed result) and report held-out accuracy; see docs/reward.md.

    .venv/bin/python scripts/demo_rm.py [--train 300] [--heldout 100] [--lm-baseline]

Seeds: rows from `make_rows(seed=0)`, wrong answers by seeds 1 (train) and 2 (held out),
train.seed 0. `--model DIR` swaps the embedded model (the tests use the tiny test model).
"""
from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path

import torch

from corral.core.config import load_config
from corral.data.batching import collate
from corral.methods.rm import METHOD, RMConfig, run_rm
from corral.methods.runner import heldout, prepare
from corral.objectives.reward import RewardObjective
from corral.store.runs import read_jsonl
from corral.tasks.arithmetic import INSTRUCTION, make_rows


def wrong_answer(answer: str, rng: random.Random) -> str:
    """The same working with the final result changed everywhere it is stated."""
    result = int(answer.split("####")[-1])
    wrong = result + rng.choice([-10, -2, -1, 1, 2, 10])
    return answer.replace(f"= {result}", f"= {wrong}").replace(f"#### {result}", f"#### {wrong}")


def write_pairs(path: Path, rows: list[dict], seed: int) -> str:
    rng = random.Random(seed)
    with open(path, "w") as handle:
        handle.writelines(json.dumps({
                "prompt": [{"role": "user", "content": f"{row['question']} {INSTRUCTION}"}],
                "chosen": [{"role": "assistant", "content": row["answer"]}],
                "rejected": [{"role": "assistant", "content": wrong_answer(row["answer"], rng)}],
            }) + "\n" for row in rows)
    return str(path)


@torch.no_grad()
def likelihood_accuracy(policy, pairs) -> float:
    """How often the base LM itself gives the chosen reply a higher summed log-prob."""
    wins = 0
    for chosen, rejected in pairs:
        batch = collate([chosen, rejected])
        logps = policy.token_logps(batch.to(policy.device))
        n_c = int((batch.labels[0, :batch.seq_lens[0]] != -100).sum())
        wins += float(logps[:n_c].sum()) > float(logps[n_c:].sum())
    return wins / len(pairs)


def overrides(args, train: str, dev: str, out: Path) -> list[str]:
    """The `corral rm` config of the demo (seed 0: data order and head init)."""
    return [f"model.name={args.model}", f"data.train={train}", f"data.validation={dev}",
            f"train.lr={args.lr}", f"train.epochs={args.epochs}", "train.batch_tokens=1024",
            "train.warmup_ratio=0.1", "train.log_every=5", "train.progress=false", "lora.r=16",
            "train.seed=0", f"run.root={out}", f"run.name=rm-{time.strftime('%Y%m%d-%H%M%S')}"]


def parse(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--train", type=int, default=300)
    ap.add_argument("--heldout", type=int, default=100)
    ap.add_argument("--epochs", type=float, default=1.0)
    ap.add_argument("--lr", type=float, default=2e-4)
    ap.add_argument("--out", default="runs-demo-rm")
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--untrained", action="store_true", help="also score the untrained head")
    ap.add_argument("--lm-baseline", action="store_true",
                    help="also report how often the base LM's likelihood prefers the chosen reply")
    return ap.parse_args(argv)


def main(argv=None) -> dict:
    args = parse(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = make_rows(args.train + args.heldout, seed=0, levels=(2, 3))
    train = write_pairs(out / "train.jsonl", rows[:args.train], seed=1)
    dev = write_pairs(out / "dev.jsonl", rows[args.train:], seed=2)
    cfg = load_config(RMConfig, None, overrides(args, train, dev, out))
    setup, built = prepare(METHOD, cfg)
    rm = setup.policy
    # Masks mark the completion tokens, so the same pairs give the base LM's likelihoods.
    lm_acc = likelihood_accuracy(rm.policy, [
        tuple(_completion_masked(rm, p) for p in pair) for pair in _records(dev)]) \
        if args.lm_baseline else None
    untrained = round(heldout(RewardObjective(), built.val_batches)(rm, 0)["accuracy"], 3) \
        if args.untrained else None
    t0 = time.perf_counter()
    store = run_rm(cfg, rm=rm)
    minutes = (time.perf_counter() - t0) / 60
    after = read_jsonl(store.path / "metrics.jsonl")[-1]
    report = {
        "train_pairs": args.train, "heldout_pairs": built.numbers["heldout_pairs"],
        "minutes": round(minutes, 2),
        "base_lm_likelihood_accuracy": lm_acc,
        "untrained_head_accuracy": untrained,
        "heldout_accuracy": round(after["eval/accuracy"], 3),
        "heldout_margin": round(after["eval/margin"], 3), "run": str(store.path)}
    print(json.dumps(report, indent=2))
    return report


def _records(path: str):
    from corral.core.records import Completion
    from corral.data.readers import load_preference_records

    return [(Completion(p.prompt, p.chosen), Completion(p.prompt, p.rejected))
            for p in load_preference_records(path)]


def _completion_masked(rm, record):
    from corral.data.render import render

    return render(record, rm.tokenizer, mask="assistant", max_length=rm.max_length)


if __name__ == "__main__":
    main()
