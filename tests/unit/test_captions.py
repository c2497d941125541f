"""Captioned images: the shapes data set, captioned MNIST, the plain JSONL/CSV format and the container."""
from __future__ import annotations

import csv
import json
import re
import warnings

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from ganforge.data.caption_files import read_captioned, write_captioned, write_shapes
from ganforge.data.captions import CaptionSet, words
from ganforge.data.mnist_captions import (
    DIGIT_WORDS,
    MNIST_HELDOUT_COMBOS,
    MNIST_HELDOUT_TEMPLATES,
    MNIST_SCHEMA,
    MNIST_TRAIN_TEMPLATES,
    bin_digits,
    digit_thresholds,
    measure_digits,
    mnist_splits,
)
from ganforge.data.shapes import (
    BACKGROUND,
    HELDOUT_COMBOS,
    SHAPE_RGB,
    SHAPES_HELDOUT_TEMPLATES,
    SHAPES_SCHEMA,
    SHAPES_TRAIN_TEMPLATES,
    caption_shapes,
    render_shapes,
    shapes_splits,
)
from ganforge.registry import ConfigError

SHAPE_SYNONYMS = {"circle": {"circle", "disc"}, "square": {"square", "box"}, "triangle": {"triangle"},
                  "diamond": {"diamond", "rhombus"}}
SIZE_SYNONYMS = {"small": {"small", "tiny", "little"}, "big": {"big", "large"}}
POSITION_WORDS = {"top", "upper", "bottom", "lower", "left", "right", "centre", "middle"}
# Each position: groups of words one of which the caption must use.
POSITION_NEEDS = {
    "top left": [{"top", "upper"}, {"left"}], "top": [{"top"}], "top right": [{"top", "upper"}, {"right"}],
    "left": [{"left"}], "centre": [{"centre", "middle"}], "right": [{"right"}],
    "bottom left": [{"bottom", "lower"}, {"left"}], "bottom": [{"bottom"}],
    "bottom right": [{"bottom", "lower"}, {"right"}],
}


@pytest.fixture(scope="module")
def splits():
    return shapes_splits(n_train=400, n_test=150, captions_per_image=3, seed=0)


@pytest.fixture(scope="module")
def digits():
    return mnist_splits(captions_per_image=2, seed=0)


def all_combos() -> np.ndarray:
    sizes = [len(v) for v in SHAPES_SCHEMA.values()]
    return np.stack(np.meshgrid(*[np.arange(n) for n in sizes], indexing="ij"), -1).reshape(-1, 4)


def ink_mask(x: np.ndarray) -> np.ndarray:
    """Pixels clearly off the background, (N, S, S)."""
    return np.abs(x.astype(int) - np.array(BACKGROUND)).max(-1) > 60


# -- rendering -------------------------------------------------------------------------------------------------------


def test_render_is_deterministic_per_seed_and_varies_between_seeds():
    a = all_combos()[::7]
    x = render_shapes(a, 32, seed=3)
    assert x.shape == (len(a), 32, 32, 3) and x.dtype == np.uint8
    np.testing.assert_array_equal(x, render_shapes(torch.from_numpy(a), 32, seed=3))
    assert (x != render_shapes(a, 32, seed=4)).any(1).any(1).any(1).mean() > 0.9  # jitter moves nearly every image
    # The same attributes twice in one call are two different pictures (position, brightness, rotation jitter).
    same = render_shapes(np.repeat(a[:1], 2, 0), 32, seed=0)
    assert (same[0] != same[1]).any()
    assert render_shapes(a[:3], 48).shape == (3, 48, 48, 3)


def test_colours_are_visible():
    rgb = np.array([SHAPE_RGB[c] for c in SHAPES_SCHEMA["colour"]], dtype=float)
    for c in range(6):
        a = np.array([[s, c, z, p] for s in range(4) for z in range(2) for p in (0, 4, 8)])
        x = render_shapes(a, 32, seed=c)
        for img, m in zip(x, ink_mask(x), strict=True):
            mean = img[m].mean(0)
            assert np.linalg.norm(rgb - mean, axis=1).argmin() == c  # the nearest named colour is the right one
    red = render_shapes(np.array([[0, 0, 1, 4]]))[0]
    r, g, b = red[ink_mask(red[None])[0]].mean(0)
    assert r > g + 100 and r > b + 100


