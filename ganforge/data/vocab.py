"""The vocabulary of a text corpus: :class:`Vocabulary` tokenizes sentences (Treebank-style words, as Texygen does
for BLEU, or characters), maps tokens to ids and back, and is the output transform of text generators (registered
as ``"text"``): it travels with the exported generator as JSON and turns sampled ids back into sentences."""
from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

import torch
from torch import Tensor

from ganforge.data.corpus import _one_line
from ganforge.data.transform import register_transform
from ganforge.registry import ConfigError

PAD, EOS, UNK = "<pad>", "<eos>", "<unk>"
SPECIALS = (PAD, EOS, UNK)
LEVELS = ("word", "char")

_NLTK_MISSING = "text data needs nltk: pip install 'ganforge[text]'"
# Corpora such as Penn Treebank already contain "<unk>"; the Treebank tokenizer would split it into "<", "unk", ">".
_SPECIAL_RE = re.compile("(" + "|".join(re.escape(s) for s in SPECIALS) + ")")
_tokenizer: Any = None  # the NLTK tokenizer, built on first use (it compiles a few dozen regexes)


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


__all__ = ["EOS", "PAD", "UNK", "Vocabulary"]
