"""Self-conditioning on k-means clusters, class frequencies in the prior, InfoGAN's Q as a classifier,
and the fully connected DCGAN variant (InfoGAN's networks)."""
from __future__ import annotations

import pytest
import torch

from ganforge.config import NetConfig, from_dict
from ganforge.data.clusters import cluster_labels
from ganforge.data.tensor import TensorData
from ganforge.generator import Prior
from ganforge.metrics.conditional import hungarian_accuracy, q_accuracy
from ganforge.nn import WithHead
from ganforge.nn.dcgan import DCGANDiscriminator, DCGANGenerator
from ganforge.registry import ConfigError
from ganforge.training.assemble import assemble
from ganforge.training.trainer import Trainer


def blobs(sizes: tuple[int, ...] = (60, 20), seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Images in well-separated groups: group k is bright in its own band of rows."""
    g = torch.Generator().manual_seed(seed)
    xs, ys = [], []
    for k, n in enumerate(sizes):
        x = torch.full((n, 1, 28, 28), -1.0) + 0.05 * torch.randn(n, 1, 28, 28, generator=g)
        x[:, :, 6 * k:6 * k + 6] = 1.0
        xs.append(x)
        ys.append(torch.full((n,), k))
    return torch.cat(xs), torch.cat(ys)


def config(**model) -> dict:
    m = {"z_dim": 8, "conditioning": "projection", "self_condition": 2,
         "generator": {"name": "dcgan", "width": 4}, "discriminator": {"name": "dcgan", "width": 4}} | model
    return {"model": m, "train": {"batch_size": 16, "steps": 2, "progress": False, "seed": 0}}


def test_cluster_labels_recover_separated_groups():
    x, y = blobs((30, 30, 30))
    c = cluster_labels(x, 3)
    acc, _ = hungarian_accuracy(c.numpy(), y.numpy(), 3)
    assert acc == 1.0


def test_prior_draws_classes_at_the_given_frequencies():
    p = Prior("normal", 4, classes=3, class_probs=[0.7, 0.3, 0.0])
    labels = p.sample(20000, torch.Generator().manual_seed(0))[:, 4:].argmax(1)
    freq = torch.bincount(labels, minlength=3) / 20000
    assert abs(float(freq[0]) - 0.7) < 0.02 and int((labels == 2).sum()) == 0
    with pytest.raises(ConfigError, match="class_probs"):
        Prior("normal", 4, classes=3, class_probs=[0.5, 0.5])


def test_self_conditioning_replaces_labels_with_clusters_and_trains():
    x, y = blobs((60, 20))
    # The data's own labels are deliberately wrong: self-conditioning must not read them.
    cfg = from_dict(config())
    parts = assemble(cfg, data=TensorData(x, labels=torch.zeros_like(y)))
    assert cfg.model.classes == 2 and parts.prior.classes == 2
    assert sorted(cfg.model.class_probs) == pytest.approx([0.25, 0.75])
    acc, _ = hungarian_accuracy(parts.data.labels.numpy(), y.numpy(), 2)
    assert acc == 1.0
    Trainer(parts, cfg.train).fit()


@pytest.mark.parametrize("model, match", [
    ({"conditioning": "none"}, "self_condition needs model.conditioning"),
    ({"conditioning": "infogan"}, "self_condition needs model.conditioning"),
    ({"classes": 5}, "sets the number of classes"),
    ({"self_condition": 60}, "at least"),
])
def test_bad_self_conditioning_configs_are_one_line_errors(model, match):
    x, _ = blobs((60, 20))
    with pytest.raises(ConfigError, match=match):
        assemble(from_dict(config(**model)), data=TensorData(x))


def test_q_accuracy_maps_codes_to_digits_one_to_one():
    class Body(torch.nn.Module):
        def forward(self, x, features=False):
            out, h = x.sum((1, 2, 3)), x.flatten(1)[:, :3]
            return (out, h) if features else out

    def D() -> WithHead:  # Q's head reads the features through D's own forward call
        return WithHead(Body(), torch.nn.Identity())

    labels = torch.tensor([0, 1, 2, 0, 1, 2])
    codes = (labels + 1) % 3  # a permuted naming of the right groups
    images = torch.zeros(6, 1, 2, 2)
    images.view(6, -1)[torch.arange(6), codes] = 1.0  # feature k is high for code k
    out = q_accuracy(D(), 3, images, labels)
    assert out["q_accuracy"] == 1.0 and out["q_code_to_digit"] == {1: 0, 2: 1, 0: 2}
    wrong = q_accuracy(D(), 3, images, torch.tensor([0, 0, 0, 1, 1, 1]))
    assert wrong["q_accuracy"] < 1.0


def test_fully_connected_dcgan_variant_shapes():
    g = DCGANGenerator(NetConfig(name="dcgan", width=8, fc=32), 10, (1, 28, 28))
    d = DCGANDiscriminator(NetConfig(name="dcgan", width=8, fc=32), (1, 28, 28))
    x = g(torch.randn(5, 10))
    out, h = d(x, features=True)
    assert x.shape == (5, 1, 28, 28) and out.shape == (5,) and h.shape == (5, 32) and d.feature_dim == 32
    assert any(isinstance(m, torch.nn.Linear) for m in g.modules())
