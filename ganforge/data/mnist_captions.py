"""Captioned MNIST: the embedded MNIST digits, captioned with the digit and the stroke thickness, slant and size
measured from the pixels (:func:`measure_digits`, :data:`MNIST_SCHEMA`), in four splits (:func:`mnist_splits`; see
:mod:`ganforge.data.captions`)."""
from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch
from torch import Tensor

from ganforge.data.caption_templates import (
    CaptionTemplate,
    Slots,
    _a,
    _and,
    _caption_tensors,
    _cat,
    _combo_mask,
    _listing,
    _pick,
    _positive,
    _split_seeds,
)
from ganforge.data.captions import CaptionSet
from ganforge.data.mnist import embedded_mnist, to_tensor_images
from ganforge.registry import ConfigError

# ----------------------------------------------------------------------------------------------------------------------
# Captioned MNIST

DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
MNIST_SCHEMA: dict[str, list[str]] = {
    "digit": list(DIGIT_WORDS),
    "thickness": ["thin", "medium", "thick"],
    "slant": ["left", "upright", "right"],
    "size": ["small", "medium", "large"],
}
MEASURED = ("thickness", "slant", "size")  # the measured attributes, in schema order
# (digit, slant) pairs no training image shows; each is common in MNIST (about 100-190 of the 5,000 held-out test
# images), so the held-out split has enough of them.
MNIST_HELDOUT_COMBOS: tuple[tuple[str, str], ...] = (
    ("one", "left"), ("seven", "right"), ("three", "upright"), ("eight", "left"),
)

_THICK_WORDS = {"thin": ("thin", "fine"), "medium": ("medium", "regular"), "thick": ("thick", "bold")}
_DIGIT_SIZE_WORDS = {"small": ("small", "little"), "medium": ("medium-sized", "mid-sized"), "large": ("large", "big")}
_SLANT_WORDS = {
    "left": ("leaning left", "slanted to the left", "tilted left"),
    "upright": ("upright", "standing upright", "standing straight"),
    "right": ("leaning right", "slanted to the right", "tilted right"),
}


def measure_digits(images: np.ndarray) -> dict[str, np.ndarray]:
    """Stroke thickness, slant and size of each digit image (uint8 (N, H, W); ink = pixel > 127).

    - ``thickness``: the stroke width w of the w x L bar with the ink's area and perimeter (the perimeter estimated
      alike for every stroke direction); about the width of a stroke in pixels, whatever its direction.
    - ``slant``: the shear of the ink, ``-cov(x, y) / var(y)`` of ink pixel coordinates (y pointing down), so
      positive means leaning right (the top of the digit to the right of its bottom).
    - ``size``: the area of the ink's bounding box, in pixels (MNIST scales a digit's larger side to 20 pixels, so
      it varies with the digit's width).

    Images without ink measure 0 throughout.
    """
    x = np.asarray(images)
    if x.ndim != 3:
        raise ConfigError(f"measure_digits: images must be (N, H, W), got shape {x.shape}")
    ink = x > 127
    area = ink.sum((1, 2)).astype(np.float64)
    padded = np.pad(ink, ((0, 0), (1, 1), (1, 1)))
    # Perimeter by the Cauchy-Crofton formula over four directions (ink/background transitions along rows, columns
    # and both diagonals, the diagonal lines 1/sqrt(2) apart): counting pixel edges alone would read a diagonal
    # stroke's staircase as up to sqrt(2) longer, and so thinner, than the same stroke upright.
    straight = ((padded[:, 1:, :] != padded[:, :-1, :]).sum((1, 2))
                + (padded[:, :, 1:] != padded[:, :, :-1]).sum((1, 2)))
    diagonal = ((padded[:, 1:, 1:] != padded[:, :-1, :-1]).sum((1, 2))
                + (padded[:, 1:, :-1] != padded[:, :-1, 1:]).sum((1, 2)))
    perimeter = np.pi / 8 * (straight + diagonal / np.sqrt(2))
    safe = np.maximum(area, 1.0)
    # The width w of the w x L bar with the ink's area (wL) and perimeter (2(w + L)): the smaller root of
    # w^2 - (P/2) w + A = 0. Unlike area / (P/2) it does not shrink for short strokes. (The clip: a compact blob,
    # whose estimated perimeter can fall short of a square's, reads as a square, w = sqrt(A).)
    half = perimeter / 2
    thickness = (half - np.sqrt(np.maximum(half * half - 4 * area, 0.0))) / 2
    h, w = x.shape[1:]
    ys = np.arange(h, dtype=np.float64)[None, :, None]
    xs = np.arange(w, dtype=np.float64)[None, None, :]
    inkf = ink.astype(np.float64)
    my = (inkf * ys).sum((1, 2)) / safe
    mx = (inkf * xs).sum((1, 2)) / safe
    dy = ys - my[:, None, None]
    dx = xs - mx[:, None, None]
    var_y = (inkf * dy * dy).sum((1, 2)) / safe
    cov = (inkf * dx * dy).sum((1, 2)) / safe
    slant = np.where(var_y > 1e-9, -cov / np.maximum(var_y, 1e-9), 0.0)
    rows, cols = ink.any(2), ink.any(1)
    height = np.where(rows.any(1), h - rows[:, ::-1].argmax(1) - rows.argmax(1), 0)
    width = np.where(cols.any(1), w - cols[:, ::-1].argmax(1) - cols.argmax(1), 0)
    return {"thickness": thickness, "slant": slant, "size": (height * width).astype(np.float64)}


