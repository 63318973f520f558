"""Constitutional AI: the constitution file (every mistake at its file:line), SL-CAI's
critique-and-revise protocol round by round on scripted models, RL-CAI's consistent-only
preference rows, resuming a killed or failing job without redoing finished rows, and the
command end to end on the tiny model."""
import argparse
import json
import re
from pathlib import Path

import pytest

from corral.cli.constitutional import add_parser
from corral.core.errors import CorralError
from corral.core.records import Item, Message
from corral.feedback.constitution import default_path, load_constitution
from corral.feedback.constitutional import prompt_rows, rl_cai, sl_cai
from corral.feedback.judge import Judge
from corral.infer.engine import Generation, SamplingParams
from corral.infer.remote import Usage
from corral.testing import save_tiny


class Scripted:
    """A generator whose replies are reply(conversation) (a text, a list of texts for n
    samples, or an Exception to return); a text ending in '...' was cut at max_new_tokens.
    `batches` counts chat calls."""

    def __init__(self, reply, name="scripted"):
        self.reply, self.name, self.usage = reply, name, Usage()
        self.calls, self.batches, self.seen = 0, 0, []

    def identity(self):
        return {"kind": "scripted", "name": self.name}

    def chat(self, conversations, params=None, *, return_errors=False):
        params = params or SamplingParams()
        self.batches += 1
        self.calls += len(conversations)
        out = []
        for conv in conversations:
            self.seen.append(conv)
            text = self.reply(conv)
            if isinstance(text, Exception):
                out.append(text)
                continue
            texts = text if isinstance(text, list) else [text] * params.n
            out.append([Generation(t, [1], [0.0], "length" if t.endswith("...") else "stop",
                                   0, j) for j, t in enumerate(texts)])
        return out


def last(conv) -> str:
    return conv[-1]["content"]


def rows_of(*questions):
    return prompt_rows([Item((Message("user", q),), {}, f"p:{k}") for k, q in
                        enumerate(questions)])


# ---------------------------------------------------------------- the constitution file
def test_a_text_constitution_reads_names_comments_and_list_marks(tmp_path):
    path = tmp_path / "c.md"
    path.write_text("# Format\n\ndirect: Answer the question first.\n- Be concise: no filler."
                    "\n  # indented comment\n1. final_answer: End with the answer.\n")
    c = load_constitution(path)
    assert [(p.name, p.line) for p in c.principles] == [
        ("direct", 3), ("principle-2", 4), ("final_answer", 6)]
    assert c.principles[1].text == "Be concise: no filler."
    assert "Answer the question first." in c.principles[0].critique
    assert "Answer the question first." in c.principles[0].revision
    assert len(c.sha256) == 64 and c.summary()["principles"][2]["name"] == "final_answer"


def test_a_jsonl_constitution_takes_request_pairs(tmp_path):
    path = tmp_path / "c.jsonl"
    path.write_text(json.dumps({"name": "harm", "critique": "Say how it is harmful.",
                                "revision": "Remove the harm."}) + "\n\n" +
                    json.dumps({"text": "Be brief."}) + "\n")
    c = load_constitution(path)
    assert [p.name for p in c.principles] == ["harm", "principle-2"]
    assert c.principles[0].text == "Say how it is harmful." and \
        c.principles[0].revision == "Remove the harm."
    assert c.principles[1].critique.endswith("Be brief.")


@pytest.mark.parametrize("name, text, where, what", [
    ("c.txt", "# only a comment\n\n", None, "has no principles"),
    ("c.txt", "concise: Be brief.\nconcise: Be short.\n", 2, "already used on line 1"),
    ("c.txt", "Be direct.\nconcise:\n", 2, "'concise' is only a name"),
    ("c.txt", "Be direct.\n\nconcise\n", 3, "'concise' is only a name"),
    ("c.jsonl", '{"text": "a"}\n{"text": "b"\n', 2, "not valid JSON"),
    ("c.jsonl", '{"text": "a", "weight": 2}\n', 1, "unknown key(s) ['weight']"),
    ("c.jsonl", '["Be brief."]\n', 1, "must be a JSON object"),
    ("c.jsonl", '{"name": "x"}\n', 1, "has no 'text'"),
    ("c.jsonl", '{"text": ""}\n', 1, "text must be non-empty text"),
    ("c.jsonl", '{"name": "two words", "text": "a"}\n', 1, "must be one word"),
    ("c.jsonl", '{"name": "a", "text": "x"}\n{"name": "a", "text": "y"}\n', 2, "already used"),
])
def test_every_constitution_mistake_names_its_file_and_line(tmp_path, name, text, where, what):
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(CorralError) as err:
        load_constitution(path)
    message = str(err.value)
    assert what in message and str(path) in message
    if where is not None:
        assert f"{path}:{where}:" in message
    with pytest.raises(CorralError, match="not found.*--constitution"):
        load_constitution(tmp_path / "missing.txt")


