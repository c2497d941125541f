"""Pictures that show what a generator learned: latent interpolations, class grids, a training GIF."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ganforge.generator import decode
from ganforge.io import atomic_write
from ganforge.report.plots import save_image_grid

_STEP_FILE = re.compile(r"step_(\d+)\.png")


def slerp(z0: torch.Tensor, z1: torch.Tensor, t: float | torch.Tensor) -> torch.Tensor:
    """Spherical interpolation between ``z0`` and ``z1`` (..., D) at ``t`` (broadcast against ``z0[..., :1]``).

    Under a high-dimensional normal prior almost all mass lies near the sphere of radius sqrt(D); a straight
    line between two samples cuts through the low-norm interior, which G rarely saw, while slerp keeps the
    norm (exactly, for equal-norm endpoints). Nearly parallel vectors fall back to linear interpolation.
    """
    t = torch.as_tensor(t, dtype=z0.dtype, device=z0.device)
    u0 = z0 / z0.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    u1 = z1 / z1.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    omega = torch.arccos((u0 * u1).sum(-1, keepdim=True).clamp(-1, 1))
    so = torch.sin(omega)
    parallel = so.abs() < 1e-4
    so = torch.where(parallel, torch.ones_like(so), so)  # avoid 0/0; those entries take the lerp below
    spherical = torch.sin((1 - t) * omega) / so * z0 + torch.sin(t * omega) / so * z1
    return torch.where(parallel, (1 - t) * z0 + t * z1, spherical)


def interpolation_grid(model: nn.Module, prior: Any, path: str | Path, rows: int = 8, steps: int = 10,
                       seed: int = 0) -> None:
    """A PNG grid (``rows`` x ``steps``): each row walks the latent path between two prior samples.

    The path is spherical for a normal prior and straight for a uniform one (whose cube has no such
    shell). Only the noise moves: any class or code part of the prior's vector (conditional GANs,
    InfoGAN) stays that of the row's first sample, so a row shows one class changing style.
    """
    gen = torch.Generator().manual_seed(seed)  # private RNG: the caller's streams stay untouched
    v0, v1 = prior.sample(rows, gen)[:, None], prior.sample(rows, gen)[:, None]  # (rows, 1, D)
    k = getattr(prior, "z_dim", v0.shape[-1])
    z0, z1 = v0[..., :k], v1[..., :k]
    t = torch.linspace(0, 1, steps)[None, :, None]  # (1, steps, 1)
    z = (1 - t) * z0 + t * z1 if getattr(prior, "kind", "normal") == "uniform" else slerp(z0, z1, t)
    v = torch.cat([z, v0[..., k:].expand(rows, steps, v0.shape[-1] - k)], dim=-1)
    save_image_grid(decode(model, v.reshape(rows * steps, -1)), path, nrow=steps)


def class_grid(model: nn.Module, prior: Any, path: str | Path, per_class: int = 10, seed: int = 0) -> None:
    """A PNG grid of a conditional generator (a prior with ``classes``): row k is class k.

    Every row uses the same noise (and continuous codes), so a column holds the style fixed and only
    the class changes.
    """
    if not getattr(prior, "classes", 0):
        raise ValueError("class_grid needs a prior with classes (a conditional model)")
    gen = torch.Generator().manual_seed(seed)
    base = prior.sample(per_class, gen).repeat(prior.classes, 1)  # rows are copies of one batch
    labels = torch.arange(prior.classes).repeat_interleave(per_class)
    k = prior.z_dim
    base[:, k:k + prior.classes] = F.one_hot(labels, prior.classes).to(base.dtype)
    save_image_grid(decode(model, base), path, nrow=per_class)


def training_gif(samples_dir: str | Path, path: str | Path, duration_ms: int = 400) -> Path | None:
    """An animated GIF of a run's ``samples/step_*.png`` grids in step order, each frame labelled with its step.

    Unreadable files are skipped; with fewer than two frames nothing is written and None is returned.
    """
    from PIL import Image, ImageDraw

    found = [(int(m.group(1)), p) for p in Path(samples_dir).glob("step_*.png") if (m := _STEP_FILE.fullmatch(p.name))]
    frames = []
    for step, file in sorted(found):  # by the number: step_100 comes after step_20 at any zero padding
        try:
            with Image.open(file) as im:
                frame = im.convert("RGB")  # loads the pixels; grids are L (grey) or RGB
        except (OSError, ValueError):  # a truncated or foreign file should not sink the whole GIF
            continue
        draw = ImageDraw.Draw(frame)
        label = f"step {step}"
        draw.rectangle(draw.textbbox((2, 2), label), fill=(0, 0, 0))  # dark box: legible on any grid
        draw.text((2, 2), label, fill=(255, 255, 255))
        frames.append(frame)
    if len(frames) < 2:
        return None
    atomic_write(path, lambda tmp: frames[0].save(tmp, format="GIF", save_all=True, append_images=frames[1:],
                                                  duration=duration_ms, loop=0))
    return Path(path)


def caption_grid(images: torch.Tensor, captions: list[str], path: str | Path, scale: int = 2,
                 label_width: int = 300) -> None:
    """A PNG grid of a text-to-image generator's samples: one row per caption (its text on the left),
    ``len(images) // len(captions)`` images per row, caption-major as ``sample(captions=...)`` returns them."""
    from PIL import Image, ImageDraw

    from ganforge.report.plots import image_grid

    per = len(images) // max(1, len(captions))
    if per * len(captions) != len(images) or per == 0:
        raise ValueError(f"{len(images)} images do not split into rows of {len(captions)} captions")
    arr = image_grid(images, nrow=per)
    grid = Image.fromarray(arr[:, :, 0] if arr.shape[2] == 1 else arr).convert("RGB")
    grid = grid.resize((grid.width * scale, grid.height * scale), Image.NEAREST)
    canvas = Image.new("RGB", (label_width + grid.width, grid.height), "white")
    canvas.paste(grid, (label_width, 0))
    draw = ImageDraw.Draw(canvas)
    row_h = grid.height / len(captions)
    for k, text in enumerate(captions):
        # Pillow's default bitmap font has no wrapping: cut to the label column (about 6 px a character).
        line = text if len(text) * 6 < label_width - 8 else text[:(label_width - 8) // 6 - 3] + "..."
        # The bitmap font covers Latin-1 only: other characters (any unicode a user types) show as "?".
        line = line.encode("latin-1", "replace").decode("latin-1")
        draw.text((4, k * row_h + row_h / 2 - 5), line, fill="black")
    atomic_write(path, lambda tmp: canvas.save(tmp, format="PNG"))
