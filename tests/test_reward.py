"""Reward model on the tiny model: a planted preference is learned, save/load, grader, HF
sequence-classification models, resume with the head, and bad-input messages."""
import json
import random

import pytest
import torch

import corral.cli.app
from corral.core.config import load_config
from corral.core.errors import CorralError
from corral.core.records import Completion, Message
from corral.data.batching import pair_batches as pack_pairs
from corral.graders.base import Sample
from corral.graders.reward_model import RewardModelGrader, reward_model_grader
from corral.methods.rm import METHOD, RMConfig, run_rm
from corral.methods.runner import heldout, prepare
from corral.model.heads import load_reward_model
from corral.objectives.losses import bradley_terry
from corral.objectives.reward import RewardObjective
from corral.store.runs import read_jsonl
from corral.testing import save_tiny, tiny_tokenizer

WORDS = ["apple", "river", "stone", "cloud", "lamp", "garden", "tiger", "violin"]


def write_pairs(path, n, seed):
    """Chosen replies say "yes", rejected ones "no"; the rest of the reply is shared noise."""
    rng = random.Random(seed)
    with open(path, "w") as handle:
        for _ in range(n):
            tail = " ".join(rng.sample(WORDS, 3))
            handle.write(json.dumps({
                "prompt": [{"role": "user", "content": f"Is the {rng.choice(WORDS)} ok?"}],
                "chosen": [{"role": "assistant", "content": f"yes {tail}"}],
                "rejected": [{"role": "assistant", "content": f"no {tail}"}]}) + "\n")
    return str(path)


@pytest.fixture
def setup(tmp_path, monkeypatch):
    monkeypatch.setenv("CORRAL_HOME", str(tmp_path / "home"))
    model = save_tiny(tmp_path / "tiny")
    return tmp_path, model, write_pairs(tmp_path / "train.jsonl", 48, 0), \
        write_pairs(tmp_path / "dev.jsonl", 20, 1)


def common(tmp_path, model, train, *extra):
    return [f"model.name={model}", f"data.train={train}", "train.lr=2e-3",
            "train.batch_tokens=1024", "train.progress=false", "lora.enabled=false",
            f"run.root={tmp_path / 'runs'}", *extra]


def rm_main(argv):
    """corral.cli.app.main, as the command line runs it."""
    return corral.cli.app.main(argv)


def test_objective_is_bradley_terry_per_pair():
    rewards = torch.tensor([2.0, 0.5, -1.0, 1.0])  # pairs (2, 0.5) and (-1, 1)

    class Fake:
        def rewards(self, batch):
            return rewards
    batch = type("B", (), {"n_pairs": 2})()
    objective = RewardObjective(margin=0.5, center_coef=0.1)
    loss, metrics = objective(Fake(), batch)
    expected = bradley_terry(rewards[0::2], rewards[1::2], 0.5, 0.1).sum()
    assert objective.weight(batch) == 2.0
    assert loss.item() == pytest.approx(expected.item())
    assert metrics["accuracy"].item() == 1.0 and metrics["margin"].item() == pytest.approx(-0.5)


def test_pairs_stay_together_when_packed(tokenizer):
    from corral.data.render import Example
    pairs = [(Example([1] * n, [1] * n, f"f:{i}"), Example([2] * (n + 1), [1] * (n + 1), ""))
             for i, n in enumerate([5, 9, 3, 7])]
    batches = pack_pairs(pairs, 24, seed=0)
    assert sum(b.n_pairs for b in batches) == 4
    for b in batches:  # every chosen (even slot) is directly followed by its rejected
        assert [s for s in b.seq_lens[1::2]] == [s + 1 for s in b.seq_lens[0::2]]
    with pytest.raises(CorralError, match=r"the pair at f:1 \(chosen \+ rejected\) has 19 tokens"):
        pack_pairs(pairs, 18)


def test_planted_preference_is_learned_and_graded(setup):
    tmp_path, model, train, dev = setup
    cfg = load_config(RMConfig, None, common(tmp_path, model, train, f"data.validation={dev}",
                                             "train.max_steps=20", "run.name=planted"))
    setup, built = prepare(METHOD, cfg)
    rm = setup.policy
    objective = RewardObjective()
    before = heldout(objective, built.val_batches)(rm, 0)
    store = run_rm(cfg, rm=rm, log=lambda s: None)
    rows = read_jsonl(store.path / "metrics.jsonl")
    # A random head may prefer "yes" by chance, but only by a hair: the gap must grow.
    assert abs(before["margin"]) < 0.2
    assert rows[-1]["eval/accuracy"] >= 0.9 and rows[-1]["eval/margin"] > 1.0
    assert rows[-1]["loss"] < rows[0]["loss"]
    grader = reward_model_grader({"type": "reward_model", "model": "planted",
                                  "root": str(tmp_path / "runs")})
    item = {"messages": [{"role": "user", "content": "Is the lamp ok?"}]}
    good, bad = grader.grade_batch([(item, Sample.of("yes cloud tiger river")),
                                    (item, Sample.of("no cloud tiger river"))])
    assert good.value > bad.value and good.details["reward"] == good.value
    assert grader.grade(item, Sample.of("no cloud tiger river")).value == \
        pytest.approx(bad.value, abs=1e-5)  # alone or packed with others: the same reward
    by_prompt = grader.grade({"prompt": "Is the lamp ok?"}, Sample.of("yes cloud tiger river"))
    assert by_prompt.value == pytest.approx(good.value, abs=1e-5)