def test_the_default_constitution_ships_and_loads():
    c = load_constitution(None)
    assert Path(c.path) == default_path() and len(c.principles) >= 5
    assert len({p.name for p in c.principles}) == len(c.principles)
    assert {"concise", "final-answer"} <= {p.name for p in c.principles}
    pyproject = (Path(__file__).parents[1] / "pyproject.toml").read_text()
    assert '"assets/*.txt"' in pyproject.split("[tool.setuptools.package-data]")[1]


# ---------------------------------------------------------------- SL-CAI
def version_policy(conv):
    """Answers v0 (or v2 for a question that says 'easy'); a revision adds one version."""
    text = last(conv)
    if "<critique>" in text:
        response = text.split("<response>\n")[1].split("\n</response>")[0]
        return f"v{int(response[1]) + 1} " + response[3:]
    return ("v2 " if "easy" in text else "v0 ") + "answer"


def version_critic(conv):
    """Satisfied from version 2 on; otherwise names the version it read."""
    response = last(conv).split("<response>\n")[1].split("\n</response>")[0]
    return "NO ISSUES" if response.startswith("v2") else f"Still only {response[:2]}."


@pytest.fixture
def constitution(tmp_path):
    path = tmp_path / "c.txt"
    path.write_text("brief: Be brief.\ndirect: Answer directly.\nexact: Follow the format.\n")
    return load_constitution(path)


def test_sl_cai_critiques_under_drawn_principles_revises_and_stops_when_satisfied(
        tmp_path, constitution):
    policy, critic = Scripted(version_policy, "policy"), Scripted(version_critic, "critic")
    rows = rows_of("hard one", "easy one", "another hard one")
    out = tmp_path / "sl.jsonl"
    counts = sl_cai(policy, critic, constitution, rows, out, rounds=3, seed=1, log=lambda m: 0)
    done = [json.loads(line) for line in out.read_text().splitlines()]
    hard, easy = done[0]["provenance"], done[1]["provenance"]
    assert done[0]["messages"] == rows[0]["messages"] + [
        {"role": "assistant", "content": "v2 answer"}]
    assert hard["original"] == "v0 answer" and hard["revisions"] == ["v1 answer", "v2 answer"]
    assert hard["critiques"] == ["Still only v0.", "Still only v1.", "NO ISSUES"]
    assert hard["rounds"] == 2 and hard["satisfied"] and len(hard["principles"]) == 3
    assert easy["rounds"] == 0 and easy["satisfied"] and easy["original"] == "v2 answer"
    assert hard["critic"] == {"kind": "scripted", "name": "critic"}
    assert counts["revised"] == 2 and counts["satisfied_at_round_0"] == 1
    # Each critique asked under the principle its provenance names; each revision shows the
    # critique it answers and asks that principle's revision request.
    asked = [c for c in critic.seen if "hard one" in last(c) and "another" not in last(c)]
    for conv, name in zip(asked, hard["principles"]):
        assert constitution.by_name(name).critique in last(conv)
    revisions = [c for c in policy.seen if "<critique>" in last(c) and "hard one" in last(c)
                 and "another" not in last(c)]
    for conv, name, critique in zip(revisions, hard["principles"], hard["critiques"]):
        assert f"<critique>\n{critique}\n</critique>" in last(conv)
        assert constitution.by_name(name).revision in last(conv)
    # One chat call per step for the whole batch: the first answers, then per round one
    # critique call and one revision call (round 3: only critiques, all satisfied).
    assert policy.batches == 3 and critic.batches == 3
    manifest = json.loads(Path(f"{out}.manifest.json").read_text())
    assert manifest["constitution"]["sha256"] == constitution.sha256
    assert manifest["counts"]["revised"] == 2 and manifest["rounds"] == 3
    assert manifest["generator"]["name"] == "policy" and "critic" in manifest["usage"]


