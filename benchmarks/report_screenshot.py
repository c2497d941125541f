"""A screenshot of a ``ganforge report`` page, rendered by headless Chromium (for docs/report_demo.png).

    python benchmarks/report_screenshot.py runs/demo/report.html docs/report_demo.png [--width 1400] [--full]

Needs the ``playwright`` package and a Chromium executable (Debian's ``/usr/bin/chromium``, or
``$CHROMIUM``); playwright's own browser download is not used.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path


def chromium_executable() -> str | None:
    """A Chromium to drive: ``$CHROMIUM``, else the first of chromium / chromium-browser / google-chrome on PATH."""
    env = os.environ.get("CHROMIUM")
    if env and Path(env).is_file():
        return env
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        found = shutil.which(name)
        if found:
            return found
    return None


def screenshot(report: str | Path, out: str | Path, width: int = 1400, height: int = 1000,
               full_page: bool = False) -> Path:
    """Render ``report`` and save a PNG of it at ``out`` (the first screen, or the whole page)."""
    from playwright.sync_api import sync_playwright

    exe = chromium_executable()
    if exe is None:
        raise SystemExit("no Chromium executable found (apt-get install chromium, or set CHROMIUM=PATH)")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=exe, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": width, "height": height})
            page.goto(Path(report).resolve().as_uri())
            page.wait_for_load_state("load")
            page.screenshot(path=str(out), full_page=full_page)
        finally:
            browser.close()
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("report", help="the report's HTML file")
    ap.add_argument("out", help="the PNG to write")
    ap.add_argument("--width", type=int, default=1400)
    ap.add_argument("--height", type=int, default=1000)
    ap.add_argument("--full", action="store_true", help="the whole page, not only the first screen")
    args = ap.parse_args(argv)
    if not Path(args.report).is_file():
        print(f"report_screenshot: no file {args.report}", file=sys.stderr)
        return 2
    print(screenshot(args.report, args.out, args.width, args.height, args.full))
    return 0


if __name__ == "__main__":
    sys.exit(main())
