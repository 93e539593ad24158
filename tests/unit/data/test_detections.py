"""The detections a frame keeps before tracking, by DREEM's rules."""

from __future__ import annotations

import numpy as np

from dreem_trainer.data.detections import excess_detections, overlapping_duplicates


def test_excess_predictions_go_least_confident_first_and_labels_stay() -> None:
    assert excess_detections([0.9, 0.2, 1.0, 0.5], max_tracks=2) == {1, 3}
    assert excess_detections([1.0, 1.0, 1.0], max_tracks=1) == set()  # labelled instances are never dropped
    assert excess_detections([0.3, 0.3], max_tracks=1) == {0}
    assert excess_detections([0.1, 0.2], max_tracks=None) == set()


def box(x: float, y: float, size: float = 10.0) -> list[list[float]]:
    return [[y - size / 2, x - size / 2, y + size / 2, x + size / 2]]


def test_overlapping_duplicates_keep_the_better_posed_one() -> None:
    boxes = np.array([box(0, 0), box(1, 0), box(50, 50), box(52, 50)])
    # 0 and 1 overlap by 90%, 2 and 3 by 80%; 1 and 2 see more keypoints than their twins.
    assert overlapping_duplicates(boxes, [3, 5, 7, 7], max_overlap=0.5) == {0, 3}
    assert overlapping_duplicates(boxes, [3, 5, 7, 7], max_overlap=0.85) == {0}
    assert overlapping_duplicates(boxes, [3, 5, 7, 7], max_overlap=0) == set()  # 0: off
