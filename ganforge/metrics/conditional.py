"""What conditioning achieved, read by the digit classifier.

- :func:`label_accuracy`: a conditional generator asked for class k makes digit k how often?
- :func:`categorical_code_accuracy`: InfoGAN's unsupervised accuracy: samples of each categorical
  code value are classified, and codes are mapped one-to-one to digits by the best assignment
  (Hungarian algorithm) before counting agreement, as in the InfoGAN paper.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from torch import nn

from ganforge.generator import sample, sampling_mode
from ganforge.metrics.features import get_extractor
from ganforge.nn import module_device


def _classify_per_class(model: nn.Module, prior: Any, per_class: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    classify = get_extractor("digits").classify  # type: ignore[attr-defined]
    labels = torch.arange(prior.classes).repeat_interleave(per_class)
    x = sample(model, prior, len(labels), seed=seed, labels=labels)
    pred = torch.cat([classify(x[i:i + 1000]).argmax(1) for i in range(0, len(x), 1000)])
    return labels.numpy(), pred.numpy()


def label_accuracy(model: nn.Module, prior: Any, per_class: int = 500, seed: int = 0) -> dict[str, Any]:
    """Fraction of samples generated for label k that the digit classifier reads as k (and per class)."""
    labels, pred = _classify_per_class(model, prior, per_class, seed)
    per = [float((pred[labels == k] == k).mean()) for k in range(prior.classes)]
    return {"label_accuracy": float((pred == labels).mean()), "label_accuracy_per_class": per}


def categorical_code_accuracy(model: nn.Module, prior: Any, per_class: int = 500, seed: int = 0) -> dict[str, Any]:
    """InfoGAN: accuracy of the best one-to-one mapping of categorical code values to digits."""
    codes, pred = _classify_per_class(model, prior, per_class, seed)
    acc, mapping = hungarian_accuracy(codes, pred, prior.classes)
    return {"code_accuracy": acc, "code_to_digit": mapping}


def hungarian_accuracy(codes: np.ndarray, digits: np.ndarray, k: int) -> tuple[float, dict[int, int]]:
    """Agreement of ``codes`` with ``digits`` under the best one-to-one mapping of codes to digits."""
    counts = np.zeros((k, 10), dtype=np.int64)
    np.add.at(counts, (codes, digits), 1)
    rows, cols = linear_sum_assignment(-counts)  # maximize agreement
    return float(counts[rows, cols].sum() / len(codes)), {int(r): int(c) for r, c in zip(rows, cols, strict=True)}


def q_accuracy(discriminator: nn.Module, classes: int, images: torch.Tensor, labels: torch.Tensor) -> dict[str, Any]:
    """InfoGAN's Q as an unsupervised classifier of real digits (the paper's "5% error" measure):
    the most likely categorical code of each real image (D's head output, ``aux=True``), mapped
    one-to-one to digits."""
    device = module_device(discriminator)
    with sampling_mode(discriminator):
        codes = torch.cat([discriminator(images[i:i + 1000].to(device), aux=True)[1]["aux"][:, :classes]
                           .argmax(1).cpu() for i in range(0, len(images), 1000)])
    acc, mapping = hungarian_accuracy(codes.numpy(), labels.numpy(), classes)
    return {"q_accuracy": acc, "q_code_to_digit": mapping}
