"""Reading and writing user tables (CSV, TSV, Parquet, gzip-compressed or not) without surprises.

The CLI's contract: bad input is one :class:`~ganforge.registry.ConfigError` line naming the file
and the problem (never a traceback), and nothing the user had is lost (writes are atomic). Files
are recognised by their content (gzip and Parquet magic bytes, the text's encoding and delimiter),
because users name files carelessly; the suffix only breaks ties. What the reader fixes on the way
(infinities, mostly-numeric text columns, an assumed encoding) is a :class:`TableWarning`, so the
CLI can show it and a script can filter it.
"""
from __future__ import annotations

import codecs
import csv
import gzip
import io
import re
import warnings
import zlib
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd

from ganforge.io import atomic_write
from ganforge.registry import ConfigError

try:  # public from pandas 2.2; the same function lived in a private module before
    from pandas.tseries.api import guess_datetime_format
except ImportError:  # pragma: no cover - older pandas
    from pandas._libs.tslibs.parsing import guess_datetime_format

# Longest first, so ".csv.gz" is matched before ".gz" would be.
TABLE_SUFFIXES = (".csv.gz", ".tsv.gz", ".csv", ".tsv", ".parquet")

_DELIMITERS = ",\t;|"
_GZIP_MAGIC = b"\x1f\x8b"
_PARQUET_MAGIC = b"PAR1"
_ZIP_MAGIC = b"PK\x03\x04"  # .xlsx, .zip: a common wrong input, worth its own message
_CHUNK = 1 << 20  # the encoding scan streams the file: a large table is never held twice
_SAMPLE = 1 << 16  # text the delimiter sniffer and the header check look at
# Control characters that never occur in a text table (tab, newlines, form feed and ^Z do).
_CONTROL_BYTES = bytes([*range(0x01, 0x09), 0x0E, *range(0x10, 0x1A), *range(0x1B, 0x20), 0x7F])
_MAX_CONTROL_FRACTION = 0.05
_NUMERIC_FRACTION = 0.9  # a text column with at least this share of numbers is a numeric column
_PROBE = 1000  # values a text column is probed with before a conversion is checked on all of it
_BOOL_TEXT = ("true", "false")


class TableWarning(UserWarning):
    """Something the reader fixed in a table (infinities, mixed types, an assumed encoding)."""


def _one_line(message: str) -> str:
    # The CLI prints a ConfigError as one line; a file name or a library message may hold newlines.
    return " ".join(message.splitlines()).strip()


def _error(label: str, problem: str) -> ConfigError:
    return ConfigError(_one_line(f"table '{label}' {problem}"))


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _strip_gz(name: str) -> str:
    return name[:-3] if name.endswith(".gz") else name


# ----------------------------------------------------------------------------------------------
# Reading


