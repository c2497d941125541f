"""Captioned images for text-to-image GANs (Reed et al. 2016, GAN-CLS / GAN-INT), with captions a machine can check.

A :class:`CaptionSet` holds images, their captions (several per image) and, for the two synthetic data sets here, what
each image shows (``attributes``) and what each caption says about it (``mentions``; ``-1`` where the caption leaves
an attribute free). Knowing both lets metrics score a generator against the caption instead of against a human:
did the image conditioned on "a small red circle at the top left" come out small, red, round and top left?

- **Shapes** (:func:`shapes_splits`): one shape on a dark background, drawn with Pillow; attributes shape, colour,
  size and position (:data:`SHAPES_SCHEMA`).
- **Captioned MNIST** (:func:`mnist_splits`): the embedded MNIST digits, captioned with the digit and the stroke
  thickness, slant and size measured from the pixels (:func:`measure_digits`, :data:`MNIST_SCHEMA`).

Both come in four splits: ``train``; ``test`` (new images, same distribution and phrasing); ``heldout_phrasings``
(same distribution, captions only from sentence templates never used in training, built from training words only);
``heldout_combos`` (attribute pairs, :data:`HELDOUT_COMBOS` / :data:`MNIST_HELDOUT_COMBOS`, that no training image
shows). The last two measure whether a model understands captions or memorised them.

Users bring their own pairs in a plain format (:func:`read_captioned`): a ``.jsonl`` file of
``{"image": "images/000000.png", "caption": "..."}`` lines, or a ``.csv`` with ``image`` and ``caption`` columns;
:func:`write_captioned` writes that format (plus the attributes, when known).
"""
from __future__ import annotations

import csv
import io
import json
import os
import re
import shutil
import tempfile
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageDraw
from torch import Tensor

from ganforge.data.images import _square
from ganforge.data.mnist import embedded_mnist, to_tensor_images
from ganforge.io import atomic_write
from ganforge.registry import ConfigError

# ----------------------------------------------------------------------------------------------------------------------
# The container


def _one_line(message: str) -> str:
    # The CLI prints a ConfigError as one line; a file name or a caption may hold a newline.
    return " ".join(message.splitlines()).strip()


def _index(idx: Tensor | np.ndarray | list[int], n: int, what: str) -> Tensor:
    """``idx`` (int indices or a boolean mask over ``n`` items) as an int64 tensor, checked against ``n``."""
    t = torch.as_tensor(idx)
    if t.dtype == torch.bool:
        if t.shape != (n,):
            raise ConfigError(f"{what}: a boolean mask must have {n} entries, got shape {tuple(t.shape)}")
        return t.nonzero().flatten()
    t = t.flatten().long()
    if len(t) and (t.min() < -n or t.max() >= n):
        raise ConfigError(f"{what}: index out of range for {n} items")
    return t % n if n else t


