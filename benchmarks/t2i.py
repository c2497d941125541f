#!/usr/bin/env python3
"""Text to image on the procedural shapes data set: GAN-CLS, GAN-INT, GAN-INT-CLS and the plain
conditional baseline, scored by machine-checkable captions (issue 14).

Runs (train them first, one thread each; two can share the 2 cores):

    ganforge train shapes-t2i-plain --out runs/t2i_bench/shapes-t2i-plain   (and shapes-t2i-cls,
    shapes-t2i-int, shapes-t2i, shapes-t2i-ms)

This script scores every finished run folder under ``--runs`` with
:func:`ganforge.metrics.captioned.evaluate_captioned` on ``--n`` captions per split (one generated
image each): caption consistency on the test captions, on held-out phrasings and on held-out
(shape, colour) pairs (overall and per attribute, with the attribute classifier on the real images
of the same captions as the ceiling), R-precision among 100 captions, FID with the attribute
classifier's features, and fixed-caption diversity (mean pairwise feature distance of 100 samples
for a caption that leaves attributes free, against 100 real images satisfying it; distinct values
of the free attributes covered). Each run's training wall time comes from its summary. Every run
uses the same attribute classifier (trained once here, seeded, on the real training images).

Further seeds of a preset are run folders named ``PRESET-seedN`` beside ``PRESET`` (e.g.
``--set train.seed=1 --out runs/t2i_bench/shapes-t2i-cls-seed1``): their headlines are recorded
under ``seed_headlines``. GAN-CLS is compared with the baseline metric by metric (:func:`compare`):
"better" or "worse" only when the gap between the means over seeds exceeds the spread over seeds
(the wider of the two models' ranges); with one seed of either model the spread is unknown, and the
verdict is "within noise (one seed)".

Writes ``--out`` (JSON, as it goes), a Markdown table beside it and ``t2i_captions.png`` (the same
captions and noise for every model, a row per model block). ``--relabel FILE`` recomputes the
comparison of a results file from the numbers it records, scoring nothing.

Usage: python benchmarks/t2i.py [--runs runs/t2i_bench] [--n 2000] [--out docs/results/t2i.json]
       python benchmarks/t2i.py --relabel docs/results/t2i.json
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

from ganforge.data.captioned import caption_splits  # noqa: E402
from ganforge.generator import load  # noqa: E402
from ganforge.metrics.captioned import attribute_net_for, evaluate_captioned  # noqa: E402
from ganforge.metrics.t2i import attribute_accuracy, predict_attributes  # noqa: E402
from ganforge.report.pictures import caption_grid  # noqa: E402
from ganforge.training.run import load_run_config  # noqa: E402

PRESETS = {"shapes-t2i-plain": "baseline (no mismatch term)", "shapes-t2i-cls": "GAN-CLS",
           "shapes-t2i-int": "GAN-INT", "shapes-t2i": "GAN-INT-CLS", "shapes-t2i-ms": "GAN-INT-CLS + mode seeking"}
TARGETS = {"consistency_heldout_phrasings": 0.90, "consistency_heldout_combos": 0.80, "diversity_ratio": (0.8, 1.2)}
PICTURE_CAPTIONS = ["a big blue square at the bottom", "a small red circle at the top left",
                    "a red triangle", "a blue circle in the middle", "a big white diamond on the right",
                    "there is a tiny green box at the top"]


COMPARE_RULE = ("better/worse only when the gap between the means over seeds exceeds the wider of the two "
                "models' ranges over seeds; within noise otherwise (with one seed: no spread measured)")


def compare(ours: list[float], theirs: list[float], lower_is_better: bool = False) -> dict[str, Any]:
    """One metric of two models over their seeds: the means, the gap (ours - theirs), the spread
    over seeds (the wider of the two ranges, max - min) and the verdict: "better" or "worse" only
    when the gap exceeds the spread, "within seed spread" when it does not, and "within noise
    (one seed)" when either model has a single seed (its spread is not measured)."""
    mean_a, mean_b = sum(ours) / len(ours), sum(theirs) / len(theirs)
    gap = mean_a - mean_b
    out: dict[str, Any] = {"gan_cls": round(mean_a, 4), "baseline": round(mean_b, 4), "gap": round(gap, 4),
                           "seeds": [len(ours), len(theirs)]}
    if min(len(ours), len(theirs)) < 2:
        out["spread"], out["verdict"] = None, "within noise (one seed)"
        return out
    spread = max(max(ours) - min(ours), max(theirs) - min(theirs))
    out["spread"] = round(spread, 4)
    if abs(gap) <= spread:
        out["verdict"] = "within seed spread"
    else:
        out["verdict"] = "better" if (gap < 0) == lower_is_better else "worse"
    return out