def read_table(path: str | Path, delimiter: str | None = None, encoding: str | None = None) -> pd.DataFrame:
    """Read a CSV, TSV or Parquet file (each optionally gzip-compressed) into a cleaned DataFrame.

    The format is found from the content: gzip by its magic bytes, Parquet by ``PAR1``; anything
    else is delimited text. ``delimiter`` (one character; ``"\\t"`` or ``"tab"`` mean a tab) is
    sniffed among ``, TAB ; |`` when not given, falling back to a tab for ``.tsv`` and a comma
    otherwise. ``encoding`` is detected when not given: a UTF-8 (or UTF-16) byte-order mark, else
    UTF-8 when the whole file decodes as UTF-8, else cp1252 (then latin-1) with a
    :class:`TableWarning` saying so. The frame then goes through :func:`clean_table`.

    Every bad input (missing, a folder, empty, a header without rows, ragged rows, binary data,
    duplicate column names, a corrupt Parquet or gzip file) raises :class:`ConfigError` with one
    line naming the file and the problem.
    """
    path = Path(path)
    label = str(path)
    if not path.exists():
        raise _error(label, "does not exist")
    if path.is_dir():
        raise _error(label, "is a folder, not a table file")
    name = path.name.lower()
    head = _read_head(path, label, gz=False)
    gz = head.startswith(_GZIP_MAGIC)
    if name.endswith(".gz") and not gz:
        raise _error(label, "ends in .gz but is not gzip-compressed")
    if gz:
        head = _read_head(path, label, gz=True)
    is_text = not head.startswith(_PARQUET_MAGIC)
    if not is_text:
        df = _read_parquet(path, label, gz)
    elif _strip_gz(name).endswith(".parquet"):
        raise _error(label, "is not a readable Parquet file (it does not start with the Parquet magic bytes 'PAR1')")
    elif head.startswith(_ZIP_MAGIC):
        raise _error(label, "is a zip archive (an Excel .xlsx file?), not a text table; save it as CSV or Parquet")
    else:
        df = _read_text(path, label, gz, delimiter, encoding)
    if df.shape[1] == 0:
        raise _error(label, "is empty")
    if len(df) == 0:
        raise _error(label, "has a header but no rows" if is_text else "has columns but no rows")
    cleaned, messages = _clean(df, label)
    for message in messages:
        warnings.warn(message, TableWarning, stacklevel=2)
    return cleaned


def _open_bytes(path: Path, gz: bool) -> io.BufferedIOBase:
    return gzip.open(path, "rb") if gz else open(path, "rb")


def _read_head(path: Path, label: str, gz: bool) -> bytes:
    with _io_errors(label, gz):
        with _open_bytes(path, gz) as f:
            return f.read(8)


@contextmanager
def _io_errors(label: str, gz: bool) -> Iterator[None]:
    """Turn the errors of reading a (gzip) file into one-line ConfigErrors."""
    try:
        yield
    except (EOFError, zlib.error, gzip.BadGzipFile) as exc:
        # A truncated gzip stream ends in EOFError; a damaged one in BadGzipFile (an OSError) or zlib.error.
        if not gz:
            raise
        raise _error(label, f"is a truncated or corrupt gzip file ({_first_line(exc)})") from exc
    except OSError as exc:
        raise _error(label, f"cannot be read: {exc.strerror or _first_line(exc)}") from exc


def _read_parquet(path: Path, label: str, gz: bool) -> pd.DataFrame:
    source: Path | io.BytesIO = path
    if gz:  # pyarrow needs a seekable file: decompress into memory (Parquet is compressed already, so rare)
        with _io_errors(label, gz=True):
            with gzip.open(path, "rb") as f:
                source = io.BytesIO(f.read())
    try:
        return pd.read_parquet(source)
    except Exception as exc:  # pyarrow raises several unrelated types (ArrowInvalid, OSError, ...)
        raise _error(label, f"is not a readable Parquet file ({_first_line(exc)})") from exc


def _read_text(path: Path, label: str, gz: bool, delimiter: str | None, encoding: str | None) -> pd.DataFrame:
    encoding = _choose_encoding(path, label, gz, encoding)
    sample = _text_sample(path, label, gz, encoding)
    if delimiter is None:
        fallback = "\t" if _strip_gz(path.name.lower()).endswith((".tsv", ".tab")) else ","
        delimiter = _sniff_delimiter(sample, fallback)
    else:
        delimiter = _check_delimiter(delimiter)
    _check_header(sample, delimiter, label)
    try:
        with _io_errors(label, gz):
            df = pd.read_csv(path, sep=delimiter, encoding=encoding, compression="gzip" if gz else None,
                             engine="c", low_memory=False)  # one pass: a column's type never differs by chunk
    except pd.errors.EmptyDataError as exc:
        raise _error(label, "is empty") from exc
    except pd.errors.ParserError as exc:
        raise _error(label, _parser_problem(exc)) from exc
    except (ValueError, EOFError) as exc:  # the scan checked these; a file changed under us still gets one line
        raise _error(label, f"cannot be read as a table ({_first_line(exc)})") from exc
    if not isinstance(df.index, pd.RangeIndex):
        # pandas silently turns the leading fields into an index when the first data row has more
        # fields than the header; that is a ragged row, like any later one.
        fields = df.shape[1] + df.index.nlevels
        raise _error(label, f"row 2 has {fields} fields but the header has {df.shape[1]} "
                            f"(rows are counted from the header, row 1)")
    return df


