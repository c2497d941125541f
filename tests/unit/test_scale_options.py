"""Options of issue 15 that run in one process: precision modes, compile fallback, accumulation,
data shards, and the multi-process helpers' single-process behaviour."""
from __future__ import annotations

import json

import pytest
import torch

import ganforge
from ganforge.data.tensor import EpochSampler
from ganforge.registry import ConfigError
from ganforge.training import precision
from ganforge.training.assemble import assemble
from ganforge.training.distributed import World, local_batch, participation, unreached
from ganforge.training.run import train
from ganforge.training.trainer import Trainer

SMALL = ["train.steps=4", "train.batch_size=32", "train.progress=false", "train.tensorboard=false",
         "train.eval_samples=200", "model.generator.hidden=[16,16]", "model.discriminator.hidden=[16,16]"]


def cfg(*extra: str):
    return ganforge.load_config("ring2d", [*SMALL, *extra])


def test_fp16_trains_with_a_gradient_scaler_per_player():
    c = cfg("train.autocast=fp16")
    t = Trainer(assemble(c), c.train)
    t.fit()
    assert set(t.precision.scalers) == {"g", "d"} and t.step_num == 4
    assert all(torch.isfinite(p).all() for p in t.G.parameters())
    state = t.state_dict()["precision"]
    assert state["mode"] == "fp16" and set(state["scalers"]) == {"g", "d"}


def test_auto_times_both_modes_undoes_the_trial_and_logs_its_choice(tmp_path, monkeypatch):
    monkeypatch.setattr(precision, "half_for", lambda device: ("bf16", "a test says so"))
    c = cfg("train.autocast=none", "train.steps=1")
    torch.manual_seed(c.train.seed)  # as train() does
    plain = Trainer(assemble(c), c.train)
    plain.fit()  # the run's one real step, without the trial
    r = train(cfg("train.autocast=auto", "train.steps=1"), tmp_path / "run")
    t = r.trainer
    assert t.precision.decided and t.precision.mode in ("none", "bf16")
    assert t.step_num == 1 and t.updates == plain.updates  # the trial steps are not counted
    if t.precision.mode == "none":  # float32 kept: the step equals the run without the trial
        for a, b in zip(t.G.parameters(), plain.G.parameters(), strict=True):
            assert torch.equal(a, b)
    notes = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()
             if '"note"' in line]
    assert len(notes) == 1 and notes[0]["note"].startswith("autocast auto: ") and "ms per step" in notes[0]["note"]


def test_auto_without_a_fast_half_type_stays_float32_and_says_why(monkeypatch):
    monkeypatch.setattr(precision, "half_for", lambda device: (None, "this CPU has no bf16 instructions"))
    c = cfg("train.autocast=auto")
    t = Trainer(assemble(c), c.train)
    t.fit()
    assert t.precision.mode == "none" and "no bf16" in t.precision.note


def test_an_unknown_autocast_mode_is_a_config_error():
    c = cfg("train.autocast=fp8")
    with pytest.raises(ConfigError, match="train.autocast: unknown mode 'fp8'"):
        Trainer(assemble(c), c.train)


def test_compile_falls_back_to_eager_with_one_warning(monkeypatch):
    def broken(module):
        def call(*a, **k):
            raise RuntimeError("no C++ compiler here")
        return call
    monkeypatch.setattr(torch, "compile", broken)
    c = cfg("train.compile=true")
    t = Trainer(assemble(c), c.train)
    with pytest.warns(UserWarning, match="torch.compile failed .*no C\\+\\+ compiler.*running eagerly"):
        t.fit()
    assert t.step_num == 4


def test_accumulation_splits_the_batch_and_needs_fresh_noise():
    c = cfg("train.accumulate=2")
    t = Trainer(assemble(c), c.train)
    assert t.game.batch_size == 16 and len(t.rngs) == 2
    assert len(t.game.real()["x"]) == 16
    t.fit()
    with pytest.raises(ConfigError, match="fresh_g_noise"):
        c = cfg("train.accumulate=2", "train.fresh_g_noise=false")
        Trainer(assemble(c), c.train)
    with pytest.raises(ConfigError, match="train.accumulate must be a positive integer"):
        c = cfg("train.accumulate=0")
        Trainer(assemble(c), c.train)


def test_the_global_batch_must_divide():
    assert local_batch(64, World(0, 2), 2) == 16
    with pytest.raises(ConfigError, match="train.batch_size 63 is the global batch and must divide by 2 processes"):
        local_batch(63, World(0, 2), 1)


def test_epoch_sampler_shards_are_disjoint_and_cover_the_data():
    g = torch.Generator().manual_seed(0)
    seen = []
    for index in range(3):
        s = EpochSampler(10)
        s.set_shard(index, 3)
        seen.append(set(s.indices(3 if index else 4, g).tolist()))
    assert set().union(*seen) == set(range(10)) and sum(map(len, seen)) == 10
    s = EpochSampler(10)
    s.set_shard(1, 2)
    s.indices(2, g)
    state = s.state_dict()
    other = EpochSampler(10)  # another number of shards: a fresh epoch instead of another shard's permutation
    other.set_shard(0, 3)
    other.load_state_dict(state)
    assert other._perm == [None]


def test_lanes_of_one_process_draw_what_processes_draw():
    """Process r of 2 and lane r of one process with 2 micro-batches sample the same shard, in the same order."""
    draws = {}
    for layout in ("processes", "lanes"):
        gens = [torch.Generator().manual_seed(10 + r) for r in range(2)]
        samplers = [EpochSampler(10) for _ in range(2)] if layout == "processes" else [EpochSampler(10)] * 2
        if layout == "processes":
            for r, s in enumerate(samplers):
                s.set_shard(r, 2)
        else:
            samplers[0].set_shard(0, 1, lanes=2)
        out = []
        for _ in range(4):  # past an epoch of each shard (5 samples)
            for r in range(2):
                samplers[r].lane = 0 if layout == "processes" else r
                out.append(samplers[r].indices(2, gens[r]).tolist())
        draws[layout] = out
    assert draws["processes"] == draws["lanes"]
    assert set(sum(draws["lanes"][:2], [])) <= set(range(10)) and {i % 2 for i in draws["lanes"][1]} == {1}
    # A checkpoint of the two-lane process resumes in two processes shard by shard.
    one = EpochSampler(10)
    one.set_shard(0, 1, lanes=2)
    g = torch.Generator().manual_seed(0)
    for k in range(2):
        one.lane = k
        one.indices(3, g)
    two = EpochSampler(10)
    two.set_shard(1, 2)
    two.load_state_dict(one.state_dict())
    assert two._pos == [3] and torch.equal(two._perm[0], one._perm[1])


def test_participation_reaches_every_parameter_with_a_zero_gradient():
    net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Linear(4, 1))
    x = torch.randn(5, 3, requires_grad=True)
    (g,) = torch.autograd.grad(net(x).sum(), x, create_graph=True)
    loss = g.pow(2).sum()  # R1-like: on a linear net, the gradient does not depend on the biases
    params = list(net.parameters())
    missing = unreached(loss, params)
    assert [p.shape for p in missing] == [torch.Size([4]), torch.Size([1])]
    (loss + participation(params)).backward()
    assert all(p.grad is not None for p in params) and all(not p.grad.any() for p in missing)


def test_sync_batchnorm_on_the_cpu_is_a_config_error():
    from ganforge.training.distributed import replicate
    with pytest.raises(ConfigError, match="sync_batchnorm needs CUDA"):
        replicate(torch.nn.Linear(2, 2), World(0, 2), torch.device("cpu"), sync_batchnorm=True)
