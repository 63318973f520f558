"""The training loop with stand-ins: exact accumulation, exact resume, NaN guard, cadence, plan."""
import copy
import dataclasses
import itertools
import math
from pathlib import Path

import pytest
import torch

from corral.core.errors import CorralError
from corral.core.sections import TrainConfig
from corral.store.runs import RunStore
from corral.testing import tiny_model
from corral.train.loop import lr_factor, make_optimizer, plan, train
from corral.train.sources import DatasetSource


class ToyBatch:
    """Rows of (x, y): n_tokens counts rows, as a packed batch counts tokens."""

    def __init__(self, x, y):
        self.x, self.y = x, y
        self.n_tokens = self.n_loss_tokens = x.shape[0]
        self.seq_lens = [1] * x.shape[0]

    def to(self, device):
        return ToyBatch(self.x.to(device), self.y.to(device))


class ToyPolicy:
    def __init__(self, model):
        self.model, self.device = model, torch.device("cpu")

    def trainable_parameters(self):
        return [p for p in self.model.parameters() if p.requires_grad]

    def save(self, path):
        Path(path).mkdir(parents=True, exist_ok=True)
        torch.save(self.model.state_dict(), Path(path) / "model.pt")


class MSE:
    """Sum of squared errors; its normaliser is the number of targets."""

    def weight(self, batch):
        return batch.y.numel()

    def __call__(self, policy, batch):
        err = ((policy.model(batch.x) - batch.y) ** 2).sum()
        return err, {"sq_err": err.item()}


def mlp(seed=0, dropout=0.0):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.Dropout(dropout),
                               torch.nn.ReLU(), torch.nn.Linear(16, 1))


def toy_batches(n_batches, rows=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n_batches):
        x = torch.randn(rows, 4, generator=g)
        out.append(ToyBatch(x, x.sum(1, keepdim=True) + 0.1 * torch.randn(rows, 1, generator=g)))
    return out


def cfg(**kw):
    base = {"lr": 1e-2, "max_steps": 4, "warmup_ratio": 0.0, "log_every": 1, "progress": False}
    return TrainConfig(**{**base, **kw})


def params_of(model):
    return [p.detach().clone() for p in model.parameters()]


def test_accumulation_matches_one_full_batch(tmp_path):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(8, 4, generator=g)
    y = torch.randn(8, 1, generator=g)
    full, parts = ToyBatch(x, y), [ToyBatch(x[:3], y[:3]), ToyBatch(x[3:], y[3:])]
    model_a, model_b = mlp(), mlp()
    c = cfg(max_steps=3, schedule="constant", max_grad_norm=0.5, weight_decay=0.1)
    out_a = train(ToyPolicy(model_a), MSE(), DatasetSource([full]), c, RunStore(tmp_path, "a"))
    out_b = train(ToyPolicy(model_b), MSE(), DatasetSource(parts, grad_accum=2),
                  dataclasses.replace(c, grad_accum=2), RunStore(tmp_path, "b"))
    for pa, pb in zip(model_a.parameters(), model_b.parameters()):
        torch.testing.assert_close(pa, pb, atol=1e-6, rtol=0)
    assert out_a["loss"] == pytest.approx(out_b["loss"], abs=1e-6)
    assert out_a["grad_norm"] == pytest.approx(out_b["grad_norm"], abs=1e-6)


class Crash(Exception):
    pass


def _resume_setup(tmp_path, name, on_log=None, resume=False, init_seed=0):
    model = mlp(seed=init_seed, dropout=0.3)  # dropout: the RNG state must be restored
    store = RunStore(tmp_path, name, keep=2)
    c = cfg(max_steps=0, epochs=2, grad_accum=2, save_every=3, eval_every=2,
            warmup_ratio=0.2, weight_decay=0.1, schedule="cosine", seed=1)
    source = DatasetSource(toy_batches(6), grad_accum=2, seed=1)

    def evaluator(policy, step):  # consumes RNG, as sampling would
        return {"draw": torch.rand(1).item()}
    out = train(ToyPolicy(model), MSE(), source, c, store, evaluator=evaluator,
                resume=resume, on_log=on_log)
    return model, store, out


def _losses(store):
    return [(r["step"], r.get("loss"), r.get("eval/draw")) for r in store.read_metrics()]


