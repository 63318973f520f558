"""Escapes from the python-grader sandbox, each tried and refused: the sample scores 0, the reason
says why, and this (parent) process and its other children live on.

Every grader here returns 1.0 only if its escape worked; a refused escape raises, so the reason
carries the error the sandbox produced.
"""
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from sandbox_support import processes_with

from corral.graders import sandbox
from corral.graders.sandbox import run_python_grader

pytestmark = pytest.mark.skipif(not sandbox.sandbox_status()[0],
                                reason=f"no sandbox here: {sandbox.sandbox_status()[1]}")

ROOT = os.geteuid() == 0


def one(source, item=None, **limits):
    """Grade a single sample and return its (value, reason)."""
    limits.setdefault("timeout_s", 10)
    return run_python_grader(source, [(item or {}, {"output_text": "x"})], **limits)[0]


def refused(source, item=None, **limits):
    value, reason = one(source, item, **limits)
    assert value == 0.0 and reason, "the escape worked"
    return reason


# ---------------------------------------------------------------- filesystem
@pytest.mark.parametrize("where", ["/", sys.prefix, os.getcwd(), str(Path(__file__).parent),
                                   "/usr/lib", "/proc/sys/kernel"])
def test_write_outside_scratch_refused(where):
    target = os.path.join(where, f"corral-escape-{uuid.uuid4().hex}")
    source = "def grade(sample, item):\n    open(item['path'], 'w').write('x')\n    return 1.0"
    reason = refused(source, {"path": target})
    assert any(s in reason for s in ("Read-only file system", "Permission denied",
                                     "No such file or directory")), reason
    assert not os.path.exists(target)


def test_scratch_is_writable_up_to_its_quota():
    source = """
def grade(sample, item):
    open('/tmp/small', 'wb').write(b'x' * 100_000)
    open('/tmp/big', 'wb').write(b'x' * 3_000_000)
    return 1.0
"""
    assert "No space left on device" in refused(source, scratch_mb=2)


def test_dev_shm_is_small_too():
    source = "def grade(sample, item):\n    open('/dev/shm/big', 'wb').write(b'x' * (20 << 20))"
    assert "No space left on device" in refused(source)


def test_planted_files_in_home_and_run_dir_unreadable(tmp_path, monkeypatch):
    home = tmp_path / "home"
    home.mkdir()
    (home / "secret.txt").write_text("hunter2")
    monkeypatch.setenv("HOME", str(home))
    source = """
import os
def grade(sample, item):
    for path in item['paths']:
        try:
            if 'hunter2' in open(path).read() or path.endswith('.py'):
                return 1.0
        except OSError as exc:
            errors.append(f'{path}: {exc.strerror}')
    raise FileNotFoundError('; '.join(errors))
errors = []
"""
    paths = [str(home / "secret.txt"), os.path.expanduser("~/secret.txt"), __file__,
             "/etc/passwd", "/etc/shadow"]
    reason = refused(source, {"paths": paths})
    assert reason.count("No such file or directory") == len(paths), reason


def test_only_the_interpreter_is_visible():
    """The root holds /usr, the interpreter's prefixes, /tmp, /proc, /dev and three files of
    /etc: not /home, /var, the rest of /etc, the run directory's files."""
    source = """
import os
def grade(sample, item):
    seen = sorted(os.listdir('/'))
    etc = sorted(os.listdir('/etc'))
    cwd_files = os.listdir(item['cwd']) if os.path.isdir(item['cwd']) else []
    raise LookupError(f'root {seen}; etc {etc}; run dir {cwd_files}')
"""
    reason = refused(source, {"cwd": os.getcwd()})
    assert "'home'" not in reason and "'var'" not in reason and "'mnt'" not in reason
    etc = reason.split("etc ")[1].split(";")[0]
    assert set(eval(etc)) <= {"ld.so.cache", "ld.so.conf", "localtime"}, reason
    run_dir = reason.split("run dir ")[1]
    assert "pyproject.toml" not in run_dir and "tests" not in run_dir, reason


