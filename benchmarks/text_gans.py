#!/usr/bin/env python3
"""Text GANs against maximum likelihood, measured as the text-GAN literature measures them (issue 13).

Runs (train them first, one thread each; two can share the 2 cores):

    ganforge train oracle-mle    --out runs/text_bench/oracle-mle    (and oracle-seqgan, oracle-gumbel)
    ganforge train coco-mle      --out runs/text_bench/coco-mle      (and coco-seqgan, coco-gumbel)

This script scores every finished run folder under ``--runs``:

- the synthetic oracle (SeqGAN, Yu et al. 2017): NLL-oracle of 10,000 generated sequences and NLL-test
  on the 10,000 held-out oracle sequences, for the final model and for the MLE model an adversarial
  run started from (read from its training log at the end of pretraining, 2,000 sequences);
- MS-COCO captions (the Texygen split): BLEU-2..5 against the whole test set and Self-BLEU-2..5 of
  10,000 generated sentences (NLTK's sentence BLEU, smoothing method 1, uniform weights, as Texygen),
  Texygen's fast mode beside them (BLEU against the first 500 test sentences, Self-BLEU among the
  first 500 generated), NLL-test per token, and the training set scored the same way as a reference;
- the quality-diversity curve over softmax temperatures for every model: BLEU-5 against Self-BLEU-5,
  NLL-oracle against NLL-test; JSON and a PNG per data set; for each adversarial point, MLE's
  quality at the same diversity (its curve interpolated) and whether the adversarial model is better.

A run continued with ``ganforge train --resume RUN --steps N`` keeps each earlier segment's
summary and generator as ``summary_STEP.json`` / ``generator_STEP.safetensors``: its training time is
the sum of the segments', and the earlier generators are scored too (``at_step``).

Usage: python benchmarks/text_gans.py [--runs runs/text_bench] [--n 10000]
           [--temperatures 0.6 0.7 0.8 0.9 1.0 1.1 1.25 1.5] [--out docs/results/text_gans.json]
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import results_file  # noqa: E402

from ganforge.data import build_dataset  # noqa: E402
from ganforge.generator import load  # noqa: E402
from ganforge.metrics.bleu import (  # noqa: E402
    bleu,
    bleu_per_sentence,
    self_bleu,
    sentence_bleu_nltk,
    tokenize_lines,
)
from ganforge.metrics.text import CURVE_TEMPERATURES, evaluate_text, temperature_curve  # noqa: E402
from ganforge.report.plots import plot_text_curves  # noqa: E402
from ganforge.training.run import load_run_config  # noqa: E402

PRESETS = {"oracle": ("oracle-mle", "oracle-seqgan", "oracle-gumbel"),
           "coco": ("coco-mle", "coco-seqgan", "coco-gumbel")}
# Texygen's published COCO rows (Zhu et al. 2018, table of real-data results).
TEXYGEN = {"SeqGAN": {"bleu2": 0.745, "bleu5": 0.180, "self_bleu2": 0.950},
           "LeakGAN": {"bleu2": 0.746, "bleu5": 0.230, "self_bleu2": 0.966},
           "training data": {"bleu2": 0.740, "bleu5": 0.218, "self_bleu2": 0.892}}


def numbers(d: dict[str, Any]) -> dict[str, float]:
    return {k: round(float(v), 4) for k, v in d.items() if isinstance(v, (int, float)) and k != "temperature"}


def pretrained_point(run: Path, cfg: Any) -> dict[str, Any] | None:
    """The training log's evaluation at the end of MLE pretraining (the model the adversarial phase started from)."""
    p = cfg.model.text.pretrain_steps
    if cfg.model.objective == "mle" or not p:
        return None
    for line in (run / "log.jsonl").read_text().splitlines():
        row = json.loads(line)
        if row.get("step") == p and any(k.startswith("eval/") for k in row):
            return {"step": p, **{k[5:]: round(v, 4) for k, v in row.items() if k.startswith("eval/")}}
    return None


