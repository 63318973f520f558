"""Model-written programs are untrusted code (issue 25, item 4): every escape the python-grader
sandbox refuses (tests/test_sandbox_escapes.py) is refused for program-aided answers too, tried
here with programs shaped as a model writes them (top-level code that prints), plus what is
new with programs: one program cannot spoil another's result in the same batch, and a
program that kills the sandbox costs only its own answer.

Each program prints "ESCAPED" only if its escape worked; a refused one raises, so the run's
error carries what the sandbox said.
"""
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from sandbox_support import processes_with

from corral.core.errors import CorralError
from corral.graders import sandbox
from corral.graders.programs import ProgramLimits, printed_answer, run_programs

pytestmark = pytest.mark.skipif(not sandbox.sandbox_status()[0],
                                reason=f"no sandbox here: {sandbox.sandbox_status()[1]}")


def run(*programs, **limits):
    limits.setdefault("timeout_s", 5)
    limits.setdefault("cpu_s", 5)
    return run_programs(list(programs), ProgramLimits(**limits))


def refused(program, **limits):
    [result] = run(program, **limits)
    assert "ESCAPED" not in result.stdout, "the escape worked"
    assert result.error, result
    assert printed_answer(result)[0] is None  # an escape attempt is never an answer
    return result.error


# ---------------------------------------------------------------- files
@pytest.mark.parametrize("where", ["/", sys.prefix, os.getcwd(), str(Path(__file__).parent),
                                   "/usr/lib", "/proc/sys/kernel"])
def test_write_outside_scratch_refused(where):
    target = os.path.join(where, f"corral-escape-{uuid.uuid4().hex}")
    error = refused(f"open({target!r}, 'w').write('x')\nprint('ESCAPED')")
    assert any(s in error for s in ("Read-only file system", "Permission denied",
                                    "No such file or directory")), error
    assert not os.path.exists(target)


def test_scratch_writes_are_fine_and_small():
    ok, big = run("open('/tmp/x', 'w').write('12')\nprint(open('/tmp/x').read())",
                  "open('/dev/shm/big', 'wb').write(b'x' * (20 << 20))\nprint('ESCAPED')")
    assert printed_answer(ok)[0] == "12"
    assert "No space left on device" in big.error


def test_secrets_and_the_checkout_unreadable(tmp_path, monkeypatch):
    home = tmp_path / "home"
    home.mkdir()
    (home / "secret.txt").write_text("hunter2")
    monkeypatch.setenv("HOME", str(home))
    paths = [str(home / "secret.txt"), os.path.expanduser("~/secret.txt"), __file__,
             "/etc/passwd", "/etc/shadow", os.path.join(os.getcwd(), "pyproject.toml")]
    program = f"""
found = []
for path in {paths!r}:
    try:
        open(path).read()
        found.append(path)
    except OSError as exc:
        pass
if found:
    print('ESCAPED', found)
raise FileNotFoundError('none readable')
"""
    assert "none readable" in refused(program)


def test_other_processes_invisible(monkeypatch):
    monkeypatch.setenv("CORRAL_TEST_SECRET", "hunter2")
    program = f"""
import os
visible = sorted(int(p) for p in os.listdir('/proc') if p.isdigit())
for pid in {{{os.getpid()}, *visible}}:
    try:
        if b'hunter2' in open(f'/proc/{{pid}}/environ', 'rb').read():
            print('ESCAPED')
    except OSError:
        pass
raise LookupError(f'max pid {{max(visible)}}')
"""
    error = refused(program)
    assert int(error.rsplit("max pid ", 1)[1]) < 10, error


# ---------------------------------------------------------------- processes and signals
def test_signals_reach_neither_parent_nor_siblings():
    sibling = subprocess.Popen(["sleep", "30"])
    try:
        program = f"""
import os, signal
for pid in ({os.getpid()}, {sibling.pid}):
    os.kill(pid, signal.SIGKILL)
print('ESCAPED')
"""
        assert "ProcessLookupError" in refused(program)
        assert sibling.poll() is None
    finally:
        sibling.kill()
        sibling.wait()


def test_not_root_and_no_new_user_namespace():
    assert "PermissionError" in refused("import os\nos.setuid(0)\nprint('ESCAPED')")
    program = """
import ctypes, os
libc = ctypes.CDLL(None, use_errno=True)
if libc.unshare(0x10000000) == 0:
    print('ESCAPED')
raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()))
"""
    assert "Operation not permitted" in refused(program)


