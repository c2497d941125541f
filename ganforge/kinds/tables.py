"""Tables: SDMetrics-style quality and detection AUC against held-out rows; real against synthetic
column by column on the report page."""
from __future__ import annotations

import argparse
import math
from html import escape
from pathlib import Path
from typing import Any

from ganforge.config import Config
from ganforge.kinds.base import DataKind, RunContext, register_kind
from ganforge.registry import ConfigError
from ganforge.report.curves import PALETTE, fmt
from ganforge.spec import DataSpec

MAX_TABLE_ROWS = 5000  # real and synthetic rows compared per tabular run on the report page
MAX_TABLE_COLUMNS = 24


def table_metrics(artifact: Any, data: Any, seed: int = 0) -> dict[str, Any]:
    """Column shapes, column pair trends, their mean (SDMetrics' quality) and the detection AUC of as
    many synthetic rows as were held out, against those rows; {} when the data holds none out."""
    held = getattr(data, "heldout", None)
    if held is None or not len(held):
        return {}
    from ganforge.metrics.table import evaluate_table

    synth = artifact.sample(len(held), seed=seed)
    scores = evaluate_table(held, synth, discrete_columns=getattr(data, "discrete_columns", None), seed=seed)
    # A score SDMetrics cannot compute (no pair above its thresholds) is NaN: null in JSON.
    out: dict[str, Any] = {k: (float(scores[k]) if math.isfinite(scores[k]) else None)
                           for k in ("column_shapes", "column_pair_trends", "quality", "detection_auc")}
    out["protocol"] = {"reference": data.heldout_source, "synthetic_rows": len(synth), "seed": seed,
                       "scores": "SDMetrics' Column Shapes / Column Pair Trends; logistic-regression detection AUC"}
    return out


def _quality(scores: dict[str, Any]) -> dict[str, Any]:
    """Table metrics as summary entries."""
    if not scores:
        return {}
    return {"table_quality": {k: v for k, v in scores.items() if k != "protocol"}, "eval_protocol": scores["protocol"]}


def _svg_hist(title: str, kind: str, real: Any, synth: Any) -> str:
    """Real against synthetic for one column: overlaid histograms (numbers, dates) or side-by-side bars
    of the commonest categories."""
    import numpy as np
    import pandas as pd

    w, h, ml, mb, mt = 300, 160, 8, 40, 6
    pw, ph = w - 2 * ml, h - mb - mt
    parts = [f'<svg class="hist-chart" xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h + 16}" '
             f'viewBox="0 0 {w} {h + 16}" role="img"><title>{escape(title)}</title>']
    colors = (PALETTE[0], PALETTE[1])
    if kind in ("numerical", "datetime"):
        def num(s: Any) -> Any:
            if kind == "datetime":
                s = pd.to_datetime(s, errors="coerce")
                return s.dropna().astype("int64").to_numpy(float)
            return pd.to_numeric(s, errors="coerce").dropna().to_numpy(float)

        rv, sv = num(real), num(synth)
        lo, hi = np.quantile(rv, [0.005, 0.995]) if len(rv) else (0.0, 1.0)
        hi = hi if hi > lo else lo + 1
        bins = np.linspace(lo, hi, 31)
        hr = np.histogram(np.clip(rv, lo, hi), bins)[0] / max(1, len(rv))
        hs = np.histogram(np.clip(sv, lo, hi), bins)[0] / max(1, len(sv))
        top = max(hr.max(initial=0), hs.max(initial=0)) or 1
        bw = pw / 30
        for hist, color in ((hr, colors[0]), (hs, colors[1])):
            for i, v in enumerate(hist):
                bh = v / top * ph
                parts.append(f'<rect x="{ml + i * bw:.1f}" y="{mt + ph - bh:.1f}" width="{bw:.1f}" '
                             f'height="{bh:.1f}" fill="{color}" fill-opacity="0.45"/>')
        lo_t, hi_t = (fmt(float(lo)), fmt(float(hi))) if kind == "numerical" else (
            str(pd.Timestamp(int(lo)).date()), str(pd.Timestamp(int(hi)).date()))
        parts.append(f'<text x="{ml}" y="{mt + ph + 13}" class="xt" style="text-anchor:start">{escape(lo_t)}</text>'
                     f'<text x="{w - ml}" y="{mt + ph + 13}" class="xt" style="text-anchor:end">{escape(hi_t)}</text>')
    else:
        rc = real.astype(str).value_counts(normalize=True).head(10)
        sc = synth.astype(str).value_counts(normalize=True).reindex(rc.index).fillna(0)
        top = max(rc.max() if len(rc) else 0, sc.max() if len(sc) else 0) or 1
        n = max(1, len(rc))
        slot = pw / n
        for i, cat in enumerate(rc.index):
            for j, (vals, color) in enumerate(((rc, colors[0]), (sc, colors[1]))):
                bh = float(vals.iloc[i]) / top * ph
                parts.append(f'<rect x="{ml + i * slot + slot * (0.1 + 0.4 * j):.1f}" y="{mt + ph - bh:.1f}" '
                             f'width="{slot * 0.4:.1f}" height="{bh:.1f}" fill="{color}"/>')
            x = ml + (i + 0.5) * slot
            parts.append(f'<text x="{x:.1f}" y="{mt + ph + 12}" class="xt" transform="rotate(30 {x:.1f} '
                         f'{mt + ph + 12})" style="text-anchor:start">{escape(str(cat)[:12])}</text>')
    parts.append(f'<rect x="{ml}" y="{mt}" width="{pw}" height="{ph}" class="frame"/>'
                 f'<rect x="{ml}" y="{h + 4}" width="10" height="8" fill="{colors[0]}"/>'
                 f'<text x="{ml + 14}" y="{h + 12}" class="legend">real</text>'
                 f'<rect x="{ml + 60}" y="{h + 4}" width="10" height="8" fill="{colors[1]}"/>'
                 f'<text x="{ml + 74}" y="{h + 12}" class="legend">synthetic</text></svg>')
    return "".join(parts)


