"""Text corpora for text GANs: a vocabulary built from the training file, and token sequences as a data source.

A corpus is a plain text file with one sentence a line (:func:`~ganforge.data.corpus.read_corpus` copes with what
such files look like in the wild: gzip, a byte-order mark, Windows or old-Mac line ends, stray invalid UTF-8, one
enormous line). The :class:`~ganforge.data.vocab.Vocabulary` tokenizes it (Treebank-style words, as Texygen does for
BLEU, or characters) and is the output transform of text generators: it travels with the exported generator as JSON
and turns sampled ids back into sentences. :class:`TextData` holds the encoded corpus, ``(N, max_len)`` int64 ids
padded with ``<pad>`` after an ``<eos>``, and draws minibatches ``{"tokens", "lengths"}`` for the trainer.

Registered transform: ``"text"`` (in :mod:`ganforge.data.vocab`). Data set builders: :func:`text_data` (a user's
corpus) and :func:`coco_captions_data` (MS-COCO captions in the Texygen split).

This module holds the data source and the builders; the vocabulary is in :mod:`ganforge.data.vocab`, the corpus
reader in :mod:`ganforge.data.corpus`.
"""
from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ganforge.data.corpus import _one_line, read_corpus
from ganforge.data.mnist import data_dirs, download_file
from ganforge.data.tensor import EpochSampler
from ganforge.data.vocab import SPECIALS, Vocabulary, _check_level
from ganforge.registry import ConfigError
from ganforge.spec import DataSpec

# ----------------------------------------------------------------------------------------------
# The data source


