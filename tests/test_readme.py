"""The README's examples: what a new user copies must work with what the package installs."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def sections(text: str) -> dict[str, str]:
    """The README's text by heading (any level)."""
    parts = re.split(r"^#+ (.+)$", text, flags=re.MULTILINE)
    return dict(zip(parts[1::2], parts[2::2]))


def test_only_train_your_own_uses_the_demo_model() -> None:
    """Examples outside "Train your own" use the installed default model, not a run that may not exist."""
    using_demo = [heading for heading, body in sections(README.read_text()).items() if "runs/demo/best.pt" in body]
    assert using_demo == ["Train your own"]

