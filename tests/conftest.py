"""Shared by the whole suite: each pytest-xdist worker takes its share of the cores."""
from __future__ import annotations

import os

if os.environ.get("PYTEST_XDIST_WORKER"):
    import torch

    # Two workers on two cores with two threads each would oversubscribe: every in-process torch op
    # gets the worker's share. (Child processes the tests start set their own: one thread each.)
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // workers))
