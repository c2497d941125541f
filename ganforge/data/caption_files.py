"""Image/caption pairs on disk in a plain format: :func:`read_captioned` reads a ``.jsonl`` or ``.csv`` file of
image paths and captions, :func:`write_captioned` writes a :class:`~ganforge.data.captions.CaptionSet` as one (with
its attributes, when known), and :func:`write_shapes` writes the shapes data set in it."""
from __future__ import annotations

import csv
import io
import json
import os
import shutil
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from ganforge.data.caption_templates import _positive
from ganforge.data.captions import CaptionSet
from ganforge.data.images import _square
from ganforge.data.mnist import to_tensor_images
from ganforge.data.mnist_captions import MNIST_SCHEMA
from ganforge.data.shapes import SHAPES_SCHEMA, _shapes_set
from ganforge.io import atomic_write
from ganforge.registry import ConfigError

# ----------------------------------------------------------------------------------------------------------------------
# The plain on-disk format

CAPTION_EXTENSIONS = (".jsonl", ".csv")


def _one_line(message: str) -> str:
    # The CLI prints a ConfigError as one line; a file name or a caption may hold a newline.
    return " ".join(message.splitlines()).strip()


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


__all__ = ["CAPTION_EXTENSIONS", "read_captioned", "write_captioned", "write_shapes"]
