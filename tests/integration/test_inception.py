"""The FID Inception-v3 (NVIDIA's TorchScript file), offline: fetching it from a local server, pinning its
SHA-256, the extractor's conversions, which extractor ``auto`` picks, the evaluation's warnings, and a
training run on colour images that finishes (image metrics skipped) where the file cannot be had."""
from __future__ import annotations

import hashlib
import json
import socket
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from procs import Server
from torch import Tensor, nn

from ganforge.data.mnist import to_tensor_images
from ganforge.metrics import digits, features, inception
from ganforge.metrics.evaluate import evaluate
from ganforge.metrics.features import (
    FEATURE_EXTRACTORS,
    InceptionExtractor,
    choose_extractor,
    get_extractor,
    resolve_extractor,
)
from ganforge.metrics.inception import INCEPTION_TS_ENV, INCEPTION_TS_FILE, INCEPTION_TS_URL, inception_weights
from ganforge.registry import ConfigError


class FakeInception(nn.Module):
    """Called like NVIDIA's file: uint8 NCHW RGB in; ``return_features`` gives 2048 "features" (here the
    first 2048 pixel values, so a test reads back exactly what the network was fed), otherwise softmax
    probabilities over 1008 classes (without the output bias when ``no_output_bias``)."""

    def __init__(self) -> None:
        super().__init__()
        self.output = nn.Linear(2048, 1008)
        with torch.no_grad():
            self.output.weight.copy_(torch.randn(1008, 2048, generator=torch.Generator().manual_seed(0)) / 2000)
            self.output.bias.fill_(3.0)

    def forward(self, img: Tensor, return_features: bool = False, use_fp16: bool = False,
                no_output_bias: bool = False) -> Tensor:
        assert img.dtype == torch.uint8
        assert img.shape[1] == 3
        n = img.shape[0]
        flat = img.reshape(n, -1).to(torch.float32)[:, :2048]
        feats = torch.zeros(n, 2048)
        feats[:, :flat.shape[1]] = flat
        if return_features:
            return feats
        logits = F.linear(feats, self.output.weight) if no_output_bias else self.output(feats)
        return F.softmax(logits, dim=1)


@pytest.fixture(scope="module")
def fake_file(tmp_path_factory) -> tuple[Path, str]:
    """A TorchScript file made like the real one, and its SHA-256."""
    path = tmp_path_factory.mktemp("ts") / INCEPTION_TS_FILE
    torch.jit.script(FakeInception()).save(str(path))
    return path, hashlib.sha256(path.read_bytes()).hexdigest()


def dead_url() -> str:
    """The URL of the file on a port nobody listens on (connection refused)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/{INCEPTION_TS_FILE}"


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    """An empty cache (XDG_CACHE_HOME), no GANFORGE_INCEPTION_TS, no built inception extractor, and no
    way out to the real URL: where the file lands by default."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv(INCEPTION_TS_ENV, raising=False)
    monkeypatch.setattr(inception, "INCEPTION_TS_URLS", [dead_url()])
    monkeypatch.delitem(features._INSTANCES, "inception", raising=False)
    return tmp_path / "cache" / "ganforge" / INCEPTION_TS_FILE


@pytest.fixture
def served(tmp_path, fake_file):
    folder = tmp_path / "www"
    folder.mkdir()
    (folder / INCEPTION_TS_FILE).write_bytes(fake_file[0].read_bytes())
    server = Server(folder)
    yield server
    server.close()


@pytest.fixture
def fake_inception(monkeypatch, cache, fake_file) -> str:
    """The fake file in place of the real one (``$GANFORGE_INCEPTION_TS``, its hash pinned): what
    ``get_extractor("inception")`` builds. Returns its SHA-256."""
    path, sha = fake_file
    monkeypatch.setenv(INCEPTION_TS_ENV, str(path))
    monkeypatch.setattr(inception, "INCEPTION_TS_SHA256", sha)
    return sha


def one_line(e: pytest.ExceptionInfo) -> str:
    text = str(e.value)
    assert "\n" not in text, text
    return text


# -- the file: fetched once, verified, reused; a wrong one refused; no network: one line saying what to do --------