@dataclass
class CaptionSet:
    """Images and their captions; optionally what each image shows and what each caption states.

    ``images`` (N, C, H, W) float32 in [-1, 1]; ``texts`` M captions, M >= N, every image with at least one;
    ``image_of`` (M,) int64, the image of each caption. With a ``schema`` (attribute name -> value names, in order),
    ``attributes`` (N, A) int64 holds each image's value index per attribute and ``mentions`` (M, A) int64 the value
    each caption states, ``-1`` where it leaves the attribute free. ``phrasing`` (M,) int64 is the id of the
    sentence template a caption came from (synthetic data only).
    """

    images: Tensor
    texts: list[str]
    image_of: Tensor
    schema: dict[str, list[str]] = field(default_factory=dict)
    attributes: Tensor | None = None
    mentions: Tensor | None = None
    phrasing: Tensor | None = None

    def __post_init__(self) -> None:
        self.texts = list(self.texts)
        self.image_of = torch.as_tensor(self.image_of, dtype=torch.int64)
        self.schema = {str(k): list(v) for k, v in self.schema.items()}
        for name in ("attributes", "mentions", "phrasing"):
            value = getattr(self, name)
            if value is not None:
                setattr(self, name, torch.as_tensor(value, dtype=torch.int64))
        if not isinstance(self.images, Tensor) or self.images.dim() != 4:
            shape = getattr(self.images, "shape", None)
            raise ConfigError(f"CaptionSet: images must be a (N, C, H, W) tensor, got shape {shape}")
        n, m, a = len(self.images), len(self.texts), len(self.schema)
        if self.image_of.shape != (m,):
            raise ConfigError(f"CaptionSet: image_of must have one entry per caption ({m}), "
                              f"got shape {tuple(self.image_of.shape)}")
        if m and (self.image_of.min() < 0 or self.image_of.max() >= n):
            raise ConfigError(f"CaptionSet: image_of must index the {n} images")
        if n and (torch.bincount(self.image_of, minlength=n) == 0).any():
            missing = int((torch.bincount(self.image_of, minlength=n) == 0).nonzero()[0])
            raise ConfigError(f"CaptionSet: image {missing} has no caption (every image needs one)")
        if self.attributes is not None:
            if not a or self.attributes.shape != (n, a):
                raise ConfigError(f"CaptionSet: attributes must be (N, A) = ({n}, {a}) with a schema, "
                                  f"got shape {tuple(self.attributes.shape)}")
            sizes = torch.tensor([len(v) for v in self.schema.values()])
            if n and ((self.attributes < 0) | (self.attributes >= sizes)).any():
                raise ConfigError("CaptionSet: attributes hold value indices outside the schema")
        if self.mentions is not None:
            if not a or self.mentions.shape != (m, a):
                raise ConfigError(f"CaptionSet: mentions must be (M, A) = ({m}, {a}) with a schema, "
                                  f"got shape {tuple(self.mentions.shape)}")
            sizes = torch.tensor([len(v) for v in self.schema.values()])
            if m and ((self.mentions < -1) | (self.mentions >= sizes)).any():
                raise ConfigError("CaptionSet: mentions hold value indices outside the schema (or below -1)")
        if self.phrasing is not None and self.phrasing.shape != (m,):
            raise ConfigError(f"CaptionSet: phrasing must have one entry per caption ({m}), "
                              f"got shape {tuple(self.phrasing.shape)}")

    def __len__(self) -> int:
        """The number of captions (the unit a text-to-image trainer samples)."""
        return len(self.texts)

    @property
    def num_images(self) -> int:
        """The number of images N."""
        return len(self.images)

    def select_images(self, idx: Tensor | np.ndarray | list[int]) -> CaptionSet:
        """The images ``idx`` (in that order, no repeats) with all their captions, re-indexed."""
        idx = _index(idx, self.num_images, "select_images")
        if len(torch.unique(idx)) != len(idx):
            raise ConfigError("select_images: indices repeat (an image would be kept twice)")
        new = torch.full((self.num_images,), -1, dtype=torch.int64)
        new[idx] = torch.arange(len(idx))
        keep = (new[self.image_of] >= 0).nonzero().flatten()
        return self._subset(idx, keep, new[self.image_of[keep]])

    def select_captions(self, idx: Tensor | np.ndarray | list[int]) -> CaptionSet:
        """The captions ``idx`` (in that order) and only the images they describe (in their old order), re-indexed."""
        idx = _index(idx, len(self), "select_captions")
        images = torch.unique(self.image_of[idx])  # sorted: the kept images stay in their old order
        new = torch.full((self.num_images,), -1, dtype=torch.int64)
        new[images] = torch.arange(len(images))
        return self._subset(images, idx, new[self.image_of[idx]])

    def _subset(self, images: Tensor, captions: Tensor, image_of: Tensor) -> CaptionSet:
        return CaptionSet(
            images=self.images[images],
            texts=[self.texts[i] for i in captions.tolist()],
            image_of=image_of,
            schema={k: list(v) for k, v in self.schema.items()},
            attributes=None if self.attributes is None else self.attributes[images],
            mentions=None if self.mentions is None else self.mentions[captions],
            phrasing=None if self.phrasing is None else self.phrasing[captions],
        )


def words(text: str) -> list[str]:
    """A caption's words: lowercased runs of letters (digits and punctuation split them and are dropped)."""
    return re.findall(r"[^\W\d_]+", text.lower())


# ----------------------------------------------------------------------------------------------------------------------
# Caption templates: shared machinery

P_STATE = 0.7  # each optional attribute is stated with this probability, so some captions leave attributes free

Slots = dict[str, "str | None"]


