"""Text corpora: the vocabulary, the corpus reader's handling of messy files, the TextData source, COCO captions."""
from __future__ import annotations

import gzip
import hashlib
import json
import sys
import time
import warnings
from pathlib import Path

import pytest
import torch

from ganforge.data import text, vocab
from ganforge.data.corpus import TextWarning, read_corpus
from ganforge.data.text import TextData, coco_captions_data, text_data
from ganforge.data.transform import load_transform
from ganforge.data.vocab import EOS, PAD, UNK, Vocabulary
from ganforge.registry import ConfigError

CORPUS = ["the cat sat on the mat .", "the dog sat .", "a cat ran on the mat ."]
SHARED = Path(text.__file__).resolve().parents[3] / "shared" / "data" / "text"


def one_line_error(excinfo: pytest.ExceptionInfo[ConfigError]) -> str:
    message = str(excinfo.value)
    assert "\n" not in message
    return message


def write(tmp_path: Path, data: bytes, name: str = "corpus.txt") -> Path:
    p = tmp_path / name
    p.write_bytes(data)
    return p


# -- vocabulary ---------------------------------------------------------------------------------------------------


def test_build_orders_by_count_then_token_and_round_trips():
    v = Vocabulary.build(CORPUS)
    assert v.tokens[:3] == [PAD, EOS, UNK] and (v.pad, v.eos, v.unk) == (0, 1, 2)
    # the: 4; '.': 3; cat, mat, on, sat: 2 (alphabetical); a, dog, ran: 1 (alphabetical)
    assert v.tokens[3:] == ["the", ".", "cat", "mat", "on", "sat", "a", "dog", "ran"]
    assert Vocabulary.build(list(reversed(CORPUS))).tokens == v.tokens  # deterministic, not order-dependent
    ids = v.encode("the cat sat .")
    assert ids == [3, 5, 8, 4, 1]
    assert v.decode(ids) == "the cat sat ." and v.decode(torch.tensor(ids + [0, 0])) == "the cat sat ."
    assert v.decode([3, 0, 5, 1, 6, 7]) == "the cat"  # pad skipped, stops at the first eos
    assert v.encode("the zebra") == [3, 2, 1]


def test_max_size_caps_total_size_and_min_count_makes_unknowns():
    v = Vocabulary.build(CORPUS, max_size=5)
    assert v.tokens == [PAD, EOS, UNK, "the", "."]
    assert v.encode("the cat .") == [3, 2, 4, 1]
    m = Vocabulary.build(CORPUS, min_count=2)
    assert m.tokens[3:] == ["the", ".", "cat", "mat", "on", "sat"]
    assert m.decode(m.encode("a dog")) == f"{UNK} {UNK}"
    with pytest.raises(ConfigError, match="max_vocab"):
        Vocabulary.build(CORPUS, max_size=3)


def test_encode_truncation_keeps_eos_last():
    v = Vocabulary.build(CORPUS)
    assert v.encode("the cat sat on the mat .", max_len=4) == [3, 5, 8, 1]


def test_word_tokens_are_treebank_and_specials_stay_whole():
    from nltk.tokenize import word_tokenize

    v = Vocabulary.build(["x"])
    line = 'a dog\'s "toy" (red) sits on the bed.'
    assert v.tokenize(line) == word_tokenize(line, preserve_line=True)
    assert v.tokenize("the <unk> sat") == ["the", UNK, "sat"]
    corpus = Vocabulary.build(["the <unk> sat", "the cat"])
    assert UNK not in corpus.tokens[3:] and corpus.encode("the <unk>") == [3, 2, 1]



def test_missing_nltk_is_a_config_error_and_char_level_needs_none(monkeypatch):
    monkeypatch.setitem(sys.modules, "nltk", None)  # makes `import nltk` fail
    monkeypatch.setitem(sys.modules, "nltk.tokenize", None)
    monkeypatch.setattr(vocab, "_tokenizer", None)
    with pytest.raises(ConfigError, match=r"text data needs nltk: pip install 'ganforge\[text\]'"):
        Vocabulary.build(CORPUS)
    assert len(Vocabulary.build(CORPUS, level="char")) > 3

def test_char_level_keeps_spaces():
    v = Vocabulary.build(["ab a", "b"], level="char")
    assert v.tokenize("ab a") == ["a", "b", " ", "a"]
    assert v.tokens[3:] == ["a", "b", " "]
    assert v.decode(v.encode("ab a")) == "ab a"


