"""Tasks = data + prompt rendering + grader; used by evaluation, RL rewards and data filters.

    task = get_task("gsm8k", split="test", data="../shared/data/gsm8k/test.jsonl", limit=50)
    task.conversations()  # chat prompts, with the task's system prompt and few-shot examples
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass, field

from corral.core.errors import CorralError
from corral.core.records import Item, Message


@dataclass
class Task:
    name: str
    items: list  # list[Item]
    grader: object  # a Grader
    system_prompt: str = ""
    few_shot: list = field(default_factory=list)  # [(user, assistant), ...]

    def conversation(self, item: Item) -> list[dict]:
        messages = [{"role": "system", "content": self.system_prompt}] if self.system_prompt \
            else []
        for user, assistant in self.few_shot:
            messages += [{"role": "user", "content": user},
                         {"role": "assistant", "content": assistant}]
        return messages + [{"role": m.role, "content": m.content} for m in item.messages]

    def conversations(self) -> list[list[dict]]:
        return [self.conversation(item) for item in self.items]

    def prompt_items(self) -> list[Item]:
        """Items whose messages already carry the system prompt and few-shot turns."""
        return [Item(messages=tuple(Message(m["role"], m["content"])
                                    for m in self.conversation(item)),
                     fields=item.fields, source=item.source) for item in self.items]


def _builders():
    from corral.tasks import arithmetic, gsm8k, ifeval_like
    return {"gsm8k": gsm8k.build, "arithmetic": arithmetic.build,
            "ifeval-like": ifeval_like.build}


def task_names() -> list[str]:
    return sorted(_builders())


def get_task(name: str, split: str = "dev", data: str = "", grader: str = "", limit: int = 0,
             few_shot: int = 0, system_prompt: str = "", seed: int = 0) -> Task:
    """A built-in task by name, or a user JSONL file (`name` = path) with a grader JSON."""
    builders = _builders()
    if name in builders:
        task = builders[name](split=split, data=data, seed=seed, few_shot=few_shot)
    elif name.endswith((".jsonl", ".json", ".parquet")):
        task = _file_task(name, grader)
    else:
        close = difflib.get_close_matches(name, builders, n=1)
        hint = f"did you mean '{close[0]}'?" if close else \
            f"built-in tasks: {', '.join(sorted(builders))}, or a .jsonl file with --grader"
        raise CorralError(f"unknown task '{name}'; {hint}")
    if system_prompt:
        task.system_prompt = system_prompt
    if limit:
        task.items = task.items[:limit]
    return task


def _file_task(path: str, grader_spec: str) -> Task:
    from corral.data.readers import load_items

    if not grader_spec:
        raise CorralError(f"task file '{path}' needs a grader: pass --grader GRADER.json "
                          "or a built-in rule name such as numeric")
    return Task(name=path, items=load_items(path), grader=load_any_grader(grader_spec))


def load_any_grader(spec: str):
    """A grader JSON file or inline JSON (OpenAI format, or {"type": "reward_model", ...}),
    or a built-in rule grader name."""
    import json
    import os
    from pathlib import Path

    from corral.graders.rules import RULE_GRADERS, make_rule_grader

    if spec in RULE_GRADERS:
        return make_rule_grader(spec)
    from corral.graders.openai import load_grader

    if os.path.exists(spec):
        parsed = json.loads(Path(spec).read_text(encoding="utf-8")) if spec.endswith(".json") \
            else spec
    else:
        try:
            parsed = json.loads(spec)
        except json.JSONDecodeError:
            raise CorralError(f"grader '{spec}' is neither a file, inline JSON, nor a built-in "
                              f"rule ({', '.join(sorted(RULE_GRADERS))})") from None
    if isinstance(parsed, dict) and parsed.get("type") == "reward_model":
        from corral.methods.rm import reward_model_grader

        return reward_model_grader(parsed)
    return load_grader(parsed)
