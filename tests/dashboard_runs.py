"""Helpers, no tests: run folders for the dashboard's tests. Real ones written by corral on
the tiny model (sft with dev evals and checkpoints, rft with rollouts, an eval with graded
samples) and synthetic ones shaped like them (hundreds, fast, with curves that move)."""
import json
import math
import os
import time
from pathlib import Path

import pytest
import yaml


def real_runs(root: Path, work: Path) -> list[str]:
    """sft-a, rft-a and ev under root, written by corral.api calls on the tiny model."""
    from corral.api.eval import EvalOptions, run_eval
    from corral.methods.commands import TrainOptions, train
    from corral.testing import save_tiny

    tiny = save_tiny(work / "tiny")
    rows = [{"messages": [{"role": "user", "content": f"say {i}"},
                          {"role": "assistant", "content": f"{i} {i}"}]} for i in range(6)]
    data = work / "c.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    common = (f"model.name={tiny}", "train.progress=false", "lora.r=4", f"run.root={root}",
              "eval.limit=2", "eval.max_new_tokens=4")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CORRAL_HOME", str(work / "home"))
        train(TrainOptions("sft", overrides=(*common, f"data.train={data}", "run.name=sft-a",
                                             "train.max_steps=4", "train.save_every=2",
                                             "train.eval_every=2", "eval.task=arithmetic")))
        train(TrainOptions("rft", overrides=(*common, "data.task=arithmetic", "data.limit=4",
                                             "rl.n=2", "train.max_steps=2", "run.name=rft-a",
                                             "rl.max_new_tokens=8", "rl.signal_check=warn")))
        run_eval(EvalOptions(model=[tiny], task="arithmetic", limit=3, n=2, k="1,2",
                             max_new_tokens=4, name="ev", root=str(root)))
    return ["sft-a", "rft-a", "ev"]


def metric_row(step: int, method: str, seed: int = 0) -> dict:
    """A plausible row: loss falls, reward and dev pass@1 rise, KL grows a little."""
    t = step / 50
    row = {"step": step, "time": round(time.time(), 3),
           "loss": round(2.0 * math.exp(-t * (1 + 0.4 * seed)) + 0.1
                         + 0.02 * math.sin(step + seed), 5),
           "lr": 2e-4, "grad_norm": round(1.0 + 0.3 * math.cos(step / 3 + seed), 4),
           "tokens_per_s": 9000 + 40 * (step % 7)}
    if method in ("grpo", "rft", "ppo"):
        row.update(reward=round(0.2 + 0.6 * (1 - math.exp(-t)) + 0.01 * seed, 4),
                   approx_kl=round(0.002 * step ** 0.5, 5), completion_len=40 + step % 9)
    if step % 10 == 0:
        score = round(0.1 + 0.5 * (1 - math.exp(-t)) + 0.02 * seed, 4)
        row.update({"eval/dev/pass@1": score, "eval/dev/mean": score,
                    "eval/unseen/pass@1": round(score - 0.04, 4)})
    return row


def synthetic_run(root: Path, name: str, method: str = "sft", task: str = "arithmetic",
                  steps: int = 50, seed: int = 0, finished: bool = True,
                  samples: int = 25) -> Path:
    run = root / name
    (run / "checkpoints").mkdir(parents=True, exist_ok=True)
    cfg = {"model": {"name": "smollm2-135m-instruct"}, "data": {"task": task},
           "train": {"lr": 2e-4, "max_steps": steps}, "run": {"name": name, "root": str(root)}}
    (run / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    lineage = {"base_model": "smollm2-135m-instruct", "data": [], "parent_run": None,
               "corral_version": "0.1.0", "time": "2026-12-05T08:00:00+00:00",
               "extra": {"method": method}}
    (run / "lineage.json").write_text(json.dumps(lineage))
    (run / "metrics.jsonl").write_text("".join(json.dumps(metric_row(s, method, seed)) + "\n"
                                               for s in range(1, steps + 1)))
    (run / "samples.jsonl").write_text("".join(json.dumps(sample_row(i)) + "\n"
                                               for i in range(samples)))
    for step in range(20, steps + 1, 20):
        (run / "checkpoints" / f"step-{step}").mkdir(exist_ok=True)
    if finished:
        (run / "final").mkdir(exist_ok=True)
    else:  # a live run: just written, no final/
        os.utime(run / "metrics.jsonl")
    return run


def sample_row(i: int) -> dict:
    ok = i % 3 != 0
    return {"model": "smollm2-135m-instruct", "task": "arithmetic",
            "item": f"arithmetic:dev:{i}", "sample": 0,
            "output": f"{i} + {i} = {2 * i if ok else 2 * i + 1}. The answer is "
                      f"{2 * i if ok else 2 * i + 1}.",
            "grade": 1.0 if ok else 0.0, "passed": ok, "answer": str(2 * i),
            "details": {"sub_rewards": {"exact": 1.0 if ok else 0.0, "format": 1.0},
                        "reference": str(2 * i)}}
