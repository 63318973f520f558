"""PPO (classic RLHF): the policy plus a value head on its own hidden states (one backbone,
one forward gives log-probs and values), GAE over per-token rewards (the reward model's score
at the last token, a per-token KL penalty to the reference, an optional missing-EOS penalty),
and the clipped surrogate plus a clipped value loss. Rollouts, presets and the loop are the
ones every RL method uses (`rl.py`, `rollout.py`); `rl.preset=ppo` sets TRL's defaults."""
from __future__ import annotations

from pathlib import Path

import torch

from corral.objectives import losses as L
from corral.core.errors import CorralError
from corral.methods.rl import PolicyGradient, RLConfig, load_rl_config, run_rl
from corral.store.runs import RunStore

VALUE_HEAD_FILE = "ppo_value_head.safetensors"


class ActorCritic:
    """A Policy with a Linear(hidden, 1) value head read at every completion position.

    The head sees the same final hidden states as the LM head (a shared backbone, as in
    trlx's PPO; TRL keeps a second model): V_t estimates the return from the state before
    completion token t. Everything else is the wrapped Policy's (`reference()`, `model`,
    `tokenizer`, ...), so rollouts, evaluation and the loop use it unchanged.
    """

    def __init__(self, policy, head: torch.nn.Linear | None = None):
        self.policy = policy
        if head is None:  # zero init: V = 0 at first, so GAE starts as whitened returns
            hidden = policy.model.config.get_text_config().hidden_size
            head = torch.nn.Linear(hidden, 1)
            torch.nn.init.zeros_(head.weight)
            torch.nn.init.zeros_(head.bias)
        self.value_head = head.to(device=policy.device, dtype=torch.float32)

    def __getattr__(self, name):  # model, tokenizer, device, reference(), is_lora, ...
        if name == "policy":  # not set yet (copy, unpickling): no recursion
            raise AttributeError(name)
        return getattr(self.policy, name)

    def trainable_parameters(self) -> list[torch.nn.Parameter]:
        return self.policy.trainable_parameters() + list(self.value_head.parameters())

    def logps_and_values(self, batch):
        """(log-probs [N], values [N]) at the batch's label positions, one forward."""
        logps, hidden = self.policy.token_logps(batch, with_hidden=True)
        return logps, self.value_head(hidden.float()).squeeze(-1)

    def save(self, path) -> None:
        """The policy as `Policy.save` writes it (loadable as a plain model or adapter),
        plus the value head, so a resumed or continued PPO run keeps its critic."""
        from safetensors.torch import save_file

        self.policy.save(path)
        state = {k: v.detach().cpu().contiguous() for k, v in self.value_head.state_dict().items()}
        save_file(state, str(Path(path) / VALUE_HEAD_FILE))


class PPOObjective(PolicyGradient):
    """Clipped surrogate + value_coef · clipped value loss, aggregated alike (token mean by
    default): loss_t = −min(ρA, clip(ρ)A) + c_v · ½ max((V−R)², (clip(V, V_old ± ε_v)−R)²)."""
    name = "ppo"

    def __init__(self, value_coef: float = 0.1, value_clip: float = 0.2, **kwargs):
        super().__init__(**kwargs)
        self.value_coef, self.value_clip = value_coef, value_clip

    @classmethod
    def from_config(cls, rl) -> PPOObjective:
        return cls(rl.value_coef, rl.value_clip, clip_low=rl.clip_low, clip_high=rl.clip_high,
                   aggregation=rl.aggregation, max_len=rl.max_len or rl.max_new_tokens,
                   kl_coef=rl.kl_coef, kl_kind=rl.kl_kind, kl_in_loss=rl.kl_in == "loss")

    def __call__(self, actor, batch):
        if batch.values is None or batch.returns is None:
            raise CorralError("PPO batches need the rollout's values and returns "
                              "(rl.advantage=gae with a value head)")
        logps, values = actor.logps_and_values(batch)
        per_token, metrics = self.policy_terms(logps.float(), batch)
        v_loss = L.clipped_value_loss(values, batch.values, batch.returns, self.value_clip)
        metrics.update(value_loss=v_loss.detach(), value=values.detach(),
                       value_clip_frac=((values - batch.values).abs() > self.value_clip)
                       .float().detach())
        return self.reduce(per_token + self.value_coef * v_loss, metrics, batch)


def load_ppo_config(path: str | None = None, overrides=()) -> RLConfig:
    """RL config with the `ppo` preset filling every rl.* key not given."""
    cfg = load_rl_config(path, overrides, preset="ppo")
    if cfg.rl.advantage != "gae":
        raise CorralError(f"corral ppo needs rl.advantage=gae (got {cfg.rl.advantage!r}); "
                          "for group baselines use `corral grpo`")
    return cfg


def run_ppo(cfg: RLConfig, policy=None, log=print) -> RunStore:
    """SFT model + reward model (rl.reward_model=RUN, or any grader) -> PPO."""
    if not (cfg.rl.reward_model or cfg.rl.grader or cfg.data.task):
        raise CorralError("corral ppo needs a reward: rl.reward_model=RUN (from `corral rm`), "
                          "rl.grader=GRADER.json, or data.task=NAME for the task's grader")
    store = run_rl(cfg, "ppo", policy, log, wrap=ActorCritic,
                   objective=PPOObjective.from_config(cfg.rl))
    rows = [r for r in store.read_metrics() if "score" in r]
    if rows:
        first, last = rows[0], rows[-1]
        log(f"reward-model score {first['score']:.3f} -> {last['score']:.3f} "
            f"(steps {first['step']} -> {last['step']}); KL to the reference per sequence "
            f"{last.get('kl_seq', float('nan')):.3f}")
    return store