def test_lora_save_load_round_trip(setup):
    tmp_path, model, train, _ = setup
    cfg = load_config(RMConfig, None, common(tmp_path, model, train, "lora.enabled=true",
                                             "lora.r=4", "train.max_steps=3", "rm.holdout=0.25",
                                             "rm.center_coef=0.01", "run.name=lora"))
    rm = prepare(METHOD, cfg)[0].policy
    store = run_rm(cfg, rm=rm, log=lambda s: None)
    assert (store.path / "final" / "adapter_config.json").is_file()
    assert "eval/accuracy" in read_jsonl(store.path / "metrics.jsonl")[-1]
    records = [Completion((Message("user", "Is the tiger ok?"),), (Message("assistant", t),))
               for t in ("yes lamp", "no stone garden", "maybe")]
    loaded = load_reward_model(str(store.path))
    assert loaded.score(records) == pytest.approx(rm.score(records), abs=1e-5)
    assert rm.score(records) != pytest.approx(rm.score(records[::-1]))  # not constant


def test_resume_restores_the_head(setup, monkeypatch):
    """Kill at step 4 (checkpoint at 3), resume: same losses and head as uninterrupted."""
    from corral.store.runs import RunStore

    tmp_path, model, train, _ = setup
    args = ["rm", *common(tmp_path, model, train, "train.max_steps=6", "train.save_every=3",
                          "train.batch_tokens=300", "train.deterministic=true")]
    assert rm_main([*args, "run.name=full"]) == 0
    append = RunStore.append_metrics

    def killed_at_4(self, step, metrics):
        if step == 4:
            raise KeyboardInterrupt
        append(self, step, metrics)
    monkeypatch.setattr(RunStore, "append_metrics", killed_at_4)
    assert rm_main([*args, "run.name=cut"]) == 130
    monkeypatch.setattr(RunStore, "append_metrics", append)
    assert rm_main([*args, "--resume", "cut"]) == 0
    runs = tmp_path / "runs"
    full, cut = (read_jsonl(runs / n / "metrics.jsonl") for n in ("full", "cut"))
    assert [r["loss"] for r in cut] == pytest.approx([r["loss"] for r in full], rel=1e-5)
    from safetensors.torch import load_file
    heads = [load_file(str(runs / n / "final" / "value_head.safetensors")) for n in ("full", "cut")]
    assert torch.allclose(heads[0]["weight"], heads[1]["weight"], atol=1e-6)
    saved = torch.load(runs / "cut" / "checkpoints" / "step-6" / "trainable.pt")
    assert any(t.shape == heads[0]["weight"].shape for t in saved["tensors"])


def test_sequence_classification_model_is_a_reward_model(tmp_path):
    from transformers import LlamaConfig, LlamaForSequenceClassification

    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=259, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                      num_attention_heads=4, num_key_value_heads=2, num_labels=1,
                      pad_token_id=0, bos_token_id=1, eos_token_id=2)
    hf = LlamaForSequenceClassification(cfg).eval()
    hf.save_pretrained(tmp_path / "cls")
    tiny_tokenizer().save_pretrained(tmp_path / "cls")
    rm = load_reward_model(str(tmp_path / "cls"), root=str(tmp_path))
    records = [Completion((Message("user", "hi"),), (Message("assistant", t),))
               for t in ("yes", "no thanks")]
    ours = rm.score(records)
    for record, value in zip(records, ours):
        ids = torch.tensor([rm.render([record])[0].input_ids])
        with torch.no_grad():
            assert hf(input_ids=ids).logits[0, 0].item() == pytest.approx(value, abs=1e-4)
    two = LlamaConfig(**{**cfg.to_dict(), "num_labels": 2})
    LlamaForSequenceClassification(two).save_pretrained(tmp_path / "two")
    with pytest.raises(CorralError, match="2 labels"):
        load_reward_model(str(tmp_path / "two"))


def test_grader_spec_errors(setup):
    tmp_path, model, _, _ = setup
    (tmp_path / "runs" / "sft-run" / "final").mkdir(parents=True)
    with pytest.raises(CorralError, match="not a reward model run"):
        reward_model_grader({"type": "reward_model", "model": "sft-run",
                             "root": str(tmp_path / "runs")})
    with pytest.raises(CorralError, match='needs "model"'):
        reward_model_grader({"type": "reward_model"})
    with pytest.raises(CorralError, match="unknown key"):
        reward_model_grader({"type": "reward_model", "model": "x", "modle": "y"})
    with pytest.raises(CorralError, match="is not a reward model"):
        reward_model_grader({"type": "reward_model", "model": model})  # a plain causal LM
    with pytest.raises(CorralError, match="needs the prompt"):
        RewardModelGrader(rm=None).grade({"answer": "4"}, Sample.of("4"))


def test_cli_bad_preference_data_and_config(setup, capsys):
    tmp_path, model, _, _ = setup
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "q", "chosen": "a"}\n{"prompt": "q", "chosen": "a", '
                   '"rejected": "a"}\nnot json\n')
    assert rm_main(["rm", *common(tmp_path, model, bad)]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert all(f"{bad}:{n}:" in err for n in (1, 2, 3))
    assert not (tmp_path / "runs").exists()  # nothing written before validation passed
    for override, message in [("rm.margn=1", "did you mean 'margin'"),
                              ("rm.holdout=1.5", "rm.holdout=1.5 must be in [0, 1)"),
                              ("rm.margin=-1", "rm.margin and rm.center_coef must be >= 0")]:
        assert rm_main(["rm", *common(tmp_path, model, bad), override]) == 2
        assert message in capsys.readouterr().err
    assert rm_main(["rm", f"model.name={model}"]) == 2
    assert "set data.train=" in capsys.readouterr().err