def seed_values(run: dict[str, Any], key: str) -> list[float]:
    """A metric's values over a recorded run's seeds (its headline alone when it has one seed)."""
    heads = [s["headline"] for s in run.get("seed_headlines", [])] or [run["headline"]]
    return [float(h[key]) for h in heads if key in h]


def gan_cls_vs_baseline(runs: dict[str, Any]) -> dict[str, Any] | None:
    """GAN-CLS against the baseline on every headline metric both record but diversity, by :func:`compare`."""
    if "shapes-t2i-cls" not in runs or "shapes-t2i-plain" not in runs:
        return None
    c, b = runs["shapes-t2i-cls"], runs["shapes-t2i-plain"]
    out: dict[str, Any] = {"rule": COMPARE_RULE}
    for key in c["headline"]:
        if key in b["headline"] and key != "diversity_ratio":
            out[key] = compare(seed_values(c, key), seed_values(b, key), lower_is_better="fid" in key)
    return out


def relabel(path: Path) -> None:
    """Recompute a results file's comparison from the numbers it records (no run is scored again)."""
    results = json.loads(path.read_text())
    found = gan_cls_vs_baseline(results.get("runs", {}))
    if found is None:
        sys.exit(f"{path}: no shapes-t2i-cls and shapes-t2i-plain runs to compare")
    found["relabelled"] = {"by": results_file.command_line("benchmarks/t2i.py"),
                           "date": results_file.header("benchmarks/t2i.py")["date"],
                           "note": "labels re-derived from the recorded numbers by the rule above"}
    results["gan_cls_vs_baseline"] = found
    results_file.write(path, results)
    print(json.dumps(found, indent=2))


def targets_met(h: dict[str, float]) -> dict[str, bool]:
    lo, hi = TARGETS["diversity_ratio"]
    return {"consistency_heldout_phrasings>=0.90": h.get("consistency_heldout_phrasings", 0) >= 0.90,
            "consistency_heldout_combos>=0.80": h.get("consistency_heldout_combos", 0) >= 0.80,
            "diversity_ratio_within_20%": lo <= h.get("diversity_ratio", 0) <= hi}


