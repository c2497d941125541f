"""BEGAN's convolutional auto-encoder discriminator: shapes, its output is the reconstruction error,
it can learn to reconstruct, and a BEGAN config with DCGAN networks picks it."""
from __future__ import annotations

import pytest
import torch

from ganforge.config import NetConfig, from_dict
from ganforge.nn.dcgan import DCGANAutoencoderDiscriminator
from ganforge.registry import ConfigError
from ganforge.training.assemble import assemble


@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 32, 32), (3, 64, 64)])
def test_output_is_each_images_mean_l1_reconstruction_error(shape):
    d = DCGANAutoencoderDiscriminator(NetConfig(width=8, activation="elu"), shape)
    x = torch.rand(3, *shape) * 2 - 1
    rec = d.reconstruct(x)
    assert rec.shape == x.shape and d(x, features=True)[1].shape == (3, 64)
    assert torch.allclose(d(x), (rec - x).abs().mean((1, 2, 3)))


def test_it_learns_to_reconstruct_a_small_set():
    torch.manual_seed(0)
    d = DCGANAutoencoderDiscriminator(NetConfig(width=8, fc=16), (1, 28, 28))
    x = torch.rand(8, 1, 28, 28) * 2 - 1
    opt = torch.optim.Adam(d.parameters(), 1e-3)
    first = float(d(x).mean().detach())
    for _ in range(150):
        loss = d(x).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert float(d(x).mean().detach()) < 0.6 * first


def test_began_with_dcgan_networks_uses_the_convolutional_autoencoder():
    cfg = from_dict({"model": {"z_dim": 8, "loss": {"name": "began"}, "generator": {"name": "dcgan", "width": 4},
                               "discriminator": {"name": "dcgan", "width": 4}},
                     "train": {"batch_size": 8, "steps": 1, "progress": False}})
    parts = assemble(cfg, data=torch.rand(32, 1, 28, 28) * 2 - 1)
    assert isinstance(parts.discriminator, DCGANAutoencoderDiscriminator)


def test_conditional_autoencoder_is_refused():
    with pytest.raises(ConfigError, match="unconditional"):
        DCGANAutoencoderDiscriminator(NetConfig(width=4), (1, 28, 28), c_dim=10)
