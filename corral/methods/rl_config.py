"""The RL config (`corral rft | grpo`, and `corral ppo` on top): the shared sections with RL's
data and train defaults, plus `rl:`. A preset fills every rl.* key the user did not set."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from corral.core.config import check_choice, opt, require
from corral.core.sections import MethodConfig, TrainConfig, TrainData, train_spec


@dataclass(frozen=True)
class RLDataConfig:
    task: str = opt("", "built-in task (arithmetic, gsm8k, ifeval-like): its train/dev/unseen "
                    "splits")
    task_data: str = opt("", "the task's local data file, when it has one (gsm8k)")
    train: TrainData = opt("", "RFT items: OpenAI RFT jsonl (messages + fields the grader "
                           "reads); or a list mixing several, each PATH or PATH:WEIGHT")
    validation: str = opt("", "dev items, for the learning curve")
    unseen: str = opt("", "held-out items, evaluated once at the end (never trained on)")
    limit: int = opt(0, "training prompts (0 = all)")
    max_prompt_length: int = opt(1024, "tokens; a longer prompt is an error")
    max_errors: int = opt(20, "bad rows reported before the run stops")

    def __post_init__(self):
        object.__setattr__(self, "train", train_spec(self.train))

    def validate(self) -> None:
        require([(self.limit >= 0, f"data.limit={self.limit} must be >= 0 (0 = all)"),
                 (self.max_prompt_length >= 1, "data.max_prompt_length must be >= 1"),
                 (self.max_errors >= 1, "data.max_errors must be >= 1"),
                 (not (self.task and self.train), "set data.task or data.train, not both")])


@dataclass(frozen=True)
class RLTrainConfig(TrainConfig):
    lr: float = opt(1e-5, "peak learning rate")
    epochs: float = opt(10.0, "passes over the prompts (RFT data is tiny)")
    batch_tokens: int = opt(8192, "token budget of one packed micro-batch")
    schedule: str = opt("constant", "cosine | linear | constant")
    warmup_ratio: float = opt(0.0, "share of steps warming up linearly")


@dataclass(frozen=True)
class RLSection:
    preset: str = opt("grpo", "grpo | dr_grpo | dapo | rloo | reinforce_pp | ppo: defaults for "
                      "the keys below")
    grader: str = opt("", "grader spec (rule, RULE:OPTION, grader JSON file or inline); '' = "
                      "the task's grader", inline_json=True)
    graders: tuple = opt((), "more graders, each WEIGHT:SPEC; rewards are the weighted sum")
    reward_model: str = opt("", "a reward model run as the grader (same as rl.grader="
                            '{"type": "reward_model", "model": RUN})')
    program: str = opt("", "a saved prompt program (`corral prompt search`): how rollouts and "
                       "evaluations render each prompt")
    n: int = opt(8, "samples per prompt (group size)")
    prompts_per_step: int = opt(4, "prompts per rollout")
    max_new_tokens: int = opt(128, "tokens sampled per completion")
    temperature: float = opt(1.0, "sampling temperature")
    top_p: float = opt(1.0, "nucleus sampling")
    top_k: int = opt(0, "top-k sampling (0 = off)")
    advantage: str = opt("group", "group | rloo | reinforce_pp | gae (PPO)")
    scale: str = opt("group", "group advantages: std per group | batch | none")
    eps: float = opt(1e-4, "added to the std")
    missing_eos_penalty: float = opt(0.0, "subtracted from the reward of samples cut at max "
                                     "length")
    aggregation: str = opt("seq_mean_token_mean", "token_mean | seq_mean_token_mean | token_sum")
    max_len: int = opt(0, "token_sum's constant (0 = rl.max_new_tokens)")
    clip_low: float = opt(0.2, "ε_low of the clipped ratio")
    clip_high: float = opt(0.2, "ε_high of the clipped ratio (DAPO: 0.28)")
    kl_coef: float = opt(0.0, "β; 0 loads no reference")
    kl_kind: str = opt("k3", "k1 | k2 | k3")
    kl_in: str = opt("loss", "loss | reward")
    mu: int = opt(1, "optimisation passes per rollout")
    mini_batches: int = opt(1, "optimizer steps per pass")
    recompute_old_logps: str = opt("auto", "auto (when mu*mini_batches > 1) | always | never")
    logp_tolerance: float = opt(0.02, "first rollout: mean |trainer − sampler| log-prob allowed")
    signal_check: str = opt("stop", "stop | warn | off: before training, are there groups to "
                            "learn from?")
    signal_check_prompts: int = opt(32, "prompts sampled by the signal check")
    max_grader_errors: float = opt(1.0, "stop when grading fails on this share of a rollout's "
                                   "samples (1 = all: a setup mistake, not a bad sample)")
    reward_cache: str = opt("", "JSONL cache of grader scores: the same prompt and answer are "
                            "graded once, also across a resume (judge graders cache in memory "
                            "without it)")
    max_reward_calls: int = opt(0, "grader calls allowed (a judge's budget); when spent, "
                                "training stops cleanly at the last finished step; 0 = no limit")
    gen_batch_size: int = opt(64, "decode rows at once")
    eval_before: bool = opt(True, "dev (and unseen) scores at step 0, for the learning curve")

    def validate(self) -> None:
        check_choice("rl.preset", self.preset, PRESETS)
        for key, choices in CHOICES.items():
            check_choice(f"rl.{key}", getattr(self, key), choices)
        require([
            (self.n >= 1 and self.prompts_per_step >= 1,
             "rl.n and rl.prompts_per_step must be >= 1"),
            (self.mu >= 1 and self.mini_batches >= 1, "rl.mu and rl.mini_batches must be >= 1"),
            (self.mini_batches <= self.n * self.prompts_per_step,
             "rl.mini_batches must not exceed rl.n * rl.prompts_per_step"),
            (self.clip_low >= 0 and self.clip_high >= 0, "rl.clip_low/clip_high must be >= 0"),
            (self.kl_coef >= 0, "rl.kl_coef must be >= 0"),
            (self.missing_eos_penalty >= 0, "rl.missing_eos_penalty must be >= 0"),
            (self.temperature > 0, f"rl.temperature={self.temperature} must be > 0 (RL samples)"),
            (self.max_new_tokens >= 1, "rl.max_new_tokens must be >= 1"),
            (0 < self.max_grader_errors <= 1, "rl.max_grader_errors is a share in (0, 1]"),
            (self.max_reward_calls >= 0, "rl.max_reward_calls must be >= 0 (0 = no limit)"),
            (self.signal_check_prompts >= 1 or self.signal_check in ("off", "no"),
             f"rl.signal_check_prompts={self.signal_check_prompts} must be >= 1; to skip the "
             "check, set rl.signal_check=off"),
            (not (self.advantage == "group" and self.scale == "group" and self.n < 2),
             "rl.n must be >= 2 for group advantages (a group of one has no baseline)"),
            (not (self.reward_model and self.grader),
             "set rl.reward_model or rl.grader, not both (add more graders with "
             "rl.graders=[WEIGHT:SPEC, ...])")])


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
            "kl_kind": "k1", "kl_coef": 0.05, "clip_low": 0.2, "clip_high": 0.2, "mu": 4},
}
CHOICES = {"advantage": ("group", "rloo", "reinforce_pp", "gae"),
           "scale": ("group", "batch", "none"),
           "aggregation": ("token_mean", "seq_mean_token_mean", "token_sum"),
           "kl_kind": ("k1", "k2", "k3"), "kl_in": ("loss", "reward"),
           "recompute_old_logps": ("auto", "always", "never"),
           "signal_check": ("stop", "warn", "off", "no")}  # YAML reads a bare off as no
PPO_KEYS = ("gamma", "lam", "value_coef", "value_clip")  # moved from rl.* to ppo.*


@dataclass(frozen=True)
class RLConfig(MethodConfig):
    """The shared sections (RL's data and train defaults) plus `rl:`."""
    data: RLDataConfig = opt(RLDataConfig(), "prompts: a task or RFT files")
    train: RLTrainConfig = opt(RLTrainConfig(), "the optimisation loop")
    rl: RLSection = opt(RLSection(), "rollouts, advantages and the policy-gradient loss")
    RENAMED = {f"rl.{k}": None for k in PPO_KEYS}  # PPO's keys: no effect without a critic

    @classmethod
    def resolve(cls, cfg, given: frozenset):
        """The preset fills each rl.* key the user did not set (file or override)."""
        check_choice("rl.preset", cfg.rl.preset, PRESETS)
        defaults = {k: v for k, v in PRESETS[cfg.rl.preset].items() if f"rl.{k}" not in given}
        return dataclasses.replace(cfg, rl=dataclasses.replace(cfg.rl, **defaults))

    def check(self) -> None:
        require([(self.rl.advantage != "gae" or hasattr(self, "ppo"),
                  "rl.advantage=gae needs PPO's value head; run `corral ppo` (or use "
                  "rl.advantage=group, rloo or reinforce_pp)")])
