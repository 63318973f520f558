"""Preference data as packed, padding-free batches, and the objectives that train on them:
the DPO family, SimPO, ORPO (pairs) and KTO (rows labelled desirable or undesirable)."""
from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch

from corral.objectives import losses
from corral.data.batching import IGNORE, has_target, plan
from corral.data.batching import collate as collate_examples
from corral.data.render import Example, render
from corral.core.errors import CorralError
from corral.core.records import Completion, Feedback

DPO_LOSSES = ("sigmoid", "ipo", "hinge", "robust", "norm")


# ---------------------------------------------------------------- rendering
def render_response(prompt, response, tokenizer, max_length=None, template=None,
                    source: str = "") -> Example:
    """One prompt + response as an Example whose targets are the response's tokens (and EOS)."""
    return render(Completion(prompt, response, source), tokenizer, mask="assistant",
                  max_length=max_length, template=template)


def render_pairs(records, tokenizer, max_length=None, template=None):
    """Preferences -> ([(chosen Example, rejected Example)], dropped): a pair is dropped when
    truncation leaves either side without a target token."""
    pairs, dropped = [], 0
    for r in records:
        pair = tuple(render_response(r.prompt, side, tokenizer, max_length, template, r.source)
                     for side in (r.chosen, r.rejected))
        if all(has_target(ex) for ex in pair):
            pairs.append(pair)
        else:
            dropped += 1
    return pairs, dropped


def render_feedback(records, tokenizer, max_length=None, template=None):
    """Feedback -> ([Example], [label], dropped)."""
    examples, labels, dropped = [], [], 0
    for r in records:
        ex = render_response(r.prompt, r.completion, tokenizer, max_length, template, r.source)
        if has_target(ex):
            examples.append(ex)
            labels.append(bool(r.label))
        else:
            dropped += 1
    return examples, labels, dropped


def split_pairs(preferences) -> list[Feedback]:
    """Paired data as unpaired KTO rows: chosen is desirable, rejected undesirable."""
    return [Feedback(p.prompt, side, label, p.source) for p in preferences
            for side, label in ((p.chosen, True), (p.rejected, False))]


# ---------------------------------------------------------------- batches
@dataclass
class SeqBatch:
    """Sequences packed into one row ([1, T] tensors, position ids restart per sequence).

    seq_index [N]: the sequence of each of the N target positions, so per-sequence sums are
    `segment_sum(token_logps, seq_index, n_seqs)`; n_targets [S]: target tokens per sequence;
    ref_logps [S]: reference log-probs when cached before training (else None).
    """
    input_ids: torch.Tensor
    position_ids: torch.Tensor
    labels: torch.Tensor
    seq_lens: list[int]
    n_tokens: int
    n_loss_tokens: int
    seq_index: torch.Tensor
    n_targets: torch.Tensor
    sources: list[str]
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
        return replace(self, input_ids=move(self.input_ids), position_ids=move(self.position_ids),
                       labels=move(self.labels), seq_index=move(self.seq_index),
                       n_targets=move(self.n_targets), ref_logps=move(self.ref_logps))


def pack_sequences(examples) -> SeqBatch:
    """Examples -> one packed SeqBatch (in the given order)."""
    b = collate_examples(examples)
    owner = torch.repeat_interleave(torch.arange(len(examples)), torch.tensor(b.seq_lens))
    seq_index = owner[b.labels[0] != IGNORE]
    n_targets = torch.bincount(seq_index, minlength=len(examples)).float()
    return SeqBatch(b.input_ids, b.position_ids, b.labels, b.seq_lens, b.n_tokens,
                    b.n_loss_tokens, seq_index, n_targets, b.sources)


def collate(pairs) -> SeqBatch:
    """[(chosen, rejected)] -> one row: c0, r0, c1, r1, ... (one forward for both sides)."""
    return pack_sequences([ex for pair in pairs for ex in pair])


