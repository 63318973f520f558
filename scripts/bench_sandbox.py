"""Python-grader sandbox start-up: the cost bubblewrap adds to a batch of `python` grader calls.

Runs `--batches` one-sample batches of a trivial grader (`return 1.0`) through the grader
runner of corral/graders/sandbox.py two ways, alternating:

  none    the unsandboxed child (`python -I`, empty environment, rlimits): what every batch
          cost before the sandbox, and what --allow-unsandboxed-graders runs where bwrap is
          missing;
  bwrap   the bubblewrap sandbox python graders use wherever it works;

and prints for each the median start-up (launch until the child is ready to load the grader,
the runner's own `startup_s`) and the median wall time of the whole batch, plus the time of the
one probe a process makes before its first sandboxed batch, the load average and the CPU
count (a busy machine inflates every number).

    python scripts/bench_sandbox.py                # docs/results.md: 20 batches each
    python scripts/bench_sandbox.py --batches 2    # a seconds-long smoke run
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import time

GRADER = "def grade(sample, item):\n    return 1.0\n"


def one_batch(bwrap: str | None) -> tuple[float, float]:
    """(start-up seconds, batch seconds) of one one-sample batch; bwrap=None: unsandboxed."""
    from corral.graders import sandbox

    info: dict = {}
    start = time.perf_counter()
    (value, reason), = sandbox._run(GRADER, [({}, {"text": "x"})], 30, 2048, None,
                                    sandbox.SCRATCH_MB, sandbox.MAX_PROCESSES, bwrap, info)
    seconds = time.perf_counter() - start
    if reason is not None or value != 1.0:
        raise SystemExit(f"the {'bwrap' if bwrap else 'unsandboxed'} grader failed: {reason}")
    return info["startup_s"], seconds


def main(argv=None) -> dict:
    from corral.graders import sandbox

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--batches", type=int, default=20, help="one-sample batches per side")
    args = ap.parse_args(argv)
    if args.batches < 1:
        raise SystemExit(f"--batches {args.batches}: run at least 1 batch")
    start = time.perf_counter()
    ok, why = sandbox.sandbox_status(refresh=True)
    probe_s = time.perf_counter() - start
    sides = {"none": None}
    if ok:
        sides["bwrap"] = shutil.which("bwrap")
    else:
        print(f"no sandbox here ({why}): timing the unsandboxed child only")
    times: dict = {side: [] for side in sides}
    for _ in range(args.batches):
        for side, bwrap in sides.items():
            times[side].append(one_batch(bwrap))
    report = {"batches": args.batches, "sandbox": why, "probe_ms": round(probe_s * 1e3, 1),
              "cpus": os.cpu_count(), "load_average": os.getloadavg()}
    for side, rows in times.items():
        report[side] = {"startup_ms": round(statistics.median(s for s, _ in rows) * 1e3, 1),
                        "batch_ms": round(statistics.median(b for _, b in rows) * 1e3, 1)}
        print(f"{side:5s} start-up {report[side]['startup_ms']} ms, whole batch "
              f"{report[side]['batch_ms']} ms (median of {args.batches})")
    print(f"probe {report['probe_ms']} ms; load average {report['load_average']}")
    print(json.dumps(report))
    return report


if __name__ == "__main__":
    main()
