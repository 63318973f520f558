"""Batch sources: what the loop asks for its micro-batches. `DatasetSource` serves fixed
packed batches (SFT, preference, reward models); `RolloutSource` (rollout.py) samples them."""
from __future__ import annotations

import math
from typing import Protocol

import torch

from corral.core.errors import CorralError


class BatchSource(Protocol):
    """Where batches come from (a dataset, or rollouts). `micro_batches(step)` must depend only
    on the step and the source's state, so a resumed run sees exactly the same batches.
    Optional `tokens_per_epoch` / `sequences_per_epoch` let `plan` report the effective batch.
    """

    steps_per_epoch: int  # optimizer steps per epoch, grad_accum already accounted for

    def micro_batches(self, step: int) -> list: ...
    def state_dict(self) -> dict: ...
    def load_state_dict(self, state: dict) -> None: ...


class DatasetSource(BatchSource):
    """A fixed list of batches, reshuffled every epoch.

    Epoch e visits the batches in `torch.randperm(n, generator=manual_seed(seed + e))`; optimizer
    step k (0-based, counted across epochs) takes `order[(k % spe) * grad_accum:][:grad_accum]`.
    When n is not a multiple of grad_accum, the last step of each epoch keeps the remainder
    (fewer micro-batches): the loop divides by the summed weight, so it is still an exact mean,
    over fewer tokens, and no batch is dropped or seen twice in an epoch.
    """

    def __init__(self, batches: list, grad_accum: int = 1, seed: int = 0):
        if not batches:
            raise CorralError("the training data produced no batches; check data.train "
                              "(is it empty?) and data.max_length")
        if grad_accum < 1:
            raise CorralError(f"train.grad_accum={grad_accum} must be at least 1")
        self.batches, self.grad_accum, self.seed = list(batches), grad_accum, seed
        self.steps_per_epoch = math.ceil(len(self.batches) / grad_accum)
        self.tokens_per_epoch = sum(int(getattr(b, "n_tokens", 0)) for b in self.batches) or None
        seqs = [getattr(b, "seq_lens", None) for b in self.batches]
        self.sequences_per_epoch = (sum(len(s) for s in seqs)
                                    if all(s is not None for s in seqs) else None)
        self._cached = (-1, None)

    def order(self, epoch: int) -> list[int]:
        if self._cached[0] != epoch:
            g = torch.Generator().manual_seed(self.seed + epoch)
            self._cached = (epoch, torch.randperm(len(self.batches), generator=g).tolist())
        return self._cached[1]

    def micro_batches(self, step: int) -> list:
        epoch, k = divmod(step, self.steps_per_epoch)
        picked = self.order(epoch)[k * self.grad_accum:(k + 1) * self.grad_accum]
        return [self.batches[i] for i in picked]

    def state_dict(self) -> dict:
        return {"seed": self.seed, "grad_accum": self.grad_accum, "n_batches": len(self.batches)}

    def load_state_dict(self, state: dict) -> None:
        # Batches are a pure function of (step, these numbers); if they changed, a resume
        # would silently train on a different order.
        if state != self.state_dict():
            raise CorralError(f"the checkpoint was made with {state}, this run has "
                              f"{self.state_dict()}; the data, train.batch_tokens, "
                              "train.grad_accum or train.seed changed, so start a new run.name")
