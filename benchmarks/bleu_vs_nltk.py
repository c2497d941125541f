#!/usr/bin/env python3
"""ganforge's BLEU against NLTK's ``sentence_bleu`` called directly, on the same sentences (issue 24).

Texygen's BLEU (``ganforge/metrics/bleu.py``) scores every hypothesis with NLTK's ``sentence_bleu``
against the *whole* reference set; called as-is NLTK rebuilds the n-gram counts of every reference
for every hypothesis and every order. This script times both on the MS-COCO captions of the Texygen
split (the first ``--hypotheses`` training captions as hypotheses, the whole test set as references),
BLEU-2..5 as the text benchmark computes them, and prints their ratio:

- NLTK: ``sentence_bleu(references, hypothesis, weights=(1/n,)*n, smoothing_function=method1)`` for
  each of the first ``--nltk-sentences`` hypotheses and each order (Texygen's call), timed per sentence;
- ganforge: ``bleu_per_sentence`` on the same sentences (its one pass over the references included),
  and on all ``--hypotheses`` of them;
- the largest difference between the two on the sentences both scored (NLTK's floats, exactly: 0.0).

Alternating rounds (NLTK, then ganforge, ``--rounds`` times); the figures are medians over rounds.
One thread: both are pure Python. Tokenizing is timed apart and counted for neither. The 1-minute load
average before and after is recorded: other processes on the machine slow the absolute seconds.

Usage: python benchmarks/bleu_vs_nltk.py [--hypotheses 10000] [--nltk-sentences 20] [--rounds 3]
           [--out docs/results/bleu_vs_nltk.json]
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import results_file  # noqa: E402

from ganforge.data import build_dataset  # noqa: E402
from ganforge.metrics.bleu import DEFAULT_ORDERS, bleu_per_sentence, sentence_bleu_nltk, tokenize_lines  # noqa: E402


def one_round(hyps: list[list[str]], refs: list[list[str]], k: int) -> dict[str, Any]:
    """One timing of each: NLTK on the first ``k`` hypotheses, ganforge on the same ``k`` and on all."""
    t0 = time.perf_counter()
    nltk = {f"bleu{n}": [sentence_bleu_nltk(refs, h, n) for h in hyps[:k]] for n in DEFAULT_ORDERS}
    t1 = time.perf_counter()
    ours_k = bleu_per_sentence(hyps[:k], refs, DEFAULT_ORDERS)
    t2 = time.perf_counter()
    bleu_per_sentence(hyps, refs, DEFAULT_ORDERS)
    t3 = time.perf_counter()
    worst = max(abs(a - b) for key in nltk for a, b in zip(nltk[key], ours_k[key], strict=True))
    return {"nltk_seconds": t1 - t0, "ganforge_same_seconds": t2 - t1, "ganforge_all_seconds": t3 - t2,
            "max_abs_difference": worst}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--hypotheses", type=int, default=10_000, help="training captions scored by ganforge")
    ap.add_argument("--nltk-sentences", type=int, default=20, help="of them, scored by NLTK too")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--out", default="docs/results/bleu_vs_nltk.json")
    args = ap.parse_args()
    torch.set_num_threads(1)
    data = build_dataset("coco-captions", {})
    t0 = time.perf_counter()
    hyps, refs = tokenize_lines(list(data.lines)[:args.hypotheses]), tokenize_lines(list(data.test_lines))
    tokenize = time.perf_counter() - t0
    k = min(args.nltk_sentences, len(hyps))
    load_before = os.getloadavg()
    rounds = []
    for r in range(args.rounds):
        rounds.append(one_round(hyps, refs, k))
        print(f"round {r + 1}: NLTK {rounds[-1]['nltk_seconds']:.2f} s for {k} sentences, ganforge "
              f"{rounds[-1]['ganforge_same_seconds']:.3f} s for the same, {rounds[-1]['ganforge_all_seconds']:.2f} s "
              f"for {len(hyps)}", file=sys.stderr, flush=True)
    med = {key: statistics.median(r[key] for r in rounds)
           for key in ("nltk_seconds", "ganforge_same_seconds", "ganforge_all_seconds")}
    per_sentence = med["nltk_seconds"] / k
    results = {
        **results_file.header("benchmarks/bleu_vs_nltk.py"),
        "protocol": (f"MS-COCO captions (Texygen split): the first {len(hyps)} training captions as hypotheses, "
                     f"the {len(refs)} test captions as references, BLEU-{DEFAULT_ORDERS[0]}..{DEFAULT_ORDERS[-1]} "
                     "(NLTK sentence_bleu, uniform weights, smoothing method 1); NLTK on the first "
                     f"{k} hypotheses; median of {args.rounds} alternating rounds, one thread"),
        "hypotheses": len(hyps), "references": len(refs), "nltk_sentences": k, "orders": list(DEFAULT_ORDERS),
        "tokenize_seconds": round(tokenize, 2),
        "rounds": [{key: round(v, 4) for key, v in r.items()} for r in rounds],
        "nltk_seconds_per_sentence": round(per_sentence, 4),
        "nltk_seconds_per_sentence_and_order": round(per_sentence / len(DEFAULT_ORDERS), 4),
        "ganforge_seconds_same_sentences": round(med["ganforge_same_seconds"], 4),
        "ganforge_seconds_all": round(med["ganforge_all_seconds"], 3),
        "ratio_nltk_over_ganforge_same_sentences": round(med["nltk_seconds"] / med["ganforge_same_seconds"], 1),
        # Not run: NLTK on all hypotheses would take hours; its time is per-sentence time x count.
        "nltk_seconds_all_extrapolated": round(per_sentence * len(hyps)),
        "ratio_nltk_over_ganforge_all_extrapolated": round(per_sentence * len(hyps) / med["ganforge_all_seconds"]),
        "max_abs_difference": max(r["max_abs_difference"] for r in rounds),
        # Other processes on the machine slow both sides alike; the absolute seconds only when this is low.
        "load_average_1min_before_after": [round(load_before[0], 2), round(os.getloadavg()[0], 2)],
    }
    print(f"NLTK: {per_sentence:.3f} s per sentence (BLEU-2..5; {per_sentence / len(DEFAULT_ORDERS):.3f} s per "
          f"order) against {len(refs)} references; ganforge: {med['ganforge_same_seconds']:.3f} s for the same {k} "
          f"sentences ({results['ratio_nltk_over_ganforge_same_sentences']}x faster), "
          f"{med['ganforge_all_seconds']:.2f} s for all {len(hyps)} (NLTK extrapolated: "
          f"{results['nltk_seconds_all_extrapolated']} s, {results['ratio_nltk_over_ganforge_all_extrapolated']}x); "
          f"largest difference {results['max_abs_difference']}; CPU {results['cpu']['model']} "
          f"({', '.join(f for f, on in results['cpu']['flags'].items() if on)})")
    results_file.write(Path(args.out) if args.out else None, results)


if __name__ == "__main__":
    main()
