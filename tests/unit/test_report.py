"""``ganforge report``: one self-contained, escaped HTML page per run or per comparison; TensorBoard pictures
and hparams. Run folders are written by hand (config.yaml, log.jsonl, summary.json, PNGs); only the
tabular and TensorBoard checks train, for a few steps."""
from __future__ import annotations

import json
import math
from html.parser import HTMLParser
from pathlib import Path

import pytest
import yaml
from PIL import Image

from ganforge.cli import main
from ganforge.registry import ConfigError
from ganforge.report.curves import smooth
from ganforge.report.html import MAX_FRAMES, config_diff, load_run, render_report, script_json, write_report

HOSTILE = "<script>window.__pwned=1</script>"


def make_run(path: Path, *, preset: str = "grid2d", description: str = "a test run", lr: float = 2e-4,
             frames: int = 3, warnings: tuple[tuple[int, str, str], ...] = ((30, "d_saturation", "D saturates"),),
             text: list[str] | None = None, extra_summary: dict | None = None) -> Path:
    """A finished run folder as ``ganforge train`` leaves it, written by hand."""
    path.mkdir(parents=True)
    cfg = {"preset": preset, "description": description, "model": {"z_dim": 2, "loss": {"name": "nonsaturating"}},
           "optim_g": {"lr": lr}, "data": {"name": "grid2d"}, "train": {"steps": 50}}
    (path / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    rows = [{"step": s, "d_loss": 1.0 + 0.1 * math.sin(s), "g_loss": 0.8, "d_real": 0.6, "d_fake": 0.4,
             "grad_norm_g": 0.5, "grad_norm_d": 1.5, "grad_norm_q": 0.1} for s in range(10, 51, 10)]
    rows += [{"step": 25, "eval/fid": 40.0}, {"step": 50, "eval/fid": 30.0, "eval/kid": 0.02}]
    rows += [{"step": s, "warning": k, "message": m} for s, k, m in warnings]
    rows.append({"step": 0, "note": "autocast off"})
    (path / "log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows) + '{"step": 60, "d_lo')
    summary = {"preset": preset, "steps": 50, "status": "ok", "fid": 30.0, "kid": 0.02,
               "eval_protocol": {"reference": "mnist:heldout", "extractor": "digits", "n": 1000},
               "final": rows[4], "warnings": [{"step": s, "kind": k, "message": m} for s, k, m in warnings],
               "wall_seconds": 1.5, **(extra_summary or {})}
    (path / "summary.json").write_text(json.dumps(summary))
    (path / "samples").mkdir()
    for i in range(frames):
        if text is None:
            Image.new("RGB", (8, 8), (10 * i % 256, 0, 0)).save(path / "samples" / f"step_{10 * (i + 1):07d}.png")
        else:
            (path / "samples" / f"step_{10 * (i + 1):07d}.txt").write_text("\n".join(text) + f"\nframe {i}\n")
    if text is None:
        Image.new("RGB", (8, 8), (0, 200, 0)).save(path / "samples.png")
    else:
        (path / "samples.txt").write_text("\n".join(text) + "\n")
    return path


class Page(HTMLParser):
    """Every element of a page, with its attributes; the text outside and inside scripts."""

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []
        self.scripts: list[str] = []
        self._in_script = False
        self.feed(html)
        self.close()

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        self._in_script = tag == "script"

    def handle_startendtag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_endtag(self, tag):
        if tag == "script":
            self._in_script = False

    def handle_data(self, data):
        (self.scripts if self._in_script else self.text).append(data)

    def all(self, tag: str) -> list[dict[str, str | None]]:
        return [a for t, a in self.tags if t == tag]


ALLOWED = {"html", "head", "meta", "title", "style", "body", "h1", "h2", "h3", "p", "small", "code", "pre", "table",
           "tr", "th", "td", "i", "div", "section", "nav", "a", "details", "summary", "script", "label", "input",
           "span", "img", "figure", "figcaption", "ol", "li", "svg", "text", "rect", "line", "polyline", "circle",
           "g", "path"}


def test_smoothing_is_tensorboards_debiased_ema():
    assert smooth([5.0, 5.0, 5.0]) == pytest.approx([5.0, 5.0, 5.0])  # debiased: no creep up from zero
    v = [1.0, 2.0, 3.0]
    last, out = 0.0, []
    for i, x in enumerate(v, 1):
        last = 0.6 * last + 0.4 * x
        out.append(last / (1 - 0.6 ** i))
    assert smooth(v) == pytest.approx(out)
    assert math.isnan(smooth([1.0, float("nan"), 1.0])[1]) and smooth([1.0, float("nan"), 1.0])[2] == 1.0


def test_script_json_cannot_close_its_script():
    text = script_json({"t": "</script><!-- & >"})
    assert "<" not in text and ">" not in text and "&" not in text
    assert json.loads(text) == {"t": "</script><!-- & >"}


def test_page_is_self_contained(tmp_path):
    run = make_run(tmp_path / "r")
    html = render_report([run])
    page = Page(html)
    assert not any(v and str(v).lower().startswith(("http:", "https:", "//")) for _, a in page.tags
                   for k, v in a.items() if k in ("src", "href", "action", "data"))
    assert all(a.get("src", "").startswith("data:image/") for a in page.all("img"))
    assert all("src" not in a for a in page.all("script")), "no external script"
    assert not page.all("link") and not page.all("iframe") and not page.all("object")
    csp = next(a["content"] for a in page.all("meta") if a.get("http-equiv") == "Content-Security-Policy")
    assert "default-src 'none'" in csp
    assert "http" not in html.replace("http-equiv", "").replace("http://www.w3.org/2000/svg", "")


def test_hostile_strings_are_text_never_markup(tmp_path):
    name = '<img src=x onerror="window.__pwned=1">'
    run = make_run(tmp_path / name, preset=HOSTILE, description=HOSTILE,
                   warnings=((30, HOSTILE, f"<b>bold</b>{HOSTILE}"),), text=[f"a {HOSTILE} b", "</script>"],
                   extra_summary={"note": HOSTILE, "versions": {HOSTILE: HOSTILE}})
    html = render_report([run])
    page = Page(html)
    assert {t for t, _ in page.tags} <= ALLOWED
    assert not page.all("b")
    assert all(not k.startswith("on") for _, a in page.tags for k in a), "no event handler attribute"
    # Only the page's own scripts: the one program and one JSON block per slider.
    scripts = page.all("script")
    assert len(scripts) == 2 and scripts[0].get("type") == "application/json"
    assert all("<" not in s and ">" not in s for s in page.scripts)
    text = "".join(page.text)
    assert HOSTILE in text and name in text and f"a {HOSTILE} b" in text and "<b>bold</b>" in text
    frames = json.loads(page.scripts[0])
    assert f"a {HOSTILE} b" in frames[0]["text"]


def test_slider_has_at_most_max_frames_first_and_last(tmp_path):
    run = make_run(tmp_path / "r", frames=55)
    page = Page(render_report([run]))
    frames = json.loads(page.scripts[0])
    assert len(frames) == MAX_FRAMES
    assert frames[0]["step"] == 10 and frames[-1]["step"] == 550
    steps = [f["step"] for f in frames]
    assert steps == sorted(set(steps))
    rng = page.all("input")[0]
    assert rng["type"] == "range" and rng["max"] == str(MAX_FRAMES - 1) and rng["value"] == str(MAX_FRAMES - 1)
    assert "step 550" in "".join(page.text)


def test_curves_and_alerts_at_their_step(tmp_path):
    run = make_run(tmp_path / "r", warnings=((30, "d_saturation", "D saturates"), (40, "exploding_g", "G explodes")))
    html = render_report([run])
    page = Page(html)
    titles = [a.get("data-title") for a in page.all("svg")]
    for t in ("losses", "D(x) and D(G(z))", "gradient norms", "eval/fid", "eval/kid"):
        assert t in titles
    labels = {a.get("data-label") for a in page.all("polyline")}
    assert {"d_loss", "g_loss", "D(x)", "D(G(z))", "grad_norm_g", "grad_norm_d", "grad_norm_q"} <= labels
    classes = [a.get("class") for a in page.all("polyline")]
    assert classes.count("raw") == classes.count("smoothed") > 0
    alerts = [a for a in page.all("g") if a.get("class") == "alert"]
    assert {a["data-step"] for a in alerts} == {"30", "40"}
    assert "step 30: d_saturation: D saturates" in "".join(page.text)  # the marker's tooltip
    assert "G explodes" in html.split('class="alerts"')[1]  # and the table


def test_several_runs_overlay_and_config_diff(tmp_path, monkeypatch):
    a, b = make_run(tmp_path / "a", lr=1e-4), make_run(tmp_path / "b", lr=4e-4, description="other")
    diff = dict(config_diff([load_run(a), load_run(b)]))
    assert diff == {"description": ["a test run", "other"], "optim_g.lr": ["0.0001", "0.0004"]}
    monkeypatch.chdir(tmp_path)
    out = write_report([a, b])
    assert out == Path("report.html") and out.is_file()
    page = Page(out.read_text())
    labels = {x.get("data-label") for x in page.all("polyline")}
    assert {"a: d_loss", "b: d_loss", "a: eval/fid", "b: eval/fid"} <= labels
    text = "".join(page.text)
    assert "optim_g.lr" in text and "model.z_dim" not in text


def test_a_folder_that_is_not_a_run_is_one_config_error(tmp_path):
    with pytest.raises(ConfigError, match="not a run folder"):
        render_report([tmp_path])
    run = make_run(tmp_path / "r")
    (run / "summary.json").write_text("{not json")
    assert "not valid JSON" in render_report([run])


def test_cli_exit_codes(tmp_path, capsys):
    run = make_run(tmp_path / "r")
    assert main(["report", str(run)]) == 0
    out, _ = capsys.readouterr()
    assert json.loads(out) == {"out": str(run / "report.html")} and (run / "report.html").is_file()
    assert main(["report", str(run), str(tmp_path / "nope"), "--out", str(tmp_path / "x.html")]) == 2
    _, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "nope is not a run folder" in lines[0]
    assert not (tmp_path / "x.html").exists()


@pytest.fixture(scope="module")
def table_run(tmp_path_factory):
    pytest.importorskip("pandas")
    d = tmp_path_factory.mktemp("tab")
    csv = d / "t.csv"
    csv.write_text("age,city,<b>x</b>\n" + "".join(f"{20 + i % 50},{['Paris', 'Lyon'][i % 2]},{i % 3}\n"
                                                    for i in range(60)))
    rc = main(["train", "tabular-ctgan", "--steps", "4", "--set", f"data.path={csv}",
               "--set", "train.batch_size=20", "--set", "train.tensorboard=false", "--out", str(d / "run"),
               "--no-progress"])
    assert rc == 0
    return d / "run", csv


def test_tabular_columns_real_against_synthetic(table_run):
    run, csv = table_run
    page = Page(render_report([run]))
    columns = [a["data-column"] for a in page.all("div") if "data-column" in a]
    assert columns == ["age", "city", "<b>x</b>"]
    assert not page.all("b")
    assert len([a for a in page.all("svg") if a.get("class") == "hist-chart"]) == 3


def test_tabular_run_whose_table_is_gone_says_so(table_run, tmp_path):
    run, _ = table_run
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    cfg["data"]["options"]["path"] = str(tmp_path / "gone.csv")
    moved = tmp_path / "moved"
    moved.mkdir()
    (moved / "config.yaml").write_text(yaml.safe_dump(cfg))
    html = render_report([moved])
    assert "gone.csv is not there any more" in html


def test_logger_sends_images_and_hparams_to_tensorboard(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2

    from ganforge.config import load_config
    from ganforge.training.run import train

    cfg = load_config("grid2d", ["train.steps=20", "train.sample_every=10", "train.log_every=5",
                                 "train.progress=false", "train.tensorboard=true", "train.eval_samples=500"])
    train(cfg, tmp_path / "run")
    ea = EventAccumulator(str(tmp_path / "run" / "tensorboard"), size_guidance={"images": 0, "tensors": 0})
    ea.Reload()
    assert [e.step for e in ea.Images("samples")] == [10, 20]
    content = ea.PluginTagToContent("hparams")
    start = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/session_start_info"])
    hp = start.session_start_info.hparams
    assert hp["preset"].string_value == "grid2d" and hp["train.steps"].number_value == 20
    assert "hparam/modes_captured" in ea.Tags()["scalars"]


def test_evaluations_are_not_smoothed(tmp_path):
    """A handful of evaluations is drawn as measured: a moving average over them would lag the points."""
    run = make_run(tmp_path / "r")
    page = Page(render_report([run]))
    fid = [a for a in page.all("polyline") if a.get("data-label") == "eval/fid"]
    raw = next(a["points"] for a in fid if a["class"] == "raw")
    assert raw and all(a["points"] == raw for a in fid if a["class"] == "smoothed")
    losses = [a for a in page.all("polyline") if a.get("data-label") == "d_loss"]
    assert len({a["points"] for a in losses}) == 2  # the per-step curves still are
