"""``ganforge report``: one self-contained HTML page about one run, or several compared.

The page needs no network: pictures are base64 ``data:`` URIs, curves are inline SVG drawn in Python
(:mod:`ganforge.report.curves`), the only script is inline (and pinned by its hash in the page's
Content-Security-Policy, which also forbids loading anything from elsewhere). Every string that
comes from a run (names, paths, config values, column names, sentences, messages) is escaped with
:func:`html.escape`; JSON inside a ``<script>`` has ``<``, ``>`` and ``&`` written as ``\\u003c`` and
so on, so no value can close the tag or become markup.
"""
from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from html import escape
from pathlib import Path
from typing import Any

from ganforge.config import flatten, read_yaml
from ganforge.io import atomic_write_text
from ganforge.kinds import kind_of_run
from ganforge.registry import ConfigError
from ganforge.report.curves import fmt, read_log, run_charts

MAX_FRAMES = 40  # slider frames per run, evenly spaced over training: the page stays a few MB at most
MAX_INLINE_BYTES = 4_000_000  # a bigger picture is named, not inlined
_STEP_FILE = re.compile(r"step_(\d+)\.(png|txt)$")
_MIME = {".png": "image/png", ".gif": "image/gif", ".jpg": "image/jpeg", ".jpeg": "image/jpeg"}
PICTURE_ORDER = ("samples.png", "classes.png", "interpolation.png")

_SCRIPT = """
document.querySelectorAll('[data-slider]').forEach(function (box) {
  var frames = JSON.parse(box.querySelector('script.frames').textContent);
  var input = box.querySelector('input[type=range]');
  var label = box.querySelector('.step-label');
  var view = box.querySelector('.frame');
  function show(i) {
    var f = frames[i];
    label.textContent = 'step ' + f.step + ' (' + (i + 1) + ' of ' + frames.length + ')';
    view.setAttribute('data-step', String(f.step));
    if (f.src !== undefined) { view.src = f.src; view.alt = 'samples at step ' + f.step; }
    else { view.textContent = f.text; }
  }
  input.addEventListener('input', function () { show(Number(input.value)); });
});
"""

_STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 0 auto; max-width: 1400px; padding: 1em 2em; color: #222; }
h1 { font-size: 1.5em; } h2 { border-bottom: 1px solid #ccc; padding-bottom: .2em; margin-top: 2em; }
h3 { margin-top: 1.4em; } code, pre { font: 12px/1.4 ui-monospace, monospace; }
pre { background: #f6f8fa; padding: .8em; overflow: auto; max-height: 40em; }
table { border-collapse: collapse; margin: .4em 0; } td, th { border: 1px solid #ddd; padding: 2px 8px;
  text-align: left; vertical-align: top; } th { background: #f3f3f3; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.charts { display: flex; flex-wrap: wrap; gap: 10px; }
svg.chart { background: #fff; border: 1px solid #e4e4e4; }
svg .chart-title { font-size: 12px; font-weight: 600; } svg .xt { font-size: 10px; text-anchor: middle; fill: #444; }
svg .yt { font-size: 10px; text-anchor: end; fill: #444; } svg .legend { font-size: 11px; }
svg .frame { fill: none; stroke: #bbb; } svg .grid { stroke: #eee; } svg .tick { stroke: #999; }
svg polyline { fill: none; stroke-width: 1.6; } svg polyline.raw { stroke-opacity: .25; stroke-width: 1; }
svg .alert-line { stroke-width: 1.2; stroke-dasharray: 4 3; } svg .alert-hit { stroke: #000; stroke-opacity: 0;
  stroke-width: 9; pointer-events: stroke; } svg .empty { font-size: 12px; fill: #888; }
.slider img.frame { image-rendering: pixelated; max-width: 100%; display: block; margin-top: .4em; }
.slider { min-width: 440px; } .slider input { width: min(600px, 90%); vertical-align: middle; }
.step-label { margin-left: 1em; }
.pictures { display: flex; flex-wrap: wrap; gap: 16px; } .pictures figure { margin: 0; }
.pictures img { max-width: 560px; image-rendering: pixelated; } figcaption { font-size: 12px; color: #555; }
.status-ok { color: #1a7f37; font-weight: 600; } .status-bad { color: #cf222e; font-weight: 600; }
.note { color: #6e5400; background: #fff8c5; padding: .3em .6em; display: inline-block; }
.hist { display: inline-block; margin: 0 12px 12px 0; vertical-align: top; }
nav a { margin-right: 1em; } .row { display: flex; flex-wrap: wrap; gap: 24px; align-items: flex-start; }
.wide { overflow-x: auto; }
"""


def script_json(value: Any) -> str:
    """JSON safe inside a ``<script>`` element: ``<``, ``>`` and ``&`` become ``\\u003c`` and so on, so
    no string in ``value`` (``"</script>"``, ``"<!--"``) can end the element or open markup."""
    text = json.dumps(value, ensure_ascii=False, allow_nan=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def data_uri(path: Path) -> str:
    """A picture file as a ``data:`` URI."""
    mime = _MIME.get(path.suffix.lower(), "application/octet-stream")
    return f"data:{mime};base64,{base64.b64encode(path.read_bytes()).decode('ascii')}"


@dataclass
class RunData:
    """What the report reads from a run folder."""

    path: Path
    name: str
    config_text: str
    config: dict[str, Any]
    log: list[dict[str, Any]]
    summary: dict[str, Any]
    eval: dict[str, Any] | None = None
    notes: list[str] = field(default_factory=list)  # problems with the folder, shown on the page


def _read_json(path: Path, notes: list[str]) -> Any:
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8", errors="replace"))
    except ValueError as e:
        notes.append(f"{path.name} is not valid JSON ({e}); it is left out")
        return None


def load_run(path: str | Path, name: str | None = None) -> RunData:
    """Read a run folder; a folder without ``config.yaml`` is a :class:`ConfigError`."""
    path = Path(path)
    cfg_path = path / "config.yaml"
    if not cfg_path.is_file():
        raise ConfigError(f"{path} is not a run folder (no config.yaml)")
    text = cfg_path.read_text(encoding="utf-8", errors="replace")
    notes: list[str] = []
    config = read_yaml(text, str(cfg_path)) or {}
    if not isinstance(config, dict):
        raise ConfigError(f"{cfg_path} does not hold a config (a mapping of sections)")
    summary = _read_json(path / "summary.json", notes)
    if summary is None and not (path / "summary.json").exists():
        notes.append("no summary.json: the run has not finished (or was stopped before the end)")
    ev = _read_json(path / "eval.json", notes)
    return RunData(path, name or path.name, text, config, read_log(path / "log.jsonl"),
                   summary if isinstance(summary, dict) else {}, ev if isinstance(ev, dict) else None, notes)


# ------------------------------------------------------------------------------------------------ pieces


def _cell(v: Any) -> str:
    if isinstance(v, bool) or v is None:
        return f"<td>{escape(str(v))}</td>"
    if isinstance(v, (int, float)):
        return f'<td class="num">{escape(fmt(float(v)) if isinstance(v, float) else str(v))}</td>'
    return f"<td>{value_html(v)}</td>"


def value_html(v: Any, depth: int = 0) -> str:
    """A JSON value as HTML: a mapping as a key/value table, a list of mappings as a table with a column
    per key, other lists comma-separated; everything escaped."""
    if isinstance(v, dict):
        if not v:
            return "<i>empty</i>"
        if depth >= 4:
            return f"<code>{escape(json.dumps(v, default=str)[:500])}</code>"
        rows = "".join(f"<tr><th>{escape(str(k))}</th>{_cell_nested(x, depth)}</tr>" for k, x in v.items())
        return f'<table class="kv">{rows}</table>'
    if isinstance(v, list):
        if v and all(isinstance(x, dict) for x in v) and depth < 4:
            cols = list(dict.fromkeys(k for x in v for k in x))
            head = "".join(f"<th>{escape(str(c))}</th>" for c in cols)
            body = "".join("<tr>" + "".join(_cell_nested(x.get(c, ""), depth) for c in cols) + "</tr>"
                           for x in v[:200])
            more = f"<p>({len(v) - 200} more rows left out)</p>" if len(v) > 200 else ""
            return f"<table><tr>{head}</tr>{body}</table>{more}"
        return escape(", ".join(fmt(x) if isinstance(x, float) else str(x) for x in v[:100]))
    if isinstance(v, float):
        return escape(fmt(v))
    return escape(str(v))


def _cell_nested(v: Any, depth: int) -> str:
    if isinstance(v, (dict, list)):
        return f"<td>{value_html(v, depth + 1)}</td>"
    return _cell(v)


def _table(head: Sequence[str], rows: Sequence[Sequence[Any]], cls: str = "") -> str:
    h = "".join(f"<th>{escape(str(c))}</th>" for c in head)
    body = "".join("<tr>" + "".join(_cell(c) for c in row) + "</tr>" for row in rows)
    attr = f' class="{cls}"' if cls else ""
    return f"<table{attr}><tr>{h}</tr>{body}</table>"


def _frames(run: Path) -> list[tuple[int, Path]]:
    """The sample files of the run over training (step, path), at most :data:`MAX_FRAMES`, evenly spaced
    and always with the first and the last."""
    folder = run / "samples"
    if not folder.is_dir():
        return []
    found = []
    for p in folder.iterdir():
        m = _STEP_FILE.match(p.name)
        if m and p.is_file():
            found.append((int(m.group(1)), p))
    found.sort()
    kinds = {p.suffix for _, p in found}
    if ".png" in kinds:  # one kind per slider (a text run has no PNGs and the reverse)
        found = [f for f in found if f[1].suffix == ".png"]
    if len(found) > MAX_FRAMES:
        idx = sorted({round(i * (len(found) - 1) / (MAX_FRAMES - 1)) for i in range(MAX_FRAMES)})
        found = [found[i] for i in idx]
    return found


def slider_html(frames: Sequence[tuple[int, Path]]) -> str:
    """Samples over training: a range input switching the shown frame (picture or text), with its step."""
    if not frames:
        return ""
    data: list[dict[str, Any]] = []
    for step, p in frames:
        if p.suffix == ".txt":
            lines = p.read_text(encoding="utf-8", errors="replace").splitlines()[:30]
            data.append({"step": step, "text": "\n".join(lines)})
        elif p.stat().st_size <= MAX_INLINE_BYTES:
            data.append({"step": step, "src": data_uri(p)})
    if not data:
        return ""
    last = data[-1]
    if "src" in last:
        view = (f'<img class="frame" data-step="{last["step"]}" src="{last["src"]}" '
                f'alt="samples at step {last["step"]}">')
    else:
        view = f'<pre class="frame" data-step="{last["step"]}">{escape(last["text"])}</pre>'
    n = len(data)
    return (f'<div class="slider" data-slider><script type="application/json" class="frames">{script_json(data)}'
            f'</script><label>samples over training <input type="range" min="0" max="{n - 1}" step="1" '
            f'value="{n - 1}" aria-label="training step"></label><span class="step-label">step {last["step"]} '
            f"({n} of {n})</span>{view}</div>")


def pictures_html(run: RunData, has_slider: bool) -> str:
    """The run's pictures (final samples, class grid, interpolation, ...), inlined."""
    files = [p for p in sorted(run.path.iterdir()) if p.suffix.lower() in _MIME and p.is_file()
             and p.name != "curves.png" and not (has_slider and p.name == "training.gif")]
    files.sort(key=lambda p: (PICTURE_ORDER.index(p.name) if p.name in PICTURE_ORDER else len(PICTURE_ORDER),
                              p.name))
    figs = []
    for p in files:
        if p.stat().st_size > MAX_INLINE_BYTES:
            figs.append(f"<figure><figcaption>{escape(p.name)}: too large to inline "
                        f"({p.stat().st_size:,} bytes); see {escape(str(p))}</figcaption></figure>")
            continue
        figs.append(f'<figure><img src="{data_uri(p)}" alt="{escape(p.name)}"><figcaption>{escape(p.name)}'
                    "</figcaption></figure>")
    return f'<div class="pictures">{"".join(figs)}</div>' if figs else ""


def alerts(run: RunData) -> list[dict[str, Any]]:
    """The run's health alerts (step, kind, message): from the log, else from the summary."""
    found = [{"step": r["step"], "kind": str(r["warning"]), "message": str(r.get("message", ""))}
             for r in run.log if "warning" in r]
    if not found:
        found = [w for w in run.summary.get("warnings", []) if isinstance(w, dict)]
    return found


def alerts_html(run: RunData) -> str:
    """The alerts table (or a line saying there were none)."""
    found = alerts(run)
    if not found:
        return "<h3>health alerts</h3><p>none</p>"
    rows = [(a.get("step", ""), a.get("kind", ""), a.get("message", "")) for a in found]
    return f"<h3>health alerts</h3>{_table(('step', 'kind', 'message'), rows, 'alerts')}"


def metrics_html(run: RunData) -> tuple[str, str]:
    """From summary.json (and eval.json when there is one): the status line and the metrics, shown
    first; and the protocols and other details, shown after the samples and the curves."""
    s = run.summary
    head: list[str] = []
    blocks: list[str] = []
    if s:
        status = str(s.get("status", "unknown"))
        cls = "status-ok" if status == "ok" else "status-bad"
        line = f'status <span class="{cls}">{escape(status)}</span>'
        if "steps" in s:
            line += f", {escape(str(s['steps']))} steps"
        if _is_num(s.get("wall_seconds")):
            line += f" in {escape(fmt(float(s['wall_seconds'])))} s"
        head.append(f"<p>{line}</p>")
        if s.get("stopped_early"):
            head.append(f"<p>stopped early: {value_html(s['stopped_early'])}</p>")
        made = [escape(str(s[k])) for k in ("date", "command") if s.get(k)]
        if made:
            head.append(f'<p class="note">made {" by <code>".join(made)}{"</code>" if len(made) > 1 else ""}</p>')
        skip = {"status", "steps", "wall_seconds", "stopped_early", "warnings", "preset", "date", "command"}
        scalars = [(k, v) for k, v in s.items() if k not in skip and not isinstance(v, (dict, list))]
        if scalars:
            head.append("<h3>metrics</h3>" + _table(("name", "value"), scalars, "metrics"))
        for k, v in s.items():
            if k not in skip and isinstance(v, (dict, list)) and v:
                blocks.append(f"<div><h3>{escape(str(k))}</h3>{value_html(v)}</div>")
    if run.eval:
        blocks.append(f"<div><h3>eval.json</h3>{value_html(run.eval)}</div>")
    return "".join(head), (f'<div class="row">{"".join(blocks)}</div>' if blocks else "")


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def config_diff(runs: Sequence[RunData]) -> list[tuple[str, list[str]]]:
    """The config keys whose values differ between the runs: (dotted key, the value in each run as
    text; ``—`` where a run lacks the key)."""
    flats = [flatten(r.config) for r in runs]
    keys = list(dict.fromkeys(k for f in flats for k in f))
    missing = object()
    rows = []
    for k in keys:
        vals = [f.get(k, missing) for f in flats]
        texts = ["—" if v is missing else v if isinstance(v, str) and v else
                 json.dumps(v, default=str, ensure_ascii=False) for v in vals]
        if len({json.dumps(v, default=str, sort_keys=True) if v is not missing else "\0missing" for v in vals}) > 1:
            rows.append((k, texts))
    return rows


# ------------------------------------------------------------------------------------------------ the page


def kind_panel(run: RunData) -> str:
    """What the run's data kind shows of it (a text run's sentences, a table's columns), or a note
    when its plug-in cannot be imported."""
    try:
        kind = kind_of_run(run.path, run.config, run.summary)
    except ConfigError as e:
        return f'<p class="note">{escape(str(e))}</p>'
    return kind.report(run) if kind is not None else ""


def _run_title(run: RunData) -> str:
    preset = run.config.get("preset") or ""
    desc = run.config.get("description") or ""
    sub = " — ".join(escape(str(x)) for x in (preset, desc) if x)
    return f"{escape(run.name)}" + (f' <small class="preset">{sub}</small>' if sub else "")


def run_section(run: RunData, index: int, with_curves: bool) -> str:
    """Everything about one run."""
    out = [f'<section class="run" id="run-{index}"><h2>{_run_title(run)}</h2>',
           f"<p>folder <code>{escape(str(run.path))}</code></p>"]
    out += [f'<p class="note">{escape(n)}</p>' for n in run.notes]
    metrics, details = metrics_html(run)
    out.append(metrics)
    frames = _frames(run.path)
    slider = slider_html(frames)
    pictures = pictures_html(run, bool(slider))
    if slider:
        out.append(f"<h3>samples over training</h3>{slider}")
    out.append(kind_panel(run))
    if with_curves:  # right after the samples: the two things one looks at first
        charts = run_charts([(run.name, run.log)])
        out.append("<h3>curves</h3>" + (f'<div class="charts">{"".join(charts)}</div>' if charts
                                         else "<p>nothing logged</p>"))
    if pictures:
        out.append(f"<h3>pictures</h3>{pictures}")
    out.append(details)
    out.append(alerts_html(run))
    notes = [(r["step"], str(r["note"])) for r in run.log if "note" in r]
    if notes:
        out.append("<h3>notes</h3>" + _table(("step", "note"), notes))
    out.append(f"<details><summary>resolved config (config.yaml)</summary><pre>{escape(run.config_text)}</pre>"
               "</details></section>")
    return "".join(out)


def _names(paths: Sequence[Path]) -> list[str]:
    """Folder names, or the paths as given where two runs share a name."""
    names = [p.name or str(p) for p in paths]
    return [str(p) if names.count(n) > 1 else n for p, n in zip(paths, names, strict=True)]


def comparison_html(runs: Sequence[RunData]) -> str:
    """Several runs: their metrics side by side, curves overlaid, the config keys that differ."""
    out = ["<h2>comparison</h2>"]
    keys = list(dict.fromkeys(k for r in runs for k, v in r.summary.items()
                              if _is_num(v) and k not in ("steps",)))
    head = ["run", "status", "steps", *keys]
    rows = [[r.name, str(r.summary.get("status", "—")), r.summary.get("steps", "—"),
             *[r.summary.get(k, "—") for k in keys]] for r in runs]
    out.append(f'<div class="wide">{_table(head, rows, "runs")}</div>')
    charts = run_charts([(r.name, r.log) for r in runs])
    out.append("<h3>curves, overlaid</h3>" + (f'<div class="charts">{"".join(charts)}</div>' if charts
                                              else "<p>nothing logged</p>"))
    diff = config_diff(runs)
    if diff:
        body = [[k, *vals] for k, vals in diff]
        table = _table(["key", *[r.name for r in runs]], body, "config-diff")
        out.append(f'<h3>config differences</h3><div class="wide">{table}</div>')
    else:
        out.append("<h3>config differences</h3><p>the configs are the same</p>")
    return "".join(out)


def render_report(runs: Sequence[str | Path]) -> str:
    """The HTML page about ``runs`` (one or several run folders)."""
    if not runs:
        raise ConfigError("report needs at least one run folder")
    paths = [Path(r) for r in runs]
    data = [load_run(p, n) for p, n in zip(paths, _names(paths), strict=True)]
    several = len(data) > 1
    title = "ganforge report: " + (", ".join(r.name for r in data) if several else data[0].name)
    digest = base64.b64encode(hashlib.sha256(_SCRIPT.encode("utf-8")).digest()).decode("ascii")
    # Nothing may load from anywhere (pictures are data: URIs); only this page's own script runs.
    csp = (f"default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src 'sha256-{digest}'; "
           "base-uri 'none'; form-action 'none'")
    nav = ""
    if several:
        nav = "<nav>" + "".join(f'<a href="#run-{i}">{escape(r.name)}</a>' for i, r in enumerate(data)) + "</nav>"
    body = [f"<h1>{escape(title)}</h1>", nav]
    if several:
        body.append(comparison_html(data))
    body += [run_section(r, i, with_curves=not several) for i, r in enumerate(data)]
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f'<meta http-equiv="Content-Security-Policy" content="{escape(csp)}">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{escape(title)}</title><style>{_STYLE}</style></head><body>"
            + "".join(body) + f"<script>{_SCRIPT}</script></body></html>\n")


def default_out(runs: Sequence[str | Path]) -> Path:
    """RUN/report.html for one run, ``report.html`` in the current folder for several."""
    return Path(runs[0]) / "report.html" if len(runs) == 1 else Path("report.html")


def write_report(runs: Sequence[str | Path], out: str | Path | None = None) -> Path:
    """Write the report page of ``runs`` (atomically) and return its path."""
    html = render_report(runs)
    path = Path(out) if out is not None else default_out(runs)
    if path.is_dir():
        raise ConfigError(f"--out {path} is a folder; give a file name such as {path / 'report.html'}")
    atomic_write_text(path, html)
    return path


__all__ = ["RunData", "config_diff", "default_out", "flatten", "load_run", "render_report", "script_json",
           "write_report"]