class _Sized:
    """What `plan` needs of an item: a length and a source for its error message."""

    def __init__(self, n: int, source: str):
        self.input_ids, self.source = range(n), source


def pair_batches(pairs, max_tokens: int, seed: int | None = 0) -> list[SeqBatch]:
    """Pairs grouped under a token budget (both sides counted), each group one packed row."""
    sized = [_Sized(len(c.input_ids) + len(r.input_ids), f"the pair at {c.source or '?'}")
             for c, r in pairs]
    return [collate([pairs[i] for i in group]) for group in plan(sized, max_tokens, seed)]


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


# ---------------------------------------------------------------- objectives
def sequence_logps(policy, batch: SeqBatch) -> torch.Tensor:
    """Summed log-probs [S] of each sequence's targets, in one forward."""
    logps = policy.token_logps(batch)
    return losses.segment_sum(logps, batch.seq_index.to(logps.device), batch.n_seqs)


def reference_logps(policy, batch: SeqBatch) -> torch.Tensor:
    """The cached reference log-probs [S], or one reference forward without gradients."""
    if batch.ref_logps is not None:
        return batch.ref_logps
    with policy.reference():
        return sequence_logps(policy, batch)


def _pair_metrics(rew_c, rew_r, logp_c, logp_r) -> dict:
    """Sums over pairs (the loop divides by the number of pairs)."""
    return {"rewards/chosen": rew_c.sum(), "rewards/rejected": rew_r.sum(),
            "rewards/margin": (rew_c - rew_r).sum(), "rewards/accuracy": (rew_c > rew_r).sum(),
            "logps/chosen": logp_c.detach().sum(), "logps/rejected": logp_r.detach().sum()}


class _PairObjective:
    needs_reference = False

    def weight(self, batch) -> float:
        return float(batch.n_pairs)


class DPO(_PairObjective):
    """DPO family on pair batches; loss sum over pairs, weight = pairs. rpo_alpha adds
    α · mean-token NLL of each chosen response (RPO)."""
    name = "dpo"
    needs_reference = True

    def __init__(self, loss: str = "sigmoid", beta: float = 0.1, label_smoothing: float = 0.0,
                 rpo_alpha: float = 0.0):
        if loss not in DPO_LOSSES:
            raise CorralError(f"dpo.loss={loss!r} is not one of {', '.join(DPO_LOSSES)}, "
                              "simpo, orpo")
        if not beta > 0:
            raise CorralError(f"dpo.beta={beta} must be positive")
        if not 0 <= label_smoothing < 0.5:
            raise CorralError(f"dpo.label_smoothing={label_smoothing} must be in [0, 0.5)")
        if rpo_alpha < 0:
            raise CorralError(f"dpo.rpo_alpha={rpo_alpha} must be >= 0 (0 turns it off)")
        self.loss, self.beta, self.eps, self.rpo_alpha = loss, beta, label_smoothing, rpo_alpha

    def __call__(self, policy, batch):
        logps = sequence_logps(policy, batch)
        ref = reference_logps(policy, batch).to(logps.device)
        n = batch.n_targets.to(logps.device)
        per_pair, rew_c, rew_r = losses.dpo_loss(
            logps[0::2], logps[1::2], ref[0::2], ref[1::2], self.beta, self.loss, self.eps,
            n[0::2], n[1::2])
        loss = per_pair.sum()
        metrics = _pair_metrics(rew_c, rew_r, logps[0::2], logps[1::2])
        # log-ratio of the data under policy vs reference: a KL proxy (off-policy samples)
        metrics["kl_proxy"] = (logps - ref).detach().sum() / 2
        if self.rpo_alpha:
            nll = -logps[0::2] / n[0::2]
            loss = loss + self.rpo_alpha * nll.sum()
            metrics["nll/chosen"] = nll.detach().sum()
        return loss, metrics