def test_downloads_to_the_cache_verifies_and_reuses(cache, served, fake_file):
    url = served.url + INCEPTION_TS_FILE
    path, digest = inception_weights(urls=[url], sha256=fake_file[1])
    assert path == cache and digest == fake_file[1]
    assert hashlib.sha256(cache.read_bytes()).hexdigest() == fake_file[1]
    assert served.requests == [f"/{INCEPTION_TS_FILE}"]
    assert [p.name for p in cache.parent.iterdir()] == [INCEPTION_TS_FILE]  # no partial file left
    served.close()  # the second call needs no network
    assert inception_weights(urls=[url], sha256=fake_file[1]) == (cache, fake_file[1])
    assert inception_weights(urls=[dead_url()], sha256=fake_file[1]) == (cache, fake_file[1])
    assert served.requests == [f"/{INCEPTION_TS_FILE}"]


def test_environment_variable_names_the_file(monkeypatch, cache, fake_file, tmp_path):
    monkeypatch.setenv(INCEPTION_TS_ENV, str(fake_file[0]))
    assert inception.default_inception_path() == fake_file[0]
    assert inception_weights(sha256=fake_file[1]) == (fake_file[0], fake_file[1])  # there: no download
    monkeypatch.setenv(INCEPTION_TS_ENV, str(tmp_path / "elsewhere.pt"))
    with pytest.raises(ConfigError) as e:
        inception_weights(sha256=fake_file[1])
    assert str(tmp_path / "elsewhere.pt") in one_line(e)


def test_a_local_file_with_another_hash_is_refused(cache, fake_file):
    cache.parent.mkdir(parents=True)
    cache.write_bytes(fake_file[0].read_bytes())
    pinned = "0" * 64
    with pytest.raises(ConfigError) as e:
        inception_weights(sha256=pinned)
    text = one_line(e)
    assert str(cache) in text and f"expected {pinned}" in text and fake_file[1] in text
    assert INCEPTION_TS_FILE in text and INCEPTION_TS_ENV in text
    assert cache.is_file()  # refused, not deleted: the user decides


def test_a_download_with_another_hash_is_refused_and_not_kept(cache, served):
    pinned = "1" * 64
    with pytest.raises(ConfigError) as e:
        inception_weights(urls=[served.url + INCEPTION_TS_FILE], sha256=pinned)
    text = one_line(e)
    assert "checksum mismatch" in text and f"expected sha256 {pinned}" in text and str(cache) in text
    assert not cache.exists() and list(cache.parent.iterdir()) == []


def test_no_network_is_one_line_naming_file_url_and_destination(cache):
    with pytest.raises(inception.ExtractorUnavailable) as e:
        inception_weights()
    text = one_line(e)
    assert INCEPTION_TS_FILE in text and INCEPTION_TS_URL in text and str(cache) in text
    assert INCEPTION_TS_ENV in text and "could not be downloaded" in text
    assert e.value.path == cache and not cache.exists()
    with pytest.raises(ConfigError, match="could not be downloaded"):  # the registered extractor says the same
        get_extractor("inception")
    assert "inception" not in features._INSTANCES  # nothing cached: a file put in place later is used


def test_an_unwritable_cache_is_one_line(cache, monkeypatch, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("a file where the cache folder should be")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocker))
    with pytest.raises(inception.ExtractorUnavailable) as e:
        inception_weights()
    assert INCEPTION_TS_FILE in one_line(e) and INCEPTION_TS_URL in str(e.value)


def test_a_file_that_is_not_torchscript_is_refused(tmp_path):
    bad = tmp_path / INCEPTION_TS_FILE
    bad.write_bytes(b"not a TorchScript archive")
    with pytest.raises(ConfigError, match="not a loadable TorchScript file") as e:
        InceptionExtractor(bad, expected_sha256=hashlib.sha256(bad.read_bytes()).hexdigest())
    one_line(e)


# -- the extractor ---------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def extractor(fake_file) -> InceptionExtractor:
    return InceptionExtractor(fake_file[0], expected_sha256=fake_file[1], device="cpu")


