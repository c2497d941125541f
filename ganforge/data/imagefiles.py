"""Finding and decoding the image files of a folder: one definition for the in-memory and the streamed folder.

Both :func:`ganforge.data.images.load_image_folder` (everything decoded up front) and
:class:`ganforge.data.image_stream.ImageFolderStream` (decoded in DataLoader workers) list files and decode
them here, so the two paths see the same files and give the same pixels. It is its own module because
the streamed folder's module must not import ``images`` (which chooses between the two and so imports it).

A folder is whatever users collect, so nothing in it may hang, exhaust memory or crash a run: a
symlink loop is walked once, an image declaring more than :func:`pixel_limit` pixels is refused from
its header before anything is decoded, a truncated file is unreadable (skipped by the callers, who
count them in one warning), and every mode Pillow opens (1, L, LA, P, RGBA, CMYK, YCbCr, 16-bit and
32-bit integer, float) comes out as 8-bit grey or RGB as a viewer would show it.
"""
from __future__ import annotations

import os
import struct
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from ganforge.registry import ConfigError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")

# What a file that is unreadable, truncated or absurdly large raises while it is decoded: skipped, not fatal.
UNREADABLE = (OSError, ValueError, Image.DecompressionBombError)

# The most pixels an image may declare. Pillow's own guard (Image.MAX_IMAGE_PIXELS, ~89 Mpx) only warns
# below twice its limit, and users may switch it off; a training image never needs more than this.
MAX_PIXELS = 64_000_000

# Modes whose samples are wider than 8 bits: Pillow's convert("L") clips them at 255 instead of scaling.
_WIDE_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I", "F")
# Modes that carry transparency in a band of their own (palette and single-colour transparency are in img.info).
_ALPHA_MODES = ("RGBA", "RGBa", "LA", "La", "PA")
# What Pillow's file parsers have been seen to raise, besides OSError and ValueError, on malformed files.
_MALFORMED = (EOFError, SyntaxError, IndexError, KeyError, TypeError, ZeroDivisionError, struct.error)
_BACKGROUND = (255, 255, 255, 255)  # what transparent pixels show: white, as on a web page or in most viewers


def pixel_limit() -> int:
    """The most pixels (width x height) an image may declare: :data:`MAX_PIXELS` or Pillow's
    ``Image.MAX_IMAGE_PIXELS``, whichever is lower (Pillow's may be None: no limit of its own)."""
    pillow = Image.MAX_IMAGE_PIXELS
    return MAX_PIXELS if pillow is None else min(MAX_PIXELS, int(pillow))


def check_image_folder(path: str | Path, size: int, channels: int) -> Path:
    """The folder, after checking that it exists and that ``size`` and ``channels`` are valid."""
    folder = Path(path).expanduser()
    if channels not in (1, 3):
        raise ConfigError(f"image folder: channels must be 1 or 3, got {channels}")
    if not isinstance(size, int) or size < 1:
        raise ConfigError(f"image folder: size must be a positive integer, got {size!r}")
    if folder.exists() and not folder.is_dir():
        raise ConfigError(f"image folder: {folder} is a file, not a folder (give the folder that holds the images)")
    if not folder.is_dir():
        raise ConfigError(f"image folder not found: {folder}")
    return folder


def list_image_files(path: str | Path, size: int, channels: int) -> tuple[Path, list[Path]]:
    """The folder and every file with an image extension under it (recursive, sorted); checks the options."""
    folder = check_image_folder(path, size, channels)
    return folder, image_paths(folder)


def image_paths(folder: Path) -> list[Path]:
    """Every file with an image extension under ``folder``, sorted, each file once.

    Links to folders are followed (a data set is often linked in), but every real folder is listed
    once: a link to a parent, or two links to one folder, neither loops nor repeats its files. A
    folder reached both directly and through a link is listed under its direct path (its class name
    for labelled folders), and a file reached by several paths (links, hard links) counts once,
    under its direct path when it has one.
    """
    visited: set[tuple[int, int]] = set()
    chosen: dict[tuple[int, int], tuple[bool, str]] = {}  # the file's identity -> (through a link, path)
    direct, linked = [str(folder)], []
    while direct or linked:
        # Every folder reachable without links is listed before any linked one, so a linked folder that is
        # also in the tree keeps its direct path.
        d = direct.pop() if direct else linked.pop(0)
        try:
            st = os.stat(d)
            entries = list(os.scandir(d))
        except OSError:  # unreadable or vanished folder: nothing to list there
            continue
        if (st.st_dev, st.st_ino) in visited:
            continue
        visited.add((st.st_dev, st.st_ino))
        for e in entries:
            try:
                if e.is_dir():  # follows links
                    (linked if e.is_symlink() else direct).append(e.path)
                elif Path(e.name).suffix.lower() in IMAGE_EXTENSIONS and e.is_file():
                    fst = e.stat()
                    key, candidate = (fst.st_dev, fst.st_ino), (e.is_symlink(), e.path)
                    if key not in chosen or candidate < chosen[key]:
                        chosen[key] = candidate
            except OSError:  # a broken link or a file that vanished while listing
                continue
    return sorted(Path(p) for _, p in chosen.values())


