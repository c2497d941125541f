"""ganforge: train, evaluate and diagnose generative adversarial networks."""
from ganforge.api import GAN, LoadedGenerator, load
from ganforge.config import Config, load_config
from ganforge.data import register_dataset
from ganforge.losses import register_loss
from ganforge.metrics.evaluate import evaluate
from ganforge.metrics.features import register_feature_extractor
from ganforge.nn import register_discriminator, register_generator
from ganforge.registry import ConfigError

__version__ = "0.1.0"
__all__ = ["GAN", "Config", "ConfigError", "LoadedGenerator", "evaluate", "load", "load_config", "register_dataset",
           "register_discriminator", "register_feature_extractor", "register_generator", "register_loss"]
