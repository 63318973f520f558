"""`corral prompt search` with a rigged generator: the search finds the program the model
answers best with, stays within its call budget, resumes a killed search without sending a
call twice (the same standings as an uninterrupted one), never draws demonstrations from dev
or unseen items (the split seal included), grades the winner on unseen paired with zero-shot
(checked by hand), and refuses bad options before any call."""
import json
import re

import pytest

from corral.core.errors import CorralError
from corral.infer.engine import Generation
from corral.infer.generators import Generator
from corral.prompt.commands import PromptSearchOptions, prompt_search
from corral.prompt.search import _cost, schedule


class Rigged(Generator):
    """Right when shown at least `needs` demonstrations (assistant turns), else right only on
    even first operands; dies after `die_after` calls (a killed search)."""

    def __init__(self, needs=2, die_after=None):
        self.needs, self.die_after, self.calls = needs, die_after, 0

    def identity(self):
        return {"model": "rigged"}

    def chat(self, conversations, params=None, *, return_errors=False):
        out = []
        for conv in conversations:
            if self.die_after is not None and self.calls >= self.die_after:
                raise KeyboardInterrupt("killed")
            self.calls += 1
            a, op, b = re.search(r"What is (\d+) ([-+*]) (\d+)", conv[-1]["content"]).groups()
            value = eval(f"{a}{op}{b}")  # noqa: S307 - digits and one operator
            shots = sum(m["role"] == "assistant" for m in conv)
            right = shots >= self.needs or int(a) % 2 == 0
            out.append([Generation(f"#### {value if right else value + 1}", [1, 2],
                                   [0.0, 0.0], "stop", 0, 0)])
        return out


def opts(tmp_path, **kw):
    base = dict(task="arithmetic", budget=120, limit=24, unseen_limit=20, choose="first,random",
                k="0,1,2", root=str(tmp_path / "runs"), bootstrap=4)
    return PromptSearchOptions(**{**base, **kw})


def test_the_search_finds_what_the_model_needs_within_budget(tmp_path):
    model = Rigged(needs=2)
    result = prompt_search(opts(tmp_path), generator=model)
    assert result.winner["name"].startswith("2-shot")
    assert result.calls["search"] <= 120
    assert model.calls == sum(result.calls[k] for k in ("search", "bootstrap", "spread",
                                                          "unseen"))
    rows = [json.loads(r) for r in (result.run / "scores.jsonl").open()]
    assert len(rows) == model.calls  # every call kept once
    zero = next(s for s in result.standings if s["name"] == "zero-shot")
    assert zero["score"] < 1.0 and result.winner["score"] == 1.0
    saved = json.loads(result.program_path.read_text())
    assert len(saved["demos"]) == 2 and saved["made_by"]["dev"]["name"] == result.winner["name"]


def test_unseen_paired_difference_by_hand(tmp_path):
    from corral.tasks import get_task

    result = prompt_search(opts(tmp_path), generator=Rigged(needs=2))
    unseen = get_task("arithmetic", split="unseen").items[:20]
    even = [int(re.search(r"What is (\d+)", it.messages[-1].content)[1]) % 2 == 0
            for it in unseen]
    zero = sum(even) / 20  # zero-shot is right on even first operands; the winner always
    assert result.unseen["zero_shot"]["score"] == pytest.approx(zero, abs=1e-4)
    assert result.unseen["winner"]["score"] == 1.0
    assert result.unseen["paired"]["diff"] == pytest.approx(1 - zero, abs=1e-4)
    se = (zero * (1 - zero) / 19) ** 0.5  # the differences are 1 - even: sample std / sqrt(n)
    assert result.unseen["paired"]["stderr"] == pytest.approx(se, abs=1e-3)


def test_a_killed_search_resumes_without_repeating_a_call(tmp_path):
    whole = Rigged()
    expected = prompt_search(opts(tmp_path / "a"), generator=whole)
    with pytest.raises(KeyboardInterrupt):
        prompt_search(opts(tmp_path / "b"), generator=Rigged(die_after=70))
    again = Rigged()
    resumed = prompt_search(opts(tmp_path / "b"), generator=again)
    assert again.calls == whole.calls - 64  # the chunks written before the kill are reused
    assert resumed.standings == expected.standings and resumed.unseen == expected.unseen


def test_demonstrations_come_from_train_only(tmp_path):
    from corral.tasks import get_task

    result = prompt_search(opts(tmp_path, choose="first,random,bootstrap"),
                           generator=Rigged())
    held = {it.messages[-1].content for s in ("dev", "unseen")
            for it in get_task("arithmetic", split=s).items}
    shown = json.loads(result.program_path.read_text())["demos"]
    assert shown and not {d["input"] for d in shown} & held


def _file_task(tmp_path):
    """train: chat rows ending with the answer; dev and unseen: items with an answer field."""
    def row(i, train):
        user = {"role": "user", "content": f"What is {i} + 1?"}
        if train:
            return {"messages": [user, {"role": "assistant", "content": f"#### {i + 1}"}]}
        return {"messages": [user], "answer": str(i + 1)}

    files = {}
    for name, part in (("train", range(10)), ("dev", range(10, 20)), ("unseen", range(20, 30))):
        files[name] = tmp_path / f"{name}.jsonl"
        files[name].write_text("".join(json.dumps(row(i, name == "train")) + "\n"
                                       for i in part))
    return files


