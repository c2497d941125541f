"""Text GANs end to end: presets on a user's corpus and on a tiny oracle, sampling, evaluation,
resume, and every bad corpus handled with one line."""
from __future__ import annotations

import json
import math
import random
import shutil
import signal
from pathlib import Path

import pytest
import torch
from procs import assert_user_error, ganforge
from safetensors.torch import load_file

from ganforge.config import load_config
from ganforge.generator import load
from ganforge.metrics.bleu import bleu, tokenize_lines
from ganforge.metrics.text import nll
from ganforge.oracle import oracle_data
from ganforge.registry import ConfigError
from ganforge.training.callbacks import Interrupted
from ganforge.training.run import train

SUBJECTS = ["a man", "a woman", "a dog", "two cats", "a small boy", "an old bus"]
VERBS = ["sits on", "stands next to", "looks at", "walks past", "rides"]
OBJECTS = ["a bench .", "the red car .", "a wooden table .", "a tall tree .", "the white wall ."]

# Small networks and few steps: a run takes seconds.
TINY = ["model.generator.width=16", "model.generator.hidden=[24]", "model.discriminator.width=8",
        "model.discriminator.filter_scale=0.04", "train.batch_size=16", "train.log_every=2", "train.eval_every=6",
        "train.sample_every=6", "train.checkpoint_every=6", "train.progress=false", "train.tensorboard=false",
        "model.text.eval_samples=40", "model.text.rollouts=2"]


def files_words() -> list[str]:
    return [w for phrase in SUBJECTS + VERBS + OBJECTS for w in phrase.split()]


def corpus(path: Path, n: int, seed: int) -> Path:
    rng = random.Random(seed)
    path.write_text("".join(f"{rng.choice(SUBJECTS)} {rng.choice(VERBS)} {rng.choice(OBJECTS)}\n" for _ in range(n)))
    return path


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("corpus")
    return corpus(d / "train.txt", 120, 0), corpus(d / "test.txt", 40, 1)


def text_cfg(preset: str, files, steps: int, *extra: str):
    train_file, test_file = files
    return load_config(preset, [*TINY, f"train.steps={steps}", f"data.path={train_file}",
                                f"data.options.test_path={test_file}", *extra])


ADV = ["model.text.pretrain_steps=6", "model.text.d_pretrain_steps=2"]


