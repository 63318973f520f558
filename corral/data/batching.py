"""Padding-free micro-batches: rendered examples concatenated into one row whose position
ids restart at 0 per sequence, so transformers attends only within each sequence."""
from __future__ import annotations

import bisect
import random
from dataclasses import dataclass, field, replace

import torch

from corral.core.errors import CorralError

IGNORE = -100  # label of a position that carries no loss


@dataclass
class Batch:
    """One micro-batch. Packed: tensors are [1, T] and `attention_mask` is None.
    `pad_batch` gives the padded [B, T] form (with an attention mask) for comparisons.

    labels are already shifted: labels[t] is the target for the logits at t
    (input_ids[t+1] when that token is trained, else -100; -100 at every sequence's last
    position). So compute cross_entropy(logits, labels) directly; do NOT pass labels to a
    transformers model, which would shift them a second time.
    """
    input_ids: torch.Tensor
    position_ids: torch.Tensor
    labels: torch.Tensor
    seq_lens: list[int]
    n_tokens: int
    n_loss_tokens: int
    sources: list[str] = field(default_factory=list)
    attention_mask: torch.Tensor | None = None

    def to(self, device) -> Batch:
        mask = None if self.attention_mask is None else self.attention_mask.to(device)
        return replace(self, input_ids=self.input_ids.to(device),
                       position_ids=self.position_ids.to(device),
                       labels=self.labels.to(device), attention_mask=mask)

    def model_inputs(self) -> dict:
        """Keyword arguments for `model(**...)`. use_cache=False matters: with a cache object
        transformers skips packed-sequence detection and would attend across sequences."""
        return {"input_ids": self.input_ids, "position_ids": self.position_ids,
                "attention_mask": self.attention_mask, "use_cache": False}


class Batches(list):
    """The list of Batch objects `pack` returns, plus how many examples it dropped."""

    def __init__(self, batches=(), dropped: int = 0):
        super().__init__(batches)
        self.dropped = dropped  # examples without a single target token


def shifted_labels(input_ids: list[int], loss_mask: list[int]) -> list[int]:
    """Next-token targets: labels[t] = input_ids[t+1] if token t+1 is trained, else -100."""
    return [tok if m else IGNORE for tok, m in zip(input_ids[1:], loss_mask[1:])] + [IGNORE]


def has_target(example) -> bool:
    """The first token is never predicted, so it cannot be the only target."""
    return any(example.loss_mask[1:])


def pack(examples, max_tokens: int, shuffle_seed: int | None = None) -> Batches:
    """Group examples into packed batches of at most `max_tokens` tokens each.

    Examples without a target are dropped (counted in `.dropped`). An example longer than
    `max_tokens` raises CorralError rather than silently blowing the memory budget.
    Deterministic given the seed; shuffle_seed=None keeps input order for ties.
    """
    examples = list(examples)
    kept = [ex for ex in examples if has_target(ex)]
    dropped = len(examples) - len(kept)
    groups = plan(kept, max_tokens, shuffle_seed)
    return Batches([collate([kept[i] for i in g]) for g in groups], dropped=dropped)


def plan(examples, max_tokens: int, shuffle_seed: int | None = None) -> list[list[int]]:
    """Index groups for `pack`, so a caller can collate batches lazily: best-fit decreasing
    bin packing (longest first, each into the fullest batch it fits), then batches shuffled."""
    if max_tokens <= 0:
        raise CorralError(f"train.batch_tokens={max_tokens} must be positive")
    for ex in examples:
        if len(ex.input_ids) > max_tokens:
            raise CorralError(
                f"{ex.source or 'an example'} has {len(ex.input_ids)} tokens, more than "
                f"train.batch_tokens={max_tokens}; raise train.batch_tokens or lower "
                "data.max_length")
    rng = random.Random(shuffle_seed)
    order = list(range(len(examples)))
    if shuffle_seed is not None:
        rng.shuffle(order)  # breaks length ties differently per seed
    lengths = [len(examples[i].input_ids) for i in order]
    groups = [sorted(order[j] for j in g) for g in _best_fit(lengths, max_tokens)]
    if shuffle_seed is not None:
        rng.shuffle(groups)  # otherwise the longest sequences would all come first
    return groups


def _best_fit(lengths: list[int], capacity: int) -> list[list[int]]:
    """Best-fit decreasing in O(n log n) lookups: `rooms` is sorted (room left, bin)."""
    bins: list[list[int]] = []
    rooms: list[tuple[int, int]] = []
    for i in sorted(range(len(lengths)), key=lambda i: -lengths[i]):
        k = bisect.bisect_left(rooms, (lengths[i], -1))  # the tightest bin with enough room
        if k == len(rooms):
            bins.append([i])
            room, b = capacity - lengths[i], len(bins) - 1
        else:
            room, b = rooms.pop(k)
            bins[b].append(i)
            room -= lengths[i]
        if room > 0:
            bisect.insort(rooms, (room, b))
    return bins


def collate(examples) -> Batch:
    """Concatenate examples into one packed row."""
    ids, pos, labels = [], [], []
    for ex in examples:
        ids += ex.input_ids
        pos += range(len(ex.input_ids))
        labels += shifted_labels(ex.input_ids, ex.loss_mask)
    n_loss = sum(label != IGNORE for label in labels)
    return Batch(_long([ids]), _long([pos]), _long([labels]), [len(ex.input_ids) for ex in examples],
                 len(ids), n_loss, [ex.source for ex in examples])


def pad_batch(examples, pad_id: int = 0) -> Batch:
    """The padded [B, T] form of the same examples (right padding, attention mask); used by
    tests and benchmarks to check packing against it."""
    width = max(len(ex.input_ids) for ex in examples)
    ids, pos, labels, mask = [], [], [], []
    for ex in examples:
        n, pad = len(ex.input_ids), width - len(ex.input_ids)
        ids.append(ex.input_ids + [pad_id] * pad)
        pos.append(list(range(n)) + [0] * pad)
        labels.append(shifted_labels(ex.input_ids, ex.loss_mask) + [IGNORE] * pad)
        mask.append([1] * n + [0] * pad)
    lab = _long(labels)
    return Batch(_long(ids), _long(pos), lab, [len(ex.input_ids) for ex in examples],
                 sum(len(ex.input_ids) for ex in examples), int((lab != IGNORE).sum()),
                 [ex.source for ex in examples], attention_mask=_long(mask))


def _long(rows: list[list[int]]) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.long)
