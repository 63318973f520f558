"""The python-grader sandbox: no network, no secrets, limits enforced, one process per batch."""
import socket
import subprocess
import sys
import time

import pytest

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
