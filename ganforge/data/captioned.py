"""Captioned images as a data source for text-to-image GANs, and the caption transform.

The source builds the vocabulary and the token ids of its training captions; the caption encoder
(pretrained on them with a matching objective against the images,
:func:`ganforge.nn.caption.pretrain_matching`) is fitted above the data layer, once per data, and
handed to the source (:meth:`CaptionedImageData.use_encoder`;
:func:`ganforge.training.caption_encoder.fit_caption_encoder` does both), which then embeds every
caption once. A real batch is ``x`` (images), ``c`` (the embedding of one of each image's captions, drawn
afresh every time) and ``c_wrong`` (a caption of another image, for GAN-CLS's mismatched pairs);
G's conditions are training captions drawn at random (``fake_conditions``). Conditions are the
unit embeddings times sqrt(dim), so their entries have unit variance like the noise beside them.

:class:`CaptionTransform` (kind ``"captions"``) travels with the exported generator: the
vocabulary, the sentence encoder, the image encoder (for R-precision) and a pool of training
captions, so ``ganforge sample RUN --caption TEXT`` needs nothing but the generator file.
"""
from __future__ import annotations

import math
import sys
import warnings
from typing import Any

import torch
from torch import Tensor

from ganforge.data.captions import CaptionSet
from ganforge.data.tensor import EpochSampler
from ganforge.data.transform import register_transform
from ganforge.nn.caption import CaptionsByImage, ImageEncoder, MatchingConfig, SentenceEncoder, encode_batches
from ganforge.registry import ConfigError
from ganforge.spec import DataSpec

POOL = 2000  # training captions kept in the generator file: what `sample` draws when given no caption


def normalize_caption(text: str) -> str:
    """Lowercase, and every character that is not a letter or digit becomes a space: "top-left:"
    reads as "top left", so punctuation and hyphenation do not make new words (any script's
    letters are kept)."""
    return "".join(ch if ch.isalnum() else " " for ch in text.lower())


def prefixed(prefix: str, tensors: dict[str, Tensor]) -> dict[str, Tensor]:
    """The entries of ``tensors`` under ``prefix`` (``text/``, ``vision/``), with the prefix cut."""
    return {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}


