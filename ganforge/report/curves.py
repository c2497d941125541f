"""Training curves as inline SVG, drawn in Python: the HTML report needs no plotting library and no network.

Each panel shows the raw values faintly and TensorBoard's smoothed curve (exponential moving average,
weight 0.6, debiased) over them (evaluation panels, a few numbers each measured on its own, are not
smoothed), with the run's health alerts as vertical markers whose tooltip (an
SVG ``<title>``) holds the message. Every string that reaches the SVG is escaped.
"""
from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from html import escape
from pathlib import Path
from typing import Any

SMOOTHING = 0.6  # TensorBoard's default smoothing weight
FEW_POINTS = 30  # a series this short (evaluations) also shows its points
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
           "#bcbd22", "#17becf")
DASHES = ("", "6 3", "2 2", "8 3 2 3")
MAX_POINTS = 600  # per polyline: a long run's curve stays a few kB
LABELS = {"d_real": "D(x)", "d_fake": "D(G(z))"}


@dataclass
class Series:
    """One curve: its legend label, steps and values, colour and dash pattern (SVG ``stroke-dasharray``)."""

    label: str
    steps: list[float]
    values: list[float]
    color: str = PALETTE[0]
    dash: str = ""


@dataclass
class Marker:
    """A health alert drawn at ``step``; ``text`` is its tooltip."""

    step: float
    text: str
    color: str = "#d62728"


@dataclass
class Panel:
    """A chart: its title, the log keys it draws and whether its y axis may go logarithmic."""

    title: str
    keys: list[str] = field(default_factory=list)


def smooth(values: Sequence[float], weight: float = SMOOTHING) -> list[float]:
    """TensorBoard's smoothing: an exponential moving average debiased by ``1 - weight**n``.

    Without the debiasing the curve would start at ``(1 - weight) * v0`` and creep up from zero; a
    non-finite value is passed through and does not poison the average.
    """
    if not 0 <= weight < 1:
        raise ValueError(f"smoothing weight must be in [0, 1), got {weight}")
    out: list[float] = []
    last, n = 0.0, 0
    for v in values:
        if not math.isfinite(v):
            out.append(v)
            continue
        last = last * weight + (1 - weight) * v
        n += 1
        out.append(last / (1 - weight ** n))
    return out


def read_log(path: str | Path) -> list[dict[str, Any]]:
    """The records of a ``log.jsonl`` (none when it is missing); a line that is not JSON (a run killed
    mid-write) is skipped rather than failing the report."""
    path = Path(path)
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if isinstance(row, dict) and isinstance(row.get("step"), (int, float)):
            rows.append(row)
    return rows


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def numeric_keys(rows: Iterable[dict[str, Any]]) -> list[str]:
    """The keys holding numbers in the log records, in the order first seen (``step`` aside)."""
    seen: dict[str, None] = {}
    for r in rows:
        for k, v in r.items():
            if k != "step" and _is_number(v):
                seen.setdefault(k, None)
    return list(seen)


def panels_for(keys: Sequence[str]) -> list[Panel]:
    """Group log keys into panels: losses, D(x) and D(G(z)), gradient norms, then one panel per
    evaluation metric and one per any other logged number."""
    losses = Panel("losses", [k for k in keys if k.endswith("loss") and not k.startswith("eval/")])
    outputs = Panel("D(x) and D(G(z))", [k for k in ("d_real", "d_fake") if k in keys])
    grads = Panel("gradient norms", [k for k in keys if k.startswith("grad_norm")])
    grouped = set(losses.keys) | set(outputs.keys) | set(grads.keys)
    evals = [Panel(k, [k]) for k in keys if k.startswith("eval/")]
    rest = [Panel(k, [k]) for k in keys if k not in grouped and not k.startswith("eval/")]
    return [p for p in (losses, outputs, grads) if p.keys] + evals + rest


def series_of(rows: Sequence[dict[str, Any]], key: str) -> tuple[list[float], list[float]]:
    """Steps and values of ``key`` in the log records that hold it."""
    pts = [(float(r["step"]), float(r[key])) for r in rows if _is_number(r.get(key))]
    return [s for s, _ in pts], [v for _, v in pts]


def label(key: str) -> str:
    """A curve's legend name: D(x) for d_real, and so on."""
    return LABELS.get(key, key)


