"""Preference batches and objectives on the tiny model: packing, log 2 at equal policy and
reference, the LoRA reference, cached reference log-probs, KTO's KL estimate, data errors."""
import json
import math

import pytest
import torch

from corral.core.config import load_config
from corral.core.errors import CorralError
from corral.core.records import Message, Preference
from corral.core.sections import LoraConfig
from corral.data.batching import collate_pairs as collate
from corral.data.batching import feedback_batches, pair_batches
from corral.data.pairs import render_feedback, render_pairs, split_pairs
from corral.data.readers import load_preference_records
from corral.methods.dpo import DPOConfig, attach_reference
from corral.methods.kto import METHOD as KTO_METHOD
from corral.methods.kto import KTOConfig, load_feedback
from corral.methods.runner import prepare
from corral.model.policy import Policy
from corral.objectives.preference import (
    DPO,
    KTO,
    ORPO,
    SimPO,
    reference_logps,
    sequence_logps,
)
from corral.store.runs import RunStore
from corral.synth.pairs import make_pairs, write_pairs
from corral.testing import tiny_model, tiny_tokenizer


def prefs(n=6):
    return [Preference((Message("user", f"add {i} {i + 1}"),),
                       (Message("assistant", f"{2 * i + 1}"),),
                       (Message("assistant", f"{i} plus {i + 1} is hard"),), f"f:{i + 1}")
            for i in range(n)]


def lora_policy(seed=0, perturb=False):
    policy = Policy.from_objects(tiny_model(seed=seed), tiny_tokenizer(), LoraConfig(r=4))
    if perturb:  # LoRA B starts at 0; move it so the adapter changes the outputs
        with torch.no_grad():
            for name, p in policy.model.named_parameters():
                if "lora_B" in name:
                    p.normal_(0, 0.2)
    return policy


def test_collate_interleaves_pairs_and_indexes_sequences(tokenizer):
    pairs, dropped = render_pairs(prefs(2), tokenizer)
    batch = collate(pairs)
    assert dropped == 0 and batch.n_seqs == 4 and batch.n_pairs == 2
    assert batch.seq_lens == [len(e.input_ids) for p in pairs for e in p]
    want = [sum(e.loss_mask[1:]) for p in pairs for e in p]
    assert batch.n_targets.tolist() == want
    assert batch.seq_index.tolist() == [s for s, k in enumerate(want) for _ in range(k)]
    assert batch.position_ids[0, batch.seq_lens[0]] == 0  # positions restart per sequence


def test_packed_sequence_logps_equal_one_at_a_time(tokenizer):
    policy = lora_policy(perturb=True)
    pairs, _ = render_pairs(prefs(3), tokenizer)
    together = sequence_logps(policy, collate(pairs))
    alone = torch.cat([sequence_logps(policy, collate([p])) for p in pairs])
    assert torch.allclose(together, alone, atol=1e-4)


@pytest.mark.parametrize("loss", ["sigmoid", "norm"])
def test_equal_policy_and_reference_give_log2(tokenizer, loss):
    policy = lora_policy()  # B = 0: the adapter is the identity, so policy == reference
    batch = collate(render_pairs(prefs(4), tokenizer)[0])
    objective = DPO(loss, beta=0.1)
    loss_sum, metrics = objective(policy, batch)
    mean_loss = float(loss_sum.detach()) / objective.weight(batch)
    assert mean_loss == pytest.approx(math.log(2), abs=1e-6)
    assert float(metrics["rewards/margin"]) == pytest.approx(0.0, abs=1e-6)
    loss_sum.backward()  # the loss reaches the adapter
    grads = [p.grad for n, p in policy.model.named_parameters() if "lora_B" in n]
    assert any(g is not None and g.abs().sum() > 0 for g in grads)


def test_lora_reference_is_the_base_model(tokenizer):
    policy = lora_policy(perturb=True)
    base = Policy.from_objects(tiny_model(seed=0), tiny_tokenizer(), None)
    batch = collate(render_pairs(prefs(3), tokenizer)[0])
    with torch.no_grad():
        theirs = sequence_logps(base, batch)
        ours = reference_logps(policy, batch)
        adapted = sequence_logps(policy, batch)
    assert torch.allclose(ours, theirs, atol=1e-5)
    assert not torch.allclose(adapted, theirs, atol=1e-3)


