"""RFT demo: the embedded SmolLM2-135M-Instruct on the built-in `arithmetic` task (CPU).

    python scripts/demo_rft.py                  # the run recorded in docs/rl.md
    python scripts/demo_rft.py rl.n=4 train.epochs=2   # any RLConfig override

Trains LoRA with GRPO (DAPO preset) on a few training prompts for many passes and reports
the greedy score on the unseen split of the `arithmetic` task (its hash split, not the
quickstart's asset file) before and after, each ± its binomial standard error, with the wall
time. Seeds: train.seed 0 (data order, LoRA init, rollouts) and evaluation seed 0.
"""
from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

DEFAULTS = [
    "model.name=smollm2-135m-instruct", "data.task=arithmetic", "data.limit=16",
    "rl.preset=dapo", "rl.n=8", "rl.prompts_per_step=4", "rl.max_new_tokens=32",
    "rl.temperature=0.7", "rl.signal_check_prompts=8",
    "lora.r=16", "lora.alpha=32", "train.lr=2e-4", "train.epochs=3", "train.seed=0",
    "train.batch_tokens=4096", "train.progress=false",
    "eval.limit=30", "eval.n=1", "eval.temperature=0", "eval.max_new_tokens=32",
    "run.root=runs", f"run.name=demo-rft-{int(time.time())}",
]


def main(argv: list[str]) -> dict:
    from corral.cli.app import quiet_libraries
    from corral.methods.rl import load_rl_config, run_rft
    from corral.tasks import get_task

    quiet_libraries()
    cfg = load_rl_config(None, [*DEFAULTS, *argv])
    start = time.perf_counter()
    store = run_rft(cfg)
    seconds = time.perf_counter() - start
    rows = store.read_metrics()
    before = next(r for r in rows if "eval/unseen/pass@1" in r)
    after = [r for r in rows if "eval/unseen/pass@1" in r][-1]
    rewards = [r["reward"] for r in rows if "reward" in r]
    result = {
        "unseen_before": before["eval/unseen/pass@1"], "unseen_after": after["eval/unseen/pass@1"],
        "dev_before": before.get("eval/dev/pass@1"), "dev_after": after.get("eval/dev/pass@1"),
        "train_reward_first": rewards[0], "train_reward_last": rewards[-1],
        "steps": len(rewards), "wall_s": round(seconds, 1), "run": str(store.path),
    }
    result["gain"] = result["unseen_after"] - result["unseen_before"]
    n = len(get_task("arithmetic", split="unseen", limit=cfg.eval.limit).items)
    for side in ("before", "after"):  # greedy pass@1 is 0 or 1 per item: binomial stderr
        p = result[f"unseen_{side}"]
        result[f"unseen_{side}_stderr"] = round(math.sqrt(p * (1 - p) / n), 3)
    result["unseen_items"] = n
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
