"""corral.curate against arithmetic and planted data: dedup, LSH vs brute force, clusters,
decontamination counts, IFD by hand on a tiny model, selection, and the CLI end to end."""
import argparse
import itertools
import json
import math
import random

import numpy as np
import pytest

from corral.core.errors import CorralError
from corral.core.io import file_sha256
from corral.core.records import Chat, Completion, Message, Preference, Text
from corral.curate import (
    EvalItem,
    decontaminate,
    eval_items,
    exact_dedup,
    filter_by_score,
    ifd_scores,
    minhash,
    near_dedup,
    normalize,
    perplexity,
    row_text,
    score_rows,
    select,
    semantic_dedup,
    tokenize,
)
from corral.curate.decontam import overlaps


@pytest.fixture(autouse=True)
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("CORRAL_HOME", str(tmp_path / "home"))  # no seals from other tests


VOCAB = [f"w{k}" for k in range(5000)]


def words(rng, n):
    return [rng.choice(VOCAB) for _ in range(n)]


def shingles(text, n=5):
    w = tokenize(text)
    return {tuple(w[i:i + n]) for i in range(len(w) - n + 1)} if len(w) >= n else {tuple(w)}


def jaccard(a, b):
    return len(a & b) / len(a | b)


def test_text_of_each_row_type_and_normalisation():
    chat = Chat((Message("user", "Hi there"), Message("assistant", "Hello!")))
    assert row_text(chat) == "Hi there\nHello!"
    assert row_text(Completion("Q?", "A.")) == "Q?\nA."
    assert row_text(Preference("Q?", "good", "bad")) == "Q?\ngood"
    assert row_text(Text("raw")) == "raw"
    assert row_text({"prompt": "p", "chosen": "c", "rejected": "r"}) == "p\nc"
    assert row_text({"messages": [{"role": "user", "content": "a"},
                                  {"role": "assistant", "content": "b"}]}) == "a\nb"
    assert normalize("  Hello,\n\tWORLD!  ") == "hello world"
    assert normalize("What is 12 + 3?") != normalize("What is 12 - 3?")  # symbols stay
    with pytest.raises(CorralError, match="no text to compare"):
        row_text({"foo": 1})


def test_exact_duplicates_keep_the_first_and_name_it():
    rows = ["The cat sat.", "a dog", "the  CAT sat", "A dog!", "new"]
    result = exact_dedup(rows)
    assert result.kept == ["The cat sat.", "a dog", "new"]
    assert [(f.source, f.match) for f in result.removed] == [("row 3", "row 1"),
                                                             ("row 4", "row 2")]


def test_planted_near_duplicate_found_and_unrelated_not():
    rng = random.Random(0)
    base = [" ".join(words(rng, 40)) for _ in range(50)]
    copy = base[7].split()
    copy[1] = "changed"  # one word of 40: 2 of 36 shingles differ
    rows = base + [" ".join(copy)]
    assert jaccard(shingles(rows[7]), shingles(rows[50])) == pytest.approx(34 / 38)
    result = near_dedup(rows)
    assert [(f.source, f.match) for f in result.removed] == [("row 51", "row 8")]
    assert result.removed[0].score == pytest.approx(34 / 38)
    middle = base[3].split()
    middle[20] = "changed"  # in the middle: 5 shingles differ, J = 31/41 by hand
    assert jaccard(shingles(base[3]), shingles(" ".join(middle))) == pytest.approx(31 / 41)
    assert len(result.kept) == 50


def test_lsh_equals_brute_force_jaccard():
    rng = random.Random(1)
    rows = []
    for _ in range(12):
        w = words(rng, 40)
        rows += [" ".join(w), " ".join(w[:-1] + ["end"]), " ".join(["start"] + w[1:]),
                 " ".join(w[:20] + words(rng, 20))]  # J ≈ 0.9 variants and a 0.3 half copy
    sets = [shingles(t) for t in rows]
    truth = {(i, j) for i, j in itertools.combinations(range(len(rows)), 2)
             if jaccard(sets[i], sets[j]) >= 0.7}
    values, offsets = minhash.shingle_sets(rows, 5)
    sig = minhash.signatures(values, offsets, 128)
    i, j = minhash.candidate_pairs(sig, *minhash.optimal_param(0.7, 128))
    jac = minhash.jaccard(values, offsets, i, j)
    for a, b, s in zip(i, j, jac):
        assert s == pytest.approx(jaccard(sets[a], sets[b]))  # the FP check is exact
    assert {(int(a), int(b)) for a, b, s in zip(i, j, jac) if s >= 0.7} == truth
    assert len(truth) == 36 and len(near_dedup(rows).kept) == len(rows) - 24


