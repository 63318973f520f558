"""`corral advise` with rigged generators whose greedy accuracy, few-shot accuracy, pass@k,
judge accuracy and size are set by hand: the top recommendation follows each signal (the
capability absent, verification easy but generation hard, plenty of SFT rows, only thumbs,
only items and a grader, tiny memory, a smaller model that wins on dev), the measurements
are cached (a rerun makes no model call), bad input is one line before any call, and every
command the advice names parses."""
import hashlib
import json
import re
import shlex

import pytest

from corral.advisor.commands import AdviseOptions, advise
from corral.advisor.lines import Context
from corral.advisor.rules import judged_pick, recommend
from corral.advisor.signals import DataSignals, ModelSignals
from corral.core.errors import CorralError
from corral.infer.engine import Generation, SamplingParams
from corral.infer.generators import Generator
from corral.infer.remote import Usage
from corral.tasks.arithmetic import make_rows


def frac(*parts) -> float:
    digest = hashlib.sha256("|".join(map(str, parts)).encode()).hexdigest()
    return int(digest[:8], 16) / 16 ** 8


class Rigged(Generator):
    """Answers "What is A op B?" questions. Greedy: right on a `greedy` share of items (the
    `few` share when shown worked examples). Sampled: all n right where greedy is right; on
    items up to the `reach` share, the first `hits` samples right and the rest one shared
    wrong answer (so the vote stays wrong); else all wrong. As a judge, its verdict is right
    on a `judge` share of answers."""

    def __init__(self, greedy=0.3, reach=None, few=None, hits=2, judge=1.0, params=135e6,
                 name="rigged"):
        self.greedy_share, self.few_share = greedy, greedy if few is None else few
        self.reach = greedy if reach is None else reach
        self.hits, self.judge = hits, judge
        self.num_parameters = None if params is None else int(params)  # None: an endpoint
        self.name, self.usage, self.calls = name, Usage(), 0

    def identity(self):
        return {"kind": "rigged", "model": self.name}

    def chat(self, conversations, params=None, *, return_errors=False):
        params, out = params or SamplingParams(), []
        for conv in conversations:
            self.calls += 1
            text = conv[-1]["content"]
            texts = [self._verdict(text)] * params.n if "<response" in text else \
                self._answers(conv, params)
            out.append([Generation(t, [1, 2], [0.0, 0.0], "stop", 0, j)
                        for j, t in enumerate(texts)])
        return out

    @staticmethod
    def _question(text):
        a, op, b = re.search(r"What is (-?\d+) ([-+*]) (-?\d+)", text).groups()
        return f"{a}{op}{b}", eval(f"{a}{op}{b}")  # noqa: S307 - digits and one operator

    def _answers(self, conv, params):
        question, value = self._question(conv[-1]["content"])
        u = frac(question)
        shots = any(m["role"] == "assistant" for m in conv)
        if params.temperature == 0:
            right = u < (self.few_share if shots else self.greedy_share)
            return [f"#### {value if right else value + 1}"]
        return [f"#### {value}" if u < self.greedy_share or (u < self.reach and j < self.hits)
                else f"#### {value + 1}" for j in range(params.n)]

    def _truth(self, question_text, answer):
        _, value = self._question(question_text)
        return answer.strip().endswith(f"#### {value}")

    def _verdict(self, prompt):
        question = prompt.split("<question>")[1].split("</question>")[0]
        if "<response_a>" in prompt:
            a = prompt.split("<response_a>")[1].split("</response_a>")[0]
            b = prompt.split("<response_b>")[1].split("</response_b>")[0]
            ra, rb = self._truth(question, a), self._truth(question, b)
            if ra == rb:
                return "[[C]]"
            honest = frac(question, *sorted([a, b])) < self.judge
            return "[[A]]" if ra == honest else "[[B]]"
        answer = prompt.split("<response>")[1].split("</response>")[0]
        says = self._truth(question, answer) == (frac(question, answer) < self.judge)
        return f"Score: {int(says)}"


