"""Issue 16: a CLI one can explore (presets NAME, --print-config, --version, pointed suggestions) and
configs from hostile YAML (tags, anchor bombs, recursion) refused in one line."""
from __future__ import annotations

import json
import time

import pytest
import yaml

from ganforge import cli
from ganforge.config import load_config, load_yaml, preset_names, read_yaml, to_dict
from ganforge.config_doc import commented_yaml, field_comments
from ganforge.registry import ConfigError
from ganforge.training.run import load_run_config


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    try:
        code = cli.main(list(argv))
    except SystemExit as e:  # argparse's --version exits
        code = int(e.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def one_line_error(code: int, err: str, *needles: str) -> None:
    assert code == 2, err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    for needle in needles:
        assert needle in lines[0], lines[0]


# -- presets NAME and --print-config ------------------------------------------------------------------


@pytest.mark.parametrize("name", preset_names())
def test_every_preset_prints_as_commented_yaml_that_reads_back(name, tmp_path):
    text = commented_yaml(load_config(name), name)
    path = tmp_path / "resolved.yaml"
    path.write_text(text)
    again, orig = to_dict(load_config(str(path))), to_dict(load_config(name))
    again.pop("preset"), orig.pop("preset")
    assert again == orig


def test_presets_name_shows_the_presets_comments_and_what_it_changes(capsys):
    code, out, _ = run_cli(capsys, "presets", "mnist-dcgan")
    assert code == 0
    # The header block of the preset and of its base, and the meaning of a field from config.py.
    assert "# --- mnist-dcgan ---" in out and "# --- mnist-dcgan-plain ---" in out
    assert "self-conditioned" in out
    steps = next(line for line in out.splitlines() if line.strip().startswith("steps:"))
    assert "generator updates" in steps and "(default: 5000)" in steps
    # A value left at its default is not marked.
    noise = next(line for line in out.splitlines() if line.strip().startswith("noise:"))
    assert "(default" not in noise


def test_every_field_comment_is_found():
    notes = field_comments()
    assert notes["train.steps"].startswith("generator updates")
    assert "relu" in notes["model.generator.activation"]
    assert "relu" in notes["model.discriminator.activation"]  # the same class, under both paths


def test_print_config_prints_the_overrides_and_trains_nothing(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, out, _ = run_cli(capsys, "train", "ring2d", "--steps", "7", "--set", "optim_g.lr=0.003",
                           "--print-config")
    assert code == 0
    data = yaml.safe_load(out)
    assert data["train"]["steps"] == 7 and data["optim_g"]["lr"] == 0.003
    assert "--set train.steps=7" in out.splitlines()[0]
    assert not (tmp_path / "runs").exists()


def test_presets_of_an_unknown_name_is_one_line(capsys):
    code, _, err = run_cli(capsys, "presets", "ring2e")
    one_line_error(code, err, "ring2e", "ring2d")


def test_version(capsys):
    code, out, _ = run_cli(capsys, "--version")
    assert code == 0
    assert out.startswith("ganforge ") and "torch " in out and "Python " in out


# -- suggestions that point to the right key ------------------------------------------------------------


def test_a_section_given_a_value_points_to_its_keys(capsys, tmp_path):
    code, _, err = run_cli(capsys, "train", "grid2d", "--set", "model.loss=hinge", "--out", str(tmp_path / "r"))
    one_line_error(code, err, "'model.loss' is a section", "--set model.loss.name=")
    path = tmp_path / "c.yaml"
    path.write_text("base: grid2d\nmodel:\n  loss: hinge\n")
    code, _, err = run_cli(capsys, "train", str(path), "--out", str(tmp_path / "r"))
    one_line_error(code, err, "model.loss is a section", "model.loss.name", "loss: {name: ...}")
    assert not (tmp_path / "r").exists()


def test_a_list_error_shows_the_syntax(capsys, tmp_path):
    code, _, err = run_cli(capsys, "train", "ring2d", "--set", "model.generator.hidden=128",
                           "--out", str(tmp_path / "r"))
    one_line_error(code, err, "expected a list", "--set model.generator.hidden=[256,256]", "hidden: [256, 256]")


# -- hostile YAML ------------------------------------------------------------------------------------------

BOMB = "\n".join(["a: &a [x, x, x, x, x, x, x, x, x]"]
                 + [f"{c}: &{c} [{', '.join([f'*{p}'] * 9)}]" for p, c in zip("abcdefgh", "bcdefghi", strict=True)])


@pytest.mark.parametrize(("text", "needle"), [
    ("train: !!python/object/apply:os.system ['echo owned > OWNED']", "python/object/apply:os.system' is not allowed"),
    ("train: !custom 3", "'!custom' is not allowed"),
    (BOMB, "anchor bomb"),
    ("a: &a [*a]", "refers to itself"),
    ("[" * 3000 + "]" * 3000, "nested too deeply"),
    ("train: [1", "invalid YAML"),
])
def test_hostile_yaml_is_one_line_and_never_runs_code(text, needle, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "hostile.yaml"
    path.write_text(text)
    t0 = time.perf_counter()
    with pytest.raises(ConfigError, match="hostile.yaml") as info:
        load_yaml(str(path))
    assert needle in str(info.value)
    assert time.perf_counter() - t0 < 5  # the bomb is refused before it is built
    code, _, err = run_cli(capsys, "train", str(path))
    one_line_error(code, err, needle)
    assert not (tmp_path / "OWNED").exists()
    assert not (tmp_path / "runs").exists()


def test_aliases_of_a_reasonable_size_still_work():
    data = read_yaml("net: &n {hidden: [64, 64]}\nmodel: {generator: *n, discriminator: *n}", "x.yaml")
    assert data["model"]["discriminator"] == {"hidden": [64, 64]}


def test_a_hostile_run_config_and_override_are_refused(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text(BOMB)
    with pytest.raises(ConfigError, match="anchor bomb"):
        load_run_config(run)
    code, _, err = run_cli(capsys, "train", "ring2d", "--set", "train.steps=!!python/name:os.system",
                           "--out", str(tmp_path / "r"))
    one_line_error(code, err, "is not allowed")


# -- summary.json records what made it ---------------------------------------------------------------------


def test_summary_records_versions_date_and_command(tmp_path, capsys):
    out = tmp_path / "run"
    code, _, err = run_cli(capsys, "train", "ring2d", "--steps", "20", "--no-progress", "--out", str(out))
    assert code == 0, err
    summary = json.loads((out / "summary.json").read_text())
    import torch

    import ganforge
    assert summary["versions"]["ganforge"] == ganforge.__version__
    assert summary["versions"]["torch"] == torch.__version__
    assert summary["date"][:4].isdigit() and summary["date"].endswith("+00:00")
    assert isinstance(summary["command"], str) and summary["command"]