def test_optimal_param_matches_datasketch():
    # datasketch 2.0's _optimal_param for these (threshold, num_perm)
    known = {(0.7, 128): (14, 9), (0.5, 128): (25, 5), (0.8, 256): (17, 15),
             (0.9, 64): (3, 21), (0.6, 128): (18, 7)}
    for (t, n), bands_rows in known.items():
        assert minhash.optimal_param(t, n) == bands_rows


def test_clusters_keep_one_row_and_never_drop_a_whole_cluster():
    from corral.curate.dedup import clusters
    labels = minhash.components(6, np.array([0, 1, 4]), np.array([1, 2, 5]))
    assert labels.tolist() == [0, 0, 0, 3, 4, 4]
    # a ~ b ~ c with a !~ c is one cluster: only a is kept; c names b, its closest row
    rows = ["a", "b", "c", "d"]
    result = clusters("near", rows, np.array([0, 1]), np.array([1, 2]), np.array([0.9, 0.8]),
                      "near duplicate", {})
    assert result.kept == ["a", "d"]
    assert [(f.source, f.match, f.kept_as) for f in result.removed] == [
        ("row 2", "row 1", ""), ("row 3", "row 2", "row 1")]
    rng = random.Random(2)
    w = words(rng, 40)
    chain = [" ".join(w), " ".join(w[:-1] + ["x"]), " ".join(w[:-2] + ["x", "y"])]
    other = " ".join(words(rng, 40))
    assert near_dedup(chain + [other]).kept == [chain[0], other]


def test_decontamination_covered_fraction_is_the_hand_count():
    item = " ".join(f"t{k}" for k in range(20))  # 20 words: 13 distinct 8-grams
    partial = " ".join([f"t{k}" for k in range(15)] + ["other"] * 5)  # 8 of them
    again = partial + " " + partial  # a repeated n-gram covers once: still 8
    short = "what is 12 + 34"
    rows = [partial, again, "t0 t1 t2 nothing", f"so {short} then", "what is 12 - 34 eh", item]
    items = [EvalItem("test:1", item, "t"), EvalItem("test:2", short, "t")]
    best, covered, total = overlaps(rows, [i.text for i in items], n=8)
    assert best.tolist() == [0, 0, -1, 1, -1, 0]
    assert covered.tolist()[:2] == [8, 8] and total[0] == 13
    result = decontaminate(rows, items, ngram=8, threshold=0.7)
    by_source = {f.source: f for f in result.findings}
    assert by_source["row 1"].score == pytest.approx(8 / 13) and not by_source["row 1"].dropped
    assert by_source["row 4"].match == "test:2" and by_source["row 4"].score == 1.0
    assert [f.source for f in result.removed] == ["row 4", "row 6"]
    assert decontaminate(rows, items, ngram=8, threshold=0.5).removed[0].source == "row 1"


def test_decontaminate_against_a_task_and_an_unknown_task():
    items = eval_items("arithmetic")
    assert {i.target for i in items} == {"arithmetic"} and ":dev:" in items[0].id
    rows = ["unrelated text " * 5, items[3].text + " The answer is 7."]
    assert [f.match for f in decontaminate(rows, items).removed] == [items[3].id]
    with pytest.raises(CorralError, match="unknown task 'arithmetc'.*arithmetic"):
        eval_items("arithmetc")


def _hand_nll(model, ids, first):
    import torch
    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits[0].double()
    logp = torch.log_softmax(logits, -1)
    return -sum(float(logp[t - 1, ids[t]]) for t in range(first, len(ids))) / (len(ids) - first)


def test_ifd_equals_a_hand_computation_on_a_tiny_model(model, tokenizer):
    model.eval()
    pairs = [("Question: what is 2+2?", "Answer: 4"), ("Hi", "Hello there, my good friend")]
    got = ifd_scores(model, tokenizer, pairs, batch_size=2)  # one padded batch
    for (x, y), value in zip(pairs, got):
        xi = tokenizer(x, add_special_tokens=False)["input_ids"]
        yi = tokenizer(y, add_special_tokens=False)["input_ids"]
        cond, alone = _hand_nll(model, xi + yi, len(xi)), _hand_nll(model, yi, 1)
        assert value == pytest.approx(math.exp(cond - alone), rel=1e-4)
        assert perplexity(model, tokenizer, [(x, y)])[0] == pytest.approx(math.exp(cond),
                                                                          rel=1e-4)
    chat = Chat((Message("user", "2+2?"), Message("assistant", "4, of course")))
    assert math.isfinite(ifd_scores(model, tokenizer, [chat])[0])


def test_scorer_hooks_score_and_filter():
    rows = ["short", "a much longer row", "mid row"]
    scores = score_rows(rows, lambda r: len(r))
    result = filter_by_score(rows, scores, min_score=7)
    assert result.kept == ["a much longer row", "mid row"]
    assert result.removed[0].score == 5
    with pytest.raises(CorralError, match="row 1: the scorer returned 'x'"):
        score_rows(rows, lambda r: "x")


