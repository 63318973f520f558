"""SFT throughput, corral vs TRL's SFTTrainer: same model, data, hyper-parameters; one run.

    python bench/sft.py --model tiny --steps 3          # seconds; a smoke test
    python bench/sft.py                                 # SmolLM2-135M and tiny, LoRA and full
    python bench/sft.py --model embedded --mode lora --steps 20

Each trainer runs in its own spawned process (peak RSS is its own); only optimizer steps after
WARMUP steps are timed, never model loading or tokenisation. Needs `pip install -e '.[bench]'`.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
# bench/ is not a package: its helpers are imported from this directory
from common import (
    GSM8K_DIR,
    StepClock,
    matmul_params,
    matmul_peak_gflops,
    mfu,
    print_table,
    run_isolated,
)

REPO = Path(__file__).resolve().parent.parent
GSM8K = GSM8K_DIR / "train.jsonl"
WARMUP = 2
SEQS_PER_STEP = 8
MAX_LENGTH = 512
LR = 2e-4
SEED = 0
LORA = {"r": 16, "alpha": 32, "dropout": 0.0}
QUIET = {"TRANSFORMERS_VERBOSITY": "error", "TOKENIZERS_PARALLELISM": "false",
         "HF_DATASETS_DISABLE_PROGRESS_BARS": "1", "TQDM_DISABLE": "1"}


# ---------------------------------------------------------------- data and model, in the parent

def load_gsm8k(n: int) -> list[dict]:
    rows = []
    with open(GSM8K, encoding="utf-8") as handle:
        for line in handle:
            if len(rows) == n:
                break
            row = json.loads(line)
            rows.append({"messages": [{"role": "user", "content": row["question"]},
                                      {"role": "assistant", "content": row["answer"]}]})
    return rows


def model_dirs(which: str, workdir: Path) -> dict[str, str]:
    dirs = {}
    if which in ("embedded", "both"):
        from corral.model.resolve import resolve_model
        dirs["smollm2-135m"] = resolve_model("smollm2-135m-instruct")
    if which in ("tiny", "both"):
        from corral.testing import save_tiny
        dirs["tiny"] = save_tiny(workdir / "tiny-model")
    return dirs


def describe_model(model_dir: str, rows: list[dict]) -> dict:
    """Matmul parameter count (meta device, no weights) and mean templated length of the data."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(model_dir))
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    lengths = [min(MAX_LENGTH, len(tokenizer.apply_chat_template(
        r["messages"], tokenize=True, return_dict=True)["input_ids"])) for r in rows]
    mean_len = sum(lengths) / len(lengths)
    return {"n_matmul": matmul_params(model), "mean_len": mean_len,
            "batch_tokens": round(SEQS_PER_STEP * mean_len)}


# ---------------------------------------------------------------- corral, in a child process

class TimedSource:
    """Wraps corral's BatchSource: a step starts when the loop asks for its micro-batches and ends
    when it asks for the next step's, so the optimizer update is inside the step's time."""

    def __init__(self, source, clock: StepClock):
        self.source, self.clock, self.pending = source, clock, None

    def __getattr__(self, name):
        return getattr(self.source, name)

    def micro_batches(self, step):
        self.close_step()
        batches = self.source.micro_batches(step)
        self.pending = batches
        self.clock.begin()
        return batches

    def close_step(self):
        if self.pending is not None:
            self.clock.end(tokens=sum(b.n_tokens for b in self.pending),
                           padded_tokens=sum(b.input_ids.numel() for b in self.pending),
                           loss_tokens=sum(b.n_loss_tokens for b in self.pending),
                           seqs=sum(len(b.seq_lens) for b in self.pending))
            self.pending = None


def run_corral(spec: dict) -> dict:
    os.environ.update(QUIET)
    import torch

    from corral.core.config import load_config
    from corral.core.sections import SFTConfig
    from corral.methods.runner import prepare
    from corral.methods.sft import METHOD
    from corral.objectives.sft import SFT
    from corral.store.runs import RunStore
    from corral.train.loop import train
    from corral.train.sources import DatasetSource

    torch.manual_seed(SEED)
    cfg = load_config(SFTConfig, None, [
        f"model.name={spec['model_dir']}", "model.dtype=float32", "model.device=cpu",
        f"lora.enabled={spec['lora']}", f"lora.r={LORA['r']}", f"lora.alpha={LORA['alpha']}",
        f"lora.dropout={LORA['dropout']}", f"data.train={spec['data']}",
        f"data.max_length={MAX_LENGTH}", f"train.lr={LR}",
        f"train.batch_tokens={spec['batch_tokens']}",
        # one step past the timed ones, so the final save is never inside a timed step
        f"train.max_steps={WARMUP + spec['steps'] + 1}", "train.grad_accum=1",
        "train.mixed_precision='no'", f"train.seed={SEED}", "train.progress=false",
        f"run.root={spec['workdir']}", "run.name=corral"])
    setup, built = prepare(METHOD, cfg)
    policy, batches = setup.policy, built.source.batches
    clock = StepClock(WARMUP)
    source = TimedSource(DatasetSource(batches, cfg.train.grad_accum, cfg.train.seed), clock)
    store = RunStore(cfg.run.root, cfg.run.name)
    last_timed = WARMUP + spec["steps"]
    losses = {}
    train(policy, SFT(), source, cfg.train, store,
          on_log=lambda step, row: losses.__setitem__(step, row.get("loss")))
    # the last (untimed) step is left open on purpose: it holds the final save
    result = clock.summary()
    result["last_loss"] = losses.get(last_timed, float("nan"))
    result["notes"] = f"fp32, packed, batch_tokens={cfg.train.batch_tokens}"
    return result