def test_the_principles_drawn_repeat_with_the_seed(tmp_path, constitution):
    def principles(seed, out):
        sl_cai(Scripted(version_policy), Scripted(lambda c: "Too long."), constitution,
               rows_of(*[f"q{k}" for k in range(6)]), tmp_path / out, rounds=3, seed=seed,
               log=lambda m: 0)
        return [json.loads(line)["provenance"]["principles"]
                for line in (tmp_path / out).read_text().splitlines()]

    first = principles(0, "a.jsonl")
    assert first == principles(0, "b.jsonl")
    assert first != principles(7, "c.jsonl")
    assert all(len(p) == 3 for p in first)


def test_a_killed_sl_job_resumes_without_redoing_finished_rows(tmp_path, constitution):
    class Killed(Scripted):
        def chat(self, conversations, params=None, *, return_errors=False):
            if self.batches == 2:  # the third call: the second batch's first answers
                raise KeyboardInterrupt
            return super().chat(conversations, params, return_errors=return_errors)

    rows = rows_of(*[f"q{k}" for k in range(6)])
    out = tmp_path / "sl.jsonl"
    critic = Scripted(lambda c: "Too long.")
    with pytest.raises(KeyboardInterrupt):
        sl_cai(Killed(version_policy), critic, constitution, rows, out, rounds=1,
               batch_size=2, log=lambda m: 0)
    partial = tmp_path / "sl.rounds.jsonl.partial"
    assert len(partial.read_text().splitlines()) == 2  # batch 1 was saved
    again = Scripted(version_policy)
    counts = sl_cai(again, critic, constitution, rows, out, rounds=1, batch_size=2,
                    log=lambda m: 0)
    asked = {last(c) for c in again.seen if "<critique>" not in last(c)}
    assert asked == {f"q{k}" for k in range(2, 6)}  # q0, q1 were not answered again
    assert counts["reused"] == 2 and counts["written"] == 6
    assert [json.loads(x)["provenance"]["source"] for x in out.read_text().splitlines()] == \
        [f"p:{k}" for k in range(6)]


def test_a_failing_endpoint_loses_no_row_and_retry_redoes_only_the_failed(tmp_path,
                                                                         constitution):
    def flaky(conv):  # the revision of q1 fails, like an endpoint's 503
        if "<critique>" in last(conv) and "q1" in last(conv):
            return RuntimeError("503 Service Unavailable")
        return version_policy(conv)

    rows, out = rows_of("q0", "q1", "q2"), tmp_path / "sl.jsonl"
    critic = Scripted(lambda c: "Too long.")
    counts = sl_cai(Scripted(flaky), critic, constitution, rows, out, rounds=1,
                    log=lambda m: 0)
    assert counts["failed"] == 1 and counts["written"] == 2
    failed_file = tmp_path / "sl.rounds.jsonl.failed.jsonl"
    failed = [json.loads(x) for x in failed_file.read_text().splitlines()]
    assert failed[0]["row"]["source"] == "p:1" and "503" in failed[0]["error"]
    rerun = Scripted(version_policy)
    sl_cai(rerun, critic, constitution, rows, out, rounds=1, log=lambda m: 0)
    assert rerun.calls == 0  # a failed row waits for --retry-failed
    counts = sl_cai(rerun, critic, constitution, rows, out, rounds=1, retry_failed=True,
                    log=lambda m: 0)
    assert rerun.calls == 2 and counts["written"] == 3  # q1's answer and its revision only
    assert not failed_file.exists()


def test_a_job_whose_every_prompt_failed_names_the_first_error(tmp_path, constitution):
    down = Scripted(lambda conv: ConnectionRefusedError("connection refused at :9"))
    with pytest.raises(CorralError, match=r"every prompt failed \(2 of 2.*connection refused"):
        sl_cai(down, Scripted(lambda c: "Too long."), constitution, rows_of("q0", "q1"),
               tmp_path / "sl.jsonl", rounds=1, log=lambda m: 0)
    assert not (tmp_path / "sl.jsonl").exists()  # nothing half-written


