"""Shared helpers for the side-by-side benchmarks: isolated runs, step timing, peak memory,
matmul peak and FLOP utilisation, and plain-text tables.

    from common import matmul_peak_gflops, run_isolated, StepClock, print_table
"""
from __future__ import annotations

import multiprocessing
import os
import resource
import statistics
import sys
import time
import traceback
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

# GSM8K as JSONL (train.jsonl, test.jsonl): $CORRAL_GSM8K, else shared/data/gsm8k/ beside the
# repository (the layout of the machine the benches were written on).
GSM8K_DIR = Path(os.environ.get("CORRAL_GSM8K") or
                 Path(__file__).resolve().parents[2] / "shared" / "data" / "gsm8k")


def matmul_peak_gflops(n: int = 2048, repeats: int = 10, trials: int = 3) -> float:
    """Best fp32 `torch.mm` rate (GFLOP/s) of an n x n product, repeated: the roof for MFU."""
    import torch

    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)  # first call pays for allocation and kernel selection
    best = 0.0
    for _ in range(trials):
        start = time.perf_counter()
        for _ in range(repeats):
            torch.mm(a, b)
        seconds = time.perf_counter() - start
        best = max(best, 2 * n ** 3 * repeats / seconds / 1e9)
    return best


def peak_rss_mb() -> float:
    """This process's resident-set high-water mark in MiB (ru_maxrss: KiB on Linux, B on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2 ** 20 if sys.platform == "darwin" else peak / 2 ** 10


def _call_with_peak(fn, args):
    result = fn(*args)
    result["peak_rss_mb"] = peak_rss_mb()
    return result


def run_isolated(fn, *args) -> dict:
    """Run `fn(*args) -> dict` in a fresh spawned process so each trainer's memory peak is its own.

    The returned dict gains `peak_rss_mb`; a failure comes back as {"error": "..."} instead of
    raising, so one broken configuration does not end the whole benchmark.
    """
    context = multiprocessing.get_context("spawn")
    try:
        with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
            return pool.submit(_call_with_peak, fn, args).result()
    except BrokenProcessPool:
        return {"error": "the worker process died (out of memory?)"}
    except Exception as exc:  # noqa: BLE001 - reported as a table row, with the traceback on stderr
        traceback.print_exception(exc, file=sys.stderr)
        first_line = str(exc).splitlines()[0][:120] if str(exc) else ""
        return {"error": f"{type(exc).__name__}: {first_line}"}


class StepClock:
    """Wall time and token counts of optimizer steps, ignoring the first `warmup` steps.

    Call `begin()` when a step starts and `end(tokens, ...)` when its optimizer update is done.
    """

    def __init__(self, warmup: int):
        self.warmup = warmup
        self.steps_seen = 0
        self.seconds = 0.0
        self.step_seconds: list[float] = []
        self.counts: dict[str, float] = {}
        self.losses: list[float] = []
        self._start = None

    def begin(self) -> None:
        self._start = time.perf_counter()

    def end(self, **counts) -> None:
        elapsed = time.perf_counter() - self._start
        self.steps_seen += 1
        if self.steps_seen <= self.warmup:
            return
        self.seconds += elapsed
        self.step_seconds.append(elapsed)
        for key, value in counts.items():
            if key == "loss":
                self.losses.append(float(value))
            else:
                self.counts[key] = self.counts.get(key, 0) + float(value)

    @property
    def timed_steps(self) -> int:
        return max(0, self.steps_seen - self.warmup)

    def summary(self) -> dict:
        steps = max(self.timed_steps, 1)
        out = {"timed_steps": self.timed_steps, "seconds": self.seconds,
               "median_step_s": statistics.median(self.step_seconds) if self.step_seconds else 0.0,
               "step_seconds": [round(s, 4) for s in self.step_seconds]}
        out.update({f"{key}_per_step": value / steps for key, value in self.counts.items()})
        out["tokens_per_s"] = self.counts.get("tokens", 0) / self.seconds if self.seconds else 0.0
        out["last_loss"] = self.losses[-1] if self.losses else float("nan")
        return out


def mfu(flops_per_token: float, tokens_per_s: float, peak_gflops: float) -> float:
    """Model FLOP utilisation in percent: useful FLOP/s over the measured matmul peak."""
    return 100 * flops_per_token * tokens_per_s / (peak_gflops * 1e9) if peak_gflops else 0.0


def matmul_params(model) -> int:
    """Parameters that take part in a matmul per token: every nn.Linear weight (the LM head
    included, once, even when tied to the embedding); embedding look-ups, norms and biases
    cost no matmul."""
    import torch

    return sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Linear))


def format_cell(value, fmt: str) -> str:
    if value is None or value == "":
        return "-"
    if isinstance(value, str):
        return value
    try:
        return format(value, fmt)
    except (TypeError, ValueError):
        return str(value)


def print_table(rows: list[dict], columns: list[tuple[str, str, str]], out=print) -> None:
    """Print `rows` as an aligned Markdown table; columns are (key, header, format spec)."""
    cells = [[format_cell(row.get(key), fmt) for key, _, fmt in columns] for row in rows]
    headers = [header for _, header, _ in columns]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]

    def line(values):
        return "| " + " | ".join(v.rjust(w) if i else v.ljust(w)
                                 for i, (v, w) in enumerate(zip(values, widths))) + " |"

    out(line(headers))
    out("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for row in cells:
        out(line(row))
