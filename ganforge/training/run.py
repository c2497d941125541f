"""A run is a folder: resolved config, log, samples, checkpoints, exported generator, summary.

:func:`train` wires the assembled parts, the trainer and the callbacks together for the CLI and
the Python API alike.
"""
from __future__ import annotations

import copy
import json
import shlex
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import nn

from ganforge.config import Config, from_dict, read_yaml, to_dict
from ganforge.data.mnist import embedded_mnist, to_tensor_images
from ganforge.generator import GeneratorArtifact, weights_mismatch
from ganforge.io import atomic_write_text
from ganforge.metrics.conditional import categorical_code_accuracy, label_accuracy, q_accuracy
from ganforge.metrics.modes import mode_metrics
from ganforge.nn import WithHead
from ganforge.provenance import provenance
from ganforge.registry import ConfigError
from ganforge.report.pictures import class_grid, interpolation_grid, training_gif
from ganforge.report.plots import plot_curves, plot_samples_1d, plot_samples_2d, save_image_grid
from ganforge.tensorfile import one_line
from ganforge.training.assemble import assemble
from ganforge.training.callbacks import (
    EMA,
    NAN_POLICIES,
    Checkpoint,
    Every,
    FinalChecks,
    Health,
    Interrupted,
    Logger,
    LRDecay,
    NanRollback,
    ReferenceBatch,
    SetLR,
    TrainingDiverged,
)
from ganforge.training.caption_encoder import CACHE_FILE as CAPTION_ENCODER
from ganforge.training.caption_encoder import EncoderCache
from ganforge.training.checkpoint import ModuleOrigin, check_origin, load_state, model_mismatch
from ganforge.training.distributed import SINGLE, World, barrier, broadcast, device_for, gather, local_batch
from ganforge.training.image_eval import ImageMetrics
from ganforge.training.t2i_eval import CaptionMetrics, caption_pictures
from ganforge.training.table_eval import table_metrics
from ganforge.training.text_eval import TextMetrics, write_samples
from ganforge.training.trainer import GANParts, Trainer

CHECKPOINT = "checkpoints/last.safetensors"
BEST = "checkpoints/best.safetensors"  # the best generator by eval.best (a generator file, like the final one)


@dataclass
class RunResult:
    """What :func:`train` returns: the trained parts, the sampling model, its artifact and the summary."""

    parts: GANParts
    trainer: Trainer
    model: nn.Module  # what to sample from: the EMA generator when EMA is on
    artifact: GeneratorArtifact  # the model with its prior, data spec and output transform
    summary: dict[str, Any]
    out: Path | None


def toy_metrics(artifact: GeneratorArtifact, data: Any, n: int) -> dict[str, float]:
    """Exact mode metrics when the data set knows its modes (ring, grid, 1-D mixtures)."""
    if not hasattr(data, "modes"):
        return {}
    return mode_metrics(artifact.sample(n, seed=1234, raw=True), data.modes, float(data.stds.min()))


def plot_samples(artifact: GeneratorArtifact, data: Any, path: Path, title: str) -> None:
    """A picture of the samples: an image grid from fixed noise, or a 1-D / 2-D plot; for text, a
    ``.txt`` file of sentences beside ``path``."""
    if artifact.spec.is_text:
        write_samples(artifact, path.with_suffix(".txt"))
        return
    if artifact.spec.is_image:  # images: a grid from fixed noise, comparable across steps
        save_image_grid(artifact.sample(64, seed=99, raw=True), path)
        return
    samples = artifact.sample(2500, seed=99, raw=True)
    if samples.dim() == 2 and samples.shape[1] == 2:
        plot_samples_2d(samples, getattr(data, "modes", None), path, title)
    elif samples.dim() == 2 and samples.shape[1] == 1:
        plot_samples_1d(samples, getattr(data, "prob", None), path, title)


def image_pictures(artifact: GeneratorArtifact, out: Path, data: Any = None) -> None:
    """The pictures of an image run: a latent interpolation, a per-class grid (captions: a grid of
    captions by noises), the training GIF."""
    if hasattr(artifact.transform, "encode"):
        caption_pictures(artifact, data, out)
    else:
        interpolation_grid(artifact.module, artifact.prior, out / "interpolation.png")
    if artifact.prior.classes:
        class_grid(artifact.module, artifact.prior, out / "classes.png")
    training_gif(out / "samples", out / "training.gif")