def score_run(run: Path, n: int, temps: list[float]) -> dict[str, Any]:
    cfg = load_run_config(run)
    summary = json.loads((run / "summary.json").read_text())
    gen = load(run)
    data = build_dataset(cfg.data.name, cfg.data.options, cfg.data.path)
    t0 = time.perf_counter()
    whole = evaluate_text(gen, data, n=n)
    # A run continued with --resume: the summary of each earlier segment was kept as summary_STEP.json
    # (with its generator as generator_STEP.safetensors); its wall time is the sum of the segments'.
    segments = sorted(run.glob("summary_*.json"), key=lambda p: int(p.stem.split("_")[1]))
    walls = [json.loads(p.read_text())["wall_seconds"] for p in segments] + [summary["wall_seconds"]]
    out: dict[str, Any] = {"preset": cfg.preset, "objective": cfg.model.objective, "steps": summary["steps"],
                           "train_wall_seconds": round(sum(walls), 1), "segment_wall_seconds": walls,
                           "status": summary["status"], "final": numbers(whole), "protocol": whole["protocol"]}
    earlier = {}
    for seg in segments:
        step = seg.stem.split("_")[1]
        g = run / f"generator_{step}.safetensors"
        if g.is_file():
            earlier[step] = numbers(evaluate_text(load(g), data, n=n))
    if earlier:
        out["at_step"] = earlier
    if getattr(data, "oracle", None) is None:
        out["final_fast"] = numbers(evaluate_text(gen, data, n=n, fast=True))
    # The metrics logged during training (2,000 sentences each, eval_every steps): the trajectory.
    out["training_evals"] = [{"step": r["step"], **{k[5:]: round(v, 4) for k, v in r.items() if k.startswith("eval/")}}
                             for r in map(json.loads, (run / "log.jsonl").read_text().splitlines())
                             if any(k.startswith("eval/") for k in r)]
    start = pretrained_point(run, cfg)
    if start is not None:
        out["mle_start"] = start
    out["curve"] = [{"temperature": p["temperature"], **numbers(p)}
                    for p in temperature_curve(gen, data, temps, n=n)]
    out["score_seconds"] = round(time.perf_counter() - t0, 1)
    print(f"{cfg.preset}: {out['final']}", file=sys.stderr, flush=True)
    return out


def training_set_row(n: int, check: int = 20) -> dict[str, Any]:
    """The COCO training captions scored as if generated (Texygen's 'training data' row), with the
    time each metric takes and a spot check of ``check`` sentences against NLTK called directly."""
    data = build_dataset("coco-captions", {})
    t0 = time.perf_counter()
    hyps, refs = tokenize_lines(list(data.lines)[:n]), tokenize_lines(list(data.test_lines))
    t1 = time.perf_counter()
    whole_bleu = bleu(hyps, refs)
    t2 = time.perf_counter()
    whole_self = self_bleu(hyps)
    t3 = time.perf_counter()
    per = bleu_per_sentence(hyps[:check], refs, orders=(2, 5))
    worst = max(abs(per[f"bleu{k}"][i] - sentence_bleu_nltk(refs, hyps[i], k)) for i in range(check) for k in (2, 5))
    return {"whole": {**whole_bleu, **whole_self},
            "fast": {**bleu(hyps, refs, fast=True), **self_bleu(hyps, fast=True)}, "sentences": len(hyps),
            "seconds": {"tokenize_both": round(t1 - t0, 2), "bleu2_5_whole": round(t2 - t1, 2),
                        "self_bleu2_5_whole": round(t3 - t2, 2)},
            "nltk_spot_check": {"sentences": check, "orders": [2, 5], "max_abs_difference": worst}}


def interpolate(curve: list[dict[str, Any]], x_key: str, y_key: str, x: float) -> float | None:
    """The MLE curve's y at ``x`` (linear between its two nearest points in x), None outside its range."""
    pts = sorted((p[x_key], p[y_key]) for p in curve if x_key in p and y_key in p)
    for (x0, y0), (x1, y1) in zip(pts, pts[1:], strict=False):
        if x0 <= x <= x1:
            return y0 if x1 == x0 else y0 + (y1 - y0) * (x - x0) / (x1 - x0)
    return None