def digit_thresholds(measures: dict[str, np.ndarray]) -> dict[str, tuple[float, float]]:
    """The tercile boundaries of each measurement (fit once on training images, then applied to any)."""
    missing = [k for k in MEASURED if k not in measures]
    if missing:
        raise ConfigError(f"digit_thresholds: measurements lack '{missing[0]}' (need {', '.join(MEASURED)})")
    out = {}
    for k in MEASURED:
        v = np.asarray(measures[k], dtype=np.float64)
        if not len(v):
            raise ConfigError("digit_thresholds: no measurements")
        lo, hi = np.quantile(v, [1 / 3, 2 / 3])
        out[k] = (float(lo), float(hi))
    return out


def bin_digits(measures: dict[str, np.ndarray], thresholds: dict[str, tuple[float, float]]) -> np.ndarray:
    """int64 (N, 3): the thickness, slant and size bin (0, 1, 2 as in :data:`MNIST_SCHEMA`) of each measurement.

    A value below the first threshold is bin 0, from the first to below the second bin 1, the rest bin 2.
    """
    cols = []
    for k in MEASURED:
        if k not in measures or k not in thresholds:
            raise ConfigError(f"bin_digits: '{k}' missing from the measurements or thresholds")
        lo, hi = thresholds[k]
        cols.append(np.digitize(np.asarray(measures[k], dtype=np.float64).ravel(), [lo, hi]))
    if len({len(c) for c in cols}) > 1:
        raise ConfigError(f"bin_digits: measurements of different lengths ({', '.join(str(len(c)) for c in cols)})")
    return np.stack(cols, 1).astype(np.int64)


@lru_cache(maxsize=1)
def mnist_thresholds() -> dict[str, tuple[float, float]]:
    """The bins of captioned MNIST: :func:`digit_thresholds` of the embedded ``fit`` images (all of them).

    Bin generated digits with ``bin_digits(measure_digits(images), mnist_thresholds())`` to compare them with
    their captions.
    """
    return digit_thresholds(measure_digits(embedded_mnist("fit")[0]))


def _digit_phrase(w: Slots) -> str:
    return _cat(w["size"], w["digit"])


def _stroke(w: Slots, lead: str = "with a") -> str | None:
    """"with a thin stroke" (``lead`` first), or None when the caption leaves the thickness free."""
    return _cat(lead, w["thick"], "stroke") if w["thick"] else None


