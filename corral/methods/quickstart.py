"""`corral quickstart`: LoRA SFT of the embedded model on built-in arithmetic data, graded before
and after on the dev and unseen splits. A few minutes on 2 CPU cores.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from importlib import resources

from corral.core.config import load_config
from corral.core.errors import CorralError
from corral.core.records import Item, Message
from corral.core.sections import SFTConfig
from corral.data.readers import read_rows
from corral.eval.evaluate import evaluate
from corral.graders.rules import NumericAnswer
from corral.infer.engine import SamplingParams, engine_for
from corral.methods.runner import heldout, launch, prepare
from corral.methods.sft import METHOD
from corral.objectives.sft import SFT


def asset(name: str) -> str:
    return str(resources.files("corral") / "assets" / name)


def load_eval_items(path: str) -> list[Item]:
    """Chat rows -> items: the user turn is the prompt, `answer` the reference."""
    items = []
    for source, row in read_rows(path):
        user = row["messages"][0]
        items.append(Item(messages=(Message("user", user["content"]),),
                          fields={"answer": row["answer"]}, source=source))
    return items


def _grade(policy, items, max_new_tokens=40):
    engine = engine_for(policy, batch_size=64)
    params = SamplingParams(max_new_tokens=max_new_tokens, temperature=0.0, n=1)
    return evaluate(engine, items, NumericAnswer(), params, ks=(1,))


def _measure(policy, cfg, splits, val_batches) -> dict:
    out = {"dev loss": heldout(SFT(), val_batches)(policy, 0).get("loss", float("nan"))}
    results = {}
    for split, items in splits.items():
        results[split] = _grade(policy, items)
        out[f"{split} accuracy"] = results[split].metrics["mean"]
    return out, results


def quickstart(root: str = "runs", steps: int = 0, n_eval: int = 50, log=print) -> dict:
    if n_eval < 1:
        raise CorralError(f"quickstart --n-eval {n_eval}: grade at least 1 held-out problem")
    if steps < 0:
        raise CorralError(f"quickstart --steps {steps}: give 0 (one epoch) or more steps")
    started = time.time()
    overrides = [f"data.train={asset('quickstart_train.jsonl')}",
                 f"data.validation={asset('quickstart_dev.jsonl')}",
                 "train.lr=1e-3", "train.batch_tokens=2048", "train.warmup_ratio=0.05",
                 "lora.r=16", "lora.alpha=32", f"run.root={root}",
                 f"run.name=quickstart-{time.strftime('%Y%m%d-%H%M%S')}"]
    if steps:
        overrides.append(f"train.max_steps={steps}")
    cfg = load_config(SFTConfig, None, overrides)
    log("corral quickstart: LoRA SFT of smollm2-135m-instruct on built-in arithmetic problems")
    setup, built = prepare(METHOD, cfg)
    policy, val_batches = setup.policy, built.val_batches
    splits = {name: load_eval_items(asset(f"quickstart_{name}.jsonl"))[:n_eval]
              for name in ("dev", "unseen")}
    before, before_results = _measure(policy, cfg, splits, val_batches)
    log("before: " + _line(before))
    store = launch(METHOD, cfg, setup, built, log=log)
    after, after_results = _measure(policy, cfg, splits, val_batches)
    log("after:  " + _line(after))
    log(_table(before, after))
    for row_b, row_a in list(zip(before_results["unseen"].samples,
                                 after_results["unseen"].samples))[:3]:
        log(f"\n[{row_b['item']}]\n  before: {row_b['output']!r}\n  after:  {row_a['output']!r}")
    log(f"\nrun: {store.path}  ({time.time() - started:.0f}s)")
    return {"before": before, "after": after, "run": str(store.path)}


def _line(numbers: dict) -> str:
    return ", ".join(f"{k}={v:.3f}" for k, v in numbers.items())


def _table(before: dict, after: dict) -> str:
    lines = [f"\n{'':18}{'before':>10}{'after':>10}"]
    lines += [f"{k:18}{before[k]:10.3f}{after[k]:10.3f}" for k in before]
    return "\n".join(lines)


@dataclass(frozen=True)
class QuickstartOptions:
    """The options of `corral quickstart`."""
    root: str = "runs"
    steps: int = 0  # optimizer steps (0 = one epoch)
    n_eval: int = 50  # held-out problems to grade


@dataclass
class QuickstartResult:
    before: dict  # dev loss, dev and unseen accuracy before training
    after: dict  # the same after
    run: str  # the run folder


def run_quickstart(opts: QuickstartOptions, log=None) -> QuickstartResult:
    """`corral quickstart` as a library call; `log` receives its progress lines."""
    out = quickstart(root=opts.root, steps=opts.steps, n_eval=opts.n_eval,
                     log=log or (lambda line: None))
    return QuickstartResult(out["before"], out["after"], out["run"])
