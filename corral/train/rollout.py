"""Rollouts as the loop's BatchSource: prompts -> n samples each from the live policy ->
grades -> rewards -> advantages -> packed padding-free batches with per-token extras."""
from __future__ import annotations

import math
from dataclasses import dataclass, fields
from functools import partial

import torch

from corral.core.errors import CorralError
from corral.data.batching import Batch, RolloutBatch, collate, plan
from corral.data.render import Example, render_prompt
from corral.graders.base import Sample, check_grader_errors
from corral.infer.engine import SamplingParams, engine_for
from corral.objectives import losses as L
from corral.train.advantages import ESTIMATORS


@dataclass(frozen=True)
class RolloutConfig:
    """What a rollout needs, owned by train/ (methods/rl builds it from its `rl:` section, whose
    keys of the same names these are; their meanings are documented there). Defaults = rl's."""
    n: int = 8  # samples per prompt (group size)
    prompts_per_step: int = 4  # prompts per rollout
    mu: int = 1  # optimisation passes per rollout
    mini_batches: int = 1  # optimizer steps per pass
    max_new_tokens: int = 128  # sampling
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    gen_batch_size: int = 64  # decode rows at once (the default engine)
    missing_eos_penalty: float = 0.0  # rewards
    kl_coef: float = 0.0
    kl_kind: str = "k3"
    kl_in: str = "loss"  # "reward": the KL penalty goes into the per-token rewards
    recompute_old_logps: str = "auto"  # auto | always | never
    logp_tolerance: float = 0.02  # the first rollout's sampler/trainer check (0 = off)
    max_grader_errors: float = 1.0
    advantage: str = "group"  # the default estimator (a method may pass its own) and its knobs
    scale: str = "group"
    eps: float = 1e-4

    @classmethod
    def of(cls, section) -> RolloutConfig:
        """A RolloutConfig as is, or one read from the same-named attributes of a config
        section (an `rl:` section, or any object that has them)."""
        if isinstance(section, cls):
            return section
        return cls(**{f.name: getattr(section, f.name) for f in fields(cls)
                      if hasattr(section, f.name)})


@dataclass
class Trajectory:
    """One sampled completion and everything computed about it. Per-token lists have one
    entry per completion token; PPO adds `values` (a value head) and per-token rewards."""
    prompt_index: int  # into the source's items
    group: int  # samples of one prompt share a group within a rollout
    prompt_ids: list
    completion_ids: list
    sampler_logps: list
    text: str = ""
    finish_reason: str = ""
    score: float = 0.0  # the graders' combined value
    token_rewards: list | None = None  # score at the last token, minus a KL penalty if asked
    old_logps: list | None = None
    ref_logps: list | None = None
    values: list | None = None
    advantages: list | None = None
    returns: list | None = None  # value targets (GAE)
    stats: dict | None = None  # the rollout's group_stats, logged through the objective

    @property
    def reward(self) -> float:
        return math.fsum(self.token_rewards) if self.token_rewards is not None else self.score


# ---------------------------------------------------------------- advantage estimators


def group_stats(trajs, n: int) -> dict:
    """Reward mean, the fraction of groups with one reward only (no signal), lengths.
    With n = 1 (PPO: a value baseline, no groups) the whole batch counts as one group."""
    rewards = [t.reward for t in trajs]
    size = n if n > 1 else len(rewards)
    groups = [rewards[i:i + size] for i in range(0, len(rewards), size)]
    flat = sum(1 for g in groups if max(g) - min(g) < 1e-9)
    lengths = [len(t.completion_ids) for t in trajs]
    return {"reward": sum(rewards) / len(rewards), "score": sum(t.score for t in trajs) /
            len(trajs), "zero_var_frac": flat / len(groups),
            "completion_len": sum(lengths) / len(lengths),
            "truncated_frac": sum(t.finish_reason == "length" for t in trajs) / len(trajs)}


