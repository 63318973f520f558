"""GRPO step time and memory, corral vs TRL's GRPOTrainer (HF generation): same model, prompts,
reward function, group size, completion length and batch; one run each, in its own process.

    python bench/grpo.py --model tiny --steps 2        # smoke test
    python bench/grpo.py                               # embedded SmolLM2-135M, LoRA, 3 timed steps

A step is a whole GRPO iteration: sample the group completions, grade, compute advantages,
forward + backward + optimizer update. Model loading is not timed. Needs the bench extra (TRL).
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import StepClock, print_table, run_isolated

WARMUP = 1
SEED = 0
LR = 1e-5
LORA = {"r": 16, "alpha": 32, "dropout": 0.0}
QUIET = {"TRANSFORMERS_VERBOSITY": "error", "TOKENIZERS_PARALLELISM": "false",
         "HF_DATASETS_DISABLE_PROGRESS_BARS": "1", "TQDM_DISABLE": "1"}


def prompts(n: int) -> list[dict]:
    """The first n training problems of the built-in arithmetic task (levels 2-3)."""
    from corral.tasks import get_task

    task = get_task("arithmetic", split="train", limit=n)
    return [{"prompt": [{"role": "user", "content": item.messages[-1].content}],
             "answer": item.fields["answer"]} for item in task.items]


def reward_numeric(texts: list[str], answers: list[str]) -> list[float]:
    """The one reward function both trainers use: corral's numeric grader."""
    from corral.graders.base import Sample
    from corral.graders.rules import NumericAnswer

    grader = NumericAnswer()
    return [grader.grade({"answer": a}, Sample.of(t)).value for t, a in zip(texts, answers)]


class TimedSource:
    """A corral step runs from the loop asking for its batches (sampling happens there) to
    asking for the next step's, so generation, grading and the update are all inside."""

    def __init__(self, source, clock: StepClock):
        self.source, self.clock, self.open = source, clock, False

    def __getattr__(self, name):
        return getattr(self.source, name)

    def micro_batches(self, step):
        if self.open:
            self.clock.end()
        self.clock.begin()
        self.open = True
        return self.source.micro_batches(step)


def run_corral(spec: dict) -> dict:
    os.environ.update(QUIET)
    import torch

    from corral.core.records import Item, Message
    from corral.core.sections import LoraConfig, ModelConfig
    from corral.methods.rl import objective_for
    from corral.methods.rl_config import RLConfig, RLSection, RLTrainConfig
    from corral.model.policy import load_policy
    from corral.store.runs import RunStore
    from corral.train.loop import train
    from corral.train.rollout import RolloutSource

    class Grader:
        def grade_batch(self, pairs):
            from corral.graders.base import Score
            values = reward_numeric([s.output_text for _, s in pairs],
                                    [f["answer"] for f, _ in pairs])
            return [Score(value=v) for v in values]

    torch.manual_seed(SEED)
    policy = load_policy(ModelConfig(name=spec["model_dir"], dtype="float32", device="cpu"),
                         LoraConfig(**LORA) if spec["lora"] else LoraConfig(enabled=False))
    items = [Item((Message("user", r["prompt"][0]["content"]),), {"answer": r["answer"]}, str(i))
             for i, r in enumerate(spec["rows"])]
    rl = RLSection(n=spec["group"], prompts_per_step=spec["prompts"],
                   max_new_tokens=spec["length"], gen_batch_size=spec["group"] * spec["prompts"])
    clock = StepClock(WARMUP)
    source = TimedSource(RolloutSource(policy, items, Grader(), rl, batch_tokens=16384,
                                       seed=SEED), clock)
    cfg = RLTrainConfig(lr=LR, max_steps=WARMUP + spec["steps"] + 1, mixed_precision="no",
                        progress=False, seed=SEED)
    train(policy, objective_for(RLConfig(rl=rl)), source, cfg,
          RunStore(spec["workdir"], "corral"))
    result = clock.summary()  # the last step is left open: it holds the final save
    result["notes"] = "fp32, KV-cached shared-prefix sampling, packed update, sampler log-probs"
    return result