def conditional_metrics(artifact: GeneratorArtifact, parts: GANParts, cfg: Config) -> dict[str, Any]:
    """On MNIST: how often a conditional G makes the requested digit; InfoGAN's code accuracy.

    Self-conditioned models are skipped: their classes are clusters, not digits.
    """
    mode, prior = cfg.model.conditioning, artifact.prior
    if mode == "none" or cfg.model.self_condition or prior.classes != 10 or cfg.data.name != "mnist":
        return {}
    if mode != "infogan":
        return label_accuracy(artifact.module, prior)
    out = categorical_code_accuracy(artifact.module, prior)
    if isinstance(parts.discriminator, WithHead):
        x, y = embedded_mnist("heldout")  # real digits G never saw, read by Q
        out.update(q_accuracy(parts.discriminator, prior.classes, to_tensor_images(x), torch.from_numpy(y)))
    return out


def prepare_out(out: Path, resume: bool) -> None:
    """Check that a run folder can take a new run (or holds one to resume), and create it."""
    if resume:
        if not (out / CHECKPOINT).is_file():
            raise ConfigError(f"--resume: no checkpoint at {out / CHECKPOINT}")
        return
    if (out / CHECKPOINT).exists() or (out / "summary.json").exists():
        raise ConfigError(f"{out} already holds a run; choose another --out or continue it with --resume {out}")
    # A run killed before its first checkpoint has a log.jsonl but no checkpoint; a new run there
    # would append to that log. (config.yaml alone is a run that never started: it is rewritten.)
    if (out / "log.jsonl").exists():
        raise ConfigError(f"{out} holds a run stopped before its first checkpoint; --resume {out} starts it "
                          "again from step 0, or choose another --out")
    out.mkdir(parents=True, exist_ok=True)


def restart_unsaved(out: Path) -> bool:
    """``--resume`` of a run killed before its first checkpoint: clear its log so it starts again
    from step 0 (True), with a note; False when there is a checkpoint to resume from."""
    if (out / CHECKPOINT).is_file() or not (out / "config.yaml").is_file():
        return False
    import sys

    (out / "log.jsonl").unlink(missing_ok=True)
    (out / "summary.json").unlink(missing_ok=True)
    print(f"ganforge: {out} has no checkpoint yet (stopped before the first one): starting it again from step 0",
          file=sys.stderr)
    return True


def load_run_config(run_dir: str | Path) -> Config:
    """The resolved config saved in a run folder."""
    path = Path(run_dir) / "config.yaml"
    if not path.is_file():
        raise ConfigError(f"{run_dir} is not a run folder (no config.yaml)")
    try:
        text = path.read_text(encoding="utf-8")
    except (UnicodeDecodeError, OSError) as e:  # a damaged or foreign file: one line, no traceback
        raise ConfigError(f"{path}: not a readable run config ({one_line(e)})") from None
    data = read_yaml(text, str(path)) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: not a run config (it holds a {type(data).__name__}, not a mapping of sections)")
    try:
        return from_dict(data)
    except ConfigError as e:  # say which file holds the bad value: the user did not type it
        raise ConfigError(f"{path}: {e}") from None


def read_checkpoint(out: Path, generator: bool, discriminator: bool) -> dict[str, Any]:
    """The last checkpoint of the run in ``out``, checked to be resumable as this run is given (``generator``,
    ``discriminator``: whether the caller passed its own modules); a :class:`ConfigError` naming it if not."""
    path = out / CHECKPOINT
    state = load_state(path)
    check_origin(path, state, out, generator, discriminator)
    return state


def modules_mismatch(path: Path, state: dict[str, Any] | None, parts: GANParts) -> str | None:
    """Why the checkpoint's G and D weights do not fit the networks built from the config, or None."""
    for key, module in (("generator", parts.generator), ("discriminator", parts.discriminator)):
        saved = state.get(key) if state is not None else None
        if module is None or not isinstance(saved, dict):
            continue  # a missing entry is reported when the state is loaded
        why = weights_mismatch(module, saved)
        if why is not None:
            return str(model_mismatch(path, RuntimeError(f"{key}: {why}")))
    return None


def resume_from(trainer: Trainer, path: Path, state: dict[str, Any] | None, world: World) -> None:
    """Load the checkpoint ``state`` (rank 0's; the others receive it) into ``trainer``; entries that do not fit
    the parts built from the config (optimizer, EMA, objective state of another model) are a :class:`ConfigError`."""
    try:
        trainer.load_state_dict(broadcast(state, world))
    except (RuntimeError, KeyError, ValueError, TypeError, IndexError) as e:
        if isinstance(e, ConfigError):
            raise
        raise model_mismatch(path, e) from None