def _cat(*parts: str | None) -> str:
    """The given parts that are not empty, joined by spaces."""
    return " ".join(p for p in parts if p)


def _a(phrase: str) -> str:
    """``phrase`` with its indefinite article ("a small circle", "an eight", "an 8", "an upright one")."""
    first = phrase.split()[0].lower()
    vowel = first[0] in "aeiou8" and not first.startswith("one")  # "a one": said "wun"
    return ("an " if vowel else "a ") + phrase


def _and(items: list[str | None]) -> str:
    """"x", "x and y", "x, y and z" of the stated items ("" if none)."""
    items = [i for i in items if i]
    return ", ".join(items[:-1]) + " and " + items[-1] if len(items) > 1 else "".join(items)


def _listing(*items: str | None) -> str:
    return ", ".join(i for i in items if i)


@dataclass(frozen=True)
class CaptionTemplate:
    """A sentence structure: ``make(slots)`` writes a caption from slot words (``None`` for what it leaves free).

    ``id`` is what :attr:`CaptionSet.phrasing` records; ``needs`` are slots the template is only drawn with (the
    sentence would not read well, or would look like another template's, without them).
    """

    id: int
    make: Callable[[Slots], str]
    needs: tuple[str, ...] = ()  # slots that must be stated for the template to read well (or be told apart)
    example: str = ""


def _caption(
    attributes: np.ndarray,
    captions_per_image: int,
    seed: int,
    templates: tuple[CaptionTemplate, ...],
    slot_words: Callable[[np.ndarray, np.ndarray, np.ndarray], Slots],
    slot_of: tuple[str, ...],
    always: tuple[int, ...],
    what: str,
) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray]:
    """Captions for ``attributes`` (N, A): texts, image_of, mentions (M, A) and phrasing ids.

    Attributes in ``always`` are stated by every caption, the others each with probability :data:`P_STATE`;
    ``slot_words(values, stated, u)`` turns one caption's values, stated mask and uniforms into template slots,
    ``slot_of[j]`` naming the slot of attribute ``j``. The template is drawn among those whose needs are stated.
    """
    if not isinstance(captions_per_image, (int, np.integer)) or captions_per_image < 1:
        raise ConfigError(f"{what}: captions_per_image must be a positive integer, got {captions_per_image!r}")
    rng = np.random.default_rng(seed)
    n, a = attributes.shape
    image_of = np.repeat(np.arange(n, dtype=np.int64), captions_per_image)
    values = attributes[image_of]
    m = len(image_of)
    stated = rng.random((m, a)) < P_STATE
    stated[:, list(always)] = True
    u = rng.random((m, 8))  # word choices (columns 0..6) and the template (column 7)
    texts, phrasing = [], np.empty(m, dtype=np.int64)
    for i in range(m):
        slots = slot_words(values[i], stated[i], u[i])
        given = {slot_of[j] for j in range(a) if stated[i, j]}
        ok = [t for t in templates if set(t.needs) <= given]
        t = ok[int(u[i, 7] * len(ok))]
        texts.append(t.make(slots))
        phrasing[i] = t.id
    mentions = np.where(stated, values, -1).astype(np.int64)
    return texts, image_of, mentions, phrasing


def _pick(options: tuple[str, ...], u: float) -> str:
    return options[min(int(u * len(options)), len(options) - 1)]


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


def _attribute_array(attributes: np.ndarray | Tensor, schema: dict[str, list[str]], what: str) -> np.ndarray:
    a = attributes.detach().cpu().numpy() if isinstance(attributes, Tensor) else np.asarray(attributes)
    if a.ndim != 2 or a.shape[1] != len(schema) or not np.issubdtype(a.dtype, np.integer):
        raise ConfigError(f"{what}: attributes must be integers of shape (N, {len(schema)}) "
                          f"({', '.join(schema)}), got {a.dtype} {a.shape}")
    sizes = np.array([len(v) for v in schema.values()])
    if len(a) and ((a < 0) | (a >= sizes)).any():
        raise ConfigError(f"{what}: attribute values out of range (value counts: "
                          f"{', '.join(f'{k} {len(v)}' for k, v in schema.items())})")
    return a.astype(np.int64)


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


