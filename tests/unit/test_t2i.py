"""Text to image: the caption encoder and transform, GAN-CLS / GAN-INT terms, and a run end to end."""
from __future__ import annotations

import json
import math
import sys
import warnings

import pytest
import torch
import torch.nn.functional as F

from ganforge.cli import main
from ganforge.config import load_config
from ganforge.data.captioned import CaptionedImageData, caption_splits, normalize_caption
from ganforge.data.shapes import shapes_splits
from ganforge.generator import load
from ganforge.metrics.captioned import load_attribute_net
from ganforge.metrics.t2i import caption_consistency, predict_attributes
from ganforge.objectives.adversarial import AdversarialObjective
from ganforge.objectives.auxiliary import CaptionInterpolation, DataCondition
from ganforge.objectives.losses import LOSSES
from ganforge.registry import ConfigError
from ganforge.training.assemble import assemble
from ganforge.training.run import load_run_config, train

SMALL = ["--set", "data.options.n_train=240", "--set", "data.options.n_test=150",
         "--set", "data.options.encoder.steps=40", "--set", "eval.classifier_steps=40",
         "--set", "eval.captions=150", "--set", "train.batch_size=16", "--no-progress"]


def small_cfg(preset: str = "shapes-t2i", steps: int = 6, **train: int):
    cfg = load_config(preset)
    cfg.data.options = {"n_train": 240, "n_test": 150, "encoder": {"steps": 40}, "progress": False}
    cfg.eval.classifier_steps, cfg.eval.captions = 40, 150
    cfg.train.steps, cfg.train.batch_size, cfg.train.progress, cfg.train.tensorboard = steps, 16, False, False
    for k, v in train.items():
        setattr(cfg.train, k, v)
    return cfg


@pytest.fixture(scope="module")
def data() -> CaptionedImageData:
    splits = shapes_splits(240, 150, 5, 32, 0)
    train_set = splits.pop("train")
    from ganforge.training.caption_encoder import fit_caption_encoder

    source = CaptionedImageData(train_set, splits, {"steps": 60}, progress=False)
    assert fit_caption_encoder(source) == "fitted"  # the data source trains nothing itself
    return source


def test_matching_pretraining_learns_and_batches_carry_captions(data):
    # 60 steps on 240 images: far from done, but well above chance (1/128 in a batch).
    assert data.matching["matching_batch_accuracy"] > 0.05
    b = data.batch(32, torch.Generator().manual_seed(0))
    assert b["x"].shape == (32, 3, 32, 32) and b["c"].shape == (32, 64) and b["c_wrong"].shape == (32, 64)
    # Conditions are unit embeddings times sqrt(dim).
    assert torch.allclose(b["c"].norm(dim=1), torch.full((32,), 8.0), atol=1e-4)
    assert data.spec.condition_dim == 64 and data.spec.extra["captions"]


def test_mismatched_captions_contradict_their_images(data):
    gen = torch.Generator().manual_seed(1)
    idx = torch.arange(len(data))
    caps = data._wrong(idx, gen)
    m, a = data.mentions[caps], data.attributes[idx]
    contradicts = ((m >= 0) & (m != a)).any(1)
    assert contradicts.float().mean() > 0.99
    assert not bool((data.image_of[caps] == idx).any())


def test_captions_bad_and_odd_input(data):
    t = data.transform
    assert normalize_caption("Top-Left: tiny RED disc!") == "top left  tiny red disc "
    with pytest.raises(ConfigError, match="caption 2 is empty"):
        t.encode(["a red circle", "   "])
    with pytest.raises(ConfigError, match="only punctuation"):
        t.encode(["?!"])
    with pytest.raises(ConfigError, match="none of its words"):
        t.encode(["zebra quokka"])
    with pytest.warns(UserWarning, match="unknown words read as <unk>: círculo"):
        c = t.encode(["a red círculo ✓ at the top"])
    assert c.shape == (1, 64) and torch.isfinite(c).all()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        same = t.encode(["A RED circle, at the top!"])
    assert torch.allclose(same, t.encode(["a red circle at the top"]))