def test_fork_bomb_stopped_and_the_next_program_runs():
    start = time.monotonic()
    bomb, after = run("import os\nwhile True:\n    os.fork()", "print(6 * 7)", timeout_s=2)
    assert bomb.error and time.monotonic() - start < 10
    assert printed_answer(after)[0] == "42"  # its processes were gone before the next began


def test_leftovers_killed_before_the_next_program():
    token = uuid.uuid4().hex
    program = f"""
import os, sys
if os.fork() == 0:
    os.setsid()
    os.execv(sys.executable, [sys.executable, '-c', "import time; time.sleep(60)  # {token}"])
print(1)
"""
    start = time.monotonic()
    first, second = run(program, "import os\nprint(len([p for p in os.listdir('/proc') "
                                 "if p.isdigit()]))")
    assert printed_answer(first)[0] == "1" and time.monotonic() - start < 5
    assert int(printed_answer(second)[0]) <= 3  # init, the runner and this program alone
    assert processes_with(token) == []


def test_time_limits():
    start = time.monotonic()
    loop, sleeper = run("while True:\n    pass", "import time\ntime.sleep(3600)", timeout_s=1)
    assert loop.error.startswith(("timeout", "killed")) and sleeper.error.startswith("timeout")
    assert time.monotonic() - start < 6
    ignoring = """
import signal
for s in (signal.SIGTERM, signal.SIGXCPU, signal.SIGINT):
    signal.signal(s, signal.SIG_IGN)
while True:
    pass
"""
    [cpu] = run(ignoring, timeout_s=10, cpu_s=1)
    assert cpu.error.startswith("killed") and cpu.seconds < 5, cpu


def test_memory_bomb_stopped():
    assert "MemoryError" in refused("block = bytearray(8 << 30)\nprint('ESCAPED')",
                                    memory_mb=256)


# ---------------------------------------------------------------- network
def test_network_refused(listening_port):
    guarded = "import socket\nsocket.create_connection(('127.0.0.1', %d))\nprint('ESCAPED')"
    assert "network access is disabled" in refused(guarded % listening_port)
    raw = f"""
import socket
s = socket.socket.__mro__[1](socket.AF_INET, socket.SOCK_STREAM)
s.settimeout(2)
s.connect(("127.0.0.1", {listening_port}))
print('ESCAPED')
"""
    assert "ConnectionRefusedError" in refused(raw)
    outside = raw.replace(f'"127.0.0.1", {listening_port}', '"1.1.1.1", 443')
    assert "Network is unreachable" in refused(outside)


# ---------------------------------------------------------------- results
def test_huge_output_is_cut_and_unparsed():
    error = refused("for _ in range(64):\n    print('7' * (1 << 20))")
    assert "printed over" in error


def test_result_channel_cannot_be_forged():
    """The runner's result channel is closed in the program, and the runner is not dumpable,
    so /proc/<runner>/fd is out of reach: the next program's result is its own."""
    forge = """
import os, stat
line = b'{"i": 1, "stdout": "999\\\\n", "error": null, "seconds": 0.0}\\n'
for fd in range(3, 64):
    try:
        os.write(fd, line)
    except OSError:
        pass
for fd in os.listdir(f'/proc/{os.getppid()}/fd') if os.access(
        f'/proc/{os.getppid()}/fd', os.R_OK) else []:
    try:
        with open(f'/proc/{os.getppid()}/fd/{fd}', 'wb') as f:
            f.write(line)
    except OSError:
        pass
print(5)
"""
    first, second = run(forge, "print(6)")
    assert printed_answer(first)[0] == "5" and printed_answer(second)[0] == "6"


def test_killing_the_runner_costs_only_that_program():
    killer = "import os, signal\nos.kill(os.getppid(), signal.SIGKILL)\nprint('ESCAPED')"
    before, killed, after = run("print(1)", killer, "print(3)")
    assert printed_answer(before)[0] == "1" and printed_answer(after)[0] == "3"
    assert killed.error.startswith("killed") and "ESCAPED" not in killed.stdout


def test_no_sandbox_no_programs(monkeypatch):
    monkeypatch.setattr(sandbox, "_status", (False, "bubblewrap (bwrap) is not installed"))
    monkeypatch.setattr(sandbox, "_allow", False)
    with pytest.raises(CorralError, match="bubblewrap .* not installed.*"
                       "--allow-unsandboxed-graders"):
        run_programs(["print(1)"])


def test_parent_state_untouched_after_the_escapes():
    assert signal.getsignal(signal.SIGINT) is not signal.SIG_IGN
    assert os.getppid() > 0 and Path("/proc/self").resolve().name == str(os.getpid())