def table_path(config: dict[str, Any]) -> str:
    """The table file a tabular run was trained on (``data.options.path`` in run folders of older
    versions, else ``data.path``)."""
    data = config.get("data") or {}
    opts = data.get("options") or {}
    return str(opts.get("path") or data.get("path") or "")


def tabular_html(run: Any) -> str:
    """Real against synthetic, column by column; synthetic rows come from the run's generator, real
    ones from the file in its config. A missing file or generator is said on the page."""
    src = table_path(run.config)
    head = "<h3>real against synthetic, column by column</h3>"
    if not src or not Path(src).is_file():
        return head + f'<p class="note">the training table {escape(src or "(none in the config)")} is not there '\
                      "any more: no comparison</p>"
    if not (run.path / "generator.safetensors").is_file():
        return head + '<p class="note">no generator.safetensors in the run (it did not finish): no synthetic rows</p>'
    from ganforge.data.table_io import read_table
    from ganforge.generator import load
    from ganforge.metrics.table import column_kinds

    opts = (run.config.get("data") or {}).get("options") or {}
    try:
        real = read_table(src, opts.get("delimiter"), opts.get("encoding"))
        if len(real) > MAX_TABLE_ROWS:
            real = real.sample(MAX_TABLE_ROWS, random_state=0)
        artifact = load(run.path)
        synth = artifact.sample(len(real), seed=0)
        kinds = column_kinds(real, [c for c in (opts.get("discrete_columns") or []) if c in real.columns])
    except (ConfigError, ValueError, OSError) as e:
        return head + f'<p class="note">cannot compare: {escape(str(e).splitlines()[0] if str(e) else repr(e))}</p>'
    names = [c for c in kinds if c in getattr(synth, "columns", [])][:MAX_TABLE_COLUMNS]
    charts = "".join(f'<div class="hist" data-column="{escape(str(c))}"><div>{escape(str(c))} '
                     f"<small>({escape(kinds[c])})</small></div>{_svg_hist(str(c), kinds[c], real[c], synth[c])}</div>"
                     for c in names)
    more = f"<p>({len(kinds) - len(names)} more columns left out)</p>" if len(kinds) > len(names) else ""
    return (head + f"<p>{len(real):,} real rows from {escape(src)}; as many synthetic rows (seed 0)</p>"
            f'<div class="tabular">{charts}</div>{more}')


class Tables(DataKind):
    """Rows of a table (G's output spans: continuous columns and one-hot categories)."""

    name = "tables"
    description = "tables: column shapes, pair trends, detection AUC; real against synthetic columns"

    def matches(self, spec: DataSpec, transform: Any) -> bool:
        return getattr(transform, "kind", None) == "tabular"

    def finish(self, run: RunContext, out: Path) -> None:
        pass  # rows are no picture: the report compares them with the real ones

    def summary(self, run: RunContext) -> dict[str, Any]:
        return _quality(table_metrics(run.artifact, run.data))

    def sample(self, gen: Any, args: argparse.Namespace) -> dict[str, Any]:
        from ganforge.data.table_io import write_table

        out = Path(args.out)
        df = gen.sample(args.n, seed=args.seed)
        write_table(df, out)
        return {"n": len(df), "out": str(out)}

    def evaluate(self, cfg: Config, gen: Any, run: Path, args: argparse.Namespace, out: Path) -> dict[str, Any]:
        from ganforge.data import build_dataset

        data = build_dataset(cfg.data.name, cfg.data.options, cfg.data.path)
        scores = table_metrics(gen, data)
        if not scores:
            raise ConfigError(f"{run}: no rows were held out of its training to compare with (data.options."
                              "holdout is 0, the table has under 50 rows, or it was streamed)")
        return scores

    def report(self, run: Any) -> str:
        return tabular_html(run)


register_kind(Tables(), builtin=True)
