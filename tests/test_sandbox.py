"""The python-grader sandbox: no network, no secrets, limits enforced, one process per batch;
without a sandbox, refused unless opted in. The escapes are in test_sandbox_escapes.py."""
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from corral.graders import sandbox
from corral.graders.sandbox import run_python_grader


def one(source, item=None, **limits):
    """Grade a single sample and return its (value, reason)."""
    return run_python_grader(source, [(item or {}, {"output_text": "x"})], **limits)[0]


def _netns_available() -> bool:
    probe = "import ctypes; print(ctypes.CDLL(None, use_errno=True).unshare(0x40000000))"
    out = subprocess.run([sys.executable, "-c", probe], check=False, capture_output=True, text=True)
    return out.stdout.strip() == "0"


@pytest.fixture
def listening_port():
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    yield server.getsockname()[1]
    server.close()


def test_plain_grade_gets_sample_and_item():
    source = "def grade(sample, item):\n    return float(sample['output_text'] == item['ref'])"
    assert one(source, {"ref": "x"}) == (1.0, None)
    assert one(source, {"ref": "y"}) == (0.0, None)


def test_network_refused(listening_port):
    source = f"""
import socket
def grade(sample, item):
    socket.create_connection(("127.0.0.1", {listening_port}), timeout=2).close()
    return 1.0
"""
    value, reason = one(source)
    assert value == 0.0 and "error" in reason


def test_network_refused_below_the_python_guard(listening_port):
    """The socket guard can be sidestepped from Python; the network namespace cannot."""
    if not _netns_available():
        pytest.skip("this kernel/user cannot create a network namespace")
    source = f"""
import socket
def grade(sample, item):
    original = socket.socket.__mro__[1]  # the C socket type under the guard
    s = original(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(2)
    s.connect(("127.0.0.1", {listening_port}))
    return 1.0
"""
    value, reason = one(source)
    assert value == 0.0 and reason


def test_infinite_loop_stopped_within_timeout():
    start = time.monotonic()
    value, reason = one("def grade(sample, item):\n    while True:\n        pass", timeout_s=2)
    assert time.monotonic() - start < 6
    assert value == 0.0 and reason.startswith("timeout")


def test_timeout_keeps_earlier_results_and_zeroes_the_rest():
    source = "def grade(sample, item):\n    while item['hang']:\n        pass\n    return 0.5"
    pairs = [({"hang": False}, {}), ({"hang": True}, {}), ({"hang": False}, {})]
    results = run_python_grader(source, pairs, timeout_s=2)
    assert results[0] == (0.5, None)
    assert all(v == 0.0 and r.startswith("timeout") for v, r in results[1:])


def test_cpu_limit_kills():
    value, reason = one("def grade(sample, item):\n    while True:\n        pass",
                        timeout_s=30, cpu_s=1)
    assert value == 0.0 and reason.startswith("killed") and "SIGXCPU" in reason


def test_memory_bomb_stopped():
    source = "def grade(sample, item):\n    block = bytearray(1 << 30)\n    return 1.0"
    value, reason = one(source, memory_mb=256)
    assert value == 0.0 and "MemoryError" in reason


def test_parent_secret_not_visible(monkeypatch):
    monkeypatch.setenv("SECRET", "hunter2")
    source = """
import os
def grade(sample, item):
    return 1.0 if "hunter2" in str(dict(os.environ)) else 0.25
"""
    assert one(source) == (0.25, None)


def test_runs_in_an_empty_scratch_dir():
    source = "import os\ndef grade(sample, item):\n    return float(len(os.listdir('.')))"
    assert one(source) == (0.0, None)


@pytest.mark.parametrize("body, needle", [
    ("raise ValueError('bad sample')", "ValueError: bad sample"),
    ("return 'high'", "not a finite number"),
    ("return None", "not a finite number"),
    ("return float('nan')", "not a finite number"),
    ("import sys; sys.exit(3)", "SystemExit"),
])
def test_failures_give_zero_with_reason(body, needle):
    value, reason = one(f"def grade(sample, item):\n    {body}")
    assert value == 0.0 and needle in reason


@pytest.mark.parametrize("body, expected", [("return True", 1.0), ("return 3", 3.0)])
def test_numbers_pass_through(body, expected):
    assert one(f"def grade(sample, item):\n    {body}") == (expected, None)


