"""``ganforge.evaluate``: one entry point from anything that makes images to numbers with their protocol.

Sources: a run folder, a saved generator (:class:`~ganforge.generator.GeneratorArtifact`), a
:class:`~ganforge.api.GAN` (anything with an ``artifact``), a module with ``z_dim``, a
tensor of images, a folder of image files, an ``.npz``/``.npy`` array file, or a data set spec such as
``mnist:train5k``. References: a data set spec (default ``mnist:heldout``), a tensor, a folder or an
array file. Reference statistics are computed once per process and reused.

The feature network follows the images (``extractor="auto"``, see
:func:`~ganforge.metrics.features.choose_extractor`), and a result says when its numbers mean little:
digit features of non-digit images, generated and reference images of different shapes, or too few
samples for the metric (``result["warnings"]``, also printed to stderr).
"""
from __future__ import annotations

import itertools
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ganforge.data import DATASETS, build_dataset
from ganforge.data.imagefiles import list_image_files
from ganforge.data.images import folder_image_shape, load_image_folder
from ganforge.data.mnist import to_tensor_images
from ganforge.generator import GeneratorArtifact, Prior, load, output_x, sampling_mode
from ganforge.metrics import digits as _digits  # noqa: F401  (registers the "digits" extractor)
from ganforge.metrics.features import (
    DIGIT_SHAPE,
    FEATURE_EXTRACTORS,
    FeatureExtractor,
    get_extractor,
    resolve_extractor,
    shape_text,
)
from ganforge.metrics.modes import stacked_mnist_modes
from ganforge.metrics.pipeline import IMAGE_METRICS, compute_image_metrics
from ganforge.metrics.stats import FeatureStats, collect
from ganforge.nn import module_device
from ganforge.registry import ConfigError, closest

ALL_METRICS = (*IMAGE_METRICS, "modes")
DEFAULT_METRICS = ("fid", "kid", "is", "pr", "dc")
# The held-out split of each data set that has one: the default reference of its runs.
HELDOUT = {"mnist": "mnist:heldout", "fashion-mnist": "fashion-mnist:test", "cifar10": "cifar10:test"}
_REFERENCE_CACHE: dict[tuple[str, str, str, int, tuple[int, ...]], FeatureStats] = {}
# Fewest samples for a number worth reading. FID: as many as feature dimensions (2,048 for Inception),
# below which the covariance is singular, and never under 1,000: FID's bias grows as 1/n and dominates
# small sets (Heusel et al. recommend 10k+, Chong & Forsyth 2020 show the bias at n < 2k). KID is unbiased,
# but its kernel estimate over fewer rows than feature dimensions is too noisy to rank models. Precision /
# recall and density / coverage: k-NN balls over fewer than about 1,000 points are too coarse
# (Kynkaanniemi et al. 2019 use 50k).
MIN_FID_SAMPLES = 1000
MIN_MANIFOLD_SAMPLES = 1000


def parse_metrics(metrics: str | list[str] | tuple[str, ...]) -> list[str]:
    """``"fid,kid"`` or a list -> validated metric names."""
    names = [m.strip() for m in metrics.split(",")] if isinstance(metrics, str) else list(metrics)
    names = [m for m in names if m]
    for m in names:
        if m not in ALL_METRICS:
            raise ConfigError(f"unknown metric '{m}'{closest(m, ALL_METRICS)} (choices: {', '.join(ALL_METRICS)})")
    if not names:
        raise ConfigError("no metrics requested")
    return names


def dataset_images(spec: str) -> Tensor:
    """Images of a data set spec ``NAME[:SPLIT]`` (e.g. ``mnist:heldout``)."""
    name, _, split = spec.partition(":")
    if name not in DATASETS:
        raise ConfigError(f"unknown data set '{name}' in '{spec}'{closest(name, DATASETS.keys())}")
    data = build_dataset(name, {"split": split} if split else {})
    if not hasattr(data, "x"):
        raise ConfigError(f"data set '{spec}' is not held in memory as images")
    return data.x


def _array_file(path: Path) -> Tensor:
    with np.load(path, allow_pickle=False) as f:  # never unpickle: an array file is data only
        arr = f[f.files[0]] if hasattr(f, "files") else f
        arr = np.asarray(arr)
    if arr.dtype == np.uint8:
        return to_tensor_images(arr)
    t = torch.from_numpy(arr).float()
    return t.unsqueeze(1) if t.dim() == 3 else t


