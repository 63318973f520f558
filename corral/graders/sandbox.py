"""Runs untrusted `python` grader source in a separate, limited process, one process per batch.

Isolation: `python -I`, an empty scratch working dir, no inherited environment, memory/CPU/file
rlimits, no network (a new network namespace where the kernel allows it, and sockets disabled
in Python either way), a per-sample wall-clock timeout that kills the whole process group.
Not isolated: the filesystem (the child runs as the same user) and other processes.
"""
from __future__ import annotations

import json
import os
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import time

# Reasons start with one of these words, so callers can tell a slow grader from a crashed one.
TIMEOUT, KILLED, ERROR = "timeout", "killed", "error"

# The child's program. It takes {"source", "pairs", limits} as JSON on stdin and writes one JSON
# line per sample to the original stdout; user prints go to stderr so they cannot corrupt that.
_CHILD = r'''
import ctypes, json, math, numbers, os, resource, sys, traceback

def limit(memory_mb, cpu_s):
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    size = memory_mb * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (size, size))
    resource.setrlimit(resource.RLIMIT_FSIZE, (size, size))
    if cpu_s:  # SIGXCPU at the soft limit; the hard one (SIGKILL) only if that is caught
        resource.setrlimit(resource.RLIMIT_CPU, (cpu_s, cpu_s + 1))

def cut_network():
    try:  # a fresh network namespace has no interfaces up: works as root, else fails quietly
        ctypes.CDLL(None, use_errno=True).unshare(0x40000000)  # CLONE_NEWNET
    except Exception:
        pass
    import socket, _socket
    def refuse(*args, **kwargs):
        raise PermissionError("network access is disabled in python graders")
    class NoSocket(_socket.socket):
        def __init__(self, *args, **kwargs):
            refuse()
    for module in (socket, _socket):
        module.socket = NoSocket
        for name in ("create_connection", "getaddrinfo", "socketpair", "fromfd",
                     "create_server", "gethostbyname", "gethostbyname_ex"):
            if hasattr(module, name):
                setattr(module, name, refuse)

def main():
    job = json.loads(sys.stdin.buffer.read())
    out = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)
    limit(job["memory_mb"], job["cpu_s"])
    cut_network()
    def emit(record):
        out.write(json.dumps(record) + "\n")
        out.flush()
    namespace = {"__name__": "__grader__"}
    try:
        exec(compile(job["source"], "<grader>", "exec"), namespace)
        grade = namespace.get("grade")
        if not callable(grade):
            raise NameError("the source defines no function grade(sample, item)")
    except BaseException as exc:
        why = "".join(traceback.format_exception_only(type(exc), exc)).strip()
        for i in range(len(job["pairs"])):
            emit({"i": i, "error": f"error: the grader source failed to load: {why}"[:2000]})
        return
    for i, (item, sample) in enumerate(job["pairs"]):
        try:
            value = grade(sample, item)
        except BaseException as exc:
            why = "".join(traceback.format_exception_only(type(exc), exc)).strip()
            emit({"i": i, "error": f"error: grade() raised {why}"[:2000]})
            continue
        if isinstance(value, numbers.Real) and math.isfinite(float(value)):
            emit({"i": i, "value": float(value)})
        else:
            emit({"i": i, "error": f"error: grade() returned {value!r:.200}, not a finite number"})

main()
'''


def run_python_grader(source: str, pairs: list[tuple[dict, dict]], timeout_s: float = 120,
                      memory_mb: int = 2048, cpu_s: int | None = None
                      ) -> list[tuple[float, str | None]]:
    """Call `grade(sample, item)` from `source` on every (item, sample) pair in one child process.

    Returns (value, None) per pair, or (0.0, reason) when that sample raised, returned a
    non-number, or never ran because the process was killed. `timeout_s` bounds the start-up
    and each sample in wall-clock time; `memory_mb` caps the address space; `cpu_s` the total
    CPU seconds of the batch.
    """
    if not pairs:
        return []
    job = json.dumps({"source": source, "pairs": [[item, sample] for item, sample in pairs],
                      "memory_mb": int(memory_mb), "cpu_s": cpu_s}, default=str).encode()
    scratch = tempfile.mkdtemp(prefix="corral-grader-")
    try:
        records, failure = _run_child(job, scratch, timeout_s)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    results = []
    for i in range(len(pairs)):
        record = records.get(i)
        if record is None:
            results.append((0.0, failure))
        elif "value" in record:
            results.append((record["value"], None))
        else:
            results.append((0.0, record["error"]))
    return results


def _run_child(job: bytes, scratch: str, timeout_s: float) -> tuple[dict[int, dict], str]:
    """Run the child, collecting result lines as they come; the deadline moves with each one."""
    proc = subprocess.Popen(
        [sys.executable, "-I", "-c", _CHILD], cwd=scratch,
        env={"HOME": scratch, "TMPDIR": scratch},  # nothing of the parent's environment
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        start_new_session=True)  # its own process group, so the kill reaches its children too
    records: dict[int, dict] = {}
    stderr_tail, pending = b"", b""
    timed_out = False
    try:
        proc.stdin.write(job)
        proc.stdin.close()
    except BrokenPipeError:
        pass  # the child died at start-up; its stderr says why
    selector = selectors.DefaultSelector()
    selector.register(proc.stdout, selectors.EVENT_READ)
    selector.register(proc.stderr, selectors.EVENT_READ)
    deadline = time.monotonic() + timeout_s
    while selector.get_map():
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            timed_out = True
            break
        for key, _ in selector.select(timeout=remaining):
            chunk = os.read(key.fd, 65536)
            if not chunk:
                selector.unregister(key.fileobj)
            elif key.fileobj is proc.stderr:
                stderr_tail = (stderr_tail + chunk)[-4000:]
            else:
                *lines, pending = (pending + chunk).split(b"\n")
                for line in lines:
                    try:
                        record = json.loads(line)
                        records[int(record["i"])] = record
                    except (ValueError, KeyError, TypeError):
                        pass  # not a result line; the sample stays without a result
                if lines:
                    deadline = time.monotonic() + timeout_s
    selector.close()
    _kill_group(proc)
    return records, _failure_reason(proc, timed_out, timeout_s, stderr_tail)


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass  # already gone
    proc.wait()
    proc.stdout.close()
    proc.stderr.close()


def _failure_reason(proc, timed_out: bool, timeout_s: float, stderr_tail: bytes) -> str:
    """Why the samples without a result got none."""
    if timed_out:
        return f"{TIMEOUT}: the python grader ran past {timeout_s:g} s and was killed"
    tail = stderr_tail.decode("utf-8", "replace").strip()[-500:]
    if proc.returncode < 0:
        name = signal.Signals(-proc.returncode).name
        hint = " (CPU limit)" if name == "SIGXCPU" else " (likely the memory limit)"
        return f"{KILLED}: the python grader process died of {name}{hint}: {tail}".rstrip(": ")
    return f"{KILLED}: the python grader process exited with code {proc.returncode}: {tail}"
