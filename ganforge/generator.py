"""The trained generator as an artifact: its prior, sampling, export and load.

Everything that samples a generator goes through this module: training (sample plots, toy metrics),
metrics, pictures, the Python API and the CLI. It is a leaf with respect to training: it imports
networks, data descriptions and transforms, never the trainer, so every other part may import it.

An exported generator is one safetensors file (weights, plus the tensors of a fitted output
transform under ``transform/``) whose metadata is JSON: the model config that rebuilds the network,
the prior, the data spec and the transform's config. ``load(path).sample(n)`` therefore returns
data as the user gave it, and loading never unpickles anything.
"""
from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from torch import Tensor, nn

from ganforge.config import ModelConfig, from_dict, to_dict
from ganforge.data.transform import OutputTransform, load_transform
from ganforge.io import atomic_write, atomic_write_text
from ganforge.nn import build_generator, module_device
from ganforge.registry import ConfigError
from ganforge.spec import DataSpec
from ganforge.tensorfile import one_line, read_tensor_file

FORMAT = "ganforge-generator-2"
_TRANSFORM_PREFIX = "transform/"


class Prior:
    """The noise prior p_z (standard normal, or uniform on [-1, 1]) and any codes G is given.

    A sample is one vector ``[z, one-hot class, continuous codes, condition]``: ``classes`` > 0 adds
    a one-hot label (conditional GANs; InfoGAN's categorical code), drawn uniformly or at
    ``class_probs``; ``continuous`` adds codes uniform on [-1, 1] (InfoGAN); ``condition_dim`` > 0
    appends a condition vector that the data supplies (training-by-sampling, captions). A generator
    simply takes the whole vector, so sampling, export and evaluation treat every model alike.
    """

    def __init__(self, kind: str, dim: int, classes: int = 0, continuous: int = 0,
                 class_probs: list[float] | None = None, condition_dim: int = 0) -> None:
        if kind not in ("normal", "uniform"):
            raise ConfigError(f"model.noise: unknown prior '{kind}' (choices: normal, uniform)")
        if class_probs and (len(class_probs) != classes or min(class_probs) < 0 or sum(class_probs) <= 0):
            raise ConfigError(f"model.class_probs: need {classes} non-negative numbers, got {len(class_probs)}")
        self.kind, self.z_dim, self.classes, self.continuous = kind, dim, classes, continuous
        self.condition_dim = condition_dim
        # Labels are drawn uniformly unless the classes have known frequencies (self-conditioning).
        self.class_probs = torch.tensor(class_probs, dtype=torch.float64) if class_probs else None
        self.dim = dim + classes + continuous + condition_dim  # the generator's input width

    @classmethod
    def from_model(cls, m: ModelConfig, condition_dim: int = 0) -> Prior:
        """The prior a model config asks for (noise plus its labels or InfoGAN codes)."""
        return cls(m.noise, m.z_dim, m.classes, m.continuous_codes, m.class_probs, condition_dim)

    def draw(self, n: int, generator: torch.Generator | None = None, device: Any = "cpu",
             labels: Tensor | None = None, condition: Tensor | None = None) -> dict[str, Tensor]:
        """``n`` input vectors as a batch: ``v`` (G's input) and its parts ``y`` (labels) and
        ``codes`` (continuous codes) where present; ``labels`` fixes the classes, ``condition``
        supplies the data's condition vectors."""
        if self.kind == "normal":
            z = torch.randn(n, self.z_dim, generator=generator, device=device)
        else:
            z = torch.rand(n, self.z_dim, generator=generator, device=device) * 2 - 1
        out: dict[str, Tensor] = {}
        parts = [z]
        if self.classes:
            if labels is None and self.class_probs is not None:
                labels = torch.multinomial(self.class_probs.to(device), n, replacement=True, generator=generator)
            elif labels is None:
                labels = torch.randint(self.classes, (n,), generator=generator, device=device)
            out["y"] = labels.to(device).long()
            parts.append(F.one_hot(out["y"], self.classes).to(z.dtype))
        if self.continuous:
            out["codes"] = torch.rand(n, self.continuous, generator=generator, device=device) * 2 - 1
            parts.append(out["codes"])
        if self.condition_dim:
            if condition is None:
                raise ConfigError("this generator is conditioned on the data: pass condition vectors")
            out["c"] = condition.to(device, z.dtype)
            parts.append(out["c"])
        out["v"] = torch.cat(parts, dim=1) if len(parts) > 1 else z
        return out

    def sample(self, n: int, generator: torch.Generator | None = None, device: Any = "cpu",
               labels: Tensor | None = None, condition: Tensor | None = None) -> Tensor:
        """``n`` input vectors; ``labels`` (n,) fixes the class codes instead of drawing them."""
        return self.draw(n, generator, device, labels, condition)["v"]

    def codes(self, v: Tensor) -> tuple[Tensor | None, Tensor | None]:
        """The one-hot class part and the continuous part of sampled vectors (None where absent)."""
        one_hot = v[:, self.z_dim:self.z_dim + self.classes] if self.classes else None
        start = self.z_dim + self.classes
        cont = v[:, start:start + self.continuous] if self.continuous else None
        return one_hot, cont

    def config(self) -> dict[str, Any]:
        return {"kind": self.kind, "z_dim": self.z_dim, "classes": self.classes, "continuous": self.continuous,
                "class_probs": self.class_probs.tolist() if self.class_probs is not None else [],
                "condition_dim": self.condition_dim}

    @classmethod
    def from_config(cls, d: dict[str, Any]) -> Prior:
        return cls(d["kind"], d["z_dim"], d.get("classes", 0), d.get("continuous", 0), d.get("class_probs") or None,
                   d.get("condition_dim", 0))


