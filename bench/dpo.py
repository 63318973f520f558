"""DPO throughput, corral vs TRL's DPOTrainer: same model, pairs, β, batch and LoRA; one run.

    python bench/dpo.py --model tiny --steps 3          # a smoke test
    python bench/dpo.py                                 # SmolLM2-135M, LoRA, 10 timed steps

Each trainer runs in its own spawned process (peak RSS is its own); only optimizer steps after
WARMUP steps are timed. Both use the LoRA reference (adapter disabled), computed every step.
"""
from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
# bench/ is not a package: its helpers are imported from this directory
from common import StepClock, matmul_params, matmul_peak_gflops, mfu, print_table, run_isolated
from sft import GSM8K, LORA, QUIET, SEED, WARMUP, TimedSource, model_dirs

PAIRS_PER_STEP = 4
MAX_LENGTH = 512
LR = 5e-5
BETA = 0.1


def load_pairs(n: int) -> list[dict]:
    """GSM8K questions; chosen = the row's answer, rejected = the next row's (wrong) answer."""
    rows = []
    with open(GSM8K, encoding="utf-8") as handle:
        for line in handle:
            rows.append(json.loads(line))
            if len(rows) == n + 1:
                break
    return [{"prompt": [{"role": "user", "content": a["question"]}],
             "chosen": [{"role": "assistant", "content": a["answer"]}],
             "rejected": [{"role": "assistant", "content": b["answer"]}]}
            for a, b in itertools.pairwise(rows)]


def describe(model_dir: str, pairs: list[dict]) -> dict:
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(model_dir))
    tok = AutoTokenizer.from_pretrained(model_dir)
    length = (lambda msgs: len(tok.apply_chat_template(msgs, tokenize=True,
                                                       return_dict=True)["input_ids"]))
    mean_pair = sum(length(p["prompt"] + p["chosen"]) + length(p["prompt"] + p["rejected"])
                    for p in pairs) / len(pairs)
    return {"n_matmul": matmul_params(model), "mean_pair": mean_pair,
            "batch_tokens": round(PAIRS_PER_STEP * mean_pair)}


def run_corral(spec: dict) -> dict:
    os.environ.update(QUIET)
    import torch

    from corral.core.config import load_config
    from corral.methods.dpo import METHODS, DPOConfig
    from corral.methods.runner import prepare
    from corral.store.runs import RunStore
    from corral.train.loop import train
    from corral.train.sources import DatasetSource

    torch.manual_seed(SEED)
    cfg = load_config(DPOConfig, None, [
        f"model.name={spec['model_dir']}", "model.dtype=float32", "model.device=cpu",
        f"lora.r={LORA['r']}", f"lora.alpha={LORA['alpha']}", f"lora.dropout={LORA['dropout']}",
        f"data.train={spec['data']}", f"data.max_length={MAX_LENGTH}", f"train.lr={LR}",
        f"train.batch_tokens={spec['batch_tokens']}", f"dpo.beta={BETA}",
        f"train.max_steps={WARMUP + spec['steps'] + 1}", "train.mixed_precision='no'",
        f"train.seed={SEED}", "train.progress=false", f"run.root={spec['workdir']}",
        "run.name=corral"])
    setup, built = prepare(METHODS[0], cfg)
    policy, objective, batches = setup.policy, built.objective, built.source.batches
    clock = StepClock(WARMUP)
    source = TimedSource(DatasetSource(batches, 1, SEED), clock)
    losses = {}
    train(policy, objective, source, cfg.train, RunStore(cfg.run.root, cfg.run.name),
          on_log=lambda step, row: losses.__setitem__(step, row.get("loss")))
    result = clock.summary()  # the last, untimed step holds the final save
    result["last_loss"] = losses.get(WARMUP + spec["steps"], float("nan"))
    result["notes"] = f"fp32, packed pairs, live LoRA ref, batch_tokens={spec['batch_tokens']}"
    return result


