"""The python grader sandbox's child program (graders/sandbox.py runs it).

It is not imported inside the sandbox: sandbox.py reads this file's text and runs it with
`python -I -c`, so the sandbox needs nothing of corral's (only the interpreter and its
site-packages are bound in). Standard library only. It takes {"source", "pairs", limits} as
JSON on stdin and writes one JSON line per sample to the original stdout; user prints go to
stderr so they cannot corrupt that. Runnable standalone: `python -I sandbox_child.py < job`.
"""
import ctypes
import json
import math
import numbers
import os
import platform
import resource
import struct
import sys
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


if __name__ == "__main__":
    main()
