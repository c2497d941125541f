"""Text corpora for text GANs: a vocabulary built from the training file, and token sequences as a data source.

A corpus is a plain text file with one sentence a line (:func:`read_corpus` copes with what such files look like in
the wild: gzip, a byte-order mark, Windows or old-Mac line ends, stray invalid UTF-8, one enormous line). The
:class:`Vocabulary` tokenizes it (Treebank-style words, as Texygen does for BLEU, or characters) and is the output
transform of text generators: it travels with the exported generator as JSON and turns sampled ids back into
sentences. :class:`TextData` holds the encoded corpus, ``(N, max_len)`` int64 ids padded with ``<pad>`` after an
``<eos>``, and draws minibatches ``{"tokens", "lengths"}`` for the trainer.

Registered transform: ``"text"``. Data set builders: :func:`text_data` (a user's corpus) and
:func:`coco_captions_data` (MS-COCO captions in the Texygen split).
"""
from __future__ import annotations

import gzip
import random
import re
import warnings
import zlib
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, BinaryIO

import torch
from torch import Tensor

from ganforge.data.mnist import data_dirs, download_file
from ganforge.data.spec import DataSpec
from ganforge.data.tensor import EpochSampler
from ganforge.data.transform import register_transform
from ganforge.registry import ConfigError

PAD, EOS, UNK = "<pad>", "<eos>", "<unk>"
SPECIALS = (PAD, EOS, UNK)
LEVELS = ("word", "char")

_NLTK_MISSING = "text data needs nltk: pip install 'ganforge[text]'"
# Corpora such as Penn Treebank already contain "<unk>"; the Treebank tokenizer would split it into "<", "unk", ">".
_SPECIAL_RE = re.compile("(" + "|".join(re.escape(s) for s in SPECIALS) + ")")
_tokenizer: Any = None  # the NLTK tokenizer, built on first use (it compiles a few dozen regexes)


def _one_line(message: str) -> str:
    # The CLI prints a ConfigError as one line; a file name may hold a newline.
    return " ".join(message.splitlines()).strip()


def _word_tokenizer() -> Any:
    global _tokenizer
    if _tokenizer is None:
        try:
            from nltk.tokenize import NLTKWordTokenizer
        except ImportError:
            raise ConfigError(_NLTK_MISSING) from None
        _tokenizer = NLTKWordTokenizer()
    return _tokenizer


def _check_level(level: str) -> str:
    if level not in LEVELS:
        raise ConfigError(f"unknown text level '{level}' (choices: {', '.join(LEVELS)})")
    return level


# ----------------------------------------------------------------------------------------------
# Vocabulary


