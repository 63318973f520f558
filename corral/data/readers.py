"""Read data (.jsonl, .json, .parquet or a Hugging Face dataset id) into validated records.

Every row is checked; problems are collected as `file:line: what is wrong` and raised together.
A data.train mixture (several files with weights, `corral.core.sections.data_files`) is read
file by file, every row of each validated, then each file's records drawn `weight` times
(`draw`), the files in the order given.
"""
from __future__ import annotations

from collections.abc import Callable

from corral.core.errors import CorralError
from corral.core.io import content_hash, file_sha256  # noqa: F401 (re-exported)
from corral.core.records import ROLES, Chat, Completion, Feedback, Item, Message, Preference, Text
from corral.data.files import RowError, json_type, read_rows  # noqa: F401 (read_rows re-exported)

SFT_FORMATS = "'messages' (chat), 'prompt' + 'completion', or 'text'"
PREFERENCE_FORMATS = ("'prompt' + 'chosen' + 'rejected', 'chosen' + 'rejected' (conversations "
                      "sharing a prompt), or OpenAI DPO 'input' + 'preferred_output' + ...")
FEEDBACK_FORMATS = "'prompt' + 'completion' + 'label'"
ITEM_FORMATS = "'messages' (ending with the user's turn), 'prompt', or 'question' + 'answer'"
IDENTICAL = "'chosen' and 'rejected' are identical; there is nothing to prefer"
_DONE = "fix these rows and run again; no training was started"


def _load(path, parse_row: Callable[[dict, str], object], accepted: str,
          max_errors: int) -> list:
    """Parse every row; raise one CorralError listing the problems, or return the records.
    `path` may be a data.train mixture: every file checked, then drawn by its weight."""
    if isinstance(path, (list, tuple)):
        return _load_mixture(path, parse_row, accepted, max_errors)
    records, problems, n_problems = [], [], 0
    for source, row in read_rows(path):
        try:
            if isinstance(row, Exception):
                raise row
            records.append(parse_row(row, source))
        except RowError as e:
            n_problems += 1
            if len(problems) < max_errors:  # keep memory flat on a file that is all bad
                problems.append(f"{source}: {e}")
    if n_problems:
        more = [f"... and {n_problems - len(problems)} more"] if n_problems > len(problems) else []
        raise CorralError("\n".join([f"{path}: {n_problems} row(s) have problems:", *problems,
                                     *more, _DONE]))
    if not records:
        raise CorralError(f"{path} has no rows; expected rows with {accepted}")
    return records


def _load_mixture(spec, parse_row, accepted: str, max_errors: int) -> list:
    from corral.core.sections import data_files

    records, failed = [], []
    for f in data_files(spec):
        try:
            records += draw(_load(f.path, parse_row, accepted, max_errors), f.weight, f.path)
        except CorralError as e:  # every file checked before any stops the run
            failed.append(str(e).removesuffix(f"\n{_DONE}"))
    if failed:
        raise CorralError("\n".join([*failed, _DONE]))
    return records


def draw(records: list, weight: float, key: str) -> list:
    """The records of one mixed file, `weight` draws of each per epoch: every record
    int(weight) times, then round(frac(weight) * n) distinct records once more, chosen by a
    generator seeded with `key` (the file's path: the same rows every run), in file order."""
    import random

    whole, frac = divmod(float(weight), 1.0)
    extra = round(frac * len(records))
    picked = sorted(random.Random(f"corral-mix:{key}").sample(range(len(records)), extra))
    return list(records) * int(whole) + [records[i] for i in picked]


def _no_format(row: dict, accepted: str) -> RowError:
    return RowError(f"no recognised format: the row has keys {sorted(row)}; expected {accepted}")


def _text(value, what: str) -> str:
    """A non-blank string; OpenAI content parts [{"type": "text", "text": ...}] are joined."""
    if isinstance(value, list) and value and all(isinstance(p, dict) for p in value):
        value = _join_text_parts(value, what)
    if not isinstance(value, str):
        raise RowError(f"{what} must be a string, got {json_type(value)}")
    if not value.strip():
        raise RowError(f"{what} is empty")
    return value


def _join_text_parts(parts: list[dict], what: str) -> str:
    for i, part in enumerate(parts):
        if part.get("type") != "text" or not isinstance(part.get("text"), str):
            raise RowError(f"{what} part {i} has type {part.get('type')!r}; "
                           "only text parts ({'type': 'text', 'text': ...}) are supported")
    return "".join(part["text"] for part in parts)


def _weight(message: dict, where: str, role: str) -> int | None:
    weight = message.get("weight")
    if weight is not None and role != "assistant":
        raise RowError(f"{where} has a weight but role {role!r}; "
                       "only assistant messages carry a weight")
    if weight is not None and (isinstance(weight, bool) or weight not in (0, 1)):
        raise RowError(f"{where} weight must be 0 or 1, got {weight!r}")
    return None if weight is None else int(weight)


