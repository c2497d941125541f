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

from ganforge.training.checkpoint import atomic_write  # noqa: E402


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
    """Losses and D(x) / D(G(z)) over training, from ``log.jsonl``."""
    rows = [json.loads(line) for line in Path(log_path).read_text().splitlines() if line.strip()]
    rows = [r for r in rows if "g_loss" in r]
    if not rows:
        return
    steps = [r["step"] for r in rows]
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.2))
    for key in ("d_loss", "g_loss"):
        if key in rows[0]:
            a.plot(steps, [r.get(key, np.nan) for r in rows], label=key, lw=0.8)
    a.set_xlabel("step")
    a.set_title("losses", fontsize=9)
    a.legend(fontsize=7)
    for key, label in (("d_real", "D(x)"), ("d_fake", "D(G(z))")):
        if key in rows[0]:
            b.plot(steps, [r.get(key, np.nan) for r in rows], label=label, lw=0.8)
    b.set_xlabel("step")
    b.set_title("discriminator outputs", fontsize=9)
    b.legend(fontsize=7)
    save_figure(fig, path)
