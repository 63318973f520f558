"""Runs untrusted `python` grader source in a sandbox, one sandbox (one process tree) per batch.

The sandbox is bubblewrap (`bwrap`): a private mount namespace whose root is an empty read-only
tmpfs holding read-only binds of /usr (and the /bin, /lib* links), the interpreter's prefixes and
site-packages, and /etc/ld.so.cache; a size-limited tmpfs scratch folder at /tmp (its empty
/tmp/work is the working directory and HOME); a fresh /proc of its own PID namespace; a minimal
/dev. It also gets new network, IPC, UTS and cgroup namespaces, no inherited environment or file
descriptors, and a new session. Inside, the child (graders/sandbox_child.py) sets rlimits
(address space, file size, CPU seconds, process count, no core dumps), runs under a non-root
kernel uid (so RLIMIT_NPROC is enforced), installs a seccomp filter that refuses new user
namespaces, and replaces Python's socket functions.
A per-sample wall-clock timeout kills the sandbox; killing bwrap kills its whole PID namespace.

Where bwrap is missing or cannot make the namespaces, python graders are refused (raising
SandboxUnavailable) unless the user opts in with `allow_unsandboxed(True)` or the environment
variable CORRAL_ALLOW_UNSANDBOXED_GRADERS=1; then they run in the old, weaker child process
(`python -I`, empty environment, rlimits, network namespace if root) after one loud warning.
See docs/evaluation.md, "Python grader sandbox", for what is and is not isolated.
"""
from __future__ import annotations

import json
import os
import secrets
import selectors
import shutil
import signal
import site
import subprocess
import sys
import tempfile
import threading
import time

# Reasons start with one of these words, so callers can tell a slow grader from a crashed one.
TIMEOUT, KILLED, ERROR = "timeout", "killed", "error"

ALLOW_ENV = "CORRAL_ALLOW_UNSANDBOXED_GRADERS"
SCRATCH_MB, MAX_PROCESSES = 1024, 64  # OpenAI: 1 GB of disk
_SHM_BYTES = 16 << 20  # /dev/shm, a second small tmpfs (multiprocessing wants one)
_WORK = "/tmp/work"  # the grader's working folder and HOME, on the scratch tmpfs
_MAX_LINE = 1 << 20  # a result line longer than this is not a result: the sandbox is killed


class SandboxUnavailable(RuntimeError):
    """Python graders cannot be isolated on this host and the user has not opted out of it."""


def _child_source() -> str:
    """The child's program (graders/sandbox_child.py) as text, run with `python -I -c` so the
    sandbox binds nothing of corral's. Read where this file lives, every batch (cheap)."""
    return _read_text(os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                   "sandbox_child.py"))


def _read_text(path: str) -> str:
    with open(path, encoding="utf-8") as f:
        return f.read()


# ---------------------------------------------------------------- opting out, probing
_lock = threading.Lock()
_allow: bool | None = None  # None: the environment variable decides
_status: tuple[bool, str] | None = None  # (sandboxed, what the probe found), probed once
_warned = False


def allow_unsandboxed(allow: bool = True) -> None:
    """Let python graders run without the sandbox where it is unavailable (the CLI's
    --allow-unsandboxed-graders). Where the sandbox works it is used regardless."""
    global _allow
    _allow = bool(allow)


