"""The theory of Goodfellow et al. (2014) made visible on 1-D data.

Three parts, all written to one folder by :func:`run_theory_demo` (``ganforge demo theory --out DIR``):

1. **Figure 1 of the paper.** A small 1-D GAN (p_data = N(4, 0.5^2), z ~ N(0, 1), MLP G and D) is
   trained with ganforge's own :class:`~ganforge.training.trainer.Trainer`; snapshots show p_data
   (black dotted), p_g (green, a kernel density estimate from many samples), D(x) (blue dashed) and
   the mapping x = G(z) at the start, early, mid-way and at the end of training
   (``theory_figure.png``).
2. **Proposition 1.** With G frozen to an affine map x = a z + b, z ~ N(0, 1) (so p_g is a known
   Gaussian), a discriminator network trained to convergence on the BCE loss approaches
   D*(x) = p_data(x) / (p_data(x) + p_g(x)); we report max |D - D*| where the densities matter
   (``theory_dstar.png``).
3. **Theorem 1.** V(G, D) = E_pdata[log D] + E_pg[log(1 - D)] is integrated numerically for the trained
   D and for the analytic D*, and compared with -log 4 + 2 JSD(p_data || p_g), itself integrated
   independently from the two densities.

The numbers go to ``theory.json``. The integration helpers are plain NumPy functions of densities on
a grid, so they can be tested on their own.
"""
from __future__ import annotations

import json
import math
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy.special import rel_entr
from scipy.stats import gaussian_kde, norm
from torch import Tensor, nn

from ganforge.config import Config, DataConfig, NetConfig
from ganforge.data.toy import gaussian1d
from ganforge.generator import sample, sampling_mode
from ganforge.io import atomic_write_text
from ganforge.nn import build_discriminator
from ganforge.training.assemble import assemble
from ganforge.training.trainer import GANParts, Trainer

# p_data, shared by the figure and the checks; p_g of the frozen generator overlaps it substantially
# but differs in both location and spread, so D* is neither constant nor a step.
DATA_MEAN, DATA_STD = 4.0, 0.5
FROZEN_G_MEAN, FROZEN_G_STD = 3.5, 0.8

# The "densities are not negligible" region: where p_data + p_g exceeds this fraction of its maximum.
REGION_FRACTION = 0.01
TARGET_D_ERROR = 0.05  # max |D - D*| over the region
TARGET_V_GAP = 0.02  # nats, |V(G, D_trained) - (-log 4 + 2 JSD)|

# Figure 1: a short GAN run and the steps at which it is photographed (start, early, mid, end). The
# game settles within a few hundred iterations here; the early and mid panels catch D separating the
# two distributions (the paper's panels b and c) before p_g has caught up.
GAN_STEPS = 1500
GAN_SNAPSHOTS = (0, 40, 100, GAN_STEPS)
GAN_BATCH = 256
GAN_D_STEPS = 2  # k of Algorithm 1: D stays ahead of G, so D(x) in the panels is close to D* for p_g
# G's output starts here rather than near 0: p_g begins beside p_data, inside one readable x-range,
# as in the paper's panel (a).
GAN_G_START = 2.0

# Proposition 1: D trained against the frozen G on fresh large minibatches with a decaying rate.
D_STEPS = 3000
D_BATCH = 2048
D_LR = 3e-3
D_HIDDEN = [64, 64]

# The plotting range of x and the fine grid on which everything is integrated.
PLOT_RANGE = (-1.0, 7.0)
GRID_POINTS = 20001


# --------------------------------------------------------------------------------------------
# Numerical integration on a grid (pure NumPy; unit-tested in tests/unit/test_theory_math.py)


def integrate(y: np.ndarray, x: np.ndarray) -> float:
    """The trapezoid rule: accurate to ~1e-9 for smooth densities on a fine, wide grid."""
    return float(np.trapezoid(y, x))


def optimal_discriminator(p_data: np.ndarray, p_g: np.ndarray) -> np.ndarray:
    """Proposition 1: D*(x) = p_data(x) / (p_data(x) + p_g(x)); 1/2 where both densities vanish.

    Where p_data + p_g = 0 every value of D is optimal (the point carries no weight in V), so 1/2 is
    as good as any and keeps the output finite.
    """
    total = p_data + p_g
    return np.divide(p_data, total, out=np.full_like(total, 0.5, dtype=float), where=total > 0)


