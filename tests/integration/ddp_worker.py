"""A process of a 2-process run for tests/integration/test_distributed.py (started by torchrun).

``python ddp_worker.py MODE OUT``: MODE ``nan`` puts a NaN into process 1's real data at step 3;
``stop`` has process 1 alone stop (a health stop) at step 5, between two log steps.
"""
from __future__ import annotations

import sys

import torch

import ganforge
from ganforge.training.callbacks import TrainingDiverged
from ganforge.training.distributed import init_from_env, shutdown
from ganforge.training.run import train


class OnRank1:
    def __init__(self, mode: str, world) -> None:
        self.mode, self.world = mode, world

    def on_step_end(self, trainer, out) -> None:
        if self.world.rank != 1:
            return
        if self.mode == "nan" and trainer.step_num == 3:
            with torch.no_grad():  # D's weights on this process only: its next loss is NaN
                next(trainer.D.parameters()).fill_(float("nan"))
        if self.mode == "stop" and trainer.step_num == 5:
            trainer.stop_reason = "a health stop injected by the test"


def main() -> int:
    mode, out = sys.argv[1], sys.argv[2]
    cfg = ganforge.load_config("ring2d", ["train.steps=200", "train.batch_size=64", "train.progress=false",
                                          "train.tensorboard=false", "train.log_every=10",
                                          "model.generator.hidden=[16,16]", "model.discriminator.hidden=[16,16]"])
    world = init_from_env("cpu")
    try:
        train(cfg, out, world=world, callbacks=[OnRank1(mode, world)])
    except TrainingDiverged as e:
        print(f"rank {world.rank}: stopped: {e}", flush=True)
        # Both stopped: meet once more before exiting, since torchrun ends the other process as
        # soon as one exits with an error (which would race with its print above).
        torch.distributed.barrier()
        return 1
    finally:
        shutdown()
    print(f"rank {world.rank}: finished", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