@pytest.mark.parametrize("lora", [True, False])
def test_cached_reference_equals_recomputed(tokenizer, tmp_path, lora):
    policy = lora_policy(perturb=False) if lora else \
        Policy.from_objects(tiny_model(), tiny_tokenizer(), None)
    batches = pair_batches(render_pairs(prefs(6), tokenizer)[0], max_tokens=320, seed=0)
    assert len(batches) > 1
    store = RunStore(tmp_path, "ref")
    attach_reference(policy, batches, store, "ref.pt", log=lambda s: None)
    cached = [b.ref_logps.clone() for b in batches]
    with torch.no_grad():
        live = [sequence_logps(policy, b) for b in batches]
    for c, r in zip(cached, live):
        assert torch.allclose(c, r, atol=1e-5)
    for b in batches:
        b.ref_logps = None
    attach_reference(policy, batches, store, "ref.pt", log=lambda s: pytest.fail("recomputed"))
    assert all(torch.equal(b.ref_logps, c) for b, c in zip(batches, cached))


def test_reference_free_objectives_run_and_learn_signals(tokenizer):
    policy = lora_policy(perturb=True)
    batch = collate(render_pairs(prefs(3), tokenizer)[0])
    for objective in (SimPO(2.0, 1.0), ORPO(0.1), DPO("ipo", 0.1), DPO("hinge", 0.1),
                      DPO("robust", 0.1, 0.1), DPO("sigmoid", 0.1, 0.0, rpo_alpha=1.0)):
        loss, metrics = objective(policy, batch)
        assert torch.isfinite(loss) and loss.requires_grad
        assert "rewards/accuracy" in metrics


def test_kto_kl_estimate_is_detached_and_clamped(tokenizer):
    records = split_pairs(prefs(4))
    examples, labels, _ = render_feedback(records, tokenizer)
    (batch,) = feedback_batches(examples, labels, max_tokens=4096)
    assert batch.n_rows == 8 and batch.desirable.tolist() == [True, False] * 4
    policy = lora_policy(perturb=True)
    objective = KTO(beta=0.1)
    z = objective.kl_estimate(policy, batch)
    assert not z.requires_grad and float(z) >= 0
    # a reference far below the policy: positive log-ratio passes through unclamped
    batch.mismatched.ref_logps = torch.full((8,), -1e4)
    assert float(objective.kl_estimate(policy, batch)) > 1e3
    batch.mismatched.ref_logps = torch.full((8,), 0.0)  # log-ratio < 0 everywhere: z = 0
    assert float(objective.kl_estimate(policy, batch)) == 0.0
    loss, metrics = objective(policy, batch)
    assert loss.requires_grad and float(metrics["kl"]) == 0.0


def test_kto_mismatched_rows_pair_prompts_with_other_completions(tokenizer):
    examples, labels, _ = render_feedback(split_pairs(prefs(2)), tokenizer)
    (batch,) = feedback_batches(examples, labels, max_tokens=4096)
    text = tokenizer.decode(batch.mismatched.input_ids[0, :batch.mismatched.seq_lens[0]])
    assert "add 0 1" in text and "1 plus 2 is hard" in text  # row 0's prompt, row 3's answer


def test_kto_batches_never_hold_one_row(tokenizer):
    examples, labels, _ = render_feedback(split_pairs(prefs(5)), tokenizer)
    longest = max(len(e.input_ids) for e in examples)
    batches = feedback_batches(examples, labels, max_tokens=4 * longest + 8)
    assert all(b.n_rows >= 2 for b in batches)
    assert sum(b.n_rows for b in batches) == 10
    with pytest.raises(CorralError, match="at least 2 rows per micro-batch"):
        feedback_batches(examples, labels, max_tokens=2 * longest + 1)
    with pytest.raises(CorralError, match="at least 2 rows"):
        feedback_batches(examples[:1], labels[:1], max_tokens=4096)


