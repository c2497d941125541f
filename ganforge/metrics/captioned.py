"""Text-to-image evaluation: does a generated image show what its caption says, and how varied is it?

For each evaluation split (``test``: new images and captions like the training ones;
``heldout_phrasings``: sentence structures never seen in training; ``heldout_combos``: (shape,
colour) pairs no training image has) one image is generated per caption and read by an attribute
classifier trained on the real training images (:class:`~ganforge.metrics.t2i.AttributeNet`):

- caption consistency: the fraction of the attributes a caption states that the classifier reads
  in the generated image, overall and per attribute (the classifier on the real images of the same
  captions is the ceiling, reported beside it);
- R-precision (AttnGAN's, R = 1) with the matching encoders the caption encoder was pretrained
  with: the generated image's true caption ranked first among 100 (the rest are captions of other
  images);
- FID with the attribute classifier's features, generated (test captions) against real test images;
- fixed-caption diversity: for captions that leave attributes free, the mean pairwise feature
  distance of 100 samples against that of 100 real images satisfying the caption, and the number of
  distinct values of the free attributes each covers (collapse shows as fewer).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ganforge.data.captions import CaptionSet
from ganforge.fitcache import fingerprint as data_fingerprint
from ganforge.fitcache import load_fitted, save_fitted
from ganforge.generator import GeneratorArtifact, sample
from ganforge.metrics.t2i import (
    AttributeNet,
    attribute_accuracy,
    caption_consistency,
    feature_fid,
    fixed_caption_diversity,
    predict_attributes,
    r_precision,
    real_matching,
    train_attribute_net,
)
from ganforge.registry import ConfigError

SPLITS = ("test", "heldout_phrasings", "heldout_combos")


def fingerprint(train: CaptionSet, steps: int, seed: int) -> str:
    """What an attribute classifier was trained on: the data's size, schema and a hash of its
    images and attributes, and the training settings (a cached classifier must match it)."""
    assert train.attributes is not None
    return data_fingerprint([train.images, train.attributes], {"schema": train.schema, "steps": steps, "seed": seed})


def save_attribute_net(net: AttributeNet, path: str | Path, data: str = "") -> None:
    """The classifier as safetensors with its config (and the data fingerprint) in the metadata."""
    save_fitted(path, net.state_dict(), net.config(), data)


def load_attribute_net(path: str | Path, data: str | None = None) -> AttributeNet | None:
    """A saved classifier (None when ``data`` is given and the file was trained on other data);
    loading unpickles nothing, and a file that is not one is a one-line error."""
    found = load_fitted(path, data, "an attribute classifier")
    if found is None:
        return None
    config, tensors = found
    try:
        net = AttributeNet.from_config(config)
        net.load_state_dict(tensors)
    except (KeyError, ValueError, RuntimeError, TypeError) as e:
        raise ConfigError(f"{path} is not an attribute classifier file ({type(e).__name__}: {e})") from None
    return net.eval()


def attribute_net_for(train: CaptionSet, cache: Path | None = None, steps: int = 1500, seed: int = 0,
                      progress: bool = False) -> AttributeNet:
    """The attribute classifier of a data set: loaded from ``cache`` when it was trained on the same
    data with the same settings, else trained on the real training images (and saved there)."""
    if train.attributes is None or not train.schema:
        raise ConfigError("caption consistency needs data whose images have known attributes (shapes-t2i, mnist-t2i)")
    if steps < 1:
        raise ConfigError(f"eval.classifier_steps must be at least 1, got {steps}")
    key = fingerprint(train, steps, seed)
    if cache is not None and cache.is_file():
        net = load_attribute_net(cache, key)
        if net is not None:
            return net
    net = train_attribute_net(train.images, train.attributes, train.schema, steps=steps, seed=seed, progress=progress)
    if cache is not None:
        save_attribute_net(net, cache, key)
    return net


def _pick(n_total: int, n: int, seed: int, ordered: bool = True) -> Tensor:
    """``n`` of ``n_total`` indices drawn at random (seeded); in index order unless ``ordered`` is False."""
    idx = torch.randperm(n_total, generator=torch.Generator().manual_seed(seed))[:n]
    return idx.sort().values if ordered else idx


def _generate(artifact: GeneratorArtifact, texts: list[str], seed: int) -> Tensor:
    # Evaluation captions are the data's own: unknown words in a user's test file are read as <unk>
    # (no error, no warning at every evaluation).
    t = artifact.transform
    cond = t.embed(t.tokens(texts, check=False)) * t.scale
    return sample(artifact.module, artifact.prior, len(cond), seed=seed, condition=cond, batch=1000)


def fixed_captions(test: CaptionSet, train: CaptionSet, k: int, per: int, seed: int) -> list[int]:
    """Indices of ``k`` test captions that leave at least two attributes free and that at least
    ``per`` real training images satisfy (distinct mention patterns first)."""
    assert test.mentions is not None and train.attributes is not None
    free = (test.mentions < 0).sum(1)
    order = _pick(len(test), len(test), seed, ordered=False)
    out, seen = [], set()
    for i in order.tolist():
        key = tuple(test.mentions[i].tolist())
        if free[i] < 2 or key in seen:
            continue
        if int(real_matching(test.mentions[i], train.attributes).sum()) >= per:
            out.append(i)
            seen.add(key)
        if len(out) == k:
            break
    return out


def evaluate_captioned(artifact: GeneratorArtifact, train: CaptionSet, sets: dict[str, CaptionSet],
                       net: AttributeNet | None, n: int = 2000, seed: int = 0, fixed: int = 8,
                       per_fixed: int = 100) -> dict[str, Any]:
    """Every text-to-image metric of a generator (see the module docstring); ``n`` captions per split."""
    t = artifact.transform
    if not hasattr(t, "encode"):
        raise ConfigError("this generator was not trained on captioned images")
    if n < 1:
        raise ConfigError(f"the number of evaluation captions must be at least 1, got {n}")
    out: dict[str, Any] = {}
    protocol: dict[str, Any] = {"captions_per_split": {}, "seed": seed, "r_precision_candidates": 100,
                                "classifier": "AttributeNet trained on the real training images"}
    for split in SPLITS:
        cs = sets.get(split)
        if cs is None or len(cs) == 0:
            continue
        idx = _pick(len(cs), n, seed)
        texts = [cs.texts[i] for i in idx.tolist()]
        protocol["captions_per_split"][split] = len(texts)
        fake = _generate(artifact, texts, seed + 1)
        real = cs.images[cs.image_of[idx]]
        res: dict[str, Any] = {}
        if net is not None and cs.mentions is not None:
            pred, feats = predict_attributes(net, fake)
            pred_real, feats_real = predict_attributes(net, real)
            res["consistency"] = caption_consistency(pred, cs.mentions[idx], cs.schema)
            res["consistency_real"] = caption_consistency(pred_real, cs.mentions[idx], cs.schema)["overall"]
            if split == "test":
                # FID at equal sizes: the generated images against half of the real test images, and
                # the two halves of the real images against each other (the floor at that size).
                _, real_all = predict_attributes(net, cs.images)
                half = min(len(feats), len(real_all) // 2)
                res["fid"] = feature_fid(real_all[0::2][:half], feats[:half])
                res["fid_real_half"] = feature_fid(real_all[0::2][:half], real_all[1::2][:half])
                protocol["fid_samples"] = half
                if cs.attributes is not None:
                    res["classifier_accuracy"] = attribute_accuracy(pred_real, cs.attributes[cs.image_of[idx]],
                                                                    cs.schema)
        if t.vision is not None:
            # Competitors are captions of other images that are false of this one (where attributes
            # are known): a caption that is also true, or the same text, is no competitor.
            text_emb = t.embed(t.tokens(texts, check=False))
            kw: dict[str, Any] = {"groups": cs.image_of[idx]}
            if cs.mentions is not None and cs.attributes is not None:
                kw.update(mentions=cs.mentions[idx], image_attributes=cs.attributes[cs.image_of[idx]])
            try:
                res["r_precision"] = r_precision(t.image_embeddings(fake), text_emb, seed=seed, **kw)
                res["r_precision_real"] = r_precision(t.image_embeddings(real), text_emb, seed=seed, **kw)
            except ConfigError as e:  # too few captions to draw 99 competitors from
                res["r_precision_skipped"] = str(e)
        out[split] = res
    test = sets.get("test")
    if net is not None and test is not None and test.mentions is not None and train.attributes is not None:
        chosen = fixed_captions(test, train, fixed, per_fixed, seed)
        fake_f, real_f, fake_p, real_p, free = [], [], [], [], []
        for j, i in enumerate(chosen):
            fake = _generate(artifact, [test.texts[i]] * per_fixed, seed + 100 + j)
            match = torch.nonzero(real_matching(test.mentions[i], train.attributes)).squeeze(1)
            real = train.images[match[_pick(len(match), per_fixed, seed + j)]]
            p, f = predict_attributes(net, fake)
            pr, fr = predict_attributes(net, real)
            fake_f.append(f)
            real_f.append(fr)
            fake_p.append(p)
            real_p.append(pr)
            free.append(torch.nonzero(test.mentions[i] < 0).squeeze(1).tolist())
        if chosen:
            div = fixed_caption_diversity(fake_f, real_f, fake_p, real_p, free)
            for row, i in zip(div["per_caption"], chosen, strict=True):
                row["caption"] = test.texts[i]
            out["diversity"] = div
            protocol["fixed_captions"] = len(chosen)
            protocol["samples_per_fixed_caption"] = per_fixed
    out["headline"] = headline(out)
    out["protocol"] = protocol
    return out


def headline(result: dict[str, Any]) -> dict[str, float]:
    """The numbers a summary shows: overall consistency per split, R-precision, FID, diversity ratio."""
    h: dict[str, float] = {}
    for split in SPLITS:
        r = result.get(split, {})
        if "consistency" in r:
            h[f"consistency_{split}"] = round(float(r["consistency"]["overall"]), 4)
        if "r_precision" in r and split == "test":
            h["r_precision"] = round(float(r["r_precision"]), 4)
        if "fid" in r:
            h["fid_classifier"] = round(float(r["fid"]), 4)
    if "diversity" in result:
        h["diversity_ratio"] = round(float(result["diversity"]["ratio"]), 4)
    return h
