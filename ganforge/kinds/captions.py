"""Captioned images (text to image): caption consistency, R-precision, classifier FID, diversity;
caption grids (a row per caption, the same noise down each column)."""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np

from ganforge.config import Config
from ganforge.io import atomic_write, atomic_write_text
from ganforge.kinds.base import DataKind, RunContext, register_kind
from ganforge.kinds.caption_metrics import CaptionMetrics, caption_pictures
from ganforge.kinds.images import grid_picture, image_evaluations, sample_images
from ganforge.registry import ConfigError
from ganforge.report.pictures import caption_grid, class_grid, training_gif
from ganforge.report.plots import save_image_grid, save_images
from ganforge.spec import DataSpec

ATTRIBUTE_NET = "attribute_net.safetensors"  # the attribute classifier the metrics read images with, kept in the run


def sample_captions(gen: Any, args: argparse.Namespace) -> dict[str, Any]:
    """``--n`` images per caption; with several captions, column i has the same noise in every row."""
    caps = list(args.caption)
    x = gen.sample(args.n, seed=args.seed, captions=caps, same_noise=len(caps) > 1)
    out = Path(args.out)
    if out.suffix == ".png":
        if len(caps) == 1:
            save_image_grid(x, out, nrow=max(1, int(round(args.n ** 0.5))))
        else:
            caption_grid(x, caps, out)
    elif out.suffix == ".npz":
        def write(tmp: str) -> None:
            with open(tmp, "wb") as f:
                np.savez(f, samples=x.numpy(), captions=np.array(caps).repeat(args.n))

        atomic_write(out, write)
    elif out.suffix == "":  # a PNG per image and captions.jsonl saying which caption each shows
        save_images(x, out)
        rows = [json.dumps({"image": f"{i:06d}.png", "caption": caps[i // args.n]}, ensure_ascii=False)
                for i in range(len(x))]
        atomic_write_text(out / "captions.jsonl", "\n".join(rows) + "\n")
    else:
        raise ConfigError(f"--out must end in .png (a grid) or .npz, or be a folder, got '{out}'")
    return {"n": len(x), "captions": caps, "out": str(out)}


class Captions(DataKind):
    """Images generated from captions (a caption encoder travels with the generator)."""

    name = "captions"
    description = "text to image: caption consistency, R-precision, classifier FID, diversity; caption grids"
    sample_flags = frozenset({"caption"})
    eval_flags = frozenset()

    def matches(self, spec: DataSpec, transform: Any) -> bool:
        return spec.is_image and hasattr(transform, "encode")

    def evaluations(self, run: RunContext) -> list[Any]:
        out = image_evaluations(run)  # (when eval.metrics asks for them too)
        if CaptionMetrics.applies(run.data):
            out.append(CaptionMetrics(run.artifact, run.data, run.logger.record,
                                      run.files / ATTRIBUTE_NET if run.files else None,
                                      n=run.cfg.eval.captions, classifier_steps=run.cfg.eval.classifier_steps))
        return out

    def picture(self, artifact: Any, data: Any, path: Path, title: str) -> Path | None:
        return grid_picture(artifact, path)

    def finish(self, run: RunContext, out: Path) -> None:
        grid_picture(run.artifact, out / "samples.png")
        caption_pictures(run.artifact, run.data, out)
        if run.artifact.prior.classes:
            class_grid(run.artifact.module, run.artifact.prior, out / "classes.png")
        training_gif(out / "samples", out / "training.gif")

    def sample(self, gen: Any, args: argparse.Namespace) -> dict[str, Any]:
        if args.caption:
            return sample_captions(gen, args)
        return sample_images(gen, args)

    def evaluate(self, cfg: Config, gen: Any, run: Path, args: argparse.Namespace, out: Path) -> dict[str, Any]:
        from ganforge.data.captioned import caption_splits
        from ganforge.metrics.captioned import attribute_net_for, evaluate_captioned

        train, sets = caption_splits(cfg.data.name, dict(cfg.data.options), cfg.data.path)
        net = attribute_net_for(train, run / ATTRIBUTE_NET, steps=cfg.eval.classifier_steps,
                                progress=not args.no_progress) if train.attributes is not None else None
        return evaluate_captioned(gen, train, sets, net, n=args.n or cfg.eval.captions)


register_kind(Captions(), builtin=True)
