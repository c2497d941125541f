"""Reading a text corpus, one sentence a line: :func:`read_corpus` copes with what such files look like in the wild
(gzip, a byte-order mark, Windows or old-Mac line ends, stray invalid UTF-8, one enormous line)."""
from __future__ import annotations

import gzip
import re
import warnings
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from ganforge.registry import ConfigError


def _one_line(message: str) -> str:
    # The CLI prints a ConfigError as one line; a file name may hold a newline.
    return " ".join(message.splitlines()).strip()


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


__all__ = ["TextWarning", "read_corpus"]