def test_gan_cls_d_loss_is_reeds_average_and_gan_int_mixes_captions():
    """D's loss with GAN-CLS: -log s_r - (log(1 - s_w) + log(1 - s_f)) / 2; GAN-INT's term judges G's
    samples at beta * c1 + (1 - beta) * c2."""
    g = torch.Generator().manual_seed(0)
    real = {"x": torch.randn(8, 3, 4, 4, generator=g), "c": torch.randn(8, 5, generator=g),
            "c_wrong": torch.randn(8, 5, generator=g)}
    fake = {"x": torch.randn(8, 3, 4, 4, generator=g), "c": torch.randn(8, 5, generator=g)}
    conds = iter([torch.ones(8, 5), torch.zeros(8, 5)])

    def judge(x, c=None, **_):
        return x.mean((1, 2, 3)) + c.sum(1), {}

    class Stub:
        step, batch_size, rng = 0, 8, g
        data = type("D", (), {"fake_conditions": staticmethod(lambda n, r: {"c": next(conds)})})()
        seen: list[torch.Tensor] = []

        def real(self, n=None):
            return real

        def fake(self, n=None, grad=True, condition=None):
            if condition is not None:
                self.seen.append(condition)
                return {"x": torch.zeros(8, 3, 4, 4), "c": condition}
            return fake

        def judge(self, x, c=None, **kw):
            return judge(x, c)

    obj = AdversarialObjective(LOSSES.get("nonsaturating"), condition=DataCondition(), mismatch=True,
                               interpolation=CaptionInterpolation(0.25, 2.0))
    loss, logs = obj.d_loss(Stub())
    s_r, s_f, s_w = judge(real["x"], real["c"])[0], judge(fake["x"], fake["c"])[0], judge(real["x"], real["c_wrong"])[0]
    expected = F.softplus(-s_r).mean() + 0.5 * (F.softplus(s_f).mean() + F.softplus(s_w).mean())
    assert torch.allclose(loss, expected) and "d_wrong" in logs
    stub = Stub()
    g_loss, g_logs = obj.g_loss(stub)
    mixed = stub.seen[-1]
    assert torch.allclose(mixed, torch.full((8, 5), 0.25))  # 0.25 * ones + 0.75 * zeros
    expected_int = 2.0 * F.softplus(-(mixed.sum(1))).mean()
    assert torch.allclose(g_logs["g_int"], expected_int)
    assert torch.allclose(g_loss, F.softplus(-judge(fake["x"], fake["c"])[0]).mean() + expected_int)


def test_t2i_terms_need_captioned_data():
    cfg = load_config("mnist-dcgan-plain")
    cfg.model.t2i.cls = True
    with pytest.raises(ConfigError, match="needs captioned images"):
        assemble(cfg)


