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
from ganforge.generator import GeneratorArtifact, weights_mismatch
from ganforge.io import atomic_write_text
from ganforge.kinds import DataKind, RunContext, kind_for, load_plugins
from ganforge.kinds.images import BEST
from ganforge.provenance import provenance
from ganforge.registry import ConfigError
from ganforge.report.plots import plot_curves
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
from ganforge.training.trainer import GANParts, Trainer

CHECKPOINT = "checkpoints/last.safetensors"
__all__ = ["BEST", "CHECKPOINT", "RunResult", "load_run_config", "prepare_out", "train"]


@dataclass
class RunResult:
    """What :func:`train` returns: the trained parts, the sampling model, its artifact and the summary."""

    parts: GANParts
    trainer: Trainer
    model: nn.Module  # what to sample from: the EMA generator when EMA is on
    artifact: GeneratorArtifact  # the model with its prior, data spec and output transform
    summary: dict[str, Any]
    out: Path | None


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


def agreed(problem: str | None, world: World) -> None:
    """Raise rank 0's ``problem`` (or any process's) on every process: none goes on into a refused run."""
    problem = next((p for p in gather(problem, world) if p is not None), None)
    if problem is not None:
        raise ConfigError(problem)


def open_run(cfg: Config, out: Path | None, resume: bool, world: World, own_modules: tuple[bool, bool]
             ) -> tuple[bool, dict[str, Any] | None]:
    """Check the run folder (rank 0) and read the checkpoint of a resumed run before anything is
    written (a refused resume leaves the run as it was); a new run's config is written. Returns
    whether the run resumes and the checkpoint (rank 0's; None elsewhere)."""
    if resume and out is not None and world.writer and restart_unsaved(out):
        resume = False
    resume = bool(broadcast(resume, world)) if world.distributed else resume
    state, problem = None, None
    if out is not None and world.writer:
        try:
            prepare_out(out, resume)
            if resume:
                state = read_checkpoint(out, *own_modules)
            else:
                atomic_write_text(out / "config.yaml", yaml.safe_dump(to_dict(cfg), sort_keys=False))
        except ConfigError as e:
            problem = str(e)
    agreed(problem, world)
    return resume, state


def technique_callbacks(cfg: Config, parts: GANParts) -> tuple[list[Any], EMA | None]:
    """The callbacks of the configured techniques and schedules: learning-rate decay, the adversarial
    learning rate of a text GAN, EMA."""
    tc, cbs = cfg.train, []
    if tc.lr_decay != "none":
        if tc.lr_decay not in ("linear", "cosine"):
            raise ConfigError(f"train.lr_decay: unknown schedule '{tc.lr_decay}' (choices: none, linear, cosine)")
        cbs.append(LRDecay(tc.lr_decay, tc.steps, [parts.opt_g, parts.opt_d]))
    start = getattr(parts.objective, "adversarial_start", None)
    if cfg.model.text.adversarial_lr_g > 0 and start is not None and parts.objective.method != "mle":
        if tc.lr_decay != "none":
            raise ConfigError("model.text.adversarial_lr_g and train.lr_decay both set G's learning rate; use one")
        cbs.append(SetLR(parts.opt_g, start, cfg.model.text.adversarial_lr_g))
    ema = EMA(parts.generator, cfg.techniques.ema, cfg.techniques.ema_start) if cfg.techniques.ema > 0 else None
    return cbs + ([ema] if ema is not None else []), ema


class SamplePicture:
    """Every ``train.sample_every`` steps: the kind's picture of the samples in ``samples/`` (TensorBoard too)."""

    state_key = "sample_picture"

    def __init__(self, kind: DataKind, run: RunContext) -> None:
        self.kind, self.run = kind, run
        assert run.files is not None
        (run.files / "samples").mkdir(exist_ok=True)

    def __call__(self, trainer: Trainer) -> None:
        run = self.run
        path = run.files / "samples" / f"step_{trainer.step_num:07d}.png"  # type: ignore[operator]
        written = self.kind.picture(run.artifact, run.data, path, f"{run.cfg.preset or 'run'} step {trainer.step_num}")
        if written is not None and written.is_file():
            run.logger.image(trainer.step_num, "samples", written)


