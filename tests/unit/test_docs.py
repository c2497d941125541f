"""The guides' examples (docs/guide/*.md) run as written."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

GUIDES = Path(__file__).resolve().parents[2] / "docs" / "guide"


def blocks(page: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", (GUIDES / page).read_text(), re.S)


def test_the_kinds_guide_defines_a_kind_that_evaluates_during_training(capsys, monkeypatch):
    from ganforge.kinds import KINDS

    (code,) = blocks("kinds.md")
    namespace: dict = {}
    try:
        exec(compile(code, "docs/guide/kinds.md", "exec"), namespace)
    finally:  # the example registers a data set and a kind: leave the registries as they were
        from ganforge.data import DATASETS
        from ganforge.kinds.base import _ORDER

        DATASETS._items.pop("sines", None)
        KINDS._items.pop("sines", None)
        if "sines" in _ORDER:
            _ORDER.remove("sines")
    summary = namespace["gan"].summary
    assert summary["kind"] == "sines" and 0 <= summary["spectral_error"] < 2
    assert re.search(r"spectral error \d\.\d{3}", capsys.readouterr().out)


# Pages whose Python blocks no test runs yet (the list only shrinks: a page leaves it with its test).
UNTESTED = {"python.md", "evaluation.md"}


@pytest.mark.parametrize("page", sorted(p.name for p in GUIDES.glob("*.md")))
def test_every_guide_block_is_run_by_a_test(page):
    """A page's Python blocks are run by a test here or in test_readme.py, which names the page."""
    named = f'blocks("{page}")' in Path(__file__).read_text() or \
        f'"{page}"' in (Path(__file__).parent / "test_readme.py").read_text()
    if page in UNTESTED:
        assert blocks(page) and not named, f"{page}: tested now, or without Python blocks: remove it from UNTESTED"
    else:
        assert not blocks(page) or named, f"{page} has Python blocks that no test runs"