@contextlib.contextmanager
def sampling_mode(module: nn.Module) -> Iterator[nn.Module]:
    """Eval mode and no gradients inside the block; the module's train/eval mode is restored even
    when sampling fails (batch norm must use its running statistics when sampling)."""
    was_training = module.training
    module.eval()
    try:
        with torch.no_grad():
            yield module
    finally:
        module.train(was_training)


@contextlib.contextmanager
def sampling_temperature(module: nn.Module, temperature: float) -> Iterator[nn.Module]:
    """Sample a text generator at ``temperature`` inside the block (its own value is restored)."""
    if not hasattr(module, "temperature"):
        raise ConfigError("--temperature applies to text generators (this one has no sampling temperature)")
    if not temperature > 0:
        raise ConfigError(f"--temperature must be positive, got {temperature}")
    old = module.temperature
    module.temperature = float(temperature)
    try:
        yield module
    finally:
        module.temperature = old


def output_x(out: Tensor | dict[str, Tensor]) -> Tensor:
    """A generator's sample: its output, or the ``x`` of the named outputs it returns."""
    return out["x"] if isinstance(out, dict) else out


def decode(module: nn.Module, v: Tensor) -> Tensor:
    """``module(v)`` in sampling mode on the module's device; the result on the CPU as float."""
    with sampling_mode(module):
        return output_x(module(v.to(module_device(module)))).float().cpu()


def sample(module: nn.Module, prior: Prior, n: int, seed: int = 1234, batch: int = 4096, device: Any = None,
           labels: Tensor | None = None, condition: Tensor | None = None) -> Tensor:
    """``n`` raw samples in sampling mode with a private RNG (training's RNG streams stay untouched),
    on ``device`` (default: the module's), returned on the CPU; ``labels`` (n,) fixes the class of
    each sample of a conditional model, ``condition`` (n, c) the data conditions."""
    return torch.cat(list(sample_batches(module, prior, n, seed, batch, device, labels, condition)))


def sample_batches(module: nn.Module, prior: Prior, n: int, seed: int = 1234, batch: int = 4096,
                   device: Any = None, labels: Tensor | None = None,
                   condition: Tensor | None = None) -> Iterator[Tensor]:
    """Raw samples in batches of ``batch`` (CPU; float, or int64 token ids), each drawn with the same private RNG as
    :func:`sample` would use, so the batch size changes the noise only in how it is split.

    Randomness inside the network (Gumbel-softmax, a VAE's output noise) draws from torch's global
    RNG: it is forked and seeded with ``seed`` here, so samples are a function of the seed and
    training's RNG streams stay untouched."""
    device = module_device(module) if device is None else device
    gen = torch.Generator().manual_seed(seed)
    dev = torch.device(device)
    cuda = [dev.index or 0] if dev.type == "cuda" else []
    with sampling_mode(module), torch.random.fork_rng(devices=cuda):
        torch.default_generator.manual_seed(seed)
        if cuda:
            torch.cuda.manual_seed(seed)  # the forked device's generator, restored on exit
        for i in range(0, n, batch):
            j = min(n, i + batch)
            v = prior.sample(j - i, gen, labels=None if labels is None else labels[i:j],
                             condition=None if condition is None else condition[i:j])
            x = output_x(module(v.to(device)))
            yield (x.float() if x.is_floating_point() else x).cpu()  # token ids stay integers


def build_generator_module(model: ModelConfig, spec: DataSpec, in_dim: int) -> nn.Module:
    """The generator network a model config names (the VAE's decoder-with-encoder for ``family: vae``)."""
    if model.family == "vae":
        from ganforge.nn.vae import build_vae

        return build_vae(model, spec)
    return build_generator(model.generator, spec, in_dim)


