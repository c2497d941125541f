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
    """Losses, D(x) / D(G(z)) (or a VAE's terms), and any image or text metric over training, from ``log.jsonl``."""
    rows = [json.loads(line) for line in Path(log_path).read_text().splitlines() if line.strip()]
    steps_rows = [r for r in rows if "g_loss" in r or "mle_loss" in r]
    if not steps_rows:
        return

    def has(key: str, data: list[dict[str, Any]]) -> bool:
        return any(key in r for r in data)

    panels = [("losses", [("d_loss", "d_loss"), ("g_loss", "g_loss"), ("mle_loss", "MLE (nats per token)")],
               steps_rows)]
    if has("d_real", steps_rows):
        panels.append(("discriminator outputs", [("d_real", "D(x)"), ("d_fake", "D(G(z))")], steps_rows))
    elif has("kl", steps_rows):
        panels.append(("VAE terms (nats per image)", [("recon", "reconstruction"), ("kl", "KL")], steps_rows))
    evals = [r for r in rows if "eval/fid" in r]
    if evals:
        panels.append(("FID (digit features, held-out)", [("eval/fid", "FID")], evals))
    nlls = [r for r in rows if "eval/nll_test" in r or "eval/nll_oracle" in r]
    if nlls:
        panels.append(("NLL per token (nats)", [("eval/nll_oracle", "NLL-oracle"), ("eval/nll_test", "NLL-test")],
                       nlls))
    bleus = [r for r in rows if "eval/bleu5" in r]
    if bleus:
        panels.append(("BLEU (whole test set)", [("eval/bleu2", "BLEU-2"), ("eval/bleu5", "BLEU-5"),
                                                    ("eval/self_bleu2", "Self-BLEU-2")], bleus))
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 3.2), squeeze=False)
    for ax, (title, keys, data) in zip(axes[0], panels, strict=True):
        for key, label in keys:
            if has(key, data):
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


def plot_table_columns(real: Any, synth: Any, kinds: dict[str, str], path: str | Path, scores: dict[str, float]
                       | None = None, max_columns: int = 16) -> None:
    """Real against synthetic, column by column: overlaid histograms for numbers and datetimes,
    side-by-side bars of the commonest categories for the rest; each panel titled with its
    Column Shapes score when ``scores`` has it. ``real`` and ``synth`` are DataFrames."""
    import pandas as pd

    names = list(kinds)[:max_columns]
    cols = min(4, len(names)) or 1
    rows = (len(names) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols, 2.6 * rows), squeeze=False)
    for ax, name in zip(axes.flat, names, strict=False):
        r, s = real[name], synth[name]
        if kinds[name] in ("numerical", "datetime"):
            rv = pd.to_numeric(r if kinds[name] == "numerical" else pd.to_datetime(r).astype("int64"),
                               errors="coerce").dropna().to_numpy(float)
            sv = pd.to_numeric(s if kinds[name] == "numerical" else pd.to_datetime(s).astype("int64"),
                               errors="coerce").dropna().to_numpy(float)
            lo, hi = (np.quantile(rv, [0.005, 0.995]) if len(rv) else (0.0, 1.0))
            bins = np.linspace(lo, hi if hi > lo else lo + 1, 40)
            ax.hist(rv, bins=bins, density=True, alpha=0.5, label="real", color="tab:blue")
            ax.hist(sv, bins=bins, density=True, alpha=0.5, label="synthetic", color="tab:orange")
            ax.set_yticks([])
        else:
            top = r.astype(str).value_counts(normalize=True).head(10)
            sf = s.astype(str).value_counts(normalize=True).reindex(top.index).fillna(0)
            pos = np.arange(len(top))
            ax.bar(pos - 0.2, top.to_numpy(), 0.4, label="real", color="tab:blue")
            ax.bar(pos + 0.2, sf.to_numpy(), 0.4, label="synthetic", color="tab:orange")
            ax.set_xticks(pos, [t[:10] for t in top.index], rotation=60, fontsize=6)
        title = name if scores is None or name not in scores else f"{name} ({scores[name]:.3f})"
        ax.set_title(title, fontsize=8)
    for ax in list(axes.flat)[len(names):]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=7)
    fig.tight_layout()
    save_figure(fig, path)
    plt.close(fig)


# The two quality-diversity views of text models: (x key, y key, x label, y label). Lower-left is
# better for NLL-oracle against NLL-test; on real text, better is high BLEU at low Self-BLEU.
TEXT_CURVES = (("self_bleu5", "bleu5", "Self-BLEU-5 (lower = more diverse)", "BLEU-5 against the test set (quality)"),
               ("nll_test", "nll_oracle", "NLL-test (lower = better coverage)", "NLL-oracle (lower = better quality)"))


def plot_text_curves(curves: dict[str, list[dict[str, Any]]], path: str | Path, title: str = "",
                     marks: dict[str, dict[str, float]] | None = None) -> None:
    """Quality against diversity over softmax temperatures, one line per model, each point
    labelled with its temperature (Caccia et al. 2018's view of text GANs against MLE); ``marks``
    are single reference points (the training data scored the same way), drawn as stars."""
    points = [p for pts in curves.values() for p in pts]
    views = [v for v in TEXT_CURVES if any(v[0] in p and v[1] in p for p in points)]
    if not views:
        raise ValueError("no curve to plot: the points hold neither BLEU-5/Self-BLEU-5 nor NLL-oracle/NLL-test")
    fig, axes = plt.subplots(1, len(views), figsize=(5.5 * len(views), 4.5), squeeze=False)
    for ax, (xk, yk, xl, yl) in zip(axes[0], views, strict=True):
        for name, pts in curves.items():
            pts = [p for p in pts if xk in p and yk in p]
            if not pts:
                continue
            xs, ys = [p[xk] for p in pts], [p[yk] for p in pts]
            (line,) = ax.plot(xs, ys, marker="o", ms=4, label=name)
            for p, x, y in zip(pts, xs, ys, strict=True):
                ax.annotate(f"{p.get('temperature', '')}", (x, y), fontsize=6, color=line.get_color(),
                            xytext=(3, 3), textcoords="offset points")
        for label, p in (marks or {}).items():
            if xk in p and yk in p:
                ax.plot([p[xk]], [p[yk]], marker="*", ms=12, ls="none", color="black", label=label)
        ax.set_xlabel(xl)
        ax.set_ylabel(yl)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    if title:
        fig.suptitle(title, fontsize=10)
    save_figure(fig, path)
