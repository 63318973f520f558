"""Packed attention: forward + backward over S sequences of L tokens on a randomly initialised
Llama (corral.testing.tiny_model, byte vocabulary), in three layouts:

  dense    one packed row [1, S*L], transformers' sdpa with the block-diagonal mask it builds
           from the restarting position ids (attention over the whole row: (S*L)^2 scores);
  varlen   the same packed row with corral's per-sequence attention (corral/model/attention.py:
           S causal sdpa calls of L^2 scores each);
  padded   an ordinary [S, L] batch (no padding is needed: every sequence has L tokens).

All three compute the same loss (checked: the script fails if they differ by more than 1e-4),
so the times compare attention layouts only. Each layout is timed `--repeats` times after one
warm-up and the median is printed, with the load average (a loaded machine inflates times).

    python scripts/bench_packed_attention.py            # docs/results.md: 4 layers, 256 wide,
                                                        # 8 sequences of 475 tokens
    python scripts/bench_packed_attention.py --tiny     # a seconds-long smoke run
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import torch


def layouts(seqs: int, length: int, vocab: int, seed: int) -> dict:
    """{layout: (input_ids, position_ids)}, the same tokens in each."""
    g = torch.Generator().manual_seed(seed)
    tokens = torch.randint(3, vocab, (seqs, length), generator=g)
    positions = torch.arange(length).repeat(seqs, 1)
    packed = (tokens.reshape(1, -1), positions.reshape(1, -1))
    return {"dense": packed, "varlen": packed, "padded": (tokens, positions)}


def step(model, ids: torch.Tensor, positions: torch.Tensor) -> tuple[float, float]:
    """One forward + backward; (seconds, mean next-token loss within each sequence)."""
    model.zero_grad(set_to_none=True)
    start = time.perf_counter()
    # use_cache=False as in training: with a cache, transformers builds no packed mask
    logits = model(input_ids=ids, position_ids=positions, use_cache=False).logits.float()
    starts = positions[:, 1:] == 0  # the first token of the next sequence is not a target
    logp = torch.log_softmax(logits[:, :-1], dim=-1)
    nll = -logp.gather(-1, ids[:, 1:, None]).squeeze(-1)
    loss = nll.masked_fill(starts, 0).sum() / (~starts).sum()
    loss.backward()
    return time.perf_counter() - start, loss.item()


def run(hidden: int, layers: int, seqs: int, length: int, repeats: int, seed: int = 0) -> dict:
    from corral.model.attention import use_varlen
    from corral.testing import tiny_model

    torch.manual_seed(seed)
    out = {}
    for name, (ids, positions) in layouts(seqs, length, 259, seed).items():
        model = tiny_model(hidden=hidden, layers=layers, seed=seed)  # same weights each time
        if name == "varlen":
            use_varlen(model)
        step(model, ids, positions)  # warm-up
        runs = [step(model, ids, positions) for _ in range(repeats)]
        out[name] = {"seconds": round(statistics.median(s for s, _ in runs), 4),
                     "loss": runs[0][1]}
    losses = [v["loss"] for v in out.values()]
    if max(losses) - min(losses) > 1e-4:
        raise SystemExit(f"the layouts disagree: losses {losses}; the timings compare "
                         "different computations")
    return out


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--seqs", type=int, default=8)
    ap.add_argument("--length", type=int, default=475)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--tiny", action="store_true",
                    help="smoke run: 2 layers, 64 wide, 3 sequences of 24 tokens, 1 repeat")
    args = ap.parse_args(argv)
    if args.tiny:
        args.hidden, args.layers, args.seqs, args.length, args.repeats = 64, 2, 3, 24, 1
    result = run(args.hidden, args.layers, args.seqs, args.length, args.repeats, args.seed)
    report = {"settings": {k: v for k, v in vars(args).items() if k != "tiny"},
              "threads": torch.get_num_threads(), "load_average": os.getloadavg(),
              **result}
    for name, row in result.items():
        print(f"{name:7s} {row['seconds']:.3f} s  (loss {row['loss']:.5f})")
    print(json.dumps(report))
    return report


if __name__ == "__main__":
    main()