def unsandboxed_allowed() -> bool:
    if _allow is not None:
        return _allow
    return os.environ.get(ALLOW_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def sandbox_status(refresh: bool = False) -> tuple[bool, str]:
    """(True, "bwrap X ...") when graders can be isolated here, else (False, why not)."""
    global _status
    with _lock:
        if _status is None or refresh:
            _status = _probe()
        return _status


def require_sandbox() -> bool:
    """Raise SandboxUnavailable if python graders cannot run (no sandbox, no opt-in); True when
    they will be sandboxed. Warns once on stderr when they will run unsandboxed."""
    global _warned
    ok, why = sandbox_status()
    if ok:
        return True
    if not unsandboxed_allowed():
        raise SandboxUnavailable(
            f"python graders cannot be sandboxed on this host: {why}. Install bubblewrap "
            "(Debian/Ubuntu: apt-get install bubblewrap) on a kernel that allows namespaces, or "
            f"run them unsandboxed with --allow-unsandboxed-graders or {ALLOW_ENV}=1 (the grader "
            "code can then read and write your files and see your processes)")
    if not _warned:
        _warned = True
        print(f"corral: WARNING: python graders run UNSANDBOXED ({why}); their code can read and "
              "write your files and see your processes", file=sys.stderr, flush=True)
    return False


_PROBE = '''
import os
def grade(sample, item):
    assert os.getpid() < 10, f"not in a PID namespace (pid {os.getpid()})"
    assert os.getuid() != 0 and os.geteuid() != 0, "still uid 0"
    try:
        open("/corral-probe", "w")
    except OSError:
        pass
    else:
        raise AssertionError("the root is writable")
    assert not os.path.exists("/etc/passwd"), "the host's /etc is visible"
    return 1.0
'''


def _probe() -> tuple[bool, str]:
    """Run one real sandbox with a grader that checks it; the whole machinery or nothing."""
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        return False, "bubblewrap (bwrap) is not installed"
    try:
        version = subprocess.run([bwrap, "--version"], capture_output=True, text=True,
                                 timeout=10, env={}).stdout.strip()
        (value, reason), = _run(_PROBE, [({}, {})], 30, 256, 10, SCRATCH_MB, MAX_PROCESSES,
                                bwrap, {})
    except (OSError, subprocess.SubprocessError) as exc:
        return False, f"bwrap failed to start: {exc}"
    if reason is not None:
        return False, f"{bwrap} ({version or 'unknown version'}) failed the probe: {reason}"
    mode = "root, grader uid dropped" if os.geteuid() == 0 else "unprivileged user namespace"
    return True, f"{version or 'bwrap'} at {bwrap} ({mode})"


# ---------------------------------------------------------------- running a batch
def run_python_grader(source: str, pairs: list[tuple[dict, dict]], timeout_s: float = 120,
                      memory_mb: int = 2048, cpu_s: int | None = None, *,
                      scratch_mb: int = SCRATCH_MB, max_processes: int = MAX_PROCESSES,
                      info: dict | None = None) -> list[tuple[float, str | None]]:
    """Call `grade(sample, item)` from `source` on every (item, sample) pair in one sandbox.

    Returns (value, None) per pair, or (0.0, reason) when that sample raised, returned a
    non-number, or never ran because the sandbox was killed. `timeout_s` bounds the start-up
    and each sample in wall-clock time; `memory_mb` caps each process's address space; `cpu_s`
    the CPU seconds of each process; `scratch_mb` the writable /tmp; `max_processes` the
    processes and threads. `info`, when given, receives {"sandbox": "bwrap" or "none",
    "startup_s": seconds from launch until the sandbox was ready to load the source}.
    Raises SandboxUnavailable when there is no sandbox and no opt-in (see require_sandbox).
    """
    if not pairs:
        return []
    bwrap = shutil.which("bwrap") if require_sandbox() else None
    return _run(source, pairs, timeout_s, memory_mb, cpu_s, scratch_mb, max_processes, bwrap,
                info if info is not None else {})


def _run(source, pairs, timeout_s, memory_mb, cpu_s, scratch_mb, max_processes, bwrap, info):
    job = {"source": source, "pairs": [[item, sample] for item, sample in pairs], "cpu_s": cpu_s}
    records, failure = launch(job, len(pairs), timeout_s, memory_mb, scratch_mb, max_processes,
                              bwrap, info)
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


def launch(job: dict, n: int, timeout_s: float, memory_mb: int, scratch_mb: int,
           max_processes: int, bwrap: str | None, info: dict, valid=None,
           what: str = "the python grader") -> tuple[dict[int, dict], str]:
    """One sandbox (bwrap, or with `bwrap` None the weaker child process) running the child on
    `job` plus its limits; (result records by index, why the ones missing are missing).
    `valid(record, n)` accepts a result line (default: a grader's value or error)."""
    root = os.geteuid() == 0
    job = json.dumps({
        **job, "memory_mb": int(memory_mb), "cpu_s": job.get("cpu_s"),
        # unsandboxed, RLIMIT_NPROC would count every process of the user's: left unset there
        "nproc": int(max_processes) if bwrap else None,
        # a uid of its own per batch: nothing else runs as it, so it owns nothing and its
        # process count is this sandbox's alone
        "uid": 2_000_000_000 + secrets.randbelow(100_000_000) if bwrap and root else None,
        "seccomp": bool(bwrap), "pidns": bool(bwrap)}, default=str).encode()
    scratch = None
    if bwrap:
        argv, env, cwd = _bwrap_argv(bwrap, root, int(scratch_mb) << 20), {}, "/"
    else:
        scratch = tempfile.mkdtemp(prefix="corral-grader-")
        argv = [sys.executable, "-I", "-c", _child_source()]
        env, cwd = {"HOME": scratch, "TMPDIR": scratch}, scratch  # nothing of the parent's
    info.update(sandbox="bwrap" if bwrap else "none", startup_s=None)
    try:
        return _run_child(argv, env, cwd, job, timeout_s, n, info, valid or _valid, what)
    finally:
        if scratch:
            shutil.rmtree(scratch, ignore_errors=True)


def _python_paths() -> list[str]:
    """What the interpreter needs: its prefixes and site-packages (a venv and its base)."""
    paths = [sys.prefix, sys.exec_prefix, sys.base_prefix, sys.base_exec_prefix,
             os.path.dirname(os.path.realpath(sys.executable)), *site.getsitepackages()]
    return [p for p in dict.fromkeys(os.path.abspath(p) for p in paths) if os.path.isdir(p)]


def _bwrap_argv(bwrap: str, root: bool, scratch_bytes: int) -> list[str]:
    argv = [bwrap, "--unshare-pid", "--unshare-net", "--unshare-ipc", "--unshare-uts",
            "--unshare-cgroup-try", "--hostname", "grader", "--die-with-parent", "--new-session",
            "--clearenv", "--cap-drop", "ALL"]
    if root:  # kernel uid 0 in any user namespace skips RLIMIT_NPROC: the child drops to another
        argv += ["--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID"]
    else:  # unprivileged: a user namespace, in which no further one may be made
        argv += ["--unshare-user", "--disable-userns"]
    # The scratch tmpfs first: a venv or checkout under /tmp (CI clones) is then bound on top
    # of it instead of being hidden by it.
    # The grader starts in an empty folder of it, even when bound paths show under /tmp.
    argv += ["--size", str(scratch_bytes), "--perms", "1777", "--tmpfs", "/tmp",
             "--perms", "1777", "--dir", _WORK]
    bound: list[str] = []
    for top in ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"):
        if os.path.islink(top):
            argv += ["--symlink", os.readlink(top), top]
            bound.append(top)
        elif os.path.isdir(top):
            argv += ["--ro-bind", top, top]
            bound.append(top)
    created: set[str] = set()
    for path in ("/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/localtime"):  # of /etc, only these
        if os.path.exists(path):
            argv += ["--ro-bind", path, path]
            created.add("/etc")
    for path in sorted(_python_paths(), key=len):
        if any(path == b or path.startswith(b.rstrip("/") + "/") for b in bound):
            continue
        argv += ["--ro-bind", path, path]
        bound.append(path)
        parent = os.path.dirname(path)
        while parent != "/":
            created.add(parent)
            parent = os.path.dirname(parent)
    argv += ["--proc", "/proc", "--dev", "/dev",
             "--size", str(_SHM_BYTES), "--perms", "1777", "--tmpfs", "/dev/shm"]
    # bwrap makes these 0700 and the uid must pass; /tmp keeps its 1777
    for parent in sorted(created - set(bound) - {"/tmp"}):
        argv += ["--chmod", "0755", parent]
    argv += ["--remount-ro", "/", "--chdir", _WORK,
             "--setenv", "HOME", _WORK, "--setenv", "TMPDIR", "/tmp"]
    for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        argv += ["--setenv", name, "1"]  # thread pools count against the process limit
    return argv + ["--", sys.executable, "-I", "-c", _child_source()]


def _valid(record, n: int) -> bool:
    """A result line for sample i < n: a finite float value or a string error."""
    if not isinstance(record, dict) or type(record.get("i")) is not int:
        return False
    if not 0 <= record["i"] < n:
        return False
    value = record.get("value")
    if isinstance(value, float) and value - value == 0:  # finite
        return True
    return value is None and isinstance(record.get("error"), str)


def _run_child(argv, env, cwd, job: bytes, timeout_s: float, n: int, info: dict, valid=None,
               what: str = "the python grader") -> tuple[dict[int, dict], str]:
    """Run the child, collecting result lines as they come; the deadline moves with each one."""
    launched = time.perf_counter()
    proc = subprocess.Popen(
        argv, cwd=cwd, env=env,
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        start_new_session=True)  # its own process group, so the kill reaches its children too
    records: dict[int, dict] = {}
    stderr_tail, pending = b"", b""
    timed_out = overlong = False
    try:
        proc.stdin.write(job)
        proc.stdin.close()
    except BrokenPipeError:
        pass  # the child died at start-up; its stderr says why
    selector = selectors.DefaultSelector()
    selector.register(proc.stdout, selectors.EVENT_READ)
    selector.register(proc.stderr, selectors.EVENT_READ)
    deadline = time.monotonic() + timeout_s
    while selector.get_map() and not overlong:
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
                    except ValueError:
                        continue  # not a result line; the sample stays without a result
                    if info.get("startup_s") is None and record == {"ready": True}:
                        info["startup_s"] = time.perf_counter() - launched
                    elif (valid or _valid)(record, n):
                        records.setdefault(record["i"], record)
                if lines:
                    deadline = time.monotonic() + timeout_s
                overlong = len(pending) > _MAX_LINE
    selector.close()
    _kill_group(proc)
    if overlong:
        return records, f"{KILLED}: {what} wrote over {_MAX_LINE} bytes on one line " \
                        "of the result channel"
    return records, _failure_reason(proc, timed_out, timeout_s, stderr_tail,
                                    info.get("sandbox") == "bwrap", what)


def _kill_group(proc: subprocess.Popen) -> None:
    """SIGKILL bwrap's group and wait until its PID namespace is gone.

    bwrap's death (--die-with-parent) kills the namespace's init, and the kernel then kills
    every process in the namespace, but asynchronously: the init's exit waits for all of them,
    so we wait for the init (a child of bwrap) to be gone or a zombie before returning.
    """
    inits = _children(proc.pid)
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass  # already gone
    proc.wait()
    deadline = time.monotonic() + 5
    while inits and time.monotonic() < deadline:
        inits = [pid for pid in inits if _alive(pid)]
        if inits:
            time.sleep(0.005)
    proc.stdout.close()
    proc.stderr.close()


def _children(pid: int) -> list[int]:
    """Host pids of `pid`'s children (empty where /proc does not say)."""
    found: list[int] = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as f:
                found += [int(child) for child in f.read().split()]
    except OSError:
        pass
    return found


def _alive(pid: int) -> bool:
    """True while `pid` exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def _failure_reason(proc, timed_out: bool, timeout_s: float, stderr_tail: bytes,
                    via_bwrap: bool, what: str = "the python grader") -> str:
    """Why the samples without a result got none."""
    if timed_out:
        return f"{TIMEOUT}: {what} ran past {timeout_s:g} s and was killed"
    tail = stderr_tail.decode("utf-8", "replace").strip()[-500:]
    code = proc.returncode
    if code < 0 or (via_bwrap and code > 128):  # bwrap reports a signal death as 128 + its number
        try:
            name = signal.Signals(-code if code < 0 else code - 128).name
        except ValueError:
            name = f"signal {code}"
        hint = " (CPU limit)" if name == "SIGXCPU" else " (likely the memory limit)"
        return f"{KILLED}: {what} process died of {name}{hint}: {tail}".rstrip(": ")
    return f"{KILLED}: {what} process exited with code {code}: {tail}"