def _mnist_t5(w: Slots) -> str:
    adjs = _and([w["size"], w["slant"], _stroke(w, "drawn with a")])
    return f"this {w['digit']} is {adjs}" if adjs else f"this is {_a(w['digit'])}"


MNIST_TRAIN_TEMPLATES: tuple[CaptionTemplate, ...] = (
    CaptionTemplate(0, lambda w: _cat(_a(_digit_phrase(w)), w["slant"], _stroke(w)),
                    example="a large seven leaning right with a thick stroke"),
    CaptionTemplate(1, lambda w: _listing(_cat("handwritten", w["size"], w["digit"]), _stroke(w, ""), w["slant"]),
                    example="handwritten 7, thin stroke, upright"),
    CaptionTemplate(2, lambda w: _listing(f"the digit {w['digit']}", w["slant"], w["size"],
                                          _stroke(w, "written with a")),
                    example="the digit four, leaning left"),
    CaptionTemplate(3, lambda w: _listing(_cat(_a(_digit_phrase(w)), _stroke(w, "written with a")), w["slant"]),
                    example="a large zero written with a medium stroke"),
    CaptionTemplate(4, lambda w: _listing(_cat("a picture of", _a(_digit_phrase(w)), w["slant"]),
                                          _stroke(w, "drawn with a")),
                    example="a picture of a small 3, drawn with a bold stroke"),
    CaptionTemplate(5, _mnist_t5,
                    example="this 8 is big, tilted left and drawn with a fine stroke"),
)
MNIST_HELDOUT_TEMPLATES: tuple[CaptionTemplate, ...] = (
    CaptionTemplate(6, lambda w: f"{w['digit']}: " + (_listing(_stroke(w, ""), w["size"], w["slant"]) or "handwritten"),
                    example="7: thin stroke, small, leaning left"),
    CaptionTemplate(7, lambda w: f"{w['slant']}, " + _cat(_a(_digit_phrase(w)), _stroke(w)), ("slant",),
                    example="slanted to the left, a small seven with a thick stroke"),
    CaptionTemplate(8, lambda w: f"{_stroke(w)}, " + _cat(_a(_digit_phrase(w)), w["slant"]), ("thick",),
                    example="with a thin stroke, a large 2 standing upright"),
)

_MNIST_SLOTS = ("digit", "thick", "slant", "size")


def _digit_slots(values: np.ndarray, stated: np.ndarray, u: np.ndarray) -> Slots:
    names = [MNIST_SCHEMA[k][int(v)] for k, v in zip(MNIST_SCHEMA, values, strict=True)]
    return {
        "digit": names[0] if u[0] < 0.5 else str(int(values[0])),
        "thick": _pick(_THICK_WORDS[names[1]], u[1]) if stated[1] else None,
        "slant": _pick(_SLANT_WORDS[names[2]], u[2]) if stated[2] else None,
        "size": _pick(_DIGIT_SIZE_WORDS[names[3]], u[3]) if stated[3] else None,
    }


def caption_digits(
    attributes: np.ndarray | Tensor,
    captions_per_image: int = 5,
    seed: int = 0,
    heldout_phrasing: bool = False,
    always: tuple[str, ...] = ("digit",),
) -> tuple[list[str], Tensor, Tensor, Tensor]:
    """Captions of digits with ``attributes`` (N, 4: digit, thickness, slant, size bins), as :func:`caption_shapes`.

    The digit (as a word or a numeral) and the attributes in ``always`` are always stated, each other attribute with
    probability :data:`P_STATE`; templates :data:`MNIST_TRAIN_TEMPLATES` or :data:`MNIST_HELDOUT_TEMPLATES`.
    """
    templates = MNIST_HELDOUT_TEMPLATES if heldout_phrasing else MNIST_TRAIN_TEMPLATES
    return _caption_tensors(attributes, MNIST_SCHEMA, "caption_digits", always, captions_per_image, seed,
                            templates, _digit_slots, _MNIST_SLOTS)


