"""The procedural shapes data set: one shape on a dark background, drawn with Pillow, with captions that state its
shape, colour, size and position (:data:`SHAPES_SCHEMA`), in four splits (:func:`shapes_splits`; see
:mod:`ganforge.data.captions`)."""
from __future__ import annotations

import numpy as np
import torch
from PIL import Image, ImageDraw
from torch import Tensor

from ganforge.data.caption_templates import (
    CaptionTemplate,
    Slots,
    _a,
    _all_combos,
    _and,
    _attribute_array,
    _caption_tensors,
    _cat,
    _combo_mask,
    _listing,
    _pick,
    _positive,
    _split_seeds,
)
from ganforge.data.captions import CaptionSet
from ganforge.data.mnist import to_tensor_images
from ganforge.registry import ConfigError

# ----------------------------------------------------------------------------------------------------------------------
# Procedural shapes

SHAPES_SCHEMA: dict[str, list[str]] = {
    "shape": ["circle", "square", "triangle", "diamond"],
    "colour": ["red", "green", "blue", "yellow", "purple", "white"],
    "size": ["small", "big"],
    "position": ["top left", "top", "top right", "left", "centre", "right", "bottom left", "bottom", "bottom right"],
}
# (shape, colour) pairs no training image shows: one per shape, each a different colour.
HELDOUT_COMBOS: tuple[tuple[str, str], ...] = (
    ("circle", "blue"), ("square", "yellow"), ("triangle", "red"), ("diamond", "green"),
)
# Saturated colours at least ~125 apart in RGB (blue-purple is the closest pair) and far from the background, so a
# small CNN tells them apart even at antialiased edges and under the +-10% brightness jitter.
SHAPE_RGB: dict[str, tuple[int, int, int]] = {
    "red": (230, 40, 40), "green": (40, 200, 60), "blue": (50, 90, 250),
    "yellow": (240, 220, 40), "purple": (165, 55, 215), "white": (235, 235, 235),
}
BACKGROUND = (20, 20, 20)
SHAPE_WIDTH = {"small": 0.22, "big": 0.40}  # of the image width, before the +-5% size jitter
# Centres (fraction of the image) of the 3 x 3 positions: the cells' centres, the outer ones pulled in from 1/6 and
# 5/6 so that a big shape fits beside the edge without being pushed far off its cell.
_GRID = (0.23, 0.5, 0.77)
_JITTER = 1 / 16  # position jitter, fraction of the image
_SUPERSAMPLE = 4  # drawn at 4x and box-filtered down: antialiased edges

_SHAPE_WORDS = {"circle": ("circle", "disc"), "square": ("square", "box"), "triangle": ("triangle",),
                "diamond": ("diamond", "rhombus")}
_SIZE_WORDS = {"small": ("small", "tiny", "little"), "big": ("big", "large")}
# Each position: phrases that follow a noun ("at the top left") and bare ones ("top left").
_POSITION_WORDS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "top left": (("at the top left", "in the top left corner", "in the upper left"), ("top left", "upper left")),
    "top": (("at the top", "near the top"), ("top",)),
    "top right": (("at the top right", "in the top right corner", "in the upper right"), ("top right", "upper right")),
    "left": (("on the left", "on the left side", "at the left"), ("left", "left side")),
    "centre": (("in the centre", "in the middle"), ("centre", "middle")),
    "right": (("on the right", "on the right side", "at the right"), ("right", "right side")),
    "bottom left": (("at the bottom left", "in the bottom left corner", "in the lower left"),
                    ("bottom left", "lower left")),
    "bottom": (("at the bottom", "near the bottom"), ("bottom",)),
    "bottom right": (("at the bottom right", "in the bottom right corner", "in the lower right"),
                     ("bottom right", "lower right")),
}


def _shape_np(w: Slots) -> str:
    return _cat(w["size"], w["colour"], w["shape"])


def _shapes_t2(w: Slots) -> str:
    adjs = _and([w["colour"], w["size"]])
    return _listing(_a(w["shape"]), adjs, w["pos"]) if adjs else _cat(_a(w["shape"]), w["pos"])


def _shapes_t5(w: Slots) -> str:
    adjs = _and([w["size"], w["colour"]])
    if adjs:
        return _cat("the", w["shape"], w["pos"], "is", adjs)
    return _cat("the", w["shape"], "is", w["pos"]) if w["pos"] else _cat("there is", _a(w["shape"]))