def test_positions_sizes_and_bounds_are_visible():
    a = all_combos()
    x = render_shapes(a, 32, seed=1)
    m = ink_mask(x)
    ys, xs = np.mgrid[:32, :32]
    cx = (m * xs).sum((1, 2)) / m.sum((1, 2))
    cy = (m * ys).sum((1, 2)) / m.sum((1, 2))
    # The ink centroid lies in the image's third of the grid cell the position names.
    np.testing.assert_array_equal((cx // (32 / 3)).astype(int), a[:, 3] % 3)
    np.testing.assert_array_equal((cy // (32 / 3)).astype(int), a[:, 3] // 3)
    top_left = a[:, 3] == 0
    assert (cx[top_left] < 16).all() and (cy[top_left] < 16).all()
    ink = m.sum((1, 2))
    for s in range(4):
        big, small = ink[(a[:, 0] == s) & (a[:, 2] == 1)], ink[(a[:, 0] == s) & (a[:, 2] == 0)]
        assert big.min() > 1.8 * small.max()
    # Every shape lies inside the image: the outermost pixels are background.
    frame = np.concatenate([x[:, 0], x[:, -1], x[:, :, 0], x[:, :, -1]], 1)
    assert np.abs(frame.astype(int) - np.array(BACKGROUND)).max() < 30


def test_render_rejects_bad_attributes():
    with pytest.raises(ConfigError, match="out of range"):
        render_shapes(np.array([[0, 6, 0, 0]]))
    with pytest.raises(ConfigError, match=r"shape \(N, 4\)"):
        render_shapes(np.zeros((3, 3), dtype=int))
    with pytest.raises(ConfigError, match="image_size"):
        render_shapes(np.zeros((1, 4), dtype=int), image_size=4)
    with pytest.raises(ConfigError, match="n_train"):
        shapes_splits(n_train=0)


# -- captions --------------------------------------------------------------------------------------------------------


def check_shape_caption(text: str, mention: list[int]) -> None:
    ws = set(words(text))
    names = [SHAPES_SCHEMA[k][v] if v >= 0 else None for k, v in zip(SHAPES_SCHEMA, mention, strict=True)]
    shape, colour, size, position = names
    assert shape is not None and ws & SHAPE_SYNONYMS[shape], text
    for other, syn in SHAPE_SYNONYMS.items():
        assert other == shape or not ws & syn, text
    colours = set(SHAPES_SCHEMA["colour"])
    assert ws & colours == ({colour} if colour else set()), text
    assert ws & set.union(*SIZE_SYNONYMS.values()) <= (SIZE_SYNONYMS[size] if size else set()), text
    assert not size or ws & SIZE_SYNONYMS[size], text
    if position is None:
        assert not ws & POSITION_WORDS, text
    else:
        needs = POSITION_NEEDS[position]
        assert all(ws & group for group in needs), text
        assert ws & POSITION_WORDS <= set.union(*needs), text


def test_mentions_agree_with_caption_text(splits):
    for name, cs in splits.items():
        assert cs.mentions is not None and cs.attributes is not None
        truth = cs.attributes[cs.image_of]
        stated = cs.mentions >= 0
        assert stated[:, 0].all(), name  # the shape is always stated
        assert (cs.mentions[stated] == truth[stated]).all(), name
        for text, mention in zip(cs.texts, cs.mentions.tolist(), strict=True):
            check_shape_caption(text, mention)
    # Captions leave attributes free, at about the rate the metrics rely on.
    free = (splits["train"].mentions[:, 1:] < 0).float().mean().item()
    assert 0.2 < free < 0.4


def test_heldout_combos_absent_from_train_and_present_in_their_split(splits):
    held = {(SHAPES_SCHEMA["shape"].index(s), SHAPES_SCHEMA["colour"].index(c)) for s, c in HELDOUT_COMBOS}
    assert len(held) == 4 and len({s for s, _ in held}) == 4 and len({c for _, c in held}) == 4
    for name in ("train", "test", "heldout_phrasings"):
        pairs = {tuple(p) for p in splits[name].attributes[:, :2].tolist()}
        assert not pairs & held, name
    combos = splits["heldout_combos"]
    assert {tuple(p) for p in combos.attributes[:, :2].tolist()} == held
    assert (combos.mentions[:, :2] >= 0).all()  # shape and colour always stated
    assert set(combos.phrasing.tolist()) <= {t.id for t in SHAPES_TRAIN_TEMPLATES}
    # Train covers every other combination of shape and colour.
    assert len({tuple(p) for p in splits["train"].attributes[:, :2].tolist()}) == 4 * 6 - 4


def check_heldout_phrasings(train: CaptionSet, heldout: CaptionSet, train_ids: set[int], held_ids: set[int]) -> None:
    assert not train_ids & held_ids
    assert set(train.phrasing.tolist()) == train_ids
    assert set(heldout.phrasing.tolist()) == held_ids  # only held-out templates, and all of them
    assert not set(heldout.texts) & set(train.texts)
    vocabulary = {w for t in train.texts for w in words(t)}
    unseen = {w for t in heldout.texts for w in words(t)} - vocabulary
    assert not unseen


def test_heldout_phrasings_are_new_structures_of_training_words(splits):
    train_ids = {t.id for t in SHAPES_TRAIN_TEMPLATES}
    held_ids = {t.id for t in SHAPES_HELDOUT_TEMPLATES}
    check_heldout_phrasings(splits["train"], splits["heldout_phrasings"], train_ids, held_ids)
    assert set(splits["test"].phrasing.tolist()) <= train_ids
    full = {"shape": "circle", "colour": "red", "size": "small", "pos": "at the top left", "bare": "top left"}
    bare = {"shape": "circle", "colour": None, "size": None, "pos": None, "bare": None}
    made = {t.id: (t.make(full), None if t.needs else t.make(bare))
            for t in (*SHAPES_TRAIN_TEMPLATES, *SHAPES_HELDOUT_TEMPLATES)}
    assert made == {
        0: ("a small red circle at the top left", "a circle"),
        1: ("there is a small red circle at the top left", "there is a circle"),
        2: ("a circle, red and small, at the top left", "a circle"),
        3: ("this picture shows a small red circle at the top left", "this picture shows a circle"),
        4: ("you can see a small red circle at the top left", "you can see a circle"),
        5: ("the circle at the top left is small and red", "there is a circle"),
        6: ("an image of a small red circle at the top left", "an image of a circle"),
        7: ("top-left: small red circle", None),
        8: ("red, small, circle, top left", "circle"),
        9: ("at the top left you can see a small red circle", None),
    }
    # Templates that need the position are never drawn for captions that leave it free.
    texts, _, mentions, phrasing = caption_shapes(np.zeros((40, 4), dtype=int), 5, seed=1, heldout_phrasing=True)
    needs_pos = {t.id for t in SHAPES_HELDOUT_TEMPLATES if "pos" in t.needs}
    assert not (torch.isin(phrasing, torch.tensor(sorted(needs_pos))) & (mentions[:, 3] < 0)).any()


def test_splits_are_deterministic_and_distinct():
    a = shapes_splits(n_train=60, n_test=20, captions_per_image=2, seed=5)
    b = shapes_splits(n_train=60, n_test=20, captions_per_image=2, seed=5)
    c = shapes_splits(n_train=60, n_test=20, captions_per_image=2, seed=6)
    for k in a:
        assert torch.equal(a[k].images, b[k].images) and a[k].texts == b[k].texts
        assert torch.equal(a[k].mentions, b[k].mentions) and torch.equal(a[k].phrasing, b[k].phrasing)
    assert not torch.equal(a["train"].images, c["train"].images) and a["train"].texts != c["train"].texts
    assert {k: v.images.shape for k, v in a.items()} == {
        "train": (60, 3, 32, 32), "test": (20, 3, 32, 32), "heldout_phrasings": (20, 3, 32, 32),
        "heldout_combos": (20, 3, 32, 32)}
    assert all(len(v) == 2 * v.num_images for v in a.values())
    x = a["train"].images
    assert x.dtype == torch.float32 and x.min() >= -1 and x.max() <= 1
    seen = [{img.numpy().tobytes() for img in v.images} for v in a.values()]
    assert sum(map(len, seen)) == len(set().union(*seen))  # no image repeats within or across splits


# -- the container ---------------------------------------------------------------------------------------------------


def small_set() -> CaptionSet:
    return CaptionSet(
        images=torch.arange(3, dtype=torch.float32).view(3, 1, 1, 1).expand(3, 1, 2, 2).contiguous() / 10,
        texts=["a0", "b1", "c0", "d2", "e1"], image_of=torch.tensor([0, 1, 0, 2, 1]),
        schema={"k": ["x", "y", "z"]}, attributes=torch.tensor([[0], [1], [2]]),
        mentions=torch.tensor([[0], [-1], [0], [2], [1]]), phrasing=torch.tensor([0, 1, 2, 3, 4]),
    )


def test_select_images_and_captions_reindex():
    cs = small_set()
    assert len(cs) == 5 and cs.num_images == 3
    s = cs.select_images(torch.tensor([2, 0]))
    assert s.texts == ["a0", "c0", "d2"] and s.image_of.tolist() == [1, 1, 0]
    assert s.images[:, 0, 0, 0].tolist() == pytest.approx([0.2, 0.0])
    assert s.attributes.tolist() == [[2], [0]] and s.mentions.tolist() == [[0], [0], [2]]
    assert s.phrasing.tolist() == [0, 2, 3]
    t = cs.select_captions(torch.tensor([4, 3]))
    assert t.texts == ["e1", "d2"] and t.image_of.tolist() == [0, 1] and t.attributes.tolist() == [[1], [2]]
    assert t.images[:, 0, 0, 0].tolist() == pytest.approx([0.1, 0.2]) and t.phrasing.tolist() == [4, 3]
    assert cs.select_images(torch.tensor([True, False, True])).texts == ["a0", "c0", "d2"]
    with pytest.raises(ConfigError, match="repeat"):
        cs.select_images(torch.tensor([1, 1]))


def test_caption_set_validation():
    x = torch.zeros(2, 1, 4, 4)
    with pytest.raises(ConfigError, match="one entry per caption"):
        CaptionSet(x, ["a", "b", "c"], torch.tensor([0, 1]))
    with pytest.raises(ConfigError, match="index the 2 images"):
        CaptionSet(x, ["a", "b"], torch.tensor([0, 2]))
    with pytest.raises(ConfigError, match="image 1 has no caption"):
        CaptionSet(x, ["a", "b"], torch.tensor([0, 0]))
    with pytest.raises(ConfigError, match="attributes must be"):
        CaptionSet(x, ["a", "b"], torch.tensor([0, 1]), {"k": ["u"]}, torch.zeros(3, 1, dtype=torch.int64))
    with pytest.raises(ConfigError, match="images must be"):
        CaptionSet(torch.zeros(2, 4, 4), ["a", "b"], torch.tensor([0, 1]))


# -- the plain format ------------------------------------------------------------------------------------------------


def test_jsonl_round_trip_keeps_everything(tmp_path, splits):
    cs = splits["heldout_combos"].select_images(torch.arange(12))
    path = write_captioned(cs, tmp_path / "out")
    assert path == tmp_path / "out" / "captions.jsonl"
    lines = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    assert len(lines) == len(cs) and lines[0]["image"] == "images/000000.png"
    assert set(lines[0]) == {"image", "caption", "attributes", "mentions", "phrasing"}
    assert set(lines[0]["attributes"]) == set(SHAPES_SCHEMA) and "shape" in lines[0]["mentions"]
    back = read_captioned(path)
    assert back.texts == cs.texts and torch.equal(back.image_of, cs.image_of)
    assert back.schema == SHAPES_SCHEMA
    assert torch.equal(back.attributes, cs.attributes) and torch.equal(back.mentions, cs.mentions)
    assert torch.equal(back.phrasing, cs.phrasing)
    assert back.images.shape == cs.images.shape
    assert (back.images - cs.images).abs().max() <= 1 / 127.5
    # Writing again replaces the old images and leaves no temporary folders behind.
    write_captioned(cs.select_images(torch.arange(3)), tmp_path / "out")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["captions.jsonl", "images"]
    assert len(list((tmp_path / "out" / "images").iterdir())) == 3
    assert read_captioned(path).num_images == 3


def test_grey_round_trip_and_mnist_schema(tmp_path, digits):
    cs = digits["test"].select_images(torch.arange(5))
    back = read_captioned(write_captioned(cs, tmp_path))
    assert back.images.shape == (5, 1, 28, 28) and back.schema == MNIST_SCHEMA
    assert torch.equal(back.attributes, cs.attributes) and torch.equal(back.mentions, cs.mentions)
    assert (back.images - cs.images).abs().max() <= 1 / 127.5


def test_user_schema_is_rebuilt_from_values(tmp_path):
    Image.new("RGB", (8, 8), (200, 0, 0)).save(tmp_path / "a.png")
    Image.new("RGB", (8, 8), (0, 0, 200)).save(tmp_path / "b.png")
    rows = [{"image": "a.png", "caption": "red thing", "attributes": {"hue": "red"}, "mentions": {"hue": "red"}},
            {"image": "b.png", "caption": "a thing", "attributes": {"hue": "blue"}, "mentions": {}}]
    (tmp_path / "c.jsonl").write_text("\n".join(json.dumps(r) for r in rows), encoding="utf-8")
    cs = read_captioned(tmp_path / "c.jsonl")
    assert cs.schema == {"hue": ["blue", "red"]} and cs.attributes.tolist() == [[1], [0]]
    assert cs.mentions.tolist() == [[1], [-1]] and cs.phrasing is None


def test_hand_written_csv(tmp_path):
    (tmp_path / "pics").mkdir()
    Image.new("L", (40, 30), 200).save(tmp_path / "pics" / "grey.png")
    rgb = np.zeros((20, 20, 3), np.uint8)
    rgb[..., 2] = 255
    Image.fromarray(rgb, "RGB").save(tmp_path / "blue.jpg")
    absolute = tmp_path / "blue.jpg"
    text = ("\ufeffPath,Caption\n"
            "pics/grey.png,\"a grey card, plain\"\n"
            f"{absolute},a blue square\n"
            "pics/grey.png,  nothing but grey  \n")
    (tmp_path / "pairs.csv").write_text(text, encoding="utf-8")
    cs = read_captioned(tmp_path / "pairs.csv")
    assert cs.texts == ["a grey card, plain", "a blue square", "nothing but grey"]
    assert cs.image_of.tolist() == [0, 1, 0]
    assert cs.images.shape == (2, 1, 30, 30)  # the first image's shorter side, and grey
    assert cs.attributes is None and cs.mentions is None and cs.schema == {}
    rgb_set = read_captioned(tmp_path / "pairs.csv", size=16, channels=3)
    assert rgb_set.images.shape == (2, 3, 16, 16)
    blue = rgb_set.images[1].mean((1, 2))
    assert blue[2] > 0.9 and blue[0] < -0.9


def test_unicode_captions_survive(tmp_path):
    texts = ["un cercle rouge — café ☕", "日本語のキャプション", "emoji 🎨 and a line\u2028separator",
             "naïve “quotes”"]
    cs = CaptionSet(torch.zeros(2, 3, 8, 8), texts, torch.tensor([0, 1, 1, 0]))
    back = read_captioned(write_captioned(cs, tmp_path))
    assert back.texts == texts and back.image_of.tolist() == [0, 1, 1, 0]
    with open(tmp_path / "u.csv", "w", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        w.writerow(["image", "caption"])
        w.writerows([["images/000000.png", texts[0]], ["images/000001.png", texts[1]]])
    assert read_captioned(tmp_path / "u.csv").texts == texts[:2]


def write_lines(path, rows):
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    return path


def write_bytes(path, data):
    path.write_bytes(data)
    return path


@pytest.fixture
def one_image(tmp_path):
    Image.new("RGB", (8, 8), (10, 200, 10)).save(tmp_path / "x.png")
    return tmp_path


@pytest.mark.parametrize("case, match", [
    ("missing", "caption file not found"),
    ("folder", "is a folder"),
    ("extension", "unknown caption file type '.txt'"),
    ("bad json", "line 2: invalid JSON"),
    ("not object", "line 1: expected a JSON object"),
    ("no caption key", "line 1: missing key 'caption'"),
    ("no image key", "line 2: missing key 'image'"),
    ("caption type", "line 1: 'caption' must be a string"),
    ("csv no caption", "missing column 'caption'"),
    ("csv no image", r"missing column 'image' \(or 'path'\)"),
    ("empty", "no image/caption pairs"),
    ("csv header only", "no image/caption pairs"),
    ("no images", "no readable image/caption pairs: skipped 2 of 2"),
    ("blank captions", "no readable image/caption pairs: skipped 2 of 2 captions \\(2 empty captions\\)"),
    ("channels", "channels must be 1 or 3"),
    ("not utf8", "not UTF-8"),
])
def test_bad_input_is_one_line_config_error(one_image, case, match):
    d = one_image
    good = {"image": "x.png", "caption": "a green box"}
    path = {
        "missing": lambda: d / "nope.jsonl",
        "folder": lambda: d,
        "extension": lambda: write_lines(d / "c.txt", [good]),
        "bad json": lambda: write_lines(d / "c.jsonl", [good, '{"image": "x.png", caption']),
        "not object": lambda: write_lines(d / "c.jsonl", ['["x.png", "a caption"]']),
        "no caption key": lambda: write_lines(d / "c.jsonl", [{"image": "x.png"}]),
        "no image key": lambda: write_lines(d / "c.jsonl", [good, {"caption": "hello"}]),
        "caption type": lambda: write_lines(d / "c.jsonl", [{"image": "x.png", "caption": 3}]),
        "csv no caption": lambda: write_lines(d / "c.csv", ["image,text", "x.png,hello"]),
        "csv no image": lambda: write_lines(d / "c.csv", ["file,caption", "x.png,hello"]),
        "empty": lambda: write_lines(d / "c.jsonl", ["", "  "]),
        "csv header only": lambda: write_lines(d / "c.csv", ["image,caption"]),
        "no images": lambda: write_lines(d / "c.jsonl", [{"image": "gone.png", "caption": "a"},
                                                         {"image": "gone2.png", "caption": "b"}]),
        "blank captions": lambda: write_lines(d / "c.jsonl", [{"image": "x.png", "caption": "  "},
                                                              {"image": "x.png", "caption": ""}]),
        "channels": lambda: write_lines(d / "c.jsonl", [good]),
        "not utf8": lambda: write_bytes(d / "c.jsonl", b'{"image": "x.png", "caption": "caf\xe9"}\n'),
    }[case]()
    with pytest.raises(ConfigError, match=match) as e:
        read_captioned(path, channels=2 if case == "channels" else None)
    assert "\n" not in str(e.value)


def test_unreadable_images_and_blank_captions_are_skipped_with_one_warning(one_image):
    d = one_image
    (d / "garbage.png").write_bytes(b"not an image at all")
    path = write_lines(d / "c.jsonl", [
        {"image": "x.png", "caption": " a green box "},
        {"path": "missing.png", "caption": "gone"},
        {"image": "garbage.png", "caption": "broken"},
        {"image": "x.png", "caption": "   "},
        {"image": "x.png", "caption": "another green box"},
        {"image": "garbage.png", "caption": "broken again"},
    ])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cs = read_captioned(path)
    assert len(caught) == 1
    msg = str(caught[0].message)
    assert "skipped 4 of 6 captions" in msg and "2 image files missing or unreadable" in msg
    assert "1 empty captions" in msg and "missing.png" in msg and "\n" not in msg
    assert cs.texts == ["a green box", "another green box"] and cs.image_of.tolist() == [0, 0]
    assert cs.images.shape == (1, 3, 8, 8)


def test_write_shapes(tmp_path):
    path = write_shapes(tmp_path / "shapes", n=12, seed=2, captions_per_image=2)
    assert len(list((tmp_path / "shapes" / "images").glob("*.png"))) == 12
    cs = read_captioned(path)
    assert cs.num_images == 12 and len(cs) == 24 and cs.schema == SHAPES_SCHEMA
    again = read_captioned(write_shapes(tmp_path / "again", n=12, seed=2, captions_per_image=2))
    assert again.texts == cs.texts and torch.equal(again.images, cs.images)
    for text, mention in zip(cs.texts, cs.mentions.tolist(), strict=True):
        check_shape_caption(text, mention)


# -- captioned MNIST -------------------------------------------------------------------------------------------------


def stroke_image(start, end, width) -> np.ndarray:
    img = Image.new("L", (28, 28), 0)
    ImageDraw.Draw(img).line([start, end], fill=255, width=width)
    return np.asarray(img)


def test_measure_digits_on_drawn_strokes():
    thin = stroke_image((14, 4), (14, 23), 2)
    thick = stroke_image((14, 4), (14, 23), 6)
    right = stroke_image((9, 23), (19, 4), 3)  # bottom left to top right: leaning right
    left = stroke_image((19, 23), (9, 4), 3)
    upright = stroke_image((14, 4), (14, 23), 3)
    box_small = np.zeros((28, 28), np.uint8)
    box_small[10:16, 10:14] = 255
    box_big = np.zeros((28, 28), np.uint8)
    box_big[4:24, 6:22] = 255
    m = measure_digits(np.stack([thin, thick, right, left, upright, box_small, box_big, np.zeros((28, 28), np.uint8)]))
    assert set(m) == {"thickness", "slant", "size"}
    t, s, z = m["thickness"], m["slant"], m["size"]
    assert t[1] > t[0] + 3 and 1.5 < t[0] < 2.7 and 5.5 < t[1] < 7.5  # about the widths drawn
    assert s[2] > 0.3 and s[3] < -0.3 and abs(s[4]) < 0.05
    assert z[6] > z[5] > 0 and z[5] == 6 * 4
    assert t[7] == s[7] == z[7] == 0


def test_thresholds_are_terciles_and_bins_apply_them():
    rng = np.random.default_rng(0)
    measures = {k: rng.normal(size=3000) for k in ("thickness", "slant", "size")}
    th = digit_thresholds(measures)
    bins = bin_digits(measures, th)
    assert bins.shape == (3000, 3) and bins.dtype == np.int64
    for j in range(3):
        assert np.abs(np.bincount(bins[:, j], minlength=3) - 1000).max() <= 2
    lo, hi = th["slant"]
    few = bin_digits({"thickness": np.zeros(3), "slant": np.array([lo - 1, lo, hi]), "size": np.zeros(3)}, th)
    assert few[:, 1].tolist() == [0, 1, 2]
    with pytest.raises(ConfigError, match="different lengths"):
        bin_digits({"thickness": np.zeros(2), "slant": np.zeros(3), "size": np.zeros(3)}, th)
    with pytest.raises(ConfigError, match="slant"):
        digit_thresholds({"thickness": np.ones(3), "size": np.ones(3)})


def check_digit_caption(text: str, mention: list[int]) -> None:
    ws = set(words(text))
    digit, thick, slant, size = (MNIST_SCHEMA[k][v] if v >= 0 else None
                                 for k, v in zip(MNIST_SCHEMA, mention, strict=True))
    assert digit in ws or str(DIGIT_WORDS.index(digit)) in re.findall(r"\d", text), text
    slant_words = {"left", "right", "upright", "straight"}
    if slant is None:
        assert not ws & slant_words, text
    elif slant == "upright":
        assert ws & {"upright", "straight"} and not ws & {"left", "right"}, text
    else:
        assert ws & slant_words == {slant}, text
    stroke = {"thin": ("thin", "fine"), "medium": ("medium", "regular"), "thick": ("thick", "bold")}
    if thick is None:
        assert "stroke" not in ws, text
    else:
        assert any(f"{w} stroke" in text for w in stroke[thick]), text
    sizes = {"small": ("small", "little"), "medium": ("medium-sized", "mid-sized"), "large": ("large", "big")}
    found = {k for k, forms in sizes.items() if any(re.search(rf"\b{f}\b", text) for f in forms)}
    assert found == ({size} if size else set()), text


def test_mnist_splits(digits):
    assert set(digits) == {"train", "test", "heldout_phrasings", "heldout_combos"}
    for name, cs in digits.items():
        assert cs.images.shape[1:] == (1, 28, 28) and cs.images.min() >= -1 and cs.images.max() <= 1, name
        assert cs.schema == MNIST_SCHEMA and len(cs) == 2 * cs.num_images
        truth = cs.attributes[cs.image_of]
        stated = cs.mentions >= 0
        assert stated[:, 0].all() and (cs.mentions[stated] == truth[stated]).all(), name
        for text, mention in zip(cs.texts[::7], cs.mentions[::7].tolist(), strict=True):
            check_digit_caption(text, mention)
    assert 8000 < digits["train"].num_images < 10000
    assert sum(digits[k].num_images for k in ("test", "heldout_phrasings", "heldout_combos")) == 5000
    held = {(MNIST_SCHEMA["digit"].index(d), MNIST_SCHEMA["slant"].index(s)) for d, s in MNIST_HELDOUT_COMBOS}
    for name in ("train", "test", "heldout_phrasings"):
        assert not {tuple(p) for p in digits[name].attributes[:, [0, 2]].tolist()} & held, name
    combos = digits["heldout_combos"]
    counts = {p: 0 for p in held}
    for p in combos.attributes[:, [0, 2]].tolist():
        counts[tuple(p)] += 1
    assert min(counts.values()) >= 50  # each held-out pair is well represented
    assert (combos.mentions[:, 2] >= 0).all()  # the slant is always stated
    check_heldout_phrasings(digits["train"], digits["heldout_phrasings"], {t.id for t in MNIST_TRAIN_TEMPLATES},
                            {t.id for t in MNIST_HELDOUT_TEMPLATES})
    # Bins are terciles of the training images: roughly balanced there.
    for j in (1, 2, 3):
        share = np.bincount(digits["train"].attributes[:, j].numpy(), minlength=3) / digits["train"].num_images
        assert share.min() > 0.2, j


def test_mnist_templates_and_articles():
    full = {"digit": "eight", "thick": "thin", "slant": "leaning left", "size": "small"}
    bare = {"digit": "8", "thick": None, "slant": None, "size": None}
    made = {t.id: (t.make(full), None if t.needs else t.make(bare))
            for t in (*MNIST_TRAIN_TEMPLATES, *MNIST_HELDOUT_TEMPLATES)}
    assert made == {
        0: ("a small eight leaning left with a thin stroke", "an 8"),
        1: ("handwritten small eight, thin stroke, leaning left", "handwritten 8"),
        2: ("the digit eight, leaning left, small, written with a thin stroke", "the digit 8"),
        3: ("a small eight written with a thin stroke, leaning left", "an 8"),
        4: ("a picture of a small eight leaning left, drawn with a thin stroke", "a picture of an 8"),
        5: ("this eight is small, leaning left and drawn with a thin stroke", "this is an 8"),
        6: ("eight: thin stroke, small, leaning left", "8: handwritten"),
        7: ("leaning left, a small eight with a thin stroke", None),
        8: ("with a thin stroke, a small eight leaning left", None),
    }
    one = {"digit": "one", "thick": None, "slant": "upright", "size": None}
    assert MNIST_TRAIN_TEMPLATES[0].make(one) == "a one upright"
