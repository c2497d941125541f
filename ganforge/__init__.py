"""ganforge: train, evaluate and diagnose generative adversarial networks."""
from ganforge import oracle  # noqa: F401  (registers the data set `oracle`)
from ganforge.api import GAN, LoadedGenerator, load
from ganforge.config import Config, load_config
from ganforge.data import register_dataset
from ganforge.data.source import DataSource
from ganforge.data.tensor import TensorData
from ganforge.data.transform import register_transform
from ganforge.generator import GeneratorArtifact, Prior
from ganforge.metrics.evaluate import evaluate
from ganforge.metrics.features import register_feature_extractor
from ganforge.nn import register_discriminator, register_generator
from ganforge.objectives import Phase, register_loss, register_objective
from ganforge.registry import ConfigError
from ganforge.spec import DataSpec, Span
from ganforge.version import __version__  # noqa: F401  (re-exported)


def __getattr__(name: str) -> object:
    # Tables need pandas: TabularGAN and TabularVAE are imported on first use.
    if name in ("TabularGAN", "TabularVAE", "tabular"):
        import importlib

        tabular = importlib.import_module("ganforge.tabular")
        return tabular if name == "tabular" else getattr(tabular, name)
    if name in ("DataKind", "RunContext", "register_kind"):  # (the kinds import plotting: on first use too)
        import importlib

        return getattr(importlib.import_module("ganforge.kinds"), name)
    raise AttributeError(f"module 'ganforge' has no attribute '{name}'")


__all__ = ["GAN", "Config", "ConfigError", "DataKind", "DataSource", "DataSpec", "GeneratorArtifact",
           "LoadedGenerator", "Phase", "Prior", "RunContext", "Span", "TabularGAN", "TabularVAE", "TensorData",
           "evaluate", "load", "load_config", "register_dataset", "register_discriminator",
           "register_feature_extractor", "register_generator", "register_kind", "register_loss",
           "register_objective", "register_transform"]
