"""What `dreem train` prints for a person to read."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from tests.conftest import dreem_executable
from tests.trainer_helpers import tiny_raw

pytestmark = pytest.mark.slow


def test_verbose_adds_dreems_lines_and_repeats_none(tmp_path: Path) -> None:
    config = tmp_path / "train.yaml"
    config.write_text(yaml.safe_dump(tiny_raw(tmp_path, dataset={"val_dataset": None})))
    command = [dreem_executable(), "train", "--config", str(config), "--verbose"]
    result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
    # Lightning's own line, once (it came a second time through the root logger).
    assert sum("GPU available:" in line for line in lines) == 1, lines
    # dreem's informational lines, which only --verbose shows, are there.
    assert any(line.startswith("data: train on 1 video (two_flies.mp4)") for line in lines), lines
    assert len(lines) == len(set(lines)), lines