def digit_attributes(images: np.ndarray, labels: np.ndarray,
                     thresholds: dict[str, tuple[float, float]] | None = None) -> np.ndarray:
    """int64 (N, 4) :data:`MNIST_SCHEMA` attributes of digit images: the label, then the measured bins
    (``thresholds`` default to :func:`mnist_thresholds`)."""
    bins = bin_digits(measure_digits(images), mnist_thresholds() if thresholds is None else thresholds)
    return np.concatenate([np.asarray(labels, dtype=np.int64)[:, None], bins], 1)


def _digit_set(images: np.ndarray, attrs: np.ndarray, captions_per_image: int, seed: int, heldout_phrasing: bool,
               always: tuple[str, ...]) -> CaptionSet:
    texts, image_of, mentions, phrasing = caption_digits(attrs, captions_per_image, seed, heldout_phrasing, always)
    return CaptionSet(to_tensor_images(images), texts, image_of, {k: list(v) for k, v in MNIST_SCHEMA.items()},
                      torch.from_numpy(attrs), mentions, phrasing)


def mnist_splits(captions_per_image: int = 5, seed: int = 0) -> dict[str, CaptionSet]:
    """Captioned MNIST's four splits, images (N, 1, 28, 28) in [-1, 1].

    ``train``: the embedded ``fit`` images (10,000) except those whose (digit, slant) is one of
    :data:`MNIST_HELDOUT_COMBOS`. The embedded ``heldout`` images (5,000): those with a held-out pair make
    ``heldout_combos`` (digit and slant always stated); the rest are split at random (given ``seed``) in halves,
    ``test`` (training templates) and ``heldout_phrasings`` (held-out templates only). Bins: :func:`mnist_thresholds`.
    """
    captions_per_image = _positive(captions_per_image, "captions_per_image", "mnist_splits")
    seeds = [_split_seeds(seed, 100 + k) for k in range(4)]
    fit_x, fit_y = embedded_mnist("fit")
    held_x, held_y = embedded_mnist("heldout")
    fit_a, held_a = digit_attributes(fit_x, fit_y), digit_attributes(held_x, held_y)
    pairs = ("digit", "slant")
    fit_combo = _combo_mask(fit_a, MNIST_SCHEMA, MNIST_HELDOUT_COMBOS, pairs)
    held_combo = _combo_mask(held_a, MNIST_SCHEMA, MNIST_HELDOUT_COMBOS, pairs)
    rest = np.flatnonzero(~held_combo)
    perm = np.random.default_rng(seeds[1][0]).permutation(len(rest))
    test_idx = np.sort(rest[perm[: len(rest) // 2]])
    phrase_idx = np.sort(rest[perm[len(rest) // 2:]])
    combo_idx = np.flatnonzero(held_combo)
    return {
        "train": _digit_set(fit_x[~fit_combo], fit_a[~fit_combo], captions_per_image, seeds[0][2], False, ("digit",)),
        "test": _digit_set(held_x[test_idx], held_a[test_idx], captions_per_image, seeds[1][2], False, ("digit",)),
        "heldout_phrasings": _digit_set(held_x[phrase_idx], held_a[phrase_idx], captions_per_image, seeds[2][2], True,
                                        ("digit",)),
        "heldout_combos": _digit_set(held_x[combo_idx], held_a[combo_idx], captions_per_image, seeds[3][2], False,
                                     ("digit", "slant")),
    }


__all__ = [
    "DIGIT_WORDS", "MNIST_HELDOUT_COMBOS", "MNIST_HELDOUT_TEMPLATES", "MNIST_SCHEMA", "MNIST_TRAIN_TEMPLATES",
    "bin_digits", "caption_digits", "digit_attributes", "digit_thresholds", "measure_digits", "mnist_splits",
    "mnist_thresholds",
]