class SimPO(_PairObjective):
    """Reference-free: −log σ(β (avg logp(y+) − avg logp(y−)) − γ); rewards = β · avg logp."""
    name = "simpo"

    def __init__(self, beta: float = 2.0, gamma: float = 1.0):
        if not beta > 0:
            raise CorralError(f"dpo.beta={beta} must be positive")
        self.beta, self.gamma = beta, gamma

    def __call__(self, policy, batch):
        logps = sequence_logps(policy, batch)
        avg = logps / batch.n_targets.to(logps.device)
        per_pair = losses.simpo_loss(avg[0::2], avg[1::2], self.beta, self.gamma)
        rewards = (self.beta * avg).detach()
        return per_pair.sum(), _pair_metrics(rewards[0::2], rewards[1::2], avg[0::2], avg[1::2])


class ORPO(_PairObjective):
    """Reference-free: mean NLL(y+) + λ · −log σ(log odds(y+) − log odds(y−))."""
    name = "orpo"

    def __init__(self, lam: float = 0.1):
        if lam < 0:
            raise CorralError(f"dpo.orpo_lambda={lam} must be >= 0")
        self.lam = lam

    def __call__(self, policy, batch):
        logps = sequence_logps(policy, batch)
        avg = logps / batch.n_targets.to(logps.device)
        per_pair, ratio = losses.orpo_loss(-avg[0::2], avg[0::2], avg[1::2], self.lam)
        rewards = (self.lam * avg).detach()
        metrics = _pair_metrics(rewards[0::2], rewards[1::2], avg[0::2], avg[1::2])
        metrics.update({"nll/chosen": -avg[0::2].detach().sum(), "odds_ratio_loss": ratio.sum()})
        return per_pair.sum(), metrics


class KTO:
    """KTO on FeedbackBatch rows; loss sum over rows, weight = rows. The reference point z is
    the batch's mean log-ratio on mismatched pairs, clamped at 0, without gradient."""
    name = "kto"
    needs_reference = True

    def __init__(self, beta: float = 0.1, desirable_weight: float = 1.0,
                 undesirable_weight: float = 1.0):
        if not beta > 0:
            raise CorralError(f"kto.beta={beta} must be positive")
        if desirable_weight < 0 or undesirable_weight < 0:
            raise CorralError("kto.desirable_weight and kto.undesirable_weight must be >= 0")
        self.beta, self.w_d, self.w_u = beta, desirable_weight, undesirable_weight

    def weight(self, batch) -> float:
        return float(batch.n_rows)

    def kl_estimate(self, policy, batch: FeedbackBatch) -> torch.Tensor:
        """z = max(0, mean of logp_θ − logp_ref over the mismatched pairs), detached."""
        if batch.n_rows < 2:
            raise CorralError("a KTO micro-batch has 1 row; the KL estimate needs at least 2 "
                              "(raise train.batch_tokens)")
        with torch.no_grad():
            kl_pol = sequence_logps(policy, batch.mismatched)
        kl_ref = reference_logps(policy, batch.mismatched).to(kl_pol.device)
        return (kl_pol - kl_ref).mean().detach().clamp(min=0)

    def __call__(self, policy, batch):
        logps = sequence_logps(policy, batch.target)
        ref = reference_logps(policy, batch.target).to(logps.device)
        z = self.kl_estimate(policy, batch)
        good = batch.desirable.to(logps.device)
        per_row = losses.kto_loss(logps, ref, good, z, self.beta, self.w_d, self.w_u)
        delta = (logps - ref).detach()
        sign = good.float() * 2 - 1
        return per_row.sum(), {"kl": z * batch.n_rows,
                               "rewards/signed": (self.beta * delta * sign).sum(),
                               "rewards/accuracy": ((delta - z) * sign > 0).sum()}


def class_ratio(labels, desirable_weight: float, undesirable_weight: float) -> float:
    """(w_d n_d) / (w_u n_u): the KTO paper recommends [1, 4/3]."""
    n_d = sum(bool(x) for x in labels)
    n_u = len(labels) - n_d
    bottom = undesirable_weight * n_u
    return desirable_weight * n_d / bottom if bottom else math.inf
