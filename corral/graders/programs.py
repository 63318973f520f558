"""Model-written programs, run only in the python graders' sandbox: the machinery of
program-aided answers (`corral.strategies.pal`) and the program-aided judge (`pal_judge`).

    runs = run_programs(["print(23 * 7)", "while True: pass"])
    runs[0].stdout == "161\\n"; runs[1].error  # "timeout: the program ran past 10 s ..."
    printed_answer(runs[0])                    # ("161", "")

One sandbox (graders/sandbox.py: bubblewrap, the same namespaces, read-only root, scratch
tmpfs, rlimits, seccomp and socket refusal as python graders) runs a whole batch; inside it
each program is a forked process of its own with a wall-clock and a CPU cap, its stdout
captured up to `max_output` bytes, and every process it left behind is killed before the next
program starts. A program that kills the sandbox itself costs only its own result: the rest
of the batch runs in a fresh sandbox. Where bubblewrap is unavailable, programs are refused
(`require_program_sandbox`) unless the user opted in exactly as for python graders
(`--allow-unsandboxed-graders`, CORRAL_ALLOW_UNSANDBOXED_GRADERS=1).
"""
from __future__ import annotations

import re
import shutil
import time
from dataclasses import dataclass

from corral.core.errors import CorralError
from corral.graders import sandbox

__all__ = ["GENERIC_DEMOS", "PAL_SYSTEM", "ProgramLimits", "ProgramRun", "extract_program",
           "last_user_text", "pal_conversation", "printed_answer", "require_program_sandbox",
           "run_programs"]


MAX_OUTPUT = 128 << 10


@dataclass(frozen=True)
class ProgramLimits:
    """Per program: wall-clock seconds, CPU seconds, address space, stdout bytes kept (at
    most MAX_OUTPUT: a result line must stay under the sandbox's line limit)."""
    timeout_s: float = 10.0
    cpu_s: int = 10
    memory_mb: int = 1024
    max_output: int = 65536


@dataclass
class ProgramRun:
    stdout: str = ""
    error: str | None = None  # "timeout: ...", "killed: ...", "error: <the exception line>"
    seconds: float = 0.0  # wall-clock seconds inside the sandbox

    @property
    def ok(self) -> bool:
        return self.error is None


def require_program_sandbox(what: str) -> bool:
    """Raise CorralError when programs cannot be sandboxed here and the user has not opted
    in; True when they will be sandboxed."""
    try:
        return sandbox.require_sandbox()
    except sandbox.SandboxUnavailable:
        why = sandbox.sandbox_status()[1]
        raise CorralError(
            f"{what} runs model-written programs, which corral runs only in the bubblewrap "
            f"sandbox, unavailable here: {why}. Install bubblewrap (Debian/Ubuntu: apt-get "
            "install bubblewrap) on a kernel that allows namespaces, or opt in to running them "
            f"unsandboxed with --allow-unsandboxed-graders or {sandbox.ALLOW_ENV}=1 (the "
            "programs can then read and write your files)") from None


def _valid(record, n: int) -> bool:
    if not isinstance(record, dict) or type(record.get("i")) is not int:
        return False
    return (0 <= record["i"] < n and isinstance(record.get("stdout"), str)
            and isinstance(record.get("seconds"), (int, float))
            and (record.get("error") is None or isinstance(record.get("error"), str)))


