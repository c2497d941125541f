"""The resolved config as commented YAML: what ``ganforge presets NAME`` and ``train --print-config`` print.

Comments come from two places, so the page explains itself: the preset files (the header block of
each file in the ``base:`` chain, and a comment beside a key in block style), and the comment beside
each field in :mod:`ganforge.config`, which is where the settings are documented. A value that differs
from ganforge's default says so, so one sees at a glance what a preset changes.
"""
from __future__ import annotations

import ast
import dataclasses
import functools
import inspect
import io
import json
import re
import tokenize
import typing
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from ganforge import config as _config

_KEY = re.compile(r"^(\s*)([A-Za-z_][\w-]*):(.*)$")


@functools.cache
def field_comments() -> dict[str, str]:
    """``{"train.steps": "generator updates", ...}``: the comment beside each field in config.py."""
    source = inspect.getsource(_config)
    by_line = {tok.start[0]: tok.string.lstrip("#").strip()
               for tok in tokenize.generate_tokens(io.StringIO(source).readline) if tok.type == tokenize.COMMENT}
    per_class: dict[str, dict[str, str]] = {}
    for node in ast.parse(source).body:
        if isinstance(node, ast.ClassDef):
            per_class[node.name] = {
                stmt.target.id: by_line[stmt.lineno] for stmt in node.body
                if isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name) and stmt.lineno in by_line}
    out: dict[str, str] = {}

    def walk(cls: type, prefix: str) -> None:
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            if dataclasses.is_dataclass(hints[f.name]):
                walk(hints[f.name], f"{prefix}{f.name}.")
            elif f.name in per_class.get(cls.__name__, {}):
                out[prefix + f.name] = per_class[cls.__name__][f.name]

    walk(_config.Config, "")
    return out


def _preset_text(name: str) -> tuple[str, Path | None]:
    path = Path(name)
    if path.suffix in (".yaml", ".yml"):
        return path.read_text(encoding="utf-8"), path
    return resources.files("ganforge.presets").joinpath(name + ".yaml").read_text(encoding="utf-8"), None


def _key_lines(text: str) -> list[tuple[int, str, str, str]]:
    """``(line index, dotted key, value text, trailing comment)`` of each ``key: value`` line in block style."""
    out, stack = [], []  # stack of (indent, key)
    for i, line in enumerate(text.splitlines()):
        m = _KEY.match(line)
        if not m or line.lstrip().startswith("#"):
            continue
        indent, key, rest = len(m.group(1)), m.group(2), m.group(3)
        while stack and stack[-1][0] >= indent:
            stack.pop()
        stack.append((indent, key))
        value, comment = rest, ""
        if " #" in rest and not any(q in rest.split(" #", 1)[0] for q in "'\""):
            value, comment = rest.split(" #", 1)
        out.append((i, ".".join(k for _, k in stack), value.strip(), comment.strip()))
    return out


def preset_comments(name: str) -> tuple[list[str], dict[str, str]]:
    """The header comment blocks of a preset and of its ``base:`` chain (base first), and the
    comments beside its keys (a key's own file wins over its base's)."""
    headers: list[str] = []
    keys: dict[str, str] = {}
    seen: set[str] = set()
    while name and name not in seen:
        seen.add(name)
        text, path = _preset_text(name)
        lines = text.splitlines()
        head = []
        for line in lines:
            if not line.startswith("#"):
                break
            head.append(line)
        if head:
            headers.insert(0, "\n".join([f"# --- {name} ---", *head]))
        for _, key, _, comment in _key_lines(text):
            if comment:
                keys.setdefault(key, comment)
        base = (yaml.safe_load(text) or {}).get("base")
        if base and str(base).endswith((".yaml", ".yml")) and path is not None:
            base = str(path.parent / base)
        name = base
    return headers, keys


class _Dumper(yaml.SafeDumper):
    """Sections in block style (one key per line, room for its comment), lists of plain values inline."""


def _represent_list(dumper: yaml.SafeDumper, value: list[Any]) -> yaml.Node:
    inline = all(not isinstance(v, (list, dict)) for v in value)
    return dumper.represent_sequence("tag:yaml.org,2002:seq", value, flow_style=inline)


_Dumper.add_representer(list, _represent_list)


def commented_yaml(cfg: _config.Config, preset: str | None = None,
                   overrides: list[str] | None = None) -> str:
    """``cfg`` as YAML that :func:`ganforge.config.load_yaml` reads back, with comments: the preset's
    headers, what each setting means, and ``(default: X)`` where the value is not ganforge's default."""
    data = _config.to_dict(cfg)
    headers, key_notes = preset_comments(preset) if preset else ([], {})
    defaults = _config.flatten(_config.to_dict(_config.Config()))
    notes = field_comments()
    # No wrapping: a comment after the first line of a wrapped plain scalar would end the scalar there.
    body = yaml.dump(data, Dumper=_Dumper, sort_keys=False, width=1 << 30)
    lines = body.splitlines()
    flat = _config.flatten(data)
    for i, key, _, _ in _key_lines(body):
        parts = [key_notes.get(key) or notes.get(key, "")]
        changed = key in flat and key in defaults and flat[key] != defaults[key]
        if changed and key.split(".")[0] not in ("data", "preset", "description"):  # no default to differ from
            parts.append(f"(default: {json.dumps(defaults[key])})")
        text = " ".join(p for p in parts if p)
        if text:
            lines[i] = f"{lines[i]}  # {text}"
    top = ["# The resolved config: " + (f"preset {preset}" if preset else "ganforge's defaults")
           + (f" with {' '.join('--set ' + o for o in overrides)}" if overrides else "")
           + " over ganforge's defaults.",
           "# Every key can be changed with --set KEY=VALUE; this text is a valid config file (ganforge train FILE)."]
    return "\n".join(top + headers + lines) + "\n"
