"""The CLI end to end on the tiny model: inspect, chat, export, eval, grade, split, --help."""
import json
import re

import pytest

from corral.cli.app import build_parser, main
from corral.store.runs import read_jsonl
from corral.testing import save_tiny


@pytest.fixture
def tiny(tmp_path, monkeypatch):
    monkeypatch.setenv("CORRAL_HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    return save_tiny(tmp_path / "tiny")


def chats(path, n=6):
    path.write_text("".join(json.dumps({"messages": [
        {"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": f"a{i}"}]}) + "\n"
        for i in range(n)))
    return str(path)


@pytest.mark.parametrize("command", [["sft"], ["data", "inspect"], ["chat"], ["export"],
                                     ["quickstart"], ["eval"], ["split"], ["grade", "run"]])
def test_every_command_has_help(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args([*command, "--help"])
    assert exit_info.value.code == 0 and "usage: corral" in capsys.readouterr().out


def test_inspect_marks_trained_tokens(tiny, tmp_path, capsys):
    assert main(["data", "inspect", chats(tmp_path / "c.jsonl"), "--model", tiny]) == 0
    out = capsys.readouterr().out
    assert "[[a0<|im_end|>]]" in out


def test_chat_one_prompt(tiny, capsys):
    assert main(["chat", "--model", tiny, "--prompt", "hello", "--max-new-tokens", "4"]) == 0
    assert "Traceback" not in capsys.readouterr().err


def test_chat_through_a_strategy_reports_its_compute(tiny, capsys):
    assert main(["chat", "--model", tiny, "--prompt", "hello", "--max-new-tokens", "4",
                 "--strategy", "majority:3"]) == 0
    err = capsys.readouterr().err
    assert "[majority:3: 1 calls," in err and "generated tokens]" in err
    assert main(["chat", "--model", tiny, "--prompt", "hi", "--strategy", "reflexion:1"]) == 2
    assert "chat has no grader" in capsys.readouterr().err


def test_sft_then_export_merged_loads_in_transformers(tiny, tmp_path, capsys):
    data = chats(tmp_path / "c.jsonl")
    assert main(["sft", f"model.name={tiny}", f"data.train={data}", "train.max_steps=2",
                 "train.progress=false", "lora.r=4", "run.name=tr"]) == 0
    assert main(["export", "tr", "--merge"]) == 0
    from transformers import AutoModelForCausalLM, AutoTokenizer
    merged = tmp_path / "runs" / "tr" / "merged"
    AutoModelForCausalLM.from_pretrained(merged)
    assert "<|im_start|>" in AutoTokenizer.from_pretrained(merged).chat_template


def test_eval_compares_models_and_writes_samples(tiny, capsys):
    assert main(["eval", "--model", tiny, "--model", tiny, "--task", "arithmetic",
                 "--limit", "3", "-n", "2", "-k", "1,2", "--max-new-tokens", "4",
                 "--name", "ev"]) == 0
    out = capsys.readouterr().out
    assert "pass@2" in out and "mean" in out
    rows = read_jsonl("runs/ev/samples.jsonl")
    assert len(rows) == 2 * 3 * 2 and {"model", "grade", "output"} <= set(rows[0])


def test_eval_k_larger_than_n_is_an_error(tiny, capsys):
    assert main(["eval", "--model", tiny, "--task", "arithmetic", "-n", "2", "-k", "4"]) == 2
    assert "raise -n" in capsys.readouterr().err


def test_grade_validate_and_run(tmp_path, capsys):
    grader = {"type": "string_check", "name": "s", "input": "{{sample.output_text}}",
              "reference": "{{item.answer}}", "operation": "eq"}
    assert main(["grade", "validate", json.dumps(grader)]) == 0
    assert main(["grade", "run", json.dumps(grader), "--item", '{"answer": "4"}',
                 "--sample", "4"]) == 0
    out = capsys.readouterr().out
    assert '"reward": 1.0' in out
    bad = {**grader, "operation": "eqq"}
    with pytest.raises(SystemExit):
        main(["grade", "validate", json.dumps(bad)])


def test_split_command(tmp_path, capsys):
    data = chats(tmp_path / "c.jsonl", n=40)
    assert main(["split", data, "--dev", "0.2", "--unseen", "0.2"]) == 0
    assert "sealed" in capsys.readouterr().out
    assert (tmp_path / "c.unseen.jsonl").exists()


def test_missing_file_is_one_clear_error(tiny, capsys):
    assert main(["data", "inspect", "nope.jsonl", "--model", tiny]) == 2
    err = capsys.readouterr().err
    assert "nope.jsonl" in err and "Traceback" not in err


# ---------------------------------------------------------------- corral --help: the ladder
def commands_of(parser) -> list:
    return list(next(a for a in parser._actions if a.dest == "command").choices)


def top_help(capsys) -> str:
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(["--help"])
    assert exit_info.value.code == 0
    return capsys.readouterr().out


def test_top_help_describes_corral_and_groups_commands_in_climbing_order(capsys):
    from corral.cli.app import GROUPS
    from corral.methods import registry

    text = top_help(capsys)
    assert "parses arguments" not in text and "post-trains a language model" in text
    assert "{" not in text.split("\n")[0]  # no raw list of 22 commands in the usage line
    titles = [f"\n{title}:\n" for title, _ in GROUPS]
    at = [text.index(t) for t in titles]
    assert at == sorted(at) and [t for t, _ in GROUPS][:2] == ["start here", "evaluate"]
    listed = re.findall(r"^  (\S+)", text.split("commands, in the order")[1], re.M)
    commands = list(dict.fromkeys(listed))  # `grade validate` and `grade run` list grade once
    assert set(commands) == set(commands_of(build_parser()))  # every command, once
    assert set(registry().names()) <= set(commands)
    for lower, higher in [("quickstart", "split"), ("split", "eval"), ("eval", "sft"),
                          ("sft", "rft"), ("rft", "ppo"), ("ppo", "judge"), ("judge", "export")]:
        assert commands.index(lower) < commands.index(higher), (lower, higher)
    # each command sits under its group's title
    for title, names in GROUPS:
        block = text.split(f"\n{title}:\n")[1].split("\n\n")[0]
        assert set(re.findall(r"^  (\S+)", block, re.M)) == set(names), title


def test_subcommands_are_added_in_climbing_order():
    choices = commands_of(build_parser())
    assert choices[:3] == ["quickstart", "chat", "data"] and choices.index("sft") < \
        choices.index("rft") < choices.index("ppo") < choices.index("export")


# ---------------------------------------------------------------- --allow-unsandboxed-graders
@pytest.mark.parametrize("argv", [
    ["--allow-unsandboxed-graders", "eval", "--model", "m", "--task", "arithmetic"],
    ["eval", "--model", "m", "--task", "arithmetic", "--allow-unsandboxed-graders"],
    ["grade", "run", "python:x", "--allow-unsandboxed-graders"],
    ["rft", "data.task=arithmetic", "--allow-unsandboxed-graders", "rl.n=2"],
    ["synth", "rejection", "--task", "arithmetic", "--out", "o.jsonl",
     "--allow-unsandboxed-graders"],
])
def test_allow_unsandboxed_graders_before_or_after_the_command(argv):
    args = build_parser().parse_args(argv)
    assert args.allow_unsandboxed_graders is True
    if argv[0] == "rft":
        assert args.overrides == ["rl.n=2"] and args.config == "data.task=arithmetic"


def test_training_overrides_may_follow_flags():
    args = build_parser().parse_args(["sft", "--resume", "first", "train.lr=1e-4",
                                      "--allow-change", "train.lr", "train.epochs=2"])
    assert (args.resume, args.config, args.overrides, args.allow_change) == \
        ("first", "train.lr=1e-4", ["train.epochs=2"], ["train.lr"])
    with pytest.raises(SystemExit):
        build_parser().parse_args(["sft", "a=1", "--no-such-flag"])


def test_allow_unsandboxed_graders_is_off_unless_given():
    args = build_parser().parse_args(["eval", "--model", "m", "--task", "arithmetic"])
    assert args.allow_unsandboxed_graders is False


def test_allow_unsandboxed_graders_after_the_command_reaches_the_sandbox(tmp_path, monkeypatch):
    import corral.graders.sandbox as sandbox

    calls = []
    monkeypatch.setattr(sandbox, "allow_unsandboxed", calls.append)
    data = chats(tmp_path / "c.jsonl", n=10)
    assert main(["split", data, "--allow-unsandboxed-graders"]) == 0
    assert main(["split", data]) == 0
    assert calls == [True]


# ---------------------------------------------------------------- --template: a base model
BASE_TEMPLATE = ("{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
                 "{% if add_generation_prompt %}assistant:{% endif %}")


@pytest.fixture
def base_model(tiny):
    """The tiny model without a chat template, like a base model from the hub."""
    from pathlib import Path

    (Path(tiny) / "chat_template.jinja").unlink()
    return tiny


def test_chat_and_eval_take_a_template_for_a_base_model(base_model, tmp_path, capsys):
    assert main(["chat", "--model", base_model, "--prompt", "hi", "--max-new-tokens", "2"]) == 2
    assert "chat template" in capsys.readouterr().err
    assert main(["chat", "--model", base_model, "--prompt", "hi", "--max-new-tokens", "2",
                 "--template", BASE_TEMPLATE]) == 0
    jinja = tmp_path / "base.jinja"
    jinja.write_text(BASE_TEMPLATE)
    eval_args = ["eval", "--model", base_model, "--task", "arithmetic", "--limit", "2",
                 "--max-new-tokens", "2"]
    assert main([*eval_args, "--name", "no-template"]) == 2
    assert "chat template" in capsys.readouterr().err
    assert main([*eval_args, "--template", str(jinja), "--name", "ev"]) == 0
    rows = read_jsonl("runs/ev/samples.jsonl")
    assert len(rows) == 2
    assert main([*eval_args, "--template", BASE_TEMPLATE, "--strategy", "greedy,majority:2",
                 "--name", "st"]) == 0  # the strategy comparison loads the model the same way
    assert "majority:2" in capsys.readouterr().out


def test_the_template_renders_every_prompt(base_model):
    from corral.eval.commands import load_generator

    generator = load_generator(base_model, template=BASE_TEMPLATE)
    text = generator.engine.tokenizer.decode(
        generator._prompt_ids([{"role": "user", "content": "2+2?"}]))
    assert text == "user: 2+2?\nassistant:"
    assert len(generator.identity()["template"]) == 16


def test_a_template_for_an_endpoint_is_refused():
    from corral.core.errors import CorralError
    from corral.eval.commands import load_generator

    with pytest.raises(CorralError, match="--template applies to local models"):
        load_generator("openai:gpt-4o-mini", template=BASE_TEMPLATE)


# ---------------------------------------------------------------- effective defaults
def flat(config: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in config.items():
        if isinstance(value, dict):
            out.update(flat(value, f"{prefix}{key}."))
        else:
            out[prefix + key] = value
    return out


def loaded_with_no_overrides(name: str) -> dict:
    """The config `corral NAME` runs with when nothing is set, as key -> value."""
    from corral.core.config import to_dict
    from corral.methods import registry
    from corral.methods.commands import TrainOptions, load_method_config

    return flat(to_dict(load_method_config(registry().get(name), TrainOptions(name))))


def method_names():
    from corral.methods import registry

    return registry().names()


@pytest.mark.parametrize("name", method_names())
def test_method_help_shows_the_keys_and_defaults_a_run_gets(name, capsys):
    import ast

    with pytest.raises(SystemExit):
        build_parser().parse_args([name, "--help"])
    shown = {key: ast.literal_eval(default) for key, default in re.findall(
        r"^  ([a-z_]+\.[a-z_]+) \([\w ]+, default (.*?)\)(?::|$)", capsys.readouterr().out, re.M)}
    assert shown == loaded_with_no_overrides(name)


def config_md_keys(name: str) -> dict:
    """The keys and defaults docs/config.md shows for `corral NAME`: the shared table, its
    family's table, and the line saying how it differs from the family's first command."""
    import ast
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "docs" / "config.md").read_text()
    sections = re.split(r"^## ", text, flags=re.M)[1:]

    def rows(section):
        return {k: ast.literal_eval(v) for k, v in
                re.findall(r"^\| `([^`]+)` \| [\w ]+ \| `(.*?)` \|", section, re.M)}

    shown = rows(next(s for s in sections if s.startswith("Keys every command has")))
    family = next(s for s in sections if f"`corral {name}`" in s.split("\n")[0])
    shown.update(rows(family))
    line = re.search(rf"^- `corral {name}`: .*$", family, re.M)
    if line:
        shown.update({k: ast.literal_eval(v)
                      for k, v in re.findall(r"`([a-z_]+\.[a-z_]+)` = `(.*?)`", line.group(0))})
    return shown


@pytest.mark.parametrize("name", method_names())
def test_config_md_shows_the_keys_and_defaults_a_run_gets(name):
    assert config_md_keys(name) == loaded_with_no_overrides(name)


def test_ppo_shows_its_preset_and_rl_commands_have_no_sft_data_keys():
    ppo, rft = config_md_keys("ppo"), config_md_keys("rft")
    assert (ppo["rl.n"], ppo["rl.kl_coef"], ppo["rl.advantage"]) == (1, 0.05, "gae")
    assert "data.mask" not in rft and "data.max_length" not in rft
    assert "data.max_prompt_length" in rft and "data.mask" in config_md_keys("sft")


def test_the_shipped_template_serves_a_base_model_for_training_and_chat(base_model, capsys):
    from pathlib import Path

    template = str(Path(__file__).resolve().parents[1] / "examples" / "chat.jinja")
    chats_file = str(Path(__file__).resolve().parents[1] / "examples" / "data" / "chat.jsonl")
    assert main(["data", "inspect", chats_file, "--model", base_model,
                 "--template", template]) == 0
    out = capsys.readouterr().out
    assert "User: What is the capital of France?\nAssistant:[[ Paris.<|im_end|>]]" in out
    assert main(["chat", "--model", base_model, "--template", template, "--prompt", "hi",
                 "--max-new-tokens", "2"]) == 0


def test_readme_walk_through_climbs_in_order():
    """README's walk-through: split -> grade validate -> baseline eval with pass@k -> sft ->
    rft with a grader -> unseen eval of both, each line parsing through the real parser."""
    import shlex
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    walk = text.split("## Your model and your task, step by step", 1)[1].split("\n## ", 1)[0]
    lines = [shlex.split(line.split("  #")[0])[1:] for line in walk.splitlines()
             if line.startswith("corral ")]
    parsed = [build_parser().parse_args(argv) for argv in lines]
    order = [" ".join(filter(None, (a.command, getattr(a, "grade_command", None))))
             for a in parsed]
    firsts = [order.index(c) for c in ("split", "grade validate", "eval", "sft", "rft")]
    assert firsts == sorted(firsts)
    baseline, final = [a for a in parsed if a.command == "eval"][:2]
    assert baseline.n > 1 and "," in baseline.k and "/" in baseline.model[0]  # a hub id
    rft = next(a for a in parsed if a.command == "rft")
    assert any(o.startswith("rl.grader=") for o in [rft.config, *rft.overrides])
    assert final.split == "unseen" and {"my-sft", "my-rft"} <= set(final.model)
    assert order.index("rft") < order.index("eval", order.index("rft"))