def run_programs(programs: list[str], limits: ProgramLimits = ProgramLimits(),
                 info: dict | None = None) -> list[ProgramRun]:
    """Run every program (in order, one sandbox for the batch); one ProgramRun each. `info`
    receives {"sandbox", "startup_s", "sandbox_s" (wall seconds of the whole batch),
    "starts"}. Raises CorralError where there is no sandbox and no opt-in."""
    info = info if info is not None else {}
    info.update(sandbox_s=0.0, starts=0, startup_s=0.0)
    if not programs:
        return []
    bwrap = shutil.which("bwrap") if require_program_sandbox("a program-aided run") else None
    runs: dict[int, ProgramRun] = {}
    todo = list(range(len(programs)))
    while todo:
        job = {"programs": [programs[k] for k in todo], "cpu_s": None,
               "program_timeout_s": limits.timeout_s, "program_cpu_s": int(limits.cpu_s),
               "max_output": min(int(limits.max_output), MAX_OUTPUT)}
        one: dict = {}
        started = time.perf_counter()
        records, failure = sandbox.launch(
            job, len(todo), limits.timeout_s + 10, limits.memory_mb, sandbox.SCRATCH_MB,
            sandbox.MAX_PROCESSES, bwrap, one, _valid, "the program sandbox")
        info["sandbox_s"] += time.perf_counter() - started
        info["starts"] += 1
        info["startup_s"] += one.get("startup_s") or 0.0
        info["sandbox"] = one.get("sandbox")
        for j, k in enumerate(todo):
            if j in records:
                r = records[j]
                runs[k] = ProgramRun(r["stdout"], r["error"], float(r["seconds"]))
        missing = [k for j, k in enumerate(todo) if j not in records]
        if missing:  # the first without a result was running when the sandbox died
            runs[missing[0]] = ProgramRun(
                "", f"{sandbox.KILLED}: the sandbox died while this program ran ({failure})")
        todo = missing[1:]
    return [runs[k] for k in range(len(programs))]


# ---------------------------------------------------------------- programs in replies
_FENCE = re.compile(r"```[ \t]*(?:python3?|py)?[ \t]*\n(.*?)(?:```|\Z)", re.DOTALL | re.I)


def extract_program(reply: str) -> str:
    """The program in a model's reply: its first fenced block (```python ... ```, an unclosed
    one running to the end), else the whole reply; "" when there is none."""
    match = _FENCE.search(reply or "")
    code = match.group(1) if match else (reply or "")
    return code.strip("\n").rstrip() if code.strip() else ""


_NON_VALUES = {"none", "nan", "-nan", "inf", "-inf", "[]", "{}", "()", "set()", "''", '""',
               "null", "..."}
_REPR = re.compile(r"^<.* at 0x[0-9a-f]+>$|^<(?:function|class|module|built-in) ", re.I)


def printed_answer(run: ProgramRun) -> tuple[str | None, str]:
    """(the answer a run printed: its last non-empty stdout line, or None, why not). A run
    that failed, printed nothing, or printed a non-value (None, nan, an object's repr) has no
    answer: it is *unparsed*, never an answer that happens to be wrong."""
    if not run.ok:
        return None, f"the program failed: {run.error}"
    lines = [line.strip() for line in run.stdout.splitlines() if line.strip()]
    if not lines:
        return None, "the program printed nothing"
    last = lines[-1][:1000]
    if last.lower() in _NON_VALUES or _REPR.search(last):
        return None, f"the program printed a non-answer: {last[:80]!r}"
    return last, ""


# ---------------------------------------------------------------- the prompt
PAL_SYSTEM = ("Write a short Python program that computes the answer to the user's question "
              "and prints it. Reply with the program only, in a ```python code block.")

# The generic demonstrations, for tasks that bring none of their own (`code_few_shot`).
GENERIC_DEMOS = (
    ("What is 23 + 58?", "print(23 + 58)"),
    ("What is 47 * 6?", "print(47 * 6)"),
    ("Tom has 12 apples. He gives 5 to Ann and then buys 8 more. How many apples does Tom "
     "have now?", "apples = 12\napples = apples - 5\napples = apples + 8\nprint(apples)"),
    ("A box holds 24 pencils. There are 7 boxes, and 15 pencils are broken. How many pencils "
     "are not broken?", "per_box = 24\nboxes = 7\nbroken = 15\nprint(per_box * boxes - broken)"),
)


def last_user_text(conversation) -> str:
    """The question a program answers: the conversation's last user turn."""
    users = [m for m in conversation if m.get("role") == "user"]
    if not users:
        raise CorralError("a program-aided answer needs a user turn to answer; the "
                          "conversation has none")
    return str(users[-1].get("content", ""))


def pal_conversation(question: str, demos=GENERIC_DEMOS, system: str = PAL_SYSTEM
                     ) -> list[dict]:
    """The conversation asking for a program: the instruction, the demonstrations (question,
    program) as turns, then the question."""
    turns = [{"role": "system", "content": system}]
    for user, code in demos:
        turns += [{"role": "user", "content": user},
                  {"role": "assistant", "content": f"```python\n{code.strip()}\n```"}]
    return turns + [{"role": "user", "content": question}]
