"""Start-up to the first training step does no work twice: each clip's frames are decoded once, and the
imports the first step does not need are not made. (Its duration is a figure: bench/startup.py.)"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import pytest
from sleap_io.io.video_reading import MediaVideo, VideoBackend

from dreem_trainer.data.clip import Clip
from dreem_trainer.training.run import run_training
from tests.conftest import REPO_ROOT
from tests.trainer_helpers import TWO_FLIES_MP4, tiny_config, tiny_raw

pytestmark = pytest.mark.slow


class Decodes:
    """Counts the frames sleap-io's media backend decodes, per (file, frame index), by wrapping its reads.

    The frame sleap-io decodes to learn a video's frame size and colour (`read_test_frame`) is counted
    apart: it is a probe of the file, not a frame of a clip.
    """

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.clip_frames: Counter[tuple[str, int]] = Counter()
        self.test_frames: Counter[str] = Counter()
        self._probing = False
        read_frame, read_frames, read_test_frame = (
            MediaVideo._read_frame,
            MediaVideo._read_frames,
            VideoBackend.read_test_frame,
        )

        def counted_read_frame(backend: MediaVideo, index: int) -> Any:
            self._count(backend, [index])
            return read_frame(backend, index)

        def counted_read_frames(backend: MediaVideo, indices: list[int]) -> Any:
            self._count(backend, list(indices))
            return read_frames(backend, indices)

        def counted_read_test_frame(backend: VideoBackend) -> Any:
            self.test_frames[str(backend.filename)] += 1
            self._probing = True
            try:
                return read_test_frame(backend)
            finally:
                self._probing = False

        monkeypatch.setattr(MediaVideo, "_read_frame", counted_read_frame)
        monkeypatch.setattr(MediaVideo, "_read_frames", counted_read_frames)
        monkeypatch.setattr(VideoBackend, "read_test_frame", counted_read_test_frame)

    def _count(self, backend: MediaVideo, indices: list[int]) -> None:
        if not self._probing:
            self.clip_frames.update((str(backend.filename), index) for index in indices)


class FirstStep(pl.Callback):
    """What had been decoded when the first training step began, and that step's clips."""

    def __init__(self, decodes: Decodes) -> None:
        self.decodes = decodes
        self.decoded: Counter[tuple[str, int]] | None = None
        self.clips: list[Clip] = []

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, _: int) -> None:
        if self.decoded is None:
            self.decoded = Counter(self.decodes.clip_frames)
            self.clips = list(batch)


def test_each_clip_is_decoded_once_before_the_first_step(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Training and validation name the same video, as in the demo: neither its labels nor its frames are
    # read a second time for the validation split before training starts.
    decodes = Decodes(monkeypatch)
    first = FirstStep(decodes)
    run_training(tiny_config(tmp_path), callbacks=[first])
    assert first.decoded is not None and first.clips
    first_batch = Counter((TWO_FLIES_MP4, int(index)) for clip in first.clips for index in clip.frame_indices)
    assert first_batch  # the wrapping saw the real reads
    assert first.decoded == first_batch  # the first batch's frames, each once, and nothing else


FIRST_STEP_IMPORTS = """
import json, os, sys
from pathlib import Path
import lightning.pytorch as pl
from dreem_trainer.config import validate
from dreem_trainer.training.run import run_training

class Report(pl.Callback):
    def on_train_batch_start(self, *args):
        imported = sorted(name for name in ("albumentations", "wandb") if name in sys.modules)
        import wandb  # still importable, for the W&B logger
        print(json.dumps({"imported": imported, "wandb": wandb.__name__}), flush=True)
        os._exit(0)

run_training(validate(json.loads(sys.argv[1])), callbacks=[Report()])
"""


def test_first_step_imports_neither_albumentations_nor_wandb(tmp_path: Path) -> None:
    # With augmentations off (tiny_raw), albumentations has nothing to do; timm's optional wandb hook is
    # skipped. Both are installed, so nothing else keeps them out.
    assert all(importlib.util.find_spec(name) is not None for name in ("albumentations", "wandb"))
    raw = tiny_raw(tmp_path)
    result = subprocess.run(
        [sys.executable, "-c", FIRST_STEP_IMPORTS, json.dumps(raw)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=os.environ | {"PYTHONPATH": f"{REPO_ROOT / 'trainer_image'}:{REPO_ROOT}", "WANDB_MODE": "disabled"},
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads(result.stdout.strip().splitlines()[-1]) == {"imported": [], "wandb": "wandb"}