def optimal_logit(log_p_data: np.ndarray, log_p_g: np.ndarray) -> np.ndarray:
    """logit D*(x) = log p_data(x) - log p_g(x), computed from log densities so tails stay finite."""
    return log_p_data - log_p_g


def log_sigmoid(logit: np.ndarray) -> np.ndarray:
    """log sigmoid(l) = -log(1 + e^-l), stable for large |l| (D near 0 or 1 in the tails)."""
    return -np.logaddexp(0.0, -logit)


def kl_divergence(p: np.ndarray, q: np.ndarray, x: np.ndarray) -> float:
    """KL(p || q) = int p log(p / q) dx, with 0 log 0 = 0 (scipy's ``rel_entr``)."""
    return integrate(rel_entr(p, q), x)


def jensen_shannon(p: np.ndarray, q: np.ndarray, x: np.ndarray) -> float:
    """JSD(p || q) = 1/2 KL(p || m) + 1/2 KL(q || m) with m = (p + q) / 2; between 0 and log 2.

    KL(p || m) is integrated as int p log(p / (p + q)) + log 2 int p: halving a subnormal density in
    a far tail rounds m to 0 and would turn a negligible term into p log(p / 0) = inf.
    """
    total = p + q
    kl_pm = kl_divergence(p, total, x) + math.log(2.0) * integrate(p, x)
    kl_qm = kl_divergence(q, total, x) + math.log(2.0) * integrate(q, x)
    return 0.5 * kl_pm + 0.5 * kl_qm


def value_function(x: np.ndarray, p_data: np.ndarray, p_g: np.ndarray, d_logit: np.ndarray) -> float:
    """V(G, D) = int p_data log D + p_g log(1 - D) dx, with D = sigmoid(``d_logit``).

    Working from logits keeps log D and log(1 - D) finite where D rounds to 0 or 1; a point where a
    density is exactly 0 contributes 0 whatever D is (0 log 0 = 0).
    """
    with np.errstate(invalid="ignore"):
        real = np.where(p_data > 0, p_data * log_sigmoid(d_logit), 0.0)
        fake = np.where(p_g > 0, p_g * log_sigmoid(-d_logit), 0.0)
    return integrate(real + fake, x)


def significant_region(x: np.ndarray, p_data: np.ndarray, p_g: np.ndarray,
                       fraction: float = REGION_FRACTION) -> tuple[np.ndarray, float, float]:
    """Where p_data + p_g > ``fraction`` of its maximum: a mask and its outer bounds (lo, hi).

    Outside this region a discriminator sees almost no samples, so it cannot learn D* there, and
    what it outputs barely moves V (the densities weigh it).
    """
    total = p_data + p_g
    mask = total > fraction * total.max()
    inside = x[mask]
    return mask, float(inside.min()), float(inside.max())


# --------------------------------------------------------------------------------------------
# Networks and callbacks of the demo


class AffineGenerator(nn.Module):
    """A frozen generator x = a z + b: with z ~ N(0, 1), p_g = N(b, a^2) is known in closed form."""

    def __init__(self, scale: float, shift: float) -> None:
        super().__init__()
        # Parameters (not buffers) so the optimizer that ``assemble`` builds for G is non-empty;
        # requires_grad is off, so they never move.
        self.scale = nn.Parameter(torch.tensor(float(scale)), requires_grad=False)
        self.shift = nn.Parameter(torch.tensor(float(shift)), requires_grad=False)

    def forward(self, z: Tensor, c: Tensor | None = None) -> Tensor:
        return self.scale * z + self.shift

    def log_prob(self, x: np.ndarray) -> np.ndarray:
        """The exact log density of G(z) for z ~ N(0, 1)."""
        return norm.logpdf(x, float(self.shift), abs(float(self.scale)))


class Standardize(nn.Module):
    """Feeds ``net`` with (x - center) / scale. The data sit near x = 4, while a freshly initialized
    layer puts its tanh transitions and ReLU kinks within about 1 of x = 0: centring moves them to
    where D has something to learn, so D fits faster and more evenly."""

    def __init__(self, net: nn.Module, center: float, scale: float) -> None:
        super().__init__()
        self.net, self.center, self.scale = net, center, scale

    def forward(self, x: Tensor, c: Tensor | None = None) -> Tensor:
        return self.net((x - self.center) / self.scale)


