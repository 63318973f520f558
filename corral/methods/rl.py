"""Policy-gradient RL (GRPO, Dr. GRPO, DAPO, RLOO, REINFORCE++ as presets) and RFT on top of
rollouts: config, the one PolicyGradient objective, the signal check and the run wiring."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from types import SimpleNamespace

import torch

from corral.objectives import losses as L
from corral.core.config import (
    EvalConfig,
    LoraConfig,
    ModelConfig,
    RunConfig,
    TrainConfig,
    apply_override,
    load_config,
    validate_choices,
)
from corral.core.errors import CorralError
from corral.store.runs import RunStore


@dataclass(frozen=True)
class RLDataConfig:
    task: str = ""  # built-in task (arithmetic, gsm8k, ifeval-like): its train/dev/unseen splits
    task_data: str = ""  # the task's local data file, when it has one (gsm8k)
    train: str = ""  # RFT items: OpenAI RFT jsonl (messages + fields the grader reads)
    validation: str = ""  # dev items, for the learning curve
    unseen: str = ""  # held-out items, evaluated once at the end (never trained on)
    limit: int = 0  # training prompts (0 = all)
    max_prompt_length: int = 1024
    max_errors: int = 20


@dataclass(frozen=True)
class RLTrainConfig(TrainConfig):
    lr: float = 1e-5
    epochs: float = 10.0  # passes over the prompts (RFT data is tiny)
    batch_tokens: int = 8192
    schedule: str = "constant"
    warmup_ratio: float = 0.0


@dataclass(frozen=True)
class RLSection:
    preset: str = "grpo"  # grpo | dr_grpo | dapo | rloo | reinforce_pp: defaults for keys below
    grader: str = ""  # grader JSON (file or inline) or rule name; "" = the task's grader
    graders: tuple = ()  # more graders, each "WEIGHT:SPEC"; rewards are the weighted sum
    n: int = 8  # samples per prompt (group size)
    prompts_per_step: int = 4  # prompts per rollout
    max_new_tokens: int = 128
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    advantage: str = "group"  # group | rloo | reinforce_pp | gae (PPO)
    scale: str = "group"  # group advantages: std per group | batch | none
    eps: float = 1e-4  # added to the std
    gamma: float = 1.0  # GAE
    lam: float = 0.95  # GAE
    value_coef: float = 0.1  # PPO: weight of the clipped value loss
    value_clip: float = 0.2  # PPO: ε_v of the clipped value loss
    missing_eos_penalty: float = 0.0  # subtracted from the reward of samples cut at max length
    reward_model: str = ""  # PPO: a reward model run (the grader), same as rl.grader={"type":
    #                         "reward_model", "model": RUN}
    aggregation: str = "seq_mean_token_mean"  # token_mean | seq_mean_token_mean | token_sum
    max_len: int = 0  # token_sum's constant (0 = rl.max_new_tokens)
    clip_low: float = 0.2
    clip_high: float = 0.2
    kl_coef: float = 0.0  # β; 0 loads no reference
    kl_kind: str = "k3"  # k1 | k2 | k3
    kl_in: str = "loss"  # loss | reward
    mu: int = 1  # optimisation passes per rollout
    mini_batches: int = 1  # optimizer steps per pass
    recompute_old_logps: str = "auto"  # auto (when mu*mini_batches > 1) | always | never
    logp_tolerance: float = 0.02  # first rollout: mean |trainer − sampler| log-prob allowed
    signal_check: str = "stop"  # stop | warn | off: before training, are there groups to learn?
    signal_check_prompts: int = 32
    gen_batch_size: int = 64  # decode rows at once
    eval_before: bool = True  # dev (and unseen) scores at step 0, for the learning curve


PRESETS = {
    "grpo": {"advantage": "group", "scale": "group", "eps": 1e-4,
             "aggregation": "seq_mean_token_mean", "clip_low": 0.2, "clip_high": 0.2},
    "dr_grpo": {"advantage": "group", "scale": "none", "aggregation": "token_sum",
                "clip_low": 0.2, "clip_high": 0.2},
    "dapo": {"advantage": "group", "scale": "group", "eps": 1e-6, "aggregation": "token_mean",
             "clip_low": 0.2, "clip_high": 0.28},
    "rloo": {"advantage": "rloo", "aggregation": "token_mean", "kl_in": "reward",
             "kl_kind": "k1"},
    "reinforce_pp": {"advantage": "reinforce_pp", "aggregation": "token_mean",
                     "kl_in": "reward", "kl_kind": "k1"},
    # PPO (corral ppo): TRL's PPOTrainer defaults; one sample per prompt, a value baseline
    "ppo": {"advantage": "gae", "n": 1, "aggregation": "token_mean", "kl_in": "reward",
            "kl_kind": "k1", "kl_coef": 0.05, "clip_low": 0.2, "clip_high": 0.2, "mu": 4,
            "gamma": 1.0, "lam": 0.95},
}
CHOICES = {"advantage": ("group", "rloo", "reinforce_pp", "gae"),
           "scale": ("group", "batch", "none"),
           "aggregation": ("token_mean", "seq_mean_token_mean", "token_sum"),
           "kl_kind": ("k1", "k2", "k3"), "kl_in": ("loss", "reward"),
           "recompute_old_logps": ("auto", "always", "never"),
           "signal_check": ("stop", "warn", "off", "no")}  # YAML reads a bare off as no


@dataclass(frozen=True)
class RLConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    lora: LoraConfig = field(default_factory=LoraConfig)
    data: RLDataConfig = field(default_factory=RLDataConfig)
    train: RLTrainConfig = field(default_factory=RLTrainConfig)
    run: RunConfig = field(default_factory=RunConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    rl: RLSection = field(default_factory=RLSection)


def load_rl_config(path: str | None = None, overrides=(), preset: str = "") -> RLConfig:
    """Defaults <- preset <- YAML file <- overrides: a preset only fills keys not given."""
    import yaml

    cfg = load_config(RLConfig, path, [*([f"rl.preset={preset}"] if preset else []),
                                       *overrides])
    raw = {}
    if path:
        with open(path, encoding="utf-8") as handle:
            raw = yaml.safe_load(handle) or {}
    for override in overrides:
        apply_override(raw, override)
    given = set((raw.get("rl") or {}) if isinstance(raw.get("rl"), dict) else ())
    name = cfg.rl.preset
    if name not in PRESETS:
        raise CorralError(f"rl.preset={name!r} is not one of {', '.join(PRESETS)}")
    defaults = {k: v for k, v in PRESETS[name].items() if k not in given}
    return dataclasses.replace(cfg, rl=dataclasses.replace(cfg.rl, **defaults))


def validate(cfg: RLConfig) -> None:
    """Reject values outside the documented choices, naming the key."""
    validate_choices(SimpleNamespace(model=cfg.model, train=cfg.train,
                                     data=SimpleNamespace(mask="assistant")))
    rl = cfg.rl
    for key, choices in CHOICES.items():
        if getattr(rl, key) not in choices:
            raise CorralError(f"rl.{key}={getattr(rl, key)!r} is not one of {', '.join(choices)}")
    checks = [(rl.n >= 1 and rl.prompts_per_step >= 1, "rl.n and rl.prompts_per_step must be >= 1"),
              (rl.mu >= 1 and rl.mini_batches >= 1, "rl.mu and rl.mini_batches must be >= 1"),
              (rl.mini_batches <= rl.n * rl.prompts_per_step,
               "rl.mini_batches must not exceed rl.n * rl.prompts_per_step"),
              (rl.clip_low >= 0 and rl.clip_high >= 0, "rl.clip_low/clip_high must be >= 0"),
              (rl.kl_coef >= 0, "rl.kl_coef must be >= 0"),
              (rl.value_coef >= 0 and rl.value_clip >= 0 and rl.missing_eos_penalty >= 0,
               "rl.value_coef, rl.value_clip and rl.missing_eos_penalty must be >= 0"),
              (not (rl.advantage == "group" and rl.scale == "group" and rl.n < 2),
               "rl.n must be >= 2 for group advantages (a group of one has no baseline)")]
    for ok, message in checks:
        if not ok:
            raise CorralError(message)


# ---------------------------------------------------------------- the objective
class PolicyGradient:
    """Clipped surrogate (+ β·KL to the reference when kl_in_loss), aggregated per `mode`.

    weight(batch) = aggregate_weight of the batch's own counts; the loop sums it over an
    optimizer step's micro-batches, so the loss is the same however a step is split.
    Metrics are aggregated like the loss (token_sum metrics as per-sequence means).
    """
    name = "policy_gradient"

    def __init__(self, clip_low=0.2, clip_high=0.2, aggregation="token_mean", max_len=1,
                 kl_coef=0.0, kl_kind="k3", kl_in_loss=True):
        self.clip_low, self.clip_high, self.mode, self.max_len = (clip_low, clip_high,
                                                                   aggregation, max_len)
        self.kl_coef, self.kl_kind, self.kl_in_loss = kl_coef, kl_kind, kl_in_loss

    @classmethod
    def from_config(cls, rl: RLSection) -> PolicyGradient:
        return cls(rl.clip_low, rl.clip_high, rl.aggregation, rl.max_len or rl.max_new_tokens,
                   rl.kl_coef, rl.kl_kind, rl.kl_in == "loss")

    def weight(self, batch) -> float:
        return L.aggregate_weight(batch.n_loss_tokens, batch.n_seqs, self.mode, self.max_len)

    def _metric(self, per_token, seq_ids):
        if self.mode == "token_sum":
            return L.aggregate(per_token, seq_ids, "seq_mean_token_mean") * self.max_len
        return L.aggregate(per_token, seq_ids, self.mode)

    def __call__(self, policy, batch):
        per_token, metrics = self.policy_terms(policy.token_logps(batch).float(), batch)
        return self.reduce(per_token, metrics, batch)

    def policy_terms(self, logps, batch):
        """Per-token clipped surrogate (+ β·KL in the loss) and per-token metrics."""
        per_token, clipped = L.clipped_surrogate(logps, batch.old_logps, batch.advantages,
                                                 self.clip_low, self.clip_high)
        d = (logps - batch.old_logps).detach()
        metrics = {"pg_loss": per_token.detach(), "ratio": d.exp(), "clip_frac": clipped.float(),
                   "approx_kl": torch.exp(-d) + d - 1}
        if self.kl_coef > 0 and self.kl_in_loss:
            kl = L.kl_penalty(logps, batch.ref_logps, self.kl_kind)
            per_token = per_token + self.kl_coef * kl
            metrics["kl_ref"] = kl.detach()
        return per_token, metrics

    def reduce(self, per_token, metrics, batch):
        """(loss sum, metric sums) aggregated per `mode`, plus the rollout's stats."""
        loss = L.aggregate(per_token, batch.seq_ids, self.mode)
        sums = {k: self._metric(v, batch.seq_ids) for k, v in metrics.items()}
        w = self.weight(batch)  # rollout-level means pass through the loop's sum / W unchanged
        sums.update({k: v * w for k, v in batch.stats.items()})
        return loss, sums


