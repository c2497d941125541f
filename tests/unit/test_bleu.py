"""ganforge.metrics.bleu gives NLTK's sentence BLEU (Texygen's protocol) for every hypothesis, fast."""
from __future__ import annotations

import importlib.util
import random
import sys
import time
from pathlib import Path

import pytest

from ganforge.metrics import bleu as bleu_module
from ganforge.metrics.bleu import (
    bleu,
    bleu_per_sentence,
    self_bleu,
    self_bleu_per_sentence,
    sentence_bleu_nltk,
    tokenize_lines,
)
from ganforge.registry import ConfigError

ORDERS = (2, 3, 4, 5)
TOL = 1e-12
TEXT_DIR = Path(__file__).resolve().parents[3] / "shared" / "data" / "text"

# Sentences that exercise NLTK's special cases: empty (BLEU 0), one token, shorter than the orders
# (p_n = 0/1 smoothed to 0.1), repeated n-grams (clipping), and no unigram in common (BLEU 0).
EDGE = [[], ["a"], ["b", "a"], ["a", "a", "a"], ["a"] * 7, ["a", "b"] * 4, ["c", "a", "b", "c"], ["zz", "qq"]]


def random_corpus(rng: random.Random, size: int, vocab: str = "abcde", max_len: int = 9) -> list[list[str]]:
    """Short sentences over a tiny vocabulary, so that n-grams repeat and match often."""
    return [[rng.choice(vocab) for _ in range(rng.randint(0, max_len))] for _ in range(size)]


Case = tuple[list[list[str]], list[str]]  # (references, hypothesis)


def assert_matches_nltk(per: dict[str, list[float]], prefix: str, cases: list[Case]) -> None:
    """Every (references, hypothesis) case scores as NLTK's sentence_bleu, for every order."""
    for n in ORDERS:
        got = per[f"{prefix}{n}"]
        assert len(got) == len(cases)
        for i, (refs, hyp) in enumerate(cases):
            want = sentence_bleu_nltk(refs, hyp, n)
            assert abs(got[i] - want) <= TOL, (n, i, hyp, got[i], want)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_bleu_matches_nltk_per_hypothesis(seed: int) -> None:
    rng = random.Random(seed)
    refs = random_corpus(rng, 30)
    # Hypotheses: random, the edge cases, and some identical to a reference.
    hyps = random_corpus(rng, 40) + EDGE + [list(r) for r in refs[:4]]
    per = bleu_per_sentence(hyps, refs, ORDERS)
    assert_matches_nltk(per, "bleu", [(refs, h) for h in hyps])
    # The mean is over every hypothesis.
    means = bleu(hyps, refs, ORDERS)
    assert set(means) == {f"bleu{n}" for n in ORDERS}
    for n in ORDERS:
        assert means[f"bleu{n}"] == pytest.approx(sum(per[f"bleu{n}"]) / len(hyps), abs=1e-15)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_self_bleu_matches_nltk_without_the_sentence_itself(seed: int) -> None:
    rng = random.Random(100 + seed)
    sents = random_corpus(rng, 40) + EDGE
    sents += [list(s) for s in sents[:5]]  # duplicates: the copy is a reference for its twin
    sents += [["a", "b", "c", "d", "e", "a", "b", "c", "d", "e", "a"]]  # the only sentence of its length
    per = self_bleu_per_sentence(sents, ORDERS)
    # Texygen's references for sentence i: the list with sentence i removed.
    assert_matches_nltk(per, "self_bleu", [(sents[:i] + sents[i + 1:], s) for i, s in enumerate(sents)])
    means = self_bleu(sents, ORDERS)
    assert set(means) == {f"self_bleu{n}" for n in ORDERS}


