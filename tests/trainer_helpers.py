"""Small, fast training configurations on the bundled two-fly clip, for tests."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from dreem_trainer.config import DreemConfig, validate
from dreem_trainer.config.loader import deep_merge
from tests.conftest import DEMO_DATA

if TYPE_CHECKING:  # tracking's modules import torch, which the operator's tests of these configs do not need
    import numpy.typing as npt

    from dreem_trainer.inference.device import InferenceDevice
    from dreem_trainer.models.gtr import GlobalTrackingTransformer

TWO_FLIES_SLP = str(DEMO_DATA / "two_flies.slp")
TWO_FLIES_MP4 = str(DEMO_DATA / "two_flies.mp4")


def tiny_raw(tmp_path: Path, **sections: Any) -> dict[str, Any]:
    """A config that trains in seconds: a 0.4M-parameter backbone, 32-pixel crops, two 8-frame clips, and none of
    DREEM's default augmentations (random blur and rotation would make the tests' losses and statistics noisy)."""
    split = {
        "dir": {"path": str(DEMO_DATA), "labels_suffix": ".slp", "vid_suffix": ".mp4"},
        "anchors": "thorax",
        "crop_size": 32,
        "clip_length": 8,
        "n_chunks": 2,
    }
    base: dict[str, Any] = {
        "model": {"d_model": 32, "nhead": 2, "encoder_cfg": {"model_name": "test_resnet"}},
        "optimizer": {"lr": 0.001},
        "dataset": {"train_dataset": split | {"augmentations": None}, "val_dataset": dict(split)},
        "logging": {"logger_type": "CSVLogger", "save_dir": str(tmp_path / "logs"), "name": "tiny"},
        "checkpointing": {"dirpath": str(tmp_path / "models")},
        "early_stopping": None,
        "trainer": {"accelerator": "cpu", "devices": 1, "max_epochs": 1, "enable_model_summary": False},
    }
    return deep_merge(base, sections)


def tiny_config(tmp_path: Path, **sections: Any) -> DreemConfig:
    return validate(tiny_raw(tmp_path, **sections))


def track_two_flies_with_dreems_model(
    trainer: dict[str, Any],
) -> tuple[npt.NDArray[Any], GlobalTrackingTransformer, InferenceDevice]:
    """DREEM's own two_flies checkpoint tracking the bundled clip with `trainer` keys (accelerator, precision)
    and tracking's default loader workers: (its track per instance in frame order, the model, its placement)."""
    import numpy as np
    import torch

    from dreem_trainer.data.discovery import SourcePair
    from dreem_trainer.inference import run
    from tests.conftest import TEST_DATA

    checkpoint = TEST_DATA / "dreem" / "dreem_two_flies.ckpt"
    raw = run.tracking_base(checkpoint) | {
        "trainer": trainer,
        "tracker": {"window_size": 8, "iou": "mult"},
        "dataset": {"test_dataset": {"anchors": "thorax", "crop_size": 128, "clip_length": 32}},
    }
    config = validate(raw)
    model, placement = run.placed_model(config, checkpoint)
    pair = SourcePair(TWO_FLIES_SLP, TWO_FLIES_MP4, 128)
    with torch.inference_mode(), placement.autocast():
        (result,) = run.track_videos(model, config.dataset.test_split(), [pair], config)
    order = np.lexsort((result.index_in_frame, result.frame_indices))
    return np.asarray(result.predicted_tracks[order]), model, placement
