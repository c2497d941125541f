"""Metrics for text-to-image GANs on captioned data whose attributes are known.

Conventions: images are float32 ``(N, C, H, W)`` in [-1, 1]; a schema is ``dict[str, list[str]]``
(attribute name -> value names, in index order); ``attributes`` is an ``(N, A)`` int64 tensor of
value indices; a caption's ``mentions`` is an ``(M, A)`` int64 tensor holding the value the caption
states, or -1 where the caption leaves that attribute free.

- :class:`AttributeNet`, :func:`train_attribute_net`, :func:`predict_attributes`: a small CNN with
  one head per attribute, trained on the real images; it reads generated images and its penultimate
  features serve FID and diversity;
- :func:`caption_consistency`: how many of the attributes a caption states its image shows;
- :func:`r_precision`: AttnGAN's R-precision (R = 1) with matching image and text embeddings;
- :func:`feature_fid`, :func:`pairwise_distance`, :func:`modes_covered`,
  :func:`fixed_caption_diversity`: realism and diversity in the classifier's feature space;
- :func:`real_matching`: the real images that satisfy a caption.

The orchestration over a generator and its evaluation splits is :mod:`ganforge.metrics.captioned`.
"""
from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm import tqdm

from ganforge.metrics.distribution import frechet_distance
from ganforge.registry import ConfigError

Schema = dict[str, list[str]]

# The last conv map is average-pooled to this grid, not to 1 x 1: positions are attributes, and a
# global pool would throw away where the object is (a 4 x 4 grid resolves the data's 3 x 3 cells).
_POOL = 4


