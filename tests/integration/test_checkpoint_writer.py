"""The background checkpoint writer: training waits only for a copy of the state, and a process killed in the
middle of a write leaves the previous checkpoint whole under its name."""

from __future__ import annotations

import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from dreem_trainer.training.checkpoint_io import AtomicCheckpointIO
from tests.conftest import REPO_ROOT

pytestmark = pytest.mark.slow

WRITER = """
import sys, time
import torch
from dreem_trainer.training.checkpoint_io import AtomicCheckpointIO

path = sys.argv[1]
writer = AtomicCheckpointIO(background=True)
writer.save_checkpoint({"version": 1, "state_dict": {"w": torch.ones(4)}}, path)
writer.wait()
print("first written", flush=True)
# About 400 MB: long enough to be killed in the middle of writing it.
writer.save_checkpoint({"version": 2, "state_dict": {"w": torch.zeros(100_000_000)}}, path)
print("second queued", flush=True)
time.sleep(60)
"""


SECOND_STATE_BYTES = 100_000_000 * 4


def test_a_write_holds_the_state_of_when_it_was_asked(tmp_path: Path) -> None:
    writer = AtomicCheckpointIO(background=True)
    weights = torch.arange(1000, dtype=torch.float32)
    writer.save_checkpoint({"state_dict": {"w": weights}}, tmp_path / "a.ckpt")
    weights.mul_(-1)  # the next optimizer step, while the write may still be under way
    writer.link(str(tmp_path / "a.ckpt"), str(tmp_path / "last.ckpt"))
    writer.remove_checkpoint(tmp_path / "gone.ckpt")  # queued after the write: ordered, and absent is fine
    writer.teardown()
    saved = torch.load(tmp_path / "last.ckpt", weights_only=True)
    assert torch.equal(saved["state_dict"]["w"], torch.arange(1000, dtype=torch.float32))
    assert (tmp_path / "last.ckpt").is_symlink()


def test_killed_mid_write_loses_no_state(tmp_path: Path) -> None:
    path = tmp_path / "last.ckpt"
    system_temp = tmp_path / "system-temp"
    system_temp.mkdir()
    process = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(path)],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "TMPDIR": str(system_temp)},
    )
    try:
        assert process.stdout is not None
        assert process.stdout.readline().strip() == "first written"
        first_size = path.stat().st_size  # the poll stops if the second write is published unseen
        deadline = time.monotonic() + 60
        partial_sizes: list[int] = []
        while time.monotonic() < deadline and not partial_sizes and path.stat().st_size == first_size:
            partial_sizes = [p.stat().st_size for p in tmp_path.glob("*.tmp")]
            partial_sizes = [size for size in partial_sizes if size > 0]
            time.sleep(0.005)
        # The write streams into the .tmp file and syncs it before the rename, which takes long enough for
        # the poll to see it part-written; a file that appears there whole was staged somewhere else first.
        assert partial_sizes, "the second write was never seen in its .tmp file beside the target"
        assert partial_sizes[0] < SECOND_STATE_BYTES, "the .tmp file appeared whole, not written in place"
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        process.kill()
    # The write streams into the .tmp file beside the target: nothing is staged in the system's temporary folder
    # (a pod's /tmp may be small), where a kill would leave it behind.
    assert list(system_temp.iterdir()) == []
    # Killed while the .tmp file was being written (it is left behind) the name still holds the first
    # checkpoint, whole; in the rare run where the write had just finished, the second, whole.
    interrupted = any(tmp_path.glob("*.tmp"))
    saved = torch.load(path, weights_only=True)
    expected = torch.ones(4) if interrupted else torch.zeros(100_000_000)
    assert saved["version"] == (1 if interrupted else 2)
    assert torch.equal(saved["state_dict"]["w"], expected)


@pytest.mark.parametrize("background", [False, True])
def test_a_failed_write_leaves_the_previous_checkpoint_and_no_partial_file(tmp_path: Path, background: bool) -> None:
    writer = AtomicCheckpointIO(background=background)
    path = tmp_path / "last.ckpt"
    writer.save_checkpoint({"version": 1}, path)
    writer.wait()

    def save_what_cannot_be_pickled() -> None:
        writer.save_checkpoint({"version": 2, "callback": lambda: None}, path)
        writer.wait()  # in the background the failure surfaces here

    with pytest.raises((AttributeError, TypeError, pickle.PicklingError)):
        save_what_cannot_be_pickled()
    writer.teardown()
    assert list(tmp_path.iterdir()) == [path]
    assert torch.load(path, weights_only=True) == {"version": 1}