def _caption_tensors(attributes: Any, schema: dict[str, list[str]], what: str, always: tuple[str, ...],
                     captions_per_image: int, seed: int, templates: Any, slots: Any,
                     slot_names: Any) -> tuple[list[str], Tensor, Tensor, Tensor]:
    """The checks and conversions :func:`caption_shapes` and :func:`caption_digits` share around :func:`_caption`."""
    a = _attribute_array(attributes, schema, what)
    names = list(schema)
    bad = [k for k in always if k not in names]
    if bad:
        raise ConfigError(f"{what}: unknown attribute '{bad[0]}' in always (choices: {', '.join(names)})")
    texts, image_of, mentions, phrasing = _caption(
        a, captions_per_image, seed, templates, slots, slot_names,
        tuple(sorted({0, *(names.index(k) for k in always)})), what,
    )
    return texts, torch.from_numpy(image_of), torch.from_numpy(mentions), torch.from_numpy(phrasing)


def _all_combos(schema: dict[str, list[str]]) -> np.ndarray:
    return np.stack(np.meshgrid(*[np.arange(len(v)) for v in schema.values()], indexing="ij"), -1).reshape(
        -1, len(schema))


def _combo_mask(attrs: np.ndarray, schema: dict[str, list[str]], pairs: tuple[tuple[str, str], ...],
                names: tuple[str, str]) -> np.ndarray:
    """Whether each row's (names[0], names[1]) values are one of ``pairs``."""
    i, j = list(schema).index(names[0]), list(schema).index(names[1])
    held = {(schema[names[0]].index(p), schema[names[1]].index(q)) for p, q in pairs}
    return np.array([(int(r[i]), int(r[j])) in held for r in attrs], dtype=bool)


def _split_seeds(seed: int, split: int) -> list[int]:
    # One independent stream per split: no split's images or captions repeat another's draws.
    return [int(v) for v in np.random.SeedSequence([int(seed), split]).generate_state(3)]


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


