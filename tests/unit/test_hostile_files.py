"""Hostile and odd files are decoded correctly or refused in one line, never crash, hang or run code.

Image folders: every mode Pillow opens comes out as 8-bit grey or RGB as a viewer shows it (16-bit
and float samples scaled, not clipped; transparency over white; EXIF orientation applied), truncated
files and decompression bombs are skipped with the one warning, symlink loops are walked once.
Checkpoints and generator files: pickles (never unpickled), random bytes, empty and truncated files,
foreign safetensors files, damaged metadata and weights of another model are each one ConfigError
naming the file. Every fixture is made here, in ``tmp_path``.
"""
from __future__ import annotations

import os
import pickle
import struct
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageFile
from safetensors.torch import load_file, save_file

from ganforge.config import from_dict
from ganforge.data.image_stream import ImageFolderStream
from ganforge.data.imagefiles import (
    MAX_PIXELS,
    decode_image,
    list_image_files,
    open_image,
    pixel_limit,
    square_image,
    wide_to_uint8,
)
from ganforge.data.images import load_image_folder
from ganforge.generator import GeneratorArtifact, Prior, build_generator_module, load
from ganforge.registry import ConfigError
from ganforge.spec import DataSpec
from ganforge.training.checkpoint import check_origin, load_state, save_state

COLOUR = (200, 100, 50)
GREY = 124  # ITU-R 601-2 luma of COLOUR, what Pillow's convert("L") gives


# -- image fixtures ---------------------------------------------------------------------------------------------------