def write_items(path, rows):
    path.write_text("".join(json.dumps({"prompt": r["question"] + " End with '#### n'.",
                                        "answer": r["answer"].split("####")[-1].strip()}) + "\n"
                            for r in rows))
    return str(path)


@pytest.fixture
def task(tmp_path):
    """A FILE task: q.dev.jsonl (40 items); q.train.jsonl only when a test asks for it."""
    rows = make_rows(140, seed=7)
    dev = write_items(tmp_path / "q.dev.jsonl", rows[:40])

    def with_train(n=100):
        write_items(tmp_path / "q.train.jsonl", rows[40:40 + n])
        return dev
    return type("Task", (), {"dev": dev, "with_train": staticmethod(with_train)})


def run(tmp_path, fakes, **kw):
    """advise on the rigged models; each call its own cache root unless `root` is given (the
    cache keys a model by its spec, and these fakes share one)."""
    fakes = fakes if isinstance(fakes, dict) else {"m": fakes}
    fresh = tmp_path / f"runs-{len(list(tmp_path.glob('runs-*')))}"
    fresh.mkdir()
    base = dict(model=list(fakes), task="arithmetic", limit=40, memory_gb=64.0,
                root=str(fresh), grader="")
    base.update(kw)
    if base["task"].endswith(".jsonl"):
        base["grader"] = base["grader"] or "numeric"
    return advise(AdviseOptions(**base), generator_for=lambda spec: fakes[spec])


def top(advice):
    return advice.recommendations[0]


def rungs(recs):
    return [r.rung for r in recs]


# ---------------------------------------------------------------- one signal at a time
def test_capability_absent_rl_and_voting_cannot_help(tmp_path, task):
    dev = task.with_train()
    absent = run(tmp_path, Rigged(greedy=0.0, reach=0.0), task=dev, no_audit=True)
    assert top(absent).rung == "collect"  # no demonstrations, nothing sampling ever finds
    avoid = {r.rung: r.why for r in absent.avoid}
    assert {"rft", "rejection", "majority"} <= set(avoid)
    assert "pass@8 is 0.00" in avoid["rft"] and "RL learns only from prompts" in avoid["rft"]
    present = run(tmp_path, Rigged(greedy=0.0, reach=0.6), task=dev, no_audit=True)
    assert top(present).rung == "rft" and "rft" not in rungs(present.avoid)
    # a built-in task with reference solutions: SFT is the way in, and says so
    builtin = run(tmp_path, Rigged(greedy=0.0, reach=0.0), no_audit=True)
    assert top(builtin).rung == "sft" and "demonstrations are the way in" in top(builtin).why
    assert "data.task=arithmetic" in top(builtin).commands[0]


def test_verification_easy_generation_hard_brings_the_judge(tmp_path, task):
    good = run(tmp_path, Rigged(greedy=0.2, reach=0.8, judge=1.0), task=task.dev)
    assert top(good).rung == "judge"
    assert "verifies better than it generates" in top(good).why
    assert any("best-of-n:8:judge" in c for c in top(good).commands)
    poor = run(tmp_path, Rigged(greedy=0.2, reach=0.8, judge=0.5), task=task.dev)
    assert top(poor).rung != "judge" and "judge" in rungs(poor.avoid)
    assert "stay with the grader or human labels" in next(
        r.why for r in poor.avoid if r.rung == "judge")
    skipped = run(tmp_path, Rigged(greedy=0.2, reach=0.8, judge=1.0), task=task.dev,
                  no_audit=True)
    assert "judge" not in rungs(skipped.recommendations + skipped.avoid)


