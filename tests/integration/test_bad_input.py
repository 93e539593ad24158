"""A user's usual mistakes end in one message naming the key, path or value, and exit 2: never a traceback."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import sleap_io as sio
import torch
from typer.testing import CliRunner

from dreem_trainer.cli import app
from dreem_trainer.config import ConfigError, load_config
from dreem_trainer.contract import EXIT_USER_ERROR, UserError
from dreem_trainer.data.sources import DataError
from dreem_trainer.storage.client import s3_client
from dreem_trainer.training.run import run_training
from tests.conftest import DEMO_DATA, TEST_DATA
from tests.trainer_helpers import TWO_FLIES_MP4, TWO_FLIES_SLP, tiny_config


def two_flies_edited(folder: Path, edit: Callable[[sio.Labels], None]) -> Path:
    """The bundled clip in `folder`, its labels changed by `edit`."""
    folder.mkdir()
    labels = sio.load_slp(TWO_FLIES_SLP, open_videos=False)
    edit(labels)
    sio.save_slp(labels, str(folder / "two_flies.slp"))
    shutil.copy(TWO_FLIES_MP4, folder / "two_flies.mp4")
    return folder


def test_a_slip_of_an_encoder_key_is_named_when_the_config_is_read() -> None:
    with pytest.raises(ConfigError, match=r"model\.encoder_cfg\.pretraind: unknown key; did you mean 'pretrained'"):
        load_config(overrides=["model.encoder_cfg.pretraind=false"])
    with pytest.raises(ConfigError, match=r"model\.encoder_cfg\.drop_rate: a number"):
        load_config(overrides=["model.encoder_cfg.drop_rate=high"])
    load_config(overrides=["model.encoder_cfg.drop_rate=0.1"])  # timm's own keys still pass


def test_an_encoder_key_the_backbone_does_not_take_is_named_before_training(tmp_path: Path) -> None:
    config = tiny_config(tmp_path, model={"encoder_cfg": {"zoom": 3}})
    with pytest.raises(
        ConfigError, match=r"model\.encoder_cfg\.zoom: timm model 'test_resnet' takes no argument 'zoom'"
    ):
        run_training(config)


@pytest.mark.parametrize(
    ("section", "key"),
    [
        ({"trainer": {"devices": 0}}, r"trainer: `Trainer\(devices=0\)` value is not a valid input"),
        ({"dataloader": {"train_dataloader": {"batch_size": 0}}}, r"batch_size: a whole number of clips"),
    ],
)
def test_values_lightning_or_torch_refuse_are_named(tmp_path: Path, section: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigError, match=key):
        run_training(tiny_config(tmp_path, **section))


def test_an_endpoint_that_is_not_a_url_is_named() -> None:
    storage = load_config(overrides=["storage.endpoint_url=not-a-url"]).storage
    with pytest.raises(UserError, match=r"storage\.endpoint_url: Invalid endpoint: not-a-url"):
        s3_client(storage)


def test_labels_without_identities_are_refused_before_training(tmp_path: Path) -> None:
    """They trained a whole epoch at loss 0, then failed on a val_idf1 never logged."""

    def untracked(labels: sio.Labels) -> None:
        for frame in labels.labeled_frames:
            for instance in frame.instances:
                instance.track = None
        labels.tracks = []

    data = two_flies_edited(tmp_path / "untracked", untracked)
    split = {"dir": {"path": str(data)}}
    config = tiny_config(tmp_path, dataset={"train_dataset": split, "val_dataset": split})
    with pytest.raises(DataError, match=r"dataset\.train_dataset: .*two_flies\.slp: no instance has a track"):
        run_training(config)


def test_a_checkpoint_whose_weights_do_not_fit_is_a_user_error(tmp_path: Path) -> None:
    checkpoint = torch.load(TEST_DATA / "dreem" / "dreem_two_flies.ckpt", map_location="cpu", weights_only=False)
    checkpoint["state_dict"].pop(next(iter(checkpoint["state_dict"])))
    cut = tmp_path / "cut.ckpt"
    torch.save(checkpoint, cut)
    result = CliRunner().invoke(
        app, ["track", str(DEMO_DATA), "--checkpoint", str(cut), "--output", str(tmp_path / "o")]
    )
    assert result.exit_code == EXIT_USER_ERROR, result.output
    assert "cut.ckpt: its weights do not fit the model" in result.output


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--fps", "nan", "--fps: a frame rate above 0"),
        ("--fps", "-5", "--fps: a frame rate above 0"),
        ("--crf", "52", "--crf: libx264's quality runs from 0 to 51, got 52"),
        ("--scale", "0", "--scale: expected a factor above 0 and at most 8, got 0"),
        ("--scale", "nan", "--scale: expected a factor above 0 and at most 8, got nan"),
        ("--preset", "quick", "--preset: not a libx264 preset"),
    ],
)
def test_render_options_out_of_range_are_named(tmp_path: Path, option: str, value: str, message: str) -> None:
    tracked = TEST_DATA / "dreem" / "two_flies.dreem_tracks.slp"
    out = tmp_path / "out.mp4"
    result = CliRunner().invoke(app, ["render", str(tracked), "--output", str(out), option, value])
    assert result.exit_code == EXIT_USER_ERROR and message in result.output, result.output
    assert not out.exists()


def test_a_crop_larger_than_the_frames_is_refused(tmp_path: Path) -> None:
    """crop_size 4096 on 1024-pixel frames used 22 GB until the kernel killed the run, without a word."""
    config = tiny_config(tmp_path, dataset={"train_dataset": {"crop_size": 4096}})
    with pytest.raises(DataError, match=r"crop_size: 4096 is larger than the 1024x1024 frames of .*two_flies\.mp4"):
        run_training(config)


def test_labels_of_another_video_are_refused(tmp_path: Path) -> None:
    """A 256x256 video paired with labels whose points lie beyond x 383: train and track cut crops of padding."""
    import cv2
    import numpy as np

    data = tmp_path / "small"
    data.mkdir()
    shutil.copy(TWO_FLIES_SLP, data / "two_flies.slp")
    writer = cv2.VideoWriter(str(data / "two_flies.mp4"), cv2.VideoWriter.fourcc(*"mp4v"), 25, (256, 256))
    for _ in range(4):
        writer.write(np.zeros((256, 256, 3), dtype=np.uint8))
    writer.release()
    config = tiny_config(tmp_path, dataset={"train_dataset": {"dir": {"path": str(data)}}})
    with pytest.raises(DataError, match=r"two_flies\.slp: 100% of its points lie outside the 256x256 frames of"):
        run_training(config)


def test_track_says_so_when_a_video_has_nothing_to_track(tmp_path: Path) -> None:
    def emptied(labels: sio.Labels) -> None:
        labels.labeled_frames = []

    data = two_flies_edited(tmp_path / "empty", emptied)
    checkpoint = TEST_DATA / "dreem" / "dreem_two_flies.ckpt"
    arguments = ["track", str(data), "--checkpoint", str(checkpoint), "--crop-size", "128", "--anchor", "thorax"]
    result = CliRunner().invoke(app, [*arguments, "--output", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    assert "two_flies.slp: no labelled frames with instances to track; nothing written" in result.output


def test_a_damaged_checkpoint_found_by_resume_auto_names_the_resume(tmp_path: Path) -> None:
    """It blamed model.ckpt_path, a key the user never set."""
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "last.ckpt").write_text("half a checkpoint")
    config = tiny_config(tmp_path, checkpointing={"resume": "auto"})
    with pytest.raises(ConfigError, match=r"checkpointing\.resume: .*last\.ckpt"):
        run_training(config)