def load_images(spec: str | Path | Tensor, like: Tensor | None = None) -> tuple[Tensor, str]:
    """Images and a description from a tensor, a folder, an array file or a data set spec.

    A folder is read at the size and channels of ``like`` (images it is compared with) when given, else at
    what its files hold (:func:`~ganforge.data.images.folder_image_shape`: grey or colour, 28, 32 or 64 px)."""
    if isinstance(spec, Tensor):
        return spec, f"tensor{tuple(spec.shape)}"
    if hasattr(spec, "images") and hasattr(spec, "description"):  # a held-out part of the user's data
        return spec.images(), spec.description
    path = Path(spec)
    if path.is_dir():
        if like is not None:
            size, channels = int(like.shape[-1]), int(like.shape[1])
        else:
            size, channels, _ = folder_image_shape(list_image_files(path, 28, 1)[1])
        return load_image_folder(path, size, channels), f"folder:{path}"
    if path.suffix in (".npz", ".npy"):
        if not path.is_file():
            raise ConfigError(f"array file not found: {path}")
        return _array_file(path), f"file:{path.name}"
    if path.suffix or len(path.parts) > 1:
        raise ConfigError(f"no such run folder, image folder or array file: {path}")
    return dataset_images(str(spec)), str(spec)


def _as_generator(source: Any) -> tuple[nn.Module, Prior] | None:
    """(module, prior) of anything that generates: an artifact, a GAN (``.artifact``), an object with
    ``module`` and ``prior``, or a module with ``z_dim`` (a normal prior); None for image sets."""
    if hasattr(source, "artifact") and not isinstance(source, nn.Module):
        source = source.artifact
    if isinstance(source, GeneratorArtifact) or (hasattr(source, "module") and hasattr(source, "prior")):
        return source.module, source.prior
    if isinstance(source, nn.Module) and hasattr(source, "z_dim"):
        return source, Prior("normal", int(source.z_dim))
    return None


def _generator_batches(module: nn.Module, prior: Prior, n: int, batch: int, seed: int) -> Iterator[Tensor]:
    """Samples of a generator in batches; the noise is drawn at once so the batch size changes nothing.

    Eval mode and no-grad hold for each batch only, never across a ``yield``: a consumer that stops early
    (an extractor that cannot be built after the first batch) must not leave gradients off for the
    training loop that called the evaluation, nor the module in eval mode."""
    device = module_device(module)
    z = prior.sample(n, torch.Generator().manual_seed(seed))
    for i in range(0, n, batch):
        with sampling_mode(module):
            x = output_x(module(z[i:i + batch].to(device))).float().cpu()
        yield x


def _source_batches(source: Any, n: int | None, batch: int, seed: int,
                    like: Tensor | None) -> tuple[Callable[[], Iterator[Tensor]], int, str]:
    """(a batch iterator factory, the sample count, a description) for any supported source."""
    if isinstance(source, (str, Path)) and Path(source).is_dir() and (Path(source) / "config.yaml").is_file():
        desc = f"run:{source}"
        source = load(source)
    else:
        desc = ""
    gen = _as_generator(source)
    if gen is not None:
        count = n or 5000
        return (lambda: _generator_batches(*gen, count, batch, seed)), count, desc or type(source).__name__
    if isinstance(source, nn.Module):
        raise ConfigError("a module to evaluate needs a z_dim attribute (or pass a GAN / ganforge.load(...) result)")
    images, desc = load_images(source, like)
    count = min(n, len(images)) if n else len(images)
    # A seeded shuffle: files and data sets are often sorted by class, and the Inception Score's
    # splits (and any head-of-set subsample) assume samples in random order.
    order = torch.randperm(len(images), generator=torch.Generator().manual_seed(seed))[:count]
    return (lambda: (images[order[i:i + batch]] for i in range(0, count, batch))), count, desc


