"""Text metrics as the text-GAN literature reports them, and the quality-diversity curve.

- Synthetic oracle (SeqGAN, Yu et al. 2017): NLL-oracle, the oracle LSTM's negative log-likelihood
  per token of G's samples (quality), and NLL-test, G's negative log-likelihood per token of
  held-out oracle samples (coverage).
- Real text (Texygen, Zhu et al. 2018): BLEU-n of G's sentences against the test set and Self-BLEU-n
  of G's sentences against each other (:mod:`ganforge.metrics.bleu`, the same numbers as NLTK),
  and NLL-test on the test sentences. ``fast=True`` is Texygen's default mode: BLEU against the
  first 500 test sentences, Self-BLEU among the first 500 generated ones. Texygen's published
  rows for the training set (0.740 / 0.218 / 0.892) are what the whole-set computation gives,
  so whole sets are the default (benchmarks/text_gans.py scores the training set both ways).
- One point hides the trade-off (Caccia et al. 2018, "Language GANs falling short"): a lower
  softmax temperature raises quality and lowers diversity for any model, so :func:`temperature_curve`
  sweeps it and reports the curve.

NLL is per counted token (up to and including the end token), under softmax(logits / T) when a
temperature T is given, in nats.
"""
from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from ganforge.metrics.bleu import bleu, self_bleu, tokenize_lines
from ganforge.registry import ConfigError

ORDERS = (2, 3, 4, 5)
CURVE_TEMPERATURES = (0.6, 0.7, 0.8, 0.9, 1.0, 1.1, 1.25, 1.5)


@torch.no_grad()
def sequence_nll(model: nn.Module, tokens: Tensor, temperature: float = 1.0,
                 batch: int = 1000) -> tuple[Tensor, Tensor]:
    """Per sequence: the summed negative log-likelihood (nats) and the number of counted tokens."""
    was = model.training
    model.eval()
    sums, counts = [], []
    try:
        device = next(model.parameters()).device
        for i in range(0, len(tokens), batch):
            t = tokens[i:i + batch].to(device)
            m = model.mask(t).float()
            sums.append(-(model.log_probs(t, temperature=temperature) * m).sum(1).double().cpu())
            counts.append(m.sum(1).double().cpu())
    finally:
        model.train(was)
    return torch.cat(sums), torch.cat(counts)


def nll(model: nn.Module, tokens: Tensor, temperature: float = 1.0, batch: int = 1000) -> float:
    """``model``'s mean negative log-likelihood per counted token of ``tokens`` (n, T), in nats."""
    sums, counts = sequence_nll(model, tokens, temperature, batch)
    return float(sums.sum() / counts.sum().clamp_min(1.0))


def nll_with_error(model: nn.Module, tokens: Tensor) -> tuple[float, float]:
    """NLL per token and its standard error over sequences (a ratio estimator's: sentences are the
    independent draws, not tokens), so a difference between two models can be judged."""
    sums, counts = sequence_nll(model, tokens)
    mean = sums.sum() / counts.sum()
    resid = sums - mean * counts  # the linearised ratio estimator
    se = resid.std() * len(sums) ** 0.5 / counts.sum() if len(sums) > 1 else torch.tensor(float("nan"))
    return float(mean), float(se)


def _references(data: Any) -> list[list[str]] | None:
    """The test sentences tokenized for BLEU, once per data object (tokenizing 10,000 takes seconds)."""
    if not getattr(data, "test_lines", None):
        return None
    cached = getattr(data, "_bleu_references", None)
    if cached is None:
        cached = tokenize_lines(list(data.test_lines))
        data._bleu_references = cached
    return cached


def hypothesis_tokens(tokens: Tensor, vocab: Any) -> list[list[str]]:
    """Generated sentences as BLEU reads them. Word level: the model's own tokens (the reference
    tokenizer's; re-tokenizing would split a generated ``<unk>`` into three); characters: the
    sentences tokenized into words like the references."""
    lines = sentences(tokens, vocab)
    return [line.split() for line in lines] if getattr(vocab, "level", "word") == "word" else tokenize_lines(lines)


def check_vocabulary(artifact: Any, data: Any) -> None:
    """The data rebuilt for evaluation must encode text as the generator's vocabulary does."""
    mine = getattr(artifact.transform, "tokens", None)
    theirs = getattr(getattr(data, "transform", None), "tokens", None)
    if mine is not None and theirs is not None and list(mine) != list(theirs):
        raise ConfigError("the corpus this run was trained on has changed since (its vocabulary differs from the "
                          "generator's): evaluate against the original file")


def sentences(tokens: Tensor, vocab: Any) -> list[str]:
    """Token ids (n, T) as text, through the vocabulary saved with the generator."""
    return list(vocab.inverse_transform(tokens))


def evaluate_text(artifact: Any, data: Any, n: int = 10_000, seed: int = 1234, temperature: float = 1.0,
                  fast: bool = False, orders: Sequence[int] = ORDERS, self_bleu_too: bool = True) -> dict[str, Any]:
    """The text metrics of a generator artifact on its data (an oracle source or a corpus with a test set).

    Returns the metrics and a ``protocol`` entry saying what was computed on how many sentences.
    """
    check_vocabulary(artifact, data)
    t0 = time.perf_counter()
    tokens = artifact.sample(n, seed=seed, raw=True, temperature=temperature)
    out: dict[str, Any] = {}
    proto: dict[str, Any] = {"samples": n, "seed": seed, "temperature": temperature}
    oracle = getattr(data, "oracle", None)
    test = getattr(data, "test_tokens", None)
    if oracle is not None:
        out["nll_oracle"], out["nll_oracle_se"] = nll_with_error(oracle, tokens)
        proto["oracle"] = dict(getattr(data, "oracle_config", {}))
    if test is not None:
        out["nll_test"] = nll(artifact.module, test, temperature)
        proto["test_sequences"] = len(test)
        if getattr(data, "test_source", None):
            proto["test_set"] = data.test_source
    if oracle is None:
        hyps = hypothesis_tokens(tokens, artifact.transform)
        refs = _references(data)
        if refs:
            out.update(bleu(hyps, refs, tuple(orders), fast=fast))
            proto["references"] = min(len(refs), 500) if fast else len(refs)  # Texygen's fast mode cuts references only
        if self_bleu_too:
            out.update(self_bleu(hyps, tuple(orders), fast=fast))
        proto.update({"bleu": "NLTK sentence BLEU, smoothing method 1, uniform weights, mean over hypotheses "
                              "(Texygen's protocol)", "fast": fast,
                      "hypotheses": len(hyps), "self_bleu_sentences": min(len(hyps), 500) if fast else len(hyps)})
        lengths = [len(h) for h in hyps]
        out["mean_length"] = sum(lengths) / max(1, len(lengths))
        out["unique_fraction"] = len({tuple(h) for h in hyps}) / max(1, len(hyps))
    proto["seconds"] = round(time.perf_counter() - t0, 2)
    out["protocol"] = proto
    return out


def temperature_curve(artifact: Any, data: Any, temperatures: Sequence[float] = CURVE_TEMPERATURES,
                      n: int = 10_000, seed: int = 1234, fast: bool = False,
                      progress: Any = None) -> list[dict[str, Any]]:
    """The metrics at each softmax temperature: the points of the quality-diversity curve
    (BLEU-5 against Self-BLEU-5 on real text, NLL-oracle against NLL-test on the oracle)."""
    points = []
    for t in temperatures:
        m = evaluate_text(artifact, data, n, seed, float(t), fast, orders=ORDERS)
        m["temperature"] = float(t)
        points.append(m)
        if progress is not None:
            progress(m)
    return points