def test_source_errors_zero_every_sample():
    results = run_python_grader("def grade(:", [({}, {}), ({}, {})])
    assert all(v == 0.0 and "SyntaxError" in r for v, r in results)
    value, reason = one("x = 1")
    assert value == 0.0 and "grade(sample, item)" in reason


def test_hard_exit_reported():
    value, reason = one("import os\ndef grade(sample, item):\n    os._exit(7)")
    assert value == 0.0 and reason.startswith("killed") and "code 7" in reason


def test_prints_do_not_corrupt_results():
    source = "def grade(sample, item):\n    print('{\"i\": 0, \"value\": 9}')\n    return 0.5"
    assert one(source) == (0.5, None)


def test_one_process_for_a_batch():
    source = "import os, time\ndef grade(sample, item):\n    return float(os.getpid())"
    start = time.perf_counter()
    one(source)
    single = time.perf_counter() - start
    start = time.perf_counter()
    results = run_python_grader(source, [({"i": i}, {}) for i in range(50)])
    batch = time.perf_counter() - start
    assert len({value for value, _ in results}) == 1  # every sample saw the same pid
    assert batch < 10 * single  # 50 separate processes would take about 50 x single


def test_empty_batch():
    assert run_python_grader("def grade(s, i):\n    return 1", []) == []


# ---------------------------------------------------------------- no sandbox: refuse or opt in
@pytest.fixture
def no_sandbox(monkeypatch):
    """The probe reports the sandbox unavailable; no opt-in from this test's environment."""
    monkeypatch.setattr(sandbox, "_status", (False, "probe says no (test)"))
    monkeypatch.setattr(sandbox, "_allow", None)
    monkeypatch.setattr(sandbox, "_warned", False)
    monkeypatch.delenv(sandbox.ALLOW_ENV, raising=False)


def test_refused_without_a_sandbox(no_sandbox):
    with pytest.raises(sandbox.SandboxUnavailable) as caught:
        one("def grade(sample, item):\n    return 1.0")
    message = str(caught.value)
    assert "probe says no (test)" in message and sandbox.ALLOW_ENV in message
    assert "--allow-unsandboxed-graders" in message
    assert run_python_grader("def grade(s, i):\n    return 1", []) == []  # nothing to run


@pytest.mark.parametrize("how", ["env", "call"])
def test_opt_in_runs_unsandboxed_and_warns_once(no_sandbox, monkeypatch, capsys, how):
    if how == "env":
        monkeypatch.setenv(sandbox.ALLOW_ENV, "1")
    else:
        sandbox.allow_unsandboxed(True)
    info = {}
    assert one("def grade(sample, item):\n    return 1.0", info=info) == (1.0, None)
    assert one("def grade(sample, item):\n    return 0.5") == (0.5, None)
    assert info["sandbox"] == "none" and info["startup_s"] > 0
    assert capsys.readouterr().err.count("UNSANDBOXED") == 1


def test_opt_out_call_beats_the_environment(no_sandbox, monkeypatch):
    monkeypatch.setenv(sandbox.ALLOW_ENV, "1")
    sandbox.allow_unsandboxed(False)
    with pytest.raises(sandbox.SandboxUnavailable):
        one("def grade(sample, item):\n    return 1.0")


def test_probe_without_bwrap(monkeypatch):
    monkeypatch.setattr(sandbox.shutil, "which", lambda name: None)
    ok, why = sandbox._probe()
    assert not ok and "not installed" in why


def test_probe_with_a_broken_bwrap(monkeypatch, tmp_path):
    fake = tmp_path / "bwrap"
    fake.write_text("#!/bin/sh\necho 'bwrap: No permissions to create new namespace' >&2\nexit 1\n")
    fake.chmod(0o755)
    monkeypatch.setattr(sandbox.shutil, "which", lambda name: str(fake))
    ok, why = sandbox._probe()
    assert not ok and "No permissions to create new namespace" in why


@pytest.mark.skipif(not sandbox.sandbox_status()[0], reason="no sandbox on this host")
def test_sandbox_used_where_available():
    assert sandbox.require_sandbox() is True
    info = {}
    one("def grade(sample, item):\n    return 1.0", info=info)
    assert info["sandbox"] == "bwrap"