def test_a_train_file_holding_a_dev_question_is_refused(tmp_path):
    files = _file_task(tmp_path)
    leaky = tmp_path / "leaky.jsonl"
    leaky.write_text(files["train"].read_text() + json.dumps(
        {"messages": [{"role": "user", "content": "What is 13 + 1?"},
                      {"role": "assistant", "content": "#### 14"}]}) + "\n")
    with pytest.raises(CorralError, match=r"holds .*dev.jsonl:4 of the dev split"):
        prompt_search(PromptSearchOptions(task=str(files["dev"]), grader="numeric",
                                          train=str(leaky), unseen=str(files["unseen"]),
                                          root=str(tmp_path / "runs"), choose="first"),
                      generator=Rigged())


def test_a_sealed_unseen_file_as_the_pool_is_refused(tmp_path, monkeypatch):
    from corral.data.splits import split_file

    monkeypatch.setenv("CORRAL_HOME", str(tmp_path / "home"))
    files = _file_task(tmp_path)
    split_file(str(files["train"]), dev=0.0, unseen=0.5, out_dir=str(tmp_path / "split"))
    sealed = tmp_path / "split" / "train.unseen.jsonl"
    with pytest.raises(CorralError, match="sealed unseen split"):
        prompt_search(PromptSearchOptions(task=str(files["dev"]), grader="numeric",
                                          train=str(sealed), root=str(tmp_path / "runs"),
                                          choose="first", k="1"), generator=Rigged())


def test_bad_options_before_any_call(tmp_path):
    model = Rigged()
    for kw, message in [(dict(budget=3), "--budget 3: .* candidates need at least"),
                        (dict(k="0,500", choose="first"), "--k 500 with --choose first: only"),
                        (dict(k="0,8", bootstrap=4, choose="bootstrap"), "--k 8 with --choose "
                                                                        "bootstrap"),
                        (dict(instruction=("{question} please",)), r"--instruction \(dev\): "
                                                                   r"template field \{question\}"),
                        (dict(choose="nearest"), "'nearest' is not one of"),
                        (dict(layout="grid"), "'grid' is not one of chat, inline"),
                        (dict(k="two"), "--k two: give int values"),
                        (dict(train="t.jsonl"), "--train is for a FILE task")]:
        with pytest.raises(CorralError, match=message):
            prompt_search(opts(tmp_path, **kw), generator=model)
    assert model.calls == 0


def test_schedule_fits_the_budget():
    for candidates, items, budget in [(11, 100, 400), (5, 7, 35), (2, 50, 2), (30, 200, 40)]:
        plan = schedule(candidates, items, budget)
        assert _cost(plan) <= budget and plan[0][0] == candidates and plan[-1][0] == 1
        assert [a for a, _ in plan] == sorted((a for a, _ in plan), reverse=True)
        assert all(n <= items for _, n in plan)
    # 11 candidates, 400 calls: 13 items each, then 26, 52, 100 for the last two (395 calls)
    assert schedule(11, 100, 400) == [(11, 13), (6, 26), (3, 52), (2, 100), (1, 100)]


def test_bootstrap_stops_early_and_skips_a_k_it_cannot_fill(tmp_path):
    """Zero-shot the rigged model passes even first operands only: bootstrapping answers
    train items a chunk (8) at a time until 2 passed; a 16-shot bootstrap is skipped."""
    model = Rigged(needs=2)
    result = prompt_search(opts(tmp_path, choose="first,bootstrap", k="0,2", bootstrap=40),
                           generator=model)
    assert result.calls["bootstrap"] == 8 and not result.skipped
    result = prompt_search(opts(tmp_path, choose="bootstrap", k="0,16", bootstrap=16,
                                name="few"), generator=Rigged(needs=99))
    assert result.calls["bootstrap"] == 16
    assert result.skipped and result.skipped[0].startswith("16-shot bootstrap: the model "
                                                           "passed only")
    assert all("bootstrap" not in s["name"] for s in result.standings)


def test_the_cli_searches_a_local_model_end_to_end(tmp_path, capsys):
    from corral.cli.app import main
    from corral.testing import save_tiny

    tiny = save_tiny(tmp_path / "tiny")
    out = tmp_path / "p.json"
    code = main(["prompt", "search", "--model", tiny, "--task", "arithmetic", "--k", "0,1",
                 "--choose", "first", "--budget", "8", "--limit", "4", "--unseen-limit", "3",
                 "--max-new-tokens", "4", "--root", str(tmp_path / "runs"), "--out", str(out)])
    printed = capsys.readouterr().out
    assert code in (0, None) and out.exists()
    assert "unseen (3 items): winner" in printed and "calls: search 8" in printed
    assert main(["prompt", "show", str(out), "--task", "arithmetic"]) in (0, None)
    assert "--- arithmetic:dev:1" in capsys.readouterr().out