class GeneratorArtifact:
    """A trained generator: the module, its prior, the data spec and the fitted output transform.

    ``sample(n)`` returns data as the user gave it (the transform inverted); ``raw=True`` returns
    the network's output. ``export(path)`` writes it; :func:`load` reads it back.
    """

    def __init__(self, module: nn.Module, prior: Prior, spec: DataSpec, model: ModelConfig | dict[str, Any],
                 transform: OutputTransform | None = None, custom: bool = False) -> None:
        self.module, self.prior, self.spec, self.transform, self.custom = module, prior, spec, transform, custom
        self.model_config = model if isinstance(model, dict) else to_dict(model)

    @property
    def meta(self) -> dict[str, Any]:
        """What the JSON beside the weights holds."""
        meta: dict[str, Any] = {"format": FORMAT, "custom": self.custom, "shape": list(self.spec.shape),
                                "spec": self.spec.to_dict(), "prior": self.prior.config(),
                                "model": self.model_config, "transform": None}
        if self.transform is not None:
            meta["transform"] = {"kind": self.transform.kind, "config": self.transform.config()}
        return meta

    def sample(self, n: int, seed: int = 0, label: int | None = None, raw: bool = False,
               condition: Tensor | None = None, device: Any = None, conditions: dict[str, Any] | None = None,
               temperature: float | None = None, captions: list[str] | None = None, same_noise: bool = False) -> Any:
        """``n`` samples; ``label`` asks a conditional generator for one class. A text-to-image
        generator takes ``captions`` (a list of K): ``n`` images per caption, caption by caption
        (K * n in all); ``same_noise`` gives caption k's i-th image the same noise for every k, so
        only the caption changes along a column (style kept, content changed). A generator
        conditioned on its data (a table's condition vectors) draws its conditions from the fitted
        transform, or takes ``condition`` vectors, or ``conditions`` as ``{column: value}``.
        ``temperature`` divides the logits of a text generator's sampling (1 = as trained); a text
        generator returns sentences (``raw=True``: token ids)."""
        if temperature is not None:
            with sampling_temperature(self.module, temperature):
                return self.sample(n, seed, label, raw, condition, device, conditions)
        if captions is not None:
            return self._caption_sample(n, captions, seed, same_noise, device)
        if conditions:
            if not hasattr(self.transform, "conditional_sample"):
                raise ConfigError("conditions= apply to generators of tables (trained with discrete columns)")
            return self.transform.conditional_sample(
                lambda m, s, c: self.sample(m, seed=s, condition=c, device=device), n, seed, conditions)
        if self.prior.condition_dim and condition is None and hasattr(self.transform, "condition_vectors"):
            condition = self.transform.condition_vectors(n, torch.Generator().manual_seed(seed + 1))
        x = sample(self.module, self.prior, n, seed=seed, device=device, labels=_labels(self.prior, n, label),
                   condition=condition)
        return x if raw or self.transform is None else self.transform.inverse_transform(x)

    def _caption_sample(self, n: int, captions: list[str], seed: int, same_noise: bool, device: Any) -> Tensor:
        if not hasattr(self.transform, "encode"):
            raise ConfigError("captions apply to text-to-image generators (trained on captioned images)")
        if isinstance(captions, str) or not captions:
            raise ConfigError("captions: give a list of one or more captions")
        cond = self.transform.encode(list(captions)).repeat_interleave(n, 0)  # (K * n, dim), caption-major
        if not same_noise:
            return sample(self.module, self.prior, len(cond), seed=seed, device=device, condition=cond)
        # The noise of sample(n, seed) for the first caption, repeated for every other one.
        gen = torch.Generator().manual_seed(seed)
        z = self.prior.draw(n, gen, condition=cond[:n])["v"][:, :self.prior.z_dim]
        v = torch.cat([z.repeat(len(captions), 1), cond], dim=1)
        return torch.cat([decode(self.module, v[i:i + 4096]) for i in range(0, len(v), 4096)])

    def export(self, path: str | Path) -> None:
        """Write the weights (safetensors) with the metadata inside, and the metadata again as JSON."""
        path = Path(path)
        meta = self.meta
        tensors = {k: v.detach().cpu().contiguous().clone() for k, v in self.module.state_dict().items()}
        if self.transform is not None:
            tensors.update({_TRANSFORM_PREFIX + k: v.detach().cpu().contiguous().clone()
                            for k, v in self.transform.tensors().items()})
        atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata={"ganforge": json.dumps(meta)}))
        atomic_write_text(path.with_suffix(".json"), json.dumps(meta, indent=2))