def test_closest_reference_length_ties_go_to_the_shorter() -> None:
    # Hypothesis of length 4, references of lengths 3 and 5: NLTK takes 3, so no brevity penalty;
    # taking 5 would give exp(1 - 5/4).
    refs = [["a", "b", "c"], ["a", "b", "c", "d", "e"]]
    hyp = ["a", "b", "c", "d"]
    per = bleu_per_sentence([hyp], refs, ORDERS)
    assert_matches_nltk(per, "bleu", [(refs, hyp)])
    # Self-BLEU: the length-4 sentence is the only one of its length, so its own length is out and
    # 3 and 5 tie; the duplicated length-3 sentences find each other's length exactly.
    sents = refs + [hyp, ["c", "b", "a"]]
    per = self_bleu_per_sentence(sents, ORDERS)
    assert_matches_nltk(per, "self_bleu", [(sents[:i] + sents[i + 1:], s) for i, s in enumerate(sents)])


def test_special_values() -> None:
    refs = [["a", "b", "c"]]
    per = bleu_per_sentence([[], ["x", "y"], ["a", "b", "c"]], refs, ORDERS)
    for n in ORDERS:
        assert per[f"bleu{n}"][0] == 0.0  # empty hypothesis: NLTK returns 0
        assert per[f"bleu{n}"][1] == 0.0  # no unigram in common: NLTK returns 0
    # Identical to the only reference: 1 up to order 3, then the smoothed 0.1 for the missing 4- and 5-grams.
    assert per["bleu2"][2] == pytest.approx(1.0) and per["bleu3"][2] == pytest.approx(1.0)
    assert per["bleu4"][2] == pytest.approx(0.1 ** (1 / 4)) and per["bleu5"][2] == pytest.approx(0.1 ** (2 / 5))


def test_one_pass_over_orders_equals_separate_nltk_calls() -> None:
    # The COCO test below asks NLTK for BLEU-2 and BLEU-5 in one call (a list of weights) to halve its
    # cost; NLTK computes p_1..p_5 once and zip(weight, p_n) stops at each weight's length, so that is
    # the same number as separate calls. Checked here so the shortcut rests on a test.
    from nltk.translate.bleu_score import SmoothingFunction, sentence_bleu

    rng = random.Random(7)
    refs = random_corpus(rng, 20)
    for hyp in random_corpus(rng, 20) + EDGE:
        both = sentence_bleu(refs, hyp, [(1 / 2,) * 2, (1 / 5,) * 5], smoothing_function=SmoothingFunction().method1)
        assert both == [sentence_bleu_nltk(refs, hyp, 2), sentence_bleu_nltk(refs, hyp, 5)]


def test_fast_bleu_keeps_the_first_500_references_and_scores_every_hypothesis() -> None:
    rng = random.Random(3)
    hyps = random_corpus(rng, 520, vocab="abcdefgh", max_len=12)
    # References 0..499 share little with the hypotheses; those after 500 are copies of them.
    refs = random_corpus(rng, 500, vocab="aghijk", max_len=12) + [list(h) for h in hyps[:50]]
    fast = bleu(hyps, refs, ORDERS, fast=True)
    assert fast == bleu(hyps, refs[:500], ORDERS)
    assert fast["bleu2"] < bleu(hyps, refs, ORDERS)["bleu2"] - 0.01  # the later references would count
    # Texygen's Bleu.get_bleu_fast truncates only the references: hypotheses after 500 are scored too.
    assert fast != bleu(hyps[:500], refs[:500], ORDERS)


def test_fast_self_bleu_keeps_the_first_500_sentences() -> None:
    rng = random.Random(4)
    sents = random_corpus(rng, 500, vocab="abcdefghijklmnopqrstuvwxyz", max_len=12)
    sents += [list(s) for s in sents[:100]]  # later duplicates would raise Self-BLEU (5-grams match exactly)
    fast = self_bleu(sents, ORDERS, fast=True)
    assert fast == self_bleu(sents[:500], ORDERS)
    assert fast["self_bleu5"] < self_bleu(sents, ORDERS)["self_bleu5"] - 0.05


