"""What the integration tests share: how to run ganforge in a child process, small and reproducible."""
from __future__ import annotations

import http.server
import os
import subprocess
import sys
import threading
from functools import partial
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