def _labels(prior: Prior, n: int, label: int | None) -> Tensor | None:
    if label is None:
        return None
    if not prior.classes:
        raise ConfigError("--label: this generator is not conditional (it was trained without classes)")
    if not 0 <= label < prior.classes:
        raise ConfigError(f"--label must lie in 0..{prior.classes - 1}, got {label}")
    return torch.full((n,), label, dtype=torch.long)


def weights_mismatch(module: nn.Module, weights: dict[str, Tensor]) -> str | None:
    """How ``weights`` fail to fit ``module`` (the first wrong shape, missing or unexpected names), or None."""
    own = module.state_dict()
    shapes = [k for k in own if k in weights and tuple(own[k].shape) != tuple(getattr(weights[k], "shape", ()))]
    missing = [k for k in own if k not in weights]
    unexpected = [k for k in weights if k not in own]
    why = []
    if shapes:
        k = shapes[0]
        theirs = tuple(getattr(weights[k], "shape", ()))
        why.append(f"{k} has shape {theirs} in the file but {tuple(own[k].shape)} in the model"
                   + (f" ({len(shapes) - 1} more shapes differ)" if len(shapes) > 1 else ""))
    if missing:
        why.append(f"{len(missing)} weights of the model are not in the file, e.g. {missing[0]}")
    if unexpected:
        why.append(f"{len(unexpected)} weights in the file are not in the model, e.g. {unexpected[0]}")
    return "; ".join(why) or None


def load(path: str | Path, generator: nn.Module | None = None) -> GeneratorArtifact:
    """Load a saved generator (a run folder or its ``generator.safetensors``); no code is unpickled.

    A generator built from your own module needs that module passed as ``generator=``. Anything that
    is not a ganforge generator file (a pickle, another program's safetensors file, damaged
    metadata, weights of another model) is a :class:`ConfigError` of one line naming the file.
    """
    path = Path(path)
    if path.is_dir():
        path = path / "generator.safetensors"
    if not path.is_file():
        raise ConfigError(f"no generator at {path}")
    meta, tensors = read_tensor_file(path, "ganforge", "ganforge generator file")
    try:
        if not isinstance(meta, dict):
            raise TypeError(f"the metadata is a {type(meta).__name__}, not a mapping")
        if meta.get("custom") and generator is None:
            raise ConfigError(f"{path} holds weights of a user-defined generator module, which its config cannot "
                              "rebuild: load it from Python with ganforge.load(path, generator=YourModule())")
        model = from_dict({"model": meta["model"]}).model
        # Format 1 (before the artifact) kept no spec or prior: both follow from the shape and model.
        spec = DataSpec.from_dict(meta["spec"]) if "spec" in meta else DataSpec(tuple(meta["shape"]))
        prior = Prior.from_config(meta["prior"]) if "prior" in meta else Prior.from_model(model)
        if generator is None:
            generator = build_generator_module(model, spec, prior.dim)
    except ConfigError as e:  # name the file: the bad value is in it, not in anything the user typed
        if str(e).startswith(str(path)):
            raise
        raise ConfigError(f"{path}: {e}") from None
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as e:  # metadata not as export() writes it
        raise ConfigError(f"{path}: a ganforge generator file with corrupted metadata ({type(e).__name__}: "
                          f"{one_line(e)})") from None
    weights = {k: v for k, v in tensors.items() if not k.startswith(_TRANSFORM_PREFIX)}
    mismatch = weights_mismatch(generator, weights)
    if mismatch is not None:
        raise ConfigError(f"{path} was written for a different model: {mismatch}")
    try:
        generator.load_state_dict(weights)
    except RuntimeError as e:  # what the shape check above cannot see (a module's own load hooks)
        raise ConfigError(f"{path} was written for a different model: {one_line(e)}") from None
    transform = None
    if meta.get("transform"):
        try:
            t = meta["transform"]
            if t["kind"] == "tabular":
                import ganforge.data.table_transform  # noqa: F401  (registers the table transformer; needs pandas)
            elif t["kind"] == "captions":
                import ganforge.data.captioned  # noqa: F401  (registers the caption transform)
            transform = load_transform(t["kind"], t["config"], {k[len(_TRANSFORM_PREFIX):]: v
                                                                for k, v in tensors.items()
                                                                if k.startswith(_TRANSFORM_PREFIX)})
        except ConfigError as e:
            raise ConfigError(f"{path}: {e}") from None
        except (KeyError, TypeError, ValueError, AttributeError, IndexError) as e:
            raise ConfigError(f"{path}: its output transform cannot be rebuilt ({type(e).__name__}: "
                              f"{one_line(e)})") from None
    return GeneratorArtifact(generator.eval(), prior, spec, meta["model"], transform, bool(meta.get("custom")))
