"""`dreem --help`, each command's --help and `dreem config validate`/`show` answer without importing the
training stack (torch, Lightning, timm) or the data readers (sleap-io, OpenCV, albumentations): seconds saved
on every call."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import REPO_ROOT

HEAVY = ("torch", "lightning", "timm", "torchvision", "sleap_io", "cv2", "albumentations", "wandb", "boto3")

PROBE = f"""
import sys
HEAVY = {HEAVY!r}
from dreem_trainer.cli import entry_point
sys.argv = ["dreem", *sys.argv[1:]]
try:
    entry_point()
except SystemExit as exit:
    code = exit.code
else:
    code = 0
heavy = sorted(name for name in HEAVY if name in sys.modules)
print("HEAVY:" + ",".join(heavy))
sys.exit(code)
"""


def heavy_imports(*args: str) -> tuple[int, list[str]]:
    result = subprocess.run([sys.executable, "-c", PROBE, *args], capture_output=True, text=True, check=False)
    last = result.stdout.strip().splitlines()[-1]
    assert last.startswith("HEAVY:"), result.stdout + result.stderr
    return result.returncode, [name for name in last.removeprefix("HEAVY:").split(",") if name]


@pytest.mark.parametrize("command", ["--help", "train --help", "track --help"])
def test_dreem_help_imports_nothing_heavy(command: str) -> None:
    code, heavy = heavy_imports(*command.split())
    assert code == 0
    assert heavy == []


@pytest.mark.parametrize("action", ["validate", "show"])
def test_dreem_config_imports_nothing_heavy(action: str) -> None:
    code, heavy = heavy_imports("config", action, str(REPO_ROOT / "examples" / "demo" / "train.yaml"))
    assert code == 0
    assert heavy == []