# ---------------------------------------------------------------- as a non-root user
_AS_USER = r'''
import json, sys
namespace = {"__name__": "sandbox_as_user", "__file__": sys.argv[1]}  # finds sandbox_child.py
exec(compile(sys.stdin.read(), "sandbox.py", "exec"), namespace)
run, status = namespace["run_python_grader"], namespace["sandbox_status"]
checks = {
    "uid": "import os\ndef grade(s, i):\n    return float(os.getuid())",
    "pid": "import os\ndef grade(s, i):\n    return float(os.getpid())",
    "write": "def grade(s, i):\n    open('/escape', 'w')\n    return 1.0",
    "fork_bomb": "import os\ndef grade(s, i):\n    while True:\n        os.fork()",
    "userns": ("import ctypes\ndef grade(s, i):\n"
               "    return float(ctypes.CDLL(None, use_errno=True).unshare(0x10000000))"),
}
out = {"status": status()}
for name, source in checks.items():
    out[name] = run(source, [({}, {})], timeout_s=10, max_processes=16)[0]
print(json.dumps(out))
'''


@pytest.mark.skipif(os.geteuid() != 0 or not os.path.exists("/usr/bin/python3")
                    or not sandbox.sandbox_status()[0],
                    reason="needs root (to become another user), /usr/bin/python3 and bwrap")
def test_unprivileged_user_gets_the_same_sandbox():
    """A user without root: bwrap makes an unprivileged user namespace; RLIMIT_NPROC holds since
    the kernel uid is not 0, and no further user namespace can be made (bwrap --disable-userns)."""
    import shutil
    import tempfile

    # The other user reads the two files from a folder it may enter: the checkout itself can
    # sit in a folder only root opens (a CI clone in `mktemp -d`).
    folder = Path(tempfile.mkdtemp(prefix="corral-sandbox-as-user-"))
    try:
        folder.chmod(0o755)
        for name in ("sandbox.py", "sandbox_child.py"):
            shutil.copy(Path(sandbox.__file__).with_name(name), folder / name)
            (folder / name).chmod(0o644)
        done = subprocess.run(
            ["/usr/bin/python3", "-I", "-c", _AS_USER, str(folder / "sandbox.py")],
            input=(folder / "sandbox.py").read_text(),
            capture_output=True, text=True, user=65534, group=65534, extra_groups=[],
            env={"PATH": "/usr/bin:/bin"}, cwd="/", timeout=60)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    if "user namespace" in done.stdout and '"status": [false' in done.stdout:
        pytest.skip(f"no unprivileged user namespaces here: {done.stdout}")
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["status"][0] and "unprivileged" in out["status"][1]
    assert out["uid"] == [65534.0, None]  # the user's own uid, mapped 1:1
    assert out["pid"][0] < 10
    assert out["write"][0] == 0.0 and "Read-only file system" in out["write"][1]
    assert out["fork_bomb"][0] == 0.0 and "BlockingIOError" in out["fork_bomb"][1]
    assert out["userns"] == [-1.0, None]  # unshare(CLONE_NEWUSER) failed


# ---------------------------------------------------------------- the child program
def test_child_is_a_standalone_stdlib_module(tmp_path):
    """graders/sandbox_child.py imports nothing of corral's and runs by itself (`python -I`),
    which is how the sandbox, binding no corral files, can run its text."""
    import ast

    from corral.graders import sandbox_child

    tree = ast.parse(Path(sandbox_child.__file__).read_text())
    imported = {alias.name.split(".")[0] for node in ast.walk(tree)
                if isinstance(node, (ast.Import, ast.ImportFrom)) for alias in node.names}
    assert imported <= set(sys.stdlib_module_names), imported
    job = {"source": "def grade(sample, item):\n    print('noise')\n    return len(sample)",
           "pairs": [[{}, {"a": 1}], [{}, {}]], "memory_mb": 1024, "cpu_s": 10,
           "nproc": None, "uid": None, "seccomp": False}
    done = subprocess.run([sys.executable, "-I", sandbox_child.__file__],
                          input=json.dumps(job), capture_output=True, text=True, timeout=60,
                          cwd=tmp_path, env={})
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert done.returncode == 0 and lines == [{"ready": True}, {"i": 0, "value": 1.0},
                                              {"i": 1, "value": 0.0}]
    assert "noise" in done.stderr