def unit(*v):
    v = np.asarray(v, dtype=np.float32)
    return v / np.linalg.norm(v)


def test_deita_respects_tau_and_does_not_pad():
    vectors = np.stack([unit(1, 0, 0), unit(0.95, math.sqrt(1 - 0.95 ** 2), 0),
                        unit(0, 0, 1), unit(0.5, 0, math.sqrt(0.75))])
    rows = ["a", "b", "c", "d"]
    result = select(rows, 3, scores=[4, 3, 2, 1], embeddings=vectors, tau=0.9)
    assert result.kept == ["a", "c", "d"]
    kept = vectors[[0, 2, 3]]
    assert (kept @ kept.T - np.eye(3)).max() <= 0.9
    assert result.removed[0].match == "row 1" and result.removed[0].score == pytest.approx(0.95)
    short = select(rows, 4, scores=[4, 3, 2, 1], embeddings=vectors, tau=0.9)
    assert len(short.kept) == 3 and "only 3 rows pass" in short.notes[0]


def test_kcenter_picks_the_far_point_and_random_is_seeded():
    vectors = np.stack([unit(1, 0), unit(0.99, 0.14), unit(0, 1)])
    assert select(["near", "nearer", "far"], 2, method="kcenter",
                  embeddings=vectors).kept == ["near", "far"]
    rows = list(range(20))
    assert select(rows, 5, method="random", seed=3).kept == \
        select(rows, 5, method="random", seed=3).kept
    with pytest.raises(CorralError, match="budget 21: there are 20 rows"):
        select(rows, 21, method="random")
    with pytest.raises(CorralError, match="did you mean 'kcenter'"):
        select(rows, 2, method="kcentre")


def test_semantic_dedup_by_cosine_with_given_embeddings():
    vectors = np.stack([unit(1, 0), unit(0.999, 0.04), unit(0, 1)])
    result = semantic_dedup(["a", "a'", "b"], 0.95, embeddings=vectors)
    assert result.kept == ["a", "b"] and result.removed[0].match == "row 1"


def test_minilm_embeddings_are_unit_and_close_for_paraphrases():
    from corral.curate import embed
    v = embed(["The cat sat on the mat.", "the cat sat on the mat", "Stock prices fell."])
    assert np.allclose(np.linalg.norm(v, axis=1), 1, atol=1e-5)
    assert v[0] @ v[1] > 0.95 and v[0] @ v[2] < 0.5


def chat_row(user, assistant):
    return {"messages": [{"role": "user", "content": user},
                         {"role": "assistant", "content": assistant}]}


def run_cli(argv):
    from corral.cli.curate import register
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    args = parser.parse_args(["curate", *argv])
    args.func(args)


def test_cli_end_to_end_writes_output_report_and_manifest(tmp_path, capsys):
    rng = random.Random(4)
    texts = [" ".join(words(rng, 30)) for _ in range(6)]
    test_question = " ".join(words(rng, 20))
    rows = [chat_row(t, "ok") for t in texts]
    rows += [chat_row(texts[0].upper(), "OK!"),  # exact duplicate of row 1
             chat_row(texts[1] + " more", "ok"),  # near duplicate of row 2
             chat_row(f"Please solve: {test_question}", "42")]  # contaminated
    data = tmp_path / "train.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    evals = tmp_path / "eval.jsonl"
    evals.write_text(json.dumps({"question": test_question, "answer": "42"}) + "\n")
    out = tmp_path / "out.jsonl"
    run_cli([str(data), "--out", str(out), "--decontaminate", str(evals),
             "--select", "5", "--select-method", "random"])
    kept = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(kept) == 5 and all(r in rows[:6] for r in kept)
    manifest = json.loads((tmp_path / "out.jsonl.manifest.json").read_text())
    assert manifest["output"]["sha256"] == file_sha256(out)
    assert manifest["input"]["sha256"] == file_sha256(data)
    assert (manifest["rows_in"], manifest["rows_out"]) == (9, 5)
    steps = {s["step"]: s for s in manifest["steps"]}
    assert [steps[k]["removed"] for k in ("exact", "decontaminate", "near", "select")] == \
        [1, 1, 1, 1]
    assert steps["decontaminate"]["targets"] == [str(evals)]
    assert steps["near"]["params"]["bands"] == 14
    report = [json.loads(line) for line in open(manifest["report"]["path"])]
    assert {(r["step"], r["source"]) for r in report if r["step"] != "select"} == {
        ("exact", f"{data}:7"), ("near", f"{data}:8"), ("decontaminate", f"{data}:9")}
    assert "wrote" in capsys.readouterr().out