def png_bytes(w: int, h: int, bit_depth: int, colour_type: int, raw: bytes) -> bytes:
    """A PNG written by hand (Pillow cannot write 16-bit RGB, nor lie about its size): IHDR, one IDAT, IEND."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", w, h, bit_depth, colour_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


def bomb(path: Path, w: int, h: int) -> Path:
    """A few hundred bytes that declare a w x h grey image (its pixel data is cut short: never needed)."""
    path.write_bytes(png_bytes(w, h, 8, 0, b"\x00" * 1000))
    return path


def noise(path: Path, mode: str = "RGB", seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    shape = (32, 32, 3) if mode == "RGB" else (32, 32)
    Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode).save(path)
    return path


def solid(mode: str) -> Image.Image:
    return Image.new("RGB", (16, 16), COLOUR).convert(mode)


# -- modes ------------------------------------------------------------------------------------------------------------


def test_a_16_bit_gradient_is_an_8_bit_gradient_not_white(tmp_path):
    ramp = np.tile(np.linspace(0, 65535, 64).round().astype(np.uint16), (64, 1))
    Image.fromarray(ramp).save(tmp_path / "g16.png")
    assert Image.open(tmp_path / "g16.png").mode == "I;16"  # what Pillow reads; its convert("L") clips at 255
    grey = decode_image(tmp_path / "g16.png", 64, 1)
    expected = np.rint(ramp / 257).astype(int)
    assert np.abs(grey.astype(int) - expected).max() <= 1
    assert grey[:, 0].max() <= 1 and grey[:, -1].min() >= 254 and (np.diff(grey[0].astype(int)) >= 0).all()
    rgb = decode_image(tmp_path / "g16.png", 64, 3)
    assert np.abs(rgb[..., 1].astype(int) - expected).max() <= 1


def test_a_16_bit_rgb_png_keeps_its_gradient(tmp_path):
    w, h = 64, 8
    r = np.linspace(0, 65535, w).round()
    pixels = np.stack([r, 65535 - r, np.full(w, 32768)], axis=1).astype(">u2")  # (w, 3) big-endian samples
    raw = b"".join(b"\x00" + pixels.tobytes() for _ in range(h))
    (tmp_path / "rgb16.png").write_bytes(png_bytes(w, h, 16, 2, raw))
    out = decode_image(tmp_path / "rgb16.png", 8, 3)  # the 8 x 8 centre crop of the 64 x 8 image
    red = out[0, :, 0].astype(int)
    assert (np.diff(red) > 0).all() and 90 < red[0] < red[-1] < 170
    assert (np.abs(out[0, :, 0].astype(int) + out[0, :, 1] - 255) <= 2).all()  # green is red's complement
    assert (np.abs(out[..., 2].astype(int) - 128) <= 1).all()


@pytest.mark.parametrize("name,image,fmt", [
    ("1", Image.new("1", (16, 16), 1), "png"),
    ("L", solid("L"), "png"),
    ("LA", solid("LA"), "png"),
    ("P", Image.new("RGB", (16, 16), COLOUR).convert("P", palette=Image.Palette.ADAPTIVE), "png"),
    ("RGB", solid("RGB"), "png"),
    ("RGBA", solid("RGBA"), "png"),
    ("CMYK jpeg", solid("CMYK"), "jpg"),
    ("CMYK tiff", solid("CMYK"), "tif"),
    ("I;16", Image.fromarray(np.full((16, 16), GREY * 257, np.uint16)), "png"),
    ("I", Image.fromarray(np.full((16, 16), GREY * 257, np.int32)), "tif"),
    ("F", Image.fromarray(np.full((16, 16), GREY / 255, np.float32)), "tif"),
])
def test_every_mode_is_decoded_as_a_viewer_shows_it(tmp_path, name, image, fmt):
    path = tmp_path / f"img.{fmt}"
    image.save(path)
    grey_only = name in ("1", "L", "LA", "I;16", "I", "F")
    want_rgb = (255,) * 3 if name == "1" else (GREY,) * 3 if grey_only else COLOUR
    want_grey = 255 if name == "1" else GREY
    tol = 6 if fmt == "jpg" else 1  # JPEG is lossy
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no Pillow warning either (palette transparency, ...)
        rgb, grey = decode_image(path, 8, 3), decode_image(path, 8, 1)
    assert rgb.shape == (8, 8, 3) and grey.shape == (8, 8) and rgb.dtype == grey.dtype == np.uint8
    assert np.abs(rgb.reshape(-1, 3).astype(int) - want_rgb).max() <= tol, (name, rgb[0, 0])
    assert np.abs(grey.astype(int) - want_grey).max() <= tol + 1, (name, grey[0, 0])


def test_ycbcr_and_other_in_memory_modes_convert(tmp_path):
    for mode in ("YCbCr", "HSV", "PA"):
        rgb = square_image(solid(mode), 4, "RGB")
        assert np.abs(rgb.reshape(-1, 3).astype(int) - COLOUR).max() <= 6, mode


def test_wide_samples_are_scaled_by_their_range():
    assert wide_to_uint8(np.array([0, 32896, 65535], np.uint16), "I;16").tolist() == [0, 128, 255]
    assert wide_to_uint8(np.array([0, 100, 255], np.int32), "I").tolist() == [0, 100, 255]  # 8-bit values kept
    assert wide_to_uint8(np.array([0, 65535], np.int32), "I").tolist() == [0, 255]  # 16-bit values in I
    assert wide_to_uint8(np.array([-1000, 0, 1000], np.int32), "I").tolist() == [0, 128, 255]  # min..max
    assert wide_to_uint8(np.array([0.0, 0.5, 1.0], np.float32), "F").tolist() == [0, 128, 255]
    assert wide_to_uint8(np.array([-3.0, 7.0, np.nan], np.float32), "F").tolist() == [0, 255, 76]
    assert wide_to_uint8(np.array([-5.0, -5.0], np.float32), "F").tolist() == [0, 0]  # flat, out of every range


def test_transparent_pixels_show_white(tmp_path):
    rgba = np.zeros((16, 16, 4), np.uint8)
    rgba[:, :8] = (*COLOUR, 255)  # left half opaque, right half transparent red (a colour no viewer shows)
    rgba[:, 8:] = (255, 0, 0, 0)
    Image.fromarray(rgba, "RGBA").save(tmp_path / "rgba.png")
    out = decode_image(tmp_path / "rgba.png", 16, 3).astype(int)
    assert np.abs(out[:, :7] - COLOUR).max() <= 1 and (out[:, 9:] >= 254).all()
    # A palette image whose index 0 is transparent: those pixels are white too, the rest keep their colour.
    pal = Image.new("P", (16, 16), 0)
    pal.putpalette([0, 0, 0, *COLOUR] + [0] * 762)
    pal.paste(1, (0, 0, 8, 16))
    pal.save(tmp_path / "pal.png", transparency=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = decode_image(tmp_path / "pal.png", 16, 3).astype(int)
    assert np.abs(out[:, :7] - COLOUR).max() <= 1 and (out[:, 9:] >= 254).all()
    Image.new("LA", (16, 16), (0, 0)).save(tmp_path / "la.png")  # black, fully transparent
    assert (decode_image(tmp_path / "la.png", 8, 1) == 255).all()


def test_exif_orientation_is_applied(tmp_path):
    stored = np.zeros((16, 16), np.uint8)
    stored[:8] = 255  # as stored: the top half white
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to show": the top comes to the right
    for name in ("o.png", "o.jpg"):
        Image.fromarray(stored, "L").save(tmp_path / name, exif=exif)
        out = decode_image(tmp_path / name, 16, 1).astype(int)
        assert out[:, :6].mean() < 30 and out[:, 10:].mean() > 225, name


# -- damaged, huge and linked files -----------------------------------------------------------------------------------


def test_truncated_files_are_skipped_counted_and_warned_once(tmp_path):
    for i, name in enumerate(("a.png", "b.jpg", "c.png", "d.jpg")):
        noise(tmp_path / name, seed=i)
    for name in ("c.png", "d.jpg"):
        data = (tmp_path / name).read_bytes()
        (tmp_path / name).write_bytes(data[: len(data) // 2])
    assert not ImageFile.LOAD_TRUNCATED_IMAGES  # else Pillow fills the missing half with grey
    with pytest.raises(OSError):
        decode_image(tmp_path / "c.png", 8, 3)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        x = load_image_folder(tmp_path, 8, 3)
    assert len(x) == 2
    assert len(caught) == 1 and "skipped 2 unreadable files" in str(caught[0].message)


@pytest.mark.parametrize("w,h", [(20000, 20000), (9000, 9000)])  # over twice Pillow's limit; over ours only
def test_a_decompression_bomb_is_refused_from_its_header(tmp_path, monkeypatch, w, h):
    path = bomb(tmp_path / "bomb.png", w, h)
    assert path.stat().st_size < 2000

    def no_decoding(self):
        raise AssertionError("the pixels of a bomb must never be decoded")

    monkeypatch.setattr(ImageFile.ImageFile, "load", no_decoding)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # Pillow's DecompressionBombWarning is not shown either
        with pytest.raises(Image.DecompressionBombError):
            open_image(path)


def test_bombs_are_skipped_like_unreadable_files(tmp_path):
    noise(tmp_path / "ok.png")
    bomb(tmp_path / "big.png", 9000, 9000)
    bomb(tmp_path / "huge.png", 20000, 20000)
    with pytest.warns(UserWarning, match="skipped 2 unreadable files"):
        assert len(load_image_folder(tmp_path, 8, 1)) == 1
    with pytest.warns(UserWarning, match="skipped 2 unreadable files"):
        with ImageFolderStream(tmp_path, 8, 1, workers=0) as s:
            assert s.batch(3)["x"].shape == (3, 1, 8, 8)
            s.close()
    assert s.skipped == 2


def test_the_pixel_limit_is_the_lower_of_ours_and_pillows(tmp_path, monkeypatch):
    assert pixel_limit() == min(MAX_PIXELS, Image.MAX_IMAGE_PIXELS) == MAX_PIXELS
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)  # Pillow's guard switched off: ours still holds
    assert pixel_limit() == MAX_PIXELS
    with pytest.raises(Image.DecompressionBombError, match="9000 x 9000"):
        open_image(bomb(tmp_path / "big.png", 9000, 9000))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 500)
    assert pixel_limit() == 500
    with pytest.raises(Image.DecompressionBombError):
        decode_image(noise(tmp_path / "n.png"), 8, 1)  # 32 x 32 = 1024 pixels


def test_symlink_loops_end_and_count_each_file_once(tmp_path):
    root, outside = tmp_path / "root", tmp_path / "outside"
    (root / "a" / "deep").mkdir(parents=True)
    outside.mkdir()
    noise(root / "a" / "x.png")
    noise(root / "a" / "deep" / "y.png", seed=1)
    noise(outside / "z.png", seed=2)
    os.symlink("..", root / "a" / "up")  # a loop: a/up/a/up/...
    os.symlink(root, root / "a" / "deep" / "root")  # another, by absolute path
    os.symlink("a", root / "b")  # the same folder twice
    os.symlink("a/x.png", root / "x_again.png")  # the same file twice
    os.symlink(outside, root / "linked")  # a data set linked in: followed
    os.symlink(tmp_path / "nowhere", root / "broken.png")
    folder, files = list_image_files(root, 8, 3)
    assert [f.relative_to(root).as_posix() for f in files] == ["a/deep/y.png", "a/x.png", "linked/z.png"]
    assert len(load_image_folder(root, 8, 3)) == 3


def test_a_folder_without_readable_images_or_a_file_is_one_line(tmp_path):
    (tmp_path / "bad.png").write_bytes(b"not an image")
    (tmp_path / "empty.jpg").write_bytes(b"")
    bomb(tmp_path / "bomb.png", 20000, 20000)
    with pytest.warns(UserWarning, match="skipped 3"), pytest.raises(ConfigError, match="no readable images") as e:
        load_image_folder(tmp_path, 8, 1)
    assert str(tmp_path) in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(ConfigError, match="is a file, not a folder") as e:
        load_image_folder(tmp_path / "bad.png", 8, 1)
    assert str(tmp_path / "bad.png") in str(e.value)


# -- checkpoints and generator files ----------------------------------------------------------------------------------


class Evil:
    """Unpickling this creates ``marker``: proof that a loader unpickled the file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def artifact(hidden: list[int], custom: bool = False) -> GeneratorArtifact:
    model = from_dict({"model": {"z_dim": 2, "generator": {"hidden": hidden}}}).model
    spec, prior = DataSpec((2,)), Prior.from_model(model)
    return GeneratorArtifact(build_generator_module(model, spec, prior.dim), prior, spec, model, custom=custom)