class _Progress:
    """A named tqdm bar over a trainer's iterations (ganforge's Logger would also write a log)."""

    def __init__(self, desc: str, total: int, enabled: bool) -> None:
        self.desc, self.total, self.enabled = desc, total, enabled
        self.bar: Any = None

    def on_train_start(self, trainer: Trainer) -> None:
        if self.enabled:
            from tqdm.auto import tqdm
            self.bar = tqdm(total=self.total, desc=self.desc, dynamic_ncols=True, leave=True)

    def on_step_end(self, trainer: Trainer, out: dict[str, Tensor]) -> None:
        if self.bar is None:
            return
        if trainer.step_num % 50 == 0:
            shown = {k: f"{float(v):.3g}" for k, v in out.items() if k in ("d_loss", "d_real", "d_fake")}
            self.bar.set_postfix(shown, refresh=False)
        self.bar.update(1)

    def on_train_end(self, trainer: Trainer) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


class _LRDecay:
    """Cosine decay of an optimizer's learning rate to 1% of its start: large steps first, then
    averaging out the minibatch noise so D settles on D* instead of jittering around it."""

    def __init__(self, opt: torch.optim.Optimizer, total: int) -> None:
        def factor(step: int) -> float:
            return 0.01 + 0.99 * 0.5 * (1.0 + math.cos(math.pi * min(step, total) / total))

        self.sched = torch.optim.lr_scheduler.LambdaLR(opt, factor)

    def on_step_end(self, trainer: Trainer, out: dict[str, Tensor]) -> None:
        self.sched.step()


def d_probability(d: nn.Module, x: np.ndarray) -> np.ndarray:
    """D(x) = sigmoid(logit) on a grid, in eval mode."""
    return 1.0 / (1.0 + np.exp(-d_logits(d, x)))


def d_logits(d: nn.Module, x: np.ndarray) -> np.ndarray:
    """D's raw outputs (logits) on a grid of x, in eval mode, as float64."""
    with sampling_mode(d):
        return d(torch.as_tensor(x, dtype=torch.float32)[:, None]).double().numpy()


class _Snapshots:
    """Photographs the GAN at chosen steps: D(x) on a grid, p_g as a KDE, and z -> x = G(z)."""

    def __init__(self, steps: tuple[int, ...], parts: GANParts, xs: np.ndarray, n_samples: int = 20000) -> None:
        self.steps, self.parts, self.xs, self.n = set(steps), parts, xs, n_samples
        self.frames: list[dict[str, Any]] = []

    def take(self, step: int) -> None:
        g, d = self.parts.generator, self.parts.discriminator
        assert d is not None
        # A private seed for sampling, so photographing never perturbs the training RNG streams.
        samples = sample(g, self.parts.prior, self.n, seed=1234).double().numpy().ravel()
        # z at the mid-quantiles of N(0, 1): each line of the z -> x panel carries 1/20 of the mass.
        z = norm.ppf((np.arange(20) + 0.5) / 20)
        with sampling_mode(g):
            gz = g(torch.as_tensor(z, dtype=torch.float32)[:, None]).double().numpy().ravel()
        self.frames.append({"step": step, "d": d_probability(d, self.xs), "p_g": _kde(samples, self.xs),
                            "z": z, "g_of_z": gz, "g_mean": float(samples.mean()),
                            "g_std": float(samples.std())})

    def on_train_start(self, trainer: Trainer) -> None:
        if 0 in self.steps:
            self.take(0)

    def on_step_end(self, trainer: Trainer, out: dict[str, Tensor]) -> None:
        if trainer.step_num in self.steps:
            self.take(trainer.step_num)


def _kde(samples: np.ndarray, xs: np.ndarray) -> np.ndarray:
    """p_g estimated from samples: a Gaussian KDE (Scott's bandwidth), or a spike when G is constant."""
    if samples.std() < 1e-6:
        # A collapsed G has no density; draw a narrow bump so the panel still shows where it is.
        return norm.pdf(xs, samples.mean(), 1e-2)
    return gaussian_kde(samples)(xs)


