"""Data-parallel training: one process per device under ``torchrun``, G and D replicated with DDP.

``torchrun --nproc_per_node N -m ganforge train CONFIG`` starts N copies of the same command; each
reads its place from the environment torchrun sets (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
``MASTER_ADDR``...). :func:`init_from_env` joins the process group (gloo on CPU, NCCL on CUDA).

How the networks are kept in step follows stylegan2-ada-pytorch's training loop, which avoids the
known traps of GANs under DistributedDataParallel:

- one DDP wrapper per network with ``broadcast_buffers=False``: D runs on a real and a fake batch
  before one backward, and DDP's buffer broadcast at every forward would overwrite batch-norm
  statistics in between (pytorch #22095);
- a player whose weights are frozen in a phase (D in G's phase) is called under ``no_sync``, so its
  DDP wrapper does not wait for gradients that never come; so is the phase's own player in every
  micro-batch of gradient accumulation but the last;
- a zero-weighted term of every trained parameter joins the loss, so each parameter takes part in
  the reduction even where the loss does not reach it (R1 does not reach D's last bias, a text GAN's
  MLE phase does not reach an unused head): DDP would otherwise wait for it and hang;
- gradient penalties need nothing special here: the penalty's gradient with respect to D's weights
  is computed by the same ``backward`` as the rest of D's loss, whose hooks DDP all-reduces.

Methods other than ``forward`` (a text generator's ``generate``, ``nll``) are routed through the
DDP wrapper too (:class:`Replica`), so their gradients are reduced as well.
"""
from __future__ import annotations

import contextlib
import datetime
import inspect
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn

from ganforge.registry import ConfigError

# How long a collective may wait for the other processes before the run fails instead of hanging
# (a process that died, a rank stuck in its own evaluation). Generous: rank 0 evaluates while the
# others wait at the next step's first collective.
TIMEOUT = datetime.timedelta(minutes=int(os.environ.get("GANFORGE_DIST_TIMEOUT_MIN", "30")))


@dataclass(frozen=True)
class World:
    """Where this process stands: its rank among ``size`` processes, its device, the backend."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0
    backend: str = ""

    @property
    def distributed(self) -> bool:
        return self.size > 1

    @property
    def writer(self) -> bool:
        """Rank 0 writes the run folder, logs, plots and evaluates."""
        return self.rank == 0


SINGLE = World()
_DDP_ARGS = inspect.signature(nn.parallel.DistributedDataParallel.__init__).parameters


def launched() -> bool:
    """True when this process was started by torchrun (or another launcher setting its variables)."""
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def device_for(device: str, world: World) -> str:
    """The device of this process: ``cuda`` becomes ``cuda:LOCAL_RANK`` (one GPU per process)."""
    if device == "cuda" and world.distributed:
        return f"cuda:{world.local_rank}"
    return device


def init_from_env(device: str = "cpu") -> World:
    """Join the process group torchrun describes in the environment; a single process otherwise.

    The backend is NCCL for CUDA and gloo for the CPU (``GANFORGE_DIST_BACKEND`` overrides it).
    """
    if not launched():
        return SINGLE
    rank, size = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if size < 1 or not 0 <= rank < size:
        raise ConfigError(f"torchrun environment: RANK={rank} WORLD_SIZE={size} is not a valid place")
    cuda = device.startswith("cuda")
    backend = os.environ.get("GANFORGE_DIST_BACKEND") or ("nccl" if cuda else "gloo")
    if size == 1:
        return World(rank, size, local, "")
    if cuda:
        if not torch.cuda.is_available():
            raise ConfigError("train.device is cuda but this machine has no CUDA GPU")
        if local >= torch.cuda.device_count():
            raise ConfigError(f"LOCAL_RANK {local} but only {torch.cuda.device_count()} GPUs on this node: "
                              "use --nproc_per_node at most the number of GPUs")
        torch.cuda.set_device(local)
    if not dist.is_initialized():
        dist.init_process_group(backend, timeout=TIMEOUT)
    return World(rank, size, local, backend)


def shutdown() -> None:
    """Leave the process group (every process calls this at the end of its run)."""
    if dist.is_initialized():
        dist.destroy_process_group()


def local_batch(batch_size: int, world: World, accumulate: int) -> int:
    """The per-process, per-micro-batch size of a global ``batch_size``; a one-line error when it
    does not divide."""
    parts = world.size * accumulate
    if batch_size % parts:
        raise ConfigError(f"train.batch_size {batch_size} is the global batch and must divide by "
                          f"{world.size} processes x {accumulate} accumulation steps "
                          f"(try {max(parts, batch_size // parts * parts)})")
    return batch_size // parts


class _Call(nn.Module):
    """What DDP wraps: ``forward(method, ...)`` calls the module's ``method`` (its forward by default)."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module

    def forward(self, *args: Any, _method: str = "forward", **kwargs: Any) -> Any:
        fn = self.module if _method == "forward" else getattr(self.module, _method)
        return fn(*args, **kwargs)