@pytest.fixture(scope="module")
def mle_run(files, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "mle"
    # 40 steps at RelGAN's pretraining rate: enough to learn the corpus's grammar (12 steps at 2e-3 left
    # NLL-test at 3.45 against ln V = 3.56 and BLEU-2 below random words'), in the same few seconds.
    result = train(text_cfg("coco-mle", files, 40, "optim_g.lr=0.01"), out)
    return out, result


def random_words_bleu2(files) -> float:
    """BLEU-2 against the test set of random sentences: the corpus's words drawn uniformly, five sentences for
    each test sentence at its length (the project's own BLEU, as the run's is)."""
    train_file, test_file = files
    refs = tokenize_lines(test_file.read_text().splitlines())
    words = sorted({w for line in tokenize_lines(train_file.read_text().splitlines()) for w in line})
    rng = random.Random(0)
    return bleu([[rng.choice(words) for _ in r] for r in refs for _ in range(5)], refs, (2,))["bleu2"]


def test_mle_run_on_a_users_corpus_writes_sentences_and_text_metrics(mle_run, files):
    out, result = mle_run
    s = json.loads((out / "summary.json").read_text())
    for key in ("nll_test", "bleu2", "bleu5", "self_bleu2", "self_bleu5"):
        assert key in s, key
        if key != "nll_test":
            assert 0 <= s[key] <= 1, key
    # MLE learned the corpus: NLL-test well below a uniform model's ln V and BLEU-2 well above random words'.
    # Measured on seeds 0-4: NLL-test 0.94-1.05 against ln V = 3.56; BLEU-2 0.60-0.72 against 0.21.
    vocab = result.artifact.spec.vocab_size
    assert s["nll_test"] < math.log(vocab) - 1.0, (s["nll_test"], vocab)
    baseline = random_words_bleu2(files)
    assert 0.1 < baseline < 0.4 and s["bleu2"] > baseline + 0.2, (s["bleu2"], baseline)
    assert s["eval_protocol"]["references"] == 40
    lines = (out / "samples.txt").read_text().splitlines()
    assert len(lines) == 200
    assert sorted(p.name for p in (out / "samples").iterdir())[:1] == ["step_0000006.txt"]
    log = [json.loads(x) for x in (out / "log.jsonl").read_text().splitlines()]
    assert any("mle_loss" in r for r in log) and any("eval/nll_test" in r for r in log)
    assert (out / "curves.png").is_file()


def test_the_generator_file_alone_samples_sentences(mle_run, tmp_path):
    out, _ = mle_run
    shutil.copy(out / "generator.safetensors", tmp_path / "g.safetensors")
    gen = load(tmp_path / "g.safetensors")  # the vocabulary travels inside the file
    a = gen.sample(20, seed=5)
    assert a == gen.sample(20, seed=5) and a != gen.sample(20, seed=6)
    assert all(isinstance(x, str) for x in a)
    corpus_words = set(files_words())
    assert {w for x in a for w in x.split()} <= corpus_words | {"<unk>"}  # the corpus's words, nothing else
    cold = gen.sample(200, seed=0, temperature=0.3)
    hot = gen.sample(200, seed=0, temperature=3.0)
    assert len(set(cold)) < len(set(hot))  # a low temperature repeats itself
    ids = gen.sample(4, seed=0, raw=True)
    assert ids.dtype == torch.int64 and ids.shape == (4, gen.spec.shape[0])


def test_sample_and_eval_commands(mle_run, tmp_path):
    out, _ = mle_run
    p = ganforge("sample", str(out), "--n", "30", "--out", str(tmp_path / "s.txt"), "--temperature", "0.8")
    assert p.returncode == 0, p.stderr
    assert len((tmp_path / "s.txt").read_text().splitlines()) == 30
    assert_user_error(ganforge("sample", str(out), "--n", "3", "--out", str(tmp_path / "s.png")), ".txt")
    assert_user_error(ganforge("sample", str(out), "--n", "3", "--out", str(tmp_path / "s.txt"),
                               "--temperature", "0"), "temperature")
    p = ganforge("eval", str(out), "--n", "60")
    assert p.returncode == 0, p.stderr
    e = json.loads((out / "eval.json").read_text())
    assert {"bleu2", "bleu5", "self_bleu2", "self_bleu5", "nll_test"} <= set(e) and e["protocol"]["samples"] == 60
    p = ganforge("eval", str(out), "--n", "60", "--curve", "0.7,1.0", "--out", str(tmp_path / "curve.json"))
    assert p.returncode == 0, p.stderr
    curve = json.loads((tmp_path / "curve.json").read_text())["curve"]
    assert [c["temperature"] for c in curve] == [0.7, 1.0]
    assert curve[0]["self_bleu5"] >= curve[1]["self_bleu5"] - 0.05  # colder: no more diverse
    assert (tmp_path / "curve.png").is_file()
    assert_user_error(ganforge("eval", str(out), "--curve", "0,1"), "temperatures")


RNN_PAIR = ["model.generator.name=gru", "model.discriminator.name=text-rnn", "model.discriminator.hidden=[4]"]


@pytest.mark.parametrize("preset, nets", [
    ("coco-seqgan", []), ("coco-gumbel", []),
    # heterogeneous pairs: a GRU generator against a recurrent discriminator
    ("coco-seqgan", RNN_PAIR), ("coco-gumbel", RNN_PAIR),
])
def test_adversarial_presets_pretrain_then_play(files, tmp_path, preset, nets):
    result = train(text_cfg(preset, files, 12, *ADV, *nets), tmp_path / preset)
    log = [json.loads(x) for x in (tmp_path / preset / "log.jsonl").read_text().splitlines()]
    steps = [r for r in log if "d_loss" in r or "mle_loss" in r]
    assert all("mle_loss" in r and "g_loss" not in r for r in steps if r["step"] <= 6)
    assert any("g_loss" in r and "d_real" in r for r in steps if r["step"] > 8)
    if preset == "coco-gumbel":
        assert any("tau" in r for r in log)
    else:
        assert any("reward" in r for r in log)
    assert result.trainer.updates["Gmle"] == 6 and result.trainer.updates["Dpre"] == 2
    assert result.trainer.updates["G"] == 4 and result.trainer.updates["D"] == 4 * result.trainer.cfg.d_steps


def test_seqgan_resume_matches_an_uninterrupted_run(files, tmp_path):
    straight = train(text_cfg("coco-seqgan", files, 12, *ADV), tmp_path / "a")
    train(text_cfg("coco-seqgan", files, 9, *ADV, "train.checkpoint_every=3"), tmp_path / "b")
    resumed = train(text_cfg("coco-seqgan", files, 12, *ADV), tmp_path / "b", resume=True)
    for k, v in straight.parts.generator.state_dict().items():
        assert torch.equal(v, resumed.parts.generator.state_dict()[k]), k
    a, b = (load_file(str(tmp_path / r / "generator.safetensors")) for r in "ab")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_oracle_presets_report_nll_oracle(tmp_path):
    # An oracle of dimension 16 (entropy 2.50 nats a token against ln 40 = 3.69) and 30 MLE iterations:
    # what G learned shows in both metrics.
    opts = ["data.options.vocab_size=40", "data.options.length=6", "data.options.n_train=200",
            "data.options.n_test=100", "data.options.dim=16"]
    cfg = load_config("oracle-seqgan", [*TINY, "model.text.pretrain_steps=30", "model.text.d_pretrain_steps=2",
                                        *opts, "train.steps=34"])
    train(cfg, tmp_path / "o")
    s = json.loads((tmp_path / "o" / "summary.json").read_text())
    # Against a uniform model: NLL-test ln V, and the oracle's NLL of uniformly random sequences (5.10).
    # Measured on seeds 0-3: NLL-test 3.07-3.09, NLL-oracle 3.71-4.00.
    oracle = oracle_data(40, 6, 16, 0, 200, 100).oracle
    uniform = nll(oracle, torch.randint(40, (2000, 6), generator=torch.Generator().manual_seed(0)))
    assert s["nll_test"] < math.log(40) - 0.4, s["nll_test"]
    assert s["nll_oracle"] < uniform - 0.6, (s["nll_oracle"], uniform)
    assert s["eval_protocol"]["oracle"]["vocab_size"] == 40
    p = ganforge("eval", str(tmp_path / "o"), "--n", "50")
    assert p.returncode == 0, p.stderr
    assert {"nll_oracle", "nll_test"} <= set(json.loads(p.stdout))


def _bad(tmp_path: Path, name: str, content: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(content)
    return path


@pytest.mark.parametrize("content, needle", [
    (b"", "empty"),
    (b"  \n\t\n \r\n", "no text"),
    (b"\x00\x01\x02binary\x00" * 50, "binary"),
    (b"only one sentence here\n", "usable line"),
])
def test_bad_corpora_are_one_line_errors(tmp_path, content, needle):
    path = _bad(tmp_path, "bad.txt", content)
    assert_user_error(ganforge("train", "coco-mle", "--set", f"data.path={path}", "--out", str(tmp_path / "r"),
                               "--steps", "2", "--no-progress"), needle)


def test_missing_corpus_and_misuse_are_one_line_errors(tmp_path):
    assert_user_error(ganforge("train", "coco-mle", "--set", f"data.path={tmp_path / 'nope.txt'}",
                               "--out", str(tmp_path / "r")), "nope.txt")
    assert_user_error(ganforge("train", "coco-mle", "--set", "data.name=text", "--out", str(tmp_path / "r")),
                      "data.path")
    assert_user_error(ganforge("train", "coco-mle", "--set", "data.name=ring2d", "--out", str(tmp_path / "r2")),
                      "token")
    small = corpus(tmp_path / "small.txt", 20, 0)  # the check must not depend on where COCO is
    assert_user_error(ganforge("train", "coco-seqgan", "--steps", "100", "--set", f"data.path={small}",
                               "--out", str(tmp_path / "r3")), "adversarial step")


def test_config_mistakes_are_one_line_errors(files, tmp_path):
    with pytest.raises(ConfigError, match="z_dim"):
        train(text_cfg("coco-mle", files, 2, "model.z_dim=4"))
    with pytest.raises(ConfigError, match="lr_decay"):
        train(text_cfg("coco-gumbel", files, 10, *ADV, "train.lr_decay=linear"))
    # The old tau schedule "linear" (linear in tau) is refused, naming RelGAN's (on 1 / tau).
    with pytest.raises(ConfigError, match="lin .linear in beta"):
        train(text_cfg("coco-gumbel", files, 10, *ADV, "model.text.tau_schedule=linear"))
    with pytest.raises(ConfigError, match="filter_scale"):  # text-cnn has no hidden layers
        train(text_cfg("coco-seqgan", files, 10, *ADV, "model.discriminator.hidden=[25]"))


class InterruptAt:
    """Ctrl-C after iteration ``step``: the trainer finishes the step, saves a checkpoint and returns."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_step_end(self, trainer, out) -> None:
        if trainer.step_num == self.step:
            signal.raise_signal(signal.SIGINT)


def taus(run: Path) -> dict[int, float]:
    return {r["step"]: r["tau"] for r in map(json.loads, (run / "log.jsonl").read_text().splitlines()) if "tau" in r}


def test_gumbel_temperature_is_unchanged_by_a_resume_with_other_steps(files, tmp_path):
    """The temperature schedule spans the adversarial iterations of the run as started: a run interrupted
    at iteration 12 of 16 and resumed with 20 has, at every iteration, the uninterrupted run's temperature,
    and tau_end after its span (the old code stretched the span to the new --steps)."""
    every = "train.log_every=1"
    train(text_cfg("coco-gumbel", files, 16, *ADV, every), tmp_path / "a")
    with pytest.raises(Interrupted, match="step 12"):
        train(text_cfg("coco-gumbel", files, 16, *ADV, every), tmp_path / "b", callbacks=[InterruptAt(12)])
    first = taus(tmp_path / "b")
    assert first and max(first) < 15  # stopped part way through
    train(text_cfg("coco-gumbel", files, 20, *ADV, every), tmp_path / "b", resume=True)
    a, b = taus(tmp_path / "a"), taus(tmp_path / "b")
    assert len(a) >= 8 and set(a) < set(b), (sorted(a), sorted(b))
    for step, tau in a.items():
        assert math.isclose(b[step], tau, rel_tol=1e-6), (step, b[step], tau)
    later = [b[s] for s in b if s > max(a)]
    assert later and all(math.isclose(t, 0.01, rel_tol=1e-6) for t in later)  # tau_end past the span


def test_curve_needs_a_test_set_and_numbers(files, tmp_path):
    train_file, _ = files
    # holdout=0: no held-out tenth of the corpus either (the default keeps one as the test set)
    cfg = load_config("coco-mle", [*TINY, "train.steps=2", f"data.path={train_file}", "data.options.holdout=0"])
    train(cfg, tmp_path / "r")
    assert_user_error(ganforge("eval", str(tmp_path / "r"), "--curve"), "test set")
    assert_user_error(ganforge("eval", str(tmp_path / "r"), "--curve", "0.7,abc"), "positive numbers")
    p = ganforge("eval", str(tmp_path / "r"), "--n", "20")  # no test set: Self-BLEU only
    assert p.returncode == 0, p.stderr
    assert "self_bleu2" in json.loads(p.stdout) and "bleu2" not in json.loads(p.stdout)


def test_a_messy_corpus_trains(tmp_path):
    """Invalid UTF-8, CRLF, tabs, blank lines and an enormous line: read, warned about, trained on."""
    lines = [b"a man\tsits on  a bench .\r\n", b"\r\n", b"caf\xe9 noir sur la table .\r\n", b"   \n",
             b"two cats look at the red car .\n", b"word " * 40_000 + b"\n", b"a dog rides a bus .\n"]
    path = _bad(tmp_path, "messy.txt", b"".join(lines))
    p = ganforge("train", "coco-mle", "--set", f"data.path={path}", "--out", str(tmp_path / "r"), "--steps", "3",
                 "--set", "data.options.max_len=16", "--set", "model.generator.hidden=[8]",
                 "--set", "model.generator.width=8", "--no-progress")
    assert p.returncode == 0, p.stderr
    assert "invalid UTF-8" in p.stderr or "UTF-8" in p.stderr
    sentences = load(tmp_path / "r").sample(5)
    assert len(sentences) == 5