def saving_callbacks(cfg: Config, out: Path | None, files: Path | None, own_modules: tuple[bool, bool],
                     logger: Logger, world: World) -> tuple[list[Any], NanRollback | None]:
    """Last in the list: the record of the modules' origin, the checkpoint, the NaN rollback."""
    tc, cbs, rollbacks = cfg.train, [], None
    if out is not None:
        # Records whether G / D are the caller's own modules, so `--resume` can say it cannot rebuild them.
        cbs.append(ModuleOrigin(*own_modules))
        # Every process takes part in a checkpoint (it gathers their random streams); rank 0 writes it.
        cbs.append(Checkpoint(files / CHECKPOINT if files else None, tc.checkpoint_every))
    if tc.nan_policy == "rollback":
        # After the checkpoint: a step's state is judged (and a good one saved) before it is rolled back.
        rollbacks = NanRollback(logger, lambda t: restore_last(t, out, world), tc.nan_lr_factor, tc.nan_max_rollbacks)
        cbs.append(rollbacks)
    return cbs, rollbacks


def fit(trainer: Trainer, run: RunContext, out: Path | None, world: World, t0: float, command_line: bool) -> None:
    """Train; an interrupt writes an ``interrupted`` summary and raises :class:`Interrupted` with the
    command that continues the run (when the command line can rebuild it: ``command_line``)."""
    ftz = run.cfg.train.flush_denormal and torch.set_flush_denormal(True)  # False where the CPU cannot
    with trainer.stopping_on_signals():  # until every process has left: see stopping_on_signals
        try:
            trainer.fit()
        finally:
            run.logger.close()
            if ftz:
                torch.set_flush_denormal(False)
        if trainer.interrupted is None:
            return
        if run.files is not None:
            atomic_write_text(run.files / "summary.json", json.dumps(
                {"preset": run.cfg.preset, "steps": trainer.step_num, "status": "interrupted",
                 "signal": trainer.interrupted, "wall_seconds": round(time.perf_counter() - t0, 2)}
                | provenance(), indent=2))
        # No process leaves before rank 0 has written: torchrun ends the others once one exits.
        barrier(world)
        command = shlex.join(["ganforge", "train", "--resume", str(out)]) if command_line and out else None
        raise Interrupted(trainer.interrupted, trainer.step_num, out, command)


def run_summary(trainer: Trainer, kind: DataKind, run: RunContext, evaluations: list[Any],
                fired: list[tuple[str, str]], rollbacks: NanRollback | None, t0: float) -> dict[str, Any]:
    """``summary.json``: the status, the kind's entries and its evaluations' last results, the final logs."""
    summary: dict[str, Any] = {"preset": run.cfg.preset, "kind": kind.name, "steps": trainer.step_num,
                               "status": run_status(trainer.stop_reason, fired)}
    if rollbacks is not None and rollbacks.rollbacks:
        summary["nan_rollbacks"] = rollbacks.rollbacks
    if trainer.early_stop is not None:
        summary["stopped_early"] = trainer.early_stop
    if trainer.stop_reason is None and trainer.world.writer:
        summary.update(kind.summary(run))
        for e in evaluations:
            summary.update(e.summary())
    summary["final"] = run.logger.last
    summary["warnings"] = run.logger.warnings
    summary["wall_seconds"] = round(time.perf_counter() - t0, 2)
    return summary | provenance()