# ---------------------------------------------------------------- signal check
def signal_check(source, limit: int, seed: int = 0) -> dict:
    """Sample up to `limit` training prompts n times each; how many groups could teach."""
    from corral.train.rollout import group_stats

    indices = list(range(min(limit, len(source.items))))
    trajs = source.sample(indices, seed=seed + 123_457)
    stats = group_stats(trajs, source.rl.n)
    rewards = [t.score for t in trajs]
    stats["groups"] = len(indices)
    stats["all_same"] = ("pass@k = 0 everywhere: too hard" if max(rewards) <= 0 else
                         "pass@k = 1 everywhere: too easy" if min(rewards) >= 1 else
                         "the same reward within each prompt")
    return stats


def judge_signal(stats: dict, mode: str, log=print) -> None:
    """Refuse (or warn) when every group has identical rewards: nothing to learn from."""
    if mode in ("off", "no") or stats["zero_var_frac"] < 1.0:
        return
    message = (f"signal check: all {stats['groups']} sampled groups have identical rewards "
               f"({stats['all_same']}; mean reward {stats['reward']:.3g}), so every advantage "
               "is 0 and RL has nothing to learn from; use SFT on demonstrations, easier data, "
               "a softer grader (partial credit), or more samples (rl.n), "
               "or set rl.signal_check=warn to train anyway")
    if mode == "stop":
        raise CorralError(message)
    log("warning: " + message)


