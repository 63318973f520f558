"""Reward models: a scalar head on a causal LM trained with Bradley–Terry on preference pairs
(`corral rm`), and the `reward_model` grader that scores (prompt, response) with one."""
from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from pathlib import Path

import torch

from corral.core.config import (
    DataConfig,
    LoraConfig,
    ModelConfig,
    RunConfig,
    TrainConfig,
    validate_choices,
)
from corral.data.batching import Batch, collate, plan
from corral.data.readers import load_preference_records
from corral.data.render import check_template, render
from corral.core.errors import CorralError
from corral.graders.base import BaseGrader, Score
from corral.objectives.losses import bradley_terry
from corral.core.records import Completion, Message

HEAD_FILE = "value_head.safetensors"
META_FILE = "reward_model.json"


@dataclass(frozen=True)
class RewardSection:
    margin: float = 0.0  # required reward gap: −log σ(r_c − r_r − margin)
    center_coef: float = 0.0  # + c·(r_c + r_r)²: keeps rewards near 0 (TRL suggests 0.01)
    holdout: float = 0.0  # fraction of data.train held out for eval when no data.validation


@dataclass(frozen=True)
class RMConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    lora: LoraConfig = field(default_factory=LoraConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    run: RunConfig = field(default_factory=RunConfig)
    rm: RewardSection = field(default_factory=RewardSection)


@dataclass
class PairBatch(Batch):
    """A packed row holding chosen_0, rejected_0, chosen_1, rejected_1, ... in that order."""
    n_pairs: int = 0


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


class RewardObjective:
    """Bradley–Terry on PairBatch rows; normalised by pairs (metrics are per-pair sums)."""

    def __init__(self, margin: float = 0.0, center_coef: float = 0.0):
        self.margin, self.center_coef = margin, center_coef

    def weight(self, batch) -> float:
        return float(batch.n_pairs)

    def __call__(self, rm, batch):
        rewards = rm.rewards(batch)
        r_c, r_r = rewards[0::2], rewards[1::2]
        losses = bradley_terry(r_c, r_r, self.margin, self.center_coef)
        gap = (r_c - r_r).detach()
        return losses.sum(), {"accuracy": (gap > 0).float().sum(), "margin": gap.sum(),
                              "chosen_reward": r_c.detach().sum(),
                              "rejected_reward": r_r.detach().sum()}


@torch.no_grad()
def heldout_metrics(rm, objective: RewardObjective, batches) -> dict:
    """Loss, accuracy, mean reward gap and mean rewards over held-out pairs."""
    was_training = rm.model.training
    rm.model.eval()
    sums, pairs = {"loss": 0.0}, 0
    try:
        for batch in batches:
            loss, metrics = objective(rm, batch.to(rm.device))
            sums["loss"] += float(loss)
            for k, v in metrics.items():
                sums[k] = sums.get(k, 0.0) + float(v)
            pairs += batch.n_pairs
    finally:
        rm.model.train(was_training)
    return {k: v / pairs for k, v in sums.items()} if pairs else {}


def pack_pairs(pairs, max_tokens: int, shuffle_seed: int | None = None) -> list[PairBatch]:
    """Pack (chosen, rejected) example pairs; both sides of a pair share one row."""
    for c, r in pairs:
        if len(c.input_ids) + len(r.input_ids) > max_tokens:
            raise CorralError(
                f"{c.source}: the pair has {len(c.input_ids) + len(r.input_ids)} tokens "
                f"(chosen + rejected), more than train.batch_tokens={max_tokens}; raise "
                "train.batch_tokens or lower data.max_length")
    units = [_Len(len(c.input_ids) + len(r.input_ids)) for c, r in pairs]
    batches = []
    for group in plan(units, max_tokens, shuffle_seed):
        row = collate([ex for i in group for ex in pairs[i]])
        batches.append(PairBatch(**vars(row), n_pairs=len(group)))
    return batches


class _Len:
    """What `plan` reads of an example: its length (and a source for messages)."""

    def __init__(self, n: int):
        self.input_ids, self.source = range(n), ""


def load_reward_model(model: str | ModelConfig, lora: LoraConfig | None = None, *,
                      for_training: bool = False, root: str = "runs") -> RewardModel:
    """A corral reward model (run name, run dir or saved dir) or an HF sequence-classification
    model with num_labels=1 (local dir or hub id)."""
    cfg = model if isinstance(model, ModelConfig) else ModelConfig(name=model)
    path = _resolve(cfg.name, root)
    if (path / META_FILE).is_file():
        return _load_corral(path, cfg, lora, for_training)
    if (path / "final").is_dir():
        raise CorralError(f"run {path} is not a reward model run (its final/ has no "
                          f"{META_FILE}); train one with `corral rm`")
    return _load_seq_cls(str(path) if path.is_dir() else cfg.name, cfg)


def _resolve(name: str, root: str) -> Path:
    for candidate in (Path(name).expanduser(), Path(root) / name):
        if (candidate / "final" / META_FILE).is_file():
            return candidate / "final"
        if candidate.is_dir():
            return candidate
    return Path(name)


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


# ---------------------------------------------------------------- training
def _check(cfg: RMConfig) -> None:
    validate_choices(cfg)
    if not cfg.data.train:
        raise CorralError("no training data: set data.train=FILE of preference pairs "
                          "(prompt/chosen/rejected or OpenAI DPO rows)")
    if cfg.rm.margin < 0 or cfg.rm.center_coef < 0:
        raise CorralError("rm.margin and rm.center_coef must be >= 0")
    if not 0 <= cfg.rm.holdout < 1:
        raise CorralError(f"rm.holdout={cfg.rm.holdout} must be in [0, 1)")
    if cfg.rm.holdout and cfg.data.validation:
        raise CorralError("set data.validation or rm.holdout, not both")


def _pairs(rm: RewardModel, records) -> list:
    to_completions = [Completion(p.prompt, side, p.source)
                      for p in records for side in (p.chosen, p.rejected)]
    examples = rm.render(to_completions)
    return list(zip(examples[0::2], examples[1::2]))


def prepare(cfg: RMConfig, rm: RewardModel | None = None):
    """Validate and render everything before any training; returns (rm, train, val pairs)."""
    from corral.model.policy import load_policy
    from corral.data.splits import refuse_unseen

    _check(cfg)
    records = load_preference_records(cfg.data.train, cfg.data.max_errors)
    refuse_unseen(cfg.data.train, cfg.data.unseen)
    val = load_preference_records(cfg.data.validation, cfg.data.max_errors) \
        if cfg.data.validation else []
    if cfg.rm.holdout:
        order = list(range(len(records)))
        random.Random(cfg.train.seed).shuffle(order)
        n_val = max(1, round(cfg.rm.holdout * len(records)))
        val = [records[i] for i in sorted(order[:n_val])]
        records = [records[i] for i in sorted(order[n_val:])]
    if rm is None:
        torch.manual_seed(cfg.train.seed)  # the head's and LoRA's initial weights
        start = _resolve(cfg.model.name, cfg.run.root)
        rm = load_reward_model(cfg.model, cfg.lora, for_training=True, root=cfg.run.root) \
            if (start / META_FILE).is_file() else RewardModel(load_policy(cfg.model, cfg.lora))
    rm.chat = all(isinstance(p.prompt, tuple) for p in records)
    rm.max_length = cfg.data.max_length
    return rm, _pairs(rm, records), _pairs(rm, val)


def run_rm(cfg: RMConfig, rm: RewardModel | None = None, log=print):
    """Train a reward model; returns the run's store (`final/` is a loadable reward model)."""
    from corral.methods.runner import fit, open_run
    from corral.train.loop import DatasetSource

    rm, train_pairs, val_pairs = prepare(cfg, rm)
    batches = pack_pairs(train_pairs, cfg.train.batch_tokens, shuffle_seed=cfg.train.seed)
    val_batches = pack_pairs(val_pairs, cfg.train.batch_tokens)
    source = DatasetSource(batches, cfg.train.grad_accum, cfg.train.seed)
    store = open_run(cfg, "rm")
    objective = RewardObjective(cfg.rm.margin, cfg.rm.center_coef)
    evaluator = (lambda m, step: heldout_metrics(m, objective, val_batches)) \
        if val_batches else None
    truncated = sum(c.truncated or r.truncated for c, r in train_pairs)
    fit(rm, objective, source, cfg, store, "rm", [cfg.data.train, cfg.data.validation],
        evaluator=evaluator, log=log,
        extra={"pairs": len(train_pairs), "heldout_pairs": len(val_pairs),
               "truncated_pairs": truncated})
    return store


# ---------------------------------------------------------------- grading
class RewardModelGrader(BaseGrader):
    """Scores (item, sample) as the item's prompt + the sample as the assistant's reply.
    `Score.value` is the raw reward (unbounded; higher is better)."""

    def __init__(self, rm: RewardModel, batch_tokens: int = 4096, name: str = "reward_model"):
        self.rm, self.batch_tokens, self.name = rm, batch_tokens, name

    def grade(self, item, sample) -> Score:
        return self.grade_batch([(item, sample)])[0]

    def grade_batch(self, pairs) -> list[Score]:
        records = [self._record(item, sample.output_text) for item, sample in pairs]
        rewards = self.rm.score(records, self.batch_tokens) if records else []
        return [Score(value=r, details={"reward": r}) for r in rewards]

    def _record(self, item, text: str) -> Completion:
        prompt = _item_prompt(item)
        if self.rm.chat:
            turns = (Message("user", prompt),) if isinstance(prompt, str) else prompt
            return Completion(turns, (Message("assistant", text),))
        if not isinstance(prompt, str):  # a plain-text reward model sees the turns as text
            prompt = "\n".join(m.content for m in prompt)
        return Completion(prompt, text)


def _item_prompt(item):
    """The prompt of a grader item: `messages`, `prompt` (text or messages) or `question`."""
    if hasattr(item, "messages"):  # an Item record
        return tuple(item.messages)
    for key in ("messages", "prompt", "question"):
        value = item.get(key) if isinstance(item, dict) else None
        if isinstance(value, str):
            return value
        if isinstance(value, (list, tuple)) and value:
            return tuple(m if isinstance(m, Message) else Message(m["role"], str(m["content"]))
                         for m in value)
    keys = sorted(item) if isinstance(item, dict) else type(item).__name__
    raise CorralError(f"the reward_model grader needs the prompt, but the item has no "
                      f"'messages', 'prompt' or 'question' field (it has {keys})")


_SPEC_KEYS = ("type", "model", "name", "root", "batch_tokens", "device", "dtype")


def reward_model_grader(spec: dict) -> RewardModelGrader:
    """`{"type": "reward_model", "model": RUN_OR_PATH}` (optional: name, root, batch_tokens,
    device, dtype) -> a grader scoring with that reward model."""
    if not isinstance(spec, dict) or spec.get("type") != "reward_model":
        raise CorralError('a reward model grader is {"type": "reward_model", "model": RUN}')
    unknown = sorted(set(spec) - set(_SPEC_KEYS))
    if unknown:
        raise CorralError(f"reward_model grader: unknown key(s) {unknown}; "
                          f"allowed: {', '.join(_SPEC_KEYS)}")
    model = spec.get("model")
    if not isinstance(model, str) or not model:
        raise CorralError('reward_model grader needs "model": a run name, a run directory '
                          "or a reward model directory")
    cfg = ModelConfig(name=model, device=str(spec.get("device", "auto")),
                      dtype=str(spec.get("dtype", "auto")))
    rm = load_reward_model(cfg, root=str(spec.get("root", "runs")))
    return RewardModelGrader(rm, int(spec.get("batch_tokens", 4096)),
                             str(spec.get("name", "reward_model")))