class Vocabulary:
    """id -> token list; the output transform of text generators (kind ``"text"``), saved with the generator as JSON.

    With ``specials`` (the default) ids 0, 1 and 2 are ``<pad>``, ``<eos>`` and ``<unk>``: a sentence is its tokens'
    ids, then ``<eos>``, then ``<pad>`` up to ``max_len``. Without them (the synthetic oracle's numbered vocabulary)
    sequences have a fixed length and every id is a token.

    ``max_len`` is the sequence length :meth:`transform` pads to (0 = the longest sentence given); :class:`TextData`
    sets it, and it is saved in :meth:`config`.
    """

    kind = "text"

    def __init__(self, tokens: list[str], level: str = "word", lowercase: bool = False, specials: bool = True) -> None:
        tokens = [str(t) for t in tokens]
        if specials and tokens[:3] != list(SPECIALS):
            raise ValueError(f"a vocabulary with specials starts with {', '.join(SPECIALS)}, got {tokens[:3]}")
        if not tokens:
            raise ValueError("a vocabulary needs at least one token")
        index = {t: i for i, t in enumerate(tokens)}
        if len(index) != len(tokens):
            dupes = sorted(t for t, c in Counter(tokens).items() if c > 1)
            raise ValueError(f"duplicate tokens in the vocabulary: {dupes[:5]}")
        self.tokens = tokens
        self.level = _check_level(level)
        self.lowercase = bool(lowercase)
        self.specials = bool(specials)
        self.index = index
        self.max_len = 0

    @classmethod
    def build(cls, lines: list[str], level: str = "word", max_size: int = 0, min_count: int = 1,
              lowercase: bool = False) -> Vocabulary:
        """The vocabulary of ``lines``: the most frequent tokens first (ties by token string, so deterministic).

        ``max_size`` caps the total size including the three specials (0 = no cap); tokens seen fewer than
        ``min_count`` times, or cut by the cap, are encoded as ``<unk>``.
        """
        probe = cls(list(SPECIALS), level, lowercase)
        return cls._from_token_lists([probe.tokenize(line) for line in lines], level, max_size, min_count, lowercase)

    @classmethod
    def _from_token_lists(cls, token_lists: Iterable[list[str]], level: str, max_size: int, min_count: int,
                          lowercase: bool) -> Vocabulary:
        # TextData tokenizes each line once and builds from the token lists: tokenizing is the slow part.
        if max_size and max_size < len(SPECIALS) + 1:
            raise ConfigError(f"max_vocab must be 0 (no cap) or at least {len(SPECIALS) + 1} "
                              f"(the {len(SPECIALS)} specials and one token), got {max_size}")
        if min_count < 1:
            raise ConfigError(f"min_count must be at least 1, got {min_count}")
        counts: Counter[str] = Counter()
        for toks in token_lists:
            counts.update(toks)
        for s in SPECIALS:  # a literal "<unk>" in the text is the special, not a word
            counts.pop(s, None)
        kept = sorted((t for t, c in counts.items() if c >= min_count), key=lambda t: (-counts[t], t))
        if max_size:
            kept = kept[:max_size - len(SPECIALS)]
        return cls([*SPECIALS, *kept], level, lowercase)

    @classmethod
    def numbered(cls, size: int) -> Vocabulary:
        """Tokens ``"0"`` .. ``"size-1"`` without specials: the synthetic oracle's fixed-length sequences."""
        if size < 1:
            raise ValueError(f"a numbered vocabulary needs a positive size, got {size}")
        return cls([str(i) for i in range(size)], "word", specials=False)

    def __len__(self) -> int:
        return len(self.tokens)

    def __repr__(self) -> str:
        return f"Vocabulary({len(self)} tokens, level={self.level!r}, specials={self.specials})"

    @property
    def pad(self) -> int | None:
        return 0 if self.specials else None

    @property
    def eos(self) -> int | None:
        return 1 if self.specials else None

    @property
    def unk(self) -> int | None:
        return 2 if self.specials else None

    def tokenize(self, line: str) -> list[str]:
        """The tokens of ``line``: Treebank-style words (NLTK, no downloaded data needed) or characters.

        Word level gives the same tokens as ``nltk.word_tokenize`` on one sentence (how Texygen tokenizes for BLEU),
        except that a literal ``<pad>``, ``<eos>`` or ``<unk>`` stays one token. Character level keeps spaces as
        tokens. ``lowercase`` applies first.
        """
        if self.lowercase:
            line = line.lower()
        if self.level == "char":
            return list(line)
        tokenizer = _word_tokenizer()
        if "<" not in line:  # the common case: no special token can occur
            return tokenizer.tokenize(line)
        out: list[str] = []
        for i, part in enumerate(_SPECIAL_RE.split(line)):
            if i % 2:  # re.split puts the captured separators at odd positions
                out.append(part)
            elif part.strip():
                out.extend(tokenizer.tokenize(part))
        return out

    def _ids(self, tokens: list[str]) -> list[int]:
        if self.specials:
            return [self.index.get(t, 2) for t in tokens]
        try:
            return [self.index[t] for t in tokens]
        except KeyError as e:  # no <unk> to fall back on
            raise ConfigError(f"token {e.args[0]!r} is not in this {len(self)}-token vocabulary "
                              "(it has no <unk>)") from None

    def _encode_tokens(self, tokens: list[str], max_len: int = 0) -> list[int]:
        ids = self._ids(tokens)
        if not self.specials:
            return ids[:max_len] if max_len else ids
        if max_len:
            ids = ids[:max_len - 1]
        ids.append(1)
        return ids

    def encode(self, line: str, max_len: int = 0) -> list[int]:
        """The ids of ``line``'s tokens (unknown ones -> ``<unk>``) followed by ``<eos>``.

        With ``max_len`` the tokens are cut to ``max_len - 1`` so that ``<eos>`` stays last. Without specials: the
        tokens' ids, cut to ``max_len`` (an unknown token is a :class:`ConfigError`).
        """
        return self._encode_tokens(self.tokenize(line), max_len)

    def decode(self, ids: Sequence[int] | Tensor) -> str:
        """The sentence of ``ids`` (a list or a 1-D tensor): up to the first ``<eos>``, ``<pad>`` skipped.

        Words are joined with spaces, characters with nothing.
        """
        if isinstance(ids, Tensor):
            if ids.dim() != 1:
                raise ValueError(f"decode takes one sequence (a 1-D tensor), got shape {tuple(ids.shape)}")
            ids = ids.tolist()
        out = []
        n = len(self.tokens)
        for i in ids:
            i = int(i)
            if self.specials and i == 1:
                break
            if self.specials and i == 0:
                continue
            if not 0 <= i < n:
                raise ValueError(f"token id {i} is outside this {n}-token vocabulary")
            out.append(self.tokens[i])
        return ("" if self.level == "char" else " ").join(out)

    def inverse_transform(self, x: Tensor) -> list[str]:
        """``(n, T)`` token ids -> ``n`` sentences."""
        if x.dim() != 2:
            raise ValueError(f"expected token ids of shape (n, T), got {tuple(x.shape)}")
        return [self.decode(row) for row in x.detach().cpu().tolist()]

    def transform(self, data: Any) -> Tensor:
        """Sentences -> ``(n, T)`` int64 ids, padded with ``<pad>`` to ``max_len`` (0: to the longest)."""
        if isinstance(data, str):  # one sentence, not a list of characters
            data = [data]
        rows = [self.encode(line, self.max_len) for line in data]
        return self._pad(rows, self.max_len)

    def _pad(self, rows: list[list[int]], max_len: int) -> Tensor:
        width = max_len or max((len(r) for r in rows), default=0)
        if not self.specials:
            short = [len(r) for r in rows if len(r) != width]
            if short:
                raise ConfigError(f"a vocabulary without <pad> needs sequences of one length ({width} tokens); "
                                  f"{len(short)} have another (e.g. {short[0]})")
            return torch.tensor(rows, dtype=torch.int64).reshape(len(rows), width)
        return torch.tensor([r + [0] * (width - len(r)) for r in rows], dtype=torch.int64).reshape(len(rows), width)

    def config(self) -> dict[str, Any]:
        """Plain JSON: everything needed to rebuild the vocabulary."""
        return {"tokens": list(self.tokens), "level": self.level, "lowercase": self.lowercase,
                "specials": self.specials, "max_len": int(self.max_len)}

    @classmethod
    def from_config(cls, d: dict[str, Any]) -> Vocabulary:
        """Rebuild a vocabulary from :meth:`config`."""
        if not isinstance(d, dict) or not isinstance(d.get("tokens"), list):
            raise ConfigError("a saved text vocabulary needs a 'tokens' list")
        try:
            vocab = cls(d["tokens"], d.get("level", "word"), bool(d.get("lowercase", False)),
                        bool(d.get("specials", True)))
        except ValueError as e:
            raise ConfigError(_one_line(f"saved text vocabulary is invalid: {e}")) from None
        vocab.max_len = int(d.get("max_len", 0))
        return vocab

    def tensors(self) -> dict[str, Tensor]:
        """No tensors: everything is in the JSON config."""
        return {}