def _message(message, where: str) -> Message:
    if not isinstance(message, dict):
        raise RowError(f"{where} must be an object with 'role' and 'content', "
                       f"got {json_type(message)}")
    for key in ("role", "content"):
        if key not in message:
            raise RowError(f"{where} has no {key!r}")
    role = message["role"]
    if role not in ROLES:
        raise RowError(f"{where} has unknown role {role!r}; valid roles are {', '.join(ROLES)}")
    content = _text(message["content"], f"{where} content")
    return Message(role, content, _weight(message, where, role))


def _messages(value, key: str) -> tuple[Message, ...]:
    if not isinstance(value, list):
        raise RowError(f"'{key}' must be a list of messages, got {json_type(value)}")
    if not value:
        raise RowError(f"'{key}' is empty")
    return tuple(_message(m, f"{key}[{i}]") for i, m in enumerate(value))


def _side(value, key: str) -> str | tuple[Message, ...]:
    """A prompt or response: a plain string or a list of messages."""
    if isinstance(value, list):
        return _messages(value, key)
    if isinstance(value, str):
        return _text(value, f"'{key}'")
    raise RowError(f"'{key}' must be a string or a list of messages, got {json_type(value)}")


def _same_form(sides: dict) -> None:
    if len({isinstance(side, str) for side in sides.values()}) > 1:
        names = " and ".join(f"'{key}'" for key in sides)
        raise RowError(f"{names} mix plain strings and lists of messages; use one form for all")


def _has_assistant(turns: tuple[Message, ...], key: str, trained: bool = False) -> tuple:
    """Check turns hold a response; `trained`: one not masked out by weight 0."""
    replies = [m for m in turns if m.role == "assistant"]
    if not replies:
        raise RowError(f"'{key}' has no assistant message")
    if trained and all(m.weight == 0 for m in replies):
        raise RowError(f"every assistant message in '{key}' has weight 0; nothing to train on")
    return turns


def _starts_with_a_question(turns: tuple[Message, ...], key: str) -> tuple:
    """A conversation whose first turn past the system prompt is the assistant's answers
    nothing; chat templates render it as an empty or broken conversation."""
    first = next((i for i, m in enumerate(turns) if m.role not in ("system", "developer")), None)
    if first is not None and turns[first].role == "assistant":
        raise RowError(f"'{key}' starts with the assistant (message {first}); add the user "
                       "turn it answers before it")
    return turns


def _only_responses(prompt, side, key: str) -> None:
    """With an explicit prompt, a response is the assistant's reply only: repeating the prompt
    turns (or adding user/system turns) would train the model on them as if it wrote them."""
    if not isinstance(prompt, str) and len(side) > len(prompt) and side[:len(prompt)] == prompt:
        raise RowError(f"'{key}' repeats the 'prompt' turns before its reply; keep only the "
                       "assistant's reply in it, or drop 'prompt' and let the shared turns be "
                       "the prompt")
    for i, message in enumerate(side):
        if message.role not in ("assistant", "tool"):
            raise RowError(f"'{key}' message {i} has role {message.role!r}; a response holds "
                           "assistant turns only (put user and system turns in 'prompt')")


def _prompt_completion(row: dict) -> tuple:
    prompt, completion = _side(row["prompt"], "prompt"), _side(row["completion"], "completion")
    _same_form({"prompt": prompt, "completion": completion})
    if not isinstance(completion, str):
        _has_assistant(completion, "completion", trained=True)
        _only_responses(prompt, completion, "completion")
    return prompt, completion


def _parse_sft(row: dict, source: str) -> Chat | Completion | Text:
    if "messages" in row:
        turns = _has_assistant(_messages(row["messages"], "messages"), "messages", trained=True)
        return Chat(_starts_with_a_question(turns, "messages"), source)
    if "prompt" in row and "completion" in row:
        return Completion(*_prompt_completion(row), source=source)
    if "text" in row:
        return Text(_text(row["text"], "'text'"), source)
    raise _no_format(row, SFT_FORMATS)


def _openai_dpo(row: dict) -> tuple:
    missing = [k for k in ("input", "preferred_output", "non_preferred_output") if k not in row]
    if missing:
        raise RowError(f"OpenAI preference row has no {', '.join(repr(k) for k in missing)}")
    if not isinstance(row["input"], dict) or "messages" not in row["input"]:
        raise RowError("'input' must be an object with a 'messages' list")
    prompt = _messages(row["input"]["messages"], "input.messages")
    chosen, rejected = (_messages(row[k], k) for k in ("preferred_output", "non_preferred_output"))
    for key, turns in (("preferred_output", chosen), ("non_preferred_output", rejected)):
        for i, message in enumerate(turns):
            if message.role != "assistant":
                raise RowError(f"{key}[{i}] has role {message.role!r}; "
                               "responses must be assistant messages")
    return prompt, chosen, rejected