def _parser_problem(exc: pd.errors.ParserError) -> str:
    text = str(exc)
    # pandas counts records (a quoted newline does not start a new one), the header being line 1.
    match = re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", text)
    if match:
        expected, row, saw = match.groups()
        return f"row {row} has {saw} fields but the header has {expected} (rows are counted from the header, row 1)"
    match = re.search(r"EOF inside string starting at row (\d+)", text)
    if match:
        # Here pandas counts from 0 at the header.
        row = int(match.group(1)) + 1
        return f"has a quoted field that is never closed (it starts in row {row}, counting the header as row 1)"
    return f"cannot be parsed as a table ({_first_line(exc).removeprefix('Error tokenizing data. ')})"


def _check_delimiter(delimiter: str) -> str:
    if delimiter in ("\\t", "tab", "TAB"):  # what a shell user can type for a tab
        return "\t"
    if len(delimiter) != 1 or delimiter in "\"\r\n":
        raise ConfigError(f"the delimiter must be one character (or '\\t' for a tab), got {delimiter!r}")
    return delimiter


def _choose_encoding(path: Path, label: str, gz: bool, encoding: str | None) -> str:
    """Scan the whole file once (twice or thrice for a non-UTF-8 one) and pick its encoding."""
    with _io_errors(label, gz):
        with _open_bytes(path, gz) as f:
            bom = f.read(4)
    if encoding is not None:
        try:
            name = codecs.lookup(encoding).name
        except LookupError as exc:
            raise ConfigError(f"unknown encoding '{encoding}' for table '{label}'") from exc
        if name == "utf-8" and bom.startswith(codecs.BOM_UTF8):
            name = "utf-8-sig"  # the user said UTF-8; the mark is not part of the first column's name
        decodes, offset = _scan(path, label, gz, name, first=True)
        if not decodes:
            raise _error(label, f"does not look like a text table in the encoding '{encoding}' "
                                f"(it does not decode near byte {offset})")
        return name
    if bom.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        candidates = ["utf-16"]  # Excel's "Unicode text" export; the codec reads the mark
    elif bom.startswith(codecs.BOM_UTF8):
        candidates = ["utf-8-sig"]
    else:
        candidates = ["utf-8", "cp1252", "latin-1"]  # latin-1 decodes any byte: the last resort
    for i, candidate in enumerate(candidates):
        decodes, _ = _scan(path, label, gz, candidate, first=i == 0)
        if decodes:
            if i > 0:
                warnings.warn(f"table '{label}' is not valid UTF-8; read it as {candidate} "
                              f"(pass the encoding if that is wrong)", TableWarning, stacklevel=4)
            return candidate
    raise _error(label, "does not look like a text table (it cannot be decoded)")  # pragma: no cover