def test_run_sample_and_eval_end_to_end(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "shapes-t2i", "--out", str(run), "--steps", "12", *SMALL,
                 "--set", "train.eval_every=6", "--set", "train.sample_every=6"]) == 0
    summary = json.loads((run / "summary.json").read_text())
    test = summary["captions"]["test"]
    for key in ("consistency_test", "consistency_heldout_phrasings", "consistency_heldout_combos", "r_precision"):
        assert 0 <= summary[key] <= 1, key  # fractions
    assert math.isfinite(summary["fid_classifier"]) and summary["fid_classifier"] >= 0
    # The baseline, measured here: the real test images, each with another image's caption (a
    # generator that ignores its captions but draws perfect images), read by the run's classifier.
    cfg = load_run_config(run)
    _, sets = caption_splits(cfg.data.name, dict(cfg.data.options), cfg.data.path)
    net = load_attribute_net(run / "attribute_net.safetensors")
    cs = sets["test"]
    other = cs.image_of[torch.randperm(len(cs), generator=torch.Generator().manual_seed(0))]
    ignoring = caption_consistency(predict_attributes(net, cs.images[other])[0], cs.mentions, cs.schema)["overall"]
    assert 0.1 < ignoring < 0.45  # about 1/K per stated attribute (measured 0.26)
    # Real images of their own captions: well above that (measured 0.80 after 40 classifier steps),
    # and so is their R-precision above chance (1 in 100; measured 0.43).
    assert test["consistency_real"] > ignoring + 0.3
    assert test["r_precision_real"] > 0.2
    # G after 12 steps has not learnt the captions yet: it scores as the caption-ignoring baseline
    # (measured 0.267 against 0.262), well below the real images, R-precision near chance, and its
    # FID far above that of two halves of the real test set (measured 527 against 52).
    assert abs(summary["consistency_test"] - ignoring) < 0.12
    assert summary["consistency_test"] < test["consistency_real"] - 0.3
    assert summary["r_precision"] < 0.1
    assert summary["fid_classifier"] > 2 * test["fid_real_half"]
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert sum("eval/consistency_test" in r for r in log) == 2  # steps 6 and 12
    assert (run / "captions.png").is_file() and (run / "attribute_net.safetensors").is_file()
    capsys.readouterr()
    grid = tmp_path / "grid.png"
    assert main(["sample", str(run), "--caption", "a big blue square at the bottom", "--n", "16",
                 "--out", str(grid)]) == 0
    from PIL import Image

    with Image.open(grid) as im:
        assert im.size == ((32 + 2) * 4 * 2 + 4, (32 + 2) * 4 * 2 + 4)
    assert main(["sample", str(run), "--caption", "a red circle", "--caption", "a green box", "--n", "5",
                 "--out", str(tmp_path / "style.png")]) == 0
    assert main(["sample", str(run), "--caption", "a red circle", "--caption", "a box", "--n", "2",
                 "--out", str(tmp_path / "imgs")]) == 0
    assert len(list((tmp_path / "imgs").glob("*.png"))) == 4
    rows = [json.loads(line) for line in (tmp_path / "imgs" / "captions.jsonl").read_text().splitlines()]
    assert [r["caption"] for r in rows] == ["a red circle"] * 2 + ["a box"] * 2
    # A fresh process loads the generator file alone (the caption transform registers itself on load).
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "ganforge", "sample", str(run), "--caption", "a red circle",
                           "--n", "4", "--out", str(tmp_path / "fresh.png")], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "fresh.png").is_file()
    capsys.readouterr()
    assert main(["sample", str(run), "--caption", "", "--n", "2", "--out", str(tmp_path / "x.png")]) == 2
    err = capsys.readouterr().err.strip()
    assert "caption 1 is empty" in err and len(err.splitlines()) == 1
    assert main(["sample", str(run), "--caption", "a red circle", "--label", "1",
                 "--out", str(tmp_path / "y.png")]) == 2
    # Saved and loaded: the same images for the same captions and seed, noise shared across captions.
    gen = load(run)
    a = gen.sample(4, seed=3, captions=["a red circle", "a big green box"], same_noise=True)
    assert a.shape == (8, 3, 32, 32)
    capsys.readouterr()
    assert main(["eval", str(run), "--n", "150"]) == 0
    result = json.loads((run / "eval.json").read_text())
    assert set(result) >= {"test", "heldout_phrasings", "heldout_combos", "headline", "protocol"}
    assert main(["eval", str(run), "--metrics", "fid"]) == 2


def test_same_noise_keeps_style_across_captions(tmp_path):
    res = train(small_cfg(steps=4), out=tmp_path / "r")
    caps = ["a red circle at the top left", "a big blue square at the bottom right"]
    shared = res.artifact.sample(3, seed=5, captions=caps, same_noise=True)
    fresh = res.artifact.sample(3, seed=5, captions=caps)
    # Row 1 is the same either way (same seed, same first noise); row 2 differs only by its noise.
    assert torch.allclose(shared[:3], fresh[:3])
    assert not torch.allclose(shared[3:], fresh[3:])
    loaded = load(tmp_path / "r")
    assert torch.allclose(loaded.sample(3, seed=5, captions=caps, same_noise=True), shared, atol=1e-6)
    with pytest.raises(ConfigError, match="list of one or more"):
        loaded.sample(2, captions="a red circle")


