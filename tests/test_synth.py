"""Synthetic data: rejection sampling, STaR, majority-vote distillation and self-instruct,
checked against scripted generators whose answers we know, so every count is arithmetic."""
import json
import re

import pytest

from corral.core.errors import CorralError
from corral.core.records import Item, Message
from corral.graders.rules import NumericAnswer
from corral.infer.engine import Generation, SamplingParams
from corral.infer.remote import Usage
from corral.synth.recipes import Recipe, synthesize
from corral.synth.sampling import Teacher, select
from corral.synth.self_instruct import Filters, parse_tasks, rouge_l, self_instruct, words
from corral.tasks import Task


class Scripted:
    """A generator answering from a function of the last user message (and sample index)."""

    def __init__(self, answer):
        self.answer, self.usage, self.calls, self.seen = answer, Usage(), 0, []

    def identity(self):
        return {"kind": "scripted"}

    def chat(self, conversations, params=None, *, return_errors=False):
        params = params or SamplingParams()
        self.calls += 1
        out = []
        for k, conv in enumerate(conversations):
            self.seen.append(conv)
            text = conv[-1]["content"]
            out.append([Generation(self.answer(text, j), [1, 2], [0.0, 0.0], "stop", k, j)
                        for j in range(params.n)])
            self.usage.requests += 1
            self.usage.completion_tokens += 2 * params.n
        return out


def task(n=6):
    items = [Item((Message("user", f"What is {i} + {i}?"),), {"answer": str(2 * i)},
                  source=f"t:{i + 1}") for i in range(n)]
    return Task("toy", items, NumericAnswer())


def value(text):
    a = int(re.search(r"What is (\d+)", text).group(1))
    return a


PARAMS = SamplingParams(n=4, temperature=1.0, max_new_tokens=16, seed=0)


def test_rejection_keeps_passing_samples_capped_and_deduplicated(tmp_path):
    # item i: sample j is right when j < i % 3 (so items with i%3==0 never pass)
    gen = Scripted(lambda t, j: f"#### {2 * value(t) if j < value(t) % 3 else -1}")
    stats = synthesize(gen, task(), str(tmp_path / "rs.jsonl"), PARAMS,
                       Recipe("rejection", keep=2), grader=NumericAnswer(), log=lambda *_: None)
    rows = [json.loads(x) for x in (tmp_path / "rs.jsonl").read_text().splitlines()]
    # passing samples per item i=0..5: 0,1,2,0,1,2 -> 6 passed; all passing texts of an item
    # are identical, so dedup leaves one per item that has a pass: 4 rows
    assert stats["passed"] == 6 and stats["samples"] == 24 and len(rows) == 4
    assert stats["prompts_with_a_pass"] == 4 and stats["pass_rate"] == 6 / 24
    assert rows[0]["messages"][0] == {"role": "user", "content": "What is 1 + 1?"}
    assert rows[0]["messages"][1]["content"] == "#### 2"
    assert rows[0]["provenance"]["source"] == "t:2" and rows[0]["provenance"]["round"] == 1
    manifest = json.loads((tmp_path / "rs.jsonl.manifest.json").read_text())
    assert manifest["counts"]["kept"] == 4 and manifest["kind"] == "synth-rejection"
    assert manifest["sources"][0]["counts"]["generated"] == 6  # the samples job's manifest


def test_a_rerun_reuses_every_finished_prompt(tmp_path):
    gen = Scripted(lambda t, j: f"#### {2 * value(t)}")
    out = str(tmp_path / "rs.jsonl")
    synthesize(gen, task(), out, PARAMS, Recipe("rejection"), grader=NumericAnswer(),
               log=lambda *_: None)
    first, calls = (tmp_path / "rs.jsonl").read_text(), gen.calls
    synthesize(gen, task(), out, PARAMS, Recipe("rejection"), grader=NumericAnswer(),
               log=lambda *_: None)
    assert gen.calls == calls and (tmp_path / "rs.jsonl").read_text() == first
    synthesize(gen, task(), out, SamplingParams(n=2, temperature=1.0, max_new_tokens=16),
               Recipe("rejection"), grader=NumericAnswer(), log=lambda *_: None)
    assert gen.calls > calls  # other sampling parameters: other cache keys


def test_star_rationalises_with_the_hint_and_marks_it(tmp_path):
    gen = Scripted(lambda t, j: f"#### {2 * value(t)}" if "Hint" in t else "#### -1")
    stats = synthesize(gen, task(3), str(tmp_path / "s.jsonl"), PARAMS,
                       Recipe("rejection", star=True), grader=NumericAnswer(),
                       log=lambda *_: None)
    rows = [json.loads(x) for x in (tmp_path / "s.jsonl").read_text().splitlines()]
    assert len(rows) == 3 and all(r["provenance"]["rationalised"] for r in rows)
    assert all("Hint" not in r["messages"][0]["content"] for r in rows)  # student prompt
    assert stats["samples"] == 3 * 4 * 2