def _scan(path: Path, label: str, gz: bool, encoding: str, first: bool) -> tuple[bool, int]:
    """Decode the whole stream: (whether it decodes, about where it stops decoding).

    The first scan also rejects binary data and empty files, and reads a gzip stream to its end
    (a truncated one fails here, with one line, rather than inside pandas).
    """
    decoder = codecs.getincrementaldecoder(encoding)()
    wide = encoding.startswith(("utf-16", "utf-32"))  # their text is full of NUL bytes
    decodes, has_text, position, bad_at = True, False, 0, -1
    with _io_errors(label, gz):
        with _open_bytes(path, gz) as f:
            while chunk := f.read(_CHUNK):
                if first and not wide:
                    if b"\x00" in chunk:
                        raise _error(label, "does not look like a text table (it contains NUL bytes)")
                    if position == 0 and _control_fraction(chunk) > _MAX_CONTROL_FRACTION:
                        raise _error(label, "does not look like a text table (it is full of control characters)")
                if decodes:
                    try:
                        text = decoder.decode(chunk)  # every chunk: one bad byte anywhere rules the encoding out
                    except UnicodeDecodeError as exc:
                        # exc.start counts from the bytes the decoder held back from the last chunk too
                        decodes, bad_at = False, max(position + exc.start - 3, 0)
                        if not first:
                            break  # later scans only test the encoding; the first reads on for its checks
                    else:
                        has_text = has_text or not text.isspace() and text != ""
                position += len(chunk)
    if decodes:
        try:
            has_text = has_text or decoder.decode(b"", final=True).strip() != ""
        except UnicodeDecodeError:
            decodes, bad_at = False, max(position - 3, 0)
    if decodes and not has_text:
        raise _error(label, "is empty")
    return decodes, bad_at


def _control_fraction(chunk: bytes) -> float:
    sample = chunk[:_SAMPLE]
    return (len(sample) - len(sample.translate(None, _CONTROL_BYTES))) / max(len(sample), 1)


def _text_sample(path: Path, label: str, gz: bool, encoding: str) -> str:
    with _io_errors(label, gz):
        with _open_bytes(path, gz) as f:
            raw = f.read(_SAMPLE)
            more = bool(f.read(1))
    text = codecs.getincrementaldecoder(encoding)(errors="replace").decode(raw, final=not more)
    if more and "\n" in text:
        text = text[:text.rindex("\n") + 1]  # whole lines only: a cut line would confuse the sniffer
    return text


def _sniff_delimiter(sample: str, fallback: str) -> str:
    try:
        found = csv.Sniffer().sniff(sample, delimiters=_DELIMITERS).delimiter
    except csv.Error:  # one column, or nothing consistent: the suffix decides
        return fallback
    header = sample.split("\n", 1)[0]
    if found not in header:
        # The sniffer can pick a character that recurs in the data (text like "x;y") but that the
        # header lacks; the header is what pandas counts fields by.
        counts = {d: header.count(d) for d in _DELIMITERS}
        best = max(counts, key=lambda d: counts[d])
        return best if counts[best] else fallback
    return found


def _check_header(sample: str, delimiter: str, label: str) -> None:
    # pandas renames a repeated name to "a.1" without a word; read the raw header to catch it.
    try:
        header = next(csv.reader(io.StringIO(sample), delimiter=delimiter), [])
    except csv.Error:  # pandas will report what is wrong with the file
        return
    duplicates = _duplicates([name.strip() for name in header])
    if duplicates:
        raise _error(label, f"has duplicate column names: {duplicates}")


def _duplicates(names: list[str]) -> str:
    """'a' (columns 1 and 3), ... for the repeated non-empty names ("" if none)."""
    counts = Counter(names)
    parts = []
    for name, count in counts.items():
        if count > 1 and name:  # pandas names empty headers "Unnamed: i", which are unique
            columns = [str(i + 1) for i, n in enumerate(names) if n == name]
            parts.append(f"'{name}' (columns {', '.join(columns[:-1])} and {columns[-1]})")
    return ", ".join(parts)


# ----------------------------------------------------------------------------------------------
# Cleaning