def markdown(results: dict[str, Any]) -> str:
    rows = ["| model | consistency: test | held-out phrasings | held-out (shape, colour) pairs | R-precision | "
            "FID (classifier features) | diversity ratio | free-attribute modes (fake / real) | train wall time |",
            "|---|---|---|---|---|---|---|---|---|"]
    for preset, r in results["runs"].items():
        h, div = r["headline"], r["result"].get("diversity", {})

        def num(key: str, d: dict[str, Any] = h, fmt: str = ".3f") -> str:
            return format(d[key], fmt) if key in d else "n/a"

        rows.append(f"| {PRESETS.get(preset, preset)} (`{preset}`) | {num('consistency_test')} | "
                    f"{num('consistency_heldout_phrasings')} | {num('consistency_heldout_combos')} | "
                    f"{num('r_precision')} | {num('fid_classifier', fmt='.1f')} | {num('diversity_ratio')} | "
                    f"{num('modes_fake', div, '.1f')} / {num('modes_real', div, '.1f')} | "
                    f"{r['train_wall_seconds'] / 60:.1f} min |")
    real = results.get("real", {})
    if real:
        rows.append(f"| real images of the same captions | {real['consistency_test']:.3f} | "
                    f"{real['consistency_heldout_phrasings']:.3f} | {real['consistency_heldout_combos']:.3f} | "
                    f"{real['r_precision']:.3f} | {real['fid_real_half']:.1f} (two halves of the test set) | 1 | "
                    f"| |")
    return "\n".join(rows) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", default="runs/t2i_bench")
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--out", default="docs/results/t2i.json")
    ap.add_argument("--relabel", metavar="FILE", help="recompute FILE's comparison from its recorded numbers, "
                    "scoring nothing")
    args = ap.parse_args()
    if args.relabel:
        relabel(Path(args.relabel))
        return
    out = Path(args.out)
    results: dict[str, Any] = {**results_file.header("benchmarks/t2i.py"), "n": args.n, "targets": TARGETS,
                               "runs": {}}
    net = None
    pictures: list[tuple[str, torch.Tensor]] = []
    for preset in PRESETS:
        run = Path(args.runs) / preset
        if not (run / "summary.json").is_file():
            print(f"skipping {preset}: no finished run at {run}", file=sys.stderr)
            continue
        cfg = load_run_config(run)
        train, sets = caption_splits(cfg.data.name, dict(cfg.data.options), cfg.data.path)
        if net is None:
            t0 = time.perf_counter()
            net = attribute_net_for(train, Path(args.runs) / "attribute_net.safetensors",
                                    steps=cfg.eval.classifier_steps, progress=True)
            results["classifier"] = {"steps": cfg.eval.classifier_steps, "seconds": round(time.perf_counter() - t0, 1),
                                     "test_accuracy": attribute_accuracy(
                                         predict_attributes(net, sets["test"].images)[0], sets["test"].attributes,
                                         train.schema)}
        gen = load(run)
        t0 = time.perf_counter()
        res = evaluate_captioned(gen, train, sets, net, n=args.n)
        summary = json.loads((run / "summary.json").read_text())
        results["runs"][preset] = {"name": PRESETS[preset], "headline": res["headline"], "targets_met":
                                   targets_met(res["headline"]), "result": res,
                                   "train_wall_seconds": summary["wall_seconds"], "steps": summary["steps"],
                                   "status": summary["status"], "warnings": summary.get("warnings", []),
                                   "encoder": summary.get("captions", {}).get("encoder", {}),
                                   "eval_seconds": round(time.perf_counter() - t0, 1)}
        results["real"] = {f"consistency_{s}": res[s]["consistency_real"] for s in res if s in sets}
        results["real"].update({"r_precision": res["test"]["r_precision_real"],
                                "fid_real_half": res["test"]["fid_real_half"]})
        pictures.append((preset, gen.sample(8, seed=0, captions=PICTURE_CAPTIONS, same_noise=True)))
        print(preset, json.dumps(res["headline"]))
        others = sorted(p for p in Path(args.runs).glob(f"{preset}-seed*") if (p / "summary.json").is_file())
        if others:  # further seeds: their headlines, for the spread over seeds
            heads = [{"run": str(run), "seed": cfg.train.seed, "headline": res["headline"]}]
            for other in others:
                h = evaluate_captioned(load(other), train, sets, net, n=args.n)["headline"]
                heads.append({"run": str(other), "seed": load_run_config(other).train.seed, "headline": h})
            results["runs"][preset]["seed_headlines"] = heads
        results_file.write(out, results)  # as it goes
    comparison = gan_cls_vs_baseline(results["runs"])
    if comparison is not None:
        results["gan_cls_vs_baseline"] = comparison
    results_file.write(out, results)
    out.with_suffix(".md").write_text(markdown(results))
    if pictures:
        x = torch.cat([p for _, p in pictures])
        labels = [f"{PRESETS[name]}: {cap}" for name, _ in pictures for cap in PICTURE_CAPTIONS]
        caption_grid(x, labels, out.with_name("t2i_captions.png"), label_width=420)
    print(markdown(results))


if __name__ == "__main__":
    main()