def run_trl(spec: dict) -> dict:
    os.environ.update(QUIET)
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from trl import DPOConfig, DPOTrainer

    pairs = [json.loads(line) for line in Path(spec["data"]).read_text().splitlines()]
    tokenizer = AutoTokenizer.from_pretrained(spec["model_dir"])
    model = AutoModelForCausalLM.from_pretrained(spec["model_dir"], dtype=torch.float32,
                                                 attn_implementation="sdpa")
    clock, counts = StepClock(WARMUP), {}

    class CountingDPOTrainer(DPOTrainer):
        def training_step(self, model, inputs, *args, **kwargs):
            loss = super().training_step(model, inputs, *args, **kwargs)
            for key, value in (("tokens", inputs["attention_mask"].sum()),
                               ("padded_tokens", inputs["input_ids"].numel()),
                               ("loss_tokens", inputs["completion_mask"].sum()),
                               ("seqs", inputs["input_ids"].shape[0])):
                counts[key] = counts.get(key, 0) + int(value)
            counts["loss"] = float(loss)
            return loss

    class Timing(TrainerCallback):
        def on_step_begin(self, args, state, control, **kwargs):
            counts.clear()
            clock.begin()

        def on_step_end(self, args, state, control, **kwargs):
            clock.end(**counts)

    # best CPU settings: fp32 (no bf16 autocast), no gradient checkpointing
    args = DPOConfig(
        output_dir=str(Path(spec["workdir"]) / "trl"), max_steps=WARMUP + spec["steps"],
        per_device_train_batch_size=PAIRS_PER_STEP, gradient_accumulation_steps=1,
        learning_rate=LR, beta=BETA, max_length=MAX_LENGTH, bf16=False, fp16=False,
        gradient_checkpointing=False, seed=SEED, data_seed=SEED, use_cpu=True, report_to=[],
        save_strategy="no", logging_steps=10 ** 6, disable_tqdm=True, dataloader_num_workers=0)
    peft_config = LoraConfig(r=LORA["r"], lora_alpha=LORA["alpha"], lora_dropout=LORA["dropout"],
                             target_modules="all-linear", task_type="CAUSAL_LM")
    trainer = CountingDPOTrainer(model=model, args=args, processing_class=tokenizer,
                                 train_dataset=Dataset.from_list(pairs), peft_config=peft_config,
                                 callbacks=[Timing()])
    trainer.train()
    result = clock.summary()
    result["notes"] = "fp32, no grad ckpt, padded, LoRA ref (adapter disabled)"
    return result


COLUMNS = [("model", "model", ""), ("trainer", "trainer", ""),
           ("seqs_per_step", "seq/step", ".1f"), ("tokens_per_step", "tok/step", ".0f"),
           ("pad_pct", "pad %", ".0f"), ("median_step_s", "s/step (median)", ".3f"),
           ("tokens_per_s", "tokens/s", ".0f"), ("ratio", "corral x", ".2f"),
           ("peak_rss_mb", "peak RSS MiB", ".0f"), ("mfu", "MFU %", ".1f"),
           ("last_loss", "loss", ".3f"), ("notes", "settings", "")]


def bench_model(name, model_dir, info, args, workdir, peak) -> list[dict]:
    spec = {"model_dir": model_dir, "steps": args.steps, "data": str(workdir / "pairs.jsonl"),
            "batch_tokens": info["batch_tokens"]}
    rows = []
    for trainer, fn in (("corral", run_corral), ("trl", run_trl)):
        print(f"  {name} {trainer} ...", flush=True)
        result = run_isolated(fn, dict(spec, workdir=str(workdir / f"{name}-{trainer}")))
        row = {"model": name, "trainer": trainer, **result}
        if "error" not in result:
            padded = result.get("padded_tokens_per_step", 0)
            row["pad_pct"] = 100 * (1 - result.get("tokens_per_step", 0) / padded) if padded \
                else 0.0
            # LoRA: policy forward + backward (4N) plus the reference forward (2N) per token
            row["mfu"] = mfu(6 * info["n_matmul"], result["tokens_per_s"], peak)
        else:
            row["notes"] = f"FAILED: {result['error']}"
        rows.append(row)
    if all(r.get("tokens_per_s") for r in rows):
        for row in rows:
            row["ratio"] = rows[0]["tokens_per_s"] / row["tokens_per_s"]
    return rows


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=["embedded", "tiny", "both"], default="embedded")
    parser.add_argument("--steps", type=int, default=10, help=f"timed steps after {WARMUP}")
    args = parser.parse_args(argv)
    import torch

    peak = matmul_peak_gflops()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; fp32 matmul peak "
          f"= {peak:.1f} GFLOP/s")
    pairs = load_pairs(PAIRS_PER_STEP * (WARMUP + args.steps + 2))
    rows = []
    with tempfile.TemporaryDirectory(prefix="corral-bench-dpo-") as tmp:
        workdir = Path(tmp)
        (workdir / "pairs.jsonl").write_text("".join(json.dumps(p) + "\n" for p in pairs))
        for name, model_dir in model_dirs(args.model, workdir).items():
            info = describe(model_dir, pairs)
            print(f"{name}: mean pair {info['mean_pair']:.0f} tokens; TRL {PAIRS_PER_STEP} "
                  f"pairs/step, corral batch_tokens={info['batch_tokens']}; beta={BETA}, "
                  f"LoRA r={LORA['r']}", flush=True)
            rows += bench_model(name, model_dir, info, args, workdir, peak)
    print()
    print_table(rows, COLUMNS)
    print("\ntokens = real (non-pad) tokens, chosen + rejected; corral x = corral tokens/s over "
          "the row's; MFU with F = 6N per token (policy forward+backward 4N, reference 2N).")


if __name__ == "__main__":
    main()
