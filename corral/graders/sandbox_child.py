"""The python grader sandbox's child program (graders/sandbox.py runs it).

With "programs" instead of "source" in the job it runs model-written programs (program-aided
answers, graders/programs.py): each in a forked process of its own with a CPU and wall-clock cap,
its stdout captured; leftover processes are killed before the next one starts.

It is not imported inside the sandbox: sandbox.py reads this file's text and runs it with
`python -I -c`, so the sandbox needs nothing of corral's (only the interpreter and its
site-packages are bound in). Standard library only. It takes {"source", "pairs", limits} as
JSON on stdin and writes one JSON line per sample to the original stdout; user prints go to
stderr so they cannot corrupt that. Runnable standalone: `python -I sandbox_child.py < job`.
"""
import ast
import ctypes
import json
import math
import numbers
import os
import platform
import resource
import selectors
import signal
import struct
import sys
import time
import traceback


def limit(memory_mb, cpu_s, nproc):
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    size = memory_mb * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (size, size))
    resource.setrlimit(resource.RLIMIT_FSIZE, (size, size))
    if cpu_s:  # SIGXCPU at the soft limit; the hard one (SIGKILL) only if that is caught
        resource.setrlimit(resource.RLIMIT_CPU, (cpu_s, cpu_s + 1))
    if nproc:  # processes and threads of this uid; the kernel ignores it for uid 0
        resource.setrlimit(resource.RLIMIT_NPROC, (nproc, nproc))


def become(uid):
    """Root inside bwrap drops to a fresh non-root uid: no capabilities, RLIMIT_NPROC enforced."""
    os.setgroups([])
    os.setresgid(uid, uid, uid)
    os.setresuid(uid, uid, uid)
    ctypes.CDLL(None, use_errno=True).prctl(4, 1, 0, 0, 0)  # PR_SET_DUMPABLE: own /proc/self


def cut_network():
    try:  # a fresh network namespace has no interfaces up: works as root, else fails quietly
        ctypes.CDLL(None, use_errno=True).unshare(0x40000000)  # CLONE_NEWNET
    except Exception:
        pass
    import _socket
    import socket

    def refuse(*args, **kwargs):
        raise PermissionError("network access is disabled in the sandbox")

    class NoSocket(_socket.socket):
        def __init__(self, *args, **kwargs):
            refuse()

    for module in (socket, _socket):
        module.socket = NoSocket
        for name in ("create_connection", "getaddrinfo", "socketpair", "fromfd",
                     "create_server", "gethostbyname", "gethostbyname_ex"):
            if hasattr(module, name):
                setattr(module, name, refuse)


def no_user_namespaces():
    """seccomp: unshare/clone with CLONE_NEWUSER and setns fail with EPERM, clone3 with ENOSYS
    (libc then uses clone), other ABIs kill. Without it a grader could map itself root in a new
    user namespace and mount a tmpfs without a size limit."""
    arch = {"x86_64": (0xC000003E, 272, 56, 435, 308),
            "aarch64": (0xC00000B7, 97, 220, 435, 268)}.get(platform.machine())
    if arch is None:
        return False
    audit, unshare, clone, clone3, setns = arch
    ld, jeq, jge, jset, ret = 0x20, 0x15, 0x35, 0x45, 0x06
    allow, eperm, enosys, kill = 0x7FFF0000, 0x50001, 0x50026, 0x80000000
    program = [(ld, 0, 0, 4), (jeq, 1, 0, audit), (ret, 0, 0, kill), (ld, 0, 0, 0),
               (jge, 0, 1, 0x40000000), (ret, 0, 0, eperm), (jeq, 0, 1, clone3),
               (ret, 0, 0, enosys), (jeq, 0, 1, setns), (ret, 0, 0, eperm),
               (jeq, 1, 0, unshare), (jeq, 0, 3, clone), (ld, 0, 0, 16),
               (jset, 0, 1, 0x10000000), (ret, 0, 0, eperm), (ret, 0, 0, allow)]
    code = b"".join(struct.pack("HBBI", *op) for op in program)
    buffer = ctypes.create_string_buffer(code)

    class Prog(ctypes.Structure):
        _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]

    prog = Prog(len(program), ctypes.addressof(buffer))
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_void_p, ctypes.c_ulong,
                           ctypes.c_ulong]
    if libc.prctl(38, 1, None, 0, 0) or libc.prctl(22, 2, ctypes.byref(prog), 0, 0):
        raise OSError(ctypes.get_errno(), "cannot install the seccomp filter")
    return True


def main():
    job = json.loads(sys.stdin.buffer.read())
    out = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)
    limit(job["memory_mb"], job["cpu_s"], job["nproc"])
    if job["uid"] is not None:
        become(job["uid"])
    cut_network()
    if job["seccomp"] and not no_user_namespaces():
        raise SystemExit(f"no seccomp filter for the {platform.machine()} architecture")

    def emit(record):
        out.write(json.dumps(record) + "\n")
        out.flush()

    emit({"ready": True})
    if "programs" in job:
        run_programs(job, emit, out.fileno())
        return
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


# ---------------------------------------------------------------- model-written programs
def execute(source):
    """Run a program as __main__; a last bare expression, or an uncalled solution(), has its
    value printed (the program-aided conventions: `23 * 7`, PAL's `def solution(): ...`)."""
    tree = ast.parse(source, "<program>")
    last = None
    if tree.body and isinstance(tree.body[-1], ast.Expr):
        last = ast.Expression(tree.body.pop().value)
    namespace = {"__name__": "__main__"}
    exec(compile(tree, "<program>", "exec"), namespace)
    calls = {n.func.id for n in ast.walk(tree) if isinstance(n, ast.Call)
             and isinstance(n.func, ast.Name)}
    if last is not None:
        value = eval(compile(last, "<program>", "eval"), namespace)
    elif callable(namespace.get("solution")) and "solution" not in calls:
        value = namespace["solution"]()
    else:
        value = None
    if value is not None:
        print(value)