# ---------------------------------------------------------------- data, graders, evaluation
def load_grader(rl: RLSection, task_grader=None, root: str = "runs"):
    import json

    from corral.train.rollout import WeightedGraders
    from corral.tasks import load_any_grader

    if rl.reward_model and rl.grader:
        raise CorralError("set rl.reward_model or rl.grader, not both (add more graders "
                          "with rl.graders=[WEIGHT:SPEC, ...])")
    spec = rl.grader or (json.dumps({"type": "reward_model", "model": rl.reward_model,
                                     "root": root}) if rl.reward_model else "")
    base = load_any_grader(spec) if spec else task_grader
    if base is None:
        raise CorralError("no grader: set rl.grader=GRADER.json (or a rule name such as "
                          "numeric), or use data.task=NAME")
    parts = [(base, 1.0)]
    for entry in rl.graders:
        weight, _, spec = str(entry).partition(":")
        try:
            parts.append((load_any_grader(spec), float(weight)))
        except ValueError:
            raise CorralError(f"rl.graders entry {entry!r} must look like WEIGHT:SPEC, "
                              "e.g. 0.2:format.json") from None
    return base if len(parts) == 1 else WeightedGraders(parts)


def load_items(cfg: RLConfig):
    """(train, dev, unseen items, task grader or None) from data.task or data.* files."""
    from corral.data.readers import load_items as read
    from corral.data.splits import refuse_unseen
    from corral.tasks import get_task

    d = cfg.data
    if d.task:
        tasks = {s: get_task(d.task, split=s, data=d.task_data, seed=cfg.train.seed)
                 for s in ("train", "dev", "unseen")}
        train, dev, unseen = (tasks[s].prompt_items() for s in ("train", "dev", "unseen"))
        held = {item.messages for item in dev + unseen}  # one data file for all splits:
        train = [item for item in train if item.messages not in held]  # never train on them
        if not train:
            raise CorralError(f"data.task={d.task}: every training prompt is also a dev or "
                              "unseen prompt; point data.task_data at the training file")
        grader = tasks["train"].grader
    elif d.train:
        refuse_unseen(d.train, d.unseen)
        train = read(d.train, d.max_errors)
        dev = read(d.validation, d.max_errors) if d.validation else []
        unseen = read(d.unseen, d.max_errors) if d.unseen else []
        grader = None
    else:
        raise CorralError("no training prompts: set data.task=NAME (e.g. arithmetic) or "
                          "data.train=FILE.jsonl (OpenAI RFT format)")
    limit = cfg.eval.limit or None
    return train[:d.limit or None], dev[:limit], unseen[:limit], grader