def test_resume_is_exact(tmp_path):
    model_a, store_a, out_a = _resume_setup(tmp_path, "straight")

    def crash_at_5(step, row):
        if step == 5:  # the row for step 5 is logged, the last checkpoint is step 3
            raise Crash
    with pytest.raises(Crash):
        _resume_setup(tmp_path, "interrupted", on_log=crash_at_5)
    store_b = RunStore(tmp_path, "interrupted")
    assert store_b.latest_checkpoint()[0] == 3
    assert [r["step"] for r in store_b.read_metrics()] == [1, 2, 3, 4, 5]

    torch.manual_seed(999)  # a new process: other RNG state, other initial weights
    model_b, store_b, out_b = _resume_setup(tmp_path, "interrupted", resume=True, init_seed=7)
    for pa, pb in zip(model_a.parameters(), model_b.parameters()):
        assert torch.equal(pa, pb)
    assert _losses(store_a) == _losses(store_b)
    assert [r["step"] for r in store_b.read_metrics()] == [1, 2, 3, 4, 5, 6]
    assert out_a["loss"] == out_b["loss"] and out_a["eval/draw"] == out_b["eval/draw"]
    assert out_a["tokens"] == out_b["tokens"]


class NanAtCall(MSE):
    def __init__(self, bad_call):
        self.calls, self.bad_call = 0, bad_call

    def __call__(self, policy, batch):
        self.calls += 1
        loss, metrics = super().__call__(policy, batch)
        return (loss * float("nan") if self.calls == self.bad_call else loss), metrics


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tmp_path):
    model = mlp()
    store = RunStore(tmp_path, "run")
    before = None

    def remember(step, row):
        nonlocal before
        before = params_of(model)
    with pytest.raises(CorralError, match=r"step 3: loss is nan; the last good checkpoint is "
                                          r"step 2 in .*step-2; lower train.lr"):
        train(ToyPolicy(model), NanAtCall(3), DatasetSource(toy_batches(4)),
              cfg(max_steps=5, save_every=2), store, on_log=remember)
    assert [s for s, _ in store.checkpoints()] == [2]
    assert not (store.path / "final").exists()
    assert [r["step"] for r in store.read_metrics()] == [1, 2]
    for p, q in zip(model.parameters(), before):  # the bad step changed nothing
        assert torch.equal(p, q)


def test_nan_before_any_checkpoint_says_so(tmp_path):
    with pytest.raises(CorralError, match="no checkpoint was saved yet"):
        train(ToyPolicy(mlp()), NanAtCall(1), DatasetSource(toy_batches(2)), cfg(),
              RunStore(tmp_path, "run"))


def test_logging_eval_and_checkpoint_cadence(tmp_path):
    store = RunStore(tmp_path, "run", keep=2)
    seen = []
    out = train(ToyPolicy(mlp()), MSE(), DatasetSource(toy_batches(3)),
                cfg(max_steps=5, log_every=2, eval_every=2, save_every=2), store,
                evaluator=lambda policy, step: {"score": float(step)},
                on_log=lambda step, row: seen.append((step, row)))
    rows = store.read_metrics()
    assert [r["step"] for r in rows] == [2, 4, 5] == [s for s, _ in seen]
    assert [r["eval/score"] for r in rows] == [2.0, 4.0, 5.0]
    for key in ("loss", "lr", "grad_norm", "tokens_per_s", "tokens", "epoch", "elapsed_s",
                "sq_err"):
        assert key in rows[0], key
    assert rows[-1]["tokens"] == 5 * 4  # 5 steps of one 4-row batch
    assert [s for s, _ in store.checkpoints()] == [4, 5]
    assert (store.path / "final" / "model.pt").exists()
    ckpt = store.checkpoint_dir(5)
    assert {p.name for p in ckpt.iterdir()} == {"model", "trainable.pt", "trainer.pt"}
    assert out["step"] == 5 and out["eval/score"] == 5.0 and out["loss"] == rows[-1]["loss"]


def test_loss_decreases_on_tiny_lm(tmp_path):
    class LMBatch:
        def __init__(self, ids):
            self.input_ids, self.labels = ids, ids.clone()
            self.n_tokens = self.n_loss_tokens = ids.shape[1]

        def to(self, device):
            return LMBatch(self.input_ids.to(device))

    class NLL:
        def weight(self, batch):
            return batch.n_loss_tokens - 1

        def __call__(self, policy, batch):
            logits = policy.model(input_ids=batch.input_ids).logits[:, :-1]
            nll = torch.nn.functional.cross_entropy(
                logits.flatten(0, 1).float(), batch.labels[:, 1:].flatten(), reduction="sum")
            return nll, {"nll": nll.detach(), "count": torch.tensor(2)}  # tensors, as SFT
    ids = torch.arange(3, 35).unsqueeze(0)
    model = tiny_model(hidden=32, layers=1)
    out = train(ToyPolicy(model), NLL(), DatasetSource([LMBatch(ids)]),
                cfg(lr=1e-2, max_steps=12, mixed_precision="bf16", log_every=1),
                RunStore(tmp_path, "lm"))
    losses = [r["loss"] for r in RunStore(tmp_path, "lm").read_metrics()]
    assert math.isfinite(out["loss"]) and losses[-1] < losses[0] * 0.8
    assert out["nll"] == pytest.approx(out["loss"]) and out["count"] == pytest.approx(2 / 31)


