"""The sliding-window tracker: each new frame's instances are associated with the tracks of the last
`window_size` frames, and assigned by the Hungarian method on the association scores."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

from dreem_trainer.config.run import TrackerConfig
from dreem_trainer.data.clip import Clip
from dreem_trainer.models.gtr import GlobalTrackingTransformer
from dreem_trainer.tracking.association import spatial_terms, track_scores


@dataclass(frozen=True)
class TrackedFrame:
    """A frame's instances in the window, with the visual features computed once."""

    frame_idx: int
    features: torch.Tensor
    boxes: torch.Tensor
    track_ids: torch.Tensor


class Tracker:
    """Streams the frames of one video; call `reset` before the next video."""

    def __init__(self, model: GlobalTrackingTransformer, config: TrackerConfig) -> None:
        self.model = model
        self.config = config
        self.reset()

    def reset(self) -> None:
        self.window: deque[TrackedFrame] = deque(maxlen=self.config.window_size)
        self.next_track = 0

    @torch.no_grad()
    def track_clip(self, clip: Clip) -> torch.Tensor:
        """Track ids (N,) for the instances of a clip, continuing the tracks of earlier clips."""
        features = self.model.visual_encoder(clip.crops)  # on the model's device, where the window keeps them
        assigned = torch.full((clip.num_instances,), -1, dtype=torch.long, device=clip.frame_ids.device)
        for frame_id in range(clip.num_frames):
            rows = (clip.frame_ids == frame_id).nonzero().flatten()
            frame_idx = int(clip.frame_indices[frame_id])
            ids = self.step(frame_idx, features[rows], clip.boxes[rows], clip.image_size)
            assigned[rows] = ids.to(assigned.device)
        return assigned

    @torch.no_grad()
    def step(
        self, frame_idx: int, features: torch.Tensor, boxes: torch.Tensor, image_size: torch.Tensor
    ) -> torch.Tensor:
        boxes = boxes.cpu()  # for the spatial rules, beside the scores; the model moves them to its device
        count = features.shape[0]
        if count == 0:
            ids = torch.zeros(0, dtype=torch.long)
        elif not self.window:
            ids = self._new_tracks(count)
        else:
            ids = self._associate(frame_idx, features, boxes, image_size)
        self.window.append(TrackedFrame(frame_idx, features, boxes, ids))
        return ids

    def _new_tracks(self, count: int) -> torch.Tensor:
        ids = torch.arange(self.next_track, self.next_track + count)
        self.next_track += count
        return ids

    def _associate(
        self, frame_idx: int, features: torch.Tensor, boxes: torch.Tensor, image_size: torch.Tensor
    ) -> torch.Tensor:
        past = list(self.window)
        window_features = torch.cat([frame.features for frame in past])
        window_ids = torch.cat([frame.track_ids for frame in past])
        window_boxes = torch.cat([frame.boxes for frame in past])
        first = past[0].frame_idx
        offsets = torch.cat(
            [torch.full((len(frame.track_ids),), frame.frame_idx - first) for frame in past]
            + [torch.full((features.shape[0],), frame_idx - first)]
        )
        count, references = features.shape[0], window_features.shape[0]
        output = self.model.associate(
            torch.cat([window_features, features]),
            torch.cat([window_boxes, boxes]),
            offsets,
            image_size,
            query_index=torch.arange(references, references + count),
        )
        # Scoring and assignment work on a few numbers per frame: on the CPU, in float32.
        probabilities = output.matrices[-1][:, :references].float().cpu().softmax(-1)
        ages = frame_idx - first - offsets[:references]
        tracks, scores = track_scores(probabilities, window_ids, ages, self.config.decay_time)
        last_boxes = torch.stack([window_boxes[(window_ids == t).nonzero().max()] for t in tracks])
        scores = spatial_terms(scores, boxes, last_boxes, self.config)
        return self._assign(scores.cpu().numpy(), tracks.cpu().numpy())

    def _assign(self, scores: np.ndarray, tracks: np.ndarray) -> torch.Tensor:
        """Hungarian assignment; a score under `overlap_thresh` starts a new track (while `max_tracks` allows)."""
        finite = np.where(np.isfinite(scores), scores, -1e6)
        rows, cols = linear_sum_assignment(-finite)
        ids = np.full(scores.shape[0], -1)
        for row, col in zip(rows, cols, strict=True):
            if finite[row, col] >= self.config.overlap_thresh:
                ids[row] = tracks[col]
        for row in np.flatnonzero(ids < 0):
            if self.config.max_tracks is None or self.next_track < self.config.max_tracks:
                ids[row] = self.next_track
                self.next_track += 1
            else:
                free = [c for c in np.argsort(-finite[row]) if tracks[c] not in ids]
                ids[row] = tracks[free[0]] if free else tracks[int(np.argmax(finite[row]))]
        return torch.as_tensor(ids, dtype=torch.long)