def test_lowercase_applies_first():
    v = Vocabulary.build(["The Cat", "the cat"], lowercase=True)
    assert v.tokens[3:] == ["cat", "the"]
    assert v.encode("THE CAT") == [4, 3, 1]
    assert Vocabulary.build(["The Cat", "the cat"]).tokens[3:] == ["Cat", "The", "cat", "the"]


def test_config_json_round_trip_and_registered_transform():
    v = Vocabulary.build(CORPUS, lowercase=True)
    v.max_len = 6
    cfg = json.loads(json.dumps(v.config()))
    assert cfg == {"tokens": v.tokens, "level": "word", "lowercase": True, "specials": True, "max_len": 6}
    w = load_transform("text", cfg, v.tensors())
    assert isinstance(w, Vocabulary) and w.tokens == v.tokens and w.max_len == 6 and w.lowercase and v.tensors() == {}
    x = w.transform(["the cat", "the dog sat on the mat ."])
    assert x.dtype == torch.int64 and x.shape == (2, 6)
    assert x[0].tolist() == [3, 5, 1, 0, 0, 0] and x[1].tolist()[-1] == 1
    assert w.inverse_transform(x) == ["the cat", "the dog sat on the"]
    with pytest.raises(ConfigError):
        Vocabulary.from_config({"tokens": ["a", "a"], "specials": False})


def test_numbered_vocabulary_has_no_specials():
    v = Vocabulary.numbered(5)
    assert len(v) == 5 and v.tokens == ["0", "1", "2", "3", "4"] and (v.pad, v.eos, v.unk) == (None, None, None)
    assert v.encode("4 0 1 1", max_len=3) == [4, 0, 1]
    assert v.decode([1, 0, 4]) == "1 0 4"  # ids 0 and 1 are tokens here, not pad/eos
    assert v.inverse_transform(torch.tensor([[2, 3], [0, 1]])) == ["2 3", "0 1"]
    with pytest.raises(ConfigError, match="not in this"):
        v.encode("7")


# -- read_corpus --------------------------------------------------------------------------------------------------


def test_invalid_utf8_is_replaced_counted_and_warned_once(tmp_path):
    p = write(tmp_path, b"caf\xe9 noir\nbon caf\xc3\xa9\nencore \xff\xfe\n")
    with pytest.warns(TextWarning, match="2 lines are not valid UTF-8") as record:
        lines, counts = read_corpus(p)
    assert len([w for w in record if issubclass(w.category, TextWarning)]) == 1
    assert lines == ["caf\ufffd noir", "bon café", "encore \ufffd\ufffd"]
    assert counts["invalid_utf8_lines"] == 2 and counts["lines_read"] == 3


def test_line_ends_whitespace_and_empty_lines(tmp_path):
    p = write(tmp_path, b"one\r\ntwo\rthree\n\n   \n\t\n four\t\tfive  six \r\n\r\nlast")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing here is worth a warning
        lines, counts = read_corpus(p)
    assert lines == ["one", "two", "three", "four five six", "last"]
    assert counts == {"lines_read": 9, "empty_skipped": 4, "invalid_utf8_lines": 0, "truncated_lines": 0}


def test_bom_and_gzip_by_magic_bytes(tmp_path):
    assert read_corpus(write(tmp_path, b"\xef\xbb\xbfhello world\nbye\n"))[0] == ["hello world", "bye"]
    p = write(tmp_path, gzip.compress(b"\xef\xbb\xbfzipped line\r\nsecond\n"), name="corpus.txt")  # no .gz suffix
    assert read_corpus(p)[0] == ["zipped line", "second"]
    with pytest.raises(ConfigError, match="corrupt gzip") as e:
        read_corpus(write(tmp_path, gzip.compress(b"a line\n" * 1000)[:40], name="cut.gz"))
    one_line_error(e)