class TextData:
    """Token sequences in memory as a data source for the trainer.

    ``tokens`` is ``(N, max_len)`` int64: each sentence's ids, ``<eos>``, then ``<pad>``; ``lengths`` counts the ids
    up to and including ``<eos>``. A sentence longer than ``max_len`` is cut so that ``<eos>`` stays last. Batches
    are ``{"tokens", "lengths"}``, drawn without replacement, each epoch a new permutation; the position in the
    permutation is part of the state, so a resumed run draws the same batches as an uninterrupted one.

    ``test_lines`` (held-out sentences, e.g. a test file: BLEU references) are encoded with the same vocabulary and
    ``max_len`` into ``test_tokens`` / ``test_lengths``; ``lines`` / ``test_lines`` keep the raw text.
    ``transform`` is the vocabulary (with ``max_len`` set), which the exported generator carries.
    """

    test_source: str | None = None  # where the test sentences come from (said in the metrics' protocol)

    def __init__(self, lines: list[str], vocab: Vocabulary | None = None, max_len: int = 0, level: str = "word",
                 max_vocab: int = 0, min_count: int = 1, lowercase: bool = False,
                 test_lines: list[str] | None = None) -> None:
        if not lines:
            raise ConfigError("text data needs at least one sentence")
        if max_len < 0 or max_len == 1:
            raise ConfigError(f"max_len must be 0 (the longest sentence) or at least 2 (a token and <eos>), "
                              f"got {max_len}")
        if vocab is None:
            _check_level(level)
            tokenizer = Vocabulary(list(SPECIALS), level, lowercase)
            token_lists = [tokenizer.tokenize(line) for line in lines]
            vocab = Vocabulary._from_token_lists(token_lists, level, max_vocab, min_count, lowercase)
        else:
            token_lists = [vocab.tokenize(line) for line in lines]
        full = [vocab._encode_tokens(toks) for toks in token_lists]
        max_len = max_len or max(len(r) for r in full)
        self.vocab = vocab
        self.max_len = max_len
        self.truncated = sum(len(r) > max_len for r in full)
        n_tokens = sum(len(t) for t in token_lists)
        n_unk = sum(r.count(2) for r in full) if vocab.specials else 0
        self.unk_rate = n_unk / n_tokens if n_tokens else 0.0
        self.tokens, self.lengths = self._encode(full, vocab, max_len)
        self.lines = list(lines)
        self.test_lines = list(test_lines) if test_lines is not None else None
        self.test_tokens: Tensor | None = None
        self.test_lengths: Tensor | None = None
        if test_lines is not None:
            test_full = [vocab.encode(line) for line in test_lines]
            self.test_tokens, self.test_lengths = self._encode(test_full, vocab, max_len)
        vocab.max_len = max_len
        self.transform = vocab
        self.sampler = EpochSampler(len(self.tokens))

    @staticmethod
    def _encode(full: list[list[int]], vocab: Vocabulary, max_len: int) -> tuple[Tensor, Tensor]:
        if vocab.specials:  # cut so that <eos> stays last
            rows = [r if len(r) <= max_len else r[:max_len - 1] + [1] for r in full]
        else:
            rows = [r[:max_len] for r in full]
        return vocab._pad(rows, max_len), torch.tensor([len(r) for r in rows], dtype=torch.int64)

    @classmethod
    def from_tokens(cls, tokens: Tensor, vocab: Vocabulary, test_tokens: Tensor | None = None) -> TextData:
        """Fixed-length sequences (e.g. the synthetic oracle's, with a vocabulary without specials): every length
        is ``T``. ``lines`` are the decoded sequences."""
        checked = [cls._check_tokens(t, vocab, name) for t, name in ((tokens, "tokens"), (test_tokens, "test_tokens"))
                   if t is not None]
        if test_tokens is not None and checked[1].shape[1] != checked[0].shape[1]:
            raise ValueError(f"test_tokens have length {checked[1].shape[1]}, tokens {checked[0].shape[1]}")
        self = cls.__new__(cls)
        self.vocab = vocab
        self.tokens = checked[0]
        self.max_len = self.tokens.shape[1]
        self.lengths = torch.full((len(self.tokens),), self.max_len, dtype=torch.int64)
        self.truncated, self.unk_rate = 0, 0.0
        self.lines = vocab.inverse_transform(self.tokens)
        self.test_tokens = self.test_lengths = self.test_lines = None
        if test_tokens is not None:
            self.test_tokens = checked[1]
            self.test_lengths = torch.full((len(self.test_tokens),), self.max_len, dtype=torch.int64)
            self.test_lines = vocab.inverse_transform(self.test_tokens)
        vocab.max_len = self.max_len
        self.transform = vocab
        self.sampler = EpochSampler(len(self.tokens))
        return self

    @staticmethod
    def _check_tokens(t: Tensor, vocab: Vocabulary, name: str) -> Tensor:
        if t.dim() != 2 or len(t) == 0 or t.shape[1] == 0:
            raise ValueError(f"{name} must be a non-empty (N, T) tensor, got shape {tuple(t.shape)}")
        if t.is_floating_point() or t.is_complex():
            raise ValueError(f"{name} must hold integer token ids, got {t.dtype}")
        t = t.long().cpu()
        lo, hi = int(t.min()), int(t.max())
        if lo < 0 or hi >= len(vocab):
            raise ValueError(f"{name} hold ids {lo}..{hi}, outside the {len(vocab)}-token vocabulary")
        return t

    @property
    def shape(self) -> tuple[int, ...]:
        return (self.max_len,)

    @property
    def spec(self) -> DataSpec:
        v = self.vocab
        return DataSpec(shape=(self.max_len,), dtype="int64", vocab_size=len(v),
                        extra={"pad": v.pad, "eos": v.eos, "level": v.level})

    def __len__(self) -> int:
        return len(self.tokens)

    def batch(self, n: int, generator: torch.Generator | None = None) -> dict[str, Tensor]:
        """A minibatch: ``tokens`` ``(n, max_len)`` int64 and ``lengths`` ``(n,)`` int64 (``<eos>`` included)."""
        idx = self.sampler.indices(n, generator)
        return {"tokens": self.tokens[idx], "lengths": self.lengths[idx]}

    def state_dict(self) -> dict[str, Any]:
        return self.sampler.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.sampler.load_state_dict(state)

    def summary(self) -> dict[str, Any]:
        """What the corpus looks like: sentences, vocabulary size, max_len, unknown-token rate, truncations."""
        out: dict[str, Any] = {
            "sentences": len(self.tokens),
            "vocab_size": len(self.vocab),
            "max_len": self.max_len,
            "mean_length": round(float(self.lengths.float().mean()), 2),
            "unk_rate": round(self.unk_rate, 4),
            "truncated": self.truncated,
            "level": self.vocab.level,
        }
        if self.test_tokens is not None:
            out["test_sentences"] = len(self.test_tokens)
        return out



# ----------------------------------------------------------------------------------------------
# Data set builders


def _read_usable(path: str | Path, what: str) -> list[str]:
    lines, _ = read_corpus(path)
    if len(lines) < 2:
        raise ConfigError(_one_line(f"{what} '{path}' has only {len(lines)} usable line; a corpus needs at least 2 "
                                    "(one sentence a line)"))
    return lines


