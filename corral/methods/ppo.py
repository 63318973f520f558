"""PPO (`corral ppo`, classic RLHF): the policy plus a value head on its own hidden states (one
backbone, one forward gives log-probs and values), GAE over per-token rewards (the reward
model's score at the last token, a per-token KL penalty to the reference, an optional
missing-EOS penalty), and the clipped surrogate plus a clipped value loss. Rollouts and the
loop are the ones every RL method uses; `rl.preset=ppo` sets TRL's defaults.

    store = run_ppo(load_ppo_config(None, ["model.name=runs/sft/final", "rl.reward_model=rm"]))
"""
from __future__ import annotations

from dataclasses import dataclass

from corral.core.config import load_config, opt, require
from corral.core.errors import CorralError
from corral.methods import rl
from corral.methods.rl_config import PPO_KEYS, RLConfig
from corral.methods.runner import Method, Setup, run
from corral.model.heads import ActorCritic
from corral.objectives.policy_gradient import PPOObjective
from corral.store.runs import RunStore


@dataclass(frozen=True)
class PPOSection:
    gamma: float = opt(1.0, "GAE discount γ")
    lam: float = opt(0.95, "GAE λ")
    value_coef: float = opt(0.1, "weight of the clipped value loss")
    value_clip: float = opt(0.2, "ε_v of the clipped value loss")

    def validate(self) -> None:
        require([(0 <= self.gamma <= 1 and 0 <= self.lam <= 1,
                  "ppo.gamma and ppo.lam must be in [0, 1]"),
                 (self.value_coef >= 0 and self.value_clip >= 0,
                  "ppo.value_coef and ppo.value_clip must be >= 0")])


@dataclass(frozen=True)
class PPOConfig(RLConfig):
    """RL's sections plus `ppo:` (the critic's keys)."""
    ppo: PPOSection = opt(PPOSection(), "the value head and GAE")
    RENAMED = {f"rl.{k}": f"ppo.{k}" for k in PPO_KEYS}

    def check(self) -> None:
        super().check()
        if self.rl.advantage != "gae":
            raise CorralError(f"corral ppo needs rl.advantage=gae (got {self.rl.advantage!r}); "
                              "for group baselines use `corral grpo`")


def load_ppo_config(path: str | None = None, overrides=()) -> PPOConfig:
    """RL config with the `ppo` preset filling every rl.* key not given."""
    return load_config(PPOConfig, path, ["rl.preset=ppo", *overrides])


def read(cfg: PPOConfig):
    if not (cfg.rl.reward_model or cfg.rl.grader or cfg.data.task):
        raise CorralError("corral ppo needs a reward: rl.reward_model=RUN (from `corral rm`), "
                          "rl.grader=GRADER.json, or data.task=NAME for the task's grader")
    return rl.read(cfg)


def build(cfg: PPOConfig, setup: Setup):
    actor = ActorCritic(setup.policy)
    p, r = cfg.ppo, cfg.rl
    objective = PPOObjective(p.value_coef, p.value_clip, clip_low=r.clip_low,
                             clip_high=r.clip_high, aggregation=r.aggregation,
                             max_len=r.max_len or r.max_new_tokens, kl_coef=r.kl_coef,
                             kl_kind=r.kl_kind, kl_in_loss=r.kl_in == "loss")
    built = rl.build(cfg, Setup(setup.data, actor, setup.template), objective)
    built.policy = actor
    return built


def _report(store, log) -> None:
    rows = [r for r in store.read_metrics() if "score" in r]
    if rows:
        first, last = rows[0], rows[-1]
        log(f"reward-model score {first['score']:.3f} -> {last['score']:.3f} "
            f"(steps {first['step']} -> {last['step']}); KL to the reference per sequence "
            f"{last.get('kl_seq', float('nan')):.3f}")


METHOD = Method("ppo", PPOConfig, build, read,
                "PPO with a value head and a reward model (rl.reward_model=RUN), the "
                "InstructGPT recipe after `corral sft` and `corral rm`", fresh_adapter=True,
                forced=("rl.preset=ppo",), report=_report, doc="docs/rl.md",
                data_hint="set data.train=PROMPTS.jsonl or data.task=NAME", reads_task=True)
METHODS = [METHOD]


def run_ppo(cfg: PPOConfig, policy=None, log=print) -> RunStore:
    """SFT model + reward model (rl.reward_model=RUN, or any grader) -> PPO."""
    return run(METHOD, cfg, policy, log)
