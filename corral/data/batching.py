"""Padding-free micro-batches: rendered examples concatenated into one row whose position
ids restart at 0 per sequence, so transformers attends only within each sequence.

The batch family, all packed rows: Batch (SFT), SeqBatch (scored per sequence: preference
pairs, KTO rows, reward models), FeedbackBatch (KTO rows + mismatched copies for the KL point)
and RolloutBatch (RL: per-token old log-probs, advantages, values)."""
from __future__ import annotations

import bisect
import random
from dataclasses import dataclass, field, fields, replace

import torch

from corral.core.errors import CorralError
from corral.data.render import Example

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
    return Batch(_long([ids]), _long([pos]), _long([labels]),
                 [len(ex.input_ids) for ex in examples], len(ids), n_loss,
                 [ex.source for ex in examples])


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


# ---------------------------------------------------------------- sequence batches
@dataclass(kw_only=True)
class SeqBatch(Batch):
    """A Batch whose sequences are scored one by one (pairs, KTO rows, reward models).

    seq_index [N]: the sequence of each of the N target positions, so per-sequence sums are
    `segment_sum(token_logps, seq_index, n_seqs)`; n_targets [S]: target tokens per sequence;
    ref_logps [S]: reference log-probs when cached before training (else None).
    """
    seq_index: torch.Tensor
    n_targets: torch.Tensor
    ref_logps: torch.Tensor | None = None

    @property
    def n_seqs(self) -> int:
        return len(self.seq_lens)

    @property
    def n_pairs(self) -> int:  # pair batches hold chosen, rejected, chosen, rejected, ...
        return len(self.seq_lens) // 2

    def parts(self) -> list[SeqBatch]:
        return [self]

    def to(self, device) -> SeqBatch:
        move = (lambda t: None if t is None else t.to(device))
        return replace(super().to(device), seq_index=move(self.seq_index),
                       n_targets=move(self.n_targets), ref_logps=move(self.ref_logps))


def pack_sequences(examples) -> SeqBatch:
    """Examples -> one packed SeqBatch (in the given order)."""
    b = collate(examples)
    owner = torch.repeat_interleave(torch.arange(len(examples)), torch.tensor(b.seq_lens))
    seq_index = owner[b.labels[0] != IGNORE]
    n_targets = torch.bincount(seq_index, minlength=len(examples)).float()
    return SeqBatch(**{f.name: getattr(b, f.name) for f in fields(Batch)},
                    seq_index=seq_index, n_targets=n_targets)


def collate_pairs(pairs) -> SeqBatch:
    """[(chosen, rejected)] -> one row: c0, r0, c1, r1, ... (one forward for both sides)."""
    return pack_sequences([ex for pair in pairs for ex in pair])


class _Sized:
    """What `plan` needs of an item: a length and a source for its error message."""

    def __init__(self, n: int, source: str):
        self.input_ids, self.source = range(n), source


def pair_batches(pairs, max_tokens: int, seed: int | None = None) -> list[SeqBatch]:
    """Pairs grouped under a token budget (both sides counted), each group one packed row
    holding chosen_0, rejected_0, chosen_1, rejected_1, ... (one forward for both sides).
    The one pair packer: DPO-family objectives and reward models both train on it."""
    sized = [_Sized(len(c.input_ids) + len(r.input_ids),
                    f"the pair at {c.source or '?'} (chosen + rejected)")
             for c, r in pairs]
    return [collate_pairs([pairs[i] for i in group]) for group in plan(sized, max_tokens, seed)]


@dataclass
class FeedbackBatch:
    """KTO rows plus, for the KL reference point, each prompt with another row's completion
    (row i's prompt + row i−1's completion: mismatched pairs, forward only)."""
    target: SeqBatch
    mismatched: SeqBatch
    desirable: torch.Tensor  # [R] bool

    @property
    def n_rows(self) -> int:
        return self.target.n_seqs

    @property
    def n_tokens(self) -> int:
        return self.target.n_tokens + self.mismatched.n_tokens

    @property
    def seq_lens(self) -> list[int]:
        return self.target.seq_lens

    def parts(self) -> list[SeqBatch]:
        return [self.target, self.mismatched]

    def to(self, device) -> FeedbackBatch:
        return FeedbackBatch(self.target.to(device), self.mismatched.to(device),
                             self.desirable.to(device))


def splice(prompt_of: Example, completion_of: Example) -> Example:
    """The prompt of one example followed by the response of another (at the first target)."""
    a, b = prompt_of.loss_mask.index(1), completion_of.loss_mask.index(1)
    return Example(prompt_of.input_ids[:a] + completion_of.input_ids[b:],
                   [0] * a + completion_of.loss_mask[b:], prompt_of.source)


def feedback_batches(examples, labels, max_tokens: int, seed: int | None = 0):
    """Rows grouped under a token budget (a row counts twice: it and its mismatched copy);
    every group gets at least 2 rows, since the KL estimate needs another row's completion."""
    if len(examples) < 2:
        raise CorralError("KTO needs at least 2 rows: its KL estimate pairs each prompt with "
                          "another row's completion; add rows to data.train")
    sized = [_Sized(2 * len(ex.input_ids), f"{ex.source or 'a row'} (counted twice for KTO)")
             for ex in examples]
    groups = _no_singletons(plan(sized, max_tokens, seed), sized, max_tokens)
    out = []
    for group in groups:
        rows = [examples[i] for i in group]
        mismatched = [splice(rows[k], rows[k - 1]) for k in range(len(rows))]
        out.append(FeedbackBatch(pack_sequences(rows), pack_sequences(mismatched),
                                 torch.tensor([labels[i] for i in group])))
    return out


def _no_singletons(groups, sized, max_tokens: int) -> list[list[int]]:
    """Move a row into each one-row group from a group of 3+ rows where it fits; else raise."""
    size = (lambda g: sum(len(sized[i].input_ids) for i in g))
    for single in [g for g in groups if len(g) == 1]:
        room = max_tokens - size(single)
        donors = [(len(sized[i].input_ids), i, g) for g in groups if len(g) >= 3 for i in g
                  if len(sized[i].input_ids) <= room]
        if not donors:
            need = len(sized[single[0]].input_ids) + min(len(s.input_ids) for s in sized)
            raise CorralError(
                f"train.batch_tokens={max_tokens} leaves {sized[single[0]].source} alone in a "
                "micro-batch, and KTO's KL estimate needs at least 2 rows per micro-batch; "
                f"raise train.batch_tokens to at least {need} or lower data.max_length")
        _, i, donor = min(donors, key=lambda d: d[:2])
        donor.remove(i)
        single.append(i)
    return [sorted(g) for g in groups]


@dataclass
class RolloutBatch(Batch):
    """A packed Batch plus per-label-position tensors [N] in `token_logps` order."""
    old_logps: torch.Tensor | None = None
    advantages: torch.Tensor | None = None
    seq_ids: torch.Tensor | None = None  # 0..n_seqs-1 within this micro-batch
    ref_logps: torch.Tensor | None = None
    values: torch.Tensor | None = None
    returns: torch.Tensor | None = None
    n_seqs: int = 0
    stats: dict = field(default_factory=dict)  # rollout-level means (reward, zero_var_frac)

    def to(self, device) -> RolloutBatch:
        moved = {f.name: getattr(self, f.name).to(device) for f in fields(self)
                 if torch.is_tensor(getattr(self, f.name))}
        return replace(self, **moved)