def text_data(path: str = "", test_path: str = "", level: str = "word", max_vocab: int = 0, min_count: int = 1,
              max_len: int = 0, lowercase: bool = False, holdout: float = 0.1, seed: int = 0) -> TextData:
    """A text corpus, one sentence a line (gzip allowed), as token sequences; ``test_path`` is held-out text.

    Without ``test_path`` a seeded ``holdout`` share of the corpus's lines (10%; corpora of 20 lines or
    more) is kept out of training as the test set, so the run is measured against sentences it never saw.
    ``level`` word (Treebank tokens) or char; ``max_vocab`` caps the vocabulary including its 3 specials, rarer
    tokens and those below ``min_count`` become ``<unk>``; ``max_len`` 0 = the longest sentence (with ``<eos>``).
    """
    if not path:
        raise ConfigError("data 'text' needs a path: ganforge train coco-mle --set data.path=corpus.txt")
    _check_level(level)
    if not 0 <= holdout < 1:
        raise ConfigError(f"data.options.holdout must be a fraction in [0, 1), got {holdout!r}")
    lines = _read_usable(path, "corpus")
    test_lines = _read_usable(test_path, "test corpus") if test_path else None
    test_source = f"{test_path} ({len(test_lines)} lines)" if test_lines is not None else None
    if test_lines is None and holdout > 0 and len(lines) >= 20:
        order = random.Random(seed).sample(range(len(lines)), len(lines))
        n_test = max(1, round(holdout * len(lines)))
        held = set(order[:n_test])
        test_lines = [line for i, line in enumerate(lines) if i in held]
        lines = [line for i, line in enumerate(lines) if i not in held]
        test_source = f"held out: {len(test_lines)} of the {len(lines) + len(test_lines)} lines of {path} (seed {seed})"
    data = TextData(lines, max_len=max_len, level=level, max_vocab=max_vocab, min_count=min_count,
                    lowercase=lowercase, test_lines=test_lines)
    data.test_source = test_source
    return data


COCO_FILES = {"train": "coco_captions_train.txt", "test": "coco_captions_test.txt"}
COCO_MD5 = {"coco_captions_train.txt": "931ec7d2b37cc8e1fb584154909abe75",
            "coco_captions_test.txt": "ffc977caa4cfe9dda1c644e154d7f9c9"}
COCO_URLS = {"coco_captions_train.txt": "https://raw.githubusercontent.com/geek-ai/Texygen/master/data/image_coco.txt",
             "coco_captions_test.txt":
                 "https://raw.githubusercontent.com/geek-ai/Texygen/master/data/testdata/test_coco.txt"}


def _shared_text_dir() -> Path:
    # <repo>/../shared/data/text: the copy shipped alongside this project's checkout (absent in an installed package).
    return Path(__file__).resolve().parents[3] / "shared" / "data" / "text"


def coco_captions_data(root: str = "", download: bool = False, max_len: int = 0, max_vocab: int = 0,
                       level: str = "word") -> TextData:
    """MS-COCO image captions in the Texygen split: 10,000 training sentences, 10,000 test sentences (``test_lines``).

    The files (:data:`COCO_FILES`) are looked for in ``root`` if given, else in :func:`~ganforge.data.mnist.data_dirs`
    ``("coco-captions")`` (``$GANFORGE_DATA/coco-captions``, ``~/.cache/ganforge/coco-captions``), then in the
    project's shared copy ``<repo>/../shared/data/text`` when it exists. With ``download`` missing files are fetched
    from Texygen's repository (:data:`COCO_URLS`) into the first of those folders and checked against
    :data:`COCO_MD5`, a mismatch being a :class:`ConfigError` naming both sums. Local copies are not checksummed.

    The MD5s are of the copy shipped with this project's shared data; they also match the files in a snapshot of
    geek-ai/Texygen's master branch (commit 3104e22), but what raw.githubusercontent.com serves was not fetched here.
    """
    _check_level(level)
    names = list(COCO_FILES.values())
    if root:
        dirs = data_dirs("coco-captions", root)
    else:
        dirs = data_dirs("coco-captions")
        if _shared_text_dir().is_dir():
            dirs.append(_shared_text_dir())
    found = next((d for d in dirs if all((d / n).is_file() for n in names)), None)
    if found is None:
        if not download:
            raise ConfigError(_one_line(
                f"coco-captions files ({', '.join(names)}) not found in {' or '.join(map(str, dirs))}; "
                "set download: true to fetch them, or set GANFORGE_DATA to a folder holding coco-captions/<these files>"
            ))
        found = dirs[0]
        for n in names:
            if not (found / n).is_file():
                download_file([COCO_URLS[n]], found / n, COCO_MD5[n])
    train = _read_usable(found / COCO_FILES["train"], "coco-captions training file")
    test = _read_usable(found / COCO_FILES["test"], "coco-captions test file")
    return TextData(train, max_len=max_len, level=level, max_vocab=max_vocab, test_lines=test)


__all__ = ["COCO_FILES", "COCO_MD5", "COCO_URLS", "TextData", "coco_captions_data", "text_data"]
