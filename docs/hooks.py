"""MkDocs hooks: the command-line, config and preset references are generated from the code at each build.

A page holding ``<!-- generated: cli -->`` gets every ``ganforge`` command with its arguments, read
from the argument parser; ``<!-- generated: config -->`` every config key with its type, default and
the comment beside it in ``ganforge/config.py``; ``<!-- generated: presets -->`` the presets;
``<!-- generated: readme -->`` the README (the site's front page), its links made relative to docs/.
"""
from __future__ import annotations

import argparse
import dataclasses
import typing
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def _cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _arguments(parser: argparse.ArgumentParser) -> str:
    rows = []
    for action in parser._actions:  # argparse keeps no public list of a parser's arguments
        if isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)):
            continue
        name = ", ".join(f"`{o}`" for o in action.option_strings) or f"`{action.dest}`"
        default = "" if action.default in (None, argparse.SUPPRESS, False) or not action.option_strings \
            else f"`{action.default}`"
        rows.append(f"| {name} | {_cell(action.help or '')} | {default} |")
    if not rows:
        return ""
    return "| argument | what it does | default |\n|---|---|---|\n" + "\n".join(rows) + "\n"


def cli_reference() -> str:
    from ganforge.cli import build_parser

    def walk(parser: argparse.ArgumentParser, path: str, level: int) -> list[str]:
        out = [f"{'#' * level} `{path}`\n", f"{_cell(parser.description)}\n" if parser.description else "",
               f"```text\n{parser.format_usage().strip()}\n```\n", _arguments(parser)]
        for sub in (a for a in parser._actions if isinstance(a, argparse._SubParsersAction)):
            helps = {c.dest: c.help for c in sub._choices_actions}
            for name, child in sub.choices.items():
                if helps.get(name) and not child.description:
                    child.description = helps[name]
                out += walk(child, f"{path} {name}", min(level + 1, 4))
        return out

    return "\n".join(x for x in walk(build_parser(), "ganforge", 2) if x)


def config_reference() -> str:
    from ganforge import config
    from ganforge.config_doc import field_comments

    comments = field_comments()
    out: list[str] = []

    def walk(cls: type, prefix: str, obj: Any) -> None:
        hints = typing.get_type_hints(cls)
        rows = []
        for f in dataclasses.fields(cls):
            tp, value = hints[f.name], getattr(obj, f.name)
            if dataclasses.is_dataclass(tp):
                continue
            name = getattr(tp, "__name__", str(tp)).replace("typing.", "")
            shown = f'"{value}"' if isinstance(value, str) else value
            rows.append(f"| `{prefix}{f.name}` | `{_cell(name)}` | `{_cell(shown)}` | "
                        f"{_cell(comments.get(prefix + f.name, ''))} |")
        if rows:
            out.append(f"## `{prefix.rstrip('.') or 'top level'}`\n\n"
                       "| key | type | default | what it sets |\n|---|---|---|---|\n" + "\n".join(rows) + "\n")
        for f in dataclasses.fields(cls):
            if dataclasses.is_dataclass(hints[f.name]):
                walk(hints[f.name], f"{prefix}{f.name}.", getattr(obj, f.name))

    walk(config.Config, "", config.Config())
    return "\n".join(out)


def presets_reference() -> str:
    from ganforge.config import load_yaml, preset_names

    rows = [f"| `{n}` | {_cell(load_yaml(n).get('description', ''))} |" for n in preset_names()]
    return "| preset | what it is |\n|---|---|\n" + "\n".join(rows) + "\n"


def readme() -> str:
    return (ROOT / "README.md").read_text(encoding="utf-8").replace("](docs/", "](")


GENERATED = {"cli": cli_reference, "config": config_reference, "presets": presets_reference, "readme": readme}


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    for key, make in GENERATED.items():
        marker = f"<!-- generated: {key} -->"
        if marker in markdown:
            markdown = markdown.replace(marker, make())
    return markdown