SHAPES_TRAIN_TEMPLATES: tuple[CaptionTemplate, ...] = (
    CaptionTemplate(0, lambda w: _cat(_a(_shape_np(w)), w["pos"]),
                    example="a small red circle at the top left"),
    CaptionTemplate(1, lambda w: _cat("there is", _a(_shape_np(w)), w["pos"]),
                    example="there is a red circle in the top left corner"),
    CaptionTemplate(2, _shapes_t2,
                    example="a circle, red and small, at the top left"),
    CaptionTemplate(3, lambda w: _cat("this picture shows", _a(_shape_np(w)), w["pos"]),
                    example="this picture shows a tiny red disc in the upper left"),
    CaptionTemplate(4, lambda w: _cat("you can see", _a(_shape_np(w)), w["pos"]),
                    example="you can see a small red circle at the top left"),
    CaptionTemplate(5, _shapes_t5,
                    example="the circle at the top left is small and red"),
    CaptionTemplate(6, lambda w: _cat("an image of", _a(_shape_np(w)), w["pos"]),
                    example="an image of a little red circle in the top left corner"),
)
# Sentence structures no training caption has, made only of training words (a test checks the vocabulary).
SHAPES_HELDOUT_TEMPLATES: tuple[CaptionTemplate, ...] = (
    CaptionTemplate(7, lambda w: f"{w['bare'].replace(' ', '-')}: {_shape_np(w)}", ("pos",),
                    example="top-left: tiny red disc"),
    CaptionTemplate(8, lambda w: _listing(w["colour"], w["size"], w["shape"], w["bare"]),
                    example="red, small, circle, top left"),
    CaptionTemplate(9, lambda w: _cat(w["pos"], "you can see", _a(_shape_np(w))), ("pos",),
                    example="in the top left corner you can see a small red circle"),
)

_SHAPE_SLOTS = ("shape", "colour", "size", "pos")


def _shape_slots(values: np.ndarray, stated: np.ndarray, u: np.ndarray) -> Slots:
    names = [SHAPES_SCHEMA[k][int(v)] for k, v in zip(SHAPES_SCHEMA, values, strict=True)]
    preps, bares = _POSITION_WORDS[names[3]]
    return {
        "shape": _pick(_SHAPE_WORDS[names[0]], u[0]),
        "colour": names[1] if stated[1] else None,
        "size": _pick(_SIZE_WORDS[names[2]], u[1]) if stated[2] else None,
        "pos": _pick(preps, u[2]) if stated[3] else None,
        "bare": _pick(bares, u[3]) if stated[3] else None,
    }


