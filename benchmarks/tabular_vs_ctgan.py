#!/usr/bin/env python3
"""ganforge's tabular GAN and VAE against the ``ctgan`` package (CTGAN and TVAE) on UCI Adult.

Protocol (issue 12): ``../shared/data/tabular/adult.tsv.gz``, a fixed seeded 80/20 split (numpy
``default_rng(0)`` permutation); the nine text columns are discrete for every method; ctgan's default
settings (300 epochs, batch 500, pac 10) and the same for ganforge's presets; 3 seeds. For each fit:
wall time of ``fit`` (preprocessing included), then as many synthetic rows as training rows are
scored against the real test rows: Column Shapes and Column Pair Trends (SDMetrics' definitions),
detection ROC AUC (logistic regression, real vs synthetic, cross-validated; 0.5 = indistinguishable)
and machine-learning efficacy on ``label`` as SDGym measures it (binary F1 on the real test rows,
mean of a depth-15 decision tree, AdaBoost, logistic regression and an MLP of 50 units). The real
training rows are scored the same way as the ceiling.

Stages, both resumable: ``fit`` appends one record per (method, seed) to WORK/fits.jsonl and writes
the synthetic table to WORK/synth_METHOD_SEED.csv (a record already there is skipped); ``score``
evaluates every synthetic table and writes the results file (``--out``) with a Markdown table beside it.

Usage: python benchmarks/tabular_vs_ctgan.py [--stage fit score] [--methods ganforge ganforge-tvae ctgan ctgan-tvae]
           [--seeds 0 1 2] [--epochs 300] [--threads 2] [--work runs/tabular_bench]
           [--out docs/results/tabular_vs_ctgan.json]
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import results_file  # noqa: E402

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "tabular" / "adult.tsv.gz"
METHODS = ("ganforge", "ganforge-tvae", "ctgan", "ctgan-tvae")
TARGET = "label"


def load_split(path: Path = DATA) -> tuple[pd.DataFrame, pd.DataFrame, list[str]]:
    """Adult, its fixed 80/20 split and its discrete (text) columns."""
    df = pd.read_csv(path, sep="\t")
    perm = np.random.default_rng(0).permutation(len(df))
    cut = int(0.8 * len(df))
    train, test = df.iloc[perm[:cut]].reset_index(drop=True), df.iloc[perm[cut:]].reset_index(drop=True)
    discrete = [c for c in df.columns if df[c].dtype == object]
    return train, test, discrete


def fit_one(method: str, seed: int, train: pd.DataFrame, discrete: list[str],
            epochs: int) -> tuple[float, pd.DataFrame]:
    """Fit one model; returns the wall time of its fit and as many synthetic rows as training rows."""
    torch.manual_seed(seed)
    np.random.seed(seed)
    if method.startswith("ctgan"):
        from ctgan import CTGAN, TVAE

        model = (TVAE if method == "ctgan-tvae" else CTGAN)(epochs=epochs)
        model.set_random_state(seed)
        t0 = time.perf_counter()
        model.fit(train, discrete)
        wall = time.perf_counter() - t0
        return wall, model.sample(len(train))
    from ganforge.tabular import TabularGAN, TabularVAE

    cls = TabularVAE if method == "ganforge-tvae" else TabularGAN
    model = cls(epochs=epochs, seed=seed, progress=False)
    t0 = time.perf_counter()
    model.fit(train, discrete_columns=discrete)
    wall = time.perf_counter() - t0
    return wall, model.sample(len(train), seed=seed)


def current_variant() -> str:
    """How ganforge's presets differ from the first measured code (ee05d9a): "ftz" once they
    flush denormals to zero. Records of both stay in the results, labelled."""
    from ganforge.config import load_config

    return "ftz" if load_config("tabular-ctgan").train.flush_denormal else ""


def stage_fit(args: argparse.Namespace, work: Path) -> None:
    train, _, discrete = load_split()
    fits = work / "fits.jsonl"
    done = set()
    variant = current_variant()
    if fits.is_file():
        done = {(r["method"], r["seed"], r.get("variant", "")) for r in map(json.loads, fits.read_text().splitlines())
                if r}
    for seed in args.seeds:
        for method in args.methods:
            v = variant if method.startswith("ganforge") else ""
            if (method, seed, v) in done:
                continue
            print(f"fitting {method} seed {seed} ({args.epochs} epochs)...", file=sys.stderr, flush=True)
            header = results_file.header(__file__)  # the commit of the code this fit runs
            wall, synth = fit_one(method, seed, train, discrete, args.epochs)
            path = work / f"synth_{method}{'-' + v if v else ''}_{seed}.csv"
            synth.to_csv(path, index=False)
            record = {"method": method, "variant": v, "seed": seed, "epochs": args.epochs,
                      "fit_seconds": round(wall, 2), "synthetic": path.name, **header}
            with fits.open("a") as f:
                f.write(json.dumps(record) + "\n")
            print(f"  {method} seed {seed}: fit {wall:.1f} s", file=sys.stderr, flush=True)


def stage_score(args: argparse.Namespace, work: Path) -> None:
    from ganforge.metrics.table import evaluate_table

    train, test, discrete = load_split()
    fits = [json.loads(line) for line in (work / "fits.jsonl").read_text().splitlines() if line]
    rows: list[dict[str, Any]] = []

    def scored(name: str, table: Any) -> dict[str, Any]:
        # Scores are kept beside the synthetic table, so adding a run does not re-score the others.
        cache = work / f"scores_{name}.json"
        if cache.is_file():
            return json.loads(cache.read_text())
        print(f"scoring {name}...", file=sys.stderr, flush=True)
        scores = evaluate_table(test, table() if callable(table) else table, discrete_columns=discrete,
                                target=TARGET, seed=0)
        cache.write_text(json.dumps(scores, default=str))
        return scores

    rows.append({"method": "real (training rows)", "seed": None, **_flat(scored("real", train))})
    for rec in fits:
        if rec["method"] not in args.methods or rec["seed"] not in args.seeds:
            continue
        scores = scored(Path(rec["synthetic"]).stem, lambda rec=rec: pd.read_csv(work / rec["synthetic"]))
        label = rec["method"] + (" (flush_denormal)" if rec.get("variant") == "ftz" else
                                 " (flush_denormal off)" if rec["method"].startswith("ganforge") else "")
        rows.append({"method": label, "seed": rec["seed"], "epochs": rec["epochs"],
                     "fit_seconds": rec["fit_seconds"], "fit_cpu": rec["cpu"]["model"], "fit_date": rec["date"],
                     "fit_threads": rec["threads"], "fit_commit": rec["git_commit"], **_flat(scores)})
    results = {**results_file.header(__file__), "protocol": __doc__.split("Stages")[0].strip(),
               "rows": rows, "means": _means(rows)}
    out = Path(args.out)
    results_file.write(out, results)
    out.with_suffix(".md").write_text(markdown(results))
    print(markdown(results))


KEYS = ("fit_seconds", "column_shapes", "column_pair_trends", "quality", "detection_auc", "ml_efficacy_f1")


def _flat(scores: dict[str, Any]) -> dict[str, Any]:
    return {k: scores[k] for k in KEYS[1:] if k in scores} | {"ml_efficacy_models": scores.get("ml_efficacy_models")}


def _means(rows: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    by: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        by.setdefault(r["method"], []).append(r)
    return {m: {k: statistics.mean(r[k] for r in rs) for k in KEYS if all(k in r for r in rs)} | {"runs": len(rs)}
            for m, rs in by.items()}


def markdown(results: dict[str, Any]) -> str:
    lines = [f"Command: `{results['command']}`  ", f"CPU: {results['cpu']['model']}, torch {results['torch']}",
             "", "| method | runs | fit s | Column Shapes | Column Pair Trends | quality | detection AUC | ML F1 |",
             "|---|---|---|---|---|---|---|---|"]
    for m, v in results["means"].items():
        fit = f"{v['fit_seconds']:.0f}" if "fit_seconds" in v else "-"
        lines.append(f"| {m} | {v['runs']} | {fit} | {v['column_shapes']:.3f} | {v['column_pair_trends']:.3f} | "
                     f"{v['quality']:.3f} | {v['detection_auc']:.3f} | {v['ml_efficacy_f1']:.3f} |")
    means = results["means"]
    lines.append("")
    pairs = [(f"{g}{v}", c) for g, c in (("ganforge", "ctgan"), ("ganforge-tvae", "ctgan-tvae"))
             for v in (" (flush_denormal off)", " (flush_denormal)")]
    for ours, theirs in pairs:
        if ours in means and theirs in means and "fit_seconds" in means[ours] and "fit_seconds" in means[theirs]:
            a, b = means[ours], means[theirs]
            ratio = a["fit_seconds"] / b["fit_seconds"]
            better = [k for k in KEYS[1:] if k in a and k in b]
            wins = [k for k in better if (a[k] <= b[k] if k == "detection_auc" else a[k] >= b[k])]
            lines.append(f"- {ours} vs {theirs}: fit time ratio {ratio:.3f} (target <= 0.5); at least as good on "
                         f"{len(wins)} of {len(better)} scores ({', '.join(wins) or 'none'})")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--stage", nargs="+", default=["fit", "score"], choices=["fit", "score"])
    ap.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--epochs", type=int, default=300)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--work", default="runs/tabular_bench")
    ap.add_argument("--out", default="docs/results/tabular_vs_ctgan.json")
    args = ap.parse_args()
    if not DATA.is_file():
        sys.exit(f"skipped: {DATA} is not here (the shared data directory is needed)")
    torch.set_num_threads(args.threads)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    if "fit" in args.stage:
        stage_fit(args, work)
    if "score" in args.stage:
        stage_score(args, work)


if __name__ == "__main__":
    main()