def make_evaluator(cfg: RLConfig, grader, dev, unseen, total_steps: int, template=None):
    """dev/pass@k every train.eval_every steps; the unseen split once, at the last step."""
    from corral.eval.evaluate import engine_for, evaluate
    from corral.infer.engine import SamplingParams

    e = cfg.eval
    temperature = e.temperature if e.n == 1 or e.temperature > 0 else cfg.rl.temperature
    params = SamplingParams(max_new_tokens=e.max_new_tokens, n=e.n, temperature=temperature,
                            seed=0)
    ks = tuple(int(k) for k in e.k if int(k) <= e.n) or (1,)

    def score(policy, items, split) -> dict:
        result = evaluate(engine_for(policy, cfg.rl.gen_batch_size), items, grader, params,
                          ks, template=template)
        return {f"{split}/{k}": v for k, v in result.metrics.items()
                if not k.endswith("_stderr") and k not in ("n_items", "n_samples")}

    def run(policy, step) -> dict:
        out = score(policy, dev, "dev") if dev else {}
        if unseen and step in (0, total_steps):
            out.update(score(policy, unseen, "unseen"))
        return out
    return run if dev or unseen else None


def learning_curve(store: RunStore) -> list[dict]:
    """Rows (step, train reward, dev/unseen scores) from the run's metrics."""
    keep = ("step", "reward", "zero_var_frac")
    return [{k: v for k, v in row.items() if k in keep or k.startswith(("eval/dev/",
                                                                         "eval/unseen/"))}
            for row in store.read_metrics()]


