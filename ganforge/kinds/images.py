"""Images: FID / KID / precision-recall during training, sample grids, interpolations, class grids."""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import torch

from ganforge.config import Config
from ganforge.kinds.base import DataKind, RunContext, register_kind
from ganforge.kinds.points import tensor_samples, write_array
from ganforge.registry import ConfigError
from ganforge.report.pictures import class_grid, interpolation_grid, training_gif
from ganforge.report.plots import save_image_grid, save_images
from ganforge.spec import DataSpec

BEST = "checkpoints/best.safetensors"  # the best generator by eval.best (a generator file, like the final one)
IMAGE_EVAL_FLAGS = frozenset({"metrics", "reference", "extractor"})


def image_evaluations(run: RunContext) -> list[Any]:
    """The image metrics, when configured and a reference is known (the data set's held-out split or
    ``eval.reference``; a data object the caller passed has none)."""
    from ganforge.kinds.image_metrics import ImageMetrics

    if not run.cfg.eval.metrics or not run.own_data:
        return []
    files = run.files
    return [ImageMetrics(run.cfg, run.artifact, run.logger.record,
                         run.artifact.export if (files and run.cfg.eval.best) else None,
                         files / BEST if files else None)]


def conditional_metrics(run: RunContext) -> dict[str, Any]:
    """On MNIST: how often a conditional G makes the requested digit; InfoGAN's code accuracy (and
    Q's reading of real held-out digits). Self-conditioned models are skipped: their classes are
    clusters, not digits."""
    from ganforge.data.mnist import embedded_mnist, to_tensor_images
    from ganforge.metrics.conditional import categorical_code_accuracy, label_accuracy, q_accuracy
    from ganforge.nn import WithHead

    cfg, artifact = run.cfg, run.artifact
    mode, prior = cfg.model.conditioning, artifact.prior
    if mode == "none" or cfg.model.self_condition or prior.classes != 10 or cfg.data.name != "mnist":
        return {}
    if mode != "infogan":
        return label_accuracy(artifact.module, prior)
    out = categorical_code_accuracy(artifact.module, prior)
    if isinstance(run.parts.discriminator, WithHead):
        x, y = embedded_mnist("heldout")  # real digits G never saw, read by Q
        out.update(q_accuracy(run.parts.discriminator, prior.classes, to_tensor_images(x), torch.from_numpy(y)))
    return out


def grid_picture(artifact: Any, path: Path) -> Path:
    """A grid of 64 samples from fixed noise, comparable across steps."""
    save_image_grid(artifact.sample(64, seed=99, raw=True), path)
    return path


def sample_images(gen: Any, args: argparse.Namespace) -> dict[str, Any]:
    """``ganforge sample``: a grid (``.png``), a folder of PNGs (no suffix), ``.npz`` or ``.csv``."""
    x = tensor_samples(gen, args)
    out = Path(args.out)
    if write_array(x, out):
        pass
    elif out.suffix == ".png":
        save_image_grid(x, out, nrow=max(1, int(round(args.n ** 0.5))))
    elif out.suffix == "":
        save_images(x, out)
    else:
        raise ConfigError(f"--out must end in .npz, .csv or .png (or be a folder, for images), got '{out}'")
    return {"n": args.n, "out": str(out)}


class Images(DataKind):
    """Images (C, H, W) in [-1, 1]."""

    name = "images"
    description = "images: FID/KID/precision-recall, sample grids, interpolations, class grids"
    sample_flags = frozenset({"label"})
    eval_flags = IMAGE_EVAL_FLAGS

    def matches(self, spec: DataSpec, transform: Any) -> bool:
        return spec.is_image and not hasattr(transform, "encode")  # (captioned images are their own kind)

    def evaluations(self, run: RunContext) -> list[Any]:
        return image_evaluations(run)

    def picture(self, artifact: Any, data: Any, path: Path, title: str) -> Path | None:
        return grid_picture(artifact, path)

    def finish(self, run: RunContext, out: Path) -> None:
        grid_picture(run.artifact, out / "samples.png")
        interpolation_grid(run.artifact.module, run.artifact.prior, out / "interpolation.png")
        if run.artifact.prior.classes:
            class_grid(run.artifact.module, run.artifact.prior, out / "classes.png")
        training_gif(out / "samples", out / "training.gif")

    def summary(self, run: RunContext) -> dict[str, Any]:
        return conditional_metrics(run)

    def sample(self, gen: Any, args: argparse.Namespace) -> dict[str, Any]:
        return sample_images(gen, args)

    def evaluate(self, cfg: Config, gen: Any, run: Path, args: argparse.Namespace, out: Path) -> dict[str, Any]:
        from ganforge.kinds.image_metrics import resolve_reference
        from ganforge.metrics.evaluate import DEFAULT_METRICS, evaluate

        default = cfg.eval.metrics if "modes" in cfg.eval.metrics else DEFAULT_METRICS
        reference = args.reference or resolve_reference(cfg)
        if reference is None:
            raise ConfigError(f"{run}: its data set '{cfg.data.name}' has no held-out split to compare with; "
                              "pass --reference (a folder, an .npz file or a data set spec such as mnist:heldout)")
        return evaluate(gen, reference=reference, metrics=args.metrics or list(default),
                        n=args.n or cfg.eval.n, extractor=args.extractor or cfg.eval.extractor,
                        progress=not args.no_progress)


register_kind(Images(), builtin=True)