def hostile_files(root: Path, marker: Path) -> dict[str, tuple[Path, str]]:
    """Files that are not usable ganforge files, and a word their error must contain."""
    root.mkdir()
    files: dict[str, tuple[Path, str]] = {}

    def add(name: str, data: bytes, why: str) -> None:
        (root / name).write_bytes(data)
        files[name] = (root / name, why)

    add("evil.pkl", pickle.dumps({"w": Evil(marker)}), "pickle")
    torch.save({"w": torch.zeros(3), "evil": Evil(marker)}, root / "torch.pt")
    files["torch.pt"] = (root / "torch.pt", "torch.save")
    torch.save({"evil": Evil(marker)}, root / "legacy.pt", _use_new_zipfile_serialization=False)
    files["legacy.pt"] = (root / "legacy.pt", "pickle")
    add("random.bin", np.random.default_rng(0).bytes(4096), "not a safetensors file")
    add("empty.safetensors", b"", "empty")
    add("short.safetensors", b"abc", "3 bytes")
    add("huge_header.safetensors", struct.pack("<Q", 2**40) + b'{"a":', "header claims")
    add("bad_json_header.safetensors", struct.pack("<Q", 12) + b"{not json!!!", "not a safetensors file")
    save_file({"w": torch.zeros(3)}, str(root / "foreign.safetensors"))
    files["foreign.safetensors"] = (root / "foreign.safetensors", "without ganforge's metadata")
    return files