def test_majority_vote_distills_the_consensus(tmp_path):
    # 3 of 4 samples say the right answer for even items, 3 of 4 a wrong one for odd items
    def answer(t, j):
        right = value(t) % 2 == 0
        return f"#### {2 * value(t) if (j < 3) == right else 99}"
    picks, stats = select([{"source": "a", "samples": [
        {"text": answer("What is 2", j), "finish": "stop", "answer": None} for j in range(4)]}],
        "majority")
    assert picks[0]["votes"] == 0.75 and picks[0]["sample"]["text"] == "#### 4"
    teacher = Teacher(system_prompt="Be careful.", few_shot=(("What is 9 + 9?", "#### 18"),))
    gen = Scripted(answer)
    stats = synthesize(gen, task(4), str(tmp_path / "d.jsonl"), PARAMS,
                       Recipe("distill", rule="majority", teacher=teacher),
                       grader=NumericAnswer(), log=lambda *_: None)
    assert stats["kept"] == 4 and stats["majority_correct"] == 2
    assert gen.seen[0][0] == {"role": "system", "content": "Be careful."}
    assert gen.seen[0][1]["content"] == "What is 9 + 9?"  # the teacher saw the shots
    stats = synthesize(Scripted(answer), task(4), str(tmp_path / "d2.jsonl"), PARAMS,
                       Recipe("distill", rule="majority", require_pass=True),
                       grader=NumericAnswer(), log=lambda *_: None)
    assert stats["kept"] == 2  # the wrong consensus is dropped by the grader


def test_cut_samples_never_count():
    samples = [{"source": "a", "samples": [
        {"text": "#### 4", "finish": "length", "passed": True, "score": 1.0},
        {"text": "#### 4 ", "finish": "stop", "passed": True, "score": 1.0},
        {"text": "#### 4", "finish": "stop", "passed": True, "score": 1.0}]}]
    picks, _ = select(samples, "pass", keep=5)
    assert len(picks) == 1 and picks[0]["sample"]["finish"] == "stop"


def test_rejection_without_a_grader_and_nothing_kept_are_clear(tmp_path):
    with pytest.raises(CorralError, match="needs a grader"):
        synthesize(Scripted(lambda t, j: ""), task(), str(tmp_path / "x.jsonl"), PARAMS,
                   Recipe("rejection"), grader=None)
    with pytest.raises(CorralError, match="no sample was kept"):
        synthesize(Scripted(lambda t, j: "#### -5"), task(), str(tmp_path / "x.jsonl"), PARAMS,
                   Recipe("rejection"), grader=NumericAnswer(), log=lambda *_: None)
    assert not (tmp_path / "x.jsonl").exists()


# ---------------------------------------------------------------------- self-instruct
def test_rouge_l_by_hand():
    a, b = words("the cat sat on the mat"), words("the cat lay on a mat")
    # LCS = the cat on mat = 4; P = 4/6, R = 4/6 -> F = 2/3
    assert rouge_l(a, b) == pytest.approx(2 / 3)
    assert rouge_l(a, a) == 1.0 and rouge_l(a, []) == 0.0


def test_parse_numbered_continuations():
    assert parse_tasks("Write a poem about rain.\n4. List three fruits.\n5) Sum 2 and 3.", 3) \
        == ["Write a poem about rain.", "List three fruits.", "Sum 2 and 3."]