def write(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def test_preference_formats_all_load(tmp_path):
    msgs = (lambda role, text: [{"role": role, "content": text}])
    rows = [
        {"prompt": "2+2=", "chosen": "4", "rejected": "5"},
        {"prompt": msgs("user", "hi"), "chosen": msgs("assistant", "hello"),
         "rejected": msgs("assistant", "go away")},
        {"chosen": msgs("user", "hi") + msgs("assistant", "hello"),
         "rejected": msgs("user", "hi") + msgs("assistant", "no")},
        {"input": {"messages": msgs("user", "hi")}, "preferred_output": msgs("assistant", "a"),
         "non_preferred_output": msgs("assistant", "b")},
    ]
    records = load_preference_records(write(tmp_path / "p.jsonl", rows))
    pairs, _ = render_pairs(records, tiny_tokenizer())
    assert len(pairs) == 4
    assert len(load_feedback(str(tmp_path / "p.jsonl"))) == 8  # paired data split for KTO


def test_bad_preference_rows_name_file_and_line(tmp_path):
    path = write(tmp_path / "bad.jsonl", [{"prompt": "x", "chosen": "a", "rejected": "a"},
                                          {"prompt": "x", "chosen": "a"}])
    with pytest.raises(CorralError) as err:
        load_preference_records(path)
    assert f"{path}:1: 'chosen' and 'rejected' are identical" in str(err.value)
    assert f"{path}:2: no recognised format" in str(err.value)
    kto = write(tmp_path / "kto.jsonl", [{"prompt": "x", "completion": "y", "label": "yes"}])
    with pytest.raises(CorralError, match=r"kto.jsonl:1: 'label' must be true or false"):
        load_feedback(kto)


def test_bad_hyperparameters_are_clear():
    with pytest.raises(CorralError, match="dpo.loss='sigmod'"):
        DPO("sigmod")
    with pytest.raises(CorralError, match=r"label_smoothing=0.5 must be in \[0, 0.5\)"):
        DPO("robust", 0.1, 0.5)
    with pytest.raises(CorralError, match="kto.beta"):
        KTO(beta=0)


def test_kto_class_ratio_warning(tmp_path, monkeypatch):
    rows = [{"prompt": f"q{i}", "completion": "a", "label": i < 1} for i in range(6)]
    path = write(tmp_path / "kto.jsonl", rows)
    cfg = load_config(KTOConfig, None, [f"data.train={path}", "train.batch_tokens=4096"])
    policy = Policy.from_objects(tiny_model(), tiny_tokenizer(), LoraConfig(r=4))
    with pytest.warns(UserWarning, match=r"recommends \[1, 4/3\]"):
        prepare(KTO_METHOD, cfg, policy)


class FakeGrader:
    name = "fake-even"

    def grade_batch(self, pairs):
        from corral.graders.base import Score
        return [Score(float(len(s.output_text) % 2 == 0), passed=len(s.output_text) % 2 == 0)
                for _, s in pairs]


def test_make_pairs_rows_load_and_carry_provenance(tmp_path):
    from corral.core.records import Item
    from corral.infer.engine import SamplingParams
    from corral.tasks import Task

    items = [Item((Message("user", f"say {i}"),), {"answer": str(i)}, f"t:{i}") for i in range(4)]
    task = Task("toy", items, FakeGrader())
    policy = Policy.from_objects(tiny_model(), tiny_tokenizer(), None)
    params = SamplingParams(n=4, temperature=1.0, max_new_tokens=6, seed=0)
    result = make_pairs(policy, task, 4, params, model_name="tiny", split="train",
                        log=lambda s: None)
    assert result.preference and result.feedback
    row = result.preference[0]
    assert row["provenance"]["model"] == "tiny" and row["provenance"]["grader"] == "fake-even"
    assert row["provenance"]["chosen_score"] == 1.0 and row["provenance"]["rejected_score"] == 0.0
    paths = write_pairs(result, tmp_path / "out")
    assert len(load_preference_records(paths["pairs"])) == len(result.preference)
    assert len(load_feedback(paths["kto"])) == len(result.feedback)
    with pytest.raises(CorralError, match="unseen"):
        make_pairs(policy, task, 4, params, split="unseen")


def test_dpo_config_rejects_unknown_keys():
    with pytest.raises(CorralError, match="did you mean 'beta'"):
        load_config(DPOConfig, None, ["dpo.betta=0.1"])
