"""A data kind defined outside the package (tests/plugins/timeseries_kind.py) takes part in a run
as the built-in kinds do: evaluation during training, a summary entry, a picture, `ganforge sample`
output and a report panel, with nothing in ganforge/ naming it."""
from __future__ import annotations

import json
import os

import numpy as np
from procs import ENV, REPO, ganforge

PLUGINS = REPO / "tests" / "plugins"
CONFIG = """
preset: sines-mlp
plugins: [timeseries_kind]
data: {name: sines}
model:
  z_dim: 8
  generator: {name: mlp, hidden: [64, 64]}
  discriminator: {name: mlp, hidden: [64, 64]}
train: {steps: 60, batch_size: 64, eval_every: 30, sample_every: 30, log_every: 10, progress: false,
        tensorboard: false}
eval: {metrics: []}
"""


def test_a_plugin_kind_gets_evaluation_pictures_summary_samples_and_a_report_panel(tmp_path, monkeypatch):
    monkeypatch.setitem(ENV, "PYTHONPATH", os.pathsep.join([str(PLUGINS), ENV["PYTHONPATH"]]))
    cfg = tmp_path / "sines.yaml"
    cfg.write_text(CONFIG)
    run = tmp_path / "run"
    p = ganforge("train", str(cfg), "--out", str(run))
    assert p.returncode == 0, p.stderr[-3000:]
    summary = json.loads((run / "summary.json").read_text())
    assert summary["kind"] == "timeseries" and summary["series_length"] == 32
    assert 0 <= summary["spectral_error"] < 2  # its own metric, in the summary
    evals = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines() if "eval/spectral_error" in line]
    assert [r["step"] for r in evals] == [30, 60]  # during training, every eval_every steps
    assert (run / "samples" / "step_0000030.png").stat().st_size > 1000  # its picture, during training
    assert (run / "samples.png").stat().st_size > 1000  # and at the end
    out = tmp_path / "series.csv"
    p = ganforge("sample", str(run), "--n", "5", "--out", str(out))  # the plug-in is imported from the run's config
    assert p.returncode == 0, p.stderr[-3000:]
    assert np.loadtxt(out, delimiter=",").shape == (5, 32)
    bad = ganforge("sample", str(run), "--n", "5", "--out", str(out), "--temperature", "0.5")
    assert bad.returncode == 2 and "--temperature applies to text runs, not to timeseries runs" in bad.stderr
    p = ganforge("report", str(run), "--out", str(tmp_path / "report.html"))
    assert p.returncode == 0, p.stderr[-3000:]
    page = (tmp_path / "report.html").read_text()
    assert '<p class="timeseries">spectral error' in page
