"""Caption and image encoders for text-to-image GANs, and their matching pretraining.

Reed et al. (2016) condition G and D on a sentence embedding learned beforehand so that a caption
lands near the images it describes (their char-CNN-RNN with a structured joint embedding loss).
Here the sentence encoder is a bidirectional GRU over the text vocabulary's word ids, the image
encoder a small CNN, and the matching objective the symmetric contrastive loss over a minibatch
of (image, one of its captions) pairs: each image must pick its own caption out of the batch and
each caption its image. Both encoders give unit vectors, so a cosine similarity scores a match
(R-precision reads the same encoders). The sentence encoder is frozen for GAN training, as in Reed
et al.; its weights travel with the exported generator so that ``sample --caption`` works offline.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm import tqdm


class SentenceEncoder(nn.Module):
    """Token ids (n, T) padded with 0 -> unit embeddings (n, dim): a bidirectional GRU whose states
    are averaged over the real tokens (mean pooling is robust to where a word sits in the phrasing)."""

    def __init__(self, vocab_size: int, dim: int = 64, emb: int = 64, hidden: int = 128, pad: int = 0) -> None:
        super().__init__()
        self.vocab_size, self.dim, self.emb_dim, self.hidden, self.pad = vocab_size, dim, emb, hidden, pad
        self.embed = nn.Embedding(vocab_size, emb, padding_idx=pad)
        self.rnn = nn.GRU(emb, hidden, batch_first=True, bidirectional=True)
        self.out = nn.Linear(2 * hidden, dim)

    def config(self) -> dict[str, int]:
        return {"vocab_size": self.vocab_size, "dim": self.dim, "emb": self.emb_dim, "hidden": self.hidden,
                "pad": self.pad}

    def forward(self, tokens: Tensor) -> Tensor:
        mask = (tokens != self.pad).unsqueeze(-1).float()
        h, _ = self.rnn(self.embed(tokens))
        pooled = (h * mask).sum(1) / mask.sum(1).clamp_min(1.0)
        return F.normalize(self.out(pooled), dim=1)


class ImageEncoder(nn.Module):
    """Images (n, C, S, S) in [-1, 1] -> unit embeddings (n, dim): strided convolutions, then a
    linear layer on the flattened map (not a global pool: position is part of what captions say)."""

    def __init__(self, channels: int, size: int, dim: int = 64, width: int = 32) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        ch_in, ch, s = channels, width, size
        for _ in range(3):
            layers += [nn.Conv2d(ch_in, ch, 4, 2, 1), nn.BatchNorm2d(ch), nn.LeakyReLU(0.2)]
            ch_in, ch, s = ch, ch * 2, s // 2
        self.trunk = nn.Sequential(*layers, nn.Flatten())
        self.out = nn.Linear(ch_in * s * s, dim)

    def forward(self, x: Tensor) -> Tensor:
        return F.normalize(self.out(self.trunk(x)), dim=1)


def contrastive_loss(img: Tensor, txt: Tensor, temperature: float) -> Tensor:
    """The symmetric InfoNCE loss of a batch of matching pairs (row i of each is one pair)."""
    logits = img @ txt.t() / temperature
    target = torch.arange(len(img), device=img.device)
    return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.t(), target))


@dataclass
class MatchingConfig:
    """The caption encoder's pretraining (``data.options.encoder`` of captioned data sets)."""

    dim: int = 64  # embedding width (G and D see it scaled by sqrt(dim): unit-variance entries)
    emb: int = 64
    hidden: int = 128
    steps: int = 1500
    batch_size: int = 128
    lr: float = 2e-3
    temperature: float = 0.1
    # Augmentation of the captions while pretraining, so that a sentence structure never seen still
    # lands where its words say: each word is dropped with this probability, and
    shuffle: float = 0.5  # this fraction of the captions have their words in a random order
    word_dropout: float = 0.1
    seed: int = 0

    @classmethod
    def from_options(cls, options: dict[str, Any] | None) -> MatchingConfig:
        from ganforge.registry import ConfigError

        if options is not None and not isinstance(options, dict):
            raise ConfigError(f"data.options.encoder must be a mapping such as {{steps: 800}}, got {options!r}")
        options = dict(options or {})
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(options) - known)
        if unknown:
            raise ConfigError(f"data.options.encoder: unknown key '{unknown[0]}' (choices: {', '.join(sorted(known))})")
        for key, value in options.items():
            want_int = isinstance(getattr(cls, key), int)
            ok = isinstance(value, int) if want_int else isinstance(value, (int, float))
            if not ok or isinstance(value, bool):
                raise ConfigError(f"data.options.encoder.{key} must be {'an integer' if want_int else 'a number'}, "
                                  f"got {value!r}")
        cfg = cls(**options)
        for key in ("dim", "emb", "hidden", "steps", "batch_size"):
            if getattr(cfg, key) < 1:
                raise ConfigError(f"data.options.encoder.{key} must be a positive integer, got {getattr(cfg, key)!r}")
        if not cfg.lr > 0 or not cfg.temperature > 0:
            raise ConfigError("data.options.encoder: lr and temperature must be positive")
        if not 0 <= cfg.shuffle <= 1 or not 0 <= cfg.word_dropout < 1:
            raise ConfigError("data.options.encoder: shuffle must lie in [0, 1] and word_dropout in [0, 1)")
        return cfg


