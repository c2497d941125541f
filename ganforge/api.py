"""Scikit-learn-like facades: they assemble parts and hand them to the trainer, never loop."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from ganforge.config import Config, from_dict, load_yaml, merge, merge_config, to_dict
from ganforge.data.tensor import TensorData
from ganforge.generator import GeneratorArtifact, load
from ganforge.registry import ConfigError
from ganforge.training.callbacks import Interrupted
from ganforge.training.run import RunResult, train

# The artifact a generator is loaded as (kept under its earlier name too).
LoadedGenerator = GeneratorArtifact
__all__ = ["GAN", "LoadedGenerator", "load"]


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
        self.config: Config = from_dict(merge_config(merge(base, {"model": model} if model else {}), sections))
        self.result: RunResult | None = None

    def fit(self, data: Any = None, out: str | Path | None = None, steps: int | None = None,
            callbacks: list[Any] | None = None, standardize: bool = False, resume: bool = False) -> GAN:
        """Train on ``data`` (a tensor, a data set name, or a data source; default: the config's
        data set). With ``out`` the run folder is written; ``resume=True`` continues the run saved
        there (given the same data and modules). ``standardize`` trains on a float tensor
        standardized per feature; samples (and the saved generator's) come back in its units.

        SIGINT or SIGTERM during training saves a checkpoint and raises
        :class:`~ganforge.training.callbacks.Interrupted`, whose message says how to continue."""
        if resume and out is None:
            raise ConfigError("resume=True needs the run folder: out=")
        if steps is not None:
            self.config.train.steps = steps
        if standardize:
            if not isinstance(data, torch.Tensor):
                raise TypeError("standardize=True applies to a tensor passed as data")
            data = TensorData(data.float(), standardize=True)
        try:
            self.result = train(self.config, out, resume=resume, data=data, generator=self._g_module,
                                discriminator=self._d_module, callbacks=callbacks)
        except Interrupted as e:
            if e.resume is None:  # the command line cannot rebuild this run's data or modules
                given = "<the same data>" if data is not None else ""
                sep = ", " if given else ""
                e.resume = f"GAN(<the same arguments>).fit({given}{sep}out={str(out)!r}, resume=True)"
            raise
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

    @property
    def artifact(self) -> GeneratorArtifact:
        """The trained generator with its prior, data spec and output transform."""
        if self.result is None:
            raise RuntimeError("call fit() first")
        return self.result.artifact

    def sample(self, n: int, seed: int = 0, label: int | None = None, temperature: float | None = None,
               captions: list[str] | None = None, same_noise: bool = False) -> Any:
        """``n`` samples from the trained generator, in the data's units (sentences for text);
        ``label`` asks a conditional one for one class, ``temperature`` scales a text generator's
        sampling (below 1: safer and less varied). A text-to-image generator takes ``captions``:
        ``n`` images per caption, caption by caption; ``same_noise`` keeps the noise across captions."""
        return self.artifact.sample(n, seed=seed, label=label, device=self.config.train.device,
                                    temperature=temperature, captions=captions, same_noise=same_noise)

    def save(self, path: str | Path) -> None:
        """Save the generator (weights and fitted transform as safetensors, the rest as JSON) for :func:`load`."""
        self.artifact.export(path)
