"""Session-wide fixtures shared by several test files."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tiny_packs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Synthetic pairs and conversations packed by the real `loom pack` (tiny preset)."""
    from fixtures.training import make_packs

    return make_packs(tmp_path_factory.mktemp("tiny-packs"))
