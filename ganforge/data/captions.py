"""Captioned images for text-to-image GANs (Reed et al. 2016, GAN-CLS / GAN-INT), with captions a machine can check.

This module holds the container, :class:`CaptionSet`, and :func:`words`; the data sets and the file format are
in the modules beside it.

A :class:`CaptionSet` holds images, their captions (several per image) and, for the two synthetic data sets here, what
each image shows (``attributes``) and what each caption says about it (``mentions``; ``-1`` where the caption leaves
an attribute free). Knowing both lets metrics score a generator against the caption instead of against a human:
did the image conditioned on "a small red circle at the top left" come out small, red, round and top left?

- **Shapes** (:func:`~ganforge.data.shapes.shapes_splits`): one shape on a dark background, drawn with Pillow;
  attributes shape, colour, size and position (:data:`~ganforge.data.shapes.SHAPES_SCHEMA`).
- **Captioned MNIST** (:func:`~ganforge.data.mnist_captions.mnist_splits`): the embedded MNIST digits, captioned with
  the digit and the stroke thickness, slant and size measured from the pixels
  (:func:`~ganforge.data.mnist_captions.measure_digits`, :data:`~ganforge.data.mnist_captions.MNIST_SCHEMA`).

Both come in four splits: ``train``; ``test`` (new images, same distribution and phrasing); ``heldout_phrasings``
(same distribution, captions only from sentence templates never used in training, built from training words only);
``heldout_combos`` (attribute pairs, :data:`~ganforge.data.shapes.HELDOUT_COMBOS` /
:data:`~ganforge.data.mnist_captions.MNIST_HELDOUT_COMBOS`, that no training image shows). The last two measure
whether a model understands captions or memorised them. What both share (caption templates, attribute checks, split
seeds) is in :mod:`ganforge.data.caption_templates`.

Users bring their own pairs in a plain format (:func:`~ganforge.data.caption_files.read_captioned`): a ``.jsonl``
file of ``{"image": "images/000000.png", "caption": "..."}`` lines, or a ``.csv`` with ``image`` and ``caption``
columns; :func:`~ganforge.data.caption_files.write_captioned` writes that format (plus the attributes, when known).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from ganforge.registry import ConfigError

# ----------------------------------------------------------------------------------------------------------------------
# The container


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


__all__ = ["CaptionSet", "words"]
