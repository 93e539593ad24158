"""The config schema's copy of library names matches the installed libraries, and needs none of them."""

from __future__ import annotations

import json
import subprocess
import sys

from dreem_trainer.introspect import LIBRARY_NAMES_FILE, collect_library_names


def test_library_names_file_matches_installed_libraries() -> None:
    stored = json.loads(LIBRARY_NAMES_FILE.read_text())
    current = collect_library_names()
    assert stored == current, "library names drifted from the installed libraries: run `make library-names`"


def test_loading_a_config_imports_no_training_or_operator_stack() -> None:
    code = (
        "import sys; from dreem_trainer.config import load_config; from dreem_trainer.cli import app\n"
        "cfg = load_config(None)\n"
        "heavy = sorted(m for m in ('torch', 'lightning', 'kopf', 'timm', 'albumentations') if m in sys.modules)\n"
        "print(heavy)"
    )
    output = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert output.strip() == "[]"