def train(cfg: Config, out: str | Path | None = None, resume: bool = False, data: Any = None,
          generator: nn.Module | None = None, discriminator: nn.Module | None = None,
          callbacks: list[Any] | None = None, world: World | None = None) -> RunResult:
    """Train as configured; with ``out``, the run folder is written (and resumable).

    ``world`` places this process in a multi-process run (:func:`~ganforge.training.distributed.init_from_env`
    under torchrun): ``train.batch_size`` is then the global batch, each process draws its own
    share (its own random stream and data shard), G and D are kept in step by DDP, and only rank 0
    writes files, shows progress and evaluates. What the data's kind adds (evaluations, pictures,
    summary entries) comes from :mod:`ganforge.kinds`.
    """
    t0, world, tc = time.perf_counter(), world or SINGLE, cfg.train
    if tc.nan_policy not in NAN_POLICIES:  # before anything is written
        raise ConfigError(f"train.nan_policy: unknown policy '{tc.nan_policy}' (choices: {', '.join(NAN_POLICIES)})")
    load_plugins(cfg.plugins)
    local_batch(tc.batch_size, world, tc.accumulate)  # a batch that does not divide fails first
    if world.distributed and tc.device == "cuda":
        cfg = copy.deepcopy(cfg)
        cfg.train.device = device_for("cuda", world)  # one GPU per process
    out_path, own = (Path(out) if out is not None else None), (generator is not None, discriminator is not None)
    resume, state = open_run(cfg, out_path, resume, world, own)
    files = out_path if world.writer else None  # where this process writes (nowhere, except on rank 0)
    torch.manual_seed(tc.seed)  # the same initial weights in every process
    # Captioned data: its caption encoder is kept in the run folder and in checkpoints; rank 0 finds or fits it once.
    parts = assemble(cfg, data, generator, discriminator, EncoderCache(files / CAPTION_ENCODER if files else None,
                                                                     state, world))
    if resume and out_path is not None:  # weights of another model are refused before any file is opened
        agreed(modules_mismatch(out_path / CHECKPOINT, state, parts) if world.writer else None, world)
    logger = Logger(files / "log.jsonl" if files else None, tc.log_every, tc.progress and world.writer,
                    files / "tensorboard" if (files and tc.tensorboard) else None)
    health = Health(logger, cfg.health, bool(getattr(parts.objective, "probabilistic", False)),
                    "rolling back to the last checkpoint if it can (train.nan_policy: rollback)"
                    if tc.nan_policy == "rollback" else "stopping, last good checkpoint kept")
    techniques, ema = technique_callbacks(cfg, parts)
    # The sampling model (the EMA copy when on) with its prior, data spec and output transform.
    artifact = GeneratorArtifact(ema.model if ema is not None else parts.generator, parts.prior, parts.spec,
                                 cfg.model, parts.transform, custom=own[0])
    kind = kind_for(parts.spec, parts.transform)
    run = RunContext(cfg, parts, artifact, logger, health, files, own_data=data is None or isinstance(data, str))
    evaluations = kind.evaluations(run) if world.writer else []
    final_checks = FinalChecks(logger, cfg.health, health, evaluations) if world.writer else None
    # The reference batch first, so the EMA copy and the pictures see this step's statistics; the
    # caller's callbacks before the checkpoint, which then holds their state after that step.
    ref = cfg.model.generator.reference_batch
    cbs = [*([ReferenceBatch(parts.prior, ref, tc.seed)] if ref and not own[0] else []), logger, health,
           *techniques, *(Every(tc.eval_every, e) for e in evaluations), *([final_checks] if final_checks else []),
           *([Every(tc.sample_every, SamplePicture(kind, run))] if files else []), *(callbacks or [])]
    saving, rollbacks = saving_callbacks(cfg, out_path, files, own, logger, world)
    trainer = Trainer(parts, tc, cbs + saving, device=tc.device, world=world)
    if resume and out_path is not None:
        resume_from(trainer, out_path / CHECKPOINT, state, world)
        if world.writer:
            atomic_write_text(out_path / "config.yaml", yaml.safe_dump(to_dict(cfg), sort_keys=False))
    # The command line can continue an interrupted run only when its config says everything.
    own_data = data is None or (isinstance(data, str) and data == cfg.data.name)
    fit(trainer, run, out_path, world, t0, own_data and not any(own))
    summary = run_summary(trainer, kind, run, evaluations, final_checks.fired if final_checks else [], rollbacks, t0)
    # TensorBoard's HParams view: the resolved config against the final numbers (no-op without TensorBoard).
    logger.hparams(to_dict(cfg), {k: v for k, v in summary.items() if k not in ("steps",)})
    if files is not None:
        if trainer.stop_reason is None:
            artifact.export(files / "generator.safetensors")
            kind.finish(run, files)
        plot_curves(files / "log.jsonl", files / "curves.png")
        atomic_write_text(files / "summary.json", json.dumps(summary, indent=2))
    if trainer.stop_reason is not None:
        raise TrainingDiverged(trainer.stop_reason)
    return RunResult(parts, trainer, artifact.module, artifact, summary, out_path)