def run_trl(spec: dict) -> dict:
    os.environ.update(QUIET)
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    clock = StepClock(WARMUP)

    class Timing(TrainerCallback):
        def on_step_begin(self, args, state, control, **kwargs):
            clock.begin()

        def on_step_end(self, args, state, control, **kwargs):
            clock.end()

    def reward(prompts, completions, answer, **kwargs):
        return reward_numeric([c[0]["content"] for c in completions], answer)

    tokenizer = AutoTokenizer.from_pretrained(spec["model_dir"])
    model = AutoModelForCausalLM.from_pretrained(spec["model_dir"], dtype=torch.float32,
                                                 attn_implementation="sdpa")
    batch = spec["group"] * spec["prompts"]
    args = GRPOConfig(
        output_dir=str(Path(spec["workdir"]) / "trl"), max_steps=WARMUP + spec["steps"],
        per_device_train_batch_size=batch, gradient_accumulation_steps=1,
        steps_per_generation=1, num_iterations=1, num_generations=spec["group"],
        max_completion_length=spec["length"], temperature=1.0, top_p=1.0, beta=0.0,
        epsilon=0.2, loss_type="grpo", scale_rewards="group", learning_rate=LR,
        bf16=False, fp16=False, gradient_checkpointing=False, use_cpu=True, seed=SEED,
        report_to=[], save_strategy="no", logging_steps=10 ** 6, disable_tqdm=True,
        dataloader_num_workers=0)
    peft_config = LoraConfig(r=LORA["r"], lora_alpha=LORA["alpha"], lora_dropout=LORA["dropout"],
                             target_modules="all-linear", task_type="CAUSAL_LM") \
        if spec["lora"] else None
    trainer = GRPOTrainer(model=model, reward_funcs=reward, args=args,
                          train_dataset=Dataset.from_list(spec["rows"]),
                          processing_class=tokenizer, peft_config=peft_config,
                          callbacks=[Timing()])
    trainer.train()
    result = clock.summary()
    result["notes"] = "fp32, no grad ckpt, HF generate (KV cache), padded update"
    return result


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=["embedded", "tiny"], default="embedded")
    parser.add_argument("--mode", choices=["lora", "full"], default="lora")
    parser.add_argument("--steps", type=int, default=3, help=f"timed steps after {WARMUP}")
    parser.add_argument("--prompts", type=int, default=4, help="prompts per step")
    parser.add_argument("--group", type=int, default=8, help="completions per prompt")
    parser.add_argument("--length", type=int, default=64, help="max completion tokens")
    parser.add_argument("--trainers", nargs="*", default=["corral", "trl"])
    args = parser.parse_args(argv)
    import torch

    with tempfile.TemporaryDirectory(prefix="corral-bench-grpo-") as tmp:
        if args.model == "embedded":
            from corral.model.resolve import resolve_model
            model_dir = resolve_model("smollm2-135m-instruct")
        else:
            from corral.testing import save_tiny
            model_dir = save_tiny(Path(tmp) / "tiny")
        spec = {"model_dir": model_dir, "lora": args.mode == "lora", "steps": args.steps,
                "prompts": args.prompts, "group": args.group, "length": args.length,
                "rows": prompts(args.prompts * (WARMUP + args.steps + 2))}
        print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; {args.model} "
              f"{args.mode}; {args.prompts} prompts x {args.group} completions x <= "
              f"{args.length} tokens per step", flush=True)
        rows = []
        for name in args.trainers:
            print(f"  {name} ...", flush=True)
            result = run_isolated(run_corral if name == "corral" else run_trl,
                                  dict(spec, workdir=str(Path(tmp) / name)))
            rows.append({"trainer": name, **result})
    base = rows[0].get("median_step_s")
    for row in rows:
        if base and row.get("median_step_s"):
            row["speedup"] = row["median_step_s"] / base
        if "error" in row:
            row["notes"] = f"FAILED: {row['error']}"
    print()
    print_table(rows, [("trainer", "trainer", ""), ("timed_steps", "steps", "d"),
                       ("median_step_s", "s/step (median)", ".2f"),
                       ("speedup", "corral x", ".2f"), ("peak_rss_mb", "peak RSS MiB", ".0f"),
                       ("notes", "settings", "")])


if __name__ == "__main__":
    main()