def test_responses_cut_at_max_new_tokens_are_left_out_unless_kept(tmp_path, constitution):
    policy = Scripted(lambda c: "cut..." if "long" in last(c) else "v0 fine")
    critic = Scripted(lambda c: "NO ISSUES")
    counts = sl_cai(policy, critic, constitution, rows_of("long", "short"),
                    tmp_path / "a.jsonl", rounds=1, log=lambda m: 0)
    assert counts["written"] == 1 and counts["dropped_truncated"] == 1
    counts = sl_cai(policy, critic, constitution, rows_of("long", "short"),
                    tmp_path / "a.jsonl", rounds=1, keep_truncated=True, log=lambda m: 0)
    assert counts["written"] == 2 and policy.calls == 2  # the job's rows were reused
    with pytest.raises(CorralError, match="no row to write.*1 cut at max_new_tokens"):
        sl_cai(policy, critic, constitution, rows_of("long"), tmp_path / "b.jsonl",
               log=lambda m: 0)


# ---------------------------------------------------------------- RL-CAI
def judge_reply(conv):
    """Prefers the response with 'good' in it, wherever it is shown, except on a question
    about positions, where whatever is shown first wins."""
    text = conv[0]["content"]
    if "position" in text:
        return "[[A]]"
    a = text.split("<response_a>\n")[1].split("</response_a>")[0]
    b = text.split("<response_b>\n")[1].split("</response_b>")[0]
    return "[[A]]" if "good" in a and "good" not in b else \
        "[[B]]" if "good" in b and "good" not in a else "[[C]]"


def test_rl_cai_keeps_consistent_verdicts_and_counts_what_it_drops(tmp_path, constitution):
    policy = Scripted(lambda c: ["same", "same"] if "twin" in last(c) else
                      ["good but cut...", "meh"] if "long" in last(c) else
                      ["meh answer", "good answer"])
    judge_model = Scripted(judge_reply, "judge")
    judge = Judge(judge_model, reasoning=False)
    rows = rows_of("which?", "position?", "twin?", "long?") + prompt_rows(
        [Item((Message("user", "given?"),), {"responses": ["good one", "good two"]}, "g:1")])
    out = tmp_path / "rl.jsonl"
    counts = rl_cai(policy, judge, constitution, rows, out, params=SamplingParams(
        temperature=0.8), log=lambda m: 0)
    prefs = [json.loads(x) for x in out.read_text().splitlines()]
    assert len(prefs) == 1 and prefs[0]["prompt"] == rows[0]["messages"]
    assert prefs[0]["chosen"] == [{"role": "assistant", "content": "good answer"}]
    assert prefs[0]["rejected"] == [{"role": "assistant", "content": "meh answer"}]
    prov = prefs[0]["provenance"]
    assert prov["outcome"] == "b" and prov["judge"] == judge.identity()
    assert prov["principle"] in {p.name for p in constitution.principles}
    assert counts["outcome_inconsistent"] == 1 and counts["outcome_tie"] == 1
    assert counts["outcome_identical"] == 1 and counts["outcome_truncated"] == 1
    assert counts["dropped"] == 4
    assert policy.calls == 4  # the row that brought its responses was not sampled
    assert judge_model.calls == 6  # three pairs, both orders; identical or cut: not judged
    principle = constitution.by_name(prov["principle"]).text
    assert any(f"Judge by this principle: {principle}" in c[0]["content"]
               and "which?" in c[0]["content"] for c in judge_model.seen)
    manifest = json.loads(Path(f"{out}.manifest.json").read_text())
    assert manifest["counts"]["dropped"] == 4 and manifest["judge"]["model"]["name"] == "judge"
    with pytest.raises(CorralError, match="no pair got a consistent verdict"):
        rl_cai(policy, judge, constitution, rows_of("position?"), tmp_path / "none.jsonl",
               log=lambda m: 0)
    with pytest.raises(CorralError, match="temperature above 0"):
        rl_cai(policy, judge, constitution, rows, out, params=SamplingParams(temperature=0))


