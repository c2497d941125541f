"""BLEU-n and Self-BLEU-n as the text-GAN literature computes them, exactly and fast.

Texygen (Zhu et al. 2018, "Texygen: A Benchmarking Platform for Text Generation Models",
``utils/metrics/Bleu.py`` and ``SelfBleu.py``) scores each generated sentence with NLTK's
``nltk.translate.bleu_score.sentence_bleu(references, hypothesis, weights=(1/n,)*n,
smoothing_function=SmoothingFunction().method1)``, where ``references`` is the *whole* reference set
(every test sentence for BLEU; every *other* generated sentence for Self-BLEU), and reports the mean
over hypotheses. Texygen's fast mode (its default) keeps ``references[:500]`` for BLEU (all hypotheses
are still scored) and the first 500 generated sentences, each against the other 499, for Self-BLEU.

Called as-is NLTK rebuilds every reference's n-gram counts for every hypothesis: O(hypotheses x
references) per order, hours for 10,000 x 10,000. This module computes the same numbers from one
pass over the references:

- NLTK's modified precision (``modified_precision``) clips each hypothesis n-gram count by its
  largest count in any *single* reference; n-grams absent from a reference count 0 there. That
  maximum depends only on the reference set, not on the hypothesis, so a table ``n-gram -> max count
  over references`` built once gives exactly NLTK's clipped numerator; the denominator is
  ``max(1, number of hypothesis n-grams)`` as in NLTK.
- The brevity penalty needs only the reference length closest to the hypothesis length (ties to
  the shorter, NLTK's ``closest_ref_length``): a bisect in the sorted set of reference lengths.
- For Self-BLEU the hypothesis must not be its own reference. Per n-gram the table keeps the largest
  count, how many sentences reach it, and the second largest; the maximum over the *other*
  sentences is the largest unless this sentence alone reaches it, then the second largest. Lengths
  are kept as a multiset, with one copy of the hypothesis's own length taken out.

The integer numerators and denominators are then those NLTK would compute, and they are combined
by the same code path as NLTK's ``corpus_bleu`` for one hypothesis (NLTK's own ``Fraction``,
``SmoothingFunction().method1``, ``brevity_penalty`` and the same float operations in the same
order), so each sentence's score is the same float NLTK returns, not an approximation.

Tokenization is ``nltk.tokenize.NLTKWordTokenizer`` on each line, which is what ``nltk.word_tokenize``
does to a one-sentence line and needs no downloaded data (Texygen calls ``word_tokenize``, which also
splits a line into sentences with punkt first; that only differs for lines holding several sentences).
"""
from __future__ import annotations

import math
from bisect import bisect_left
from collections import Counter
from collections.abc import Hashable, Sequence
from typing import Any

from ganforge.registry import ConfigError

Sentence = Sequence[Hashable]
NGram = tuple[Hashable, ...]

#: Texygen's ``sample_size``: the number of sentences kept in fast mode.
FAST_SAMPLE = 500
DEFAULT_ORDERS = (2, 3, 4, 5)


def _nltk_bleu() -> Any:
    """NLTK's ``bleu_score`` module, imported on use so this module imports without nltk."""
    try:
        from nltk.translate import bleu_score
    except ImportError as e:
        raise ConfigError("text metrics need nltk: pip install 'ganforge[text]'") from e
    return bleu_score


def tokenize_lines(lines: list[str]) -> list[list[str]]:
    """Each line as tokens, by ``NLTKWordTokenizer().tokenize`` (``nltk.word_tokenize`` on one sentence)."""
    try:
        from nltk.tokenize import NLTKWordTokenizer
    except ImportError as e:
        raise ConfigError("text metrics need nltk: pip install 'ganforge[text]'") from e
    tokenizer = NLTKWordTokenizer()
    return [tokenizer.tokenize(line) for line in lines]


def sentence_bleu_nltk(references: Sequence[Sentence], hypothesis: Sentence, n: int) -> float:
    """The plain NLTK call Texygen makes for one hypothesis: BLEU-``n``, uniform weights, smoothing method 1.

    O(len(references)) per call: for tests and spot checks, not for scoring a corpus.
    """
    bleu_score = _nltk_bleu()
    weights = tuple(1.0 / n for _ in range(n))  # Texygen's exact expression for the weights
    return float(bleu_score.sentence_bleu(list(references), list(hypothesis), weights,
                                          smoothing_function=bleu_score.SmoothingFunction().method1))


def _check_orders(orders: Sequence[int]) -> tuple[int, ...]:
    orders = tuple(orders)
    if not orders or any(not isinstance(n, int) or isinstance(n, bool) or n < 1 for n in orders):
        raise ValueError(f"BLEU orders must be a non-empty tuple of positive integers, got {orders!r}")
    return orders