register_transform("text", lambda config, tensors: Vocabulary.from_config(config),
                   "a text vocabulary: token ids -> sentences")


# ----------------------------------------------------------------------------------------------
# Reading a corpus


class TextWarning(UserWarning):
    """Something the corpus reader fixed (invalid UTF-8 replaced, overlong lines cut)."""


_GZIP_MAGIC = b"\x1f\x8b"
_BOM = b"\xef\xbb\xbf"
_EOL = re.compile(rb"\r\n|\r|\n")
_CHUNK = 1 << 20
_BINARY_PROBE = 8192


def _error(label: str, problem: str) -> ConfigError:
    return ConfigError(_one_line(f"text file '{label}' {problem}"))


def _cut_utf8(raw: bytes, n: int) -> bytes:
    """``raw[:n]``, moved back to a character boundary so that the cut creates no invalid UTF-8."""
    while 0 < n < len(raw) and raw[n] & 0xC0 == 0x80:  # a continuation byte: the cut is inside a character
        n -= 1
    return raw[:n]


def _raw_lines(f: BinaryIO, limit: int, prefix: bytes = b"") -> Iterator[tuple[bytes, bool]]:
    """The lines of ``prefix`` and then the rest of a binary stream as ``(bytes, was_cut)``, split at LF, CRLF or a
    lone CR.

    The stream is read in chunks, never whole: a line longer than ``limit`` bytes is kept to its first ``limit``
    bytes and the rest is skipped as it streams past, so a 20 MB file without a newline costs ``limit`` bytes.
    """
    buf = prefix
    head: bytes | None = None  # the kept start of an overlong line whose end has not been seen yet
    eof = False
    while not eof:
        chunk = f.read(_CHUNK)
        eof = not chunk
        buf += chunk
        start = 0
        for m in _EOL.finditer(buf):
            if not eof and m.end() == len(buf) and m.group() == b"\r":
                break  # maybe the first half of a CRLF that the next chunk completes
            if head is not None:
                yield head, True
                head = None
            else:
                piece = buf[start:m.start()]
                yield (_cut_utf8(piece, limit), True) if len(piece) > limit else (piece, False)
            start = m.end()
        buf = buf[start:]
        if head is not None or len(buf) > limit:
            if head is None:
                head = _cut_utf8(buf, limit)
            buf = buf[-1:] if buf.endswith(b"\r") else b""  # the middle of an overlong line is dropped
    if head is not None:
        yield head, True
    elif buf:
        yield (_cut_utf8(buf, limit), True) if len(buf) > limit else (buf, False)


