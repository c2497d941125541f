"""Scikit-learn-like facades: they assemble parts and hand them to the trainer, never loop."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import load_file
from torch import nn

from ganforge.config import Config, from_dict, load_yaml, to_dict
from ganforge.nn import build_generator
from ganforge.registry import ConfigError
from ganforge.training.assemble import build_prior
from ganforge.training.run import RunResult, export_generator, sample_from, train
from ganforge.training.trainer import Prior


class GAN:
    """A GAN composed from named parts or your own modules.

    >>> import torch, ganforge
    >>> G = torch.nn.Sequential(torch.nn.Linear(2, 64), torch.nn.ReLU(), torch.nn.Linear(64, 2))
    >>> D = torch.nn.Sequential(torch.nn.Linear(2, 64), torch.nn.LeakyReLU(0.2), torch.nn.Linear(64, 1),
    ...                         torch.nn.Flatten(0))
    >>> gan = ganforge.GAN(generator=G, discriminator=D, loss="nonsaturating", z_dim=2,
    ...                    train={"steps": 20, "progress": False})
    >>> x = gan.fit(torch.randn(512, 2)).sample(8)
    >>> tuple(x.shape)
    (8, 2)

    ``config`` is a preset name, a YAML path, a :class:`Config` or a nested dict; keyword sections
    (``train={...}``, ``optim_g={...}``, ...) are merged onto it and validated like ``--set``.
    """

    def __init__(self, config: str | Config | dict[str, Any] | None = None, *,
                 generator: str | nn.Module | None = None, discriminator: str | nn.Module | None = None,
                 loss: str | None = None, z_dim: int | None = None, noise: str | None = None,
                 **sections: Any) -> None:
        if isinstance(config, Config):
            base = to_dict(config)
        elif isinstance(config, str):
            base = load_yaml(config)
        else:
            base = dict(config or {})
        model: dict[str, Any] = {}
        self._g_module = generator if isinstance(generator, nn.Module) else None
        self._d_module = discriminator if isinstance(discriminator, nn.Module) else None
        if isinstance(generator, str):
            model["generator"] = {"name": generator}
        if isinstance(discriminator, str):
            model["discriminator"] = {"name": discriminator}
        if loss is not None:
            model["loss"] = {"name": loss}
        if z_dim is not None:
            model["z_dim"] = z_dim
        if noise is not None:
            model["noise"] = noise
        from ganforge.config import _merge
        self.config: Config = from_dict(_merge(_merge(base, {"model": model} if model else {}), sections))
        self.result: RunResult | None = None

    def fit(self, data: Any = None, out: str | Path | None = None, steps: int | None = None,
            callbacks: list[Any] | None = None) -> GAN:
        """Train on ``data`` (a tensor, a data set name, or an object with ``sample``; default: the
        config's data set). With ``out`` the run folder is written."""
        if steps is not None:
            self.config.train.steps = steps
        self.result = train(self.config, out, data=data, generator=self._g_module,
                            discriminator=self._d_module, callbacks=callbacks)
        return self

    @property
    def generator(self) -> nn.Module:
        """The model that samples: the EMA generator when EMA is on."""
        if self.result is None:
            raise RuntimeError("call fit() first")
        return self.result.model

    @property
    def summary(self) -> dict[str, Any]:
        if self.result is None:
            raise RuntimeError("call fit() first")
        return self.result.summary

    def sample(self, n: int, seed: int = 0, label: int | None = None) -> torch.Tensor:
        """``n`` samples from the trained generator; ``label`` asks a conditional one for one class."""
        prior = self.result.parts.prior if self.result else None
        if prior is None:
            raise RuntimeError("call fit() first")
        return sample_from(self.generator, prior, n, seed=seed, device=self.config.train.device,
                           labels=_labels(prior, n, label))


    def save(self, path: str | Path) -> None:
        """Save the generator (weights as safetensors, config as metadata) for :func:`load`."""
        parts = self.result.parts if self.result else None
        if parts is None:
            raise RuntimeError("call fit() first")
        export_generator(Path(path), self.generator, self.config, tuple(parts.data.shape),
                         custom=self._g_module is not None)


class LoadedGenerator:
    """A generator restored by :func:`load`: ``sample(n)`` and the module itself."""

    def __init__(self, module: nn.Module, prior: Prior, meta: dict[str, Any]) -> None:
        self.module, self.prior, self.meta = module.eval(), prior, meta

    def sample(self, n: int, seed: int = 0, label: int | None = None) -> torch.Tensor:
        """``n`` samples; ``label`` asks a conditional generator for one class."""
        return sample_from(self.module, self.prior, n, seed=seed, labels=_labels(self.prior, n, label))


def _labels(prior: Prior, n: int, label: int | None) -> torch.Tensor | None:
    if label is None:
        return None
    if not prior.classes:
        raise ConfigError("--label: this generator is not conditional (it was trained without classes)")
    if not 0 <= label < prior.classes:
        raise ConfigError(f"--label must lie in 0..{prior.classes - 1}, got {label}")
    return torch.full((n,), label, dtype=torch.long)


def load(path: str | Path, generator: nn.Module | None = None) -> LoadedGenerator:
    """Load a saved generator (a run folder or its ``generator.safetensors``); no code is unpickled.

    A generator built from your own module needs that module passed as ``generator=``.
    """
    path = Path(path)
    if path.is_dir():
        path = path / "generator.safetensors"
    if not path.is_file():
        raise ConfigError(f"no generator at {path}")
    with safe_open(str(path), framework="pt") as f:
        raw = (f.metadata() or {}).get("ganforge")
    if raw is None:
        raise ConfigError(f"{path} is not a ganforge generator file")
    meta = json.loads(raw)
    cfg = from_dict({"model": meta["model"]})
    model_cfg, prior = cfg.model, build_prior(cfg)
    if generator is None:
        if meta.get("custom"):
            raise ConfigError(f"{path} holds weights of a user-defined generator: pass generator=YourModule()")
        if model_cfg.family == "vae":
            from ganforge.baselines.vae import build_vae
            generator = build_vae(model_cfg, tuple(meta["shape"]))
        else:
            generator = build_generator(model_cfg.generator, prior.dim, tuple(meta["shape"]))
    generator.load_state_dict(load_file(str(path)))
    return LoadedGenerator(generator, prior, meta)
