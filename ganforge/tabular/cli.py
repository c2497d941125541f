"""``ganforge tabular fit | sample | eval``: tables from the command line.

Bad input is one line and exit code 2 (a :class:`~ganforge.registry.ConfigError`); outputs are
written atomically, so a failed command leaves no half-written file.
"""
from __future__ import annotations

import argparse
import json
import shlex
import sys
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ganforge.registry import ConfigError


@contextmanager
def _table_warnings() -> Iterator[None]:
    """Show the table reader's warnings (encoding assumed, values treated as missing) as lines."""
    from ganforge.data.table_io import TableWarning

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", TableWarning)
        try:
            yield
        finally:
            for w in caught:
                if issubclass(w.category, TableWarning):
                    print(f"ganforge: warning: {w.message}", file=sys.stderr)
                else:
                    warnings.showwarning(w.message, w.category, w.filename, w.lineno)


def _columns(text: str | None) -> list[str] | None:
    if text is None:
        return None
    return [c.strip() for c in text.split(",") if c.strip()]


def _conditions(items: list[str] | None) -> dict[str, str]:
    out = {}
    for item in items or []:
        col, sep, value = item.partition("=")
        if not sep or not col.strip():
            raise ConfigError(f"--condition expects COLUMN=VALUE, got '{item}'")
        out[col.strip()] = value
    return out


def _resume_command(args: argparse.Namespace) -> str:
    """The ``ganforge tabular fit`` command that continues this one (its options, and ``--resume``)."""
    cmd = ["ganforge", "tabular", "fit", args.data, "--out", args.out, "--model", args.model]
    options = {"--discrete": args.discrete, "--epochs": args.epochs, "--batch-size": args.batch_size,
               "--seed": args.seed, "--quality-every": args.quality_every, "--patience": args.patience,
               "--delimiter": args.delimiter, "--encoding": args.encoding}
    for flag, value in options.items():
        if value is not None:
            cmd += [flag, str(value)]
    return shlex.join(cmd + (["--no-progress"] if args.no_progress else []) + ["--resume"])


def cmd_fit(args: argparse.Namespace) -> int:
    from ganforge.data.table_io import read_table
    from ganforge.tabular.model import TabularGAN, TabularVAE
    from ganforge.training.callbacks import Interrupted

    out = Path(args.out)
    with _table_warnings():
        df = read_table(args.data, delimiter=args.delimiter, encoding=args.encoding)
        cls = TabularVAE if args.model == "vae" else TabularGAN
        model = cls(epochs=args.epochs, batch_size=args.batch_size, seed=args.seed,
                    quality_every=args.quality_every, patience=args.patience, progress=not args.no_progress)
        try:
            model.fit(df, discrete_columns=_columns(args.discrete), out=out, resume=args.resume)
        except Interrupted as e:
            e.resume = _resume_command(args)
            raise
    assert model.transformer is not None
    for line in model.transformer.summary():
        print(f"  {line}", file=sys.stderr)
    s = model.summary
    parts = [f"{args.model} fitted on {len(df)} rows x {df.shape[1]} columns", f"{s['steps']} steps in "
             f"{s['wall_seconds']:.0f} s"]
    if "best_quality" in s:
        parts.append(f"best quality {s['best_quality']:.3f} at epoch {s['best_epoch']}")
    if "stopped_early" in s:
        parts.append(f"stopped early: {s['stopped_early']}")
    print(f"ganforge: {'; '.join(parts)}; sample with `ganforge tabular sample {out} --n N --out FILE.csv`",
          file=sys.stderr)
    print(json.dumps({k: s[k] for k in ("steps", "wall_seconds", "best_quality", "best_epoch") if k in s}
                     | {"out": str(out)}))
    return 0