class CaptionsByImage:
    """Captions grouped by their image, to draw one caption of each of a set of images."""

    def __init__(self, image_of: Tensor, n_images: int) -> None:
        self.order = torch.argsort(image_of, stable=True)
        self.counts = torch.bincount(image_of, minlength=n_images)
        self.starts = torch.cumsum(self.counts, 0) - self.counts

    def draw(self, images: Tensor, generator: torch.Generator | None) -> Tensor:
        """A caption index for each image index in ``images``, uniform among the image's captions."""
        pick = (torch.rand(len(images), generator=generator) * self.counts[images]).long()
        return self.order[self.starts[images] + pick]


def augment_captions(tokens: Tensor, shuffle: float, word_dropout: float, generator: torch.Generator,
                     pad: int = 0, eos: int = 1) -> Tensor:
    """Token ids (n, T) with each word dropped (-> ``pad``) with probability ``word_dropout`` and, in
    a ``shuffle`` fraction of the rows, the words in a random order (``<eos>`` and padding stay last)."""
    words = (tokens != pad) & (tokens != eos)
    keys = torch.arange(tokens.shape[1], dtype=torch.float32).expand_as(tokens).clone()
    mixed = torch.rand(len(tokens), generator=generator) < shuffle
    rand = torch.rand(tokens.shape, generator=generator) * tokens.shape[1]
    keys = torch.where(mixed[:, None] & words, rand, keys)
    keys = torch.where(words, keys, keys + 2 * tokens.shape[1])  # non-words after every word, in order
    out = tokens.gather(1, keys.argsort(dim=1))
    drop = (torch.rand(tokens.shape, generator=generator) < word_dropout) & (out != pad) & (out != eos)
    return out.masked_fill(drop, pad)


def pretrain_matching(images: Tensor, tokens: Tensor, image_of: Tensor, vocab_size: int, cfg: MatchingConfig,
                      progress: bool = False) -> tuple[SentenceEncoder, ImageEncoder, dict[str, float]]:
    """Train a sentence and an image encoder to match captions with their images.

    ``images`` (N, C, S, S), ``tokens`` (M, T) caption ids and ``image_of`` (M,) each caption's
    image. Each step draws ``batch_size`` captions of distinct images (seeded). Another image in the
    batch may fit a caption too (two red circles; a caption that leaves attributes free): the loss
    treats it as a negative all the same, which caps the in-batch accuracy below 1. Returns both
    encoders in eval mode and the final loss and in-batch retrieval accuracy.
    """
    gen = torch.Generator().manual_seed(cfg.seed)
    with torch.random.fork_rng():
        torch.manual_seed(cfg.seed)
        text = SentenceEncoder(vocab_size, cfg.dim, cfg.emb, cfg.hidden)
        vision = ImageEncoder(images.shape[1], images.shape[2], cfg.dim)
    params = list(text.parameters()) + list(vision.parameters())
    opt = torch.optim.Adam(params, lr=cfg.lr)
    # Captions grouped by image, so a batch takes one caption each of distinct images.
    grouped = CaptionsByImage(image_of, len(images))
    has = torch.nonzero(grouped.counts > 0).squeeze(1)
    batch = min(cfg.batch_size, len(has))
    loss_ema, acc_ema = math.nan, math.nan
    text.train()
    vision.train()
    bar = tqdm(range(cfg.steps), desc="caption encoder", disable=not progress, leave=False)
    for step in bar:
        imgs = has[torch.randperm(len(has), generator=gen)[:batch]]
        caps = grouped.draw(imgs, gen)
        # Cosine learning-rate decay: the last steps settle the embedding G will be conditioned on.
        for group in opt.param_groups:
            group["lr"] = cfg.lr * 0.5 * (1 + math.cos(math.pi * step / cfg.steps))
        e_img = vision(images[imgs])
        e_txt = text(augment_captions(tokens[caps], cfg.shuffle, cfg.word_dropout, gen))
        loss = contrastive_loss(e_img, e_txt, cfg.temperature)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        acc = float((e_img.detach() @ e_txt.detach().t()).argmax(1).eq(torch.arange(batch)).float().mean())
        value = loss.item()
        loss_ema = value if math.isnan(loss_ema) else 0.98 * loss_ema + 0.02 * value
        acc_ema = acc if math.isnan(acc_ema) else 0.98 * acc_ema + 0.02 * acc
        if step % 50 == 0:
            bar.set_postfix(loss=f"{loss_ema:.3f}", acc=f"{acc_ema:.2f}")
    text.eval()
    vision.eval()
    for p in params:
        p.requires_grad_(False)
    return text, vision, {"matching_loss": round(loss_ema, 4), "matching_batch_accuracy": round(acc_ema, 4),
                          "matching_batch": batch}


@torch.no_grad()
def encode_batches(module: nn.Module, x: Tensor, batch: int = 1000) -> Tensor:
    """``module(x)`` in eval mode, ``batch`` rows at a time."""
    was = module.training
    module.eval()
    try:
        return torch.cat([module(x[i:i + batch]) for i in range(0, len(x), batch)]) if len(x) else x.new_zeros(0)
    finally:
        module.train(was)