def test_self_instruct_filters_and_resumes(tmp_path):
    (tmp_path / "seeds.jsonl").write_text("".join(json.dumps({"instruction": t}) + "\n" for t in [
        "Write a haiku about the sea.", "Explain photosynthesis to a child.",
        "Write a haiku about the sea."]))  # a duplicate seed counts once
    replies = iter([
        "Write a haiku about the ocean.\n"  # ROUGE-L with a seed: 5/6 -> dropped
        "4. Draw a picture of a cat.\n"  # blocklist
        "5. List three prime numbers greater than ten.\n"
        "6. Ok\n",  # too short
        "Translate 'good morning' into French.\n"
        "5. List three prime numbers greater than ten.\n",  # duplicate of a kept one
    ])

    def answer(text, j):
        if text.startswith("Come up"):
            return next(replies)
        return f"An answer to: {text}"
    gen = Scripted(answer)
    out = str(tmp_path / "si.jsonl")
    counts = self_instruct(gen, str(tmp_path / "seeds.jsonl"), out, 2,
                           SamplingParams(temperature=1.0, max_new_tokens=64), Filters(),
                           log=lambda *_: None)
    rows = [json.loads(x) for x in open(out)]
    assert [r["messages"][0]["content"] for r in rows] == [
        "List three prime numbers greater than ten.", "Translate 'good morning' into French."]
    removed = counts["removed"]
    assert removed["blocklisted word 'picture'"] == 1 and removed["exact duplicate"] == 1
    assert any(k.startswith("ROUGE-L") for k in removed) and any("length" in k for k in removed)
    calls = gen.calls
    self_instruct(gen, str(tmp_path / "seeds.jsonl"), out, 2, SamplingParams(temperature=1.0,
                  max_new_tokens=64), Filters(), log=lambda *_: None)
    assert gen.calls == calls  # pool and answers came back from disk


def test_bad_seed_files_are_clear(tmp_path):
    (tmp_path / "one.jsonl").write_text(json.dumps({"instruction": "a b c"}) + "\n")
    (tmp_path / "bad.jsonl").write_text(json.dumps({"text": "x"}) + "\n")
    for name, needle in (("one", "distinct seed"), ("bad", "bad.jsonl:1: no 'instruction'")):
        with pytest.raises(CorralError, match=needle):
            self_instruct(Scripted(lambda t, j: ""), str(tmp_path / f"{name}.jsonl"),
                          str(tmp_path / "o.jsonl"), 2, SamplingParams(), Filters())


# ------------------------------------------------------------------- CLI, tiny model
def test_cli_distill_and_rejection_on_a_tiny_model(tmp_path, monkeypatch, capsys):
    from corral.cli.app import main
    from corral.testing import save_tiny

    monkeypatch.setenv("CORRAL_HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    tiny = str(save_tiny(tmp_path / "tiny"))
    (tmp_path / "p.jsonl").write_text("".join(json.dumps(
        {"messages": [{"role": "user", "content": f"q{i}"}]}) + "\n" for i in range(3)))
    argv = ["synth", "distill", "--model", tiny, "--task", "p.jsonl", "--max-new-tokens", "4",
            "--out", "d.jsonl"]
    # a random tiny model never stops within 4 tokens: every sample is cut, none is kept
    assert main(argv) == 2 and "no sample was kept" in capsys.readouterr().err
    samples = [json.loads(x) for x in open("d.samples.jsonl")]
    assert len(samples) == 3 and all(s["samples"][0]["finish"] == "length" for s in samples)
    manifest = json.loads(open("d.samples.jsonl.manifest.json").read())
    assert manifest["model"]["kind"] == "local" and manifest["usage"]["completion_tokens"] == 12
    assert not (tmp_path / "d.jsonl").exists()
    assert main(["synth", "rejection", "--model", tiny, "--task", "p.jsonl",
                 "--out", "r.jsonl"]) == 2
    assert "--task-grader" in capsys.readouterr().err
    assert main(["synth", "rejection", "--model", tiny, "--task", "arithmetic", "--split",
                 "unseen", "--out", "r.jsonl"]) == 2
    assert "leak" in capsys.readouterr().err


# ------------------------------------------------------------------ ReST-EM rounds
def test_rest_em_samples_from_the_latest_student_and_stops_when_dev_stalls(tmp_path):
    from corral.methods.rest_em import RestEM

    dev = {"base": 0.10, "s1": 0.20, "s2": 0.25, "s3": 0.24}
    calls = []

    def sample(model, r):
        calls.append(("sample", model, r))
        return f"d{r}"

    def train(data, start, r):
        calls.append(("train", data, start))
        return f"s{r}"
    loop = RestEM(rounds=5, base="base")
    history = loop.run(sample, train, dev.__getitem__, log=lambda *_: None,
                       record=str(tmp_path / "rounds.json"))
    assert [h.dev for h in history] == [0.10, 0.20, 0.25, 0.24]  # round 3 fell: stop
    assert calls[2] == ("sample", "s1", 2) and calls[3] == ("train", "d2", "base")
    assert loop.best().model == "s2"
    saved = json.loads((tmp_path / "rounds.json").read_text())
    assert saved["best"]["round"] == 2 and len(saved["rounds"]) == 4
    calls.clear()
    RestEM(rounds=2, base="base", from_last=True).run(sample, train, dev.__getitem__,
                                                      log=lambda *_: None)
    assert calls[3] == ("train", "d2", "s1")  # STaR-style: continue from the last student