# ---------------------------------------------------------------- TRL, in a child process

TRL_VARIANTS = {
    # fp32, no recomputation: what a careful user would pick on CPU
    "trl": {"bf16": False, "fp16": False, "gradient_checkpointing": False},
    # SFTConfig's own defaults (gradient checkpointing on, bf16 autocast where available)
    "trl-defaults": {},
    # flattened batch with restarting position ids, like corral's packing
    "trl-padding-free": {"bf16": False, "fp16": False, "gradient_checkpointing": False,
                         "padding_free": True},
}


def _trl_dataset(rows, tokenizer, padding_free: bool):
    """Conversational prompt/completion rows: TRL's completion-only loss then trains exactly the
    assistant turn. Padding-free without packing refuses max_length, so that variant gets rows
    tokenised the way TRL does and truncated here."""
    from datasets import Dataset

    pairs = [{"prompt": r["messages"][:1], "completion": r["messages"][1:]} for r in rows]
    if not padding_free:
        return Dataset.from_list(pairs)
    processed = []
    for pair in pairs:
        prompt = tokenizer.apply_chat_template(pair["prompt"], tokenize=True, return_dict=True,
                                               add_generation_prompt=True)["input_ids"]
        ids = tokenizer.apply_chat_template(pair["prompt"] + pair["completion"], tokenize=True,
                                            return_dict=True)["input_ids"]
        labels = ([-100] * len(prompt) + ids[len(prompt):])[:MAX_LENGTH]
        if any(label != -100 for label in labels):
            processed.append({"input_ids": ids[:MAX_LENGTH], "labels": labels})
    return Dataset.from_list(processed)


def run_trl(spec: dict) -> dict:
    os.environ.update(QUIET)
    import torch
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from trl import SFTConfig, SFTTrainer

    rows = [json.loads(line) for line in Path(spec["data"]).read_text().splitlines()]
    tokenizer = AutoTokenizer.from_pretrained(spec["model_dir"])
    model = AutoModelForCausalLM.from_pretrained(spec["model_dir"], dtype=torch.float32,
                                                 attn_implementation="sdpa")
    settings = dict(TRL_VARIANTS[spec["trainer"]])
    padding_free = settings.get("padding_free", False)
    clock = StepClock(WARMUP)
    counts: dict = {}

    class CountingSFTTrainer(SFTTrainer):
        def training_step(self, model, inputs, *args, **kwargs):
            loss = super().training_step(model, inputs, *args, **kwargs)
            if "attention_mask" in inputs:
                real, seqs = inputs["attention_mask"].sum(), inputs["attention_mask"].shape[0]
            else:  # padding-free: one flattened row, no pad tokens
                real, seqs = inputs["position_ids"].numel(), (inputs["position_ids"] == 0).sum()
            for key, value in (("tokens", real), ("padded_tokens", inputs["input_ids"].numel()),
                               ("loss_tokens", (inputs["labels"] != -100).sum()), ("seqs", seqs)):
                counts[key] = counts.get(key, 0) + int(value)
            counts["loss"] = float(loss)
            return loss

    class Timing(TrainerCallback):
        def on_step_begin(self, args, state, control, **kwargs):
            counts.clear()
            clock.begin()

        def on_step_end(self, args, state, control, **kwargs):
            clock.end(**counts)

    args = SFTConfig(
        output_dir=str(Path(spec["workdir"]) / "trl"), max_steps=WARMUP + spec["steps"],
        per_device_train_batch_size=SEQS_PER_STEP, gradient_accumulation_steps=1,
        learning_rate=LR, max_length=None if padding_free else MAX_LENGTH,
        completion_only_loss=True, seed=SEED, data_seed=SEED, use_cpu=True, report_to=[],
        save_strategy="no", logging_steps=10 ** 6, disable_tqdm=True, dataloader_num_workers=0,
        **settings)
    peft_config = None
    if spec["lora"]:
        peft_config = LoraConfig(r=LORA["r"], lora_alpha=LORA["alpha"],
                                 lora_dropout=LORA["dropout"], target_modules="all-linear",
                                 task_type="CAUSAL_LM")
    trainer = CountingSFTTrainer(model=model, args=args, processing_class=tokenizer,
                                 train_dataset=_trl_dataset(rows, tokenizer, padding_free),
                                 peft_config=peft_config, callbacks=[Timing()])
    trainer.train()
    result = clock.summary()
    result["notes"] = ", ".join([
        "bf16 autocast" if args.bf16 else "fp32",
        "grad ckpt" if args.gradient_checkpointing else "no grad ckpt",
        "padding-free" if args.padding_free else "padded",
        f"optim={getattr(args.optim, 'value', args.optim)}"])
    return result