# ---------------------------------------------------------------- the source
class RolloutSource:
    """A BatchSource whose batches are sampled from the live policy.

    `rl` is a RolloutConfig (or a section with its fields, read by `RolloutConfig.of`).
    Steps map to rollouts: one rollout = `rl.prompts_per_step` prompts × `rl.n` samples, then
    `rl.mu` passes × `rl.mini_batches` mini-batches = μ·M optimizer steps over it. Optimizer
    step k uses rollout k // (μM), pass (k % μM) // M, mini-batch k % M; each mini-batch is
    packed into micro-batches of at most `batch_tokens` tokens. An epoch visits every prompt
    once (prompt order reshuffled per epoch from the seed), so train.epochs = passes over data.
    """

    def __init__(self, policy, items, grader, rl, batch_tokens: int, seed: int = 0,
                 template=None, engine=None, on_rollout=None, max_prompt_length: int = 1024,
                 estimator=None):
        if not items:
            raise CorralError("no training prompts; set data.train=FILE or data.task=NAME")
        rl = RolloutConfig.of(rl)
        self.policy, self.items, self.grader, self.rl = policy, list(items), grader, rl
        self.batch_tokens, self.seed, self.on_rollout = batch_tokens, seed, on_rollout
        self.max_prompt_length = max_prompt_length
        # (trajs) -> None, setting advantages; the method picks it (GAE reads PPO's section)
        self.estimator = estimator or partial(ESTIMATORS[rl.advantage], n=rl.n, options=rl)
        self.engine = engine or engine_for(policy, rl.gen_batch_size)
        self.prompt_ids = [render_prompt(it.messages, policy.tokenizer, template)
                           for it in self.items]
        self._check_lengths()
        self.per_rollout = rl.mu * rl.mini_batches
        self.rollouts_per_epoch = math.ceil(len(self.items) / rl.prompts_per_step)
        self.steps_per_epoch = self.rollouts_per_epoch * self.per_rollout
        self.sequences_per_epoch = len(self.items) * rl.n * rl.mu
        self.grad_accum = "by train.batch_tokens"
        self.recompute = rl.recompute_old_logps == "always" or (
            rl.recompute_old_logps == "auto" and self.per_rollout > 1)
        self._cache: tuple[int, list] = (-1, [])
        self._last_version, self._checked = None, False

    def _check_lengths(self) -> None:
        longest = max(len(p) for p in self.prompt_ids) + self.rl.max_new_tokens
        for ids, item in zip(self.prompt_ids, self.items):
            if len(ids) > self.max_prompt_length:
                raise CorralError(f"{item.source}: the prompt has {len(ids)} tokens, more than "
                                  f"data.max_prompt_length={self.max_prompt_length}; "
                                  "shorten it or raise data.max_prompt_length")
        if longest > self.batch_tokens:
            raise CorralError(f"train.batch_tokens={self.batch_tokens} cannot hold a prompt "
                              f"plus rl.max_new_tokens ({longest} tokens); raise "
                              "train.batch_tokens")

    # -- BatchSource
    def micro_batches(self, step: int) -> list:
        r, k = divmod(step, self.per_rollout)
        if self._cache[0] != r:
            self._cache = (r, self.make_rollout(r))
        p, m = divmod(k, self.rl.mini_batches)
        return self.pack(self._mini_batch(self._cache[1], r, p, m))

    def state_dict(self) -> dict:
        r, trajs = self._cache
        return {"shape": self._shape(), "rollout": r,
                "trajectories": [vars(t) for t in trajs]}

    def load_state_dict(self, state: dict) -> None:
        if state["shape"] != self._shape():
            raise CorralError(f"the checkpoint was made with {state['shape']}, this run has "
                              f"{self._shape()}; the data, rl.* or train.seed changed, so "
                              "start a new run.name")
        self._cache = (state["rollout"], [Trajectory(**t) for t in state["trajectories"]])

    def _shape(self) -> dict:
        rl = self.rl
        return {"seed": self.seed, "prompts": len(self.items), "n": rl.n, "mu": rl.mu,
                "prompts_per_step": rl.prompts_per_step, "mini_batches": rl.mini_batches}

    # -- rollouts
    def prompt_indices(self, r: int) -> list[int]:
        epoch, j = divmod(r, self.rollouts_per_epoch)
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        order = torch.randperm(len(self.items), generator=g).tolist()
        return order[j * self.rl.prompts_per_step:(j + 1) * self.rl.prompts_per_step]

    def sample(self, indices: list[int], seed: int) -> list[Trajectory]:
        """n graded samples per prompt (groups in order); the sampler is the live policy."""
        rl = self.rl
        params = SamplingParams(max_new_tokens=rl.max_new_tokens, temperature=rl.temperature,
                                top_p=rl.top_p, top_k=rl.top_k, n=rl.n, seed=seed)
        gens = self.engine.generate([self.prompt_ids[i] for i in indices], params)
        trajs = [Trajectory(i, g_idx, self.prompt_ids[i], list(g.token_ids),
                            list(g.logprobs), g.text, g.finish_reason)
                 for g_idx, (i, group) in enumerate(zip(indices, gens)) for g in group]
        pairs = [(self.items[t.prompt_index].grader_item(), Sample.of(t.text)) for t in trajs]
        scores = self.grader.grade_batch(pairs)
        check_grader_errors(scores, self.grader, rl.max_grader_errors, "rl.max_grader_errors")
        for t, s in zip(trajs, scores):
            t.score = float(s.value)
        return trajs

    def make_rollout(self, r: int) -> list[Trajectory]:
        self.check_sampler_weights(r)
        trajs = self.sample(self.prompt_indices(r), seed=self.seed * 7919 + r)
        self._annotate(trajs)
        rl, kl_sums = self.rl, []
        for t in trajs:
            rewards = [0.0] * len(t.completion_ids)
            truncated = t.finish_reason == "length"  # no EOS: penalised when asked
            rewards[-1] = t.score - (rl.missing_eos_penalty if truncated else 0.0)
            if rl.kl_coef > 0 and rl.kl_in == "reward":
                kl = L.kl_penalty(torch.tensor(t.old_logps), torch.tensor(t.ref_logps),
                                  rl.kl_kind)
                rewards = [x - rl.kl_coef * k for x, k in zip(rewards, kl.tolist())]
                kl_sums.append(float(kl.sum()))
            t.token_rewards = rewards
        self.estimator(trajs)
        stats = group_stats(trajs, rl.n)
        if kl_sums:  # KL(policy || reference) per sequence, summed over its tokens
            stats["kl_seq"] = sum(kl_sums) / len(kl_sums)
        for t in trajs:  # the stats travel with the batches so the objective can log them
            t.stats = stats
        if self.on_rollout is not None:
            self.on_rollout(r, trajs, stats)
        return trajs

    def _annotate(self, trajs) -> None:
        """Old log-probs (sampler's, or recomputed once), the step-0 check, the critic's
        values (PPO: same forward), reference log-probs."""
        need_check = not self._checked and self.rl.logp_tolerance > 0
        critic = hasattr(self.policy, "logps_and_values")
        trainer = values = None
        if critic:
            trainer, values = self.forward_logps(trajs, with_values=True)
        elif self.recompute or need_check:
            trainer = self.forward_logps(trajs)
        if need_check:
            self._check_logps(trajs, trainer)
        for i, t in enumerate(trajs):
            t.old_logps = trainer[i] if self.recompute else list(t.sampler_logps)
            if critic:
                t.values = values[i]
        if self.rl.kl_coef > 0:
            with self.policy.reference():
                ref = self.forward_logps(trajs)
            for t, lp in zip(trajs, ref):
                t.ref_logps = lp

    @torch.no_grad()
    def forward_logps(self, trajs, with_values: bool = False):
        """The trainer's log-probs of each trajectory's completion tokens (eval mode); with
        `with_values`, also the critic's value before each token, from the same forward."""
        was = self.policy.model.training
        self.policy.model.eval()
        out, vals = [None] * len(trajs), [None] * len(trajs)
        try:
            for idx, batch in self._groups(trajs):
                batch = batch.to(self.policy.device)
                if with_values:
                    lp, v = (x.float().cpu() for x in self.policy.logps_and_values(batch))
                else:
                    lp, v = self.policy.token_logps(batch).float().cpu(), None
                sizes = [len(trajs[i].completion_ids) for i in idx]
                v_parts = v.split(sizes) if v is not None else [None] * len(idx)
                for i, x, vi in zip(idx, lp.split(sizes), v_parts):
                    out[i], vals[i] = x.tolist(), (vi.tolist() if vi is not None else None)
        finally:
            self.policy.model.train(was)
        return (out, vals) if with_values else out

    def _check_logps(self, trajs, trainer) -> None:
        diff = torch.tensor([a - b for t, lp in zip(trajs, trainer)
                             for a, b in zip(lp, t.sampler_logps)], dtype=torch.float64)
        mean_abs = float(diff.abs().mean())
        kl = float(L.kl_penalty(-diff, torch.zeros_like(diff), "k3").mean())
        self.logp_check = {"logp_mean_abs_diff": mean_abs, "ratio_mean": float(diff.exp().mean()),
                           "kl_k3": kl}
        self._checked = True
        if mean_abs > self.rl.logp_tolerance:
            raise CorralError(
                f"first rollout: the trainer's log-probs of the sampled tokens differ from the "
                f"sampler's by {mean_abs:.3g} on average (> rl.logp_tolerance="
                f"{self.rl.logp_tolerance}), so ratio != 1 before any update; the sampler and "
                "trainer disagree on weights, dtype or tokenisation (check model.dtype and the "
                "engine), or raise rl.logp_tolerance")

    def check_sampler_weights(self, r: int) -> None:
        """The sampler must use the trainer's weights, and they must have moved since the
        previous rollout (μ·M optimizer updates happened in between)."""
        params = [p for p in self.policy.trainable_parameters()]
        version = sum(p._version for p in params)  # optimizer steps bump it in place
        if self._last_version is not None and r == self._last_version[0] + 1 \
                and version == self._last_version[1]:
            raise CorralError(f"rollout {r}: the policy's weights did not change since the "
                              "previous rollout, so the sampler would reuse stale samples; "
                              "the optimizer is not updating the policy's parameters")
        self._last_version = (r, version)
        sampler = getattr(self.engine.backend, "model", None)
        if sampler is None or sampler is self.policy.model:
            return
        theirs = dict(sampler.named_parameters())
        for name, p in self.policy.model.named_parameters():
            q = theirs.get(name)
            if p.requires_grad and (q is None or (q is not p and not torch.equal(q, p))):
                raise CorralError(f"rollout {r}: the sampler's weights differ from the "
                                  f"trainer's ({name}); the generation engine must sample "
                                  "from the live policy (sync it after every update)")

    # -- batches
    def _mini_batch(self, trajs, r: int, p: int, m: int) -> list:
        M = self.rl.mini_batches
        if M == 1:
            return trajs
        g = torch.Generator().manual_seed(self.seed * 31 + r * 1009 + p)
        order = torch.randperm(len(trajs), generator=g).tolist()
        return [trajs[i] for i in order[m::M]]

    def _groups(self, trajs):
        """(trajectory indices, packed Batch) of at most batch_tokens tokens each; labels
        only on completion tokens (every sampled token, EOS included, is a target)."""
        examples = [Example(t.prompt_ids + t.completion_ids,
                            [0] * len(t.prompt_ids) + [1] * len(t.completion_ids),
                            f"prompt:{t.prompt_index}") for t in trajs]
        return [(idx, collate([examples[i] for i in idx]))
                for idx in plan(examples, self.batch_tokens)]

    def pack(self, trajs) -> list:
        return [to_rollout_batch(batch, [trajs[i] for i in idx])
                for idx, batch in self._groups(trajs)]


def to_rollout_batch(batch: Batch, trajs) -> RolloutBatch:
    """Attach the trajectories' per-token lists in label order (sequence by sequence)."""
    def cat(name):
        if getattr(trajs[0], name) is None:
            return None
        return torch.tensor([x for t in trajs for x in getattr(t, name)], dtype=torch.float32)
    seq_ids = torch.tensor([i for i, t in enumerate(trajs) for _ in t.completion_ids])
    return RolloutBatch(**{f.name: getattr(batch, f.name) for f in fields(Batch)},
                        old_logps=cat("old_logps"), advantages=cat("advantages"),
                        seq_ids=seq_ids, ref_logps=cat("ref_logps"), values=cat("values"),
                        returns=cat("returns"), n_seqs=len(trajs),
                        stats=trajs[0].stats or {})
