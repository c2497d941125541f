"""Latent interpolation, class grids and the training GIF (ganforge.report.pictures)."""
from __future__ import annotations

import numpy as np
import torch
from PIL import Image
from torch import nn

from ganforge.report.pictures import class_grid, interpolation_grid, slerp, training_gif
from ganforge.training.trainer import Prior

H = 4  # fake images are 1 x H x H; grids use pad 2 and scale 2


class Recorder(nn.Module):
    """A fake generator that records its input vectors [z, one-hot class]; left half of each image shows
    the class (k / K), right half tanh(z[:, 0])."""

    def __init__(self, num_classes: int = 0) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.p = nn.Parameter(torch.zeros(()))  # so the model has a device
        self.calls: list[torch.Tensor] = []

    def forward(self, v: torch.Tensor) -> torch.Tensor:
        self.calls.append(v.clone())
        img = torch.empty(len(v), 1, H, H)
        img[..., H // 2:] = torch.tanh(v[:, :1, None, None])
        k = v[:, -self.num_classes:].argmax(1) if self.num_classes else torch.zeros(len(v))
        img[..., :H // 2] = (k.float() / max(self.num_classes, 1) * 2 - 1)[:, None, None, None]
        return img


def cell(png: np.ndarray, row: int, col: int, x: int) -> int:
    """The pixel at column ``x`` (0..H-1), first line, of grid cell (row, col) in a saved PNG."""
    return int(png[(2 + row * (H + 2)) * 2, (2 + col * (H + 2) + x) * 2])


# -- slerp -------------------------------------------------------------------------------------------------------------


def test_slerp_endpoints_exact_and_broadcast():
    g = torch.Generator().manual_seed(0)
    z0, z1 = torch.randn(5, 16, generator=g), torch.randn(5, 16, generator=g)
    assert torch.equal(slerp(z0, z1, 0.0), z0) and torch.equal(slerp(z0, z1, 1.0), z1)
    path = slerp(z0[:, None], z1[:, None], torch.linspace(0, 1, 7)[None, :, None])
    assert path.shape == (5, 7, 16)
    assert torch.equal(path[:, 0], z0) and torch.equal(path[:, -1], z1)


def test_slerp_keeps_the_norm_where_lerp_shrinks_it():
    e0, e1 = torch.tensor([1.0, 0, 0]), torch.tensor([0, 1.0, 0])
    assert torch.isclose(slerp(e0, e1, 0.5).norm(), torch.tensor(1.0))
    assert torch.isclose((0.5 * e0 + 0.5 * e1).norm(), torch.tensor(0.5**0.5))
    g = torch.Generator().manual_seed(1)
    a, b = torch.randn(64, generator=g), torch.randn(64, generator=g)
    a, b = 3 * a / a.norm(), 3 * b / b.norm()  # equal norms: slerp stays on their sphere
    norms = slerp(a, b, torch.linspace(0, 1, 11)[:, None]).norm(dim=1)
    torch.testing.assert_close(norms, torch.full((11,), 3.0))


def test_slerp_parallel_falls_back_to_lerp():
    z = torch.tensor([1.0, 2.0, 3.0])
    out = slerp(z, 2 * z, 0.5)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out, 1.5 * z)


# -- interpolation grid ------------------------------------------------------------------------------------------------


def test_interpolation_grid_normal_is_spherical(tmp_path):
    model, prior = Recorder(), Prior("normal", 8)
    model.train()
    interpolation_grid(model, prior, tmp_path / "interp.png", rows=3, steps=5, seed=7)
    assert model.training  # mode restored
    z = model.calls[0]
    assert z.shape == (15, 8)
    g = torch.Generator().manual_seed(7)
    z0, z1 = prior.sample(3, g), prior.sample(3, g)
    rows = z.view(3, 5, 8)
    assert torch.equal(rows[:, 0], z0) and torch.equal(rows[:, -1], z1)
    torch.testing.assert_close(rows[:, 2], slerp(z0, z1, 0.5))
    img = Image.open(tmp_path / "interp.png")
    assert img.size == ((5 * (H + 2) + 2) * 2, (3 * (H + 2) + 2) * 2)


def test_interpolation_grid_uniform_is_linear_and_keeps_each_rows_class(tmp_path):
    model, prior = Recorder(num_classes=4), Prior("uniform", 6, classes=4)
    interpolation_grid(model, prior, tmp_path / "interp.png", rows=2, steps=3, seed=0)
    rows = model.calls[0].view(2, 3, 10)
    torch.testing.assert_close(rows[:, 1, :6], (rows[:, 0, :6] + rows[:, 2, :6]) / 2)
    for r in range(2):  # the class part does not move along a row
        assert all(torch.equal(rows[r, i, 6:], rows[r, 0, 6:]) for i in range(3))
        assert rows[r, 0, 6:].sum() == 1


# -- class grid --------------------------------------------------------------------------------------------------------


def test_class_grid_rows_in_class_order_with_shared_noise(tmp_path):
    k, per = 4, 5
    model = Recorder(num_classes=k)
    class_grid(model, Prior("normal", 8, classes=k), tmp_path / "classes.png", per_class=per, seed=3)
    v = model.calls[0]
    assert v.shape == (k * per, 8 + k) and v[:, 8:].argmax(1).tolist() == [i // per for i in range(k * per)]
    assert all(torch.equal(v[i * per:(i + 1) * per, :8], v[:per, :8]) for i in range(k))
    png = np.asarray(Image.open(tmp_path / "classes.png"))
    for row in range(k):
        expected = round((row / k * 2 - 1 + 1) * 127.5)
        assert all(cell(png, row, col, 0) == expected for col in range(per))  # class along the row
        assert [cell(png, row, col, H - 1) for col in range(per)] == [cell(png, 0, col, H - 1) for col in range(per)]
    assert len({cell(png, 0, col, H - 1) for col in range(per)}) > 1  # ... and the noise differs across columns


# -- training GIF ------------------------------------------------------------------------------------------------------


def test_training_gif_frames_in_step_order(tmp_path):
    samples = tmp_path / "samples"
    samples.mkdir()
    levels = {10: 40, 100: 200, 20: 120}
    for step, level in levels.items():  # written out of order; "100" sorts before "20" as a string
        Image.fromarray(np.full((32, 48), level, np.uint8)).save(samples / f"step_{step:07d}.png")
    (samples / "step_0000050.png").write_bytes(b"not a png")  # unreadable: skipped
    (samples / "notes.png").write_bytes(b"ignored")
    out = training_gif(samples, tmp_path / "training.gif", duration_ms=100)
    assert out == tmp_path / "training.gif"
    gif = Image.open(out)
    assert gif.n_frames == 3
    markers, labels = [], []
    for i in range(3):
        gif.seek(i)
        frame = np.asarray(gif.convert("L")).astype(int)
        assert frame.shape == (32, 48)
        markers.append(frame[-1, -1])
        labels.append(np.abs(frame[:12, :40] - frame[-1, -1]).max() > 50)  # the step label is drawn
    assert np.allclose(markers, [40, 120, 200], atol=4)
    assert all(labels)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["samples", "training.gif"]  # no temporary left


def test_training_gif_needs_two_frames(tmp_path):
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "step_0000001.png")
    assert training_gif(tmp_path, tmp_path / "t.gif") is None
    assert not (tmp_path / "t.gif").exists()
