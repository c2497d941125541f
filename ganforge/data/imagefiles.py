"""Finding and decoding the image files of a folder: one definition for the in-memory and the streamed folder.

Both :func:`ganforge.data.images.load_image_folder` (everything decoded up front) and
:class:`ganforge.data.streaming.ImageFolderStream` (decoded in DataLoader workers) list files and decode
them here, so the two paths see the same files and give the same pixels. It is its own module because
the streaming module must not import ``images`` (which chooses between the two and so imports it).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from ganforge.registry import ConfigError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")

# What a file that is unreadable, truncated or absurdly large raises while it is decoded: skipped, not fatal.
UNREADABLE = (OSError, ValueError, Image.DecompressionBombError)


def check_image_folder(path: str | Path, size: int, channels: int) -> Path:
    """The folder, after checking that it exists and that ``size`` and ``channels`` are valid."""
    folder = Path(path).expanduser()
    if channels not in (1, 3):
        raise ConfigError(f"image folder: channels must be 1 or 3, got {channels}")
    if not isinstance(size, int) or size < 1:
        raise ConfigError(f"image folder: size must be a positive integer, got {size!r}")
    if not folder.is_dir():
        raise ConfigError(f"image folder not found: {folder}")
    return folder


def list_image_files(path: str | Path, size: int, channels: int) -> tuple[Path, list[Path]]:
    """The folder and every file with an image extension under it (recursive, sorted); checks the options."""
    folder = check_image_folder(path, size, channels)
    return folder, sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())


def no_images_error(folder: Path) -> ConfigError:
    return ConfigError(f"no readable images ({', '.join(IMAGE_EXTENSIONS)}) in {folder}")


def decode_image(path: str | Path, size: int, channels: int) -> np.ndarray:
    """One file as uint8 (size, size) or (size, size, 3); raises one of :data:`UNREADABLE` if it cannot be read."""
    with Image.open(path) as img:
        img.load()
        return square_image(img, size, "L" if channels == 1 else "RGB")


def square_image(img: Image.Image, size: int, mode: str) -> np.ndarray:
    """Convert to ``mode``, scale the shorter side to ``size`` and take the centred ``size`` x ``size`` crop."""
    if img.mode == "P":  # palette transparency only survives through RGBA (and Pillow warns otherwise)
        img = img.convert("RGBA")
    img = img.convert(mode)
    w, h = img.size
    scale = size / min(w, h)
    nw, nh = max(size, round(w * scale)), max(size, round(h * scale))
    img = img.resize((nw, nh), Image.Resampling.BICUBIC)
    left, top = (nw - size) // 2, (nh - size) // 2
    return np.asarray(img.crop((left, top, left + size, top + size)), dtype=np.uint8)
