"""What the integration tests share: how to run ganforge in a child process, small and reproducible."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

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
