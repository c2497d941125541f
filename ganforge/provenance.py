"""What a result was made with: the versions, the date and the command line, recorded in every
``summary.json`` so a number found months later can be traced to the code and the call behind it."""
from __future__ import annotations

import datetime
import os
import platform
import shlex
import sys
from typing import Any


def provenance() -> dict[str, Any]:
    """``{"versions": {...}, "date": ISO-8601 UTC, "command": the process's command line}``."""
    import torch

    from ganforge.version import __version__

    argv = list(sys.argv) or ["python"]
    # "ganforge", not the venv's absolute path nor python -m's "__main__.py"
    argv[0] = "ganforge" if argv[0].endswith(("__main__.py", "ganforge")) else os.path.basename(argv[0])
    return {
        "versions": {"ganforge": __version__, "torch": torch.__version__, "python": platform.python_version()},
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": shlex.join(argv),
    }