def test_plan_numbers():
    batches = toy_batches(10)  # 4 rows (tokens, sequences) each
    source = DatasetSource(batches, grad_accum=3)
    p = plan(cfg(max_steps=0, epochs=1.5, warmup_ratio=0.1, grad_accum=3), source)
    assert (p["steps_per_epoch"], p["total_steps"], p["warmup_steps"]) == (4, 6, 1)
    assert p["tokens_per_epoch"] == 40 and p["tokens_per_step"] == 10
    assert p["sequences_per_step"] == 10 and p["tokens_total"] == 60
    assert plan(cfg(max_steps=7), source)["total_steps"] == 7
    assert plan(cfg(max_steps=0, epochs=0.3), DatasetSource(batches))["total_steps"] == 3
    with pytest.raises(CorralError, match="train.schedule"):
        plan(cfg(schedule="cosin"), source)


def test_dataset_source_covers_each_epoch_once():
    source = DatasetSource(list(range(7)), grad_accum=3, seed=5)
    assert source.steps_per_epoch == 3
    steps0 = [source.micro_batches(k) for k in range(3)]
    assert [len(m) for m in steps0] == [3, 3, 1]  # the remainder is kept, smaller
    epoch0 = [i for m in steps0 for i in m]
    epoch1 = [i for k in range(3, 6) for i in source.micro_batches(k)]
    assert sorted(epoch0) == sorted(epoch1) == list(range(7)) and epoch0 != epoch1
    again = DatasetSource(list(range(7)), grad_accum=3, seed=5)
    assert [again.micro_batches(k) for k in range(6)] == [source.micro_batches(k)
                                                          for k in range(6)]
    with pytest.raises(CorralError, match="start a new run"):
        again.load_state_dict({**source.state_dict(), "n_batches": 8})
    with pytest.raises(CorralError):
        DatasetSource([])


def test_lr_schedules():
    assert [lr_factor(s, 10, 2, "cosine") for s in (0, 1, 2)] == [0.5, 1.0, 1.0]
    cos = [lr_factor(s, 10, 2, "cosine") for s in range(2, 10)]
    assert all(a > b for a, b in itertools.pairwise(cos)) and 0 < cos[-1] < 0.05
    assert lr_factor(6, 10, 2, "linear") == pytest.approx(0.5)
    assert lr_factor(9, 10, 0, "constant") == 1.0


def test_weight_decay_only_on_matrices():
    model = mlp()
    opt = make_optimizer(list(model.parameters()), cfg(weight_decay=0.1))
    decayed = {id(p) for g in opt.param_groups if g["weight_decay"] > 0 for p in g["params"]}
    assert decayed == {id(p) for p in model.parameters() if p.ndim == 2}


def test_resume_without_checkpoint_starts_over(tmp_path):
    store = RunStore(tmp_path, "run")
    store.append_metrics(9, {"loss": 1.0})  # from a run that died before its first checkpoint
    train(ToyPolicy(mlp()), MSE(), DatasetSource(toy_batches(2)), cfg(max_steps=2), store,
          resume=True)
    assert [r["step"] for r in store.read_metrics()] == [1, 2]


def test_deterministic_flag_is_restored(tmp_path):
    before = torch.are_deterministic_algorithms_enabled()
    train(ToyPolicy(mlp()), MSE(), DatasetSource(toy_batches(1)),
          cfg(max_steps=1, deterministic=True), RunStore(tmp_path, "run"))
    assert torch.are_deterministic_algorithms_enabled() == before


def test_trainable_subset_only_is_trained_and_restored(tmp_path):
    model = mlp()
    for p in model[0].parameters():
        p.requires_grad_(False)  # a frozen base, as under LoRA
    frozen = params_of(model[0])
    store = RunStore(tmp_path, "run")
    train(ToyPolicy(model), MSE(), DatasetSource(toy_batches(2)), cfg(max_steps=2), store)
    assert all(torch.equal(a, b) for a, b in zip(model[0].parameters(), frozen))
    saved = torch.load(store.checkpoint_dir(2) / "trainable.pt", weights_only=True)
    assert saved["names"] == ["3.weight", "3.bias"]
    assert copy.deepcopy(saved["tensors"][0]).shape == (1, 16)
