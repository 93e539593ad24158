"""Associating a frame reuses what earlier frames computed of the window's instances and nothing else: the
logits and tracks equal those of recomputing every embedding of the window from its boxes.

DREEM's own checkpoint on the first 16 frames of two_flies (32 crops of 128 pixels), so the reading that must
hold exactly is DREEM's.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache

import torch

from dreem_trainer.config.data import DatasetSplitConfig
from dreem_trainer.config.run import TrackerConfig
from dreem_trainer.data.clip import Clip
from dreem_trainer.data.dataset import ClipDataset
from dreem_trainer.models.checkpoint import load_model
from dreem_trainer.models.gtr import GlobalTrackingTransformer
from dreem_trainer.tracking.tracker import Detections, Tracker, model_associate
from dreem_trainer.tracking.window import WindowInstance
from tests.conftest import DEMO_DATA, TEST_DATA

TRACKER = TrackerConfig.model_validate({"window_size": 8, "iou": "mult"})


@cache
def model() -> GlobalTrackingTransformer:
    return load_model(TEST_DATA / "dreem" / "dreem_two_flies.ckpt").eval()


@cache
def clip() -> Clip:
    split = {"dir": {"path": str(DEMO_DATA)}, "anchors": "thorax", "crop_size": 128, "clip_length": 16}
    return ClipDataset(DatasetSplitConfig.model_validate(split | {"mode": "test"}), frame_cache_mb=0)[0]


def test_each_frame_s_logits_equal_a_full_recomputation() -> None:
    network, frames = model(), clip()
    associate = model_associate(network)
    compared = 0
    embedded: list[int] = []

    def checked(window: Sequence[WindowInstance], query: Detections) -> torch.Tensor:
        nonlocal compared
        # Every window instance brings the positional embedding computed when its frame was the query.
        assert all(kept.position is not None for kept in window) and query.positions is not None
        logits = associate(window, query)
        counted = len(embedded)
        boxes = torch.cat([torch.stack([kept.box for kept in window]), query.boxes])
        frame_numbers = torch.tensor([kept.frame_idx for kept in window] + [query.frame_idx] * query.count)
        full = network.associate(
            torch.cat([torch.stack([kept.features for kept in window]), query.features]),
            boxes,
            frame_numbers - frame_numbers.min(),
            torch.tensor(query.image_size),
            query_index=torch.arange(len(window), len(window) + query.count),
        ).matrices[-1][:, : len(window)]
        del embedded[counted:]  # the recomputation's own embeddings are not the tracker's
        assert torch.equal(logits, full), query.frame_idx
        compared += 1
        return logits

    hook = network.transformer.pos_emb.register_forward_hook(  # type: ignore[union-attr]
        lambda _module, inputs, _output: embedded.append(len(inputs[0]))
    )
    tracker = Tracker.for_model(network, TRACKER)
    tracker.associate = checked
    with torch.inference_mode():
        features = network.visual_encoder(frames.crops)
        incremental = tracker.track_clip(frames, features)
        hook.remove()
        recomputing = Tracker(model_associate(network), TRACKER, single_detection_defect=True)
        full = recomputing.track_clip(frames, features)
    assert compared == frames.num_frames - 1
    # Each instance's positional embedding computed once, when its frame was the query.
    assert sum(embedded) == frames.num_instances
    assert torch.equal(incremental.tracks, full.tracks) and torch.equal(incremental.scores, full.scores)
    assert set(incremental.tracks.tolist()) == {0, 1}
