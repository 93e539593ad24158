"""Paths and helpers shared by every test."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED = REPO_ROOT.parent / "shared"
SPEC_DOCUMENT = SHARED / "spec" / "training-configuration.md"
DEMO_DATA = REPO_ROOT / "examples" / "demo" / "data"
TEST_DATA = Path(__file__).resolve().parent / "data"


@pytest.fixture
def write_yaml(tmp_path: Path):  # type: ignore[no-untyped-def]
    """Write a YAML text to a fresh file and return its path."""

    def write(text: str, name: str = "config.yaml") -> Path:
        path = tmp_path / name
        path.write_text(text)
        return path

    return write
