"""``ganforge tabular fit | sample | eval`` on good and hostile input: one line and exit 2, or a sensible result."""
from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ganforge.cli import main

FAST = ["--epochs", "1", "--batch-size", "20", "--no-progress"]


def _csv(n: int = 60, seed: int = 0) -> str:
    rng = np.random.default_rng(seed)
    lines = ["age,city,income"]
    for _ in range(n):
        lines.append(f"{rng.integers(18, 80)},{rng.choice(['Paris', 'Lyon', 'Nice'])},{rng.normal(3e4, 5e3):.2f}")
    return "\n".join(lines) + "\n"


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def _fit(capsys: pytest.CaptureFixture[str], tmp_path: Path, name: str, content: str | bytes,
         *extra: str) -> tuple[int, str]:
    path = tmp_path / name
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    rc, _, err = _run(capsys, "tabular", "fit", str(path), "--out", str(tmp_path / "model"), *FAST, *extra)
    return rc, err


def _one_line_error(rc: int, err: str) -> str:
    assert rc == 2, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("ganforge: error:"), err
    assert "Traceback" not in err
    return lines[0]


@pytest.mark.parametrize("name, content, problem", [
    ("empty.csv", "", "empty"),
    ("header.csv", "a,b,c\n", "no rows"),
    ("one.csv", "a,b\n1,x\n", "at least 2 rows"),
    ("dupes.csv", "a,b,a\n1,2,3\n4,5,6\n", "duplicate"),
    ("ragged.csv", "a,b\n1,2\n3,4\n5,6,7\n8,9\n", "fields"),
    ("garbage.csv", bytes(range(256)) * 20, "does not look like a text table"),
    ("fake.csv.gz", "a,b\n1,2\n", "not gzip"),
])
def test_bad_tables_are_one_line_errors(capsys, tmp_path, name, content, problem):
    line = _one_line_error(*_fit(capsys, tmp_path, name, content))
    assert problem in line
    assert not (tmp_path / "model" / "generator.safetensors").exists()


@pytest.mark.parametrize("name, content, warning", [
    ("all_nan.csv", _csv().replace("\n", ",\n").replace("income,", "income,blank"), None),
    ("inf.csv", _csv() + "30,Paris,inf\n31,Lyon,-inf\n", "infinite"),
    ("mixed.csv", _csv() + "40,Nice,unknown\n", "income"),
    ("latin.csv", ("name,v\n" + "café,1\ncrème,2\n" * 30).encode("cp1252"), "cp1252"),
    ("bom.csv", "\ufeff" + _csv(), None),
    ("quoted.csv", 'a,note\n1,"two\nlines"\n2,plain\n' * 20, None),
])
def test_awkward_tables_fit(capsys, tmp_path, name, content, warning):
    rc, err = _fit(capsys, tmp_path, name, content)
    assert rc == 0, err
    if warning is not None:
        assert "ganforge: warning:" in err and warning in err
    rc, _, err = _run(capsys, "tabular", "sample", str(tmp_path / "model"), "--n", "25",
                      "--out", str(tmp_path / "synth.csv"))
    assert rc == 0, err
    synth = pd.read_csv(tmp_path / "synth.csv")
    assert len(synth) == 25 and not any(c.startswith("\ufeff") for c in synth.columns)


def test_gzip_and_parquet_inputs_and_outputs(capsys, tmp_path):
    (tmp_path / "t.csv.gz").write_bytes(gzip.compress(_csv().encode()))
    rc, _, err = _run(capsys, "tabular", "fit", str(tmp_path / "t.csv.gz"), "--out", str(tmp_path / "m"), *FAST,
                      "--discrete", "city")
    assert rc == 0, err
    rc, _, err = _run(capsys, "tabular", "sample", str(tmp_path / "m"), "--n", "30", "--out",
                      str(tmp_path / "s.parquet"), "--condition", "city=Nice")
    assert rc == 0, err
    synth = pd.read_parquet(tmp_path / "s.parquet")
    assert len(synth) == 30 and (synth["city"] == "Nice").all()
    pd.read_csv(tmp_path / "t.csv.gz").to_parquet(tmp_path / "t.parquet")
    rc, _, err = _run(capsys, "tabular", "fit", str(tmp_path / "t.parquet"), "--out", str(tmp_path / "m2"), *FAST)
    assert rc == 0, err


def test_sample_failures_leave_no_output(capsys, tmp_path):
    (tmp_path / "t.csv").write_text(_csv())
    assert _run(capsys, "tabular", "fit", str(tmp_path / "t.csv"), "--out", str(tmp_path / "m"), *FAST)[0] == 0
    target = tmp_path / "s.csv"
    target.write_text("keep me\n")
    for extra in (["--condition", "city=Tokyo"], ["--condition", "nonsense"], ["--condition", "age=30"]):
        _one_line_error(*_run(capsys, "tabular", "sample", str(tmp_path / "m"), "--n", "5", "--out", str(target),
                              *extra)[::2])
    assert target.read_text() == "keep me\n"
    _one_line_error(*_run(capsys, "tabular", "sample", str(tmp_path / "m"), "--n", "5", "--out",
                          str(tmp_path / "s.xlsx"))[::2])
    assert not (tmp_path / "s.xlsx").exists()
    (tmp_path / "junk.safetensors").write_bytes(b"\x00garbage" * 10)
    _one_line_error(*_run(capsys, "tabular", "sample", str(tmp_path / "junk.safetensors"), "--n", "5", "--out",
                          str(tmp_path / "x.csv"))[::2])


def test_eval_prints_scores_and_writes_json(capsys, tmp_path):
    (tmp_path / "real.csv").write_text(_csv(200, seed=1))
    (tmp_path / "synth.csv").write_text(_csv(200, seed=2))
    rc, out, err = _run(capsys, "tabular", "eval", str(tmp_path / "real.csv"), str(tmp_path / "synth.csv"),
                        "--target", "city")
    assert rc == 0, err
    assert "Column Shapes" in out and "Detection ROC AUC" in out and "ML efficacy" in out
    scores = json.loads((tmp_path / "synth.eval.json").read_text())
    assert (tmp_path / "synth.eval.png").is_file()  # real vs synthetic, column by column
    assert 0.8 < scores["column_shapes"] <= 1 and 0.3 < scores["detection_auc"] < 0.7
    (tmp_path / "other.csv").write_text("a,b\n1,2\n3,4\n")
    line = _one_line_error(*_run(capsys, "tabular", "eval", str(tmp_path / "real.csv"),
                                 str(tmp_path / "other.csv"))[::2])
    assert "column" in line
    _one_line_error(*_run(capsys, "tabular", "eval", str(tmp_path / "real.csv"), str(tmp_path / "synth.csv"),
                          "--target", "nope")[::2])