def _ngram_counts(tokens: Sentence, max_n: int) -> list[Counter[NGram]]:
    """The n-gram counts of one sentence for n = 1..max_n (as NLTK's ``Counter(ngrams(s, n))``;
    empty when the sentence is shorter than n)."""
    # The shifted slices differ in length on purpose: zip stops at the last complete n-gram.
    return [Counter(zip(*(tokens[i:] for i in range(n)), strict=False)) for n in range(1, max_n + 1)]


def _closest_length(lengths: list[int], hyp_len: int, exclude_own: bool = False) -> int:
    """NLTK's ``closest_ref_length`` over the sorted distinct reference ``lengths``: the closest to
    ``hyp_len``, ties to the shorter. ``exclude_own``: ``hyp_len`` itself is not available (Self-BLEU,
    where the only sentence of that length is the hypothesis)."""
    i = bisect_left(lengths, hyp_len)
    if i < len(lengths) and lengths[i] == hyp_len:
        if not exclude_own:
            return hyp_len
        above = i + 1
    else:
        above = i
    candidates = []
    if i > 0:
        candidates.append(lengths[i - 1])
    if above < len(lengths):
        candidates.append(lengths[above])
    if not candidates:
        raise ValueError("BLEU needs at least one reference sentence")
    return min(candidates, key=lambda r: (abs(r - hyp_len), r))


class _Scorer:
    """NLTK's combination of per-order clipped counts into sentence BLEU-n for each requested n."""

    def __init__(self, orders: tuple[int, ...]) -> None:
        bleu_score = _nltk_bleu()
        self.fraction = bleu_score.Fraction  # NLTK's own subclass: same _normalize=False semantics
        self.brevity_penalty = bleu_score.brevity_penalty
        self.smooth = bleu_score.SmoothingFunction().method1
        self.orders = orders
        self.max_n = max(orders)
        self.weights = [tuple(1.0 / n for _ in range(n)) for n in orders]

    def score(self, numerators: list[int], denominators: list[int], hyp_len: int, ref_len: int) -> list[float]:
        """BLEU-n for each order from the clipped numerators and denominators of orders 1..max_n.

        Mirrors ``nltk.translate.bleu_score.corpus_bleu`` for a single hypothesis. Orders 1..max_n are
        computed once: NLTK's BLEU-n uses p_1..p_n, and ``zip(weight, p_n)`` stops at the weight's length,
        so the shorter weights see exactly the p_i a separate call would compute.
        """
        bp = self.brevity_penalty(ref_len, hyp_len)
        # NLTK returns 0 outright when no unigram matches (then no higher order can match either).
        if numerators[0] == 0:
            return [0.0] * len(self.orders)
        p_n = [self.fraction(num, den, _normalize=False) for num, den in zip(numerators, denominators, strict=True)]
        # method1 ignores references and hypothesis (it only adds epsilon to zero numerators), so the
        # reference list, which Self-BLEU never materialises, is not passed.
        p_n = self.smooth(p_n, references=None, hypothesis=None, hyp_len=hyp_len)
        out = []
        for weight in self.weights:
            s = (w_i * math.log(p_i) for w_i, p_i in zip(weight, p_n, strict=False) if p_i > 0)
            out.append(float(bp * math.exp(math.fsum(s))))
        return out


def _mean(values: list[float]) -> float:
    # A running sum in order, as Texygen accumulates (`score += i.get()`); Python 3.12's sum() of floats
    # compensates and could differ in the last bit.
    total = 0.0
    for v in values:
        total += v
    return total / len(values)


def _per_sentence_to_means(per: dict[str, list[float]]) -> dict[str, float]:
    return {key: _mean(values) for key, values in per.items()}


def bleu_per_sentence(hypotheses: list[list[str]], references: list[list[str]],
                      orders: tuple[int, ...] = DEFAULT_ORDERS, fast: bool = False) -> dict[str, list[float]]:
    """Each hypothesis's sentence BLEU-n against the whole reference set: ``{"bleu2": [...], ...}``.

    Element i equals ``sentence_bleu_nltk(references, hypotheses[i], n)``. ``fast``: Texygen's fast mode,
    ``references[:500]`` (every hypothesis is still scored, as in Texygen's ``Bleu.get_bleu_fast``).
    """
    orders = _check_orders(orders)
    if not hypotheses:
        raise ValueError("BLEU needs at least one hypothesis sentence, got none")
    if fast:
        references = references[:FAST_SAMPLE]
    if not references:
        raise ValueError("BLEU needs at least one reference sentence, got none")
    scorer = _Scorer(orders)
    max_n = scorer.max_n

    # max_ref[k][g]: the largest count of (k+1)-gram g in any single reference (NLTK's max_counts).
    max_ref: list[dict[NGram, int]] = [{} for _ in range(max_n)]
    for ref in references:
        for table, counts in zip(max_ref, _ngram_counts(ref, max_n), strict=True):
            for g, c in counts.items():
                if c > table.get(g, 0):
                    table[g] = c
    lengths = sorted({len(ref) for ref in references})

    per: dict[str, list[float]] = {f"bleu{n}": [] for n in orders}
    lists = list(per.values())
    for hyp in hypotheses:
        numerators, denominators = [], []
        for table, counts in zip(max_ref, _ngram_counts(hyp, max_n), strict=True):
            numerators.append(sum(min(c, table.get(g, 0)) for g, c in counts.items()))
            denominators.append(max(1, sum(counts.values())))
        hyp_len = len(hyp)
        scores = scorer.score(numerators, denominators, hyp_len, _closest_length(lengths, hyp_len))
        for out, s in zip(lists, scores, strict=True):
            out.append(s)
    return per