# ---------------------------------------------------------------- runs
def run_rl(cfg: RLConfig, method: str = "grpo", policy=None, log=print,
           wrap=None, objective=None) -> RunStore:
    """Signal check, then train with rollouts from the live policy; returns the run's store.
    PPO passes `wrap` (policy -> actor-critic) and its objective."""
    from corral.data.render import check_template
    from corral.eval.evaluate import combine, task_evaluator
    from corral.model.policy import load_policy
    from corral.methods.runner import fit, open_run
    from corral.train.rollout import RolloutSource
    from corral.train.loop import plan

    validate(cfg)
    if cfg.rl.advantage == "gae" and wrap is None:
        raise CorralError("rl.advantage=gae needs PPO's value head; run `corral ppo` (or use "
                          "rl.advantage=group, rloo or reinforce_pp)")
    train_items, dev, unseen, task_grader = load_items(cfg)
    grader = load_grader(cfg.rl, task_grader, cfg.run.root)
    if policy is None:
        torch.manual_seed(cfg.train.seed)
        policy = load_policy(cfg.model, cfg.lora, fresh_adapter=True)
    policy = wrap(policy) if wrap is not None else policy
    template = check_template(policy.tokenizer, cfg.model.template or None)
    if cfg.rl.kl_coef > 0 and not policy.is_lora:
        policy.prepare_reference()  # full fine-tuning: freeze a copy before any update
    store, rl = open_run(cfg, method), cfg.rl
    source = RolloutSource(policy, train_items, grader, rl, cfg.train.batch_tokens,
                           cfg.train.seed, template=template,
                           max_prompt_length=cfg.data.max_prompt_length,
                           on_rollout=lambda r, trajs, stats: _log_samples(store, r, trajs))
    extra = {"prompts": len(train_items), "dev": len(dev), "unseen": len(unseen),
             "preset": rl.preset, "n": rl.n, "advantage": rl.advantage,
             "aggregation": rl.aggregation}
    if cfg.rl.signal_check not in ("off", "no") and not cfg.run.resume:
        stats = signal_check(source, cfg.rl.signal_check_prompts, cfg.train.seed)
        log(f"signal check: {stats['groups']} prompts x {rl.n}: mean reward "
            f"{stats['reward']:.3f}, groups without signal {stats['zero_var_frac']:.0%}")
        judge_signal(stats, cfg.rl.signal_check, log)
        extra["signal_zero_var_frac"] = stats["zero_var_frac"]
    total = plan(cfg.train, source)["total_steps"]
    evaluator = combine(make_evaluator(cfg, grader, dev, unseen, total, template),
                        task_evaluator(cfg.eval, template) if cfg.eval.task else None)
    if evaluator is not None and cfg.rl.eval_before and not cfg.run.resume:
        with torch.no_grad():
            store.append_metrics(0, {f"eval/{k}": v for k, v in evaluator(policy, 0).items()})
    fit(policy, objective or PolicyGradient.from_config(rl), source, cfg, store, method,
        [cfg.data.train, cfg.data.validation], evaluator=evaluator, log=log, extra=extra)
    return store


def run_grpo(cfg: RLConfig, policy=None, log=print) -> RunStore:
    return run_rl(cfg, "grpo", policy, log)


def run_rft(cfg: RLConfig, policy=None, log=print) -> RunStore:
    """RL fine-tuning on tiny graded data; prints the learning curve and the unseen score."""
    store = run_rl(cfg, "rft", policy, log)
    for row in learning_curve(store):
        log("  " + ", ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}"
                             for k, v in row.items()))
    return store


def _log_samples(store: RunStore, r: int, trajs) -> None:
    """The first group of every rollout into samples.jsonl, to see what is rewarded."""
    group = [t for t in trajs if t.group == 0]
    store.append_samples([{"rollout": r, "prompt": t.prompt_index, "output": t.text,
                           "score": t.score, "advantage": (t.advantages or [0.0])[0],
                           "finish_reason": t.finish_reason} for t in group])
