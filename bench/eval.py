"""Generation for evaluation: corral's engine vs plain batched `transformers.generate`.

    python bench/eval.py                       # embedded model, 8 GSM8K prompts, n = 8
    python bench/eval.py --model tiny --prompts 4 --max-new-tokens 32
    python bench/eval.py --few-shot 4            # GSM8K's usual few-shot prompts

Same model, prompts (chat-templated GSM8K test questions), n samples per prompt, max new
tokens and temperature, one process run each. Prints samples/s, generated tokens/s, the
ratio and peak memory; checks that greedy outputs are identical token for token.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import GSM8K_DIR, print_table, run_isolated

GSM8K = GSM8K_DIR / "test.jsonl"


def load(model_dir: str):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32,
                                                 attn_implementation="sdpa").eval()
    return model, AutoTokenizer.from_pretrained(model_dir)


def prompts_for(tokenizer, n_prompts: int, few_shot: int = 0) -> list[list[int]]:
    """Chat prompts for the first GSM8K test questions, after `few_shot` worked train examples
    as earlier user/assistant turns (the usual few-shot GSM8K evaluation)."""
    rows = [json.loads(line) for line in GSM8K.read_text().splitlines()[:n_prompts]]
    train = GSM8K.with_name("train.jsonl").read_text().splitlines()[:few_shot]
    shots = [turn for line in train for turn in (
        {"role": "user", "content": json.loads(line)["question"]},
        {"role": "assistant", "content": json.loads(line)["answer"]})]
    chats = [[*shots, {"role": "user", "content": r["question"]}] for r in rows]
    return [tokenizer(tokenizer.apply_chat_template(c, tokenize=False, add_generation_prompt=True),
                      add_special_tokens=False)["input_ids"] for c in chats]


def run_corral(model_dir, n_prompts, n, max_new, temperature, few_shot) -> dict:
    from corral.infer.engine import Engine, SamplingParams

    model, tok = load(model_dir)
    prompts = prompts_for(tok, n_prompts, few_shot)
    engine = Engine.hf(model, tok, batch_size=n_prompts * n)
    engine.generate(prompts[:1], SamplingParams(max_new_tokens=4, n=2, seed=1))  # warm-up
    start = time.perf_counter()
    out = engine.generate(prompts, SamplingParams(max_new_tokens=max_new, n=n,
                                                  temperature=temperature, seed=0))
    seconds = time.perf_counter() - start
    tokens = sum(len(g.token_ids) for gens in out for g in gens)
    greedy = engine.generate(prompts, SamplingParams(max_new_tokens=max_new, temperature=0.0))
    return {"seconds": seconds, "samples": n_prompts * n, "tokens": tokens,
            "greedy": [g[0].token_ids for g in greedy]}


def run_hf(model_dir, n_prompts, n, max_new, temperature, few_shot) -> dict:
    import torch

    model, tok = load(model_dir)
    prompts = prompts_for(tok, n_prompts, few_shot)
    tok.padding_side = "left"
    batch = tok.pad({"input_ids": prompts}, return_tensors="pt")
    eos = tok.eos_token_id
    with torch.inference_mode():  # warm-up, as for corral
        model.generate(**tok.pad({"input_ids": prompts[:1]}, return_tensors="pt"),
                       max_new_tokens=4, do_sample=True, num_return_sequences=2,
                       pad_token_id=tok.pad_token_id)
    start = time.perf_counter()
    with torch.inference_mode():
        out = model.generate(**batch, do_sample=True, temperature=temperature,
                             num_return_sequences=n, max_new_tokens=max_new,
                             pad_token_id=tok.pad_token_id, top_k=0)
    seconds = time.perf_counter() - start
    new = out[:, batch["input_ids"].shape[1]:]
    tokens = int(sum(_length(row, eos, tok.pad_token_id) for row in new))
    with torch.inference_mode():
        greedy = model.generate(**batch, do_sample=False, max_new_tokens=max_new,
                                pad_token_id=tok.pad_token_id)[:, batch["input_ids"].shape[1]:]
    return {"seconds": seconds, "samples": n_prompts * n, "tokens": tokens,
            "greedy": [row[:_length(row, eos, tok.pad_token_id)].tolist() for row in greedy]}


def _length(row, eos, pad) -> int:
    """Generated tokens including the first EOS (as corral counts them)."""
    for i, token in enumerate(row.tolist()):
        if token == eos:
            return i + 1
    return int((row != pad).sum()) if pad != eos else len(row)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="embedded", choices=["embedded", "tiny"])
    parser.add_argument("--prompts", type=int, default=8)
    parser.add_argument("-n", type=int, default=8)
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--few-shot", type=int, default=0,
                        help="worked GSM8K train examples before each question")
    args = parser.parse_args()
    if args.model == "embedded":
        from corral.model.resolve import resolve_model
        model_dir = resolve_model("smollm2-135m-instruct")
    else:
        from corral.testing import save_tiny
        model_dir = save_tiny(tempfile.mkdtemp())
    spec = (model_dir, args.prompts, args.n, args.max_new_tokens, args.temperature,
            args.few_shot)
    rows = []
    for name, fn in (("corral engine", run_corral), ("transformers generate", run_hf)):
        result = run_isolated(fn, *spec)
        result["name"] = name
        if "seconds" in result:
            result["samples_s"] = result["samples"] / result["seconds"]
            result["tokens_s"] = result["tokens"] / result["seconds"]
        rows.append(result)
    base = rows[1].get("tokens_s")
    for row in rows:
        row["ratio"] = row.get("samples_s", 0) / rows[1]["samples_s"] if base else None
    print(f"model {args.model}, {args.prompts} prompts x n={args.n}, {args.few_shot}-shot, "
          f"max_new_tokens={args.max_new_tokens}, temperature={args.temperature}")
    print_table(rows, [("name", "engine", "s"), ("samples_s", "samples/s", ".2f"),
                       ("tokens_s", "tokens/s", ".1f"), ("ratio", "corral x (samples/s)", ".2f"),
                       ("peak_rss_mb", "peak RSS MiB", ".0f"), ("error", "error", "s")])
    same = rows[0].get("greedy") == rows[1].get("greedy")
    print(f"greedy outputs identical: {same}")


if __name__ == "__main__":
    main()