def _split_shared_prompt(chosen, rejected) -> tuple:
    """Implicit-prompt rows: the messages both conversations share are the prompt."""
    if isinstance(chosen, str) or isinstance(rejected, str):
        raise RowError("no 'prompt': give one, or make 'chosen' and 'rejected' "
                       "conversations that start with the same prompt messages")
    if chosen == rejected:
        raise RowError(IDENTICAL)
    shared = 0
    while shared < min(len(chosen), len(rejected)) and chosen[shared] == rejected[shared]:
        shared += 1
    if shared == 0:
        raise RowError("no 'prompt', and 'chosen' and 'rejected' share no prompt messages")
    for key, side in (("chosen", chosen), ("rejected", rejected)):
        if len(side) == shared:
            raise RowError(f"'{key}' has no response after the prompt it shares with the other")
        if side[shared].role != "assistant":
            raise RowError(f"the prompts of 'chosen' and 'rejected' differ at message {shared} "
                           f"({side[shared].role}); they must match up to the assistant's reply")
    return chosen[:shared], chosen[shared:], rejected[shared:]


def _trl_preference(row: dict) -> tuple:
    chosen, rejected = _side(row["chosen"], "chosen"), _side(row["rejected"], "rejected")
    if "prompt" not in row:
        return _split_shared_prompt(chosen, rejected)
    prompt = _side(row["prompt"], "prompt")
    _same_form({"prompt": prompt, "chosen": chosen, "rejected": rejected})
    if not isinstance(chosen, str):
        _has_assistant(chosen, "chosen")
        _has_assistant(rejected, "rejected")
        _only_responses(prompt, chosen, "chosen")
        _only_responses(prompt, rejected, "rejected")
    return prompt, chosen, rejected


def _parse_preference(row: dict, source: str) -> Preference:
    if "input" in row or "preferred_output" in row or "non_preferred_output" in row:
        prompt, chosen, rejected = _openai_dpo(row)
    elif "chosen" in row and "rejected" in row:
        prompt, chosen, rejected = _trl_preference(row)
    else:
        raise _no_format(row, PREFERENCE_FORMATS)
    if chosen == rejected:
        raise RowError(IDENTICAL)
    return Preference(prompt, chosen, rejected, source)


def _parse_feedback(row: dict, source: str) -> Feedback:
    if not all(key in row for key in ("prompt", "completion", "label")):
        raise _no_format(row, FEEDBACK_FORMATS)
    prompt, completion = _prompt_completion(row)
    label = row["label"]
    if not isinstance(label, bool):
        raise RowError(f"'label' must be true or false, got {label!r}")
    return Feedback(prompt, completion, label, source)


def _parse_item(row: dict, source: str) -> Item:
    """The prompt becomes messages; the row's other keys are what graders see as item.<key>."""
    if "messages" in row:
        prompt_key, messages = "messages", _messages(row["messages"], "messages")
    elif "prompt" in row:
        prompt_key, prompt = "prompt", _side(row["prompt"], "prompt")
        messages = (Message("user", prompt),) if isinstance(prompt, str) else prompt
    elif "question" in row:  # GSM8K: graders still need item.question and item.answer
        prompt_key, messages = None, (Message("user", _text(row["question"], "'question'")),)
    else:
        raise _no_format(row, ITEM_FORMATS)
    fields = {k: v for k, v in row.items() if k != prompt_key}
    if messages[-1].role != "user":
        raise RowError(f"the last message has role {messages[-1].role!r}; "
                       "an item's messages must end with the user's turn")
    return Item(messages, fields, source)


def load_sft_records(path: str, max_errors: int = 20) -> list[Chat | Completion | Text]:
    """Chat (`messages`), `prompt` + `completion`, or `text` rows, validated."""
    return _load(path, _parse_sft, SFT_FORMATS, max_errors)


def load_preference_records(path: str, max_errors: int = 20) -> list[Preference]:
    """TRL `prompt`/`chosen`/`rejected` (explicit or implicit prompt) or OpenAI DPO rows."""
    return _load(path, _parse_preference, PREFERENCE_FORMATS, max_errors)


def load_feedback_records(path: str, max_errors: int = 20) -> list[Feedback]:
    """KTO rows: `prompt` + `completion` + boolean `label`."""
    return _load(path, _parse_feedback, FEEDBACK_FORMATS, max_errors)


def load_items(path: str, max_errors: int = 20) -> list[Item]:
    """RFT / eval items: `messages`, `prompt`, or GSM8K `question` + `answer`."""
    return _load(path, _parse_item, ITEM_FORMATS, max_errors)