def test_features_and_unbiased_logits(extractor, fake_file):
    assert extractor.sha256 == fake_file[1] and (extractor.feature_dim, extractor.num_classes) == (2048, 1008)
    x = torch.rand(5, 3, 8, 8, generator=torch.Generator().manual_seed(1)) * 2 - 1
    f, z = extractor.extract(x)
    assert f.shape == (5, 2048) and z.shape == (5, 1008) and f.dtype == z.dtype == torch.float32
    w = extractor.net.output.weight.detach()
    assert torch.allclose(z, f @ w.T, atol=1e-4)  # the output layer without its bias
    # A network without an exposed output layer: its no_output_bias probabilities, as log-probabilities.
    no_head = InceptionExtractor(fake_file[0], expected_sha256=fake_file[1], device="cpu")
    no_head._head = None
    _, z2 = no_head.extract(x)
    assert torch.allclose(z2.softmax(1), z.softmax(1), atol=1e-5)


def test_more_images_than_a_chunk(extractor, monkeypatch):
    x = torch.rand(7, 3, 4, 4, generator=torch.Generator().manual_seed(2)) * 2 - 1
    whole, _ = extractor.extract(x)
    monkeypatch.setattr(extractor, "chunk", 3)
    parts, _ = extractor.extract(x)
    assert torch.equal(whole, parts)


def test_grey_is_repeated_to_rgb_and_pixels_are_uint8(extractor):
    grey = torch.rand(2, 1, 6, 6, generator=torch.Generator().manual_seed(3)) * 2 - 1
    f_grey, _ = extractor.extract(grey)
    f_rgb, _ = extractor.extract(grey.repeat(1, 3, 1, 1))
    assert torch.equal(f_grey, f_rgb)
    # Pixels read from uint8 files come back as themselves (the fake's features are its input pixels).
    u = np.arange(256, dtype=np.uint8).reshape(1, 16, 16)
    f, _ = extractor.extract(to_tensor_images(u))
    fed = f[0, :768].reshape(3, 256)
    assert torch.equal(fed, torch.arange(256.0).expand(3, 256))
    # Float images: (x * 127.5 + 128) clamped to 0..255 and truncated (stylegan2-ada-pytorch's conversion).
    x = torch.tensor([-2.0, -1.0, -0.999, 0.0, 0.5, 1.0, 3.0]).reshape(1, 1, 1, 7)
    f, _ = extractor.extract(x)
    assert f[0, :7].tolist() == [0, 0, 0, 128, 191, 255, 255]
    assert features.to_uint8(x).flatten().tolist() == [0, 0, 0, 128, 191, 255, 255]


def test_the_two_inception_extractors_are_told_apart():
    assert {"inception", "inception-v3", "digits"} <= set(FEATURE_EXTRACTORS.keys())
    assert "stylegan2-ada-pytorch" in FEATURE_EXTRACTORS.describe("inception")
    assert "torch-fidelity" in FEATURE_EXTRACTORS.describe("inception-v3")
    assert InceptionExtractor.name == "inception" and features.InceptionV3Extractor.name == "inception-v3"


# -- which extractor auto picks, and the evaluation's warnings --------------------------------------------------------


@pytest.mark.parametrize(("shape", "name"), [((1, 28, 28), "digits"), ((3, 32, 32), "inception"),
                                             ((1, 32, 32), "inception"), ((1, 64, 64), "inception"),
                                             ((3, 28, 28), "inception"), ((500, 1, 28, 28), "digits")])
def test_choose_extractor(shape, name):
    assert choose_extractor(shape) == name
    assert resolve_extractor("auto", shape) == (name, f"auto: {'x'.join(map(str, shape[-3:]))} images -> {name}")


def test_resolve_extractor_needs_every_shape_to_be_digits():
    assert choose_extractor((1, 28, 28), (3, 32, 32)) == "inception"
    assert resolve_extractor("auto", (1, 28, 28), (1, 28, 28)) == ("digits", "auto: 1x28x28 images -> digits")
    assert resolve_extractor("auto", (1, 28, 28), (3, 32, 32)) == (
        "inception", "auto: 1x28x28 and 3x32x32 images -> inception")
    assert resolve_extractor("digits", (3, 32, 32)) == ("digits", "requested: digits")
    assert choose_extractor() == "inception"


def kinds(result: dict) -> dict[str, str]:
    return {w["warning"]: w["message"] for w in result.get("warnings", [])}