def clean_table(df: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """Return a cleaned copy of ``df`` and the warnings about it (also emitted as :class:`TableWarning`).

    - column names become strings without surrounding whitespace (duplicates are a ConfigError);
    - +/-inf in float columns becomes NaN;
    - a text column whose non-missing values are at least 90% numbers becomes numeric, the rest missing;
    - a text column whose every non-missing value is ``true``/``false`` (any case) becomes ``bool``
      (``boolean``, pandas' nullable type, when some are missing);
    - a text column whose every non-missing value parses as a datetime becomes ``datetime64``.

    Other columns (all-missing ones included) are kept as they are; ``df`` itself is never changed.
    """
    cleaned, messages = _clean(df, None)
    for message in messages:
        warnings.warn(message, TableWarning, stacklevel=2)
    return cleaned, messages


def _clean(df: pd.DataFrame, label: str | None) -> tuple[pd.DataFrame, list[str]]:
    prefix = f"table '{label}': " if label else ""
    names = [str(c).strip() for c in df.columns]
    duplicates = _duplicates(names)
    if duplicates:
        where = f"table '{label}'" if label else "the table"
        raise ConfigError(_one_line(f"{where} has duplicate column names: {duplicates}"))
    out = df.copy()  # deep: the caller's frame is never changed
    out.columns = names
    messages: list[str] = []
    for i, name in enumerate(names):
        column = out.iloc[:, i]
        if _is_text(column.dtype):
            converted = _convert_text(column, name, prefix, messages)
            if converted is not None:
                out.isetitem(i, converted.array)  # by position, and the frame's index is never realigned
                column = converted
        if pd.api.types.is_float_dtype(column.dtype):
            values = column.to_numpy(dtype=float, na_value=np.nan)
            infinite = np.isinf(values)
            if infinite.any():
                out.isetitem(i, column.mask(infinite).array)
                messages.append(_one_line(f"{prefix}column '{name}': {int(infinite.sum())} infinite "
                                          f"value(s) treated as missing"))
    return out, messages


def _is_text(dtype: object) -> bool:
    if isinstance(dtype, pd.CategoricalDtype):
        return False  # a categorical's categories are the user's choice
    return pd.api.types.is_object_dtype(dtype) or pd.api.types.is_string_dtype(dtype)


def _stripped(values: np.ndarray) -> pd.Series:
    """Non-missing values as stripped text, blanks dropped (blank text is missing once a column converts)."""
    text = pd.Series(values, dtype=object).astype(str).str.strip()
    return text[(text != "").to_numpy()]


def _convert_text(column: pd.Series, name: str, prefix: str, messages: list[str]) -> pd.Series | None:
    """The column as bool, numbers or datetimes when its text says so, else None."""
    raw = column.to_numpy(dtype=object)
    present = ~pd.isna(raw)
    values = raw[present]
    if len(values) == 0:
        return None
    # A probe of evenly spaced values (sorted data is covered) decides which conversions are worth
    # checking on the whole column: free text, the common case, then costs almost nothing.
    probe = _stripped(values[::max(1, len(values) // _PROBE)])
    maybe_bool = probe.str.lower().isin(_BOOL_TEXT).all()
    maybe_number = len(probe) == 0 or pd.to_numeric(probe, errors="coerce").notna().mean() >= 0.5
    formats = [] if maybe_bool or maybe_number else _datetime_formats(probe)
    if not (maybe_bool or maybe_number or formats):
        return None

    dense = _stripped(values)
    if len(dense) == 0:
        return None
    positions = np.flatnonzero(present)[dense.index.to_numpy()]  # where each dense value sits in the column
    dense = dense.reset_index(drop=True)
    full = np.full(len(raw), None, dtype=object)
    full[positions] = dense.to_numpy()
    full_series = pd.Series(full, index=column.index, name=column.name, dtype=object)

    lower = dense.str.lower()
    if maybe_bool and lower.isin(_BOOL_TEXT).all():
        truth = (lower == "true").to_numpy()
        if len(positions) == len(raw):
            return pd.Series(truth, index=column.index, name=column.name)
        flags = pd.array([None] * len(raw), dtype="boolean")  # nullable: a missing flag stays missing
        flags[positions] = truth
        return pd.Series(flags, index=column.index, name=column.name)

    if maybe_number:
        is_number = pd.to_numeric(dense, errors="coerce").notna().to_numpy()
        if is_number.mean() >= _NUMERIC_FRACTION:
            if not is_number.all():
                bad = dense[~is_number]
                examples = ", ".join(repr(v) for v in bad.unique()[:3])
                messages.append(_one_line(f"{prefix}column '{name}' is mostly numbers: {len(bad)} value(s) that are "
                                          f"not numbers treated as missing (e.g. {examples})"))
            return pd.to_numeric(full_series, errors="coerce")
        formats = _datetime_formats(dense.iloc[::max(1, len(dense) // _PROBE)])

    for fmt in formats:
        parsed = _parse_datetimes(full_series, fmt)
        if parsed is not None and not parsed.iloc[positions].isna().any():
            return parsed
    return None


def _datetime_formats(probe: pd.Series) -> list[str]:
    """The formats (ISO 8601, or one guessed from a few values) that parse every value of ``probe``.

    One format for a whole column: fast, and never pandas' per-value dateutil fallback, which reads
    almost any text as some date.
    """
    if len(probe) == 0:
        return []
    candidates = ["ISO8601"]
    for value in probe.iloc[:5]:
        for dayfirst in (False, True):  # "05/01/2021" is ambiguous; a later "25/01/2021" decides
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # pandas warns when the guess contradicts dayfirst: we try both
                try:
                    guess = guess_datetime_format(value, dayfirst=dayfirst)
                except (ValueError, TypeError, OverflowError):
                    guess = None
            # A date needs a year and a month: "%b" alone would turn month names into 1900 dates.
            if guess and guess not in candidates and re.search("%[Yy]", guess) and re.search("%[mbB]", guess):
                candidates.append(guess)
    found = []
    for fmt in candidates:
        parsed = _parse_datetimes(probe, fmt)
        if parsed is not None and not parsed.isna().any():
            found.append(fmt)
    return found


def _parse_datetimes(values: pd.Series, fmt: str) -> pd.Series | None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # mixed time zones and the like: the format is just not used
        try:
            parsed = pd.to_datetime(values, format=fmt, errors="coerce")
        except (ValueError, TypeError, OverflowError):
            return None
    return parsed if pd.api.types.is_datetime64_any_dtype(parsed.dtype) else None


# ----------------------------------------------------------------------------------------------
# Writing


def write_table(df: pd.DataFrame, path: str | Path) -> None:
    """Write ``df`` atomically to a ``.csv``, ``.csv.gz``, ``.tsv``, ``.tsv.gz`` or ``.parquet`` file.

    The format follows the suffix (see :data:`TABLE_SUFFIXES`); the parent folder is created. A
    crash or a full disk leaves no half-written file and an existing file as it was. An unknown
    suffix or a write that fails (no permission, disk full) is a one-line :class:`ConfigError`.
    """
    path = Path(path)
    name = path.name.lower()
    suffix = next((s for s in TABLE_SUFFIXES if name.endswith(s)), None)
    if suffix is None:
        valid = ", ".join(sorted(TABLE_SUFFIXES, key=len))
        raise ConfigError(_one_line(f"cannot write table '{path}': the file name must end in one of {valid}"))
    if suffix == ".parquet":
        if not all(isinstance(c, str) for c in df.columns):  # Parquet requires string column names
            df = df.set_axis([str(c) for c in df.columns], axis=1)

        def write(tmp: str) -> None:
            df.to_parquet(tmp, index=False)
    else:
        sep = "\t" if suffix.startswith(".tsv") else ","
        options = {"sep": sep, "index": False, "lineterminator": "\n"}

        if suffix.endswith(".gz"):
            def write(tmp: str) -> None:
                # Our own gzip stream: pandas' would record the temporary file's name and the time in
                # its header; with neither, the same table always gives the same bytes.
                with open(tmp, "wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as packed, \
                        io.TextIOWrapper(packed, encoding="utf-8", newline="") as text:
                    df.to_csv(text, **options)
        else:
            def write(tmp: str) -> None:
                df.to_csv(tmp, encoding="utf-8", **options)
    try:
        atomic_write(path, write)
    except OSError as exc:
        reason = exc.strerror or _first_line(exc)
        raise ConfigError(_one_line(f"cannot write table '{path}': {reason}")) from exc