def test_errors() -> None:
    with pytest.raises(ValueError, match="at least one hypothesis"):
        bleu([], [["a"]])
    with pytest.raises(ValueError, match="at least one reference"):
        bleu([["a"]], [])
    with pytest.raises(ValueError, match="at least two sentences"):
        self_bleu([["a"]])
    with pytest.raises(ValueError, match="orders"):
        bleu([["a"]], [["a"]], orders=())
    with pytest.raises(ValueError, match="orders"):
        self_bleu([["a"], ["b"]], orders=(0, 2))


def test_tokenize_lines_is_word_tokenize_on_one_sentence() -> None:
    import nltk

    lines = ["A man rides a horse.", "it's a dog, isn't it?\n", "", "  two   spaces  "]
    assert tokenize_lines(lines) == [nltk.word_tokenize(line, preserve_line=True) for line in lines]
    assert tokenize_lines(lines[:1]) == [["A", "man", "rides", "a", "horse", "."]]


def test_missing_nltk_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("nltk", "nltk.translate", "nltk.translate.bleu_score", "nltk.tokenize"):
        monkeypatch.setitem(sys.modules, name, None)  # makes `import nltk...` raise ImportError
    for call in (lambda: tokenize_lines(["a b"]), lambda: bleu([["a"]], [["a"]]), lambda: self_bleu([["a"], ["b"]]),
                 lambda: sentence_bleu_nltk([["a"]], ["a"], 2)):
        with pytest.raises(ConfigError, match=r"pip install 'ganforge\[text\]'"):
            call()


def test_module_imports_without_nltk(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "nltk", None)
    # A fresh copy under another name, so the module's code runs again with nltk unavailable.
    spec = importlib.util.spec_from_file_location("_bleu_without_nltk", bleu_module.__file__)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert callable(module.bleu)


@pytest.fixture(scope="module")
def coco() -> tuple[list[list[str]], list[list[str]]]:
    train, test = TEXT_DIR / "coco_captions_train.txt", TEXT_DIR / "coco_captions_test.txt"
    if not (train.exists() and test.exists()):
        pytest.skip(f"COCO caption files not found in {TEXT_DIR} (shared data not checked out)")
    return (tokenize_lines(train.read_text().splitlines()), tokenize_lines(test.read_text().splitlines()))


def test_coco_sample_matches_nltk_against_the_whole_test_set(coco: tuple[list[list[str]], list[list[str]]]) -> None:
    from nltk.translate.bleu_score import SmoothingFunction, sentence_bleu

    hyps_all, refs = coco
    hyps = random.Random(0).sample(hyps_all, 50)
    per = bleu_per_sentence(hyps, refs, (2, 5))
    for i, hyp in enumerate(hyps):
        # BLEU-2 and BLEU-5 in one NLTK call: the same numbers as two (test_one_pass_over_orders_...).
        want = sentence_bleu(refs, hyp, [(1 / 2,) * 2, (1 / 5,) * 5], smoothing_function=SmoothingFunction().method1)
        assert abs(per["bleu2"][i] - want[0]) <= TOL and abs(per["bleu5"][i] - want[1]) <= TOL, (i, hyp)


def test_coco_whole_sets_in_under_a_minute(coco: tuple[list[list[str]], list[list[str]]]) -> None:
    hyps, refs = coco
    t0 = time.perf_counter()
    scores = bleu(hyps, refs, ORDERS)
    t1 = time.perf_counter()
    self_scores = self_bleu(hyps, ORDERS)
    t2 = time.perf_counter()
    assert t1 - t0 < 60 and t2 - t1 < 60, (t1 - t0, t2 - t1)
    # Sanity only (not a target): the training captions are close to the test captions and to each other.
    assert 0 < scores["bleu5"] < scores["bleu2"] < 1 and 0 < self_scores["self_bleu5"] < self_scores["self_bleu2"] < 1