# --------------------------------------------------------------------------------------------
# The three parts


def _gan_config(seed: int) -> Config:
    """A small 1-D GAN in the spirit of the paper's Figure 1, chosen by name like any other run."""
    cfg = Config(preset="theory-figure1", description="1-D GAN of the original paper's Figure 1")
    cfg.data = DataConfig("gaussian1d", {"mean": DATA_MEAN, "std": DATA_STD})
    cfg.model.z_dim = 1
    # Normal z rather than the paper's uniform z: an (unbounded, piecewise-linear) G can then match
    # p_data exactly, so the last panel reaches the paper's (d), p_g = p_data and D = 1/2. A bounded
    # G fed uniform z truncates p_data's tails, where D* = 1.
    cfg.model.noise = "normal"
    # Non-saturating G loss: at the start D rejects G's samples confidently, where the minimax loss
    # gives G almost no gradient (the paper's own advice).
    cfg.model.loss.name = "nonsaturating"
    cfg.model.generator = NetConfig(hidden=[32, 32], activation="leaky_relu", output="linear")
    cfg.model.discriminator = NetConfig(hidden=[32, 32], activation="leaky_relu")
    cfg.optim_g.lr, cfg.optim_d.lr = 5e-4, 2e-3
    cfg.optim_g.betas = cfg.optim_d.betas = [0.5, 0.999]
    cfg.train.steps, cfg.train.batch_size, cfg.train.seed = GAN_STEPS, GAN_BATCH, seed
    cfg.train.d_steps = GAN_D_STEPS
    cfg.train.progress = cfg.train.tensorboard = False
    return cfg


def train_figure_gan(seed: int, xs: np.ndarray, progress: bool) -> list[dict[str, Any]]:
    """Train the 1-D GAN with ganforge's Trainer and return the snapshots of :class:`_Snapshots`."""
    cfg = _gan_config(seed)
    torch.manual_seed(seed)
    d = Standardize(build_discriminator(cfg.model.discriminator, (1,)), center=DATA_MEAN, scale=1.0)
    parts = assemble(cfg, discriminator=d)
    with torch.no_grad():
        parts.generator.out.bias.add_(GAN_G_START)
    snaps = _Snapshots(GAN_SNAPSHOTS, parts, xs)
    # Both rates decay so the game settles at the end instead of circling its equilibrium.
    decay = [_LRDecay(opt, GAN_STEPS) for opt in (parts.opt_g, parts.opt_d) if opt is not None]
    Trainer(parts, cfg.train, [snaps, *decay, _Progress("figure 1: 1-D GAN", GAN_STEPS, progress)]).fit()
    return snaps.frames


def train_discriminator(seed: int, progress: bool) -> tuple[nn.Module, AffineGenerator, dict[str, Any]]:
    """Train D against a frozen affine G (Algorithm 1's inner loop only: g_steps = 0)."""
    cfg = Config(preset="theory-prop1")
    cfg.model.z_dim, cfg.model.noise, cfg.model.loss.name = 1, "normal", "minimax"  # D's loss: bce_d_loss
    cfg.model.discriminator = NetConfig(hidden=list(D_HIDDEN), activation="tanh")
    cfg.optim_d.lr, cfg.optim_d.betas = D_LR, [0.9, 0.999]
    cfg.train.steps, cfg.train.batch_size, cfg.train.g_steps, cfg.train.seed = D_STEPS, D_BATCH, 0, seed
    torch.manual_seed(seed + 100)
    g = AffineGenerator(FROZEN_G_STD, FROZEN_G_MEAN)
    d = Standardize(build_discriminator(cfg.model.discriminator, (1,)), center=DATA_MEAN, scale=1.0)
    parts = assemble(cfg, gaussian1d(DATA_MEAN, DATA_STD), generator=g, discriminator=d)
    callbacks = [_LRDecay(parts.opt_d, D_STEPS), _Progress("proposition 1: D -> D*", D_STEPS, progress)]
    Trainer(parts, cfg.train, callbacks).fit()
    info = {"steps": D_STEPS, "batch_size": D_BATCH, "optimizer": "adam", "lr": D_LR,
            "lr_schedule": "cosine to 1%", "hidden": list(D_HIDDEN), "activation": "tanh",
            "loss": "bce_d_loss (fresh real and fake minibatches every step)"}
    return d, g, info


