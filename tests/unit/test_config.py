"""Typed configs: presets, validation of keys and types, --set overrides, merging onto defaults."""
from __future__ import annotations

import os
import subprocess
import sys
import warnings

import pytest
import yaml

from ganforge.config import (
    Config,
    apply_overrides,
    from_dict,
    load_config,
    load_yaml,
    parse_override,
    preset_names,
)
from ganforge.registry import ConfigError


@pytest.mark.parametrize("name", preset_names())
def test_every_preset_loads(name):
    cfg = load_config(name)
    assert isinstance(cfg, Config)
    assert cfg.preset == name
    assert cfg.description


def test_the_toy_presets_exist_and_have_their_values():
    assert {"ring2d", "grid2d"} <= set(preset_names())
    ring = load_config("ring2d")
    assert ring.data.name == "ring2d"
    raw = load_yaml("ring2d")
    assert ring.model.generator.hidden == raw["model"]["generator"]["hidden"]
    assert ring.optim_g.lr == raw["optim_g"]["lr"] and ring.optim_d.betas == raw["optim_d"]["betas"]
    assert load_config("grid2d").data.name == "grid2d"


def test_unknown_preset_suggests_the_closest():
    with pytest.raises(ConfigError, match="did you mean 'ring2d'"):
        load_config("rnig2d")


