"""Shared test fixtures: the real data folder (skipped when absent) and quiet CPU settings."""

from pathlib import Path

import pytest
import torch

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"

torch.set_num_threads(2)


@pytest.fixture
def shared_data() -> Path:
    """``../shared/data``; the test is skipped where it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data not found at {SHARED_DATA}")
    return SHARED_DATA