class _GridPool(nn.Module):
    """Average pooling to a ``size`` x ``size`` grid; a no-op when the map already is one (28 and 32 pixel
    images), where ``AdaptiveAvgPool2d`` would still cost a tenth of a training step on the CPU."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size

    def forward(self, x: Tensor) -> Tensor:
        return x if x.shape[-2:] == (self.size, self.size) else F.adaptive_avg_pool2d(x, self.size)


def _check_schema(schema: Any, what: str) -> Schema:
    if not isinstance(schema, dict) or not schema:
        raise ConfigError(f"{what}: schema must be a non-empty dict of attribute name -> value names, got {schema!r}")
    out: Schema = {}
    for name, values in schema.items():
        if not isinstance(name, str) or not isinstance(values, (list, tuple)) or len(values) < 1:
            raise ConfigError(f"{what}: schema entry {name!r} must map a name to a non-empty list of value names")
        out[name] = [str(v) for v in values]
    return out


def _int_matrix(x: Any, what: str, cols: int | None = None, rows: int | None = None) -> Tensor:
    if not isinstance(x, Tensor) or x.ndim != 2 or x.dtype.is_floating_point or x.dtype == torch.bool:
        desc = f"{x.dtype} {tuple(x.shape)}" if isinstance(x, Tensor) else type(x).__name__
        raise ConfigError(f"{what} must be an integer tensor of shape (N, A), got {desc}")
    if cols is not None and x.shape[1] != cols:
        raise ConfigError(f"{what} has {x.shape[1]} columns, the schema has {cols} attributes")
    if rows is not None and x.shape[0] != rows:
        raise ConfigError(f"{what} has {x.shape[0]} rows, expected {rows}")
    return x.detach().cpu().long()


def _check_values(x: Tensor, schema: Schema, what: str, free_ok: bool = False) -> None:
    sizes = torch.tensor([len(v) for v in schema.values()])
    low = -1 if free_ok else 0
    bad = (x < low) | (x >= sizes)
    if bool(bad.any()):
        i, j = (int(v) for v in torch.nonzero(bad)[0])
        allowed = f"-1 (free) or 0..{int(sizes[j]) - 1}" if free_ok else f"0..{int(sizes[j]) - 1}"
        raise ConfigError(f"{what}[{i}, {j}] = {int(x[i, j])} is out of range for attribute "
                          f"{list(schema)[j]!r} ({allowed})")


def _images(x: Any, what: str) -> Tensor:
    if not isinstance(x, Tensor) or x.ndim != 4 or not x.dtype.is_floating_point:
        desc = f"{x.dtype} {tuple(x.shape)}" if isinstance(x, Tensor) else type(x).__name__
        raise ConfigError(f"{what} must be a float tensor of shape (N, C, H, W), got {desc}")
    if min(x.shape[2:]) < 8:
        raise ConfigError(f"{what}: images must be at least 8 x 8 pixels, got {x.shape[2]} x {x.shape[3]}")
    return x


def _features(x: Any, what: str) -> Tensor:
    if not isinstance(x, Tensor) or x.ndim != 2:
        desc = f"{x.dtype} {tuple(x.shape)}" if isinstance(x, Tensor) else type(x).__name__
        raise ConfigError(f"{what} must be a tensor of shape (n, d), got {desc}")
    return x.detach().cpu().double()


class AttributeNet(nn.Module):
    """A small CNN that reads every attribute of an image: one linear head per schema attribute.

    Three conv blocks (3 x 3, stride 2, batch norm, LeakyReLU(0.2)) of ``width``, ``2 width`` and
    ``4 width`` channels take a 28, 32 or 64 pixel image to a 4, 4 or 8 pixel map, average-pooled to
    4 x 4 (kept spatial: positions are attributes) and flattened into a ``feature_dim`` layer
    (LeakyReLU); the heads read those features, which also serve FID and diversity.
    :meth:`config` and :meth:`from_config` rebuild the net from JSON, so it saves as safetensors plus
    JSON (see :func:`ganforge.metrics.captioned.save_attribute_net`).
    """

    def __init__(self, channels: int, schema: dict[str, list[str]], width: int = 32, feature_dim: int = 128) -> None:
        super().__init__()
        for name, v in (("channels", channels), ("width", width), ("feature_dim", feature_dim)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ConfigError(f"AttributeNet: {name} must be a positive integer, got {v!r}")
        self.schema = _check_schema(schema, "AttributeNet")
        self.channels, self.width, self.feature_dim = channels, width, feature_dim
        layers: list[nn.Module] = []
        c_in = channels
        for c_out in (width, 2 * width, 4 * width):
            layers += [nn.Conv2d(c_in, c_out, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(c_out),
                       nn.LeakyReLU(0.2)]
            c_in = c_out
        layers += [_GridPool(_POOL), nn.Flatten(), nn.Linear(c_in * _POOL * _POOL, feature_dim),
                   nn.LeakyReLU(0.2)]
        self.body = nn.Sequential(*layers)
        self.heads = nn.ModuleList(nn.Linear(feature_dim, len(v)) for v in self.schema.values())

    def forward(self, x: Tensor) -> tuple[list[Tensor], Tensor]:
        """Per-attribute logits (one ``(N, K_a)`` tensor per schema attribute) and the ``(N, feature_dim)`` features."""
        if x.ndim != 4 or x.shape[1] != self.channels:
            raise ConfigError(f"AttributeNet expects (N, {self.channels}, H, W) images, got {tuple(x.shape)}")
        f = self.body(x)
        return [h(f) for h in self.heads], f

    def config(self) -> dict[str, Any]:
        """The constructor arguments as plain JSON values."""
        return {"channels": self.channels, "schema": {k: list(v) for k, v in self.schema.items()},
                "width": self.width, "feature_dim": self.feature_dim}

    @classmethod
    def from_config(cls, cfg: dict[str, Any]) -> AttributeNet:
        """A freshly initialised net of the architecture :meth:`config` described (load the weights after)."""
        if not isinstance(cfg, dict) or "channels" not in cfg or "schema" not in cfg:
            raise ConfigError(f"AttributeNet config needs 'channels' and 'schema', got {cfg!r}")
        unknown = set(cfg) - {"channels", "schema", "width", "feature_dim"}
        if unknown:
            raise ConfigError(f"AttributeNet config has unknown keys: {', '.join(sorted(unknown))}")
        return cls(cfg["channels"], cfg["schema"], width=cfg.get("width", 32), feature_dim=cfg.get("feature_dim", 128))


def train_attribute_net(images: Tensor, attributes: Tensor, schema: dict[str, list[str]], steps: int = 1500,
                        batch_size: int = 128, lr: float = 2e-3, seed: int = 0, progress: bool = False) -> AttributeNet:
    """Train an :class:`AttributeNet` on real ``images`` and their ``attributes``; returned in eval mode.

    Adam on the sum of the heads' cross-entropies, the learning rate decayed to 0 along a cosine (the
    last steps settle the batch-norm statistics and the boundary cases). Batches are reshuffled
    epochs drawn from a private generator and the weights are initialised under ``seed`` without
    touching the global RNG, so the net is a function of the data, the arguments and the seed (on a
    given torch build and thread count). No augmentation: shifts and scalings would change the
    position and size attributes the net must read.
    """
    schema = _check_schema(schema, "train_attribute_net")
    images = _images(images, "train_attribute_net: images")
    attributes = _int_matrix(attributes, "train_attribute_net: attributes", cols=len(schema), rows=len(images))
    _check_values(attributes, schema, "train_attribute_net: attributes")
    for name, v in (("steps", steps), ("batch_size", batch_size)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ConfigError(f"train_attribute_net: {name} must be a positive integer, got {v!r}")
    if len(images) < 2:
        raise ConfigError(f"train_attribute_net needs at least 2 images, got {len(images)}")
    if not lr > 0:
        raise ConfigError(f"train_attribute_net: lr must be > 0, got {lr!r}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = AttributeNet(images.shape[1], schema)
    device = images.device
    net.to(device).train()
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + math.cos(math.pi * s / steps)))
    gen = torch.Generator().manual_seed(seed)
    batch_size = min(batch_size, len(images))
    order, pos = torch.randperm(len(images), generator=gen), 0
    for _ in tqdm(range(steps), desc="attribute classifier", disable=not progress, leave=False):
        if pos + batch_size > len(order):
            order, pos = torch.randperm(len(images), generator=gen), 0
        idx = order[pos:pos + batch_size]
        pos += batch_size
        logits, _ = net(images[idx.to(device)].float())
        y = attributes[idx].to(device)
        loss = sum(F.cross_entropy(z, y[:, j]) for j, z in enumerate(logits))
        opt.zero_grad(set_to_none=True)
        loss.backward()  # type: ignore[union-attr]
        opt.step()
        sched.step()
    return net.eval()


def predict_attributes(net: AttributeNet, images: Tensor, batch: int = 500) -> tuple[Tensor, Tensor]:
    """The net's reading of ``images``: ``(N, A)`` int64 predicted value indices and ``(N, F)`` float
    features, both on the CPU; computed in eval mode under no_grad (the net's mode is restored)."""
    images = _images(images, "predict_attributes: images")
    if images.shape[1] != net.channels:
        raise ConfigError(f"predict_attributes: the net reads {net.channels}-channel images, got {images.shape[1]}")
    device = next(net.parameters()).device
    was_training = net.training
    preds, feats = [], []
    net.eval()
    try:
        with torch.no_grad():
            for i in range(0, len(images), batch):
                logits, f = net(images[i:i + batch].to(device).float())
                preds.append(torch.stack([z.argmax(1) for z in logits], 1).cpu())
                feats.append(f.float().cpu())
    finally:
        net.train(was_training)
    if not preds:
        return torch.zeros(0, len(net.schema), dtype=torch.long), torch.zeros(0, net.feature_dim)
    return torch.cat(preds), torch.cat(feats)


def attribute_accuracy(pred: Tensor, attributes: Tensor, schema: dict[str, list[str]]) -> dict[str, float]:
    """Fraction of images whose attribute is predicted right, per attribute, and ``"overall"`` (the
    mean over all N x A predictions)."""
    schema = _check_schema(schema, "attribute_accuracy")
    pred = _int_matrix(pred, "attribute_accuracy: pred", cols=len(schema))
    attributes = _int_matrix(attributes, "attribute_accuracy: attributes", cols=len(schema), rows=len(pred))
    if len(pred) == 0:
        raise ConfigError("attribute_accuracy needs at least one image")
    right = (pred == attributes).double()
    out = {name: float(right[:, j].mean()) for j, name in enumerate(schema)}
    out["overall"] = float(right.mean())
    return out


def caption_consistency(pred: Tensor, mentions: Tensor, schema: dict[str, list[str]]) -> dict[str, Any]:
    """How well images (one per caption) show what their captions state.

    ``pred`` ``(M, A)``: the attributes read in each image; ``mentions`` ``(M, A)``: what each caption
    states (-1 = free). Returns ``overall`` (the fraction of all stated attributes that match),
    ``per_attribute`` (name -> that fraction, None for an attribute no caption states),
    ``all_correct`` (the fraction of captions, among those that state anything, whose every stated
    attribute matches) and ``stated`` (the number of stated attributes).
    """
    schema = _check_schema(schema, "caption_consistency")
    mentions = _int_matrix(mentions, "caption_consistency: mentions", cols=len(schema))
    pred = _int_matrix(pred, "caption_consistency: pred", cols=len(schema), rows=len(mentions))
    _check_values(mentions, schema, "caption_consistency: mentions", free_ok=True)
    stated = mentions >= 0
    n_stated = int(stated.sum())
    if n_stated == 0:
        raise ConfigError("caption_consistency: the captions state no attribute at all")
    hit = (pred == mentions) & stated
    per: dict[str, float | None] = {}
    for j, name in enumerate(schema):
        s = int(stated[:, j].sum())
        per[name] = float(hit[:, j].sum()) / s if s else None
    # A caption that states nothing can be neither right nor wrong: it is left out of all_correct.
    says = stated.any(1)
    all_ok = (hit == stated).all(1) & says
    return {"overall": float(hit.sum()) / n_stated, "per_attribute": per,
            "all_correct": float(all_ok.sum()) / int(says.sum()), "stated": n_stated}


def r_precision(image_emb: Tensor, text_emb: Tensor, candidates: int = 100, seed: int = 0,
                groups: Tensor | None = None, chunk: int = 512, mentions: Tensor | None = None,
                image_attributes: Tensor | None = None) -> float:
    """AttnGAN's R-precision with R = 1: the fraction of images whose true caption is the most similar
    (cosine) among ``candidates`` captions.

    For each i, ``text_emb[i]`` competes with ``candidates - 1`` other rows of ``text_emb`` drawn
    uniformly without replacement (seeded), never i itself nor, when ``groups`` ``(M,)`` is given, a
    row of i's group (e.g. another caption of the same image) and, when ``mentions`` (M, A) of the
    captions and ``image_attributes`` (M, A) of row i's image are given, never a caption that is
    also true of image i (one that states no attribute against it: "a red circle" for a small red
    circle), so every competitor is a wrong caption. Ties count as misses. Rows are
    processed ``chunk`` at a time: memory is ``chunk x M``, and the draw depends on ``seed`` and
    ``chunk`` only.
    """
    for name, e in (("image_emb", image_emb), ("text_emb", text_emb)):
        if not isinstance(e, Tensor) or e.ndim != 2:
            raise ConfigError(f"r_precision: {name} must be a tensor of shape (M, d), got "
                              f"{tuple(e.shape) if isinstance(e, Tensor) else type(e).__name__}")
    if image_emb.shape != text_emb.shape:
        raise ConfigError(f"r_precision: image_emb {tuple(image_emb.shape)} and text_emb {tuple(text_emb.shape)} "
                          "must have the same shape (one caption per image)")
    if isinstance(candidates, bool) or not isinstance(candidates, int) or candidates < 2:
        raise ConfigError(f"r_precision: candidates must be an integer >= 2, got {candidates!r}")
    m = len(text_emb)
    img = F.normalize(image_emb.detach().cpu().float(), dim=1)
    txt = F.normalize(text_emb.detach().cpu().float(), dim=1)
    if groups is None:
        g = torch.arange(m)
    else:
        if not isinstance(groups, Tensor) or groups.shape != (m,):
            raise ConfigError(f"r_precision: groups must be a tensor of shape ({m},), got "
                              f"{tuple(groups.shape) if isinstance(groups, Tensor) else type(groups).__name__}")
        g = torch.unique(groups.detach().cpu(), return_inverse=True)[1]
    known = mentions is not None and image_attributes is not None
    if known and (mentions.shape != image_attributes.shape or len(mentions) != m):
        raise ConfigError(f"r_precision: mentions {tuple(mentions.shape)} and image_attributes "
                          f"{tuple(image_attributes.shape)} must both be ({m}, A)")

    def excluded(rows: Tensor) -> Tensor:
        out = g[rows, None] == g[None, :]
        if known:
            # Caption j is true of image i when every attribute it states equals the image's.
            stated = mentions[None, :, :] >= 0
            agree = mentions[None, :, :] == image_attributes[rows, None, :]
            out |= (~stated | agree).all(-1)
        return out

    # i itself is in its own group, so the pool of i is everything outside it.
    if known:
        pool = torch.cat([(~excluded(torch.arange(a, min(a + chunk, m)))).sum(1) for a in range(0, m, chunk)]) \
            if m else torch.zeros(0, dtype=torch.long)
    else:
        pool = m - torch.bincount(g)[g] if m else torch.zeros(0, dtype=torch.long)
    if m == 0 or int(pool.min()) < candidates - 1:
        least = int(pool.min()) if m else 0
        raise ConfigError(f"r_precision needs {candidates - 1} other captions to draw for every image, "
                          f"but {'some image has only ' + str(least) if m else 'there are no captions'}"
                          f"{' outside its group' if groups is not None and m else ''}")
    gen = torch.Generator().manual_seed(seed)
    hits = 0
    for start in range(0, m, chunk):
        rows = torch.arange(start, min(start + chunk, m))
        # Uniform keys, excluded rows pushed past 1: the k smallest are a uniform draw without replacement.
        keys = torch.rand(len(rows), m, generator=gen)
        keys[excluded(rows)] = 2.0
        drawn = keys.topk(candidates - 1, dim=1, largest=False).indices
        sims = img[rows] @ txt.T
        true = sims[torch.arange(len(rows)), rows]
        others = sims.gather(1, drawn)
        hits += int((true[:, None] > others).all(1).sum())
    return hits / m


def feature_fid(real_features: Tensor, fake_features: Tensor) -> float:
    """Fréchet distance between Gaussians fitted (float64) to two feature sets ``(n, d)``."""
    r = _features(real_features, "feature_fid: real_features")
    f = _features(fake_features, "feature_fid: fake_features")
    if r.shape[1] != f.shape[1]:
        raise ConfigError(f"feature_fid: feature dimensions differ ({r.shape[1]} real, {f.shape[1]} fake)")
    if len(r) < 2 or len(f) < 2:
        raise ConfigError(f"feature_fid needs at least 2 rows per set, got {len(r)} real and {len(f)} fake")
    return frechet_distance(r.mean(0), torch.cov(r.T).reshape(r.shape[1], -1),
                            f.mean(0), torch.cov(f.T).reshape(f.shape[1], -1))


def pairwise_distance(features: Tensor, max_n: int = 1000) -> float:
    """Mean Euclidean distance over the distinct pairs of the first ``max_n`` rows of ``features`` (float64)."""
    x = _features(features, "pairwise_distance: features")[:max_n]
    if len(x) < 2:
        raise ConfigError(f"pairwise_distance needs at least 2 rows, got {len(x)}")
    return float(torch.pdist(x).mean())


def modes_covered(pred: Tensor, free: list[int] | Tensor) -> int:
    """The number of distinct value tuples of the ``free`` attribute columns among predictions ``(n, A)``
    (1 when no column is free and there is any row)."""
    pred = _int_matrix(pred, "modes_covered: pred")
    cols = torch.as_tensor(free, dtype=torch.long).reshape(-1)
    if len(cols) and (int(cols.min()) < 0 or int(cols.max()) >= pred.shape[1]):
        raise ConfigError(f"modes_covered: free columns {cols.tolist()} out of range for {pred.shape[1]} attributes")
    if len(pred) == 0:
        return 0
    if len(cols) == 0:
        return 1
    return int(torch.unique(pred[:, cols], dim=0).shape[0])


def _ratio(a: float, b: float) -> float:
    return a / b if b > 0 else math.nan


def fixed_caption_diversity(fake_features: list[Tensor], real_features: list[Tensor],
                            fake_pred: list[Tensor] | None = None, real_pred: list[Tensor] | None = None,
                            free: list[list[int]] | None = None) -> dict[str, Any]:
    """Diversity of samples for fixed captions against real images satisfying the same captions.

    Entry k of each list belongs to caption k: the features (and attribute predictions) of the
    samples generated for it and of real images satisfying it; ``free[k]`` lists the attribute
    columns caption k leaves free. Returns ``fake`` and ``real`` (the mean over captions of
    :func:`pairwise_distance`), ``ratio`` (fake / real; below 1 means less varied than real),
    ``per_caption`` rows, and, when predictions and ``free`` are given, ``modes_fake`` and
    ``modes_real`` (the mean :func:`modes_covered` of the free attributes; collapse shows as fewer).
    """
    k = len(fake_features)
    if k == 0 or len(real_features) != k:
        raise ConfigError(f"fixed_caption_diversity needs one fake and one real feature set per caption, got "
                          f"{k} and {len(real_features)}")
    given = [x is not None for x in (fake_pred, real_pred, free)]
    if any(given) and not all(given):
        raise ConfigError("fixed_caption_diversity: give fake_pred, real_pred and free together (or none of them)")
    modes = all(given)
    if modes and not (len(fake_pred) == len(real_pred) == len(free) == k):  # type: ignore[arg-type]
        raise ConfigError(f"fixed_caption_diversity: fake_pred, real_pred and free need {k} entries each, got "
                          f"{len(fake_pred)}, {len(real_pred)} and {len(free)}")  # type: ignore[arg-type]
    rows: list[dict[str, Any]] = []
    for i in range(k):
        fd, rd = pairwise_distance(fake_features[i]), pairwise_distance(real_features[i])
        row: dict[str, Any] = {"fake": fd, "real": rd, "ratio": _ratio(fd, rd)}
        if modes:
            row["modes_fake"] = modes_covered(fake_pred[i], free[i])  # type: ignore[index]
            row["modes_real"] = modes_covered(real_pred[i], free[i])  # type: ignore[index]
        rows.append(row)
    fake = sum(r["fake"] for r in rows) / k
    real = sum(r["real"] for r in rows) / k
    out: dict[str, Any] = {"fake": fake, "real": real, "ratio": _ratio(fake, real), "per_caption": rows}
    if modes:
        out["modes_fake"] = sum(r["modes_fake"] for r in rows) / k
        out["modes_real"] = sum(r["modes_real"] for r in rows) / k
    return out


def real_matching(mentions: Tensor, attributes: Tensor) -> Tensor:
    """Bool mask ``(N,)`` of the images whose ``attributes`` ``(N, A)`` equal every value the caption's
    ``mentions`` ``(A,)`` states (-1 entries match anything)."""
    if not isinstance(mentions, Tensor) or mentions.ndim != 1:
        raise ConfigError(f"real_matching: mentions must be a tensor of shape (A,), got "
                          f"{tuple(mentions.shape) if isinstance(mentions, Tensor) else type(mentions).__name__}")
    attributes = _int_matrix(attributes, "real_matching: attributes", cols=len(mentions))
    m = mentions.detach().cpu().long()
    return ((attributes == m) | (m < 0)).all(1)
