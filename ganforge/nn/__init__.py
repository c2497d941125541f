"""Networks, chosen by name from :data:`GENERATORS` and :data:`DISCRIMINATORS`.

Builders are given the :class:`~ganforge.spec.DataSpec` of the data (shape and dtype, output
spans, vocabulary, condition width), not a bare shape: a generator builder is
``builder(cfg, spec, in_dim, c_dim) -> nn.Module`` (``in_dim``: the width of the prior's vector),
a discriminator builder ``builder(cfg, spec, c_dim) -> nn.Module`` (``c_dim``: the width of the
condition D sees beside x, 0 = none). Register your own with :func:`register_generator` /
:func:`register_discriminator`.

A discriminator is called as ``D(x)`` or ``D(x, c)``; those that serve feature matching, AC-GAN,
InfoGAN or a VAE encoder also accept ``features=True`` and then return ``(output, features)``.
Everything goes through the module's own forward call, so wrappers (DistributedDataParallel) see it.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from ganforge.config import NetConfig
from ganforge.nn.dcgan import DCGANAutoencoderDiscriminator, DCGANDiscriminator, DCGANGenerator
from ganforge.nn.mlp import MLPAutoencoderDiscriminator, MLPDiscriminator, MLPGenerator
from ganforge.nn.sequence import SequenceGenerator, TextCNN, TextRNN
from ganforge.nn.tabular import PacDiscriminator, ResidualGenerator, TabularVAE
from ganforge.registry import ConfigError, Registry
from ganforge.spec import DataSpec

GeneratorBuilder = Callable[[NetConfig, DataSpec, int, int], nn.Module]
DiscriminatorBuilder = Callable[[NetConfig, DataSpec, int], nn.Module]

GENERATORS: Registry[GeneratorBuilder] = Registry("generator network")
DISCRIMINATORS: Registry[DiscriminatorBuilder] = Registry("discriminator network")


def register_generator(name: str, builder: GeneratorBuilder, help: str = "") -> None:
    """Register ``builder(cfg, spec, in_dim, c_dim) -> nn.Module`` as a generator."""
    GENERATORS.register(name, builder, help=help)


def register_discriminator(name: str, builder: DiscriminatorBuilder, help: str = "") -> None:
    """Register ``builder(cfg, spec, c_dim) -> nn.Module`` as a discriminator."""
    DISCRIMINATORS.register(name, builder, help=help)


register_generator("mlp", lambda cfg, spec, z, c=0: MLPGenerator(cfg, z, spec.shape, c, spans=spec.spans),
                   "the original paper's MLP generator (per-span output activations for tables)")
register_discriminator("mlp", lambda cfg, spec, c=0: MLPDiscriminator(cfg, spec.shape, c),
                       "the original paper's MLP discriminator")
register_discriminator("mlp-autoencoder", lambda cfg, spec, c=0: MLPAutoencoderDiscriminator(cfg, spec.shape, c),
                       "BEGAN's auto-encoder discriminator (outputs reconstruction errors)")
register_generator("dcgan", lambda cfg, spec, z, c=0: DCGANGenerator(cfg, z, spec.shape, c),
                   "DCGAN generator for 28/32/64-pixel images (Radford et al. 2016)")
register_discriminator("dcgan", lambda cfg, spec, c=0: DCGANDiscriminator(cfg, spec.shape, c),
                       "DCGAN discriminator for 28/32/64-pixel images")
register_discriminator("dcgan-autoencoder", lambda cfg, spec, c=0: DCGANAutoencoderDiscriminator(cfg, spec.shape, c),
                       "BEGAN's auto-encoder discriminator with DCGAN convolutions (outputs reconstruction errors)")
register_generator("ctgan", lambda cfg, spec, z, c=0: ResidualGenerator(z, list(cfg.hidden), spec.spans),
                   "CTGAN's residual generator: tanh alphas, Gumbel-softmax one-hots (tables)")
register_discriminator("ctgan", lambda cfg, spec, c=0: PacDiscriminator(cfg, spec, c),
                       "CTGAN's discriminator with PacGAN packing (model.discriminator.pac) (tables)")
register_generator("tvae", lambda cfg, spec, z, c=0: TabularVAE(spec.spans, z, list(cfg.hidden)),
                   "TVAE: encoder and decoder on a table's spans; train with model.objective=elbo")


def _tokens(spec: DataSpec, net: str) -> DataSpec:
    if not spec.is_text:
        raise ConfigError(f"the '{net}' network reads token sequences; this data is {spec.dtype} of shape "
                          f"{tuple(spec.shape)} (use a text data set: text, coco-captions, oracle)")
    return spec


def _sequence_generator(cell: str) -> GeneratorBuilder:
    def build(cfg: NetConfig, spec: DataSpec, z: int, c: int = 0) -> nn.Module:
        spec = _tokens(spec, cell)
        if z:
            raise ConfigError(f"the {cell} generator takes no noise vector (its randomness is the sampling of each "
                              f"token; its likelihood must be exact for MLE and NLL-test): set model.z_dim: 0 "
                              f"and no classes or codes (got an input of width {z})")
        if not cfg.hidden or len(set(cfg.hidden)) != 1:
            raise ConfigError(f"model.generator.hidden: the {cell} generator takes one size per layer, all equal "
                              f"(e.g. [128] or [128, 128]), got {cfg.hidden}")
        return SequenceGenerator(spec.vocab_size, spec.shape[0], emb=cfg.width, hidden=cfg.hidden[0], cell=cell,
                                 layers=len(cfg.hidden), eos=spec.extra.get("eos"),
                                 pad=spec.extra.get("pad"))

    return build


register_generator("lstm", _sequence_generator("lstm"),
                   "text: an LSTM language model (width = embedding size, hidden = [state size] per layer)")
register_generator("gru", _sequence_generator("gru"), "text: a GRU language model (as lstm)")


def _text_cnn(cfg: NetConfig, spec: DataSpec, c: int = 0) -> nn.Module:
    spec = _tokens(spec, "text-cnn")
    # text-cnn has no hidden layers. hidden at anything but its default would be ignored (it once scaled the
    # filters by hidden[0] / 100, so a config written then means a size): refused, naming the option that is read.
    # A resolved config.yaml holds the default too, so comparing with it passes every run written since.
    if list(cfg.hidden) != NetConfig().hidden:
        raise ConfigError(f"model.discriminator.hidden: text-cnn has no hidden layers (got {cfg.hidden}); size it "
                          f"with model.discriminator.filter_scale (1.0 = SeqGAN's filter counts; hidden [N] once "
                          f"meant filter_scale N/100) and leave hidden unset")
    return TextCNN(spec.vocab_size, spec.shape[0], cfg.width, cfg.dropout, cfg.filter_scale)


register_discriminator("text-cnn", _text_cnn,
                       "text: SeqGAN's CNN over embeddings (width = embedding size; filter_scale multiplies its "
                       "filter counts, 1.0 = the paper's)")
register_discriminator("text-rnn", lambda cfg, spec, c=0: TextRNN(
    _tokens(spec, "text-rnn").vocab_size, cfg.width, cfg.hidden[0] if cfg.hidden else 64, "lstm", cfg.dropout),
    "text: an LSTM discriminator over embeddings (width = embedding size, hidden[0] = state size)")


def _spec(spec: DataSpec | tuple[int, ...]) -> DataSpec:
    return spec if isinstance(spec, DataSpec) else DataSpec(tuple(spec))


def build_generator(cfg: NetConfig, spec: DataSpec | tuple[int, ...], in_dim: int, c_dim: int = 0) -> nn.Module:
    """The named generator; with ``cfg.reference_batch``, its 2-D batch norm becomes reference-batch norm."""
    net = GENERATORS.get(cfg.name)(cfg, _spec(spec), in_dim, c_dim)
    if cfg.reference_batch:
        from ganforge.nn.techniques import RefBatchNorm2d, use_reference_batch_norm

        use_reference_batch_norm(net)
        if not any(isinstance(m, RefBatchNorm2d) for m in net.modules()):
            raise ConfigError(f"model.generator.reference_batch: the '{cfg.name}' generator has no 2-D batch "
                              "norm to take reference statistics (use dcgan)")
    return net


def build_discriminator(cfg: NetConfig, spec: DataSpec | tuple[int, ...], c_dim: int = 0) -> nn.Module:
    return DISCRIMINATORS.get(cfg.name)(cfg, _spec(spec), c_dim)


def call_d(d: nn.Module, x: Tensor, c: Tensor | None = None, **kwargs: Any) -> Any:
    """``d(x)`` or ``d(x, c)``: a discriminator that takes no condition is never passed one."""
    return d(x, **kwargs) if c is None else d(x, c, **kwargs)


class WithHead(nn.Module):
    """A discriminator with an auxiliary head on its features (AC-GAN's classifier, InfoGAN's Q).

    ``forward(x, c, features=False, aux=False)``: D's output; with ``features``, ``(output,
    {"features": h})``; with ``aux`` also ``"aux": head(h)``. The head is a child, so D's optimizer,
    checkpoints and device moves include it, and it is reached through this one forward call.
    """

    def __init__(self, body: nn.Module, head: nn.Module) -> None:
        super().__init__()
        self.body, self.aux_head = body, head

    def forward(self, x: Tensor, c: Tensor | None = None, features: bool = False,
                aux: bool = False) -> Tensor | tuple[Tensor, dict[str, Tensor]]:
        if not (features or aux):
            return call_d(self.body, x, c)
        out, h = call_d(self.body, x, c, features=True)
        extras = {"features": h}
        if aux:
            extras["aux"] = self.aux_head(h)
        return out, extras


def feature_dim(d: nn.Module, spec: DataSpec) -> int:
    """The width of ``d``'s features, found by one forward pass of two zero samples in eval mode."""
    was = d.training
    try:
        with torch.no_grad():
            return int(d.eval()(torch.zeros(2, *spec.shape), features=True)[1].shape[1])
    except TypeError:
        raise ConfigError(f"this model needs a discriminator whose forward accepts features=True "
                          f"(got {type(d).__name__})") from None
    finally:
        d.train(was)


def module_device(module: nn.Module) -> torch.device:
    """Where a module's parameters live (the CPU for a module without parameters)."""
    param = next(module.parameters(), None)
    return param.device if param is not None else torch.device("cpu")
