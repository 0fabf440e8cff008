"""Every hook is documented in docs/hooks.md and implemented by a test plugin."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from ort_core import hookspecs

ROOT = Path(__file__).resolve().parent.parent
HOOKS = sorted(name for name in dir(hookspecs) if hasattr(getattr(hookspecs, name), "ort_spec"))
TEST_SOURCES = [
    path.read_text()
    for folder in [ROOT / "tests", *ROOT.glob("plugins/*/tests")]
    for path in folder.rglob("*.py")
    if path.name != Path(__file__).name
]


def test_the_contract_declares_the_four_original_hooks():
    assert {"launch_language", "before_event", "after_response", "on_timeout"} <= set(HOOKS)


@pytest.mark.parametrize("hook", HOOKS)
def test_hook_is_documented(hook):
    docs = (ROOT / "docs" / "hooks.md").read_text()
    section = re.search(rf"^### `{hook}`\n(.*?)(?=^### |\Z)", docs, re.S | re.M)
    assert section, f"docs/hooks.md has no '### `{hook}`' section"
    for field in ("**Arguments:**", "**Returns:**", "**Fires:**"):
        assert field in section.group(1), f"docs/hooks.md: {hook} lacks {field}"


@pytest.mark.parametrize("hook", HOOKS)
def test_hook_has_a_test_implementing_it(hook):
    pattern = re.compile(rf"def {hook}\(")
    assert any(pattern.search(source) for source in TEST_SOURCES), (
        f"no test implements the {hook} hook"
    )