# ---------------------------------------------------------------- processes, secrets
def test_other_processes_environment_unreadable(monkeypatch):
    monkeypatch.setenv("CORRAL_TEST_SECRET", "hunter2")
    source = """
import os
def grade(sample, item):
    visible = sorted(int(p) for p in os.listdir('/proc') if p.isdigit())
    for pid in {item['parent'], *visible}:
        try:
            if b'hunter2' in open(f'/proc/{pid}/environ', 'rb').read():
                return 1.0
        except OSError:
            pass
    raise LookupError(f'no secret; visible pids {visible}')
"""
    reason = refused(source, {"parent": os.getpid()})
    visible = json.loads(reason.split("visible pids ")[1])
    assert os.getpid() not in visible and max(visible) < 10, reason


def test_signals_reach_neither_parent_nor_siblings():
    sibling = subprocess.Popen(["sleep", "30"])
    try:
        source = """
import os, signal
def grade(sample, item):
    os.kill(-1, signal.SIGKILL)  # everything this process may signal (none of the host's)
    for pid in (item['parent'], item['sibling']):
        os.kill(pid, signal.SIGKILL)
    return 1.0
"""
        reason = refused(source, {"parent": os.getpid(), "sibling": sibling.pid})
        assert "ProcessLookupError" in reason
        assert sibling.poll() is None  # and this process, obviously, is still here
    finally:
        sibling.kill()
        sibling.wait()


def test_not_root_and_cannot_become_it():
    source = """
import os
def grade(sample, item):
    assert os.getuid() != 0 and os.geteuid() != 0, 'uid 0'
    os.setuid(0)
    return 1.0
"""
    assert "PermissionError" in refused(source)


def test_no_new_user_namespace():
    """A user namespace of its own would let the grader mount an unlimited tmpfs."""
    source = """
import ctypes, os
def grade(sample, item):
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(0x10000000) == 0:  # CLONE_NEWUSER
        return 1.0
    raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()))
"""
    assert "Operation not permitted" in refused(source)


def test_fork_bomb_stopped():
    source = """
import os
def grade(sample, item):
    while True:
        os.fork()
"""
    start = time.monotonic()
    reason = refused(source, max_processes=16, timeout_s=5)
    assert time.monotonic() - start < 5
    assert "BlockingIOError" in reason or "Resource temporarily unavailable" in reason, reason


def test_process_limit_counts_the_sandbox_alone():
    """Forks stop at max_processes (children + threads), however many the host runs."""
    source = """
import os, time
def grade(sample, item):
    n = 0
    try:
        while True:
            if os.fork() == 0:
                time.sleep(30)
                os._exit(0)
            n += 1
    except OSError:
        raise RuntimeError(f'forked {n}')
"""
    reason = refused(source, max_processes=8)
    assert 4 <= int(reason.rsplit("forked ", 1)[1]) < 8, reason


def test_leftover_processes_die_with_the_batch():
    token = uuid.uuid4().hex
    source = """
import os, sys
def grade(sample, item):
    if os.fork() == 0:
        os.execv(sys.executable, [sys.executable, '-c',
                                  f"import time; time.sleep(60)  # {item['token']}"])
    return 0.5
"""
    start = time.monotonic()
    assert one(source, {"token": token}) == (0.5, None)
    assert time.monotonic() - start < 5  # not waiting out the sleeping child
    assert processes_with(token) == []


def test_timeout_kills_the_whole_tree():
    token = uuid.uuid4().hex
    source = """
import os, sys, time
def grade(sample, item):
    if os.fork() == 0:
        os.setsid()  # a session of its own does not help
        os.execv(sys.executable, [sys.executable, '-c',
                                  f"import time; time.sleep(60)  # {item['token']}"])
    time.sleep(3600)
"""
    start = time.monotonic()
    value, reason = one(source, {"token": token}, timeout_s=1)
    assert time.monotonic() - start < 4
    assert value == 0.0 and reason.startswith("timeout")
    assert processes_with(token) == []