class CaptionTransform:
    """Captions -> G's condition vectors; images pass through unchanged."""

    kind = "captions"

    def __init__(self, vocab: Any, text: SentenceEncoder, vision: ImageEncoder | None, pool: list[str],
                 image_shape: tuple[int, ...]) -> None:
        self.vocab, self.text, self.vision = vocab, text, vision
        self.pool, self.image_shape = list(pool), tuple(image_shape)
        self.scale = math.sqrt(text.dim)

    # -- images: identity ------------------------------------------------------------------------
    def transform(self, data: Any) -> Tensor:
        return torch.as_tensor(data).float()

    def inverse_transform(self, x: Tensor) -> Tensor:
        return x

    # -- captions --------------------------------------------------------------------------------
    def tokens(self, captions: list[str], check: bool = True) -> Tensor:
        """Padded token ids of ``captions``. With ``check`` an empty caption, or one none of whose
        words the encoder knows, is a :class:`ConfigError`; unknown words are read as ``<unk>`` with one warning."""
        if isinstance(captions, str):
            captions = [captions]
        rows, unknown = [], []
        unk = self.vocab.unk
        for i, cap in enumerate(captions):
            if not isinstance(cap, str) or not cap.strip():
                if check:
                    raise ConfigError(f"caption {i + 1} is empty: describe the image in words")
                cap = ""
            cap = normalize_caption(cap)
            toks = self.vocab.tokenize(cap)
            ids = self.vocab.encode(cap, self.vocab.max_len)
            missing = [t for t in toks if self.vocab.index.get(t, unk) == unk]
            if check and not toks:
                raise ConfigError(f"caption {i + 1} has no words (only punctuation): describe the image in words")
            if check and len(missing) == len(toks):
                known = ", ".join(sorted(t for t in self.vocab.tokens[3:])[:12])
                raise ConfigError(f"caption {cap!r}: none of its words is in the caption vocabulary "
                                  f"({len(self.vocab) - 3} words, e.g. {known})")
            unknown += missing
            rows.append(ids)
        if unknown and check:
            warnings.warn(f"{len(set(unknown))} unknown words read as <unk>: {', '.join(sorted(set(unknown))[:8])}",
                          stacklevel=2)
        return self.vocab._pad(rows, self.vocab.max_len)

    def embed(self, tokens: Tensor) -> Tensor:
        """Unit caption embeddings (n, dim) of token ids."""
        return encode_batches(self.text, tokens)

    def encode(self, captions: list[str]) -> Tensor:
        """G's condition vectors (n, dim) for captions: their embeddings times sqrt(dim)."""
        return self.embed(self.tokens(captions)) * self.scale

    def condition_vectors(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """Conditions of ``n`` training captions drawn at random (``sample`` without a caption)."""
        idx = torch.randint(len(self.pool), (n,), generator=generator)
        return self.encode([self.pool[i] for i in idx.tolist()])

    def image_embeddings(self, images: Tensor) -> Tensor:
        """Unit embeddings of images with the matching image encoder (R-precision)."""
        if self.vision is None:
            raise ConfigError("this caption transform has no image encoder")
        return encode_batches(self.vision, images.float())

    # -- saving ------------------------------------------------------------------------------------
    def config(self) -> dict[str, Any]:
        return {"vocab": self.vocab.config(), "text": self.text.config(), "pool": self.pool,
                "image_shape": list(self.image_shape), "vision": self.vision is not None}

    def tensors(self) -> dict[str, Tensor]:
        out = {f"text/{k}": v for k, v in self.text.state_dict().items()}
        if self.vision is not None:
            out.update({f"vision/{k}": v for k, v in self.vision.state_dict().items()})
        return out

    @classmethod
    def from_saved(cls, config: dict[str, Any], tensors: dict[str, Tensor]) -> CaptionTransform:
        from ganforge.data.vocab import Vocabulary

        text = SentenceEncoder(**config["text"])
        text.load_state_dict(prefixed("text/", tensors))
        vision = None
        if config.get("vision"):
            shape = config["image_shape"]
            vision = ImageEncoder(shape[0], shape[1], text.dim)
            vision.load_state_dict(prefixed("vision/", tensors))
        for m in (text, vision):
            if m is not None:
                m.eval().requires_grad_(False)
        return cls(Vocabulary.from_config(config["vocab"]), text, vision, config["pool"], tuple(config["image_shape"]))


register_transform("captions", CaptionTransform.from_saved,
                   "a caption vocabulary and frozen encoders: captions -> a text-to-image generator's conditions")


class CaptionedImageData:
    """Images with captions as a data source (see the module docstring).

    ``train`` is the training set; ``eval_sets`` the evaluation splits by name (``test``,
    ``heldout_phrasings``, ``heldout_combos`` for the built-in data sets), kept for the metrics;
    ``encoder`` the caption encoder's settings (``data.options.encoder``). The source trains no
    network: batches need the fitted encoder, given by :meth:`use_encoder`.
    """

    def __init__(self, train: CaptionSet, eval_sets: dict[str, CaptionSet] | None = None,
                 encoder: dict[str, Any] | None = None, name: str = "captions", progress: bool | None = None) -> None:
        from ganforge.data.vocab import Vocabulary

        if len(train.images) < 2:
            raise ConfigError(f"{name}: need at least 2 captioned images, got {len(train.images)}")
        self.name, self.train, self.eval_sets = name, train, dict(eval_sets or {})
        self.x = train.images.float().contiguous()
        self.image_of = train.image_of.long()
        self.schema, self.attributes, self.mentions = train.schema, train.attributes, train.mentions
        self.encoder_config = MatchingConfig.from_options(encoder)
        texts = [normalize_caption(t) for t in train.texts]
        self.vocab = Vocabulary.build(texts, lowercase=True)
        tokens = self.vocab.transform(texts)
        self.vocab.max_len = tokens.shape[1] + 8  # room for longer captions at sampling time (cut beyond)
        self.tokens = torch.nn.functional.pad(tokens, (0, 8), value=self.vocab.pad)
        if progress is None:  # a bar on a terminal only (not in logs, tests or --no-progress pipelines)
            progress = sys.stderr.isatty()
        self.progress = progress  # for the encoder's pretraining
        self.transform: CaptionTransform | None = None
        self.c: Tensor | None = None
        self.matching: dict[str, Any] = {}
        # Captions grouped by image (a CaptionSet gives every image one at least): a real batch
        # draws one of each image's captions.
        self._grouped = CaptionsByImage(self.image_of, len(self.x))
        self.sampler = EpochSampler(len(self.x))

    @property
    def has_encoder(self) -> bool:
        """Whether the caption encoder has been given (:meth:`use_encoder`)."""
        return self.transform is not None

    def use_encoder(self, text: SentenceEncoder, vision: ImageEncoder | None, matching: dict[str, Any]) -> None:
        """Condition on these frozen encoders (fitted on this data, see the module docstring):
        every caption is embedded once; ``matching`` holds their pretraining statistics."""
        if text.vocab_size != len(self.vocab) or text.dim != self.encoder_config.dim:
            raise ConfigError(f"{self.name}: a caption encoder of {text.vocab_size} words and width {text.dim} "
                              f"does not fit this data's ({len(self.vocab)} words, width {self.encoder_config.dim})")
        pool_idx = torch.randperm(len(self.train.texts),
                                  generator=torch.Generator().manual_seed(self.encoder_config.seed))[:POOL]
        self.transform = CaptionTransform(self.vocab, text, vision, [self.train.texts[i] for i in pool_idx.tolist()],
                                          tuple(self.x.shape[1:]))
        self.matching = dict(matching)
        self.c = self.transform.embed(self.tokens) * self.transform.scale  # every caption's condition, once

    def _conditions(self) -> Tensor:
        if self.c is None:
            raise ConfigError(f"{self.name}: no caption encoder yet: train() fits one, or call "
                              "ganforge.training.caption_encoder.fit_caption_encoder(data)")
        return self.c

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.x.shape[1:])

    @property
    def spec(self) -> DataSpec:
        return DataSpec(self.shape, condition_dim=self.encoder_config.dim, extra={"captions": True})

    def __len__(self) -> int:
        return len(self.x)

    def _wrong(self, images: Tensor, generator: torch.Generator | None) -> Tensor:
        """A caption that does not describe each image: another image's, redrawn (a few rounds) while
        it is the image's own or, where attributes are known, consistent with the image."""
        caps = torch.randint(len(self.tokens), (len(images),), generator=generator)
        for _ in range(8):
            bad = self.image_of[caps] == images
            if self.attributes is not None and self.mentions is not None:
                m, a = self.mentions[caps], self.attributes[images]
                bad |= ((m < 0) | (m == a)).all(1)
            if not bool(bad.any()):
                break
            caps = torch.where(bad, torch.randint(len(self.tokens), (len(images),), generator=generator), caps)
        return caps

    def batch(self, n: int, generator: torch.Generator | None = None) -> dict[str, Tensor]:
        """Images ``x``, a caption's condition ``c`` for each, and a mismatched one ``c_wrong``."""
        c = self._conditions()
        idx = self.sampler.indices(n, generator)
        return {"x": self.x[idx], "c": c[self._grouped.draw(idx, generator)], "c_wrong": c[self._wrong(idx, generator)]}

    def fake_conditions(self, n: int, generator: torch.Generator | None = None) -> dict[str, Tensor]:
        """Conditions for G's samples: training captions drawn uniformly."""
        c = self._conditions()
        return {"c": c[torch.randint(len(c), (n,), generator=generator)]}

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        return self.batch(n, generator)["x"]

    def state_dict(self) -> dict[str, Any]:
        # The frozen encoders travel with the checkpoint: a resumed run conditions on the embedding
        # it was trained with even where pretraining again would not give the same bits (another
        # thread count or torch build), and needs no pretraining to get it.
        t = self.transform
        return {"sampler": self.sampler.state_dict(), "encoder": t.tensors() if t is not None else {},
                "matching": dict(self.matching)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.sampler.load_state_dict(state.get("sampler", state))  # (checkpoints before the encoders were kept)
        saved = state.get("encoder")
        if saved:
            t = self.transform
            if t is None:
                raise ConfigError(f"{self.name}: no caption encoder to load the checkpoint's into "
                                  "(fit_caption_encoder(data, EncoderCache(checkpoint=...)) takes it from there)")
            try:
                t.text.load_state_dict(prefixed("text/", saved))
                if t.vision is not None:
                    t.vision.load_state_dict(prefixed("vision/", saved))
            except RuntimeError as e:
                raise ConfigError("--resume: the checkpoint's caption encoder does not fit this data's "
                                  f"(data.options changed?): {str(e).splitlines()[0]}") from None
            self.c = t.embed(self.tokens) * t.scale
            self.matching = dict(state.get("matching") or self.matching)

    def summary(self) -> dict[str, Any]:
        return {"images": len(self.x), "captions": len(self.tokens), "vocabulary": len(self.vocab),
                **self.matching, "eval_sets": {k: len(v) for k, v in self.eval_sets.items()}}


def shapes_splits_of(n_train: int = 10000, n_test: int = 2000, captions_per_image: int = 5, image_size: int = 32,
                     seed: int = 0) -> tuple[CaptionSet, dict[str, CaptionSet]]:
    """The shapes data set's training set and evaluation splits (see :mod:`ganforge.data.shapes`)."""
    from ganforge.data.shapes import shapes_splits

    splits = shapes_splits(n_train, n_test, captions_per_image, image_size, seed)
    return splits.pop("train"), splits


def mnist_splits_of(captions_per_image: int = 5, seed: int = 0) -> tuple[CaptionSet, dict[str, CaptionSet]]:
    """Captioned MNIST's training set and evaluation splits."""
    from ganforge.data.mnist_captions import mnist_splits

    splits = mnist_splits(captions_per_image, seed)
    return splits.pop("train"), splits


def folder_splits_of(path: str = "", size: int | None = None, channels: int | None = None,
                     test_path: str = "") -> tuple[CaptionSet, dict[str, CaptionSet]]:
    """Your own pairs (and a test file of pairs, optional)."""
    from ganforge.data.caption_files import read_captioned

    if not path:
        raise ConfigError("data 'captioned-images' needs data.path: a .jsonl or .csv file of image and caption")
    train = read_captioned(path, size, channels)
    shape = tuple(train.images.shape[1:])
    return train, ({"test": read_captioned(test_path, shape[1], shape[0])} if test_path else {})


SPLITS_OF = {"shapes-t2i": shapes_splits_of, "mnist-t2i": mnist_splits_of, "captioned-images": folder_splits_of}


def caption_splits(name: str, options: dict[str, Any], path: str = "") -> tuple[CaptionSet, dict[str, CaptionSet]]:
    """The captioned sets of a data config without pretraining an encoder (what ``ganforge eval`` needs)."""
    if name not in SPLITS_OF:
        raise ConfigError(f"data '{name}' is not a captioned data set (choices: {', '.join(SPLITS_OF)})")
    options = {k: v for k, v in options.items() if k not in ("encoder", "progress")}
    if path:
        options["path"] = path
    try:
        return SPLITS_OF[name](**options)
    except TypeError as e:
        raise ConfigError(f"data '{name}': {e}") from None


def _source(name: str, options: dict[str, Any]) -> CaptionedImageData:
    encoder, progress = options.pop("encoder", None), options.pop("progress", None)
    train, sets = caption_splits(name, options)
    return CaptionedImageData(train, sets, encoder, name, progress)


def shapes_t2i_data(**options: Any) -> CaptionedImageData:
    """The procedural shapes data set with checkable captions (options: n_train, n_test,
    captions_per_image, image_size, seed; encoder: the caption encoder's pretraining)."""
    return _source("shapes-t2i", options)


def mnist_t2i_data(**options: Any) -> CaptionedImageData:
    """MNIST digits captioned with the digit and its measured thickness, slant and size."""
    return _source("mnist-t2i", options)


def captioned_folder_data(**options: Any) -> CaptionedImageData:
    """Your own image/caption pairs: a JSONL or CSV file of image paths and captions (options: path,
    size, channels, test_path, encoder)."""
    return _source("captioned-images", options)