def test_a_20mb_line_is_cut_quickly(tmp_path):
    p = write(tmp_path, b"word " * 4_000_000 + b"end")  # 20 MB, no newline
    start = time.perf_counter()
    with pytest.warns(TextWarning, match="1 line was longer than 1000 characters"):
        lines, counts = read_corpus(p, max_line_chars=1000)
    assert time.perf_counter() - start < 5
    assert len(lines) == 1 and len(lines[0]) <= 1000 and lines[0].startswith("word word")
    assert counts["truncated_lines"] == 1 and counts["lines_read"] == 1
    # an overlong line among normal ones: only it is cut, its neighbours are intact
    q = write(tmp_path, b"before\n" + "é".encode() * 5000 + b"\nafter\n", name="mixed.txt")
    with pytest.warns(TextWarning):
        lines, counts = read_corpus(q, max_line_chars=100)
    assert lines == ["before", "é" * 100, "after"] and counts["invalid_utf8_lines"] == 0


@pytest.mark.parametrize("data, match", [
    (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "looks binary"),
    ("utf-16 text\n".encode("utf-16"), "UTF-16"),
    (b"", "is empty"),
    (b"\n  \n\t\r\n", "all 3 lines are empty"),
])
def test_unusable_files(tmp_path, data, match):
    with pytest.raises(ConfigError, match=match) as e:
        read_corpus(write(tmp_path, data))
    one_line_error(e)


def test_missing_path_and_folder(tmp_path):
    with pytest.raises(ConfigError, match="does not exist") as e:
        read_corpus(tmp_path / "nope.txt")
    one_line_error(e)
    with pytest.raises(ConfigError, match="is a folder") as e:
        read_corpus(tmp_path)
    one_line_error(e)


# -- TextData -----------------------------------------------------------------------------------------------------


def test_text_data_tokens_padding_eos_and_lengths():
    data = TextData(CORPUS)
    v = data.transform
    assert data.tokens.shape == (3, 8) and data.tokens.dtype == torch.int64 and data.max_len == 8 == v.max_len
    assert data.lengths.tolist() == [8, 5, 8]
    assert data.tokens[1].tolist() == v.encode("the dog sat .") + [v.pad] * 3
    for row, n in zip(data.tokens, data.lengths, strict=True):
        assert row[n - 1] == v.eos and (row[n:] == v.pad).all()
    assert v.inverse_transform(data.tokens) == CORPUS and data.lines == CORPUS and data.test_tokens is None
    spec = data.spec
    assert spec.shape == (8,) and spec.dtype == "int64" and spec.vocab_size == len(v)
    assert spec.extra == {"pad": 0, "eos": 1, "level": "word"}


def test_max_len_truncation_keeps_eos_last():
    data = TextData(CORPUS, max_len=4)
    assert data.tokens.shape == (3, 4) and data.lengths.tolist() == [4, 4, 4]
    assert (data.tokens[:, -1] == 1).all() and data.summary()["truncated"] == 3
    assert data.transform.inverse_transform(data.tokens)[0] == "the cat sat"
    with pytest.raises(ConfigError, match="max_len"):
        TextData(CORPUS, max_len=1)


def test_test_lines_use_the_training_vocabulary():
    data = TextData(CORPUS, test_lines=["the zebra sat .", "a cat"], max_vocab=9)
    v = data.transform
    assert data.test_tokens.shape == (2, data.max_len) and data.test_lengths.tolist() == [5, 3]
    assert data.test_tokens[0, 1] == v.unk and len(v) == 9
    assert v.decode(data.test_tokens[0]) == f"the {UNK} sat ."
    assert data.test_lines == ["the zebra sat .", "a cat"]
    s = data.summary()
    assert s["sentences"] == 3 and s["vocab_size"] == 9 and s["test_sentences"] == 2 and 0 < s["unk_rate"] < 1


def test_batches_cover_an_epoch_and_resume_identically():
    lines = [f"sentence number {i}" for i in range(10)]
    data = TextData(lines)
    g = torch.Generator().manual_seed(0)
    first = [data.batch(5, g) for _ in range(2)]
    epoch = torch.cat([b["tokens"] for b in first])
    assert sorted(data.transform.inverse_transform(epoch)) == sorted(lines)  # without replacement
    assert first[0]["lengths"].shape == (5,) and first[0]["lengths"].dtype == torch.int64
    data.batch(3, g)
    state, g_state = data.state_dict(), g.get_state()
    expected = data.batch(3, g)
    resumed = TextData(lines)
    resumed.load_state_dict(state)
    g2 = torch.Generator()
    g2.set_state(g_state)
    assert torch.equal(resumed.batch(3, g2)["tokens"], expected["tokens"])
    assert data.batch(25, g)["tokens"].shape == (25, data.max_len)  # more than N: with replacement


