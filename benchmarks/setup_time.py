#!/usr/bin/env python3
"""What the first ``make demo`` / ``make test`` costs before it starts: ``make setup`` from nothing (issue 24).

Copies the checkout's files (tracked, and untracked ones git does not ignore: what a clone would hold,
without ``.venv`` or ``runs/``) into a temporary folder and runs ``make setup`` there: a new virtual
environment, the pinned torch, then ``pip install -e '.[dev]'``. pip's cache is turned off
(``PIP_NO_CACHE_DIR=1``), so every wheel is read and unpacked again as on a first install; where the
wheels come from (this machine's pip configuration: local wheel folders and indexes, or the network)
is recorded with the time (pip's configuration, and the host of every package from a dry run
before the timed one), since it decides most of it. ``benchmarks/demo_time.py`` times the demo
itself (training and report), without this.

Usage: python benchmarks/setup_time.py [--out docs/results/setup_time.json] [--keep]
"""
from __future__ import annotations

import argparse
import collections
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import results_file  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def checkout_files() -> list[str]:
    out = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                         capture_output=True, text=True, check=True).stdout
    return [p for p in out.split("\0") if p and (ROOT / p).is_file()]


def pip_config() -> list[str]:
    """pip's configuration here (index URLs, find-links, constraints): where the wheels come from."""
    r = subprocess.run([sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True)
    return [line for line in r.stdout.splitlines() if line.strip()]


def wheel_sources(copy: Path, env: dict[str, str]) -> dict[str, int]:
    """Where pip takes each package of ``make setup`` from, by host (``file`` = this machine's disk):
    a dry run with ``--report`` in a throwaway environment, before and outside the timed set-up."""
    with tempfile.TemporaryDirectory(prefix="ganforge-setup-probe-") as tmp:
        venv, report = Path(tmp) / "v", Path(tmp) / "report.json"
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--dry-run", "--report",
                        str(report), "torch==2.13.0", "-e", f"{copy}[dev]"], env=env, check=True,
                       capture_output=True)
        hosts = collections.Counter()
        for item in json.loads(report.read_text())["install"]:
            url = item["download_info"]["url"]
            hosts["file" if url.startswith("file:") else url.split("/")[2]] += 1
        return dict(hosts)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=Path("docs/results/setup_time.json"))
    ap.add_argument("--keep", action="store_true", help="keep the temporary copy (and its .venv)")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="ganforge-setup-"))
    try:
        for rel in checkout_files():
            (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / rel, tmp / rel)
        env = {**os.environ, "PIP_NO_CACHE_DIR": "1"}
        env.pop("VIRTUAL_ENV", None)
        commands = subprocess.run(["make", "-n", "setup"], cwd=tmp, capture_output=True, text=True).stdout
        sources = wheel_sources(tmp, env)
        load_before = os.getloadavg()
        t0 = time.perf_counter()
        r = subprocess.run(["make", "setup"], cwd=tmp, env=env, capture_output=True, text=True)
        wall = time.perf_counter() - t0
        if r.returncode != 0:
            raise SystemExit(f"make setup failed:\n{r.stdout[-2000:]}\n{r.stderr[-2000:]}")
        venv = tmp / ".venv"
        size = sum(f.stat().st_size for f in venv.rglob("*") if f.is_file() and not f.is_symlink())
        packages = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "list", "--format=freeze"],
                                  capture_output=True, text=True).stdout.split()
        results = {**results_file.header("benchmarks/setup_time.py"),
                   "what": "make setup in a fresh copy of the checkout: python3 -m venv, pip install torch==2.13.0, "
                           "pip install -e '.[dev]' (pip cache off)",
                   "make_n_setup": commands.splitlines(), "wall_seconds": round(wall, 1),
                   "venv_megabytes": round(size / 1e6), "packages_installed": len(packages),
                   "pip_config": pip_config(), "packages_by_source": sources,
                   "load_average_1min_before_after": [round(load_before[0], 2), round(os.getloadavg()[0], 2)]}
        print(f"make setup: {wall:.1f} s, {len(packages)} packages, {size / 1e6:.0f} MB, from {sources} "
              f"(CPU {results['cpu']['model']}; pip: {'; '.join(results['pip_config']) or 'defaults'})")
        results_file.write(args.out, results)
    finally:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