def test_load_config_from_a_yaml_path(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text("train: {steps: 7}\nmodel: {loss: {name: hinge}}\n")
    cfg = load_config(str(path))
    assert cfg.train.steps == 7 and cfg.model.loss.name == "hinge"
    assert cfg.preset == "mine"
    assert cfg.train.batch_size == Config().train.batch_size


def test_unknown_top_level_key_in_a_yaml_dict():
    with pytest.raises(ConfigError) as e:
        from_dict({"trian": {"steps": 5}})
    assert "trian" in str(e.value)
    assert "did you mean 'train'" in str(e.value)


def test_unknown_nested_key_in_a_yaml_dict():
    with pytest.raises(ConfigError) as e:
        from_dict({"train": {"stpes": 5}})
    msg = str(e.value)
    assert "train.stpes" in msg
    assert "did you mean" in msg and "steps" in msg


def test_unknown_deeply_nested_key_in_a_yaml_file(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("model:\n  loss:\n    gradient_penalti: 10\n")
    with pytest.raises(ConfigError) as e:
        load_config(str(path))
    assert "model.loss.gradient_penalti" in str(e.value)
    assert "did you mean 'gradient_penalty'" in str(e.value)


def test_unknown_top_level_key_via_set():
    with pytest.raises(ConfigError) as e:
        load_config("ring2d", ["trian.steps=5"])
    assert "trian.steps" in str(e.value)
    assert "did you mean 'train.steps'" in str(e.value)


def test_unknown_nested_key_via_set():
    with pytest.raises(ConfigError) as e:
        load_config("ring2d", ["optim_g.lrr=1e-3"])
    assert "optim_g.lrr" in str(e.value)
    assert "did you mean 'optim_g.lr'" in str(e.value)


def test_wrong_type_string_for_int():
    with pytest.raises(ConfigError, match="train.steps"):
        from_dict({"train": {"steps": "many"}})
    with pytest.raises(ConfigError, match="train.batch_size"):
        load_config("ring2d", ["train.batch_size=big"])


def test_wrong_type_float_for_int():
    with pytest.raises(ConfigError, match="train.steps"):
        from_dict({"train": {"steps": 2.5}})


def test_wrong_type_string_for_bool():
    with pytest.raises(ConfigError, match="train.progress"):
        from_dict({"train": {"progress": "true"}})
    with pytest.raises(ConfigError, match="techniques.feature_matching"):
        load_config("ring2d", ["techniques.feature_matching=maybe"])


def test_wrong_type_bool_for_int_and_list_item():
    with pytest.raises(ConfigError, match="train.d_steps"):
        from_dict({"train": {"d_steps": True}})
    with pytest.raises(ConfigError, match=r"model.generator.hidden\[1\]"):
        from_dict({"model": {"generator": {"hidden": [8, "wide"]}}})
    with pytest.raises(ConfigError, match="model.generator"):
        from_dict({"model": {"generator": "mlp"}})


def test_ints_are_accepted_for_floats():
    cfg = from_dict({"optim_g": {"lr": 1}, "techniques": {"instance_noise": 0}})
    assert cfg.optim_g.lr == 1.0 and isinstance(cfg.optim_g.lr, float)
    assert isinstance(cfg.techniques.instance_noise, float)


def test_set_parses_scientific_notation_as_float():
    assert parse_override("optim_g.lr=1e-4") == ("optim_g.lr", 1e-4)
    cfg = load_config("ring2d", ["optim_g.lr=1e-4", "optim_d.lr=3E-5"])
    assert cfg.optim_g.lr == 1e-4 and isinstance(cfg.optim_g.lr, float)
    assert cfg.optim_d.lr == 3e-5


def test_set_parses_ints_bools_and_strings():
    cfg = load_config("ring2d", ["train.steps=12", "techniques.feature_matching=true",
                                 "model.loss.name=hinge", "model.discriminator.activation=leaky_relu"])
    assert cfg.train.steps == 12 and isinstance(cfg.train.steps, int)
    assert cfg.techniques.feature_matching is True
    assert cfg.model.loss.name == "hinge"
    assert cfg.model.discriminator.activation == "leaky_relu"


def test_set_without_equals_raises():
    with pytest.raises(ConfigError, match="key=value"):
        load_config("ring2d", ["train.steps"])


def test_list_override():
    cfg = load_config("ring2d", ["model.generator.hidden=[32, 16]", "model.loss.mmd_bandwidths=[1, 2.5]"])
    assert cfg.model.generator.hidden == [32, 16]
    assert cfg.model.loss.mmd_bandwidths == [1.0, 2.5]
    assert all(isinstance(v, float) for v in cfg.model.loss.mmd_bandwidths)
    # the other network keeps its preset value
    assert cfg.model.discriminator.hidden == load_yaml("ring2d")["model"]["discriminator"]["hidden"]


def test_data_options_override_is_allowed():
    cfg = load_config("ring2d", ["data.options.modes=4"])
    assert cfg.data.options == {"modes": 4}


def test_nested_partial_dicts_merge_onto_defaults():
    default = Config()
    cfg = from_dict({"model": {"loss": {"name": "wasserstein"}, "generator": {"hidden": [8]}},
                     "train": {"steps": 3}})
    assert cfg.model.loss.name == "wasserstein"
    assert cfg.model.loss.mmd_bandwidths == default.model.loss.mmd_bandwidths
    assert cfg.model.loss.began_gamma == default.model.loss.began_gamma
    assert cfg.model.generator.hidden == [8]
    assert cfg.model.generator.activation == default.model.generator.activation
    # D's defaults differ from G's (leaky ReLU): they survive a partial model section
    assert cfg.model.discriminator.activation == "leaky_relu"
    assert cfg.model.z_dim == default.model.z_dim
    assert cfg.train.steps == 3 and cfg.train.batch_size == default.train.batch_size
    assert cfg.optim_g == default.optim_g


def test_overrides_merge_onto_a_preset_without_losing_siblings():
    data = load_yaml("ring2d")
    merged = apply_overrides(data, ["train.steps=9"])
    assert merged["train"]["steps"] == 9
    steps, batch = data["train"]["steps"], data["train"]["batch_size"]
    assert steps != 9
    assert merged["train"]["batch_size"] == batch
    assert data["train"]["steps"] == steps  # the input dict is not modified


def test_data_options_path_is_read_as_data_path_with_a_warning(tmp_path):
    """``data.path`` is the spelling; the older ``data.options.path`` still works, says so, and the
    resolved config (what a run folder's config.yaml holds) has the chosen spelling only."""
    corpus = str(tmp_path / "corpus.txt")
    with pytest.warns(FutureWarning, match=r"data\.options\.path is deprecated: use data\.path"):
        cfg = load_config("coco-mle", [f"data.options.path={corpus}"])
    assert cfg.data.path == corpus and "path" not in cfg.data.options
    with pytest.warns(FutureWarning, match="deprecated"):
        api = from_dict({"data": {"name": "text", "options": {"path": tmp_path / "corpus.txt", "max_len": 5}}})
    assert api.data.path == corpus and api.data.options == {"max_len": 5}
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the chosen spelling warns about nothing
        assert load_config("coco-mle", [f"data.path={corpus}"]).data.path == corpus
    with pytest.raises(ConfigError, match="different files: set data.path only"):
        load_config("coco-mle", [f"data.path={corpus}", "data.options.path=other.txt"])


def test_the_command_line_shows_the_deprecation_as_one_warning_line(tmp_path):
    corpus = str(tmp_path / "corpus.txt")
    p = subprocess.run([sys.executable, "-m", "ganforge", "train", "coco-mle", "--set", f"data.options.path={corpus}",
                        "--print-config"], capture_output=True, text=True, timeout=120,
                       env={k: v for k, v in os.environ.items() if k != "PYTHONWARNINGS"})
    assert p.returncode == 0, p.stderr
    warning = "ganforge: warning: data.options.path is deprecated: use data.path (the same value)"
    assert p.stderr.splitlines() == [warning]
    resolved = yaml.safe_load(p.stdout)["data"]
    assert resolved["path"] == corpus and "path" not in resolved["options"]