def test_from_tokens_fixed_length():
    v = Vocabulary.numbered(7)
    x = torch.randint(7, (6, 5), generator=torch.Generator().manual_seed(1))
    data = TextData.from_tokens(x, v, test_tokens=x[:2])
    assert data.lengths.tolist() == [5] * 6 and data.test_lengths.tolist() == [5, 5]
    assert data.spec.extra == {"pad": None, "eos": None, "level": "word"} and data.spec.vocab_size == 7
    assert data.lines[0] == " ".join(str(i) for i in x[0].tolist()) and v.max_len == 5
    with pytest.raises(ValueError, match="outside"):
        TextData.from_tokens(x + 7, v)


def test_text_data_builder(tmp_path):
    train = write(tmp_path, b"the cat sat .\nthe dog ran .\n\n", name="train.txt")
    test = write(tmp_path, b"the bird sat .\na cat ran .\n", name="test.txt")
    data = text_data(str(train), test_path=str(test), max_len=4)
    assert len(data) == 2 and data.test_tokens.shape == (2, 4)
    assert text_data(str(train), level="char").spec.extra["level"] == "char"
    for kwargs, match in [({}, "needs a path"), ({"path": str(train), "level": "byte"}, "word, char")]:
        with pytest.raises(ConfigError, match=match) as e:
            text_data(**kwargs)
        one_line_error(e)
    with pytest.raises(ConfigError, match="at least 2") as e:
        text_data(str(write(tmp_path, b"only one line\n", name="one.txt")))
    one_line_error(e)


# -- COCO captions ------------------------------------------------------------------------------------------------


def coco_files(folder: Path) -> dict[str, bytes]:
    folder.mkdir(parents=True, exist_ok=True)
    blobs = {text.COCO_FILES["train"]: b"a man rides a horse .\na dog on a bed .\na cat .\n",
             text.COCO_FILES["test"]: b"a horse on a bed .\na giraffe .\n"}
    for name, blob in blobs.items():
        (folder / name).write_bytes(blob)
    return blobs


@pytest.fixture
def no_data_dirs(tmp_path, monkeypatch):
    """Empty data folders, and no shared copy, so nothing outside tmp_path is found."""
    monkeypatch.setenv("GANFORGE_DATA", str(tmp_path / "gf"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(text, "_shared_text_dir", lambda: tmp_path / "no-shared")
    return tmp_path / "gf" / "coco-captions"


def test_coco_from_root(tmp_path):
    coco_files(tmp_path / "coco")
    data = coco_captions_data(root=str(tmp_path / "coco"))
    assert len(data) == 3 and data.test_lines == ["a horse on a bed .", "a giraffe ."]
    assert data.transform.decode(data.test_tokens[1]) == f"a {UNK} ."


def test_coco_missing_names_folders_and_remedy(tmp_path, no_data_dirs):
    with pytest.raises(ConfigError) as e:
        coco_captions_data()
    message = one_line_error(e)
    assert str(no_data_dirs) in message and str(tmp_path / "cache") in message
    assert "download: true" in message and "GANFORGE_DATA" in message


@pytest.mark.skipif(not all((SHARED / n).is_file() for n in text.COCO_FILES.values()),
                    reason=f"the project's shared COCO captions are not at {SHARED}")
def test_real_coco_captions(tmp_path, monkeypatch):
    for name, md5 in text.COCO_MD5.items():
        assert hashlib.md5((SHARED / name).read_bytes()).hexdigest() == md5
    monkeypatch.setenv("GANFORGE_DATA", str(tmp_path / "gf"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    data = coco_captions_data()  # found in the shared folder
    summary = data.summary()
    print("coco-captions:", summary)
    assert summary["sentences"] == 10000 and summary["test_sentences"] == 10000 and summary["truncated"] == 0
    # 10,000 each: `wc -l` says 9,999 because the last line has no newline
    assert len(data.lines) == len(data.test_lines) == 10000
    assert 3000 < summary["vocab_size"] < 10000 and data.spec.vocab_size == summary["vocab_size"]
    assert (data.tokens[torch.arange(len(data)), data.lengths - 1] == data.transform.eos).all()