def verdict(mle: list[dict[str, Any]], other: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    """For each point of an adversarial curve: MLE's quality at the same diversity (its curve,
    interpolated over temperature), and whether the adversarial point is better. COCO: BLEU-5 at
    the same Self-BLEU-5 (higher is better); oracle: NLL-oracle at the same NLL-test (lower is better)."""
    x_key, y_key, higher = (("self_bleu5", "bleu5", True) if kind == "coco" else ("nll_test", "nll_oracle", False))
    out = []
    for p in other:
        ref = interpolate(mle, x_key, y_key, p[x_key])
        better = None if ref is None else (p[y_key] > ref if higher else p[y_key] < ref)
        out.append({"temperature": p["temperature"], x_key: p[x_key], y_key: p[y_key],
                    f"mle_{y_key}_at_same_{x_key}": None if ref is None else round(ref, 4), "better_than_mle": better})
    return out


def markdown(results: dict[str, Any]) -> str:
    """The tables of the results file, for docs/BENCHMARKS.md."""
    runs, lines = results["runs"], [f"Written by `{results['command']}` on {results['date']} "
                                     f"({results['cpu']['model']}), commit {results['git_commit']}.", ""]
    oracle = [p for p in PRESETS["oracle"] if p in runs]
    if oracle:
        lines += ["| oracle run | NLL-oracle | NLL-test | MLE start: NLL-oracle / NLL-test (2,000 seqs) | "
                  "train wall s |", "|---|---|---|---|---|"]
        for p in oracle:
            r, st = runs[p], runs[p].get("mle_start", {})
            start = f"{st['nll_oracle']:.3f} / {st['nll_test']:.3f}" if st else "-"
            lines.append(f"| {p} | {r['final']['nll_oracle']:.3f} | {r['final']['nll_test']:.3f} | {start} | "
                         f"{r['train_wall_seconds']:.0f} |")
        lines.append("")
    coco = [p for p in PRESETS["coco"] if p in runs]
    if coco:
        keys = ["bleu2", "bleu3", "bleu4", "bleu5", "self_bleu2", "self_bleu3", "self_bleu4", "self_bleu5"]
        lines += ["| COCO | mode | " + " | ".join(k.replace("self_bleu", "SB-").replace("bleu", "B-") for k in keys)
                  + " | NLL-test | train wall s |", "|---" * (len(keys) + 4) + "|"]
        for p in coco:
            r = runs[p]
            for mode, m in (("whole", r["final"]), ("fast", r.get("final_fast", {}))):
                vals = " | ".join(f"{m[k]:.3f}" if k in m else "-" for k in keys)
                lines.append(f"| {p} | {mode} | {vals} | {r['final'].get('nll_test', float('nan')):.3f} | "
                             f"{r['train_wall_seconds']:.0f} |")
        ts = results.get("coco_training_set")
        if ts:
            for mode in ("whole", "fast"):
                vals = " | ".join(f"{ts[mode][k]:.3f}" for k in keys)
                lines.append(f"| training set | {mode} | {vals} | - | - |")
        for name, row in TEXYGEN.items():
            vals = " | ".join(f"{row[k]:.3f}" if k in row else "" for k in keys)
            lines.append(f"| Texygen's {name} (published) | | {vals} | | |")
        lines.append("")
    for p, r in runs.items():
        if "against_mle_curve" in r:
            v = r["against_mle_curve"]
            better = [x["temperature"] for x in v if x["better_than_mle"]]
            judged = [x for x in v if x["better_than_mle"] is not None]
            lines.append(f"{p} against the MLE curve: better at temperatures {better or 'none'} "
                         f"of the {len(judged)} inside MLE's range ({len(v) - len(judged)} outside it).")
        lines.append(f"Curve of {p} (temperature: " + ", ".join(
            f"{c['temperature']}: " + (f"B-5 {c['bleu5']:.3f} SB-5 {c['self_bleu5']:.3f}" if "bleu5" in c
                                      else f"NLL-oracle {c['nll_oracle']:.3f} NLL-test {c['nll_test']:.3f}")
            for c in r["curve"]) + ")")
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", default="runs/text_bench")
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--temperatures", type=float, nargs="+", default=list(CURVE_TEMPERATURES))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default="docs/results/text_gans.json")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    results: dict[str, Any] = {**results_file.header("benchmarks/text_gans.py"), "n": args.n,
                               "temperatures": args.temperatures, "texygen_published": TEXYGEN, "runs": {}}
    for kind, presets in PRESETS.items():
        for preset in presets:
            run = Path(args.runs) / preset
            if not (run / "summary.json").is_file() or not (run / "generator.safetensors").is_file():
                print(f"{preset}: no finished run at {run}; skipped", file=sys.stderr)
                continue
            results["runs"][preset] = score_run(run, args.n, args.temperatures)
            results_file.write(out, results)  # as it goes
        curves = {p: results["runs"][p]["curve"] for p in presets if p in results["runs"]}
        if presets[0] in curves:
            for p in presets[1:]:
                if p in curves:
                    results["runs"][p]["against_mle_curve"] = verdict(curves[presets[0]], curves[p], kind)
        if curves:
            title = ("synthetic oracle: NLL-oracle against NLL-test over softmax temperatures" if kind == "oracle"
                     else "MS-COCO captions: BLEU-5 against Self-BLEU-5 over softmax temperatures")
            plot_text_curves(curves, out.with_name(f"text_curve_{kind}.png"), title)
    results["coco_training_set"] = ts = training_set_row(args.n)
    results_file.write(out, results)
    coco = {p: results["runs"][p]["curve"] for p in PRESETS["coco"] if p in results["runs"]}
    if coco:  # again, with the training set as a reference point
        plot_text_curves(coco, out.with_name("text_curve_coco.png"),
                         "MS-COCO captions: BLEU-5 against Self-BLEU-5 over softmax temperatures",
                         {f"training set ({ts['sentences']:,} sentences)": ts["whole"]})
    out.with_suffix(".md").write_text(markdown(results) + "\n")


if __name__ == "__main__":
    main()