def reference_stats(reference: str | Path | Tensor, extractor: FeatureExtractor, batch: int = 500,
                    progress: bool = False,
                    loaded: tuple[Tensor, str] | None = None) -> tuple[FeatureStats, str, Tensor]:
    """Feature statistics of the reference set (all its images), cached per process.

    ``loaded`` is ``load_images(reference)`` when the caller already has it (no second decode)."""
    images, desc = loaded if loaded is not None else load_images(reference)
    # The shape too: one folder can be read at several sizes (each at the size of what it is compared with).
    key = (desc, extractor.name, extractor.sha256, len(images), tuple(images.shape[1:]))
    if isinstance(reference, Tensor) or key not in _REFERENCE_CACHE:
        stats = collect((images[i:i + batch] for i in range(0, len(images), batch)), extractor,
                        max_keep=len(images), progress=progress, total=-(-len(images) // batch))
        if isinstance(reference, Tensor):
            return stats, desc, images
        _REFERENCE_CACHE[key] = stats
    return _REFERENCE_CACHE[key], desc, images


def _warning(kind: str, message: str) -> dict[str, str]:
    """A warning as the training log writes them (``{"warning": kind, "message": ...}``)."""
    return {"warning": kind, "message": message}


def image_warnings(extractor: str, fake_shape: tuple[int, ...], real_shape: tuple[int, ...]) -> list[dict[str, str]]:
    """Warnings about what the images are: digit features of non-digit images, and generated and reference
    images of different shapes (each is converted for the extractor, but the metric then also measures that)."""
    out = []
    if extractor == "digits":
        odd = [shape_text(s) for s in dict.fromkeys((fake_shape, real_shape)) if s != DIGIT_SHAPE]
        if odd:
            out.append(_warning("extractor_mismatch", (
                f"the digits extractor is a classifier of 28x28 grey digits: its features mean little for "
                f"{' and '.join(odd)} images (use extractor auto or inception)")))
    if fake_shape != real_shape:
        out.append(_warning("shape_mismatch", (
            f"generated images are {shape_text(fake_shape)} but reference images are {shape_text(real_shape)}: "
            "both are converted for the extractor, so the numbers also measure that difference")))
    return out


def sample_warnings(metrics: list[str], protocol: dict[str, Any]) -> list[dict[str, str]]:
    """Warnings for metrics computed on too few samples to mean much, one per group of metrics that share
    counts and minimum, naming them, the counts and the recommended minimum (see :data:`MIN_FID_SAMPLES`)."""
    dim = int(protocol["feature_dim"])
    groups: dict[tuple[int, int, int], list[str]] = {}
    for m in metrics:
        if m == "fid":
            key = (max(dim, MIN_FID_SAMPLES), protocol["n_fake"], protocol["n_real"])
        elif m == "kid":  # KID sees the kept rows
            key = (dim, protocol["n_fake_kept"], protocol["n_real_kept"])
        elif m in ("pr", "dc"):
            key = (MIN_MANIFOLD_SAMPLES, protocol["n_fake_kept"], protocol["n_real_kept"])
        else:
            continue
        if min(key[1], key[2]) < key[0]:
            groups.setdefault(key, []).append(m)
    return [_warning("few_samples", (
        f"{', '.join(names)} on {n_fake:,} generated and {n_real:,} reference samples: fewer than the {need:,} "
        f"recommended{f' for {dim}-d features' if need == dim else ''}, so the numbers are noisy (FID also "
        "biased upwards): use more samples (n, eval.n or --n)")) for (need, n_fake, n_real), names in groups.items()]


def check_extractor_name(name: str) -> None:
    """A ConfigError for a name that is neither ``auto`` nor a registered extractor (nothing is built)."""
    if name != "auto" and name not in FEATURE_EXTRACTORS:
        choices = ["auto", *FEATURE_EXTRACTORS.keys()]
        raise ConfigError(f"unknown feature extractor '{name}'{closest(name, choices)} (choices: {', '.join(choices)})")


def evaluate(source: Any, reference: str | Path | Tensor = "mnist:heldout",
             metrics: str | list[str] | tuple[str, ...] = DEFAULT_METRICS, n: int | None = None,
             extractor: str = "auto", batch_size: int = 500, seed: int = 0, progress: bool = True,
             warn: bool = True) -> dict[str, Any]:
    """Evaluate generated (or real) images against a reference.

    ``metrics`` among fid, kid, is (Inception Score with the extractor's classifier), pr (precision
    and recall, k = 3), dc (density and coverage, k = 5) and modes (Stacked MNIST: modes covered of
    1,000 and KL to uniform). ``n`` samples are drawn from a generator (default 5,000; the reference's
    size is the usual choice) or taken from the head of an image set (default: all). ``extractor`` is a
    registered name or ``auto``: ``digits`` when generated and reference images are both 1x28x28, else
    ``inception`` (its weights file is fetched once; where it cannot be, an
    :class:`~ganforge.metrics.inception.ExtractorUnavailable` names the file, the URL and where to put
    it). Returns the numbers and a ``protocol`` entry with the extractor's name, SHA-256 and
    why it was used (``extractor_choice``), the sample counts, the reference and the resize rule; and,
    when the numbers mean little, ``warnings`` (``[{"warning": kind, "message": ...}]``), printed to
    stderr too unless ``warn`` is false (the training loop logs them instead).

    >>> import ganforge, torch
    >>> r = ganforge.evaluate(torch.rand(300, 1, 28, 28) * 2 - 1, metrics="fid", progress=False)
    >>> r["fid"] > 100  # uniform noise is far from digits
    True
    """
    names = parse_metrics(metrics)
    t0 = time.perf_counter()
    check_extractor_name(extractor)
    image_metrics = [m for m in names if m in IMAGE_METRICS]
    # A named extractor is built first, so missing weights fail before any work is done; auto waits for the
    # shapes. Without image metrics none is built (the modes metric has its own classifier).
    ext = get_extractor(extractor) if image_metrics and extractor != "auto" else None
    ref: tuple[Tensor, str] | None = None
    like = None
    source_is_folder = (isinstance(source, (str, Path)) and Path(source).is_dir()
                        and not (Path(source) / "config.yaml").is_file())
    reference_is_folder = isinstance(reference, (str, Path)) and Path(reference).is_dir()
    if image_metrics and (source_is_folder or not reference_is_folder):
        ref = load_images(reference)
        if source_is_folder:
            like = ref[0][:1]  # a folder of files is read at the reference's size
    # The source is resolved before the reference's features, so a bad one fails before the long part.
    batches, count, desc = _source_batches(source, n, batch_size, seed, like)
    stream = batches()
    first = next(stream, None)  # its shape picks the extractor; it is put back in front of the stream
    stream = itertools.chain([first] if first is not None else [], stream)
    if image_metrics and ref is None:  # a folder of reference files is read at the generated images' size
        ref = load_images(reference, like=first[:1] if first is not None else None)
    warnings: list[dict[str, str]] = []
    choice = ""
    real, ref_desc = None, ""
    if image_metrics:
        assert ref is not None
        real_shape = tuple(ref[0].shape[1:])
        fake_shape = tuple(first.shape[1:]) if first is not None else real_shape
        name, choice = resolve_extractor(extractor, fake_shape, real_shape)
        ext = ext or get_extractor(name)
        warnings += image_warnings(ext.name, fake_shape, real_shape)
        real, ref_desc, _ = reference_stats(reference, ext, batch_size, progress, loaded=ref)
    mode_batches: list[Tensor] = []

    def tapped() -> Iterator[Tensor]:
        for x in stream:
            if "modes" in names:
                mode_batches.append(x)
            yield x

    result: dict[str, Any] = {}
    if image_metrics:
        assert real is not None and ext is not None
        fake = collect(tapped(), ext, max_keep=count, progress=progress, total=-(-count // batch_size))
        result = compute_image_metrics(fake, real, image_metrics, ext, ref_desc)
        result["protocol"]["extractor_choice"] = choice
        warnings += sample_warnings(image_metrics, result["protocol"])
    else:
        mode_batches = list(stream)
    if "modes" in names:
        classify = get_extractor("digits").classify
        result.update(stacked_mnist_modes(torch.cat(mode_batches), classify))
    protocol = result.setdefault("protocol", {"extractor": "digits", "extractor_sha256": _digits.WEIGHTS_SHA256})
    protocol.update({"source": desc, "n": count, "seed": seed, "seconds": round(time.perf_counter() - t0, 2)})
    if warnings:
        result["warnings"] = warnings
        if warn:
            for w in warnings:  # once per call: each warning is made once
                print(f"ganforge: warning: {w['message']}", file=sys.stderr)
    return result