def read_corpus(path: str | Path, max_line_chars: int = 100_000) -> tuple[list[str], dict[str, int]]:
    """Read a corpus with one sentence a line; returns ``(lines, counts)``.

    ``counts`` has ``lines_read`` (lines in the file, empty ones included, so ``len(lines) == lines_read -
    empty_skipped``), ``empty_skipped`` (empty or whitespace-only lines), ``invalid_utf8_lines`` (lines whose
    invalid UTF-8 bytes were replaced by U+FFFD) and ``truncated_lines`` (lines cut to ``max_line_chars``
    characters).

    gzip is recognised by its magic bytes, whatever the file is called. A UTF-8 byte-order mark is dropped; lines
    may end in LF, CRLF or a lone CR; runs of whitespace (tabs included) become one space and lines are stripped.
    Invalid UTF-8 and overlong lines are fixed with one :class:`TextWarning` each saying how many lines were
    affected. A missing file, a folder, a binary file (NUL bytes in its first 8 KiB), a corrupt gzip stream and a
    file without a usable line are each a one-line :class:`ConfigError`.
    """
    if max_line_chars < 1:
        raise ConfigError(f"max_line_chars must be positive, got {max_line_chars}")
    path = Path(path)
    label = str(path)
    if not path.exists():
        raise _error(label, "does not exist")
    if path.is_dir():
        raise _error(label, "is a folder, not a text file")
    counts = {"lines_read": 0, "empty_skipped": 0, "invalid_utf8_lines": 0, "truncated_lines": 0}
    lines: list[str] = []
    # UTF-8 needs at most 4 bytes a character: this many bytes always hold max_line_chars characters.
    limit = 4 * max_line_chars
    gz = False
    try:
        with open(path, "rb") as f:
            gz = f.read(2) == _GZIP_MAGIC
        with (gzip.open(path, "rb") if gz else open(path, "rb")) as f:
            probe = f.read(_BINARY_PROBE)
            if b"\x00" in probe:
                hint = " (UTF-16 text? save it as UTF-8)" if probe[:2] in (b"\xff\xfe", b"\xfe\xff") else ""
                raise _error(label, f"looks binary, not text: it contains NUL bytes{hint}")
            for i, (raw, cut) in enumerate(_raw_lines(f, limit, probe)):
                if i == 0 and raw.startswith(_BOM):
                    raw = raw[len(_BOM):]
                counts["lines_read"] += 1
                try:
                    text = raw.decode("utf-8")
                except UnicodeDecodeError:
                    text = raw.decode("utf-8", errors="replace")
                    counts["invalid_utf8_lines"] += 1
                text = " ".join(text.split())  # str.split() knows every Unicode space, NBSP and tab included
                if len(text) > max_line_chars:
                    text, cut = text[:max_line_chars].rstrip(), True
                if cut:
                    counts["truncated_lines"] += 1
                if text:
                    lines.append(text)
                else:
                    counts["empty_skipped"] += 1
    except (EOFError, zlib.error, gzip.BadGzipFile) as e:
        # A truncated gzip stream ends in EOFError; a damaged one in BadGzipFile (an OSError) or zlib.error.
        raise _error(label, f"is a truncated or corrupt gzip file ({str(e).strip() or type(e).__name__})") from e
    except OSError as e:
        raise _error(label, f"cannot be read: {e.strerror or e}") from e
    if not lines:
        if counts["lines_read"] == 0:
            raise _error(label, "is empty")
        raise _error(label, f"has no text: all {counts['lines_read']} lines are empty or whitespace")
    if counts["invalid_utf8_lines"]:
        n = counts["invalid_utf8_lines"]
        warnings.warn(f"{label}: {n} {'line is' if n == 1 else 'lines are'} not valid UTF-8; "
                      "the bad bytes were replaced with U+FFFD", TextWarning, stacklevel=2)
    if counts["truncated_lines"]:
        n = counts["truncated_lines"]
        warnings.warn(f"{label}: {n} {'line was' if n == 1 else 'lines were'} longer than {max_line_chars} "
                      "characters and cut to that (a file without line breaks?)", TextWarning, stacklevel=2)
    return lines, counts


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


__all__ = ["COCO_FILES", "COCO_MD5", "COCO_URLS", "EOS", "PAD", "UNK", "TextData", "TextWarning", "Vocabulary",
           "coco_captions_data", "read_corpus", "text_data"]