def cmd_sample(args: argparse.Namespace) -> int:
    from ganforge.data.table_io import write_table
    from ganforge.generator import load

    if args.n < 1:
        raise ConfigError(f"--n must be at least 1, got {args.n}")
    artifact = load(args.model)
    if getattr(artifact.transform, "kind", None) != "tabular":
        raise ConfigError(f"{args.model} is not a tabular model (use `ganforge sample` for other runs)")
    df = artifact.sample(args.n, seed=args.seed, conditions=_conditions(args.condition) or None)
    write_table(df, args.out)
    print(f"ganforge: {len(df)} rows written to {args.out}", file=sys.stderr)
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from ganforge.data.table_io import read_table
    from ganforge.metrics.table import evaluate_table

    with _table_warnings():
        real = read_table(args.real, delimiter=args.delimiter)
        synth = read_table(args.synth, delimiter=args.delimiter)
    if args.target is not None and args.target not in real.columns:
        raise ConfigError(f"--target '{args.target}' is not a column of {args.real}")
    try:
        scores = evaluate_table(real, synth, discrete_columns=_columns(args.discrete), target=args.target,
                                seed=args.seed, detection_rows=args.detection_rows)
    except ValueError as e:
        raise ConfigError(str(e).splitlines()[0]) from None
    rows = [("Column Shapes", "column_shapes", "higher is better, 1 = identical marginals"),
            ("Column Pair Trends", "column_pair_trends", "higher is better"),
            ("Quality (mean of the two)", "quality", "SDMetrics' overall score"),
            ("Detection ROC AUC", "detection_auc", "0.5 = indistinguishable, 1 = always told apart"),
            ("ML efficacy F1", "ml_efficacy_f1", f"train on synthetic, test on real ({args.target})")]
    for label, key, note in rows:
        if key in scores:
            print(f"{label:<28} {scores[key]:7.4f}   {note}")
    out = Path(args.out) if args.out else Path(args.synth).with_name(Path(args.synth).name.split(".")[0] + ".eval.json")
    from ganforge.io import atomic_write_text
    from ganforge.metrics.table import column_kinds
    from ganforge.report.plots import plot_table_columns

    atomic_write_text(out, json.dumps(scores, indent=2, default=str))
    picture = out.with_suffix(".png")
    plot_table_columns(real, synth, column_kinds(real, _columns(args.discrete)), picture, scores.get("columns"))
    print(f"ganforge: scores written to {out}; real vs synthetic, column by column: {picture}", file=sys.stderr)
    return 0


def add_commands(sub: Any, parser_class: type, lazy: Callable[[str], Callable[[argparse.Namespace], int]]) -> None:
    """The ``tabular`` command and its subcommands (``lazy(name)`` defers importing pandas)."""
    tab = sub.add_parser("tabular", help="tables: fit a tabular GAN or VAE, sample it, score synthetic data")
    tsub = tab.add_subparsers(dest="tabular_command", required=True, parser_class=parser_class)
    f = tsub.add_parser("fit", help="fit a table (CSV, TSV, Parquet; gzip allowed)")
    f.add_argument("data", help="the table file")
    f.add_argument("--out", required=True, help="model folder (checkpoints, log, generator.safetensors)")
    f.add_argument("--model", choices=["gan", "vae"], default="gan", help="CTGAN-class GAN (default) or TVAE")
    f.add_argument("--discrete", help="comma-separated discrete columns (default: detected)")
    f.add_argument("--epochs", type=int, default=300)
    f.add_argument("--batch-size", type=int, default=500)
    f.add_argument("--seed", type=int, default=0)
    f.add_argument("--quality-every", type=int, default=0, metavar="EPOCHS",
                   help="score the samples every N epochs and keep the best model (0 = off)")
    f.add_argument("--patience", type=int, default=0, help="stop after N scores without improvement (0 = never)")
    f.add_argument("--resume", action="store_true", help="continue the fit saved in --out")
    f.add_argument("--delimiter", help="field separator (default: detected)")
    f.add_argument("--encoding", help="text encoding (default: detected)")
    f.add_argument("--no-progress", action="store_true")
    f.set_defaults(fn=lazy("cmd_fit"))
    s = tsub.add_parser("sample", help="sample a fitted table model")
    s.add_argument("model", help="model folder or generator.safetensors")
    s.add_argument("--n", type=int, required=True)
    s.add_argument("--out", required=True, help="OUT.csv, .tsv, .parquet (.csv.gz / .tsv.gz compressed)")
    s.add_argument("--condition", action="append", metavar="COLUMN=VALUE",
                   help="only rows with this value (discrete columns; repeatable)")
    s.add_argument("--seed", type=int, default=0)
    s.set_defaults(fn=lazy("cmd_sample"))
    e = tsub.add_parser("eval", help="score a synthetic table against a real one")
    e.add_argument("real")
    e.add_argument("synth")
    e.add_argument("--target", help="column for machine-learning efficacy (train on synthetic, test on real)")
    e.add_argument("--discrete", help="comma-separated discrete columns (default: detected)")
    e.add_argument("--detection-rows", type=int, default=None, help="rows per side for the detection score")
    e.add_argument("--seed", type=int, default=0)
    e.add_argument("--delimiter")
    e.add_argument("--out", help="JSON file (default: SYNTH's name + .eval.json)")
    e.set_defaults(fn=lazy("cmd_eval"))