def test_auto_uses_digits_for_28x28_grey_and_warns_on_few_samples(capsys):
    x = torch.rand(300, 1, 28, 28, generator=torch.Generator().manual_seed(4)) * 2 - 1
    r = evaluate(x, metrics="fid,pr", progress=False)  # reference: mnist:heldout (ships with ganforge)
    p = r["protocol"]
    assert p["extractor"] == "digits" and p["extractor_sha256"] == digits.WEIGHTS_SHA256
    assert p["extractor_choice"] == "auto: 1x28x28 images -> digits"
    w = kinds(r)
    assert set(w) == {"few_samples"}, w
    assert w["few_samples"].startswith("fid, pr on 300 generated and 5,000 reference samples")
    assert "1,000 recommended" in w["few_samples"]
    assert "ganforge: warning: fid, pr on 300" in capsys.readouterr().err  # printed too, once
    quiet = evaluate(x, metrics="fid", progress=False, warn=False)
    assert "few_samples" in kinds(quiet) and capsys.readouterr().err == ""


def test_auto_uses_inception_for_colour(fake_inception):
    g = torch.Generator().manual_seed(5)
    fake, real = (torch.rand(300, 3, 32, 32, generator=g) * 2 - 1 for _ in range(2))
    r = evaluate(fake, reference=real, metrics="fid", progress=False, warn=False)
    p = r["protocol"]
    assert p["extractor"] == "inception" and p["extractor_sha256"] == fake_inception and p["feature_dim"] == 2048
    assert p["extractor_choice"] == "auto: 3x32x32 images -> inception"
    assert r["fid"] > 0
    w = kinds(r)
    assert set(w) == {"few_samples"}, w
    assert w["few_samples"].startswith("fid on 300 generated and 300 reference samples")
    assert "2,048 recommended for 2048-d features" in w["few_samples"]


def test_digits_on_colour_images_warns():
    g = torch.Generator().manual_seed(6)
    fake, real = (torch.rand(40, 3, 32, 32, generator=g) * 2 - 1 for _ in range(2))
    r = evaluate(fake, reference=real, metrics="fid", extractor="digits", progress=False, warn=False)
    assert r["protocol"]["extractor"] == "digits" and r["protocol"]["extractor_choice"] == "requested: digits"
    w = kinds(r)
    assert "extractor_mismatch" in w and "3x32x32" in w["extractor_mismatch"] and "shape_mismatch" not in w
    assert "auto or inception" in w["extractor_mismatch"]


def test_generated_and_reference_shapes_differ_warns():
    g = torch.Generator().manual_seed(7)
    fake = torch.rand(40, 1, 28, 28, generator=g) * 2 - 1
    real = torch.rand(40, 1, 32, 32, generator=g) * 2 - 1
    r = evaluate(fake, reference=real, metrics="fid", extractor="digits", progress=False, warn=False)
    w = kinds(r)
    assert "generated images are 1x28x28 but reference images are 1x32x32" in w["shape_mismatch"]
    assert "1x32x32" in w["extractor_mismatch"] and "1x28x28" not in w["extractor_mismatch"]


def test_unknown_extractor_suggests_a_name():
    with pytest.raises(ConfigError, match="did you mean 'inception'") as e:
        evaluate(torch.zeros(4, 1, 28, 28), metrics="fid", extractor="inceptoin", progress=False)
    assert "choices: auto, digits, inception, inception-v3" in one_line(e)


def test_colour_images_offline_fail_in_one_line(cache):
    x = torch.zeros(8, 3, 32, 32)
    with pytest.raises(inception.ExtractorUnavailable) as e:
        evaluate(x, reference=x, metrics="fid", progress=False)
    assert INCEPTION_TS_FILE in one_line(e) and str(cache) in str(e.value)


class TinyColourG(nn.Module):
    """A generator of 3x32x32 images (``z_dim`` makes it evaluable), with batch norm: mode matters."""

    z_dim = 4

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(4, 3 * 32 * 32), nn.BatchNorm1d(3 * 32 * 32), nn.Tanh())

    def forward(self, z: Tensor) -> Tensor:
        return self.net(z).view(-1, 3, 32, 32)


