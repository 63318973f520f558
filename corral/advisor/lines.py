"""The corral command lines a recommendation names: the exact next commands for this task,
model and data, each one a line `corral` parses (tests/test_advise.py parses them)."""
from __future__ import annotations

import shlex
from dataclasses import dataclass

OUT = "advise"  # the stem of the files the suggested commands write


@dataclass(frozen=True)
class Context:
    """The task as the user named it, and what the commands need besides the model."""
    task: str
    split: str = "dev"
    data: str = ""  # a built-in task's local data file (gsm8k)
    grader: str = ""  # a FILE task's grader spec
    file_task: bool = False
    train_path: str = ""  # a FILE task's train items ("" when there are none)
    unseen_path: str = ""  # a FILE task's sealed unseen items ("" when there are none)
    n: int = 8
    few_shot: int = 0
    override: str = ""  # the fine-tuning mode: lora.enabled=false | lora.r=16 | ""


def q(value) -> str:
    return shlex.quote(str(value))


def _eval_task(ctx: Context) -> str:
    """--task ... for eval: a FILE task brings its grader, a built-in task its data file."""
    extra = f" --grader {q(ctx.grader)}" if ctx.file_task else \
        (f" --data {q(ctx.data)}" if ctx.data else "")
    return f"--task {q(ctx.task)}{extra}"


def _train_task(ctx: Context, grader_flag: str = "") -> str:
    """--task ... --split train for a command that reads the train prompts."""
    if ctx.file_task:
        extra = f" {grader_flag} {q(ctx.grader)}" if grader_flag else ""
        return f"--task {q(ctx.train_path)}{extra}"
    return f"--task {q(ctx.task)} --split train" + (f" --data {q(ctx.data)}" if ctx.data
                                                     else "")


def _train(method: str, model: str, ctx: Context, *keys: str) -> str:
    overrides = " ".join([f"model.name={q(model)}", *keys, *([ctx.override] if ctx.override
                                                             else [])])
    return f"corral {method} {overrides}"


def eval_strategies(model: str, ctx: Context, strategies: str) -> str:
    return f"corral eval --model {q(model)} {_eval_task(ctx)} --split {ctx.split} " \
        f"--strategy {strategies}"


def eval_few_shot(model: str, ctx: Context) -> str:
    return f"corral eval --model {q(model)} {_eval_task(ctx)} --split {ctx.split} " \
        f"--few-shot {ctx.few_shot}"


def prompt_search(model: str, ctx: Context) -> str:
    if ctx.file_task:
        extra = f" --grader {q(ctx.grader)}" + (f" --train {q(ctx.train_path)}"
                                               if ctx.train_path else "")
    else:
        extra = f" --data {q(ctx.data)}" if ctx.data else ""
    return f"corral prompt search --model {q(model)} --task {q(ctx.task)}{extra}"


def sft(model: str, ctx: Context, path: str = "") -> str:
    """SFT on a file of demonstrations, or (no path) on the task's reference solutions."""
    if path:
        return _train("sft", model, ctx, f"data.train={q(path)}")
    keys = [f"data.task={q(ctx.task)}"] + ([f"data.task_data={q(ctx.data)}"] if ctx.data else [])
    return _train("sft", model, ctx, *keys)


def rft(model: str, ctx: Context) -> str:
    if ctx.file_task:
        return _train("rft", model, ctx, f"data.train={q(ctx.train_path)}",
                      f"data.validation={q(ctx.task)}", f"rl.grader={q(ctx.grader)}",
                      f"rl.n={ctx.n}")
    keys = [f"data.task={q(ctx.task)}"] + ([f"data.task_data={q(ctx.data)}"] if ctx.data else [])
    return _train("rft", model, ctx, *keys, f"rl.n={ctx.n}")


def preference(method: str, model: str, ctx: Context, path: str) -> str:
    return _train(method, model, ctx, f"data.train={q(path)}")


def rejection(model: str, ctx: Context) -> list[str]:
    out = f"{OUT}-rejection.jsonl"
    return [f"corral synth rejection --model {q(model)} {_train_task(ctx, '--task-grader')} "
            f"-n {ctx.n} --out {out}", sft(model, ctx, out)]


def distill(teacher: str, student: str, ctx: Context) -> list[str]:
    out = f"{OUT}-distill.jsonl"
    grader = f" --grader {q(ctx.grader)} --require-pass" if ctx.file_task else " --require-pass"
    return [f"corral synth distill --model {q(teacher)} {_train_task(ctx)}{grader} --out {out}",
            sft(student, ctx, out)]


def rlaif(model: str, ctx: Context) -> list[str]:
    """The model labels pairs of its own answers (both orders), then DPO on the labels."""
    out = f"{OUT}-rlaif.jsonl"
    return [f"corral feedback label {_train_task(ctx)} --model {q(model)} --judge {q(model)} "
            f"--samples {OUT}-rlaif.samples.jsonl --out {out}",
            preference("dpo", model, ctx, out)]


def unseen(model: str, ctx: Context) -> list[str]:
    """Grade on the sealed unseen split, once (none for a FILE task without one)."""
    if ctx.file_task and not ctx.unseen_path:
        return []
    task = ctx.unseen_path or ctx.task
    extra = f" --grader {q(ctx.grader)}" if ctx.file_task else \
        (f" --data {q(ctx.data)}" if ctx.data else "")
    shots = f" --few-shot {ctx.few_shot}" if ctx.few_shot else ""
    return [f"corral eval --model {q(model)} --task {q(task)}{extra} --split unseen{shots}"]
