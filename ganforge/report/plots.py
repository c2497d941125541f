"""Pictures of a run: samples against the data, training curves."""
from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # no display on servers; must precede pyplot
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from ganforge.io import atomic_write  # noqa: E402


def save_figure(fig: Any, path: str | Path, dpi: int = 110) -> None:
    """Save a matplotlib figure atomically as PNG and close it."""
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=dpi, bbox_inches="tight"))
    plt.close(fig)


def plot_samples_2d(samples: torch.Tensor, modes: torch.Tensor | None, path: str | Path, title: str = "") -> None:
    """Scatter of generated 2-D samples with the true modes marked."""
    s = samples.detach().cpu().numpy()
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    ax.scatter(s[:, 0], s[:, 1], s=2, alpha=0.4, color="tab:green", label="G(z)")
    if modes is not None:
        m = modes.cpu().numpy()
        ax.scatter(m[:, 0], m[:, 1], s=40, marker="x", color="black", label="modes")
        pad = 0.25 * (m.max() - m.min() + 1)
        ax.set_xlim(m[:, 0].min() - pad, m[:, 0].max() + pad)
        ax.set_ylim(m[:, 1].min() - pad, m[:, 1].max() + pad)
    ax.set_aspect("equal")
    ax.set_title(title, fontsize=9)
    ax.legend(loc="upper right", fontsize=7)
    save_figure(fig, path)


def plot_samples_1d(samples: torch.Tensor, density: Callable[[torch.Tensor], torch.Tensor] | None,
                    path: str | Path, title: str = "") -> None:
    """Histogram of generated 1-D samples over the true density."""
    s = samples.detach().cpu().flatten().numpy()
    fig, ax = plt.subplots(figsize=(6, 3))
    ax.hist(s, bins=80, density=True, alpha=0.5, color="tab:green", label="p_g (samples)")
    if density is not None:
        lo, hi = np.percentile(s, [0.5, 99.5])
        xs = torch.linspace(min(lo, -6), max(hi, 6), 600)[:, None]
        ax.plot(xs.numpy(), density(xs).numpy(), color="black", label="p_data")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)
    save_figure(fig, path)


def plot_curves(log_path: str | Path, path: str | Path) -> None:
    """Losses, D(x) / D(G(z)) (or a VAE's terms) and any image metric over training, from ``log.jsonl``."""
    rows = [json.loads(line) for line in Path(log_path).read_text().splitlines() if line.strip()]
    steps_rows = [r for r in rows if "g_loss" in r]
    if not steps_rows:
        return
    panels = [("losses", [("d_loss", "d_loss"), ("g_loss", "g_loss")], steps_rows)]
    if "d_real" in steps_rows[0]:
        panels.append(("discriminator outputs", [("d_real", "D(x)"), ("d_fake", "D(G(z))")], steps_rows))
    elif "kl" in steps_rows[0]:
        panels.append(("VAE terms (nats per image)", [("recon", "reconstruction"), ("kl", "KL")], steps_rows))
    evals = [r for r in rows if "eval/fid" in r]
    if evals:
        panels.append(("FID (digit features, held-out)", [("eval/fid", "FID")], evals))
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 3.2), squeeze=False)
    for ax, (title, keys, data) in zip(axes[0], panels, strict=True):
        for key, label in keys:
            if key in data[0]:
                ax.plot([r["step"] for r in data], [r.get(key, np.nan) for r in data], label=label, lw=0.8,
                        marker="o" if len(data) < 30 else None)
        ax.set_xlabel("step")
        ax.set_title(title, fontsize=9)
        ax.legend(fontsize=7)
    save_figure(fig, path)


def image_grid(images: torch.Tensor, nrow: int = 8, pad: int = 2) -> np.ndarray:
    """Images (N, C, H, W) in [-1, 1] -> one uint8 grid (H', W', C) with ``nrow`` images per row."""
    x = ((images.detach().float().cpu().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    n, c, h, w = x.shape
    ncol = min(nrow, n)
    rows = -(-n // ncol)
    grid = torch.full((c, rows * (h + pad) + pad, ncol * (w + pad) + pad), 255, dtype=torch.uint8)
    for i in range(n):
        r, q = divmod(i, ncol)
        grid[:, pad + r * (h + pad): pad + r * (h + pad) + h, pad + q * (w + pad): pad + q * (w + pad) + w] = x[i]
    return grid.permute(1, 2, 0).numpy()


def save_image_grid(images: torch.Tensor, path: str | Path, nrow: int = 8, scale: int = 2) -> None:
    """Write a PNG grid of images in [-1, 1] (atomically), enlarged ``scale`` times for viewing."""
    from PIL import Image

    arr = image_grid(images, nrow)
    img = Image.fromarray(arr[:, :, 0] if arr.shape[2] == 1 else arr)
    if scale > 1:
        img = img.resize((img.width * scale, img.height * scale), Image.NEAREST)
    atomic_write(path, lambda tmp: img.save(tmp, format="PNG"))


def save_images(images: torch.Tensor, folder: str | Path) -> None:
    """One PNG per image (``000000.png`` ...), each written atomically."""
    from PIL import Image

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    x = ((images.detach().float().cpu().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    for i, arr in enumerate(x):
        img = Image.fromarray(arr[:, :, 0] if arr.shape[2] == 1 else arr)
        atomic_write(folder / f"{i:06d}.png", lambda tmp, img=img: img.save(tmp, format="PNG"))
