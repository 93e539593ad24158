"""The gate between checkpoint writes and the SIGTERM upload."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import torch

from dreem_trainer.training.termination import TERMINATED_EXIT, CheckpointGate
from tests.conftest import REPO_ROOT


def test_closing_waits_for_the_write_in_progress_and_stops_later_ones() -> None:
    gate = CheckpointGate()
    written: list[str] = []
    inside = threading.Event()

    def write(name: str, hold_s: float) -> None:
        with gate.open() as allowed:
            inside.set()
            if allowed:
                time.sleep(hold_s)
                written.append(name)

    first = threading.Thread(target=write, args=("epoch=3", 0.3))
    first.start()
    inside.wait()
    gate.close(timeout_s=5.0)
    assert written == ["epoch=3"]  # the upload that follows sees the finished file

    trying = threading.Event()

    def write_later() -> None:
        trying.set()
        write("epoch=4", 0.0)

    later = threading.Thread(target=write_later, daemon=True)
    later.start()
    trying.wait()  # it has reached the gate: being still alive below means it is held there
    later.join(timeout=0.5)
    assert later.is_alive() and written == ["epoch=3"]  # held at the gate until the process exits
    first.join()


def test_a_write_stuck_past_the_wait_is_not_waited_for_and_nothing_after_it_is_written() -> None:
    gate = CheckpointGate()
    release = threading.Event()
    entered = threading.Event()
    outcome: list[bool] = []

    def stuck_write() -> None:  # a DDP save waiting on a peer that is gone
        with gate.open() as allowed:
            entered.set()
            outcome.append(allowed)
            release.wait()

    writer = threading.Thread(target=stuck_write)
    writer.start()
    entered.wait()
    gate.close(timeout_s=0.2)
    assert writer.is_alive() and outcome == [True]  # close() gave up on the stuck write, which goes on
    release.set()
    writer.join()
    with gate.open() as allowed:
        outcome.append(allowed)
    assert outcome == [True, False]


SIGTERM_DURING_A_BACKGROUND_WRITE = """
import os, sys, torch
from dreem_trainer.training.checkpoint_io import AtomicCheckpointIO
from dreem_trainer.training.termination import CheckpointGate, GracefulTermination
folder = sys.argv[1]
gate = CheckpointGate()
writer = AtomicCheckpointIO(gate, background=True)

def flush():  # what the SIGTERM upload finds on disk
    found = " ".join(sorted(os.listdir(folder)))
    with open(os.path.join(folder, "uploaded.txt"), "w") as listing:
        listing.write(found)

writer.save_checkpoint({"state_dict": {"w": torch.ones(20_000_000)}, "epoch": 7}, os.path.join(folder, "last.ckpt"))
GracefulTermination(gate, flush, writes=writer.settle)._stop()  # SIGTERM while it is being written
"""


def test_sigterm_during_a_background_write_uploads_that_checkpoint(tmp_path: Path) -> None:
    """The write takes the gate only to rename its finished file: shut at once, the gate kept an 80 MB
    checkpoint a .tmp file that the upload skips, and the restart lost an epoch."""
    result = subprocess.run(
        [sys.executable, "-c", SIGTERM_DURING_A_BACKGROUND_WRITE, str(tmp_path)],
        capture_output=True,
        text=True,
        env=os.environ | {"PYTHONPATH": f"{REPO_ROOT / 'trainer_image'}"},
        timeout=120,
        check=False,
    )
    assert result.returncode == TERMINATED_EXIT, result.stderr
    assert (tmp_path / "uploaded.txt").read_text() == "last.ckpt"
    assert torch.load(tmp_path / "last.ckpt")["epoch"] == 7
