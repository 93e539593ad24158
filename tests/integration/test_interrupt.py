"""Ctrl-C during `dreem train` on a laptop: the run stops, keeps what it wrote, and says how to go on."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch
import yaml

from tests.conftest import dreem_executable
from tests.trainer_helpers import tiny_raw

pytestmark = pytest.mark.slow


def test_ctrl_c_exits_130_keeps_the_checkpoints_and_says_how_to_resume(tmp_path: Path) -> None:
    raw = tiny_raw(tmp_path, trainer={"max_epochs": 500})
    config = tmp_path / "train.yaml"
    config.write_text(yaml.safe_dump(raw))
    models = Path(raw["checkpointing"]["dirpath"])
    # A terminal's Ctrl-C: SIGINT to the whole foreground process group, with SIGINT's default disposition
    # (a shell's background job would have inherited it ignored).
    training = subprocess.Popen(
        [dreem_executable(), "train", "--config", str(config)],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        deadline = time.monotonic() + 300
        while not (models / "last.ckpt").exists():
            assert training.poll() is None, training.communicate()[0][-3000:]
            assert time.monotonic() < deadline, "no checkpoint was written"
            time.sleep(0.2)
        os.killpg(training.pid, signal.SIGINT)
        output, _ = training.communicate(timeout=120)
    finally:
        if training.poll() is None:
            os.killpg(training.pid, signal.SIGKILL)

    assert training.returncode == 128 + signal.SIGINT, output[-3000:]
    assert f"its checkpoints are in {models}" in output
    assert "run the same command with --resume auto" in output
    assert "Traceback" not in output
    # Lightning's notices that say nothing about this run are left out (config.yaml is in the folder already).
    assert "exists and is not empty" not in output and "Tip" not in output
    # What it wrote is whole: the last checkpoint loads and is the state of a finished epoch.
    last = torch.load(models / "last.ckpt", map_location="cpu", weights_only=False)
    assert last["epoch"] < 500 and last["global_step"] > 0
    assert not list(models.glob("*.tmp"))