def check_theory(d: nn.Module, g: AffineGenerator) -> dict[str, Any]:
    """Proposition 1 and Theorem 1 on a fine grid for a trained D against the frozen G."""
    lo = min(DATA_MEAN - 12 * DATA_STD, FROZEN_G_MEAN - 12 * FROZEN_G_STD)
    hi = max(DATA_MEAN + 12 * DATA_STD, FROZEN_G_MEAN + 12 * FROZEN_G_STD)
    x = np.linspace(lo, hi, GRID_POINTS)
    log_p, log_q = norm.logpdf(x, DATA_MEAN, DATA_STD), g.log_prob(x)
    p, q = np.exp(log_p), np.exp(log_q)
    mask, r_lo, r_hi = significant_region(x, p, q)
    d_star = optimal_discriminator(p, q)
    logit = d_logits(d, x)
    d_err = np.abs(1.0 / (1.0 + np.exp(-logit)) - d_star)
    jsd = jensen_shannon(p, q, x)
    bound = -math.log(4.0) + 2.0 * jsd
    v_trained = value_function(x, p, q, logit)
    v_star = value_function(x, p, q, optimal_logit(log_p, log_q))
    worst = int(np.argmax(np.where(mask, d_err, -1.0)))
    return {
        "max_abs_d_error": float(d_err[mask].max()),
        "max_abs_d_error_at": float(x[worst]),
        "mean_abs_d_error": float(d_err[mask].mean()),
        "v_minus_jsd_gap": abs(v_trained - bound),
        "v_dstar_minus_jsd_gap": abs(v_star - bound),
        "v_trained": v_trained,
        "v_dstar": v_star,
        "jsd": jsd,
        "minus_log4_plus_2jsd": bound,
        "region": {"lo": r_lo, "hi": r_hi, "fraction_of_max": REGION_FRACTION,
                   "definition": "x where p_data(x) + p_g(x) > fraction_of_max * max_x (p_data + p_g)"},
        "grid": {"lo": lo, "hi": hi, "points": GRID_POINTS, "rule": "trapezoid"},
        "_curves": {"x": x, "p_data": p, "p_g": q, "d_star": d_star, "d": 1.0 / (1.0 + np.exp(-logit))},
    }


# --------------------------------------------------------------------------------------------
# Figures