def test_an_evaluation_that_fails_midway_leaves_gradients_and_train_mode(cache):
    g = TinyColourG().train()
    real = torch.zeros(8, 3, 32, 32)
    with pytest.raises(inception.ExtractorUnavailable) as e:  # the error (and its traceback) kept alive
        evaluate(g, reference=real, metrics="fid", n=20, batch_size=10, progress=False)
    assert e.value.path == cache
    assert torch.is_grad_enabled() and g.training  # the training loop that called it goes on as before


@pytest.fixture
def colour_folder(tmp_path) -> Path:
    from PIL import Image

    folder = tmp_path / "colour"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(40):
        Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8), "RGB").save(folder / f"{i:03d}.png")
    return folder


def test_a_folder_of_references_is_read_at_the_generated_size(colour_folder):
    fake = torch.rand(40, 3, 32, 32, generator=torch.Generator().manual_seed(8)) * 2 - 1
    r = evaluate(fake, reference=colour_folder, metrics="fid", extractor="digits", progress=False, warn=False)
    assert "shape_mismatch" not in kinds(r) and "3x32x32" in kinds(r)["extractor_mismatch"]
    assert r["protocol"]["n_real"] == 40
    # Without images to match, a folder is read as its files are (colour, 32 px), not as 28x28 grey digits.
    folders = evaluate(colour_folder, reference=colour_folder, metrics="fid", extractor="digits", progress=False,
                       warn=False)
    assert "shape_mismatch" not in kinds(folders) and "3x32x32" in kinds(folders)["extractor_mismatch"]
    assert folders["fid"] == pytest.approx(0.0, abs=1e-6)


# -- training on colour images where the file cannot be had: the run finishes, the metrics are skipped ----------------


def test_offline_colour_run_skips_image_metrics_and_finishes(cache, colour_folder, tmp_path, monkeypatch, capsys):
    from ganforge.cli import main
    from ganforge.config import load_config
    from ganforge.training.run import train

    attempts = []
    real_download = inception.download_file

    def counting_download(*args, **kwargs):
        attempts.append(args[0])
        return real_download(*args, **kwargs)

    monkeypatch.setattr(inception, "download_file", counting_download)
    out = tmp_path / "run"
    cfg = load_config("mnist-dcgan-plain", [
        "data.name=image-folder", f"data.path={colour_folder}", "train.steps=4", "train.batch_size=8",
        "model.generator.width=8", "model.discriminator.width=8", "train.eval_every=2", "train.sample_every=0",
        "train.checkpoint_every=0", "train.log_every=1", "train.tensorboard=false", "train.progress=false",
        "eval.n=32", "eval.extractor=auto", "eval.best=fid"])
    result = train(cfg, out)
    s = result.summary
    assert s["status"] == "ok" and s["steps"] == 4 and "fid" not in s
    assert s["image_metrics_skipped"].startswith("fid, kid: ") and INCEPTION_TS_FILE in s["image_metrics_skipped"]
    assert (out / "generator.safetensors").is_file() and (out / "summary.json").is_file()
    assert json.loads((out / "summary.json").read_text())["image_metrics_skipped"] == s["image_metrics_skipped"]
    logged = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    skipped = [r for r in logged if r.get("warning") == "eval_skipped"]
    assert len(skipped) == 1 and skipped[0]["step"] == 2, skipped  # once, though evaluated at steps 2 and 4
    message = skipped[0]["message"]
    assert message.startswith("image metrics fid, kid skipped: ")
    assert INCEPTION_TS_FILE in message and INCEPTION_TS_URL in message and str(cache) in message
    assert INCEPTION_TS_ENV in message and "ganforge eval" in message
    assert "eval_skipped" in {w["kind"] for w in s["warnings"]}
    assert not any("eval/fid" in r for r in logged)
    assert len(attempts) == 1  # the second evaluation did not try the network again
    assert "skipped" in capsys.readouterr().err

    # `ganforge eval RUN` there: one line naming the file, the URL and where to put it; exit code 2.
    assert main(["eval", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1, err
    assert err.startswith("ganforge: ") and INCEPTION_TS_FILE in err and INCEPTION_TS_URL in err
    assert str(cache) in err and INCEPTION_TS_ENV in err and "Traceback" not in err
    assert not (out / "eval.json").exists()
