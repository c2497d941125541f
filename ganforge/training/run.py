"""A run is a folder: resolved config, log, samples, checkpoints, exported generator, summary.

:func:`train` wires the assembled parts, the trainer and the callbacks together for the CLI and
the Python API alike.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml
from safetensors.torch import save_file
from torch import nn

from ganforge.config import Config, to_dict
from ganforge.metrics.modes import mode_metrics
from ganforge.nn import module_device
from ganforge.registry import ConfigError
from ganforge.training.assemble import assemble
from ganforge.training.callbacks import (
    EMA,
    Checkpoint,
    Every,
    Health,
    Logger,
    LRDecay,
    ReferenceBatch,
    TrainingDiverged,
)
from ganforge.training.checkpoint import atomic_write, atomic_write_text, load_state
from ganforge.training.image_eval import ImageMetrics
from ganforge.training.trainer import GANParts, Trainer

CHECKPOINT = "checkpoints/last.safetensors"
BEST = "checkpoints/best.safetensors"  # the best generator by eval.best (a generator file, like the final one)


@dataclass
class RunResult:
    """What :func:`train` returns: the trained parts, the sampling model and the summary."""

    parts: GANParts
    trainer: Trainer
    model: nn.Module  # what to sample from: the EMA generator when EMA is on
    summary: dict[str, Any]
    out: Path | None


@torch.no_grad()
def sample_from(model: nn.Module, prior: Any, n: int, seed: int = 1234, batch: int = 4096,
                device: Any = None, labels: torch.Tensor | None = None) -> torch.Tensor:
    """Draw ``n`` samples in eval mode with a private RNG (training's RNG streams stay untouched),
    on ``device`` (default: the model's), returned on the CPU; ``labels`` (n,) fixes the class of
    each sample of a conditional model."""
    device = module_device(model) if device is None else device
    gen = torch.Generator().manual_seed(seed)
    was_training = model.training
    model.eval()
    out = [model(prior.sample(min(batch, n - i), gen, labels=None if labels is None else labels[i:i + batch])
                 .to(device)).float().cpu() for i in range(0, n, batch)]
    model.train(was_training)
    return torch.cat(out)


def toy_metrics(model: nn.Module, parts: GANParts, n: int, device: Any = "cpu") -> dict[str, float]:
    """Exact mode metrics when the data set knows its modes (ring, grid, 1-D mixtures)."""
    data = parts.data
    if not hasattr(data, "modes"):
        return {}
    samples = sample_from(model, parts.prior, n, device=device)
    return mode_metrics(samples, data.modes, float(data.stds.min()))


def plot_samples(model: nn.Module, parts: GANParts, path: Path, title: str, device: Any = "cpu") -> None:
    from ganforge.report.plots import plot_samples_1d, plot_samples_2d, save_image_grid

    if len(parts.data.shape) == 3:  # images: a grid from fixed noise, comparable across steps
        save_image_grid(sample_from(model, parts.prior, 64, seed=99, device=device), path)
        return
    samples = sample_from(model, parts.prior, 2500, seed=99, device=device)
    if samples.dim() == 2 and samples.shape[1] == 2:
        plot_samples_2d(samples, getattr(parts.data, "modes", None), path, title)
    elif samples.dim() == 2 and samples.shape[1] == 1:
        density = getattr(parts.data, "prob", None)
        plot_samples_1d(samples, density, path, title)


def image_pictures(model: nn.Module, parts: GANParts, out: Path) -> None:
    """The pictures of an image run: a latent interpolation, a per-class grid, the training GIF."""
    from ganforge.report.pictures import class_grid, interpolation_grid, training_gif

    interpolation_grid(model, parts.prior, out / "interpolation.png")
    if parts.prior.classes:
        class_grid(model, parts.prior, out / "classes.png")
    training_gif(out / "samples", out / "training.gif")


def conditional_metrics(model: nn.Module, parts: GANParts, cfg: Config) -> dict[str, Any]:
    """On MNIST: how often a conditional G makes the requested digit; InfoGAN's code accuracy.

    Self-conditioned models are skipped: their classes are clusters, not digits.
    """
    cond = parts.conditioning
    if cond is None or cfg.model.self_condition or parts.prior.classes != 10 or cfg.data.name != "mnist":
        return {}
    from ganforge.metrics.conditional import categorical_code_accuracy, label_accuracy

    if cond.mode == "infogan":
        out = categorical_code_accuracy(model, parts.prior)
        if parts.discriminator is not None and cond.head is not None:
            from ganforge.data.mnist import embedded_mnist, to_tensor_images
            from ganforge.metrics.conditional import q_accuracy

            x, y = embedded_mnist("heldout")  # real digits G never saw, read by Q
            out.update(q_accuracy(parts.discriminator, cond.head, parts.prior.classes,
                                  to_tensor_images(x), torch.from_numpy(y)))
        return out
    return label_accuracy(model, parts.prior)


def export_generator(path: Path, model: nn.Module, cfg: Config, shape: tuple[int, ...], custom: bool) -> None:
    """The final generator as safetensors, with what is needed to rebuild it as JSON metadata."""
    meta = {
        "format": "ganforge-generator-1",
        "custom": custom,
        "shape": list(shape),
        "model": to_dict(cfg.model),
    }
    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}
    atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata={"ganforge": json.dumps(meta)}))
    atomic_write_text(path.with_suffix(".json"), json.dumps(meta, indent=2))


def _prepare_out(out: Path, resume: bool) -> None:
    if resume:
        if not (out / CHECKPOINT).is_file():
            raise ConfigError(f"--resume: no checkpoint at {out / CHECKPOINT}")
        return
    # A run killed before its first checkpoint has a log.jsonl but no checkpoint; a new run there
    # would append to that log. (config.yaml alone is a run that never started: it is rewritten.)
    if any((out / name).exists() for name in (CHECKPOINT, "summary.json", "log.jsonl")):
        raise ConfigError(f"{out} already holds a run; choose another --out or continue it with --resume {out}")
    out.mkdir(parents=True, exist_ok=True)


def load_run_config(run_dir: str | Path) -> Config:
    """The resolved config saved in a run folder."""
    from ganforge.config import from_dict

    path = Path(run_dir) / "config.yaml"
    if not path.is_file():
        raise ConfigError(f"{run_dir} is not a run folder (no config.yaml)")
    return from_dict(yaml.safe_load(path.read_text()) or {})


def train(cfg: Config, out: str | Path | None = None, resume: bool = False, data: Any = None,
          generator: nn.Module | None = None, discriminator: nn.Module | None = None,
          callbacks: list[Any] | None = None) -> RunResult:
    """Train a GAN as configured; with ``out``, the run folder is written (and resumable)."""
    t0 = time.perf_counter()
    out_path = Path(out) if out is not None else None
    if out_path is not None:
        _prepare_out(out_path, resume)
        atomic_write_text(out_path / "config.yaml", yaml.safe_dump(to_dict(cfg), sort_keys=False))
    tc = cfg.train
    torch.manual_seed(tc.seed)
    parts = assemble(cfg, data, generator, discriminator)
    device = tc.device
    logger = Logger(out_path / "log.jsonl" if out_path else None, tc.log_every, tc.progress,
                    out_path / "tensorboard" if (out_path and tc.tensorboard) else None)
    health = Health(logger, cfg.health, parts.loss.kind == "logit")
    cbs: list[Any] = [logger, health]
    if cfg.model.generator.reference_batch and generator is None:
        # First, so the EMA copy and the sample plots see this step's reference statistics.
        cbs.insert(0, ReferenceBatch(parts.prior, cfg.model.generator.reference_batch, tc.seed))
    if tc.lr_decay != "none":
        if tc.lr_decay not in ("linear", "cosine"):
            raise ConfigError(f"train.lr_decay: unknown schedule '{tc.lr_decay}' (choices: none, linear, cosine)")
        cbs.append(LRDecay(tc.lr_decay, tc.steps, [parts.opt_g, parts.opt_d]))
    ema = None
    if cfg.techniques.ema > 0:
        ema = EMA(parts.generator, cfg.techniques.ema, cfg.techniques.ema_start)
        cbs.append(ema)
    model = ema.model if ema is not None else parts.generator

    def evaluate(trainer: Trainer) -> None:
        m = toy_metrics(model, parts, tc.eval_samples, device)
        if m:
            logger.record(trainer.step_num, {f"eval/{k}": v for k, v in m.items()})
            health.modes(trainer.step_num, m["modes_captured"], m["modes_total"])

    cbs.append(Every(tc.eval_every, evaluate))
    image_eval = None
    if len(parts.data.shape) == 3 and cfg.eval.metrics and (data is None or isinstance(data, str)):
        # Image metrics need a reference: the data set's held-out split, or eval.reference.
        def export_best(path: Path) -> None:
            export_generator(path, model, cfg, tuple(parts.data.shape), custom=generator is not None)

        image_eval = ImageMetrics(cfg, model, parts.prior, logger.record,
                                  export_best if (out_path and cfg.eval.best) else None,
                                  out_path / BEST if out_path else None)
        cbs.append(Every(tc.eval_every, image_eval))
    if out_path is not None:
        (out_path / "samples").mkdir(exist_ok=True)
        cbs.append(Every(tc.sample_every, lambda t: plot_samples(
            model, parts, out_path / "samples" / f"step_{t.step_num:07d}.png",
            f"{cfg.preset or 'run'} step {t.step_num}", device)))
        cbs.append(Checkpoint(out_path / CHECKPOINT, tc.checkpoint_every))
    cbs += list(callbacks or [])
    trainer = Trainer(parts, tc, cbs, device=device)
    if resume and out_path is not None:
        trainer.load_state_dict(load_state(out_path / CHECKPOINT))
    try:
        trainer.fit()
    finally:
        logger.close()
    summary: dict[str, Any] = {"preset": cfg.preset, "steps": trainer.step_num,
                               "status": "ok" if trainer.stop_reason is None else "diverged"}
    if trainer.stop_reason is None:
        summary.update(toy_metrics(model, parts, tc.eval_samples, device))
        summary.update(conditional_metrics(model, parts, cfg))
        if image_eval is not None:
            summary.update({k: v for k, v in image_eval.last.items() if k != "protocol"})
            summary["eval_protocol"] = image_eval.last.get("protocol", {})
            if image_eval.best:
                summary["best"] = image_eval.best
    summary["final"] = logger.last
    summary["warnings"] = logger.warnings
    summary["wall_seconds"] = round(time.perf_counter() - t0, 2)
    if out_path is not None:
        if trainer.stop_reason is None:
            export_generator(out_path / "generator.safetensors", model, cfg, tuple(parts.data.shape),
                             custom=generator is not None)
        from ganforge.report.plots import plot_curves
        if trainer.stop_reason is None:
            plot_samples(model, parts, out_path / "samples.png", f"{cfg.preset or 'run'}: final samples", device)
            if len(parts.data.shape) == 3:
                image_pictures(model, parts, out_path)
        plot_curves(out_path / "log.jsonl", out_path / "curves.png")
        atomic_write_text(out_path / "summary.json", json.dumps(summary, indent=2))
    if trainer.stop_reason is not None:
        raise TrainingDiverged(trainer.stop_reason)
    return RunResult(parts, trainer, model, summary, out_path)