def restore_last(trainer: Trainer, out: Path | None, world: World) -> str | None:
    """Load the run's last checkpoint into ``trainer`` as ``--resume`` does (a NaN rollback): None once
    loaded, or why there is none. Collective in a multi-process run (rank 0 reads, the others receive)."""
    if out is None:
        return "a run without an output folder keeps no checkpoint"
    path = out / CHECKPOINT
    state = load_state(path) if world.writer and path.is_file() else None
    if not broadcast(state is not None, world):
        return f"no checkpoint written yet (train.checkpoint_every={trainer.cfg.checkpoint_every})"
    resume_from(trainer, path, state, world)
    return None


def run_status(stop_reason: str | None, warnings: list[tuple[str, str]]) -> str:
    """summary.json's ``status``: ``diverged`` (stopped on NaN/Inf), ``warning`` (the final evaluation is
    far from the data, see :func:`~ganforge.training.callbacks.final_warnings`) or ``ok``."""
    if stop_reason is not None:
        return "diverged"
    return "warning" if warnings else "ok"


def train(cfg: Config, out: str | Path | None = None, resume: bool = False, data: Any = None,
          generator: nn.Module | None = None, discriminator: nn.Module | None = None,
          callbacks: list[Any] | None = None, world: World | None = None) -> RunResult:
    """Train as configured; with ``out``, the run folder is written (and resumable).

    ``world`` places this process in a multi-process run (:func:`~ganforge.training.distributed.init_from_env`
    under torchrun): ``train.batch_size`` is then the global batch, each process draws its own
    share (its own random stream and data shard), G and D are kept in step by DDP, and only rank 0
    writes files, shows progress and evaluates.
    """
    t0 = time.perf_counter()
    if cfg.train.nan_policy not in NAN_POLICIES:  # before anything is written
        raise ConfigError(f"train.nan_policy: unknown policy '{cfg.train.nan_policy}' "
                          f"(choices: {', '.join(NAN_POLICIES)})")
    world = world or SINGLE
    writer = world.writer
    out_path = Path(out) if out is not None else None
    local_batch(cfg.train.batch_size, world, cfg.train.accumulate)  # a batch that does not divide fails first
    if world.distributed and cfg.train.device == "cuda":
        cfg = copy.deepcopy(cfg)
        cfg.train.device = device_for("cuda", world)  # one GPU per process
    problem = None
    if resume and out_path is not None and writer and restart_unsaved(out_path):
        resume = False
    resume = bool(broadcast(resume, world)) if world.distributed else resume
    state = None  # a resumed run's checkpoint, read by rank 0
    if out_path is not None and writer:
        try:
            prepare_out(out_path, resume)
            if resume:
                # Read and check the checkpoint before anything is written: a refused resume leaves the run
                # as it was (its config.yaml is rewritten once the checkpoint has loaded).
                state = read_checkpoint(out_path, generator is not None, discriminator is not None)
            else:
                atomic_write_text(out_path / "config.yaml", yaml.safe_dump(to_dict(cfg), sort_keys=False))
        except ConfigError as e:
            problem = str(e)
    # Rank 0 checks the run folder; the others must not go on into a run it has refused.
    problem = next((p for p in gather(problem, world) if p is not None), None)
    if problem is not None:
        raise ConfigError(problem)
    tc = cfg.train
    torch.manual_seed(tc.seed)  # the same initial weights in every process
    # Captioned data: its caption encoder is kept in the run folder and in checkpoints; rank 0 finds or fits it once.
    encoders = EncoderCache(out_path / CAPTION_ENCODER if out_path is not None and writer else None, state, world)
    parts = assemble(cfg, data, generator, discriminator, encoders)
    if resume and out_path is not None:
        # Weights of another model are refused before the logger opens any file in the run.
        problem = modules_mismatch(out_path / CHECKPOINT, state, parts) if writer else None
        problem = next((p for p in gather(problem, world) if p is not None), None)
        if problem is not None:
            raise ConfigError(problem)
    files = out_path if writer else None  # where this process writes (nowhere, except on rank 0)
    logger = Logger(files / "log.jsonl" if files else None, tc.log_every, tc.progress and writer,
                    files / "tensorboard" if (files and tc.tensorboard) else None)
    rollback = tc.nan_policy == "rollback"
    health = Health(logger, cfg.health, bool(getattr(parts.objective, "probabilistic", False)),
                    "rolling back to the last checkpoint if it can (train.nan_policy: rollback)" if rollback else
                    "stopping, last good checkpoint kept")
    cbs: list[Any] = [logger, health]
    if cfg.model.generator.reference_batch and generator is None:
        # First, so the EMA copy and the sample plots see this step's reference statistics.
        cbs.insert(0, ReferenceBatch(parts.prior, cfg.model.generator.reference_batch, tc.seed))
    if tc.lr_decay != "none":
        if tc.lr_decay not in ("linear", "cosine"):
            raise ConfigError(f"train.lr_decay: unknown schedule '{tc.lr_decay}' (choices: none, linear, cosine)")
        cbs.append(LRDecay(tc.lr_decay, tc.steps, [parts.opt_g, parts.opt_d]))
    start = getattr(parts.objective, "adversarial_start", None)
    if cfg.model.text.adversarial_lr_g > 0 and start is not None and parts.objective.method != "mle":
        if tc.lr_decay != "none":
            raise ConfigError("model.text.adversarial_lr_g and train.lr_decay both set G's learning rate; use one")
        cbs.append(SetLR(parts.opt_g, start, cfg.model.text.adversarial_lr_g))
    ema = None
    if cfg.techniques.ema > 0:
        ema = EMA(parts.generator, cfg.techniques.ema, cfg.techniques.ema_start)
        cbs.append(ema)
    model = ema.model if ema is not None else parts.generator
    artifact = GeneratorArtifact(model, parts.prior, parts.spec, cfg.model, parts.transform,
                                 custom=generator is not None)

    def evaluate(trainer: Trainer) -> None:
        m = toy_metrics(artifact, parts.data, tc.eval_samples)
        if m:
            logger.record(trainer.step_num, {f"eval/{k}": v for k, v in m.items()})
            health.modes(trainer.step_num, m["modes_captured"], m["modes_total"], m["high_quality_fraction"])

    cbs.append(Every(tc.eval_every, evaluate))
    image_eval = None
    if parts.spec.is_image and cfg.eval.metrics and (data is None or isinstance(data, str)) and writer:
        # Image metrics need a reference: the data set's held-out split, or eval.reference.
        image_eval = ImageMetrics(cfg, artifact, logger.record,
                                  artifact.export if (files and cfg.eval.best) else None,
                                  files / BEST if files else None)
        cbs.append(Every(tc.eval_every, image_eval))
    text_eval = None
    if parts.spec.is_text and TextMetrics.applies(parts.data) and writer:
        text_eval = TextMetrics(artifact, parts.data, cfg.model.text.eval_samples, logger.record)
        cbs.append(Every(tc.eval_every, text_eval))
    caption_eval = None
    if CaptionMetrics.applies(parts.data) and writer:
        caption_eval = CaptionMetrics(artifact, parts.data, logger.record,
                                      files / "attribute_net.safetensors" if files else None,
                                      n=cfg.eval.captions, classifier_steps=cfg.eval.classifier_steps)
        cbs.append(Every(tc.eval_every, caption_eval))
    final_checks = FinalChecks(logger, cfg.health, health, image_eval) if writer else None
    if final_checks is not None:
        cbs.append(final_checks)  # after the evaluations: it reads the final one
    if files is not None:
        (files / "samples").mkdir(exist_ok=True)

        def sample_picture(t: Trainer) -> None:
            path = files / "samples" / f"step_{t.step_num:07d}.png"
            plot_samples(artifact, parts.data, path, f"{cfg.preset or 'run'} step {t.step_num}")
            if path.is_file():  # a picture (text runs write sentences): TensorBoard shows it too
                logger.image(t.step_num, "samples", path)

        cbs.append(Every(tc.sample_every, sample_picture))
    # The caller's callbacks run before the checkpoint, so a checkpoint holds their state after
    # their call at that step (a resumed run neither repeats nor skips it).
    cbs += list(callbacks or [])
    if out_path is not None:
        # Records whether G / D are the caller's own modules, so `--resume` can say it cannot rebuild them.
        cbs.append(ModuleOrigin(generator is not None, discriminator is not None))
        # Every process takes part in a checkpoint (it gathers their random streams); rank 0 writes it.
        cbs.append(Checkpoint(files / CHECKPOINT if files else None, tc.checkpoint_every))
    rollbacks = None
    if rollback:
        # After the checkpoint: a step's state is judged (and a good one saved) before it is rolled back.
        rollbacks = NanRollback(logger, lambda t: restore_last(t, out_path, world), tc.nan_lr_factor,
                                tc.nan_max_rollbacks)
        cbs.append(rollbacks)
    trainer = Trainer(parts, tc, cbs, device=tc.device, world=world)
    if resume and out_path is not None:
        resume_from(trainer, out_path / CHECKPOINT, state, world)
        if writer:
            atomic_write_text(out_path / "config.yaml", yaml.safe_dump(to_dict(cfg), sort_keys=False))
    # set_flush_denormal returns False where the CPU cannot (then nothing changes).
    ftz = tc.flush_denormal and torch.set_flush_denormal(True)
    with trainer.stopping_on_signals():  # until every process has left: see stopping_on_signals
        try:
            trainer.fit()
        finally:
            logger.close()
            if ftz:
                torch.set_flush_denormal(False)
        if trainer.interrupted is not None:
            if files is not None:
                atomic_write_text(files / "summary.json", json.dumps(
                    {"preset": cfg.preset, "steps": trainer.step_num, "status": "interrupted",
                     "signal": trainer.interrupted, "wall_seconds": round(time.perf_counter() - t0, 2)}
                    | provenance(), indent=2))
            # No process leaves before rank 0 has written: torchrun ends the others once one exits.
            barrier(world)
            # The command line can continue the run only when its config says everything: the data is
            # the config's and the modules are built from it. Otherwise the caller fills in its own way.
            own_data = data is None or (isinstance(data, str) and data == cfg.data.name)
            rebuilt = own_data and generator is None and discriminator is None and out_path is not None
            command = shlex.join(["ganforge", "train", "--resume", str(out_path)]) if rebuilt else None
            raise Interrupted(trainer.interrupted, trainer.step_num, out_path, command)
    fired = final_checks.fired if final_checks is not None else []
    summary: dict[str, Any] = {"preset": cfg.preset, "steps": trainer.step_num,
                               "status": run_status(trainer.stop_reason, fired)}
    if rollbacks is not None and rollbacks.rollbacks:
        summary["nan_rollbacks"] = rollbacks.rollbacks
    if trainer.early_stop is not None:
        summary["stopped_early"] = trainer.early_stop
    if trainer.stop_reason is None:
        summary.update(toy_metrics(artifact, parts.data, tc.eval_samples))
        summary.update(conditional_metrics(artifact, parts, cfg))
        table = table_metrics(artifact, parts.data) if writer else {}
        if table:
            summary["table_quality"] = {k: v for k, v in table.items() if k != "protocol"}
            summary["eval_protocol"] = table["protocol"]
        if text_eval is not None:
            summary.update({k: v for k, v in text_eval.last.items() if k != "protocol"})
            summary["eval_protocol"] = text_eval.last.get("protocol", {})
        if caption_eval is not None and caption_eval.last:
            summary.update(caption_eval.last["headline"])
            summary["captions"] = {k: v for k, v in caption_eval.last.items() if k != "headline"}
            summary["captions"]["encoder"] = parts.data.summary()
        if image_eval is not None:
            summary.update({k: v for k, v in image_eval.last.items() if k != "protocol"})
            summary["eval_protocol"] = image_eval.last.get("protocol", {})
            if image_eval.best:
                summary["best"] = image_eval.best
    summary["final"] = logger.last
    summary["warnings"] = logger.warnings
    summary["wall_seconds"] = round(time.perf_counter() - t0, 2)
    summary.update(provenance())
    # TensorBoard's HParams view: the resolved config against the final numbers (no-op without TensorBoard).
    logger.hparams(to_dict(cfg), {k: v for k, v in summary.items() if k not in ("steps",)})
    if files is not None:
        if trainer.stop_reason is None:
            artifact.export(files / "generator.safetensors")
            if parts.spec.is_text:
                write_samples(artifact, files / "samples.txt", n=200, seed=0)
            else:
                plot_samples(artifact, parts.data, files / "samples.png", f"{cfg.preset or 'run'}: final samples")
            if parts.spec.is_image:
                image_pictures(artifact, files, parts.data)
        plot_curves(files / "log.jsonl", files / "curves.png")
        atomic_write_text(files / "summary.json", json.dumps(summary, indent=2))
    if trainer.stop_reason is not None:
        raise TrainingDiverged(trainer.stop_reason)
    return RunResult(parts, trainer, model, artifact, summary, out_path)