def test_plenty_of_sft_rows_brings_sft(tmp_path, task):
    dev = task.with_train()
    demos = [{"prompt": f"What is {k} + 1?", "completion": f"#### {k + 1}"} for k in range(300)]
    few, plenty = tmp_path / "few.jsonl", tmp_path / "plenty.jsonl"
    few.write_text("".join(json.dumps(r) + "\n" for r in demos[:10]))
    plenty.write_text("".join(json.dumps(r) + "\n" for r in demos))
    model = Rigged(greedy=0.3, reach=0.8)
    little = run(tmp_path, model, task=dev, sft=str(few), no_audit=True)
    assert top(little).rung == "rft" and "sft" in rungs(little.recommendations)
    lots = run(tmp_path, model, task=dev, sft=str(plenty), no_audit=True)
    assert top(lots).rung == "sft" and f"data.train={plenty}" in top(lots).commands[0]
    assert "300 rows" in top(lots).why


def test_only_thumbs_brings_kto(tmp_path, task):
    rows = [{"prompt": f"What is {k} + 1?", "completion": f"#### {k + 1 + k % 2}",
             "label": k % 2 == 0} for k in range(200)]
    thumbs = tmp_path / "thumbs.jsonl"
    thumbs.write_text("".join(json.dumps(r) + "\n" for r in rows))
    advice = run(tmp_path, Rigged(greedy=0.3), task=task.dev, thumbs=str(thumbs), no_audit=True)
    assert top(advice).rung == "kto" and "100 thumbs up and 100 down" in top(advice).why
    assert top(advice).commands == [f"corral kto model.name=m data.train={thumbs} "
                                    "lora.enabled=false"]
    ups = tmp_path / "ups.jsonl"
    ups.write_text("".join(json.dumps(r) + "\n" for r in rows if r["label"]))
    one_sided = run(tmp_path, Rigged(greedy=0.3), task=task.dev, thumbs=str(ups), no_audit=True)
    assert "kto" in rungs(one_sided.avoid) and top(one_sided).rung == "collect"


def test_only_items_and_a_grader_bring_rft(tmp_path, task):
    dev = task.with_train(100)
    advice = run(tmp_path, Rigged(greedy=0.3, reach=0.8), task=dev, no_audit=True)
    assert rungs(advice.recommendations)[:2] == ["rft", "rejection"]
    assert advice.data.train_items == 100 and advice.data.sft == 0
    assert "100 gradable train items" in top(advice).why
    assert "rl.grader=numeric" in top(advice).commands[0]
    assert not {"sft", "dpo", "kto"} & set(rungs(advice.recommendations))


def test_tiny_memory_brings_lora(tmp_path, task):
    dev = task.with_train()
    model = Rigged(greedy=0.3, reach=0.8)  # 135M parameters: full ≈ 2.6 GB, LoRA ≈ 0.6 GB
    roomy = run(tmp_path, model, task=dev, memory_gb=64, no_audit=True)
    assert roomy.plan.compute.mode == "full" and "lora.enabled=false" in top(roomy).commands[0]
    tight = run(tmp_path, model, task=dev, memory_gb=1, no_audit=True)
    assert tight.plan.compute.mode == "lora" and top(tight).commands[0].endswith("lora.r=16")
    assert "LoRA ≈ 0.6 GB" in tight.plan.compute.why
    none = run(tmp_path, model, task=dev, memory_gb=0.1, no_audit=True)
    assert none.plan.compute.mode == "none" and {"rft", "rejection"} <= set(rungs(none.avoid))


def test_the_publicly_weaker_model_wins_on_dev(tmp_path, task):
    fakes = {"famous-7b": Rigged(greedy=0.3, params=7e9, name="famous"),
             "small": Rigged(greedy=0.8, params=135e6, name="small")}
    advice = run(tmp_path, fakes, task=task.with_train(), no_audit=True)
    assert [m.model for m in advice.models] == ["small", "famous-7b"]
    assert "the smaller model (135M vs 7.0B)" in advice.plan.choice
    assert all("model.name=small" in c for r in advice.recommendations for c in r.commands
               if c.startswith(("corral sft", "corral rft")))


