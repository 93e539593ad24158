"""The tracker's assignment rules and the association scores, on cases small enough to count by hand."""

from __future__ import annotations

import numpy as np
import torch

from dreem_trainer.config.model import ModelConfig
from dreem_trainer.config.run import TrackerConfig
from dreem_trainer.models.gtr import GlobalTrackingTransformer
from dreem_trainer.tracking.association import box_iou, spatial_terms, track_scores
from dreem_trainer.tracking.tracker import Tracker


def test_box_iou() -> None:
    a = torch.tensor([[0.0, 0.0, 10.0, 10.0]])
    b = torch.tensor([[0.0, 5.0, 10.0, 15.0], [20.0, 20.0, 30.0, 30.0]])
    assert torch.allclose(box_iou(a, b), torch.tensor([[50 / 150, 0.0]]))


def tracker(**keys: object) -> Tracker:
    torch.manual_seed(0)
    model = GlobalTrackingTransformer(
        ModelConfig.model_validate({"d_model": 16, "encoder_cfg": {"model_name": "test_resnet"}})
    ).eval()
    return Tracker(model, TrackerConfig.model_validate(keys))


def test_hungarian_assignment_and_new_tracks() -> None:
    t = tracker(overlap_thresh=0.3)
    t.next_track = 2
    scores = np.array([[0.1, 0.9], [0.8, 0.2], [0.05, 0.1]])
    ids = t._assign(scores, np.array([0, 1]))
    assert ids.tolist() == [1, 0, 2]  # the third is under the threshold: a new track


def test_max_tracks_caps_new_tracks() -> None:
    t = tracker(overlap_thresh=0.9, max_tracks=2)
    t.next_track = 2
    ids = t._assign(np.array([[0.1, 0.2]]), np.array([0, 1]))
    assert ids.tolist() == [1]


def test_center_distance_forbids_far_matches_and_iou_multiplies() -> None:
    config = TrackerConfig.model_validate({"max_center_dist": 50.0, "iou": "mult"})
    boxes = torch.tensor([[[0.0, 0.0, 10.0, 10.0]]])
    last = torch.tensor([[[0.0, 0.0, 10.0, 10.0]], [[500.0, 500.0, 510.0, 510.0]]])
    scores = spatial_terms(torch.tensor([[0.6, 0.9]]), boxes, last, config)
    assert scores[0, 0] == 0.6 and scores[0, 1] == float("-inf")


def test_window_size_bounds_the_memory() -> None:
    t = tracker(window_size=3)
    features = torch.zeros(2, 16)
    boxes = torch.tensor([[[0.0, 0.0, 10.0, 10.0]], [[100.0, 100.0, 110.0, 110.0]]])
    for frame in range(6):
        ids = t.step(frame, features, boxes, torch.tensor([1024, 1024]))
        assert len(ids) == 2
    assert len(t.window) == 3 and [f.frame_idx for f in t.window] == [3, 4, 5]


def test_decay_time_discounts_older_frames() -> None:
    # Track 4 matched two old instances, track 9 one recent one.
    probabilities = torch.tensor([[0.3, 0.3, 0.4]])
    window_ids = torch.tensor([4, 4, 9])
    ages = torch.tensor([6, 5, 1])
    tracks, plain = track_scores(probabilities, window_ids, ages, None)
    _, decayed = track_scores(probabilities, window_ids, ages, 0.5)
    assert tracks.tolist() == [4, 9]
    assert int(plain.argmax()) == 0 and int(decayed.argmax()) == 1
    assert torch.allclose(decayed, torch.tensor([[0.3 * 0.5**6 + 0.3 * 0.5**5, 0.4 * 0.5]]))