def dumpable(flag):
    """PR_SET_DUMPABLE where there is prctl (Linux; unsandboxed elsewhere, nothing to do)."""
    try:
        ctypes.CDLL(None).prctl(4, flag, 0, 0, 0)
    except (AttributeError, OSError):
        pass


def program_child(source, out_w, err_w, cpu_s):
    """In the forked process: stdout and stderr to the pipes, no other descriptor (the result
    channel included), a session of its own, its CPU cap; never returns."""
    code = 0
    try:
        os.dup2(out_w, 1)
        os.dup2(err_w, 2)
        os.closerange(3, 1 << 16)
        os.setsid()
        dumpable(1)  # again: its own /proc/self
        if cpu_s:
            resource.setrlimit(resource.RLIMIT_CPU, (cpu_s, cpu_s + 1))
        execute(source)
    except BaseException as exc:  # noqa: BLE001 - whatever the program raised is its error
        code = 1
        try:
            sys.stderr.write("".join(traceback.format_exception_only(type(exc), exc)))
        except BaseException:  # noqa: BLE001
            pass
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except BaseException:  # noqa: BLE001 - a closed or broken stream: nothing to save
            code = code or 1
    os._exit(code)


def collect(pid, out_r, err_r, timeout_s, max_output):
    """Read the program's stdout and stderr until it has exited and its pipes are drained
    (a process it left behind holding them open does not keep it waiting), the deadline
    passes or stdout grows past max_output; (stdout, stderr tail, why cut short, status)."""
    selector = selectors.DefaultSelector()
    selector.register(out_r, selectors.EVENT_READ)
    selector.register(err_r, selectors.EVENT_READ)
    out, err, cut, status, drained_by = b"", b"", None, None, None
    started = time.monotonic()
    while selector.get_map() and cut is None:
        now = time.monotonic()
        if now - started > timeout_s:
            cut = f"timeout: the program ran past {timeout_s:g} s and was killed"
            break
        if drained_by is not None and now > drained_by:
            break
        if status is None:
            done, code = os.waitpid(pid, os.WNOHANG)
            status = code if done else None
        ready = selector.select(timeout=0.02)
        for key, _ in ready:
            chunk = os.read(key.fd, 65536)
            if not chunk:
                selector.unregister(key.fd)
            elif key.fd == out_r:
                out += chunk
                if len(out) > max_output:
                    cut = f"error: the program printed over {max_output} bytes"
            else:
                err = (err + chunk)[-2000:]
        if status is not None and drained_by is None:
            drained_by = time.monotonic() + 0.2  # what it wrote before exiting, then stop
    selector.close()
    return out[:max_output], err, cut, status


def clear(pid, pidns):
    """Kill the program and everything it started; wait until they are gone."""
    try:
        if pidns:  # every process of the namespace but this one and its init
            os.kill(-1, signal.SIGKILL)
        else:
            os.killpg(pid, signal.SIGKILL)
    except OSError:
        pass
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            while os.waitpid(-1, os.WNOHANG)[0]:
                pass
        except ChildProcessError:
            pass
        others = [p for p in os.listdir("/proc") if p.isdigit() and
                  int(p) not in (1, os.getpid())] if pidns else []
        if not others:
            return
        time.sleep(0.005)


def run_one(source, job):
    """One program: (stdout text, error or None, seconds)."""
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    sys.stdout.flush()
    sys.stderr.flush()
    started = time.monotonic()
    pid = os.fork()
    if pid == 0:
        program_child(source, out_w, err_w, job["program_cpu_s"])
    os.close(out_w)
    os.close(err_w)
    timeout_s = job["program_timeout_s"]
    out, err, cut, status = collect(pid, out_r, err_r, timeout_s, job["max_output"])
    while cut is None and status is None:  # its pipes closed: now its exit, still in time
        done, code = os.waitpid(pid, os.WNOHANG)
        if done:
            status = code
        elif time.monotonic() - started > timeout_s:
            cut = f"timeout: the program ran past {timeout_s:g} s and was killed"
        else:
            time.sleep(0.002)
    clear(pid, job["pidns"])
    os.close(out_r)
    os.close(err_r)
    seconds = time.monotonic() - started
    text = out.decode("utf-8", "replace")
    tail = err.decode("utf-8", "replace").strip().splitlines()
    why = tail[-1][:500] if tail else ""
    if cut:
        return text, cut, seconds
    if os.WIFSIGNALED(status):
        try:
            name = signal.Signals(os.WTERMSIG(status)).name
        except ValueError:
            name = f"signal {os.WTERMSIG(status)}"
        hint = " (CPU limit)" if name == "SIGXCPU" else ""
        return text, f"killed: the program died of {name}{hint}", seconds
    if os.WIFEXITED(status) and os.WEXITSTATUS(status):
        return text, f"error: {why or f'exit code {os.WEXITSTATUS(status)}'}", seconds
    return text, None, seconds


def run_programs(job, emit, channel):
    """Every program in turn. This process is made non-dumpable first, so a program (same uid)
    cannot reach the result channel through /proc/<pid>/fd."""
    dumpable(0)
    os.set_inheritable(channel, False)
    for i, source in enumerate(job["programs"]):
        stdout, error, seconds = run_one(source, job)
        emit({"i": i, "stdout": stdout, "error": error, "seconds": seconds})


if __name__ == "__main__":
    main()