def _positive(value: Any, name: str, what: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ConfigError(f"{what}: {name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


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


# ----------------------------------------------------------------------------------------------------------------------
# The plain on-disk format

CAPTION_EXTENSIONS = (".jsonl", ".csv")


def _read_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _read_umask()


def _uint8_images(images: Tensor) -> tuple[np.ndarray, str]:
    if images.dim() != 4 or images.shape[1] not in (1, 3):
        raise ConfigError(f"write_captioned: images must be (N, 1 or 3, H, W), got shape {tuple(images.shape)}")
    x = ((images.detach().float().cpu().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    x = x.permute(0, 2, 3, 1).numpy()
    return (x[..., 0], "L") if x.shape[-1] == 1 else (x, "RGB")


def write_captioned(cs: CaptionSet, folder: str | Path) -> Path:
    """Write ``cs`` as ``folder/images/000000.png, ...`` and ``folder/captions.jsonl``; return the latter's path.

    One JSON line per caption: ``{"image": "images/000000.png", "caption": "..."}``, plus, when the set has a
    schema, the image's ``"attributes"`` and the caption's ``"mentions"`` (only what it states) by value name, and
    its ``"phrasing"`` id. The images are written into a temporary folder renamed into place, and the captions
    file atomically after them; an earlier set in ``folder`` is moved aside first and deleted only once the new
    one is complete, so a crash never leaves a captions file naming images it does not describe.
    """
    folder = Path(folder).expanduser()
    arrays, mode = _uint8_images(cs.images)
    folder.mkdir(parents=True, exist_ok=True)
    names = list(cs.schema)
    lines = []
    for i, text in enumerate(cs.texts):
        img = int(cs.image_of[i])
        row: dict[str, Any] = {"image": f"images/{img:06d}.png", "caption": text}
        if cs.attributes is not None:
            row["attributes"] = {k: cs.schema[k][int(v)] for k, v in zip(names, cs.attributes[img], strict=True)}
        if cs.mentions is not None:
            row["mentions"] = {k: cs.schema[k][int(v)] for k, v in zip(names, cs.mentions[i], strict=True) if v >= 0}
        if cs.phrasing is not None:
            row["phrasing"] = int(cs.phrasing[i])
        lines.append(json.dumps(row, ensure_ascii=False))
    tmp = Path(tempfile.mkdtemp(dir=folder, prefix=".images.", suffix=".tmp"))
    path = folder / "captions.jsonl"
    old = None
    try:
        os.chmod(tmp, 0o777 & ~_UMASK)  # mkdtemp makes a private folder; the output gets the usual permissions
        for i, arr in enumerate(arrays):
            Image.fromarray(arr, mode).save(tmp / f"{i:06d}.png", compress_level=1)
        target = folder / "images"
        if target.exists() or path.exists():
            # A folder cannot be replaced by rename while it has files: the old images and captions move
            # aside together first, so a crash before the new captions file is written leaves images
            # without captions (an error when read), never old captions naming new images.
            old = Path(tempfile.mkdtemp(dir=folder, prefix=".images.", suffix=".old"))
            if path.exists():
                os.replace(path, old / "captions.jsonl")
            if target.exists():
                os.replace(target, old / "images")
        os.replace(tmp, target)
        text = "\n".join(lines) + "\n"
        atomic_write(path, lambda t: Path(t).write_text(text, encoding="utf-8"))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if old is not None:  # only once the new set is complete
        shutil.rmtree(old, ignore_errors=True)
    return path


@dataclass
class _Record:
    line: int
    image: str
    caption: str
    extra: dict[str, Any]


def _jsonl_records(text: str, path: Path) -> list[_Record]:
    records = []
    # Split on "\n" only: json.dumps(ensure_ascii=False) leaves U+2028 and friends unescaped inside strings, and
    # str.splitlines would cut a caption in two there.
    for k, line in enumerate(text.split("\n"), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise ConfigError(_one_line(f"{path}: line {k}: invalid JSON ({e.msg})")) from None
        if not isinstance(row, dict):
            raise ConfigError(_one_line(f"{path}: line {k}: expected a JSON object, got {type(row).__name__}"))
        image = row.get("image", row.get("path"))
        if image is None:
            raise ConfigError(_one_line(f"{path}: line {k}: missing key 'image' (or 'path')"))
        if "caption" not in row:
            raise ConfigError(_one_line(f"{path}: line {k}: missing key 'caption'"))
        caption = row["caption"]
        if not isinstance(image, str):
            raise ConfigError(_one_line(f"{path}: line {k}: 'image' must be a string (a file path)"))
        if caption is not None and not isinstance(caption, str):
            raise ConfigError(_one_line(f"{path}: line {k}: 'caption' must be a string"))
        extra = {key: row[key] for key in ("attributes", "mentions", "phrasing") if key in row}
        records.append(_Record(k, image, caption or "", extra))
    return records


def _csv_records(text: str, path: Path) -> list[_Record]:
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader)
    except StopIteration:
        return []
    except csv.Error as e:
        raise ConfigError(_one_line(f"{path}: line 1: invalid CSV ({e})")) from None
    cols = [h.strip().lower() for h in header]
    image_col = cols.index("image") if "image" in cols else cols.index("path") if "path" in cols else None
    shown = ", ".join(h for h in header if h.strip()) or "none"
    if image_col is None:
        raise ConfigError(_one_line(f"{path}: missing column 'image' (or 'path'); columns: {shown}"))
    if "caption" not in cols:
        raise ConfigError(_one_line(f"{path}: missing column 'caption'; columns: {shown}"))
    caption_col = cols.index("caption")
    records = []
    try:
        for row in reader:
            if not any(cell.strip() for cell in row):
                continue  # blank line
            row = row + [""] * (len(cols) - len(row))  # a short row's missing cells are empty
            records.append(_Record(reader.line_num, row[image_col].strip(), row[caption_col], {}))
    except csv.Error as e:
        raise ConfigError(_one_line(f"{path}: line {reader.line_num}: invalid CSV ({e})")) from None
    return records


def _check_names(value: Any, key: str, line: int, path: Path) -> dict[str, str]:
    if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise ConfigError(_one_line(f"{path}: line {line}: '{key}' must map attribute names to value names"))
    return value


def _restore_attributes(records: list[_Record], image_index: list[int], n: int, path: Path
                        ) -> tuple[dict[str, list[str]], Tensor | None, Tensor | None, Tensor | None]:
    """The schema, attributes, mentions and phrasing stored in JSONL lines, when every kept line has them."""
    phrasing = None
    if records and all("phrasing" in r.extra for r in records):
        for r in records:
            p = r.extra["phrasing"]
            if isinstance(p, bool) or not isinstance(p, int):
                raise ConfigError(_one_line(f"{path}: line {r.line}: 'phrasing' must be an integer"))
        phrasing = torch.tensor([r.extra["phrasing"] for r in records], dtype=torch.int64)
    if not records or not all("attributes" in r.extra for r in records):
        return {}, None, None, phrasing
    first = _check_names(records[0].extra["attributes"], "attributes", records[0].line, path)
    names = list(first)
    if not names:
        return {}, None, None, phrasing
    seen: dict[str, set[str]] = {k: set() for k in names}
    per_image: dict[int, _Record] = {}
    for r, img in zip(records, image_index, strict=True):
        attrs = _check_names(r.extra["attributes"], "attributes", r.line, path)
        if set(attrs) != set(names):
            raise ConfigError(_one_line(f"{path}: line {r.line}: attributes name {', '.join(sorted(attrs))}, "
                                        f"but line {records[0].line} names {', '.join(sorted(names))}"))
        if img in per_image and per_image[img].extra["attributes"] != attrs:
            raise ConfigError(_one_line(f"{path}: line {r.line}: attributes of {r.image} differ from "
                                        f"line {per_image[img].line}'s"))
        per_image.setdefault(img, r)
        for k, v in attrs.items():
            seen[k].add(v)
    has_mentions = all("mentions" in r.extra for r in records)
    if has_mentions:
        for r in records:
            for k, v in _check_names(r.extra["mentions"], "mentions", r.line, path).items():
                if k not in seen:
                    raise ConfigError(_one_line(f"{path}: line {r.line}: mentions name unknown attribute '{k}' "
                                                f"(attributes: {', '.join(names)})"))
                seen[k].add(v)
    # The built-in schemas keep their value order, so indices match the synthetic data's (and its metrics').
    schema = {k: sorted(seen[k]) for k in names}
    for known in (SHAPES_SCHEMA, MNIST_SCHEMA):
        if set(names) == set(known) and all(seen[k] <= set(known[k]) for k in names):
            schema = {k: list(v) for k, v in known.items()}
            break
    order = list(schema)
    attributes = torch.tensor(
        [[schema[k].index(per_image[i].extra["attributes"][k]) for k in order] for i in range(n)], dtype=torch.int64)
    mentions = None
    if has_mentions:
        mentions = torch.tensor(
            [[schema[k].index(r.extra["mentions"][k]) if k in r.extra["mentions"] else -1 for k in order]
             for r in records], dtype=torch.int64)
    return schema, attributes, mentions, phrasing


def read_captioned(path: str | Path, size: int | None = None, channels: int | None = None) -> CaptionSet:
    """Image/caption pairs from a ``.jsonl`` (keys ``image`` or ``path``, and ``caption``) or ``.csv`` file
    (columns ``image`` or ``path``, and ``caption``).

    Image paths are relative to the file's folder, or absolute; several lines naming one image are several captions
    of it. Images are converted to grey (``channels`` 1) or RGB (3), their shorter side scaled to ``size`` and
    centre-cropped; both default to the first image's (its shorter side; 1 channel if it is grey). Captions are kept
    as given, stripped. Lines whose image is missing or unreadable, and empty captions, are skipped with one warning;
    nothing left is a :class:`ConfigError`, as is any malformed file. JSONL ``attributes``, ``mentions`` and
    ``phrasing`` (as :func:`write_captioned` writes them) are restored when every kept line has them.
    """
    p = Path(path).expanduser()
    if not p.exists():
        raise ConfigError(_one_line(f"caption file not found: {p}"))
    if p.is_dir():
        raise ConfigError(_one_line(f"{p} is a folder; give its caption file (.jsonl or .csv), "
                                    f"e.g. {p / 'captions.jsonl'}"))
    ext = p.suffix.lower()
    if ext not in CAPTION_EXTENSIONS:
        raise ConfigError(_one_line(f"{p}: unknown caption file type '{ext or '(none)'}' "
                                    f"(use {' or '.join(CAPTION_EXTENSIONS)})"))
    if channels is not None and channels not in (1, 3):
        raise ConfigError(f"read_captioned: channels must be 1 or 3, got {channels!r}")
    if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 1):
        raise ConfigError(f"read_captioned: size must be a positive integer, got {size!r}")
    try:
        text = p.read_text(encoding="utf-8-sig")  # -sig: spreadsheet exports often start with a byte-order mark
    except UnicodeDecodeError as e:
        raise ConfigError(_one_line(f"{p}: not UTF-8 text (byte {e.start})")) from None
    except OSError as e:
        raise ConfigError(_one_line(f"{p}: cannot read ({e.strerror or e})")) from None
    records = _jsonl_records(text, p) if ext == ".jsonl" else _csv_records(text, p)
    if not records:
        raise ConfigError(_one_line(f"{p}: no image/caption pairs"))
    blank = 0
    kept: list[_Record] = []
    for r in records:
        r.caption = r.caption.strip()
        if r.caption:
            kept.append(r)
        else:
            blank += 1
    # Load each image once, in the order of first mention.
    loaded: dict[str, np.ndarray | None] = {}
    for r in kept:
        if r.image in loaded:
            continue
        loaded[r.image] = None
        f = Path(r.image).expanduser()
        f = f if f.is_absolute() else p.parent / f
        if not r.image or not f.is_file():
            continue
        try:
            with Image.open(f) as img:
                img.load()
                if size is None:
                    size = min(img.size)
                if channels is None:
                    channels = 1 if img.mode in ("1", "L", "LA", "I", "I;16", "F") else 3
                loaded[r.image] = _square(img, size, "L" if channels == 1 else "RGB")
        except (OSError, ValueError, Image.DecompressionBombError):  # unreadable, truncated or absurdly large
            pass
    bad = [name for name, arr in loaded.items() if arr is None]
    good = [r for r in kept if loaded[r.image] is not None]
    skipped = len(records) - len(good)
    if skipped:
        why = []
        if bad:
            why.append(f"{len(bad)} image files missing or unreadable, e.g. '{bad[0]}'")
        if blank:
            why.append(f"{blank} empty captions")
        message = _one_line(f"{p}: skipped {skipped} of {len(records)} captions ({'; '.join(why)})")
        if not good:
            raise ConfigError(message.replace(": skipped", ": no readable image/caption pairs: skipped", 1))
        warnings.warn(message, stacklevel=2)
    order = {name: i for i, name in enumerate(dict.fromkeys(r.image for r in good))}
    image_of = [order[r.image] for r in good]
    images = to_tensor_images(np.stack([loaded[name] for name in order]))
    schema, attributes, mentions, phrasing = (
        _restore_attributes(good, image_of, len(order), p) if ext == ".jsonl" else ({}, None, None, None))
    return CaptionSet(images, [r.caption for r in good], torch.tensor(image_of, dtype=torch.int64), schema,
                      attributes, mentions, phrasing)


def write_shapes(folder: str | Path, n: int = 1000, seed: int = 0, image_size: int = 32,
                 captions_per_image: int = 5) -> Path:
    """Render ``n`` training-distribution shapes images with captions into ``folder`` in the plain format.

    Returns the path of ``folder/captions.jsonl`` (see :func:`write_captioned`); deterministic given ``seed``.
    """
    what = "write_shapes"
    n = _positive(n, "n", what)
    cs = _shapes_set("train", n, seed, 0, _positive(captions_per_image, "captions_per_image", what),
                     _positive(image_size, "image_size", what, 8))
    return write_captioned(cs, folder)


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
    "BACKGROUND", "CAPTION_EXTENSIONS", "DIGIT_WORDS", "HELDOUT_COMBOS", "MNIST_HELDOUT_COMBOS",
    "MNIST_HELDOUT_TEMPLATES", "MNIST_SCHEMA", "MNIST_TRAIN_TEMPLATES", "P_STATE", "SHAPES_HELDOUT_TEMPLATES",
    "SHAPES_SCHEMA", "SHAPES_TRAIN_TEMPLATES", "SHAPE_RGB", "CaptionSet", "CaptionTemplate", "bin_digits",
    "caption_digits", "caption_shapes", "digit_attributes", "digit_thresholds", "measure_digits", "mnist_splits",
    "mnist_thresholds", "read_captioned", "render_shapes", "shapes_splits", "words", "write_captioned",
    "write_shapes",
]
