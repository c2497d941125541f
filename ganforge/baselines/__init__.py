"""Non-adversarial baselines trained and evaluated by the same commands as the GANs."""
from ganforge.baselines.vae import VAE, build_vae

__all__ = ["VAE", "build_vae"]
