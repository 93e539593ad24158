"""`dreem --help` and `dreem config validate` answer without importing torch: seconds saved on every call."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import REPO_ROOT

PROBE = """
import sys
from dreem_trainer.cli import entry_point
sys.argv = ["dreem", *sys.argv[1:]]
try:
    entry_point()
except SystemExit as exit:
    code = exit.code
else:
    code = 0
heavy = sorted(name for name in ("torch", "lightning", "timm", "torchvision") if name in sys.modules)
print("HEAVY:" + ",".join(heavy))
sys.exit(code)
"""


def heavy_imports(*args: str) -> tuple[int, list[str]]:
    result = subprocess.run([sys.executable, "-c", PROBE, *args], capture_output=True, text=True, check=False)
    last = result.stdout.strip().splitlines()[-1]
    assert last.startswith("HEAVY:"), result.stdout + result.stderr
    return result.returncode, [name for name in last.removeprefix("HEAVY:").split(",") if name]


def test_dreem_help_imports_no_torch() -> None:
    code, heavy = heavy_imports("--help")
    assert code == 0
    assert heavy == []


def test_dreem_config_validate_imports_no_torch() -> None:
    code, heavy = heavy_imports("config", "validate", str(REPO_ROOT / "examples" / "demo" / "train.yaml"))
    assert code == 0
    assert heavy == []