def plot_figure1(frames: list[dict[str, Any]], xs: np.ndarray, path: Path) -> None:
    """The paper's Figure 1 from snapshots: densities and D above, the map z -> x = G(z) below."""
    import matplotlib.pyplot as plt

    from ganforge.report.plots import save_figure

    p_data = norm.pdf(xs, DATA_MEAN, DATA_STD)
    n = len(frames)
    fig, axes = plt.subplots(2, n, figsize=(3.6 * n, 4.4), sharex=True,
                             gridspec_kw={"height_ratios": [3.2, 1.0], "hspace": 0.08})
    axes = np.asarray(axes).reshape(2, n)
    y_top = 1.25 * max(1.0, p_data.max())
    labels = ["start", "early", "mid", "end"] if n == 4 else [""] * n
    for i, (f, label) in enumerate(zip(frames, labels, strict=True)):
        ax, low = axes[0, i], axes[1, i]
        ax.plot(xs, p_data, ":", color="black", lw=1.8, label=r"$p_{data}$")
        peak = float(f["p_g"].max())
        ax.plot(xs, np.minimum(f["p_g"], y_top), "-", color="tab:green", lw=1.6, label=r"$p_g$ (KDE of G(z))")
        if peak > y_top:  # a nearly collapsed G at the start: show its peak height rather than rescale
            ax.text(0.98, 0.97, f"p_g peak {peak:.1f}\n(clipped)", transform=ax.transAxes, ha="right",
                    va="top", fontsize=7, color="tab:green")
        ax.plot(xs, f["d"], "--", color="tab:blue", lw=1.6, label=r"$D(x)$")
        ax.axhline(0.5, color="grey", lw=0.5, alpha=0.5)
        ax.set_ylim(0, y_top)
        ax.set_title(f"({chr(ord('a') + i)}) {label}: step {f['step']}\n"
                     f"p_g mean {f['g_mean']:.2f}, std {f['g_std']:.2f}", fontsize=9)
        if i == 0:
            ax.set_ylabel("density  /  D(x)")
            ax.legend(loc="upper left", fontsize=7, framealpha=0.9)
        # z on the lower line (z in [-3, 3] spread over the plot's width); each line carries the same
        # probability mass and ends at G(z) on the upper line, so where the upper ends crowd, p_g is high.
        mid, half = sum(PLOT_RANGE) / 2.0, (PLOT_RANGE[1] - PLOT_RANGE[0]) / 2.0
        z_pos = mid + f["z"] / 3.0 * half
        x_end = np.clip(f["g_of_z"], *PLOT_RANGE)
        for a, b in zip(z_pos, x_end, strict=True):
            low.plot([a, b], [0.0, 1.0], color="tab:green", lw=0.7, alpha=0.8)
        low.axhline(0.0, color="black", lw=0.8)
        low.axhline(1.0, color="black", lw=0.8)
        low.set_ylim(-0.15, 1.15)
        low.set_yticks([0.0, 1.0])
        low.set_yticklabels(["z", "x"] if i == 0 else ["", ""])
        low.set_xlabel("x  (lower line: z, rescaled)", fontsize=8)
        low.set_xlim(*PLOT_RANGE)
        if i == 0:
            low.set_ylabel("x = G(z)", fontsize=8)
    fig.suptitle(f"Goodfellow et al. (2014), Figure 1 on 1-D data: p_data = N({DATA_MEAN:g}, {DATA_STD:g}²) "
                 "(black dotted), p_g (green), D(x) (blue dashed) during training;\n"
                 "below: x = G(z) for 20 equal-mass quantiles of z ~ N(0, 1) (lower line z, upper line x). "
                 "Training drives p_g toward p_data, where D = 1/2.", fontsize=10, y=1.05)
    save_figure(fig, path)


def plot_dstar(result: dict[str, Any], path: Path) -> None:
    """Proposition 1 at a glance: D_trained over D* and both densities, and their difference."""
    import matplotlib.pyplot as plt

    from ganforge.report.plots import save_figure

    c = result["_curves"]
    keep = (c["x"] >= PLOT_RANGE[0]) & (c["x"] <= PLOT_RANGE[1])
    x = c["x"][keep]
    region = result["region"]
    fig, (ax, err) = plt.subplots(2, 1, figsize=(7.5, 5.6), sharex=True,
                                  gridspec_kw={"height_ratios": [2.4, 1.0], "hspace": 0.1})
    for a in (ax, err):
        a.axvspan(region["lo"], region["hi"], color="grey", alpha=0.1, lw=0)
    ax.plot(x, c["p_data"][keep], ":", color="black", lw=1.8, label=f"$p_{{data}}$ = N({DATA_MEAN:g}, {DATA_STD:g}²)")
    ax.plot(x, c["p_g"][keep], "-", color="tab:green", lw=1.6,
            label=f"$p_g$ = N({FROZEN_G_MEAN:g}, {FROZEN_G_STD:g}²) (frozen G: x = {FROZEN_G_STD:g} z + "
                  f"{FROZEN_G_MEAN:g})")
    ax.plot(x, c["d_star"][keep], "-", color="tab:red", lw=2.4, alpha=0.45,
            label=r"$D^*(x) = p_{data} / (p_{data} + p_g)$")
    ax.plot(x, c["d"][keep], "--", color="tab:blue", lw=1.5, label=r"$D(x)$ trained (MLP, BCE)")
    ax.set_ylabel("density  /  D(x)")
    ax.set_ylim(0, 1.05)
    ax.legend(loc="upper left", fontsize=7.5, framealpha=0.9)
    ax.set_title(f"Proposition 1: max |D - D*| = {result['max_abs_d_error']:.3f} over the shaded region "
                 f"(target < {TARGET_D_ERROR});\nTheorem 1: |V(G, D) - (-log 4 + 2 JSD)| = "
                 f"{result['v_minus_jsd_gap']:.4f} nats (target < {TARGET_V_GAP}), JSD = {result['jsd']:.4f}",
                 fontsize=9)
    diff = (c["d"] - c["d_star"])[keep]
    inside = (x >= region["lo"]) & (x <= region["hi"])
    err.plot(x, np.where(inside, diff, np.nan), color="tab:blue", lw=1.3, label="D - D* (region)")
    err.plot(x, np.where(inside, np.nan, diff), color="tab:blue", lw=0.8, alpha=0.35, label="D - D* (outside)")
    for s in (-TARGET_D_ERROR, TARGET_D_ERROR):
        err.axhline(s, color="tab:red", lw=0.8, ls="--")
    err.axhline(0.0, color="black", lw=0.5)
    err.set_ylim(-2.5 * TARGET_D_ERROR, 2.5 * TARGET_D_ERROR)
    err.set_ylabel("D - D*")
    err.set_xlabel("x")
    err.set_xlim(*PLOT_RANGE)
    err.legend(loc="lower left", fontsize=7, ncol=2)
    err.text(0.99, 0.92, f"dashed: ±{TARGET_D_ERROR}; shaded: p_data + p_g > {REGION_FRACTION:.0%} of max",
             transform=err.transAxes, ha="right", va="top", fontsize=7)
    save_figure(fig, path)


