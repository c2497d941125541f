"""InfoGAN's code accuracy: the best one-to-one mapping of code values to digits, checked against
hand-computed answers (a relabelling scores 1, independent codes score near chance, and the optimum
of a small confusion matrix that a greedy or many-to-one mapping gets wrong), and end to end through
the digit classifier with stand-in generators whose answer is known."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from ganforge.data.mnist import embedded_mnist, to_tensor_images
from ganforge.metrics.conditional import categorical_code_accuracy, hungarian_accuracy


def from_counts(counts: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
    """(codes, digits) pairs with counts[c][d] occurrences of code c read as digit d."""
    pairs = [(c, d) for c, row in enumerate(counts) for d, n in enumerate(row) for _ in range(n)]
    codes, digits = zip(*pairs, strict=True)
    return np.array(codes), np.array(digits)


def test_a_relabelling_of_the_digits_scores_one_with_that_mapping() -> None:
    perm = np.array([3, 7, 0, 9, 1, 8, 2, 6, 4, 5])  # code c always reads as digit perm[c]
    codes = np.random.default_rng(0).integers(0, 10, 2000)
    acc, mapping = hungarian_accuracy(codes, perm[codes], 10)
    assert acc == 1.0
    assert mapping == {c: int(perm[c]) for c in range(10)}


def test_fewer_codes_than_digits_map_into_the_ten_digits() -> None:
    codes = np.array([0, 0, 1, 1, 1, 2])
    acc, mapping = hungarian_accuracy(codes, np.array([7, 7, 3, 3, 3, 9]), 3)
    assert acc == 1.0 and mapping == {0: 7, 1: 3, 2: 9}


def test_independent_codes_score_near_chance() -> None:
    rng = np.random.default_rng(1)
    codes, digits = rng.integers(0, 10, 5000), rng.integers(0, 10, 5000)
    acc, mapping = hungarian_accuracy(codes, digits, 10)
    # Each cell holds about 50 of 5,000; the best permutation picks cells a little above that.
    assert 0.1 <= acc < 0.15, acc
    assert sorted(mapping.values()) == list(range(10))


def test_two_codes_one_digit_only_one_may_have_it() -> None:
    # Both codes read mostly as 0; one-to-one, the best is code 1 -> 0 (6) and code 0 -> 1 (4):
    # 10 of 16. Mapping each code to its most frequent digit would claim 11 of 16.
    codes, digits = from_counts([[5, 4], [6, 1]])
    acc, mapping = hungarian_accuracy(codes, digits, 2)
    assert acc == pytest.approx(10 / 16)
    assert mapping == {0: 1, 1: 0}


def test_the_optimum_is_not_the_greedy_choice() -> None:
    # Taking the largest cell first (code 0 -> digit 0, 10) leaves 0 + 1: 11 of 29. The optimum is
    # code 0 -> 1 (9), code 1 -> 0 (9), code 2 -> 2 (1): 19 of 29.
    codes, digits = from_counts([[10, 9, 0], [9, 0, 0], [0, 0, 1]])
    acc, mapping = hungarian_accuracy(codes, digits, 3)
    assert acc == pytest.approx(19 / 29)
    assert mapping == {0: 1, 1: 0, 2: 2}


class CodePrior:
    """A stand-in prior whose sample is just the categorical code (fixed by ``labels``)."""

    classes = 10

    def sample(self, n: int, gen: torch.Generator, labels: torch.Tensor | None = None, **_: object) -> torch.Tensor:
        if labels is None:
            labels = torch.randint(0, self.classes, (n,), generator=gen)
        return labels.float().unsqueeze(1)


class DigitLookup(nn.Module):
    """A stand-in generator that returns a held-out real image of digit ``perm[code]`` (or, with
    ``perm=None``, an image that does not depend on the code at all)."""

    def __init__(self, perm: list[int] | None) -> None:
        super().__init__()
        x, y = embedded_mnist("heldout")
        self.register_buffer("images", to_tensor_images(x[:2000]))
        self.register_buffer("labels", torch.from_numpy(y[:2000]))
        self.perm = perm
        self.calls = 0

    def forward(self, code: torch.Tensor) -> torch.Tensor:
        code = code[:, 0].long()
        rank = torch.arange(len(code)) + self.calls
        self.calls += len(code)
        if self.perm is None:  # the code is ignored: image i of the pool, whatever it is
            return self.images[rank % len(self.images)]
        out = []
        for c, r in zip(code.tolist(), rank.tolist(), strict=True):
            pool = (self.labels == self.perm[c]).nonzero()[:, 0]
            out.append(self.images[pool[r % len(pool)]])
        return torch.stack(out)


def test_code_accuracy_end_to_end_finds_the_relabelling() -> None:
    perm = [4, 9, 0, 2, 7, 1, 3, 8, 6, 5]
    r = categorical_code_accuracy(DigitLookup(perm), CodePrior(), per_class=40)
    # Real held-out digits: the classifier reads about 99% of them right.
    assert r["code_accuracy"] >= 0.95, r
    assert r["code_to_digit"] == dict(enumerate(perm))


def test_code_accuracy_end_to_end_of_a_generator_that_ignores_its_code_is_near_chance() -> None:
    r = categorical_code_accuracy(DigitLookup(None), CodePrior(), per_class=40)
    assert r["code_accuracy"] < 0.25, r
