"""What the integration tests share: how to run ganforge in a child process, small and reproducible."""
from __future__ import annotations

import http.server
import os
import socket
import subprocess
import sys
import threading
from functools import partial
from pathlib import Path

import torch

from ganforge.training.checkpoint import load_state

REPO = Path(__file__).resolve().parents[2]
# One thread per process: runs are bitwise reproducible and several can share two cores.
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
       "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)}


def small(eval_samples: int = 1000) -> list[str]:
    """CLI flags for a ring2d run small enough for the test suite."""
    return ["--set", "model.generator.hidden=[32,32]", "--set", "model.discriminator.hidden=[32,32]",
            "--set", "train.batch_size=64", "--set", f"train.eval_samples={eval_samples}", "--no-progress"]


def ganforge(*args: str, cwd: Path | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run the CLI in a child process and capture its output."""
    return subprocess.run([sys.executable, "-m", "ganforge", *args], cwd=cwd, env=ENV,
                          capture_output=True, text=True, timeout=timeout)


class Server:
    """A static file server on 127.0.0.1 that counts the requests it answers."""

    def __init__(self, folder):
        self.requests: list[str] = []
        server = self

        class Handler(http.server.SimpleHTTPRequestHandler):
            def do_GET(self):
                server.requests.append(self.path)
                super().do_GET()

            def log_message(self, *args):  # keep test output quiet
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), partial(Handler, directory=str(folder)))
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def assert_user_error(proc: subprocess.CompletedProcess, *needles: str) -> str:
    """Exit code 2 and exactly one line on stderr, naming what went wrong, without a traceback."""
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    assert "Traceback" not in proc.stderr and "Traceback" not in proc.stdout
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """``torchrun --nproc_per_node 2 ARGS`` on this machine (a free port for the rendezvous)."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
           "--master_addr", "127.0.0.1", "--master_port", str(free_port()), *args]
    return subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=timeout, cwd=REPO)


def one(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """``ganforge ARGS`` in one process."""
    return subprocess.run([sys.executable, "-m", "ganforge", *args], env=ENV, capture_output=True, text=True,
                          timeout=timeout, cwd=REPO)


def weights(run: Path) -> dict[str, torch.Tensor]:
    """The generator's and discriminator's weights in a run's last checkpoint."""
    state = load_state(run / "checkpoints" / "last.safetensors")
    return {f"{net}.{k}": v for net in ("generator", "discriminator") for k, v in state.get(net, {}).items()}


# Batch norm's running statistics differ between the layouts by construction: one process updates
# them once per micro-batch, while DDP broadcasts rank 0's before every forward pass.
RUNNING_STATS = ("running_mean", "running_var", "num_batches_tracked")


def assert_same(a: Path, b: Path, atol: float = 1e-6, running_stats: bool = True) -> None:
    """The two runs' last checkpoints hold the same weights (up to ``atol``); without
    ``running_stats``, batch norm's running statistics are left out."""
    wa, wb = weights(a), weights(b)
    assert wa.keys() == wb.keys()
    keys = [k for k in wa if running_stats or not k.endswith(RUNNING_STATS)]
    worst = max((wa[k].double() - wb[k].double()).abs().max().item() for k in keys)
    assert worst <= atol, f"weights differ by up to {worst:.3g}"


def ok(p: subprocess.CompletedProcess) -> None:
    assert p.returncode == 0, p.stderr[-3000:]