def render_shapes(attributes: np.ndarray | Tensor, image_size: int = 32, seed: int = 0) -> np.ndarray:
    """uint8 RGB images (N, S, S, 3), one shape each, for ``attributes`` (N, 4): shape, colour, size, position.

    Positions are the cells of a 3 x 3 grid plus a seeded jitter of about 1/16 of the image; big shapes are about 0.40
    of the image wide, small ones 0.22. Each image also gets a seeded brightness (+-10%), size (+-5%) and, for the
    polygons, rotation (+-10 degrees), so the data is more than 432 distinct pictures. Shapes always lie inside the
    image. Drawn at 4x and box-filtered down for antialiased edges.
    """
    a = _attribute_array(attributes, SHAPES_SCHEMA, "render_shapes")
    if not isinstance(image_size, (int, np.integer)) or image_size < 8:
        raise ConfigError(f"render_shapes: image_size must be an integer >= 8, got {image_size!r}")
    s = int(image_size)
    big = s * _SUPERSAMPLE
    n = len(a)
    rng = np.random.default_rng(seed)
    jitter = rng.uniform(-_JITTER, _JITTER, (n, 2))
    bright = rng.uniform(0.9, 1.1, n)
    scale = rng.uniform(0.95, 1.05, n)
    angle = np.deg2rad(rng.uniform(-10.0, 10.0, n))
    rgb = np.array([SHAPE_RGB[c] for c in SHAPES_SCHEMA["colour"]], dtype=np.float64)
    margin = 1.5 / s  # keep (at least) one output pixel of background around every shape
    out = np.empty((n, s, s, 3), dtype=np.uint8)
    canvas = Image.new("RGB", (big, big))
    draw = ImageDraw.Draw(canvas)
    for i in range(n):
        shape, colour, size, pos = (int(v) for v in a[i])
        half = SHAPE_WIDTH[SHAPES_SCHEMA["size"][size]] * scale[i] / 2
        cx = _GRID[pos % 3] + jitter[i, 0]
        cy = _GRID[pos // 3] + jitter[i, 1]
        if shape == 0:  # circle: rotation would not show
            pts = None
            xs = np.array([-half, half])
            ys = xs
        else:
            if shape == 1:  # square
                xs, ys = np.array([-1, 1, 1, -1]) * half, np.array([-1, -1, 1, 1]) * half
            elif shape == 2:  # equilateral triangle pointing up, centred on its centroid; about as tall as wide
                t = 1.15 * half
                h = t * np.sqrt(3)
                xs, ys = np.array([0, t, -t]), np.array([-2 * h / 3, h / 3, h / 3])
            else:  # rhombus, taller than wide, so that it never reads as a tilted square
                xs, ys = np.array([0, 0.85, 0, -0.85]) * half, np.array([-1.2, 0, 1.2, 0]) * half
            c, sn = np.cos(angle[i]), np.sin(angle[i])
            xs, ys = c * xs - sn * ys, sn * xs + c * ys
            pts = True
        # Shift the shape back inside when the jitter pushed it over an edge.
        cx += max(0.0, margin - (cx + xs.min())) - max(0.0, cx + xs.max() - (1 - margin))
        cy += max(0.0, margin - (cy + ys.min())) - max(0.0, cy + ys.max() - (1 - margin))
        fill = tuple(int(v) for v in np.clip(rgb[colour] * bright[i], 0, 255).round())
        draw.rectangle((0, 0, big, big), fill=BACKGROUND)
        if pts is None:
            draw.ellipse(((cx - half) * big, (cy - half) * big, (cx + half) * big, (cy + half) * big), fill=fill)
        else:
            draw.polygon([((cx + x) * big, (cy + y) * big) for x, y in zip(xs, ys, strict=True)], fill=fill)
        out[i] = np.asarray(canvas.resize((s, s), Image.Resampling.BOX))
    return out


def caption_shapes(
    attributes: np.ndarray | Tensor,
    captions_per_image: int = 5,
    seed: int = 0,
    heldout_phrasing: bool = False,
    always: tuple[str, ...] = ("shape",),
) -> tuple[list[str], Tensor, Tensor, Tensor]:
    """Captions of shapes images: ``(texts, image_of, mentions, phrasing)``, ``captions_per_image`` per image.

    Every caption states the shape (or a synonym) and the attributes in ``always``; each other attribute with
    probability :data:`P_STATE`. Templates are :data:`SHAPES_TRAIN_TEMPLATES`, or with ``heldout_phrasing``
    :data:`SHAPES_HELDOUT_TEMPLATES`.
    """
    templates = SHAPES_HELDOUT_TEMPLATES if heldout_phrasing else SHAPES_TRAIN_TEMPLATES
    return _caption_tensors(attributes, SHAPES_SCHEMA, "caption_shapes", always, captions_per_image, seed,
                            templates, _shape_slots, _SHAPE_SLOTS)


def _shapes_set(kind: str, n: int, seed: int, split: int, captions_per_image: int, image_size: int) -> CaptionSet:
    """``n`` shapes images of one distribution (``train`` or ``combos``) with train or held-out phrasing."""
    s_attr, s_render, s_caption = _split_seeds(seed, split)
    rng = np.random.default_rng(s_attr)
    combos = _all_combos(SHAPES_SCHEMA)
    held = _combo_mask(combos, SHAPES_SCHEMA, HELDOUT_COMBOS, ("shape", "colour"))
    pool = combos[held] if kind == "combos" else combos[~held]
    attrs = pool[rng.integers(0, len(pool), n)]
    images = render_shapes(attrs, image_size, s_render)
    texts, image_of, mentions, phrasing = caption_shapes(
        attrs, captions_per_image, s_caption, heldout_phrasing=kind == "phrasings",
        always=("shape", "colour") if kind == "combos" else ("shape",),
    )
    return CaptionSet(to_tensor_images(images), texts, image_of, {k: list(v) for k, v in SHAPES_SCHEMA.items()},
                      torch.from_numpy(attrs), mentions, phrasing)


def shapes_splits(n_train: int = 10000, n_test: int = 2000, captions_per_image: int = 5, image_size: int = 32,
                  seed: int = 0) -> dict[str, CaptionSet]:
    """The shapes data set's four splits: ``train``, ``test``, ``heldout_phrasings``, ``heldout_combos``.

    ``train`` (``n_train`` images) draws attribute tuples uniformly from every combination except the
    :data:`HELDOUT_COMBOS` (shape, colour) pairs; ``test`` and ``heldout_phrasings`` (``n_test`` each) are new images
    from the same distribution, captioned with the training templates and with the held-out ones only;
    ``heldout_combos`` (``n_test``) shows only held-out pairs, every caption stating shape and colour. Deterministic
    given ``seed``.
    """
    what = "shapes_splits"
    n_train, n_test = _positive(n_train, "n_train", what), _positive(n_test, "n_test", what)
    captions_per_image = _positive(captions_per_image, "captions_per_image", what)
    image_size = _positive(image_size, "image_size", what, 8)
    return {
        "train": _shapes_set("train", n_train, seed, 0, captions_per_image, image_size),
        "test": _shapes_set("train", n_test, seed, 1, captions_per_image, image_size),
        "heldout_phrasings": _shapes_set("phrasings", n_test, seed, 2, captions_per_image, image_size),
        "heldout_combos": _shapes_set("combos", n_test, seed, 3, captions_per_image, image_size),
    }


__all__ = [
    "BACKGROUND", "HELDOUT_COMBOS", "SHAPES_HELDOUT_TEMPLATES", "SHAPES_SCHEMA", "SHAPES_TRAIN_TEMPLATES", "SHAPE_RGB",
    "caption_shapes", "render_shapes", "shapes_splits",
]