# ---------------------------------------------------------------- the command
@pytest.fixture
def tiny(tmp_path, monkeypatch):
    monkeypatch.setenv("CORRAL_HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    (tmp_path / "prompts.jsonl").write_text("".join(json.dumps(
        {"messages": [{"role": "user", "content": f"what is {i}+1?"}]}) + "\n"
        for i in range(3)))
    return str(save_tiny(tmp_path / "tiny"))


def command(*argv):
    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["constitutional", *argv])
    args.func(args)


def test_the_command_writes_sft_rows_with_the_tiny_model(tiny, tmp_path):
    argv = ["--model", tiny, "--prompts", "prompts.jsonl", "--rounds", "1",
            "--max-new-tokens", "6", "--out", "cai.jsonl"]
    with pytest.raises(CorralError, match="3 cut at max_new_tokens.*--keep-truncated"):
        command(*argv)  # six random tokens never finish a response
    command(*argv, "--keep-truncated")  # the same rows, from the job's cache
    manifest = json.loads((tmp_path / "cai.jsonl.manifest.json").read_text())
    counts = manifest["counts"]
    assert counts["rows_in"] == 3 and counts["written"] + counts["failed"] == 3
    assert manifest["constitution"]["path"] == str(default_path())
    assert manifest["critic"] == manifest["generator"]  # one model, loaded once
    for line in (tmp_path / "cai.jsonl").read_text().splitlines():
        prov = json.loads(line)["provenance"]
        assert len(prov["principles"]) == 1 and "original" in prov


def test_the_command_stops_on_mistakes_before_loading_a_model(tmp_path):
    (tmp_path / "bad.txt").write_text("brief: Be brief.\nbrief: Be short.\n")
    (tmp_path / "p.jsonl").write_text('{"prompt": "hi"}\n')
    base = ["--model", str(tmp_path / "no-such-model"), "--out", str(tmp_path / "o.jsonl")]
    with pytest.raises(CorralError, match=re.escape(f"{tmp_path / 'bad.txt'}:2:")):
        command(*base, "--prompts", str(tmp_path / "p.jsonl"), "--constitution",
                str(tmp_path / "bad.txt"))
    with pytest.raises(CorralError, match="exactly one of --task NAME"):
        command(*base)
    with pytest.raises(CorralError, match="--split unseen"):
        command(*base, "--task", "ifeval-like", "--split", "unseen")
    with pytest.raises(CorralError, match="temperature above 0"):
        command(*base, "--prompts", str(tmp_path / "p.jsonl"), "--mode", "rl",
                "--temperature", "0")
    with pytest.raises(CorralError, match="give a .jsonl path"):
        command("--prompts", "p.jsonl", "--out", "o.txt")


# ---------------------------------------------------------------- one critique rule
CRITIC_REPLIES = ["NO ISSUES", "  no issues. ", "Looks fine.\nNO ISSUES.", "",
                  "No issues, except the last line", "No issues, but check units",
                  "There are NO ISSUES with style, but the sum is wrong.", "The sum is wrong."]


@pytest.mark.parametrize("reply", CRITIC_REPLIES)
def test_self_refine_and_sl_cai_agree_on_the_same_critic_reply(tmp_path, reply):
    """One rule (judge_prompts.satisfied) reads the critic for both: the same reply stops
    self-refine's item exactly when it stops SL-CAI's row."""
    from corral.graders.judge_prompts import CRITIQUE_CLOSING, satisfied
    from corral.strategies.refine import CRITIQUE_PROMPT, SelfRefine, is_satisfied

    policy = Scripted(lambda c: "an answer", "policy")
    critic = Scripted(lambda c: reply, "critic")
    refined = SelfRefine(1, critic=critic).run(
        [Item((Message("user", "question"),), {}, "p:0")], policy)
    refine_says = refined[0].trace[1]["satisfied"]
    out = tmp_path / "sl.jsonl"
    sl_cai(policy, critic, load_constitution(None), rows_of("question"), out, rounds=1,
           keep_truncated=True, log=lambda m: 0)
    sl_says = json.loads(out.read_text().splitlines()[0])["provenance"]["satisfied"]
    assert refine_says == sl_says == is_satisfied(reply) == satisfied(reply)
    # and both critics were shown the same closing instruction
    assert CRITIQUE_PROMPT.endswith(CRITIQUE_CLOSING)
    assert last(critic.seen[-1]).endswith(CRITIQUE_CLOSING)