def test_hostile_files_are_one_line_errors_and_never_unpickled(tmp_path):
    marker = tmp_path / "pwned"
    files = hostile_files(tmp_path / "files", marker)
    for name, (path, why) in files.items():
        for loader, kind in ((load_state, "ganforge checkpoint"), (load, "ganforge generator file")):
            with pytest.raises(ConfigError) as e:
                loader(path)
            message = str(e.value)
            assert str(path) in message and kind in message and why in message, (name, message)
            assert "\n" not in message, (name, message)
    assert not marker.exists(), "a loader unpickled a file"


def test_damaged_checkpoints_are_one_line_errors(tmp_path):
    good = tmp_path / "good.safetensors"
    save_state(good, {"step": 3, "generator": {"w": torch.ones(4, 4)}})
    tensors = load_file(str(good))
    cases = {
        "not json": ({"ganforge_state": "{not json"}, "corrupted metadata"),
        "deep json": ({"ganforge_state": "[" * 100_000 + "]" * 100_000}, "corrupted metadata"),
        "missing tensor": ({"ganforge_state": '{"__dict__": {"w": {"__tensor__": "t9"}}}'}, "corrupted metadata"),
        "not a dict": ({"ganforge_state": "[1, 2]"}, "corrupted metadata"),
    }
    for name, (meta, why) in cases.items():
        path = tmp_path / f"{name}.safetensors"
        save_file(tensors, str(path), metadata=meta)
        with pytest.raises(ConfigError, match=why) as e:
            load_state(path)
        assert str(path) in str(e.value) and "\n" not in str(e.value), name
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(good.read_bytes()[:-20])  # the tensor data cut short
    with pytest.raises(ConfigError, match="not a safetensors file") as e:
        load_state(cut)
    assert str(cut) in str(e.value)


