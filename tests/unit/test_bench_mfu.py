"""The pure parts of ``benchmarks/bench_loop.py --mfu``: FLOP counting, peak, MFU arithmetic, the bf16 rule."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import bench_loop  # noqa: E402


@pytest.mark.parametrize("input_grad", [False, True])
def test_linear_flops_forward_and_backward(input_grad):
    # Forward: one addmm, 2nab. Backward: the weight gradient (an mm, 2nab) always, the input
    # gradient (another mm, 2nab) only when the input requires grad: 4nab in all then.
    torch.manual_seed(0)
    n, a, b = 8, 5, 3
    layer = nn.Linear(a, b)
    x = torch.randn(n, a, requires_grad=input_grad)
    flops = bench_loop.count_flops(lambda: layer(x).sum().backward())
    assert flops == 2 * n * a * b + (4 if input_grad else 2) * n * a * b


def test_forward_only_and_optimizer_step_count():
    # Adam's update and elementwise ops count no FLOPs; a no-grad forward is 2nab.
    layer = nn.Linear(4, 6)
    opt = torch.optim.Adam(layer.parameters())
    x = torch.randn(10, 4)
    layer(x).sum().backward()
    assert bench_loop.count_flops(opt.step) == 0
    with torch.no_grad():
        assert bench_loop.count_flops(layer, x) == 2 * 10 * 4 * 6
    assert bench_loop.count_flops(lambda: torch.relu(x) * 2) == 0


def test_mfu_arithmetic():
    # 1 GFLOP per step, 640 images/s at batch 64 = 10 steps/s = 10 GFLOP/s; over a 100 GFLOP/s peak: 10%.
    achieved = bench_loop.achieved_flops(1e9, 640.0, 64)
    assert achieved == pytest.approx(1e10)
    assert bench_loop.mfu(achieved, 1e11) == pytest.approx(0.1)
    assert bench_loop.mfu(achieved, None) is None
    assert bench_loop.matmul_flops(2048) == 2 * 2048 ** 3


def test_matmul_peak_positive_for_tiny_n():
    peak = bench_loop.matmul_peak(32, torch.float32, "cpu", min_seconds=0.01)
    assert peak > 0


def test_bf16_decision_cpu():
    no_flags = {"avx2": True, "avx512f": True, "avx512_bf16": False, "amx_bf16": False}
    ok, why = bench_loop.bf16_decision("cpu", flags=no_flags, peak_fp32=1e11, peak_bf16=None)
    assert not ok and "neither" in why
    # The flags alone are not enough: the measured bf16 peak must beat fp32's.
    amx = {**no_flags, "amx_bf16": True}
    ok, why = bench_loop.bf16_decision("cpu", flags=amx, peak_fp32=1e11, peak_bf16=5e11)
    assert ok and "amx_bf16" in why
    ok, why = bench_loop.bf16_decision("cpu", flags=amx, peak_fp32=1e11, peak_bf16=0.5e11)
    assert not ok and "not faster" in why
    ok, why = bench_loop.bf16_decision("cpu", flags={**no_flags, "avx512_bf16": True},
                                       peak_fp32=1e11, peak_bf16=None)
    assert not ok and "not measured" in why
    assert bench_loop.bf16_flags({"avx512_bf16": True, "amx_bf16": True}) == ["avx512_bf16", "amx_bf16"]
    assert bench_loop.bf16_flags(no_flags) == []


def test_bf16_decision_cuda():
    assert bench_loop.bf16_decision("cuda", cuda_supported=True)[0]
    # On CUDA the rule is native support; the CPU flags are not consulted.
    assert not bench_loop.bf16_decision("cuda", cuda_supported=False, flags={"amx_bf16": True})[0]


def test_mfu_table_rows():
    rows = [{"loop": "plain", "dtype": "fp32", "flops_per_step": 2e9, "steps_per_second": 5.0,
             "achieved": 1e10, "peak": 1e11, "mfu": 0.1},
            {"loop": "ganforge", "dtype": "bf16", "flops_per_step": 1e9, "steps_per_second": 4.0,
             "achieved": 4e9, "peak": None, "mfu": None}]
    lines = bench_loop.mfu_table(rows).splitlines()
    assert len(lines) == 3 and "MFU" in lines[0]
    assert "10.00%" in lines[1] and "n/a" in lines[2]
