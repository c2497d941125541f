"""The caption encoder of captioned data, fitted once per data and handed to the data source.

A captioned data source (:class:`ganforge.data.captioned.CaptionedImageData`) builds its vocabulary
and token ids but trains no network: the sentence and image encoders it conditions on are fitted
here (:func:`ganforge.nn.caption.pretrain_matching`), by one process, once per data. Like the
attribute classifier of the metrics, the fitted encoder is kept in the run folder under the
fingerprint of what it was fitted on (the images, the tokenized captions and their images, the
vocabulary, every ``data.options.encoder`` setting, the seed among them), with
:mod:`ganforge.fitcache`. A run looks for it, in order:

1. the run folder's ``caption_encoder.safetensors`` when its fingerprint matches;
2. a resumed run's checkpoint (checkpoints written before the cache existed hold the encoder too);
3. otherwise it is pretrained, and saved to the run folder.

In a multi-process run rank 0 alone does this and the others receive its tensors, so no process
fits it twice, and none fits it at all on a resume.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from torch import Tensor

from ganforge.data.captioned import prefixed
from ganforge.fitcache import fingerprint, load_fitted, save_fitted
from ganforge.nn.caption import ImageEncoder, SentenceEncoder, pretrain_matching
from ganforge.registry import ConfigError
from ganforge.tensorfile import one_line
from ganforge.training.distributed import SINGLE, World, broadcast

CACHE_FILE = "caption_encoder.safetensors"  # in the run folder, beside attribute_net.safetensors


@dataclass(frozen=True)
class EncoderCache:
    """Where a run keeps and finds its caption encoder: the cache file (rank 0 reads and writes it),
    a resumed run's checkpoint (rank 0's, None elsewhere) and the processes of the run."""

    path: Path | None = None
    checkpoint: dict[str, Any] | None = None
    world: World = SINGLE


def needs_caption_encoder(source: Any) -> bool:
    """Whether ``source`` is captioned data still waiting for its caption encoder."""
    return hasattr(source, "use_encoder") and not source.has_encoder


def encoder_key(source: Any) -> str:
    """The fingerprint of what a caption encoder for ``source`` is fitted on (see the module docstring)."""
    settings = {"what": "caption encoder", "vocab": list(source.vocab.tokens),
                "shapes": [list(t.shape) for t in (source.x, source.tokens, source.image_of)],
                "encoder": asdict(source.encoder_config)}
    return fingerprint([source.x, source.tokens, source.image_of], settings)


def encoders_from(source: Any, tensors: dict[str, Tensor]) -> tuple[SentenceEncoder, ImageEncoder]:
    """Frozen encoders for ``source`` holding ``tensors`` (``text/...`` and ``vision/...`` entries, as
    :meth:`~ganforge.data.captioned.CaptionTransform.tensors` names them); RuntimeError if they do not fit."""
    cfg = source.encoder_config
    text = SentenceEncoder(len(source.vocab), cfg.dim, cfg.emb, cfg.hidden)
    vision = ImageEncoder(source.x.shape[1], source.x.shape[2], cfg.dim)
    text.load_state_dict(prefixed("text/", tensors))
    vision.load_state_dict(prefixed("vision/", tensors))
    for m in (text, vision):
        m.eval().requires_grad_(False)
    return text, vision


def _find_or_fit(source: Any, store: EncoderCache) -> dict[str, Any]:
    """Rank 0's encoder for ``source`` as tensors and pretraining statistics, with where it came from."""
    key = encoder_key(source)
    if store.path is not None and store.path.is_file():
        found = load_fitted(store.path, key, "a caption encoder")
        if found is not None:
            config, tensors = found
            return {"tensors": tensors, "matching": config.get("matching", {}), "origin": "cache"}
    data_state = (store.checkpoint or {}).get("data")
    saved = data_state.get("encoder") if isinstance(data_state, dict) else None
    if saved:
        try:
            encoders_from(source, saved)
        except RuntimeError as e:
            raise ConfigError("--resume: the checkpoint's caption encoder does not fit this data's "
                              f"(data.options changed?): {one_line(e)}") from None
        return {"tensors": saved, "matching": data_state.get("matching", {}), "origin": "checkpoint"}
    # Not kept anywhere (a new run, or a checkpoint written before the encoders were kept): fit it.
    text, vision, matching = pretrain_matching(source.x, source.tokens, source.image_of, len(source.vocab),
                                               source.encoder_config, progress=source.progress)
    tensors = {f"text/{k}": v for k, v in text.state_dict().items()}
    tensors.update({f"vision/{k}": v for k, v in vision.state_dict().items()})
    if store.path is not None:
        save_fitted(store.path, tensors, {"text": text.config(), "image_shape": list(source.x.shape[1:]),
                                          "matching": matching}, key)
    return {"tensors": tensors, "matching": matching, "origin": "fitted"}


def fit_caption_encoder(source: Any, store: EncoderCache | None = None) -> str:
    """Hand captioned ``source`` its caption encoder: found in ``store`` or pretrained once (see the
    module docstring). Collective in a multi-process run (rank 0 finds or fits, the others receive).
    Returns where the encoder came from: ``cache``, ``checkpoint`` or ``fitted``."""
    store = store or EncoderCache()
    found: dict[str, Any] | None = None
    if store.world.writer:
        try:
            found = _find_or_fit(source, store)
        except ConfigError as e:  # the other processes wait for rank 0's answer: send them the error
            found = {"error": str(e)}
    found = broadcast(found, store.world)
    assert found is not None
    if "error" in found:
        raise ConfigError(found["error"])
    text, vision = encoders_from(source, found["tensors"])
    source.use_encoder(text, vision, found["matching"])
    return str(found["origin"])
