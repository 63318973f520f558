"""Quality scores for rows: any scorer callable (grader, reward model, judge), perplexity, IFD.

    scores = score_rows(rows, grader_scorer(load_grader("numeric")))
    result = filter_by_score(rows, scores, min_score=0.5)
    ppl = perplexity(model, tokenizer, [(prompt, response), ...])   # PPL(y | x)
    ifd = ifd_scores(model, tokenizer, rows)                        # PPL(y | x) / PPL(y)

IFD (instruction-following difficulty, Li et al. 2024 "From Quantity to Quality", the
Cherry-LLM code): PPL(y | x) averages the NLL of every response token after the prompt;
PPL(y) runs the response alone, so its first token has no context and is not scored. IFD near
or above 1 means the prompt does not help predict the response.
"""
from __future__ import annotations

import math

import numpy as np

from corral.core.errors import CorralError
from corral.core.records import Chat, Completion, Feedback, Preference, Text, as_dicts
from corral.curate.report import Finding, StepResult
from corral.curate.text import Row, source_of


def score_rows(rows: list, scorer) -> list[float]:
    """scorer(row) -> float for every row (a row's score that is not a number is an error)."""
    scores = []
    for index, row in enumerate(rows):
        value = scorer(row)
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            raise CorralError(f"{source_of(row, index)}: the scorer returned {value!r}, "
                              "not a number; make it return a float per row")
        scores.append(float(value))
    return scores


def filter_by_score(rows: list, scores: list[float], min_score: float,
                    step: str = "score") -> StepResult:
    """Keep rows scoring ≥ min_score (NaN fails); each dropped row is reported with its score."""
    if len(scores) != len(rows):
        raise CorralError(f"{len(scores)} scores for {len(rows)} rows; give one score per row")
    kept, findings = [], []
    for index, (row, value) in enumerate(zip(rows, scores)):
        if value >= min_score:
            kept.append(row)
        else:
            findings.append(Finding(step, source_of(row, index), f"score below {min_score}",
                                    score=value))
    return StepResult(step, kept, findings, params={"min_score": min_score})


def grader_scorer(grader):
    """A scorer from a corral Grader: grades the row's response against its prompt."""
    from corral.graders.base import Sample

    def scorer(row) -> float:
        prompt, response = prompt_and_response(row)
        item = {"messages": prompt if isinstance(prompt, list) else
                [{"role": "user", "content": prompt}]}
        return float(grader.grade(item, Sample.of(response)).value)
    return scorer


def prompt_and_response(row, tokenizer=None):
    """(prompt, response) of a record: chat, every turn before the last assistant turn and that
    turn; completion / feedback, prompt and completion; preference, prompt and chosen; text,
    no prompt. With a tokenizer that has a chat template, a conversational prompt is rendered
    as the model sees it (generation prompt included); otherwise it stays a message list."""
    record = row.record if isinstance(row, Row) else row
    if isinstance(record, tuple) and len(record) == 2:
        prompt, response = record
    elif isinstance(record, Chat):
        last = max((k for k, m in enumerate(record.messages) if m.role == "assistant"),
                   default=None)
        if last is None:
            raise CorralError(f"{record.source or 'a chat row'} has no assistant turn to score")
        prompt, response = as_dicts(record.messages[:last]), record.messages[last].content
    elif isinstance(record, (Completion, Feedback, Preference)):
        side = record.chosen if isinstance(record, Preference) else record.completion
        prompt = record.prompt if isinstance(record.prompt, str) else as_dicts(record.prompt)
        response = side if isinstance(side, str) else "\n".join(m.content for m in side)
    elif isinstance(record, Text):
        prompt, response = "", record.text
    else:
        raise CorralError(f"cannot split a {type(record).__name__} into prompt and response; "
                          "give chat, completion, preference or text records")
    if isinstance(prompt, list) and tokenizer is not None:
        if getattr(tokenizer, "chat_template", None):
            return tokenizer.apply_chat_template(prompt, tokenize=False,
                                                 add_generation_prompt=True), response
        prompt = "\n".join(m["content"] for m in prompt)
    return prompt, response


def _mean_nll(model, sequences: list[list[int]], firsts: list[int], pad_id: int,
              batch_size: int) -> np.ndarray:
    """Per sequence, the mean NLL of tokens at positions ≥ first (each predicted from the
    tokens before it); NaN when none. Batches of similar length, right-padded and masked."""
    import torch

    out = np.full(len(sequences), np.nan)
    order = sorted(range(len(sequences)), key=lambda k: len(sequences[k]))
    device = next(model.parameters()).device
    for lo in range(0, len(order), batch_size):
        batch = order[lo:lo + batch_size]
        width = max(len(sequences[k]) for k in batch)
        ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        labels = torch.full((len(batch), width), -100, dtype=torch.long)
        for row, k in enumerate(batch):
            seq = torch.tensor(sequences[k], dtype=torch.long)
            ids[row, :len(seq)], mask[row, :len(seq)] = seq, 1
            labels[row, firsts[k]:len(seq)] = seq[firsts[k]:]
        with torch.inference_mode():
            logits = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits
        logp = torch.log_softmax(logits[:, :-1].float(), dim=-1)
        targets = labels[:, 1:].to(device)
        picked = logp.gather(-1, targets.clamp(min=0).unsqueeze(-1)).squeeze(-1)
        scored = targets != -100
        nll = -(picked * scored).sum(-1) / scored.sum(-1).clamp(min=1)
        for row, k in enumerate(batch):
            if scored[row].any():
                out[k] = float(nll[row])
    return out


def _ids(tokenizer, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=False)["input_ids"] if text else []


def _sequences(tokenizer, pairs, max_length: int):
    """(conditioned, unconditioned) sequences and their first scored positions."""
    cond, cond_first, alone = [], [], []
    for prompt, response in pairs:
        y = _ids(tokenizer, response)[:max_length]
        x = _ids(tokenizer, prompt)
        x = x[max(0, len(x) - (max_length - len(y))):] if max_length > len(y) else []
        cond.append(x + y)
        cond_first.append(max(len(x), 1))
        alone.append(y)
    return cond, cond_first, alone


def perplexity(model, tokenizer, pairs: list[tuple[str, str]], batch_size: int = 8,
               max_length: int = 2048, conditioned: bool = True) -> list[float]:
    """PPL(y | x) per (prompt, response) pair (conditioned=False: PPL(y) of the response
    alone). Prompts are cut from the left and responses from the right to fit max_length."""
    cond, cond_first, alone = _sequences(tokenizer, pairs, max_length)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    nll = _mean_nll(model, cond, cond_first, pad, batch_size) if conditioned else \
        _mean_nll(model, alone, [1] * len(alone), pad, batch_size)
    return [math.exp(v) if not math.isnan(v) else math.nan for v in nll]


def ifd_scores(model, tokenizer, rows: list, batch_size: int = 8,
               max_length: int = 2048) -> list[float]:
    """IFD = PPL(y | x) / PPL(y) per row (records, Rows or (prompt, response) pairs); NaN for
    a row without a prompt or with a one-token response."""
    pairs = [prompt_and_response(row, tokenizer) for row in rows]
    cond, cond_first, alone = _sequences(tokenizer, pairs, max_length)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    with_prompt = _mean_nll(model, cond, cond_first, pad, batch_size)
    without = _mean_nll(model, alone, [1] * len(alone), pad, batch_size)
    return [math.exp(a - b) if prompt and not (math.isnan(a) or math.isnan(b)) else math.nan
            for (prompt, _), a, b in zip(pairs, with_prompt, without)]
