"""What every benchmark's results file records besides its figures: when, by which command, on what.

A figure in README.md or docs/BENCHMARKS.md is quoted from a results file under docs/results/ written
by the command printed beside it; this module writes the part of that file that says where the
figure came from (date, exact command line, CPU model and the flags that decide its speed, torch
version, thread count, the git commit of the code measured).
"""
from __future__ import annotations

import datetime
import json
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

import torch

# CPU flags that change what these benchmarks measure: vector width and bf16 / matrix units.
SPEED_FLAGS = ("avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni", "amx_tile", "amx_bf16", "amx_int8")


def command_line(script: str) -> str:
    """The command as a user would type it again: ``python benchmarks/NAME.py ARGS``."""
    return " ".join(["python", script, *sys.argv[1:]])


def cpu_info() -> dict[str, Any]:
    model, flags = platform.processor() or platform.machine(), set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name":
                model = value.strip()
            elif key.strip() == "flags":
                flags = set(value.split())
                break
    except OSError:
        pass
    amx = sorted(f for f in flags if f.startswith("amx"))
    return {"model": model, "flags": {f: f in flags for f in SPEED_FLAGS}, "amx": bool(amx),
            "torch_cpu_capability": torch.backends.cpu.get_cpu_capability()}


def git_commit() -> str | None:
    """The commit of the code measured, with ``+dirty`` when the work tree differs from it."""
    root = Path(__file__).resolve().parents[1]
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True,
                              timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return (head + ("+dirty" if dirty else "")) or None


def environment(device: str = "cpu") -> dict[str, Any]:
    env: dict[str, Any] = {"cpu": cpu_info(), "torch": torch.__version__, "threads": torch.get_num_threads(),
                           "python": platform.python_version(), "git_commit": git_commit()}
    if device.startswith("cuda") and torch.cuda.is_available():
        env["gpu"] = torch.cuda.get_device_name(0)
        env["cuda"] = torch.version.cuda
    return env


def header(script: str, device: str = "cpu") -> dict[str, Any]:
    """The opening fields of a results file: date (UTC), the exact command line, the machine."""
    return {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "command": command_line(script), **environment(device)}


def write(path: Path | None, results: dict[str, Any]) -> None:
    """Write ``results`` as indented JSON to ``path`` (nothing when ``path`` is None)."""
    if path is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name("." + path.name + ".tmp")
    tmp.write_text(json.dumps(results, indent=2) + "\n")
    tmp.replace(path)
    print(f"results written to {path}", file=sys.stderr)
