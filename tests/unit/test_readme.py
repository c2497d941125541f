"""The README's examples run as written."""
from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parents[2] / "README.md"


def section(title: str) -> str:
    text = README.read_text()
    start = text.index(f"## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start:end if end > 0 else None]


def test_your_own_objective_runs_as_written_and_learns(capsys):
    blocks = re.findall(r"```python\n(.*?)```", section("Your own objective"), re.S)
    assert len(blocks) == 1
    namespace: dict = {}
    exec(compile(blocks[0], "README.md: Your own objective", "exec"), namespace)
    printed = capsys.readouterr().out
    assert "of 8 modes" in printed
    summary = namespace["gan"].summary
    assert summary["modes_captured"] >= 7 and summary["high_quality_fraction"] > 0.5


def test_tables_example_runs_as_written(tmp_path, monkeypatch, capsys):
    blocks = re.findall(r"```python\n(.*?)```", section("Tables"), re.S)
    assert len(blocks) == 1
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(blocks[0], "README.md: Tables", "exec"), namespace)
    synth, lyon = namespace["synth"], namespace["lyon"]
    assert list(synth.columns) == list(namespace["df"].columns) and len(synth) == 1000
    assert (lyon["city"] == "Lyon").all() and synth["income"].isna().any()
    assert (tmp_path / "table.safetensors").is_file()


def test_text_example_runs_as_written(tmp_path, monkeypatch, capsys):
    blocks = re.findall(r"```python\n(.*?)```", section("Text"), re.S)
    assert len(blocks) == 1
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(blocks[0], "README.md: Text", "exec"), namespace)
    gan = namespace["gan"]
    grammar = {f"{s} {v} {t}" for s in namespace["subjects"] for v in namespace["verbs"] for t in namespace["things"]}
    sentences = gan.sample(100, seed=1, temperature=0.8)
    assert all(isinstance(x, str) for x in sentences)
    assert sum(x in grammar for x in sentences) >= 60  # it learned the grammar
    assert (tmp_path / "text.safetensors").is_file()


def test_text_to_image_example_runs_as_written(tmp_path, monkeypatch, capsys):
    blocks = re.findall(r"```python\n(.*?)```", section("Text to image"), re.S)
    assert len(blocks) == 1
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(blocks[0], "README.md: Text to image", "exec"), namespace)
    assert tuple(namespace["images"].shape) == (8, 3, 32, 32)
    assert "torch.Size([8, 3, 32, 32])" in capsys.readouterr().out
    assert (tmp_path / "pairs" / "captions.jsonl").is_file()