def test_an_endpoint_that_wins_is_distilled_into_the_best_local_model(tmp_path, task):
    fakes = {"openai:big": Rigged(greedy=0.8, reach=0.9, params=None, name="big"),
             "small": Rigged(greedy=0.3, reach=0.5)}
    advice = run(tmp_path, fakes, task=task.with_train(), no_audit=True)
    assert advice.models[0].model == "openai:big" and advice.plan.train_model == "small"
    distill = next(r for r in advice.recommendations if r.rung == "distill")
    assert distill.gain == pytest.approx(advice.models[0].greedy.value
                                         - advice.models[1].greedy.value)
    assert distill.commands[0].startswith("corral synth distill --model openai:big")
    assert distill.commands[1].startswith("corral sft model.name=small")
    assert all("model.name=openai" not in c for r in advice.recommendations for c in r.commands)


def test_worked_examples_that_help_bring_prompt_search(tmp_path):
    helped = run(tmp_path, Rigged(greedy=0.2, few=0.7, reach=0.2), no_audit=True)
    assert top(helped).rung == "prompt" and top(helped).measured
    assert top(helped).commands[0] == "corral prompt search --model m --task arithmetic"
    enough = run(tmp_path, Rigged(greedy=0.2, few=0.97, reach=0.2), no_audit=True)
    assert rungs(enough.recommendations)[:2] == ["as-is", "prompt"]
    assert top(enough).commands == ["corral eval --model m --task arithmetic --split unseen "
                                    "--few-shot 4"]
    same = run(tmp_path, Rigged(greedy=0.2, reach=0.2), no_audit=True)
    assert "prompt" in rungs(same.avoid) and top(same).rung == "sft"


# ---------------------------------------------------------------- the cache
def test_a_rerun_reads_the_cache_and_makes_no_model_call(tmp_path, task):
    root = str(tmp_path / "runs")
    first = Rigged(greedy=0.3, reach=0.7)
    a = run(tmp_path, first, task=task.dev, root=root)
    assert first.calls > 0 and a.cached == []
    again = Rigged(greedy=0.3, reach=0.7)
    b = run(tmp_path, again, task=task.dev, root=root)
    assert again.calls == 0 and b.cached == ["m"]
    assert {**a.to_json(), "cached": []} == {**b.to_json(), "cached": []}
    other = Rigged(greedy=0.3, reach=0.7)
    run(tmp_path, other, task=task.dev, n=4, root=root)  # another setting: measured again
    assert other.calls > 0
    files = list((tmp_path / "runs" / "advise").glob("*.json"))
    assert len(files) == 2 and not list((tmp_path / "runs" / "advise").glob(".*"))


# ---------------------------------------------------------------- bad input
class Untouchable(Generator):
    def chat(self, *a, **k):
        raise AssertionError("no model call before the input is checked")


@pytest.mark.parametrize("kw, needle", [
    (dict(sft="missing.jsonl"), r"^--sft missing.jsonl: no such file; .*or drop --sft$"),
    (dict(thumbs="missing.jsonl"), r"^--thumbs missing.jsonl: no such file"),
    (dict(task="arithmetc"), "did you mean 'arithmetic'"),
    (dict(task="nonsense"), "unknown task 'nonsense'"),
    (dict(split="unseen"), "advise makes choices, so it measures on dev"),
    (dict(n=1), "--n 1: pass@k needs several samples"),
    (dict(temperature=0.0), "--temperature 0: greedy samples"),
    (dict(grader="numeric"), "--grader is for a FILE task"),
    (dict(model=[]), "advise: give --model"),
])
def test_bad_input_is_one_line_before_any_model_call(tmp_path, monkeypatch, kw, needle):
    monkeypatch.chdir(tmp_path)
    opts = dict(model=["m"], task="arithmetic", memory_gb=8.0, root=str(tmp_path / "runs"))
    opts.update(kw)
    with pytest.raises(CorralError) as err:
        advise(AdviseOptions(**opts), generator_for=lambda spec: Untouchable())
    assert "\n" not in str(err.value) and re.search(needle, str(err.value)), str(err.value)