def test_cli_deita_by_a_score_field_keeps_the_best_diverse_rows(tmp_path):
    rows = [{"text": t, "score": s} for t, s in
            [("apples and pears", 1), ("the moon at night", 3), ("stock market news", 2)]]
    data, out = tmp_path / "d.jsonl", tmp_path / "o.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    run_cli([str(data), "--out", str(out), "--select", "2", "--score-field", "score"])
    assert [json.loads(line)["score"] for line in out.read_text().splitlines()] == [3, 2]
    step = json.loads((tmp_path / "o.jsonl.manifest.json").read_text())["steps"][-1]
    assert step["params"]["scores"] == "field:score"


def test_cli_uses_the_known_splits_of_a_train_file(tmp_path):
    from corral.data.splits import split_file
    rng = random.Random(5)
    rows = [chat_row(" ".join(words(rng, 20)), "ok") for _ in range(40)]
    (tmp_path / "d.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    split_file(str(tmp_path / "d.jsonl"), dev=0.2, unseen=0.2)
    held = [json.loads(line) for name in ("dev", "unseen")
            for line in (tmp_path / f"d.{name}.jsonl").read_text().splitlines()]
    train = tmp_path / "d.train.jsonl"
    train.write_text(train.read_text() + json.dumps(held[0]) + "\n" + json.dumps(held[-1]) + "\n")
    out = tmp_path / "clean.jsonl"
    run_cli([str(train), "--out", str(out), "--near", "off"])
    kept = [json.loads(line) for line in out.read_text().splitlines()]
    assert held[0] not in kept and held[-1] not in kept and len(kept) == 40 - len(held)
    report = [json.loads(line) for line in open(f"{out}.report.jsonl")]
    assert any(r["reason"] == "in a sealed unseen split" for r in report)


@pytest.mark.parametrize("argv,message", [
    (["missing.jsonl"], "data file not found"),
    (["empty.jsonl"], "has no rows"),
    (["data.jsonl", "--select", "50", "--select-method", "random"], "budget 50: there are 3"),
    (["data.jsonl", "--decontaminate", "gsm9k"], "unknown task 'gsm9k'"),
    (["data.jsonl", "--near", "1.5"], "--near takes a similarity"),
    (["data.jsonl", "--select", "2"], "deita ranks rows by score"),
])
def test_cli_mistakes_are_corral_errors(tmp_path, monkeypatch, argv, message):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "empty.jsonl").write_text("")
    (tmp_path / "data.jsonl").write_text("".join(json.dumps(chat_row(f"question {k}", "a"))
                                                 + "\n" for k in range(3)))
    with pytest.raises(CorralError, match=message):
        run_cli(argv + ["--out", "out.jsonl"])


def test_chunked_hashing_gives_the_same_answers(monkeypatch):
    from corral.curate import decontam
    rng = random.Random(6)
    rows = [" ".join(words(rng, k % 7 + 1)) for k in range(40)]  # short rows too
    rows += [rows[3] + " tail", rows[9]]
    items = [rows[5], " ".join(words(rng, 30)), rows[20] + " " + rows[21]]
    whole = (minhash.shingle_sets(rows, 5), overlaps(rows, items, n=4))
    monkeypatch.setattr(minhash, "TEXT_CHUNK", 3)
    monkeypatch.setattr(decontam, "TEXT_CHUNK", 3)
    chunked = (minhash.shingle_sets(rows, 5), overlaps(rows, items, n=4))
    for a, b in zip([*whole[0], *whole[1]], [*chunked[0], *chunked[1]]):
        assert np.array_equal(a, b)


def test_semantic_decontamination_catches_a_paraphrase_that_ngrams_miss():
    from corral.curate.decontam import EvalItem, decontaminate, decontaminate_semantic
    item = EvalItem("t:1", "Janet's ducks lay 16 eggs per day. She eats three for breakfast "
                    "and sells the rest for $2 each. How much does she make every day?", "t")
    paraphrase = chat_row("Consider the following. Every morning the woman eats three of the "
                          "16 eggs her ducks lay daily and sells the remainder at $2 apiece. "
                          "What does she earn per day?", "18")
    other = chat_row("A train leaves at 3 pm and travels 60 miles per hour. How far has it "
                     "gone by 5 pm?", "120")
    assert len(decontaminate([paraphrase, other], [item], ngram=8).kept) == 2  # n-grams miss it
    result = decontaminate_semantic([paraphrase, other], [item], 0.8)
    assert result.kept == [other] and result.removed[0].match == "t:1"
    assert result.params["targets"] == ["t"] and result.removed[0].score >= 0.8
    with pytest.raises(CorralError, match="cosine"):
        decontaminate_semantic([other], [item], 1.5)
