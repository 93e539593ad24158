"""From track scores to track ids, by DREEM's rules: a Hungarian matching, a threshold per match, new
tracks for what is left, and `max_tracks` as a cap on live tracks."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

from dreem_trainer.config.run import TrackerConfig
from dreem_trainer.tracking.association import TrackScores, is_low_confidence, scaled_scores

UNTRACKED = -1
NO_SCORE = -1.0
"""The tracking_score of an instance that was not matched to an existing track (first frame, new track)."""


@dataclass(frozen=True)
class Assignment:
    """The outcome for one frame's instances."""

    tracks: torch.Tensor
    """(Q,) track ids; -1 for an instance left untracked because `max_tracks` tracks are live."""
    scores: torch.Tensor
    """(Q,) float32 tracking_score: the matched track's scaled score, -1 for a new or untracked instance."""
    low_confidence: bool
    """The frame is flagged for review (`confidence_threshold`)."""


def assign(scores: TrackScores, config: TrackerConfig, live_tracks: int, next_new_id: int) -> Assignment:
    """Match the query instances to tracks.

    Each Hungarian match is kept when its score is above `overlap_thresh` (times the track's instances in
    the window with `mult_thresh`), or whatever its score once `max_tracks` tracks are live. Every instance
    left over starts a new track with the next unused id while fewer than `max_tracks` are live, else stays
    untracked. Live tracks are counted once, before the frame, so one frame may start several tracks and
    pass `max_tracks` (as in DREEM).
    """
    count = scores.scores.shape[0]
    scaled = scaled_scores(scores.scores, config.temperature)
    at_capacity = config.max_tracks is not None and live_tracks >= config.max_tracks
    tracks = torch.full((count,), UNTRACKED, dtype=torch.long)
    track_scores = torch.full((count,), NO_SCORE, dtype=torch.float32)
    rows, columns = linear_sum_assignment(-scores.scores.numpy())
    for row, column in zip(rows.tolist(), columns.tolist(), strict=True):
        threshold = config.overlap_thresh * scores.counts[column] if config.mult_thresh else config.overlap_thresh
        if at_capacity or bool(scores.scores[row, column] > threshold):
            tracks[row] = scores.tracks[column]
            track_scores[row] = scaled[row, column]
    for row in np.flatnonzero(tracks.numpy() == UNTRACKED).tolist():
        if not at_capacity:
            tracks[row] = next_new_id
            next_new_id += 1
    return Assignment(tracks, track_scores, is_low_confidence(scaled, config.confidence_threshold))


def first_frame_tracks(true_tracks: torch.Tensor) -> torch.Tensor:
    """Ids for the first frame of a video: the labels' own track index where
    the instance has one, so tracked input keeps its identities; the untracked instances are numbered on
    from the largest of those (from 0 when none)."""
    ids = true_tracks.clone().long()
    repeated = [row for row in range(len(ids)) if ids[row] >= 0 and bool((ids[:row] == ids[row]).any())]
    ids[repeated] = -1  # two instances labelled as one track: the second starts a track of its own
    untracked = ids < 0
    start = int(ids.max()) + 1 if bool((~untracked).any()) else 0
    ids[untracked] = torch.arange(start, start + int(untracked.sum()))
    return ids
