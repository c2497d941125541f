"""Reading the safetensors files ganforge writes (checkpoints, generators) from a path a user gave.

A path on the command line may hold anything: a pickle (what ``torch.save`` writes, which can run
code when loaded), random bytes, an empty or truncated file, someone else's safetensors file, or a
ganforge file whose metadata was damaged. :func:`read_tensor_file` never unpickles and turns every
one of them into a :class:`~ganforge.registry.ConfigError` of one line naming the file and what is
wrong with it, so the CLI reports it without a traceback. It is a leaf (it imports only the
registry's error), so the checkpoint loader in training and the generator loader share it.
"""
from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

from safetensors import safe_open
from torch import Tensor

from ganforge.registry import ConfigError

# safetensors refuses headers over 100 MB; checking first gives the reason in words, not its error code.
MAX_HEADER = 100_000_000
_PICKLE_PROTOCOLS = range(2, 6)  # a pickle of protocol >= 2 starts with b"\x80" and the protocol number


def sniff(head: bytes, size: int) -> str | None:
    """Why a file that starts with ``head`` (and has ``size`` bytes) is not a safetensors file, or None
    if its first 8 bytes could be a safetensors header length."""
    if size == 0:
        return "the file is empty"
    if head[:4] == b"PK\x03\x04":
        return ("it is a zip archive, as torch.save writes; ganforge never loads those, since unpickling "
                "can run code")
    if len(head) >= 2 and head[0] == 0x80 and head[1] in _PICKLE_PROTOCOLS:
        return "it is a Python pickle; ganforge never loads those, since unpickling can run code"
    if size < 8:
        return f"only {size} bytes"
    n = struct.unpack("<Q", head[:8])[0]
    if n > MAX_HEADER or n > size - 8:
        return f"its header claims {n} bytes, but the file has {size}"
    if head[8:9] != b"{":
        return "its header is not JSON"
    return None


def one_line(e: BaseException, limit: int = 300) -> str:
    """An exception's message as one line (torch's load_state_dict errors span several), cut at ``limit``."""
    text = "; ".join(line.strip() for line in str(e).splitlines() if line.strip()) or type(e).__name__
    return text if len(text) <= limit else text[:limit - 3] + "..."


def read_tensor_file(path: str | Path, key: str, kind: str) -> tuple[Any, dict[str, Tensor]]:
    """The JSON that ganforge stored under metadata ``key`` of the safetensors file ``path``, and its tensors.

    ``kind`` names what the file should be ("ganforge checkpoint") in the errors. Anything that is
    not such a file is a :class:`ConfigError` naming the file; nothing in it is ever executed.
    """
    path = Path(path)
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            head = f.read(9)
    except OSError as e:
        raise ConfigError(f"{path}: cannot read it ({e.strerror or e})") from None
    why = sniff(head, size)
    if why is not None:
        raise ConfigError(f"{path} is not a {kind} (not a safetensors file: {why})")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            raw = meta.get(key)
            # A foreign file's tensors are not read: the metadata already says it is not ours.
            tensors = {k: f.get_tensor(k) for k in f.keys()} if raw is not None else {}
    except Exception as e:  # safetensors' own parse errors (SafetensorError and friends): a damaged file
        raise ConfigError(f"{path} is not a {kind} (not a safetensors file: {one_line(e)})") from None
    if raw is None:
        raise ConfigError(f"{path} is not a {kind} (a safetensors file without ganforge's metadata)")
    try:
        return json.loads(raw), tensors
    except (ValueError, RecursionError) as e:  # JSONDecodeError is a ValueError; absurd nesting recurses
        raise ConfigError(f"{path}: a {kind} with corrupted metadata ({one_line(e)})") from None