# ---------------------------------------------------------------- the table

def flops_per_token(n_matmul: int, lora: bool) -> float:
    """Full FT: 6N (forward 2N, backward 2N for activation grads + 2N for weight grads).
    LoRA: 4N (frozen weights get no weight grads; the rank-16 adapters add < 1%)."""
    return (4 if lora else 6) * n_matmul


def bench_config(name, model_dir, info, mode, args, workdir, peak) -> list[dict]:
    lora = mode == "lora"
    spec = {"model_dir": model_dir, "lora": lora, "steps": args.steps,
            "data": str(workdir / "data.jsonl"), "batch_tokens": info["batch_tokens"]}
    rows = []
    for trainer in ["corral", *args.trl]:
        spec_run = dict(spec, trainer=trainer, workdir=str(workdir / f"{name}-{mode}-{trainer}"))
        print(f"  {name} {mode} {trainer} ...", flush=True)
        result = run_isolated(run_corral if trainer == "corral" else run_trl, spec_run)
        row = {"model": name, "mode": mode, "trainer": trainer, **result}
        if "error" not in result:
            tokens = result.get("tokens_per_step", 0)
            padded = result.get("padded_tokens_per_step", 0)
            row["pad_pct"] = 100 * (1 - tokens / padded) if padded else 0.0
            row["mfu"] = mfu(flops_per_token(info["n_matmul"], lora), result["tokens_per_s"], peak)
        rows.append(row)
    corral_tps = rows[0].get("tokens_per_s")
    for row in rows:
        if corral_tps and row.get("tokens_per_s"):
            row["ratio"] = corral_tps / row["tokens_per_s"]
        if "error" in row:
            row["notes"] = f"FAILED: {row['error']}"
    return rows


COLUMNS = [("model", "model", ""), ("mode", "mode", ""), ("trainer", "trainer", ""),
           ("seqs_per_step", "seq/step", ".1f"), ("tokens_per_step", "tok/step", ".0f"),
           ("loss_tokens_per_step", "loss tok/step", ".0f"), ("pad_pct", "pad %", ".0f"),
           ("median_step_s", "s/step (median)", ".3f"), ("tokens_per_s", "tokens/s", ".0f"),
           ("ratio", "corral x", ".2f"),
           ("peak_rss_mb", "peak RSS MiB", ".0f"), ("mfu", "MFU %", ".1f"),
           ("last_loss", "loss", ".3f"), ("notes", "settings", "")]


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=["embedded", "tiny", "both"], default="both")
    parser.add_argument("--mode", choices=["lora", "full", "both"], default="both")
    parser.add_argument("--steps", type=int, default=10,
                        help=f"timed steps, after {WARMUP} warm-up steps")
    parser.add_argument("--examples", type=int, default=0,
                        help="GSM8K rows to use (default: enough for all steps in one epoch)")
    parser.add_argument("--trl", nargs="*", default=list(TRL_VARIANTS), choices=list(TRL_VARIANTS),
                        help="TRL variants to run (default: all)")
    args = parser.parse_args(argv)
    args.examples = args.examples or SEQS_PER_STEP * (WARMUP + args.steps + 2)
    return args


def main(argv=None) -> None:
    args = parse_args(argv)
    import torch

    peak = matmul_peak_gflops()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; fp32 matmul peak "
          f"(2048x2048 torch.mm) = {peak:.1f} GFLOP/s")
    modes = ["lora", "full"] if args.mode == "both" else [args.mode]
    rows = load_gsm8k(args.examples)
    all_rows = []
    with tempfile.TemporaryDirectory(prefix="corral-bench-") as tmp:
        workdir = Path(tmp)
        (workdir / "data.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        for name, model_dir in model_dirs(args.model, workdir).items():
            info = describe_model(model_dir, rows)
            print(f"{name}: {info['n_matmul'] / 1e6:.2f}M matmul params, mean length "
                  f"{info['mean_len']:.0f} tokens; TRL {SEQS_PER_STEP} seq/step, corral "
                  f"batch_tokens={info['batch_tokens']} (~{SEQS_PER_STEP} seq/step); "
                  f"{args.examples} GSM8K rows", flush=True)
            for mode in modes:
                all_rows += bench_config(name, model_dir, info, mode, args, workdir, peak)
    print()
    print_table(all_rows, COLUMNS)
    print(f"\ntokens = real (non-pad) tokens of the {args.steps} timed steps; "
          f"corral x = corral tokens/s over the row's; MFU = F x tokens/s / matmul peak, "
          f"F = 6N (full) or 4N (LoRA), N = nn.Linear weights incl. LM head; "
          f"attention-score FLOPs not counted.")


if __name__ == "__main__":
    main()