def fmt(v: float) -> str:
    """A number short enough for a tick or a table cell."""
    if v == 0 or not math.isfinite(v):
        return str(v) if not math.isfinite(v) else "0"
    a = abs(v)
    if 1e4 <= a < 1e6:
        return f"{v:.0f}"
    if 1e-3 <= a < 1e4:
        return f"{v:.4g}"
    return f"{v:.2e}"


def _nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    raw = (hi - lo) / n
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    start = math.ceil(lo / step - 1e-9) * step
    ticks = []
    t = start
    while t <= hi + 1e-9 * step and len(ticks) < 20:
        ticks.append(0.0 if abs(t) < step * 1e-9 else t)
        t += step
    return ticks


def _thin(xs: list[float], ys: list[float], limit: int = MAX_POINTS) -> tuple[list[float], list[float]]:
    if len(xs) <= limit:
        return xs, ys
    idx = sorted({round(i * (len(xs) - 1) / (limit - 1)) for i in range(limit)})
    return [xs[i] for i in idx], [ys[i] for i in idx]


def svg_chart(title: str, series: Sequence[Series], markers: Sequence[Marker] = (),
              legend: Sequence[tuple[str, str, str]] | None = None, width: int = 440, height: int = 230,
              smoothing: float = SMOOTHING) -> str:
    """One panel as an ``<svg>`` string: raw curves (faint), smoothed curves, alert markers, axes, legend.

    ``legend`` is a list of (label, colour, dash); by default one entry per series. The y axis is
    logarithmic when every value is positive and they span more than three decades (gradient norms).
    """
    finite = [(x, y) for s in series for x, y in zip(s.steps, s.values, strict=True)
              if math.isfinite(x) and math.isfinite(y)]
    entries = list(legend) if legend is not None else [(s.label, s.color, s.dash) for s in series]
    ml, mr, mt, mb = 56, 14, 24, 34
    lh = 15
    total_h = height + lh * len(entries)
    pw, ph = width - ml - mr, height - mt - mb
    parts = [f'<svg class="chart" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{total_h}" '
             f'viewBox="0 0 {width} {total_h}" role="img" data-title="{escape(title)}">',
             f"<title>{escape(title)}</title>",
             f'<text x="{ml}" y="15" class="chart-title">{escape(title)}</text>']
    if not finite:
        parts.append(f'<text x="{ml}" y="{mt + ph / 2}" class="empty">no finite values</text></svg>')
        return "".join(parts)
    x_lo = min(x for x, _ in finite)
    x_hi = max(x for x, _ in finite)
    for m in markers:
        x_lo, x_hi = min(x_lo, m.step), max(x_hi, m.step)
    if x_hi <= x_lo:
        x_lo, x_hi = x_lo - 1, x_hi + 1
    y_lo = min(y for _, y in finite)
    y_hi = max(y for _, y in finite)
    log_y = y_lo > 0 and y_hi / y_lo > 1e3

    def ty(v: float) -> float:
        return math.log10(v) if log_y else v

    a, b = ty(y_lo), ty(y_hi)
    if b <= a:
        pad = abs(a) * 0.05 or 0.5
        a, b = a - pad, b + pad
    else:
        pad = (b - a) * 0.04
        a, b = a - pad, b + pad

    def px(x: float) -> float:
        return ml + (x - x_lo) / (x_hi - x_lo) * pw

    def py(v: float) -> float:
        return mt + ph - (ty(v) - a) / (b - a) * ph

    # Axes and ticks
    parts.append(f'<rect x="{ml}" y="{mt}" width="{pw}" height="{ph}" class="frame"/>')
    for t in _nice_ticks(x_lo, x_hi):
        x = px(t)
        parts.append(f'<line x1="{x:.1f}" y1="{mt + ph}" x2="{x:.1f}" y2="{mt + ph + 4}" class="tick"/>'
                     f'<text x="{x:.1f}" y="{mt + ph + 15}" class="xt">{escape(fmt(t))}</text>')
    if log_y:
        yticks = [10.0 ** e for e in range(math.ceil(a), math.floor(b) + 1)]
    else:
        yticks = _nice_ticks(a, b)
    for t in yticks:
        y = py(t)
        parts.append(f'<line x1="{ml}" y1="{y:.1f}" x2="{ml + pw}" y2="{y:.1f}" class="grid"/>'
                     f'<text x="{ml - 4}" y="{y + 3:.1f}" class="yt">{escape(fmt(t))}</text>')
    parts.append(f'<text x="{ml + pw / 2}" y="{mt + ph + 29}" class="xt">step{" (log y)" if log_y else ""}</text>')
    # Curves: the raw values faint, the smoothed ones on top.
    for s in series:
        pts = [(x, y) for x, y in zip(s.steps, s.values, strict=True) if math.isfinite(x) and math.isfinite(y)]
        if not pts:
            continue
        xs, ys = [x for x, _ in pts], [y for _, y in pts]
        sm = smooth(ys, smoothing)
        dash = f' stroke-dasharray="{escape(s.dash)}"' if s.dash else ""
        color = escape(s.color)
        for kind, values in (("raw", ys), ("smoothed", sm)):
            tx, tv = _thin(xs, values)
            path = " ".join(f"{px(x):.1f},{py(v):.1f}" for x, v in zip(tx, tv, strict=True))
            parts.append(f'<polyline class="{kind}" points="{path}" stroke="{color}"{dash} '
                         f'data-label="{escape(s.label)}"/>')
        if len(xs) <= FEW_POINTS:  # few points (evaluations): show where they are
            parts.extend(f'<circle cx="{px(x):.1f}" cy="{py(v):.1f}" r="2" fill="{color}"/>'
                         for x, v in zip(xs, ys, strict=True))
    for m in markers:
        x = px(m.step)
        parts.append(f'<g class="alert" data-step="{escape(fmt(m.step))}"><title>{escape(m.text)}</title>'
                     f'<line x1="{x:.1f}" y1="{mt}" x2="{x:.1f}" y2="{mt + ph}" stroke="{escape(m.color)}" '
                     f'class="alert-line"/><line x1="{x:.1f}" y1="{mt}" x2="{x:.1f}" y2="{mt + ph}" '
                     f'class="alert-hit"/><path d="M{x - 4:.1f},{mt - 6} L{x + 4:.1f},{mt - 6} L{x:.1f},{mt} Z" '
                     f'fill="{escape(m.color)}"/></g>')
    for i, (text, color, dash) in enumerate(entries):
        y = height + lh * i - 4
        d = f' stroke-dasharray="{escape(dash)}"' if dash else ""
        parts.append(f'<line x1="{ml}" y1="{y - 4}" x2="{ml + 22}" y2="{y - 4}" stroke="{escape(color)}" '
                     f'stroke-width="2"{d}/><text x="{ml + 28}" y="{y}" class="legend">{escape(text)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def run_charts(runs: Sequence[tuple[str, list[dict[str, Any]]]], smoothing: float = SMOOTHING) -> list[str]:
    """The SVG panels of one run, or of several overlaid (one colour per run, one dash per curve).

    ``runs`` is a list of (name, log records). Alerts (records with ``warning``) are drawn at their
    step in every panel of their run.
    """
    keys: dict[str, None] = {}
    for _, rows in runs:
        keys.update(dict.fromkeys(numeric_keys(rows)))
    several = len(runs) > 1
    charts = []
    for panel in panels_for(list(keys)):
        series: list[Series] = []
        markers: list[Marker] = []
        present: set[int] = set()  # the runs that have a curve in this panel
        for r, (name, rows) in enumerate(runs):
            for i, key in enumerate(panel.keys):
                steps, values = series_of(rows, key)
                if not steps:
                    continue
                present.add(r)
                color = PALETTE[(r if several else i) % len(PALETTE)]
                dash = DASHES[i % len(DASHES)] if several else ""
                series.append(Series(f"{name}: {label(key)}" if several else label(key), steps, values, color, dash))
            for row in rows if r in present else ():  # a run's alerts only where its curves are
                if "warning" in row:
                    prefix = f"{name}: " if several else ""
                    text = f"{prefix}step {fmt(float(row['step']))}: {row['warning']}: {row.get('message', '')}"
                    markers.append(Marker(float(row["step"]), text, PALETTE[r % len(PALETTE)] if several
                                          else "#d62728"))
        if not series:
            continue
        legend = None
        if several:
            legend = [(name, PALETTE[r % len(PALETTE)], "") for r, (name, _) in enumerate(runs) if r in present]
            if len(panel.keys) > 1:
                legend += [(label(k), "#555", DASHES[i % len(DASHES)]) for i, k in enumerate(panel.keys)]
        # Evaluations are few and each a number in its own right: an average over them would lag the points.
        evaluations = all(k.startswith("eval/") for k in panel.keys)
        charts.append(svg_chart(panel.title, series, markers, legend, smoothing=0.0 if evaluations else smoothing))
    return charts
