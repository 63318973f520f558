"""Heads on a policy's hidden states: the reward model (a scalar at each sequence's last token,
trained by `corral rm`, loadable from a run or an HF sequence-classification model) and PPO's
actor-critic (a value at every completion position, sharing the policy's backbone)."""
from __future__ import annotations

import json
from pathlib import Path

import torch

from corral.core.errors import CorralError
from corral.core.sections import LoraConfig, ModelConfig
from corral.data.batching import collate, plan
from corral.data.render import check_template, render
from corral.store.runs import run_model_path

HEAD_FILE = "value_head.safetensors"


META_FILE = "reward_model.json"


class RewardModel:
    """A backbone Policy plus a Linear(hidden, 1) head read at each sequence's last token.

    Quacks like a Policy for the training loop: `.model`, `.device`, `.trainable_parameters()`
    (backbone trainables + head, so checkpoints and resume include the head), `.save(dir)`.
    """

    def __init__(self, policy, head: torch.nn.Linear | None = None, chat: bool = True,
                 max_length: int | None = None):
        self.policy, self.tokenizer, self.device = policy, policy.tokenizer, policy.device
        self.chat, self.max_length = chat, max_length
        hidden = policy.model.config.get_text_config().hidden_size
        if head is None:  # small init: initial rewards near 0, gradients reach the backbone
            head = torch.nn.Linear(hidden, 1)
            torch.nn.init.normal_(head.weight, std=1 / (hidden + 1) ** 0.5)
            torch.nn.init.zeros_(head.bias)
        self.head = head.to(device=self.device, dtype=torch.float32)

    @property
    def model(self):
        return self.policy.model

    def trainable_parameters(self) -> list[torch.nn.Parameter]:
        own = [p for p in self.head.parameters() if p.requires_grad]
        return self.policy.trainable_parameters() + own

    def rewards(self, batch) -> torch.Tensor:
        """Scalar reward [S] of each packed sequence, read at its last token."""
        hidden = self.policy.hidden_states(batch.input_ids, batch.position_ids)[0]
        ends = torch.tensor(batch.seq_lens, device=hidden.device).cumsum(0) - 1
        return self.head(hidden[ends].float()).squeeze(-1)

    def render(self, records, template=None) -> list:
        """Examples for Completion records (prompt + response), truncated to max_length."""
        if template is None and self.chat:
            template = check_template(self.tokenizer, None)
        return [render(r, self.tokenizer, mask="all", max_length=self.max_length,
                       template=template) for r in records]

    @torch.no_grad()
    def score(self, records, batch_tokens: int = 4096) -> list[float]:
        """Rewards of Completion records, packed `batch_tokens` at a time."""
        examples = self.render(records)
        for ex in examples:  # a grader must not crash on one long sample: cut it instead
            del ex.input_ids[batch_tokens:], ex.loss_mask[batch_tokens:]
        out = [0.0] * len(examples)
        was_training = self.model.training
        self.model.eval()
        try:
            for group in plan(examples, batch_tokens):
                batch = collate([examples[i] for i in group]).to(self.device)
                for i, r in zip(group, self.rewards(batch).tolist()):
                    out[i] = r
        finally:
            self.model.train(was_training)
        return out

    def save(self, path) -> None:
        """Backbone as `policy.save` writes it, plus the head and `reward_model.json`."""
        from safetensors.torch import save_file

        path = Path(path)
        self.policy.save(path)
        tensors = {k: v.detach().cpu().contiguous() for k, v in self.head.state_dict().items()}
        save_file(tensors, str(path / HEAD_FILE))
        meta = {"format": "corral-reward-model", "version": 1, "head": HEAD_FILE,
                "hidden_size": self.head.in_features, "chat": self.chat,
                "max_length": self.max_length}
        (path / META_FILE).write_text(json.dumps(meta, indent=2) + "\n")


def load_reward_model(model: str | ModelConfig, lora: LoraConfig | None = None, *,
                      for_training: bool = False, root: str = "runs") -> RewardModel:
    """A corral reward model (run name, run dir or saved dir) or an HF sequence-classification
    model with num_labels=1 (local dir or hub id)."""
    cfg = model if isinstance(model, ModelConfig) else ModelConfig(name=model)
    path = _resolve(cfg.name, root)
    if (path / META_FILE).is_file():
        return _load_corral(path, cfg, lora, for_training)
    if path.name == "final" and path.is_dir():
        raise CorralError(f"run {path.parent} is not a reward model run (its final/ has no "
                          f"{META_FILE}); train one with `corral rm`")
    return _load_seq_cls(str(path) if path.is_dir() else cfg.name, cfg)


def _resolve(name: str, root: str) -> Path:
    return Path(run_model_path(name, root)).expanduser()


def _load_corral(path: Path, cfg: ModelConfig, lora, for_training: bool) -> RewardModel:
    from dataclasses import replace

    from safetensors.torch import load_file

    from corral.model.policy import load_policy

    meta = json.loads((path / META_FILE).read_text())
    policy = load_policy(replace(cfg, name=str(path)), lora, for_training=for_training)
    tensors = load_file(str(path / HEAD_FILE))
    weight = tensors.get("weight")
    if weight is None or weight.shape != (1, meta["hidden_size"]):
        raise CorralError(f"{path / HEAD_FILE} is not a [1, {meta['hidden_size']}] head; "
                          "the reward model directory is damaged, so save it again")
    head = torch.nn.Linear(weight.shape[1], 1, bias="bias" in tensors)
    head.load_state_dict(tensors)
    head.requires_grad_(for_training)
    return RewardModel(policy, head, chat=meta.get("chat", True),
                       max_length=meta.get("max_length"))


def _load_seq_cls(source: str, cfg: ModelConfig) -> RewardModel:
    from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

    from corral.model.policy import Policy, choose_device, choose_dtype

    try:
        config = AutoConfig.from_pretrained(source, trust_remote_code=cfg.trust_remote_code)
    except (OSError, ValueError):
        raise CorralError(f"reward model {cfg.name!r} was not found; give a run name, a run "
                          "directory, a corral reward model directory or a sequence-"
                          "classification model (local directory or hub id)") from None
    if not any(a.endswith("ForSequenceClassification") for a in config.architectures or []):
        raise CorralError(f"{source} is not a reward model (no {META_FILE} and not a "
                          "ForSequenceClassification model); train one with `corral rm`")
    if config.num_labels != 1:
        raise CorralError(f"{source} is a classifier with {config.num_labels} labels; a reward "
                          "model has num_labels=1")
    device = choose_device(cfg.device)
    model = AutoModelForSequenceClassification.from_pretrained(
        source, dtype=choose_dtype(cfg.dtype, device), attn_implementation="sdpa",
        trust_remote_code=cfg.trust_remote_code).to(device)
    tokenizer = AutoTokenizer.from_pretrained(source, trust_remote_code=cfg.trust_remote_code)
    head = getattr(model, "score", None)
    if not isinstance(head, torch.nn.Linear):
        raise CorralError(f"{source}: {type(model).__name__} has no linear `score` head; "
                          "use a decoder model's ForSequenceClassification (Llama, Qwen, ...)")
    model.eval().requires_grad_(False)
    return RewardModel(Policy.from_objects(model, tokenizer), head,
                       chat=bool(getattr(tokenizer, "chat_template", None)))


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
