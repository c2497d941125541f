"""The shipped digit classifier and the metrics computed with it, on real MNIST images.

These are the issue's validation checks: FID of a set against itself is ~0; the 5,000 training
images against the held-out half give a small FID; FID grows monotonically as noise or blur is
added; KID is ~0 for two samples of the same distribution; nothing depends on the batch size.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from ganforge.data.mnist import embedded_mnist, to_tensor_images
from ganforge.metrics import digits
from ganforge.metrics.evaluate import evaluate
from ganforge.metrics.features import file_sha256, get_extractor
from ganforge.metrics.modes import stacked_mnist_modes
from ganforge.registry import ConfigError


@pytest.fixture(scope="module")
def heldout() -> tuple[torch.Tensor, np.ndarray]:
    x, y = embedded_mnist("heldout")
    return to_tensor_images(x), y


def fid(source, reference, n=None, **kw) -> float:
    return evaluate(source, reference=reference, metrics="fid", n=n, progress=False, **kw)["fid"]


def test_shipped_weights_match_the_pinned_hash():
    from importlib import resources
    path = resources.files("ganforge.metrics.weights").joinpath(digits.WEIGHTS_FILE)
    assert file_sha256(str(path)) == digits.WEIGHTS_SHA256
    with pytest.raises(ConfigError, match="does not match the pinned"):
        digits.load_digit_net(expected_sha256="0" * 64)


def test_classifier_accuracy_on_heldout(heldout):
    x, y = heldout
    logits = get_extractor("digits").classify(x)
    acc = float((logits.argmax(1).numpy() == y).mean())
    assert acc >= 0.985, acc


def test_fid_of_a_set_with_itself_is_zero(heldout):
    assert abs(fid(heldout[0][:2000], heldout[0][:2000])) < 1e-6


def test_fid_train_vs_heldout_is_small_and_far_below_noise(heldout):
    floor = fid("mnist:train5k", "mnist:heldout")
    noise = fid(torch.rand(2000, 1, 28, 28) * 2 - 1, "mnist:heldout")
    assert 0 < floor < 10, floor
    assert noise > 50 * floor, (noise, floor)


def _blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    r = torch.arange(-3, 4, dtype=torch.float32)
    k = torch.exp(-r ** 2 / (2 * sigma ** 2))
    k = (k / k.sum())
    x = F.conv2d(F.pad(x, (3, 3, 0, 0), value=-1.0), k.view(1, 1, 1, 7))
    return F.conv2d(F.pad(x, (0, 0, 3, 3), value=-1.0), k.view(1, 1, 7, 1))


def test_fid_grows_monotonically_with_noise_and_blur(heldout):
    x = to_tensor_images(embedded_mnist("train5k")[0])[::4]  # 1,250 images, all classes
    gen = torch.Generator().manual_seed(0)
    noisy = [fid((x + s * torch.randn(x.shape, generator=gen)).clamp(-1, 1), "mnist:heldout")
             for s in (0.0, 0.1, 0.25, 0.5, 1.0)]
    blurred = [fid(_blur(x, s) if s else x, "mnist:heldout") for s in (0, 0.6, 1.0, 1.5, 2.5)]
    assert all(a < b for a, b in zip(noisy, noisy[1:], strict=False)), noisy
    assert all(a < b for a, b in zip(blurred, blurred[1:], strict=False)), blurred


def test_kid_is_unbiased_for_two_samples_of_one_distribution():
    # The test set's two interleaved halves: the same writers, the same distribution.
    a, _ = embedded_mnist("test")
    half_a = to_tensor_images(a[0::2])
    same = evaluate(half_a, reference="mnist:heldout", metrics="kid", progress=False)
    noisy = evaluate((half_a + 0.25 * torch.randn(half_a.shape, generator=torch.Generator().manual_seed(1))
                      ).clamp(-1, 1), reference="mnist:heldout", metrics="kid", progress=False)
    assert abs(same["kid"]) < 2 * same["kid_std"], same
    assert noisy["kid"] > 20 * max(abs(same["kid"]), same["kid_std"] / 10), (same, noisy)


def test_results_do_not_depend_on_batch_size(heldout):
    x = to_tensor_images(embedded_mnist("train5k")[0])[:1500]
    a = evaluate(x, metrics="fid,kid,is,pr,dc", batch_size=100, progress=False)
    b = evaluate(x, metrics="fid,kid,is,pr,dc", batch_size=1000, progress=False)
    for k in ("fid", "kid", "inception_score", "precision", "recall", "density", "coverage"):
        assert a[k] == pytest.approx(b[k], rel=1e-6, abs=1e-9), k
    p = a["protocol"]
    assert p["extractor_sha256"] == digits.WEIGHTS_SHA256 and p["n_fake"] == 1500 and p["n_real"] == 5000
    assert p["reference"] == "mnist:heldout" and "bilinear" in p["resize"]


def test_a_generator_is_sampled_with_fixed_noise_whatever_the_batch_size():
    from ganforge.config import NetConfig
    from ganforge.nn import build_generator
    torch.manual_seed(0)
    g = build_generator(NetConfig(name="dcgan", width=8), (1, 28, 28), 16)
    a = evaluate(g, metrics="fid", n=600, batch_size=128, progress=False)["fid"]
    b = evaluate(g, metrics="fid", n=600, batch_size=600, progress=False)["fid"]
    assert a == pytest.approx(b, rel=1e-6)
    assert g.training  # evaluation left the module's mode as it was


def test_array_file_and_folder_sources(tmp_path, heldout):
    x = embedded_mnist("train5k")[0][:300]
    np.savez(tmp_path / "x.npz", images=x)
    from PIL import Image
    (tmp_path / "imgs").mkdir()
    for i, a in enumerate(x):
        Image.fromarray(a).save(tmp_path / "imgs" / f"{i:03d}.png")
    from_npz = fid(tmp_path / "x.npz", "mnist:heldout")
    from_dir = fid(tmp_path / "imgs", "mnist:heldout")
    from_tensor = fid(to_tensor_images(x), "mnist:heldout")
    assert from_npz == pytest.approx(from_tensor, rel=1e-6)
    assert from_dir == pytest.approx(from_tensor, rel=1e-6)


def test_the_top_level_evaluate_is_the_pipeline():
    import ganforge

    x = to_tensor_images(embedded_mnist("train5k")[0][:500])
    a = ganforge.evaluate(x, metrics="fid", progress=False)
    assert a["fid"] == pytest.approx(evaluate(x, metrics="fid", progress=False)["fid"])
    assert callable(ganforge.register_feature_extractor)


def test_bad_metric_and_bad_source_are_one_line_errors():
    with pytest.raises(ConfigError, match="did you mean 'fid'"):
        evaluate("mnist:train5k", metrics="fdi", progress=False)
    with pytest.raises(ConfigError, match="unknown data set"):
        evaluate("nosuchdata:split", metrics="fid", progress=False)
    with pytest.raises(ConfigError, match="array file not found"):
        evaluate("missing.npz", metrics="fid", progress=False)


def test_stacked_mnist_modes_on_real_and_collapsed_data():
    from ganforge.data.images import stacked_mnist
    x, y = embedded_mnist("heldout")
    stacked, labels = stacked_mnist(x, y, 6000, seed=0)
    imgs = to_tensor_images(stacked)
    classify = get_extractor("digits").classify
    real = stacked_mnist_modes(imgs, classify)
    # 6,000 uniform draws over 1,000 modes leave about 1000 e^-6 = 2.5 modes empty.
    assert real["modes_covered"] >= 985 and real["kl_to_uniform"] < 0.15, real
    digits_read = [classify(imgs[:1000, c:c + 1]).argmax(1) for c in range(3)]
    modes_read = 100 * digits_read[0] + 10 * digits_read[1] + digits_read[2]
    assert (modes_read.numpy() == labels[:1000]).mean() >= 0.97  # 0.994^3 per stacked sample
    collapsed = stacked_mnist_modes(imgs[:1].expand(2000, -1, -1, -1), classify)
    assert collapsed["modes_covered"] == 1
    assert collapsed["kl_to_uniform"] == pytest.approx(np.log(1000))