# --------------------------------------------------------------------------------------------
# The demo


@contextmanager
def _single_thread() -> Iterator[None]:
    """Run on one intra-op thread: these networks are tiny, so threading costs more than it saves
    (and, on a busy machine, a lot more), and one thread keeps the run reproducible."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def run_theory_demo(out: Path, progress: bool = True, seed: int = 0) -> dict[str, Any]:
    """Run the three parts, write ``theory_figure.png``, ``theory_dstar.png`` and ``theory.json`` to
    ``out``, print a short summary, and return what ``theory.json`` holds."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    with _single_thread():
        xs = np.linspace(*PLOT_RANGE, 801)
        frames = train_figure_gan(seed, xs, progress)
        t_gan = time.perf_counter() - t0
        plot_figure1(frames, xs, out / "theory_figure.png")
        t1 = time.perf_counter()
        d, g, d_info = train_discriminator(seed, progress)
        t_d = time.perf_counter() - t1
        result = check_theory(d, g)
    plot_dstar(result, out / "theory_dstar.png")
    result.pop("_curves")  # the arrays were for the figure; they stay out of the JSON
    summary: dict[str, Any] = {
        **result,
        "targets": {"max_abs_d_error": TARGET_D_ERROR, "v_minus_jsd_gap": TARGET_V_GAP},
        "passed": {"max_abs_d_error": result["max_abs_d_error"] < TARGET_D_ERROR,
                   "v_minus_jsd_gap": result["v_minus_jsd_gap"] < TARGET_V_GAP},
        "p_data": {"family": "normal", "mean": DATA_MEAN, "std": DATA_STD},
        "p_g": {"family": "normal", "mean": FROZEN_G_MEAN, "std": FROZEN_G_STD,
                "generator": f"x = {FROZEN_G_STD} z + {FROZEN_G_MEAN}, z ~ N(0, 1), frozen"},
        "d_training": d_info,
        "figure_gan": {"steps": GAN_STEPS, "batch_size": GAN_BATCH, "snapshots": list(GAN_SNAPSHOTS),
                       "d_steps_per_g_step": GAN_D_STEPS,
                       "noise": "normal", "loss": "nonsaturating",
                       "final_p_g_mean": frames[-1]["g_mean"], "final_p_g_std": frames[-1]["g_std"]},
        "seed": seed,
        "seconds": {"figure_gan": round(t_gan, 2), "d_training": round(t_d, 2),
                    "total": round(time.perf_counter() - t0, 2)},
        "files": {"figure": "theory_figure.png", "dstar": "theory_dstar.png"},
    }
    atomic_write_text(out / "theory.json", json.dumps(summary, indent=2))
    print(f"max |D - D*| = {summary['max_abs_d_error']:.3f} (target < {TARGET_D_ERROR}); "
          f"|V(G,D) - (-log 4 + 2 JSD)| = {summary['v_minus_jsd_gap']:.4f} nats (target < {TARGET_V_GAP}); "
          f"JSD = {summary['jsd']:.4f}; {summary['seconds']['total']:.1f} s; "
          f"figure: {out / 'theory_figure.png'}")
    return summary
