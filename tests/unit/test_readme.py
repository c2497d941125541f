"""The guides' examples (docs/guide, once the README's sections) run as written; the README's links lead somewhere."""
from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
GUIDES = ROOT / "docs" / "guide"
# The README's sections of earlier versions, now pages of docs/guide.
PAGES = {"Your own objective": "own-objective.md", "Tables": "tables.md", "Text": "text.md",
         "Text to image": "text-to-image.md", "Train on your own images, table or text": "own-data.md",
         "Command line": "command-line.md"}


def section(title: str) -> str:
    """The guide page that holds what the README's section ``title`` held."""
    return (GUIDES / PAGES[title]).read_text()


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


def test_own_data_commands_run_as_written(tmp_path):
    """The shell commands of "Train on your own images, table or text", run as written (``ganforge``
    is the venv's entry point), each training reaching the held-out evaluation the text promises."""
    import json
    import os
    import subprocess
    import sys

    blocks = re.findall(r"```bash\n(.*?)```", section("Train on your own images, table or text"), re.S)
    assert len(blocks) == 3
    bindir = Path(sys.executable).parent
    env = {**os.environ, "PATH": f"{bindir}{os.pathsep}{os.environ['PATH']}", "OMP_NUM_THREADS": "1"}
    for block in blocks:
        lines = [line for line in block.splitlines() if line.strip()]
        assert lines[-1].startswith("ganforge train")
        for line in lines:
            cmd = line + (" --no-progress" if line.startswith("ganforge train") else "")
            r = subprocess.run(["bash", "-c", cmd], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
            assert r.returncode == 0, r.stderr[-2000:]
    runs = tmp_path / "runs"
    images = json.loads((runs / "my-digits" / "summary.json").read_text())
    assert "held out" in images["eval_protocol"]["reference"] and images["fid"] < 300
    table = json.loads((runs / "my-table" / "summary.json").read_text())
    assert "held out" in table["eval_protocol"]["reference"] and table["table_quality"]["column_shapes"] > 0.5
    text = json.loads((runs / "my-text" / "summary.json").read_text())
    assert "held out" in text["eval_protocol"]["test_set"] and text["bleu2"] > 0.5


def test_the_command_lines_that_explore_run_as_written(tmp_path):
    """The lines of "Command line" that look rather than train (--version, presets, --print-config)
    run as written and print what they promise, without writing a run folder."""
    import os
    import subprocess
    import sys

    (block,) = re.findall(r"```bash\n(.*?)```", section("Command line"), re.S)[:1]
    cmds = [line.split("#")[0].strip() for line in block.splitlines()]
    looks = [c for c in cmds if c.startswith(("ganforge --version", "ganforge presets")) or "--print-config" in c]
    assert len(looks) == 4, looks
    bindir = Path(sys.executable).parent
    env = {**os.environ, "PATH": f"{bindir}{os.pathsep}{os.environ['PATH']}"}
    for cmd in looks:
        r = subprocess.run(["bash", "-c", cmd], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
        assert r.returncode == 0 and r.stdout.strip(), (cmd, r.stderr[-2000:])
        if "--print-config" in cmd:
            assert "steps: 500" in r.stdout
    assert not any(tmp_path.iterdir())


def test_the_demo_benchmark_times_what_make_demo_runs():
    """benchmarks/demo_time.py measures the Makefile's demo command, not a copy that drifted from it."""
    import importlib.util

    root = ROOT
    spec = importlib.util.spec_from_file_location("demo_time", root / "benchmarks" / "demo_time.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    make = (root / "Makefile").read_text()
    assert "-m ganforge " + " ".join(module.DEMO_TRAIN) + " --out $$RUN" in make
    assert "-m ganforge report $$RUN" in make


def test_the_readme_is_short_and_its_links_lead_to_files():
    text = README.read_text()
    assert len(text.splitlines()) <= 200
    links = re.findall(r"\]\(([^)#]+)\)", text)
    assert len(links) > 10 and all((ROOT / link).is_file() for link in links), \
        [link for link in links if not (ROOT / link).is_file()]
    # Every results file the README names exists.
    named = re.findall(r"docs/results/[\w.]+", text)
    assert named and all((ROOT / n).is_file() for n in named), [n for n in named if not (ROOT / n).is_file()]