def test_damaged_generator_files_are_one_line_errors(tmp_path):
    small, big = tmp_path / "small.safetensors", tmp_path / "big.safetensors"
    artifact([16]).export(small)
    artifact([32]).export(big)
    meta_small = open_meta(small)
    weights_big = load_file(str(big))
    cases = {
        # another model's weights under this model's metadata: the shapes do not fit
        "other model": (weights_big, meta_small, "was written for a different model"),
        "missing weights": ({}, meta_small, "not in the file"),
        "not json": (weights_big, "{oops", "corrupted metadata"),
        "a list": (weights_big, "[1, 2]", "corrupted metadata"),
        "no model": (weights_big, '{"format": "ganforge-generator-2"}', "corrupted metadata"),
        "bad model": (weights_big, meta_small.replace('"z_dim": 2', '"z_dim": "two"'), "z_dim"),
    }
    for name, (tensors, meta, why) in cases.items():
        path = tmp_path / f"{name}.safetensors"
        save_file(tensors or {"x": torch.zeros(1)}, str(path), metadata={"ganforge": meta})
        with pytest.raises(ConfigError, match=why) as e:
            load(path)
        assert str(path) in str(e.value) and "\n" not in str(e.value), (name, str(e.value))
    custom = tmp_path / "custom.safetensors"
    artifact([16], custom=True).export(custom)
    with pytest.raises(ConfigError, match="user-defined generator.*generator=") as e:
        load(custom)
    assert str(custom) in str(e.value)
    assert load(custom, generator=artifact([16]).module).custom  # with the module given, it loads
    assert load(small).sample(5).shape == (5, 2)


def open_meta(path: Path) -> str:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        return f.metadata()["ganforge"]


def test_a_run_of_user_defined_modules_is_not_resumed_without_them(tmp_path):
    state = {"step": 1, "callbacks": {"modules": {"generator": True, "discriminator": False}}}
    with pytest.raises(ConfigError, match="user-defined generator module.*generator=YourModule") as e:
        check_origin(tmp_path / "ck", state, tmp_path, generator=False, discriminator=False)
    assert "discriminator=" not in str(e.value)
    check_origin(tmp_path / "ck", state, tmp_path, generator=True, discriminator=False)  # given again: fine
    both = {"callbacks": {"modules": {"generator": True, "discriminator": True}}}
    with pytest.raises(ConfigError, match="generator and discriminator.*discriminator=YourModule"):
        check_origin(tmp_path / "ck", both, tmp_path, generator=False, discriminator=False)
    # A checkpoint from before the record: the exported generator file marked custom says it.
    check_origin(tmp_path / "ck", {"step": 1}, tmp_path, generator=False, discriminator=False)
    artifact([16], custom=True).export(tmp_path / "generator.safetensors")
    with pytest.raises(ConfigError, match="user-defined generator"):
        check_origin(tmp_path / "ck", {"step": 1}, tmp_path, generator=False, discriminator=False)