def self_bleu_per_sentence(sentences: list[list[str]], orders: tuple[int, ...] = DEFAULT_ORDERS,
                           fast: bool = False) -> dict[str, list[float]]:
    """Each sentence's BLEU-n against all the *other* sentences: ``{"self_bleu2": [...], ...}``.

    Element i equals ``sentence_bleu_nltk(sentences[:i] + sentences[i + 1:], sentences[i], n)`` (Texygen's
    ``SelfBleu.get_bleu_parallel``). ``fast``: Texygen's fast mode, the first 500 sentences only.
    """
    orders = _check_orders(orders)
    if fast:
        sentences = sentences[:FAST_SAMPLE]
    if len(sentences) < 2:
        raise ValueError(f"Self-BLEU needs at least two sentences, got {len(sentences)}")
    scorer = _Scorer(orders)
    max_n = scorer.max_n

    # Per order and n-gram: the largest count over sentences (top), how many sentences reach it
    # (n_top), and the largest count among the others (second; 0 when absent). Enough to know the max
    # over "all sentences but one" for any one sentence.
    top: list[dict[NGram, int]] = [{} for _ in range(max_n)]
    n_top: list[dict[NGram, int]] = [{} for _ in range(max_n)]
    second: list[dict[NGram, int]] = [{} for _ in range(max_n)]
    for sent in sentences:
        for t, nt, sec, counts in zip(top, n_top, second, _ngram_counts(sent, max_n), strict=True):
            for g, c in counts.items():
                a = t.get(g, 0)
                if c > a:
                    if a:
                        sec[g] = a
                    t[g] = c
                    nt[g] = 1
                elif c == a:
                    nt[g] += 1
                elif c > sec.get(g, 0):
                    sec[g] = c
    length_counts = Counter(len(s) for s in sentences)
    lengths = sorted(length_counts)

    per: dict[str, list[float]] = {f"self_bleu{n}": [] for n in orders}
    lists = list(per.values())
    for sent in sentences:
        numerators, denominators = [], []
        for t, nt, sec, counts in zip(top, n_top, second, _ngram_counts(sent, max_n), strict=True):
            num = 0
            for g, c in counts.items():
                a = t[g]  # c <= a, as this sentence is among those counted
                others = sec.get(g, 0) if c == a and nt[g] == 1 else a
                num += c if c < others else others
            numerators.append(num)
            denominators.append(max(1, sum(counts.values())))
        hyp_len = len(sent)
        ref_len = _closest_length(lengths, hyp_len, exclude_own=length_counts[hyp_len] == 1)
        for out, s in zip(lists, scorer.score(numerators, denominators, hyp_len, ref_len), strict=True):
            out.append(s)
    return per


def bleu(hypotheses: list[list[str]], references: list[list[str]], orders: tuple[int, ...] = DEFAULT_ORDERS,
         fast: bool = False) -> dict[str, float]:
    """Mean sentence BLEU-n of ``hypotheses`` against the whole ``references`` set: ``{"bleu2": ..., ...}``.

    Texygen's BLEU (NLTK sentence BLEU, uniform weights, smoothing method 1). ``fast``: Texygen's fast
    mode, ``references[:500]`` with every hypothesis scored.
    """
    return _per_sentence_to_means(bleu_per_sentence(hypotheses, references, orders, fast))


def self_bleu(sentences: list[list[str]], orders: tuple[int, ...] = DEFAULT_ORDERS,
              fast: bool = False) -> dict[str, float]:
    """Mean BLEU-n of each sentence against all the others: ``{"self_bleu2": ..., ...}`` (lower = more diverse).

    ``fast``: Texygen's fast mode, ``sentences[:500]``, each against the other 499.
    """
    return _per_sentence_to_means(self_bleu_per_sentence(sentences, orders, fast))
