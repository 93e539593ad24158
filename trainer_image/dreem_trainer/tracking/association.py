"""Association scores, by DREEM's rules: how strongly each instance of a new frame belongs to each track of
the window.

Pure tensor functions, apart from the model that produced the logits, so each rule can be read and checked
on a matrix small enough to work out by hand. Operations follow DREEM's order and dtypes (float32 sums,
matrix products, thresholds) so equal logits give equal assignments, not just close ones.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class TrackScores:
    """Each query instance's score for each track of the window."""

    tracks: torch.Tensor
    """(K,) track ids, ascending."""
    scores: torch.Tensor
    """(Q, K) float32."""
    counts: torch.Tensor
    """(K,) float32: how many of the track's instances the window holds (`mult_thresh` scales by it)."""
    last: torch.Tensor
    """(K,) the window column of each track's newest instance (its box and body axis are compared)."""

    def with_scores(self, scores: torch.Tensor) -> TrackScores:
        return TrackScores(self.tracks, scores, self.counts, self.last)


@dataclass(frozen=True)
class AssociationMatrix:
    """The model's logits of the query frame's instances (rows) against the window's instances (columns).

    Columns are grouped by window frame, oldest first, as the tracker lays the window out.
    """

    logits: torch.Tensor
    """(Q, R) last decoder layer's logits, the query frame's own columns left out."""
    frames: torch.Tensor
    """(R,) frame number of each column."""
    tracks: torch.Tensor
    """(R,) track id of each column."""

    def probabilities(self) -> torch.Tensor:
        """(Q, R): per window frame, a softmax over that frame's instances and a null slot of logit 0, so a
        query can belong to no instance of a frame (the track was absent, or it is a new animal)."""
        _, counts = torch.unique_consecutive(self.frames, return_counts=True)
        blocks = torch.split(self.logits, counts.tolist(), dim=1)
        return torch.cat([_softmax_with_null(block) for block in blocks], dim=1)

    def track_scores(self) -> TrackScores:
        """Sum each query's probabilities over every window instance of a track: a track seen in more window
        frames can score up to that many."""
        probabilities = self.probabilities()
        tracks = torch.unique(self.tracks)
        membership = (tracks[None, :] == self.tracks[:, None]).float()  # (R, K)
        scores = torch.mm(probabilities, membership)
        columns = torch.arange(self.tracks.numel())[:, None]
        last = (membership * columns).max(dim=0).indices
        return TrackScores(tracks, scores, membership.sum(dim=0), last)


def _softmax_with_null(logits: torch.Tensor) -> torch.Tensor:
    padded = torch.cat([logits, logits.new_zeros((logits.shape[0], 1))], dim=1)
    return padded.softmax(dim=1)[:, :-1]


def box_iou(query: torch.Tensor, last: torch.Tensor) -> torch.Tensor:
    """(Q, A, 4), (K, A, 4) y1, x1, y2, x2 boxes -> (Q, K) IoU, per anchor then averaged over the anchors that
    have a box (NaN where none has)."""
    size = torch.minimum(query[:, None, :, 2:], last[None, :, :, 2:]) - torch.maximum(
        query[:, None, :, :2], last[None, :, :, :2]
    )
    intersection = size.clamp(min=0).prod(dim=-1)  # (Q, K, A)
    area_query = (query[..., 2] - query[..., 0]) * (query[..., 3] - query[..., 1])
    area_last = (last[..., 2] - last[..., 0]) * (last[..., 3] - last[..., 1])
    iou = intersection / (area_query[:, None] + area_last[None] - intersection)
    return iou.nanmean(dim=-1)


def weigh_by_iou(scores: torch.Tensor, iou: torch.Tensor, mode: str | None) -> torch.Tensor:
    """DREEM's IoU rules. "mult" adds |IoU - score| * IoU: overlap lifts a weak score toward the overlap and
    barely moves a strong one; "max" lets the overlap stand in for a weaker score.

    A missing box (NaN IoU) adds nothing under "mult" and leaves the score under "max" (where DREEM fails).
    """
    if mode == "mult":
        return scores + torch.nan_to_num(torch.abs(iou - scores) * iou, 0.0)
    if mode == "max":
        return torch.where(torch.isnan(iou), scores, torch.maximum(scores, iou))
    return scores


def row_scaled_penalty(scores: torch.Tensor, excess: torch.Tensor, multiplier: float) -> torch.Tensor:
    """Subtract a penalty proportional to `excess` (Q, K), scaled per query row so that its mean matches the
    row's mean absolute score: the penalty ranks candidates against each other whatever the scores' scale.

    A NaN excess (no box, no body axis) costs nothing.
    """
    penalty = torch.where(excess > 0, excess, torch.zeros_like(excess))
    scale = torch.abs(scores).mean(dim=1) / (penalty.mean(dim=1) + 1e-8)
    return scores + multiplier * (-scale.unsqueeze(-1) * penalty)


def center_distance_excess(
    query: torch.Tensor, last: torch.Tensor, max_center_dist: float, image_size: tuple[int, int]
) -> torch.Tensor:
    """(Q, K) how far each query's box centre lies beyond `max_center_dist` pixels from each track's last box
    centre, both in units of the frame's diagonal (negative: within reach). Anchors are averaged."""
    height, width = image_size
    diagonal = (height**2 + width**2) ** 0.5
    query_centers = (query[..., :2] + query[..., 2:]) / 2
    last_centers = (last[..., :2] + last[..., 2:]) / 2
    distance = ((query_centers[:, None] - last_centers[None]) ** 2).sum(dim=-1) ** 0.5  # (Q, K, A)
    excess: torch.Tensor = distance.nanmean(dim=-1) / diagonal - max_center_dist / diagonal
    return excess


def angle_excess(query_axes: torch.Tensor, last_axes: torch.Tensor, max_angle_diff_degrees: float) -> torch.Tensor:
    """(Q, K) how far the angle between each query's body axis and each track's last axis, folded to
    [0, 90] degrees (head and tail are not told apart), exceeds the allowed difference, in radians."""
    dot = (query_axes[:, None, :] * last_axes[None, :, :]).sum(dim=-1)
    cross = query_axes[:, None, 0] * last_axes[None, :, 1] - query_axes[:, None, 1] * last_axes[None, :, 0]
    angle = torch.abs(torch.atan2(cross, dot))
    angle = torch.where(angle > torch.pi / 2, torch.pi - angle, angle)
    return angle - math.radians(max_angle_diff_degrees)


def scaled_scores(scores: torch.Tensor, temperature: float) -> torch.Tensor:
    """Log-softmax of the scores over tracks at `temperature`: the tracking_score written for each match."""
    scaled: torch.Tensor = torch.log_softmax(scores / temperature, dim=1)
    return scaled


def is_low_confidence(scaled: torch.Tensor, confidence_threshold: float) -> bool:
    """DREEM's review flag: some instance's assignment entropy, divided by log of the number of query
    instances, exceeds 1 - confidence_threshold.

    DREEM normalises by the query count, not the track count, so a frame with one instance divides by
    log 1 = 0 and is flagged whenever its entropy is above zero; kept as DREEM does it.
    """
    if confidence_threshold <= 0:
        return False
    entropy = -torch.sum(scaled * torch.exp(scaled), dim=1)
    normalised = entropy / torch.log(torch.tensor(float(scaled.shape[0])))
    return bool((normalised > 1 - confidence_threshold).any())
