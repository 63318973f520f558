import pytest

from corral.core.config import load_config, to_dict
from corral.core.errors import CorralError
from corral.core.sections import SFTConfig


def test_defaults_yaml_and_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("train:\n  lr: 1.0e-3\n  epochs: 2\nlora:\n  r: 8\n")
    cfg = load_config(SFTConfig, str(path), ["train.lr=2e-5", "lora.r=16", "lora.enabled=false",
                                             "lora.target_modules=[q_proj, v_proj]"])
    assert cfg.train.lr == 2e-5 and cfg.train.epochs == 2.0
    assert cfg.lora.r == 16 and cfg.lora.enabled is False
    assert cfg.lora.target_modules == ("q_proj", "v_proj")
    assert cfg.model.name == "smollm2-135m-instruct"
    assert to_dict(cfg)["lora"]["target_modules"] == ["q_proj", "v_proj"]


@pytest.mark.parametrize("override, phrase", [
    (["train.lrr=1"], "did you mean 'lr'"),
    (["trian.lr=1"], "did you mean 'train'"),
    (["train.lr=abc"], "must be a number"),
    (["train.grad_accum=1.5"], "whole number"),
    (["lora.enabled=maybe"], "true or false"),
    (["train.lr"], "key=value"),
])
def test_bad_overrides(override, phrase):
    with pytest.raises(CorralError, match=phrase):
        load_config(SFTConfig, None, override)


def test_bad_yaml_names_line(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("train:\n  lr: [1\n")
    with pytest.raises(CorralError, match="bad.yaml:"):
        load_config(SFTConfig, str(path))


def test_choice_validation():
    with pytest.raises(CorralError, match="did you mean 'cosine'"):
        load_config(SFTConfig, None, ["train.schedule=cosin"])  # sections validate at load


def test_yaml_no_stays_a_string():
    assert load_config(SFTConfig, None, ["train.mixed_precision=no"]).train.mixed_precision == "no"
