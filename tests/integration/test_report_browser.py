"""The report page in a real browser: headless Chromium driven by playwright.

The slider switches the shown frame and its step label, the curves are there, hostile strings from a
run (its preset and description, a table column, a text sample) show as text and never run, and the
page asks for nothing over the network. Skips, saying why, without playwright or a Chromium executable
(Debian's ``chromium`` package; ``make test`` installs it when it can).
"""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import yaml
from PIL import Image

from ganforge.report.html import write_report

HOSTILE = "<script>window.__pwned=1</script>"


def _chromium() -> str | None:
    """The Chromium that benchmarks/report_screenshot.py (docs/report_demo.png) would drive."""
    spec = importlib.util.spec_from_file_location(
        "report_screenshot", Path(__file__).resolve().parents[2] / "benchmarks" / "report_screenshot.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.chromium_executable()


def _run(path: Path, preset: str, frames: int, text: bool = False) -> Path:
    path.mkdir(parents=True)
    cfg = {"preset": preset, "description": preset, "model": {"z_dim": 2}, "data": {"name": "ring2d"}}
    (path / "config.yaml").write_text(yaml.safe_dump(cfg))
    rows = [{"step": s, "d_loss": 1.0 / s, "g_loss": 0.7, "d_real": 0.6, "d_fake": 0.4, "grad_norm_g": 0.3,
             "grad_norm_d": 0.9} for s in range(10, 10 * frames + 1, 10)]
    rows.append({"step": 20, "warning": "d_saturation", "message": f"D saturates {HOSTILE}"})
    (path / "log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (path / "summary.json").write_text(json.dumps({"preset": preset, "status": "ok", "steps": 10 * frames}))
    (path / "samples").mkdir()
    for i in range(frames):
        step = 10 * (i + 1)
        if text:
            (path / "samples" / f"step_{step:07d}.txt").write_text(f"frame {step} {HOSTILE}\n")
        else:
            Image.new("RGB", (16, 16), (20 * i, 100, 0)).save(path / "samples" / f"step_{step:07d}.png")
    if text:
        (path / "samples.txt").write_text(f"a cat {HOSTILE} sits\n")
    return path


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install playwright)")
    exe = _chromium()
    if exe is None:
        pytest.skip("no Chromium executable (apt-get install chromium, or set CHROMIUM=PATH)")
    with sync_api.sync_playwright() as p:
        try:
            b = p.chromium.launch(executable_path=exe, args=["--no-sandbox"])
        except Exception as e:  # a Chromium that cannot start here (no sandbox support, missing libraries)
            pytest.skip(f"Chromium at {exe} does not start: {str(e).splitlines()[0]}")
        yield b
        b.close()


def _open(browser, html: Path):
    page = browser.new_page()
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    page.goto(html.resolve().as_uri())
    return page, requests


def test_slider_switches_frames_and_curves_are_drawn(browser, tmp_path):
    run = _run(tmp_path / "ring", "ring2d", frames=5)
    page, requests = _open(browser, write_report([run]))
    label = page.locator(".step-label")
    frame = page.locator(".slider .frame")
    assert label.inner_text().startswith("step 50")
    last_src = frame.get_attribute("src")
    page.eval_on_selector("input[type=range]", "el => { el.value = '1'; el.dispatchEvent(new Event('input')); }")
    assert label.inner_text().startswith("step 20")
    assert frame.get_attribute("data-step") == "20" and frame.get_attribute("src") != last_src
    page.eval_on_selector("input[type=range]", "el => { el.value = '0'; el.dispatchEvent(new Event('input')); }")
    assert label.inner_text().startswith("step 10")
    assert page.locator("svg.chart").count() >= 3
    assert page.locator("svg.chart polyline.smoothed").count() > 0
    assert page.locator("g.alert").count() >= 1
    assert [u for u in requests if not u.startswith(("file:", "data:"))] == []


def test_hostile_strings_show_as_text_and_never_run(browser, tmp_path):
    pd = pytest.importorskip("pandas")
    runs = [_run(tmp_path / "a", HOSTILE, frames=3), _run(tmp_path / "b", "text", frames=2, text=True)]
    # Two runs on one page (a hostile preset, a text run); then a tabular run with a hostile column.
    page, _ = _open(browser, write_report(runs, tmp_path / "report.html"))
    body = page.inner_text("body")
    assert HOSTILE in body and f"a cat {HOSTILE} sits" in body and f"D saturates {HOSTILE}" in body
    assert page.evaluate("typeof window.__pwned") == "undefined"
    page.eval_on_selector_all("input[type=range]", "els => els.forEach(el => { el.value = '0'; "
                              "el.dispatchEvent(new Event('input')); })")
    assert f"frame 10 {HOSTILE}" in page.inner_text("body")
    assert page.evaluate("typeof window.__pwned") == "undefined"

    from ganforge.cli import main

    csv = tmp_path / "t.csv"
    pd.DataFrame({HOSTILE: [i % 3 for i in range(40)], "x": [float(i) for i in range(40)]}).to_csv(csv, index=False)
    assert main(["train", "tabular-ctgan", "--steps", "2", "--set", f"data.path={csv}", "--set",
                 "train.batch_size=20", "--set", "train.tensorboard=false", "--out", str(tmp_path / "tab"),
                 "--no-progress"]) == 0
    page, requests = _open(browser, write_report([tmp_path / "tab"]))
    assert HOSTILE in page.inner_text("body")
    assert page.locator("svg.hist-chart").count() == 2
    assert page.evaluate("typeof window.__pwned") == "undefined"
    assert [u for u in requests if not u.startswith(("file:", "data:"))] == []
