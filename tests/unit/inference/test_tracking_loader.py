"""Tracking decodes and crops in loader workers while the model runs; the tracks are those of decoding in the
tracking process itself."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from dreem_trainer.config import validate
from dreem_trainer.data.discovery import SourcePair
from dreem_trainer.inference.run import DEFAULT_TRACKING_WORKERS, track_videos, tracking_base, tracking_workers
from dreem_trainer.models.gtr import GlobalTrackingTransformer
from tests.trainer_helpers import TWO_FLIES_MP4, TWO_FLIES_SLP, tiny_config, tiny_raw


def test_loader_workers_track_as_the_tracking_process_does(tmp_path: Path) -> None:
    config = tiny_config(tmp_path)
    torch.manual_seed(0)
    model = GlobalTrackingTransformer(config.model).eval()
    pairs = [SourcePair(TWO_FLIES_SLP, TWO_FLIES_MP4, 32)]
    split = config.dataset.test_split().model_copy(update={"clip_length": 4, "n_chunks": 6})
    with torch.inference_mode():
        (alone,) = track_videos(model, split, pairs, config, num_workers=0)
        (loaded,) = track_videos(model, split, pairs, config, num_workers=2)  # two: clips still come in order
    assert len(np.unique(alone.frame_indices)) == 24
    assert np.array_equal(alone.frame_indices, loaded.frame_indices)
    assert np.array_equal(alone.index_in_frame, loaded.index_in_frame)
    assert np.array_equal(alone.predicted_tracks, loaded.predicted_tracks)
    assert np.array_equal(alone.tracking_scores, loaded.tracking_scores)
    assert alone.review_frames == loaded.review_frames
    assert (alone.tracking_scores > -1).any()  # frames after the first were associated, not only numbered


CPU, CUDA = torch.device("cpu"), torch.device("cuda", 0)


def test_tracking_workers_default_by_device_and_configured(tmp_path: Path) -> None:
    # A worker overlaps decoding with the GPU's work; on a CPU it would take cores from the model.
    assert tracking_workers(tiny_config(tmp_path), CUDA) == DEFAULT_TRACKING_WORKERS["cuda"] == 1
    assert tracking_workers(tiny_config(tmp_path), CPU) == 0
    for workers in (0, 3):
        configured = tiny_config(tmp_path, dataloader={"test_dataloader": {"num_workers": workers}})
        assert tracking_workers(configured, CPU) == tracking_workers(configured, CUDA) == workers


def test_a_checkpoint_s_loaders_do_not_pick_tracking_s_workers(tmp_path: Path) -> None:
    """Our checkpoints store every key, defaults included: the training machine's num_workers 0 must not
    become tracking's choice."""
    from dreem_trainer.models.checkpoint import LAYOUT, LAYOUT_KEY, read_checkpoint

    trained = validate(tiny_raw(tmp_path, dataloader={"test_dataloader": {"num_workers": 0}}))
    checkpoint = tmp_path / "stored.ckpt"
    stored = {"hyper_parameters": {"config": trained.model_dump(mode="json")}, "state_dict": {}, LAYOUT_KEY: LAYOUT}
    torch.save(stored, checkpoint)  # as DreemModule stores its configuration
    assert read_checkpoint(checkpoint).config["dataloader"]["test_dataloader"]["num_workers"] == 0
    assert tracking_workers(validate(tracking_base(checkpoint)), CUDA) == DEFAULT_TRACKING_WORKERS["cuda"]