def no_images_error(folder: Path) -> ConfigError:
    return ConfigError(f"no readable images ({', '.join(IMAGE_EXTENSIONS)}) in {folder}")


def open_image(path: str | Path) -> Image.Image:
    """The decoded image of one file, EXIF orientation applied; raises one of :data:`UNREADABLE`.

    The declared size is checked from the header before any pixel is decoded, so a small file that
    declares a huge image (a decompression bomb) costs nothing.
    """
    try:
        with warnings.catch_warnings():
            # Pillow warns of images between its limit and twice that; ours is lower and refuses them below.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                w, h = img.size
                if w * h > pixel_limit():
                    raise Image.DecompressionBombError(
                        f"{path}: declares {w} x {h} pixels, more than the limit of {pixel_limit()}")
                img.load()  # raises OSError for a truncated file
                # Photos are often stored sideways with an EXIF note saying how to turn them: shown upright.
                return ImageOps.exif_transpose(img)
    except _MALFORMED as e:  # what Pillow's parsers let through on a malformed file: as unreadable as any
        raise OSError(f"{path}: cannot decode ({type(e).__name__}: {e})") from None


def decode_image(path: str | Path, size: int, channels: int) -> np.ndarray:
    """One file as uint8 (size, size) or (size, size, 3); raises one of :data:`UNREADABLE` if it cannot be read."""
    return square_image(open_image(path), size, "L" if channels == 1 else "RGB")


def to_8bit(img: Image.Image, mode: str) -> Image.Image:
    """``img`` as 8-bit ``mode`` ("L" or "RGB"), as a viewer would show it.

    Samples wider than 8 bits are scaled down (Pillow's own conversion clips them: a 16-bit photo
    would come out all white), transparent pixels are shown over white (dropping the alpha band
    would show whatever colour the file happens to store under them), and the other modes (1, P,
    CMYK, YCbCr, ...) go through Pillow's conversions.
    """
    if img.mode in _WIDE_MODES:
        img = Image.fromarray(wide_to_uint8(np.asarray(img), img.mode), "L")
    if img.mode in _ALPHA_MODES or "transparency" in img.info:
        # Palette and single-colour transparency only survive through RGBA (and Pillow warns otherwise).
        rgba = img.convert("RGBA")
        img = Image.alpha_composite(Image.new("RGBA", rgba.size, _BACKGROUND), rgba).convert("RGB")
    return img if img.mode == mode else img.convert(mode)


def wide_to_uint8(a: np.ndarray, mode: str) -> np.ndarray:
    """uint8 samples of a 16-bit, 32-bit integer or float image, scaled by the range the values are in.

    16-bit samples span 0..65535. Pillow's 32-bit modes say nothing of their range, so it is read
    from the values: 8-bit (0..255) values are kept, 16-bit ones (0..65535, e.g. a 16-bit file read
    as ``I``) and floats in 0..1 are scaled up to 0..255, and anything else is stretched from its
    minimum to its maximum. A fixed range rather than always min..max keeps a dark image dark.
    """
    x = a.astype(np.float64)
    if mode.startswith("I;16"):
        scaled = x * (255 / 65535)
    else:
        x = np.nan_to_num(x, nan=0.0, posinf=0.0, neginf=0.0)
        lo, hi = (float(x.min()), float(x.max())) if x.size else (0.0, 0.0)
        if lo >= 0 and hi <= 1 and mode == "F":
            scaled = x * 255
        elif lo >= 0 and hi <= 255:
            scaled = x
        elif lo >= 0 and hi <= 65535 and mode == "I":
            scaled = x * (255 / 65535)
        elif hi > lo:
            scaled = (x - lo) * (255 / (hi - lo))
        else:  # one value outside every range: nothing to show but a flat image
            scaled = np.zeros_like(x)
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


def square_image(img: Image.Image, size: int, mode: str) -> np.ndarray:
    """Convert to ``mode``, scale the shorter side to ``size`` and take the centred ``size`` x ``size`` crop."""
    img = to_8bit(img, mode)
    w, h = img.size
    scale = size / min(w, h)
    nw, nh = max(size, round(w * scale)), max(size, round(h * scale))
    img = img.resize((nw, nh), Image.Resampling.BICUBIC)
    left, top = (nw - size) // 2, (nh - size) // 2
    return np.asarray(img.crop((left, top, left + size, top + size)), dtype=np.uint8)