class Replica:
    """A network as the objective sees it in a multi-process run: calls and methods go through its
    DDP wrapper (gradients all-reduced in backward); attributes read through to the module."""

    def __init__(self, module: nn.Module, ddp: nn.parallel.DistributedDataParallel) -> None:
        self.__dict__["module"], self.__dict__["ddp"] = module, ddp

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.ddp(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.module, name)
        # The module's own methods (generate, nll...) go through DDP; nn.Module's (parameters,
        # state_dict, train...) and plain attributes are the module's.
        if inspect.ismethod(attr) and not hasattr(nn.Module, name):
            return lambda *a, **k: self.ddp(*a, _method=name, **k)
        return attr

    def no_sync(self) -> contextlib.AbstractContextManager:
        return self.ddp.no_sync()


def replicate(module: nn.Module, world: World, device: torch.device, sync_batchnorm: bool = False) -> Any:
    """``module`` itself in a single process; a :class:`Replica` in a multi-process run (weights
    broadcast from rank 0 once, gradients averaged in every backward)."""
    if not world.distributed:
        return module
    if sync_batchnorm:
        if device.type != "cuda":
            raise ConfigError("train.sync_batchnorm needs CUDA (torch's SyncBatchNorm runs on GPUs only)")
        module = nn.SyncBatchNorm.convert_sync_batchnorm(module)
    if not any(p.requires_grad for p in module.parameters()):
        return module  # nothing to synchronise (a frozen network)
    # Buffers are never synchronised in the forward (see the module docstring); newer torch
    # spells broadcast_buffers=False as forward_sync_buffers=False.
    sync = ({"forward_sync_buffers": False} if "forward_sync_buffers" in _DDP_ARGS
            else {"broadcast_buffers": False})
    ddp = nn.parallel.DistributedDataParallel(
        _Call(module), device_ids=[device.index] if device.type == "cuda" else None,
        find_unused_parameters=False, **sync)
    return Replica(module, ddp)


@contextlib.contextmanager
def no_sync(*nets: Any) -> Iterator[None]:
    """No gradient reduction for these networks inside the block (plain modules are ignored)."""
    with contextlib.ExitStack() as stack:
        for net in nets:
            if isinstance(net, Replica):
                stack.enter_context(net.no_sync())
        yield


def participation(params: list[Tensor]) -> Tensor:
    """A zero that depends on every parameter: added to a loss, every parameter receives a (zero)
    gradient, so DDP's reduction never waits for one the loss does not reach."""
    return sum((p.reshape(-1)[:1].sum() for p in params), torch.zeros(())).mul(0.0) if params else torch.zeros(())


def unreached(loss: Tensor, params: list[Tensor]) -> list[Tensor]:
    """The parameters ``loss`` does not depend on (a walk of its autograd graph)."""
    seen, leaves, stack = set(), set(), [loss.grad_fn]
    while stack:
        fn = stack.pop()
        if fn is None or fn in seen:
            continue
        seen.add(fn)
        var = getattr(fn, "variable", None)  # an AccumulateGrad node: a leaf tensor
        if var is not None:
            leaves.add(id(var))
        stack.extend(f for f, _ in fn.next_functions)
    return [p for p in params if id(p) not in leaves]


def gather(obj: Any, world: World) -> list[Any]:
    """Every process's ``obj`` (a list in rank order), on every process."""
    if not world.distributed:
        return [obj]
    out: list[Any] = [None] * world.size
    dist.all_gather_object(out, obj)
    return out


def broadcast(obj: Any, world: World) -> Any:
    """Rank 0's ``obj`` on every process."""
    if not world.distributed:
        return obj
    box = [obj if world.rank == 0 else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def barrier(world: World) -> None:
    """Wait until every process of the run is here (a no-op in one process)."""
    if world.distributed:
        dist.barrier()


def any_true(flags: list[bool], world: World, device: torch.device) -> list[bool]:
    """For each flag, whether it is set on any process (one small all-reduce)."""
    if not world.distributed:
        return flags
    t = torch.tensor([float(f) for f in flags], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return [bool(v) for v in t.tolist()]


def mean(t: Tensor, world: World) -> Tensor:
    """The mean of ``t`` over processes (statistics that must agree, e.g. BEGAN's balance)."""
    if not world.distributed:
        return t
    t = t.detach().clone()
    dist.all_reduce(t)
    return t / world.size