def count_fits(monkeypatch) -> list[int]:
    """Count the caption encoder's pretraining runs, wherever the package imported the function."""
    from ganforge.nn import caption

    real, calls = caption.pretrain_matching, []

    def counted(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    for name, module in list(sys.modules.items()):
        if name.startswith("ganforge") and getattr(module, "pretrain_matching", None) is real:
            monkeypatch.setattr(module, "pretrain_matching", counted)
    return calls


def encoder_tensors(source) -> dict[str, torch.Tensor]:
    return source.transform.tensors()


def test_resume_is_exact_and_fits_no_caption_encoder(tmp_path, monkeypatch):
    from ganforge.training.checkpoint import load_state, save_state

    fits = count_fits(monkeypatch)
    straight = train(small_cfg(steps=8, checkpoint_every=4, eval_every=0), out=tmp_path / "a")
    first = train(small_cfg(steps=4, checkpoint_every=4, eval_every=0), out=tmp_path / "b")
    assert len(fits) == 2  # once per new run
    fitted = encoder_tensors(first.parts.data)
    resumed = train(small_cfg(steps=8, checkpoint_every=4, eval_every=0), out=tmp_path / "b", resume=True)
    assert len(fits) == 2, "the resume fitted the caption encoder again"
    for k, v in straight.parts.generator.state_dict().items():
        assert torch.equal(v, resumed.parts.generator.state_dict()[k]), k
    again = encoder_tensors(resumed.parts.data)
    assert again.keys() == fitted.keys() and all(torch.equal(again[k], fitted[k]) for k in fitted)
    assert resumed.summary["captions"]["encoder"]["matching_loss"] == first.parts.data.matching["matching_loss"]
    # A run written before the encoder was cached: the checkpoint's copy is used, not refitted.
    (tmp_path / "b" / "caption_encoder.safetensors").unlink()
    resumed = train(small_cfg(steps=10, checkpoint_every=4, eval_every=0), out=tmp_path / "b", resume=True)
    assert len(fits) == 2
    again = encoder_tensors(resumed.parts.data)
    assert all(torch.equal(again[k], fitted[k]) for k in fitted)
    # A checkpoint written before the encoders were kept (its data state is the sampler's alone) still
    # resumes: the encoder is fitted once more (the same seeded computation) and cached.
    ckpt = tmp_path / "b" / "checkpoints" / "last.safetensors"
    state = load_state(ckpt)
    state["data"] = state["data"]["sampler"]
    save_state(ckpt, state)
    assert not (tmp_path / "b" / "caption_encoder.safetensors").exists()  # a checkpoint's copy is not cached
    resumed = train(small_cfg(steps=12, checkpoint_every=4, eval_every=0), out=tmp_path / "b", resume=True)
    assert len(fits) == 3 and resumed.trainer.step_num == 12
    assert (tmp_path / "b" / "caption_encoder.safetensors").is_file()


def test_one_process_fits_the_caption_encoder_the_others_receive_it(tmp_path, monkeypatch):
    from ganforge.training import caption_encoder
    from ganforge.training.caption_encoder import EncoderCache, fit_caption_encoder
    from ganforge.training.distributed import World

    fits = count_fits(monkeypatch)
    sent: list = []

    def broadcast(obj, world):  # rank 0's object on every rank, as torch.distributed would give it
        if world.rank == 0:
            sent.append(obj)
        return sent[-1]

    monkeypatch.setattr(caption_encoder, "broadcast", broadcast)
    train_set = shapes_splits(40, 10, 2, 32, 0)["train"]

    def source(**encoder):
        return CaptionedImageData(train_set, {}, {"steps": 3, **encoder}, progress=False)

    cache = tmp_path / "caption_encoder.safetensors"
    rank0, rank1 = source(), source()
    assert fit_caption_encoder(rank0, EncoderCache(cache, None, World(rank=0, size=2))) == "fitted"
    assert fit_caption_encoder(rank1, EncoderCache(None, None, World(rank=1, size=2))) == "fitted"  # rank 0's
    assert len(fits) == 1 and torch.equal(rank0.c, rank1.c)
    # Another process on the same data and settings loads the cache; other settings fit their own.
    later = source()
    assert fit_caption_encoder(later, EncoderCache(cache)) == "cache" and len(fits) == 1
    assert torch.equal(later.c, rank0.c)
    assert fit_caption_encoder(source(seed=1), EncoderCache(cache)) == "fitted" and len(fits) == 2
    # The data source trains nothing itself: without an encoder it has no batches.
    with pytest.raises(ConfigError, match="no caption encoder yet"):
        source().batch(4)


def test_mnist_t2i_trains_and_scores_its_captions(tmp_path):
    cfg = load_config("mnist-t2i")
    cfg.data.options = {"encoder": {"steps": 10}, "progress": False}
    cfg.eval.classifier_steps, cfg.eval.captions = 20, 120
    cfg.train.steps, cfg.train.batch_size, cfg.train.progress, cfg.train.tensorboard = 3, 16, False, False
    res = train(cfg, out=tmp_path / "m")
    assert res.artifact.spec.shape == (1, 28, 28)
    assert {"consistency_test", "consistency_heldout_combos", "r_precision"} <= set(res.summary)
    x = res.artifact.sample(2, captions=["a thick seven slanted to the right", "handwritten 1, thin stroke"])
    assert x.shape == (4, 1, 28, 28)