def test_a_file_task_without_its_grader_names_the_flag(tmp_path, task):
    with pytest.raises(CorralError, match="pass --grader"):
        advise(AdviseOptions(model=["m"], task=task.dev, memory_gb=8.0),
               generator_for=lambda spec: Untouchable())


# ---------------------------------------------------------------- the commands it names
def every_command(tmp_path, task) -> list[str]:
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text("".join(json.dumps({"prompt": f"What is {k} + 1?", "chosen": f"{k + 1}",
                                         "rejected": f"{k}"}) + "\n" for k in range(30)))
    thumbs = tmp_path / "t.jsonl"
    thumbs.write_text("".join(json.dumps({"prompt": f"Q{k}", "completion": "A",
                                          "label": k % 2 == 0}) + "\n" for k in range(30)))
    advices = [
        run(tmp_path, Rigged(greedy=0.2, few=0.5, reach=0.9), pairs=str(pairs),
            thumbs=str(thumbs), memory_gb=1.0),
        run(tmp_path, Rigged(greedy=0.2, reach=0.9), task=task.with_train(), pairs=str(pairs)),
        run(tmp_path, Rigged(greedy=0.95, reach=0.95), no_audit=True),
        run(tmp_path, {"openai:big": Rigged(greedy=0.8, params=None), "small": Rigged()},
            task=task.with_train(), no_audit=True),
    ]
    commands = [c for a in advices for r in a.recommendations for c in r.commands]
    assert {r.rung for a in advices for r in a.recommendations} >= {
        "prompt", "judge", "sft", "rft", "rejection", "dpo", "kto", "rlaif", "as-is", "distill"}
    return commands


def test_every_command_it_names_parses_and_its_overrides_load(tmp_path, task):
    from corral.cli.app import build_parser
    from corral.methods import registry
    from corral.methods.commands import TrainOptions, load_method_config

    parser = build_parser()
    commands = every_command(tmp_path, task)
    assert len(commands) >= 12
    for line in commands:
        argv = shlex.split(line)
        assert "" not in argv, line
        assert argv[0] == "corral", line
        if argv[1] == "prompt" and "prompt" not in parser._subparsers._group_actions[0].choices:
            continue  # an older parser without `prompt`
        args = parser.parse_args(argv[1:])
        if args.command in registry().names():
            load_method_config(registry().get(args.command),
                               TrainOptions(args.command, overrides=tuple(args.overrides)))


# ---------------------------------------------------------------- output, rules, CLI
def test_text_and_json_quote_the_measurements(tmp_path, task):
    advice = run(tmp_path, Rigged(greedy=0.2, reach=0.8), task=task.with_train())
    data = json.loads(json.dumps(advice.to_json()))
    assert data["recommendations"][0]["rung"] == advice.recommendations[0].rung
    assert data["models"][0]["pass@8"]["n"] == 40 and data["compute"]["mode"] == "full"
    text = advice.text
    assert "recommendations, most promising first:" in text and "pass@8" in text
    assert "m as a judge of its own answers: balanced" in text
    assert "corral rft model.name=m" in text


