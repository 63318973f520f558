"""Tasks = data + prompt rendering + grader; used by evaluation, RL rewards and data filters.

    task = get_task("gsm8k", split="test", data="../shared/data/gsm8k/test.jsonl", limit=50)
    task.conversations()  # chat prompts, with the task's system prompt and few-shot examples
    task.sft_records()    # the same prompts answered by their reference solutions, for SFT
"""
from __future__ import annotations

from dataclasses import dataclass, field

from corral.core.config import closest
from corral.core.errors import CorralError
from corral.core.records import Chat, Item, Message, as_messages
from corral.core.registry import Registry
from corral.tasks.prompt import PromptProgram


@dataclass
class Task:
    name: str
    items: list  # list[Item]
    grader: object  # a Grader
    system_prompt: str = ""
    few_shot: list = field(default_factory=list)  # [(user, assistant), ...]
    solutions: list = field(default_factory=list)  # reference answers, parallel to items
    program: PromptProgram | None = None  # a saved prompt program (`--prompt FILE`)

    @property
    def prompt(self) -> PromptProgram:
        """The task's prompt program: a loaded one (`use_program`), else its system prompt
        and few-shot turns."""
        if self.program is not None:
            return self.program
        return PromptProgram(self.system_prompt, tuple(map(tuple, self.few_shot)))

    def use_program(self, path: str) -> Task:
        """Render through the program saved at PATH; refused before any model call when its
        template names a field the items lack, or a demonstration is one of the items."""
        from corral.tasks.prompt import check_fields, shown_items
        from corral.tasks.prompt_file import load_program

        program = load_program(path)
        check_fields(program, self.items, f"prompt program {path}")
        leaked = shown_items(program, self.items)
        if leaked:
            raise CorralError(f"prompt program {path}: a demonstration is the item "
                              f"{leaked[0]} of task '{self.name}' (its answer would be "
                              "shown); choose demonstrations from the train split only")
        self.program = program
        return self

    def conversation(self, item: Item) -> list[dict]:
        return self.prompt.render(item)

    def conversations(self) -> list[list[dict]]:
        return self.prompt.render_all(self.items)

    def prompt_items(self) -> list[Item]:
        """Items whose messages already carry the system prompt and few-shot turns."""
        return [Item(messages=as_messages(conv), fields=item.fields, source=item.source)
                for item, conv in zip(self.items, self.conversations())]

    def sft_records(self) -> list[Chat]:
        """The items as chat demonstrations for SFT: each prompt rendered exactly as
        evaluation renders it (system prompt, few-shot turns), answered by its solution."""
        if len(self.solutions) != len(self.items) or not self.items:
            raise CorralError(f"task '{self.name}' has no reference solutions to train on; "
                              "give data.train=FILE of demonstrations instead")
        return [Chat(messages=item.messages + (Message("assistant", solution),),
                     source=item.source)
                for item, solution in zip(self.prompt_items(), self.solutions)]


_TASKS = Registry("task")


def _builders() -> Registry:
    """The built-in tasks (registered on first use: their modules import this one)."""
    if not _TASKS.names():
        from corral.tasks import arithmetic, gsm8k, ifeval_like
        for name, module in (("gsm8k", gsm8k), ("arithmetic", arithmetic),
                             ("ifeval-like", ifeval_like)):
            _TASKS.add(name, module.build)
    return _TASKS


def task_names() -> list[str]:
    return _builders().names()


# The splits each built-in task has; a file task is one split, so its label is one of these.
SPLITS = {"gsm8k": ("train", "dev", "unseen", "test"), "arithmetic": ("train", "dev", "unseen"),
          "ifeval-like": ("train", "dev", "unseen")}
FILE_SPLITS = ("train", "dev", "unseen", "test")
MAX_FEW_SHOT = 64  # more worked examples than this do not fit a small model's context


def _check_options(name: str, split: str, limit: int, few_shot: int, is_file: bool) -> None:
    splits = FILE_SPLITS if is_file else SPLITS[name]
    if split not in splits:
        close = closest(split, splits)
        hint = f"; did you mean '{close}'?" if close else ""
        what = "a task file is labelled" if is_file else f"task '{name}' has splits"
        raise CorralError(f"--split '{split}': {what} {', '.join(splits)}{hint}")
    if limit < 0:
        raise CorralError(f"--limit {limit}: give a positive number of items, or 0 for all")
    if not 0 <= few_shot <= MAX_FEW_SHOT:
        raise CorralError(f"--few-shot {few_shot}: give 0 to {MAX_FEW_SHOT} examples")
    if few_shot and is_file:
        raise CorralError(f"--few-shot {few_shot}: task file '{name}' has no worked examples to "
                          "draw from; put the examples as turns in each row's messages instead")


def get_task(name: str, split: str = "dev", data: str = "", grader: str = "", limit: int = 0,
             few_shot: int = 0, system_prompt: str = "", seed: int = 0,
             grader_flag: str = "--grader") -> Task:
    """A built-in task by name, or a user JSONL file (`name` = path) with a grader JSON.
    grader_flag: how the caller's user names `grader`, for the error when it is missing."""
    builders = _builders()
    is_file = name not in builders and name.endswith((".jsonl", ".json", ".parquet"))
    if name in builders or is_file:
        _check_options(name, split, limit, few_shot, is_file)
    if is_file:
        task = _file_task(name, grader, grader_flag)
    else:
        task = _lookup(builders, name, grader_flag)(split=split, data=data, seed=seed,
                                                     few_shot=few_shot)
    if system_prompt:
        task.system_prompt = system_prompt
    if limit:
        task.items = task.items[:limit]
    if not task.items:
        raise CorralError(f"task '{name}' has no items in split '{split}'"
                          + (f" of {data}" if data else "") + "; check the file and the split")
    return task


def _lookup(builders: Registry, name: str, grader_flag: str):
    """A built-in task's builder; an unknown name is refused with the closest one, or with
    the built-in names and the file form when none is close."""
    try:
        return builders.get(name)
    except CorralError as e:
        if "did you mean" in str(e):
            raise
        raise CorralError(f"unknown task '{name}'; built-in tasks: "
                          f"{', '.join(builders.names())}, or a .jsonl file with "
                          f"{grader_flag}") from None


def _file_task(path: str, grader_spec: str, flag: str) -> Task:
    from corral.data.readers import load_items
    from corral.graders.load import load_grader

    if not grader_spec:
        raise CorralError(f"task file '{path}' needs a grader: pass {flag} GRADER.json "
                          "or a built-in rule name such as numeric")
    return Task(name=path, items=load_items(path), grader=load_grader(grader_spec))
