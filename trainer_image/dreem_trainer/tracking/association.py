"""Association scores: how strongly each new instance belongs to each track of the window.

Kept apart from the tracker's state so the scoring rules (decay over time, overlap of boxes) can be read
and checked on their own.
"""

from __future__ import annotations

import torch

from dreem_trainer.config.run import TrackerConfig


def box_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(n, 4), (m, 4) y1x1y2x2 -> (n, m) intersection over union."""
    top = torch.maximum(a[:, None, 0], b[None, :, 0])
    left = torch.maximum(a[:, None, 1], b[None, :, 1])
    bottom = torch.minimum(a[:, None, 2], b[None, :, 2])
    right = torch.minimum(a[:, None, 3], b[None, :, 3])
    intersection = (bottom - top).clamp(min=0) * (right - left).clamp(min=0)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    return intersection / (area_a[:, None] + area_b[None] - intersection).clamp(min=1e-6)


def track_scores(
    probabilities: torch.Tensor, window_ids: torch.Tensor, ages: torch.Tensor, decay_time: float | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Each query's association with each track of the window: (K,) track ids and (Q, K) scores.

    A track's score sums the query's probabilities over the track's instances, those `a` frames old
    weighted by (1 - decay_time) ** a, so recent evidence counts more.
    """
    if decay_time is not None:
        probabilities = probabilities * (1 - decay_time) ** ages.float()
    tracks = torch.unique(window_ids)
    membership = (window_ids[None] == tracks[:, None]).float()
    return tracks, probabilities @ membership.T


def spatial_terms(
    scores: torch.Tensor, boxes: torch.Tensor, last_boxes: torch.Tensor, config: TrackerConfig
) -> torch.Tensor:
    """The (Q, K) scores with the tracker's spatial rules applied: each query's box against each track's last box.

    `iou` multiplies the scores by the overlap ("mult") or lets the overlap stand in for a weaker score
    ("max"); a track farther than `max_center_dist` cannot be chosen at all.
    """
    current, previous = boxes.nanmean(1), last_boxes.nanmean(1)
    if config.iou is not None:
        iou = box_iou(current, previous)
        scores = scores * iou if config.iou == "mult" else torch.maximum(scores, iou)
    if config.max_center_dist is not None:
        centers = torch.stack([(current[:, 0] + current[:, 2]) / 2, (current[:, 1] + current[:, 3]) / 2], -1)
        last = torch.stack([(previous[:, 0] + previous[:, 2]) / 2, (previous[:, 1] + previous[:, 3]) / 2], -1)
        too_far = torch.cdist(centers, last) > config.max_center_dist
        scores = scores.masked_fill(too_far, float("-inf"))
    return scores