def test_memory_bomb_in_a_child_process_stopped():
    source = """
import os
def grade(sample, item):
    pid = os.fork()
    if pid == 0:
        block = bytearray(1 << 30)
        os._exit(0)
    _, status = os.waitpid(pid, 0)
    raise MemoryError(f'child exit status {status}')
"""
    assert "MemoryError" in refused(source, memory_mb=256)


# ---------------------------------------------------------------- network
def test_raw_socket_to_loopback_refused(listening_port):
    source = f"""
import socket
def grade(sample, item):
    raw = socket.socket.__mro__[1]  # the C socket type under the Python guard
    s = raw(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(2)
    s.connect(("127.0.0.1", {listening_port}))
    return 1.0
"""
    assert "ConnectionRefusedError" in refused(source)


def test_raw_socket_to_the_outside_refused():
    source = """
import socket
def grade(sample, item):
    raw = socket.socket.__mro__[1]
    s = raw(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(2)
    s.connect(("1.1.1.1", 443))
    return 1.0
"""
    assert "Network is unreachable" in refused(source)


def test_other_program_cannot_reach_loopback(listening_port):
    """Going around Python's socket module with another process meets the same namespace."""
    source = f"""
import subprocess, sys
def grade(sample, item):
    code = ("import _socket; s = _socket.socket(); s.settimeout(2); "
            "s.connect(('127.0.0.1', {listening_port}))")
    done = subprocess.run([sys.executable, '-I', '-c', code], capture_output=True, text=True)
    if done.returncode == 0:
        return 1.0
    raise ConnectionError(done.stderr.strip().splitlines()[-1])
"""
    assert "ConnectionRefusedError" in refused(source)


# ---------------------------------------------------------------- output, hangs
def test_huge_output_does_not_hurt():
    source = """
import sys
def grade(sample, item):
    chunk = 'x' * (1 << 20)
    for _ in range(64):
        print(chunk)
        sys.stderr.write(chunk)
    return 0.5
"""
    assert one(source) == (0.5, None)


def test_endless_line_on_the_result_channel_killed():
    source = """
import os, stat, time
def grade(sample, item):
    for fd in range(3, 16):
        try:
            if stat.S_ISFIFO(os.fstat(fd).st_mode):
                for _ in range(4):
                    os.write(fd, b'7' * (1 << 20))
        except OSError:
            pass
    time.sleep(3600)
"""
    reason = refused(source, timeout_s=5)
    assert reason.startswith("killed") and "one line" in reason, reason


def test_forged_result_lines_ignored():
    source = """
import os, stat
def grade(sample, item):
    for fd in range(3, 16):
        try:
            if stat.S_ISFIFO(os.fstat(fd).st_mode):
                os.write(fd, b'{"i": 1, "value": "high"}\\n{"i": 99, "value": 1.0}\\n')
        except OSError:
            pass
    return 0.5
"""
    results = run_python_grader(source, [({}, {}), ({}, {})], timeout_s=10)
    assert results == [(0.5, None), (0.5, None)]


def test_grader_that_never_returns():
    start = time.monotonic()
    value, reason = one("import time\ndef grade(sample, item):\n    time.sleep(3600)",
                        timeout_s=1)
    assert time.monotonic() - start < 4
    assert value == 0.0 and reason.startswith("timeout")


def test_grader_ignoring_signals_still_killed():
    source = """
import signal, time
for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGXCPU):
    signal.signal(s, signal.SIG_IGN)
def grade(sample, item):
    while True:
        pass
"""
    value, reason = one(source, timeout_s=1)
    assert value == 0.0 and reason.startswith("timeout")


# ---------------------------------------------------------------- the parent's view
def test_startup_time_reported():
    info = {}
    assert one("def grade(sample, item):\n    return 1.0", info=info) == (1.0, None)
    assert info["sandbox"] == "bwrap" and 0 < info["startup_s"] < 5


def test_parent_state_untouched_after_the_escapes():
    """Run after the rest in this file: the parent still has its pid and signal handlers."""
    assert signal.getsignal(signal.SIGINT) is not signal.SIG_IGN
    assert os.getppid() > 0 and Path("/proc/self").resolve().name == str(os.getpid())