def test_rules_are_pure_and_the_judge_estimate_is_by_hand():
    assert judged_pick([2, 0, 8], 8, 1.0, 1.0) == pytest.approx((1 + 0 + 1) / 3)
    assert judged_pick([4], 8, 0.5, 0.5) == pytest.approx(0.5)
    sig = ModelSignals("m", {}, 1_000_000, [0, 1, 0, 0], 4, 0.8, [2, 4, 1, 0], [0, 1, 0, 0])
    plan = recommend([sig], DataSignals(train_items=50, memory_gb=8, memory_source="given"),
                     Context("arithmetic", n=4))
    assert plan.recommendations[0].rung == "rft"
    assert plan.recommendations[0].gain == pytest.approx(0.75 - 0.25)
    assert "pass@4 0.75 ± 0.25 vs zero-shot greedy 0.25 ± 0.25" in plan.recommendations[0].why
    # samples come from the zero-shot prompt: a better 4-shot greedy score does not hide
    # RL's headroom over the zero-shot prompts it trains on
    fewer = ModelSignals("m", {}, 1_000_000, [0, 1, 0, 0], 4, 0.8, [2, 4, 1, 0], [1, 1, 1, 0])
    plan = recommend([fewer], DataSignals(train_items=50, memory_gb=8, memory_source="given"),
                     Context("arithmetic", n=4))
    rft = next(r for r in plan.recommendations if r.rung == "rft")
    assert rft.gain == pytest.approx(0.75 - 0.25)


def test_the_cli_flags_become_the_options():
    import argparse
    from dataclasses import MISSING, fields

    from corral.cli.advise import register
    from corral.cli.options import options

    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["advise", "--model", "a", "--model", "b", "--task", "arithmetic",
                              "--no-audit", "--memory-gb", "2", "-n", "4", "--json"])
    opts = options(AdviseOptions, args)
    assert opts.model == ["a", "b"] and opts.no_audit and opts.memory_gb == 2 and opts.n == 4
    sub = parser._subparsers._group_actions[0].choices["advise"]
    defaults = {a.dest: a.default for a in sub._actions if a.dest != "help"}
    assert set(defaults) - {"func"} == {f.name for f in fields(AdviseOptions)}
    for f in fields(AdviseOptions):
        if f.default is not MISSING and defaults[f.name] is not None:
            assert f.default == defaults[f.name], f.name


def test_a_real_local_model_end_to_end_then_from_the_cache(tmp_path, monkeypatch):
    """The tiny random model through the real loading path: its parameters are counted, its
    answers (all wrong) make SFT the way in, and the rerun loads nothing."""
    from corral.testing import save_tiny

    tiny = save_tiny(tmp_path / "tiny")
    opts = AdviseOptions(model=[tiny], task="arithmetic", limit=3, n=2, few_shot=1,
                         max_new_tokens=4, audit_items=2, memory_gb=1.0,
                         root=str(tmp_path / "runs"))
    first = advise(opts)
    model = first.models[0]
    assert model.params and model.params < 1e6 and model.items == 3 and model.n == 2
    assert model.card is not None or model.audit_note  # a random judge: a card, or why not
    assert top(first).rung == "sft"
    import corral.infer.generators as generators

    def no_load(*a, **k):
        raise AssertionError("the rerun must not load the model")
    monkeypatch.setattr(generators, "generator_for", no_load)
    again = advise(opts)
    assert again.cached == [tiny] and again.to_json()["models"] == first.to_json()["models"]


def test_the_cli_prints_json_for_tools(tmp_path, monkeypatch, capsys, task):
    import argparse

    import corral.advisor.commands as commands
    from corral.cli.advise import register

    real = commands.advise
    monkeypatch.setattr(commands, "advise", lambda opts, log=None: real(
        opts, log=log, generator_for=lambda spec: Rigged(greedy=0.3, reach=0.8)))
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["advise", "--model", "m", "--task", task.with_train(), "--grader",
                              "numeric", "--memory-gb", "1", "--no-audit", "--json",
                              "--root", str(tmp_path / "runs")])
    args.func(args)
    captured = capsys.readouterr()
    printed = json.loads(captured.out)
    assert printed["recommendations"][0]["rung"] == "rft" and printed["compute"]["mode"] == "lora"
    assert "advise: m: greedy zero-shot" in captured.err  # progress stays off stdout
