"""The tracker: DREEM's sliding-window inference. Each new frame's instances are associated by the model
with the instances every live track keeps (`TrackWindow`), scored per track (`association`) and assigned
(`assignment`).

The model is reached through one function, `Associate`, so the tracker is plain logic over association
matrices and can be driven by recorded logits as well as by a network; an optional second one, `Embed`, gives
what the model computes of an instance on its own (its positional embedding), once per instance: the window
keeps it, so associating a frame recomputes only what depends on the whole window.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace

import numpy as np
import numpy.typing as npt
import torch

from dreem_trainer.config.model import DREEM_SEMANTICS
from dreem_trainer.config.run import TrackerConfig
from dreem_trainer.data.clip import Clip
from dreem_trainer.models.gtr import GlobalTrackingTransformer
from dreem_trainer.tracking.assignment import NO_SCORE, Assignment, assign, first_frame_tracks
from dreem_trainer.tracking.association import (
    AssociationMatrix,
    TrackScores,
    angle_excess,
    box_iou,
    center_distance_excess,
    row_scaled_penalty,
    weigh_by_iou,
)
from dreem_trainer.tracking.orientation import body_axis, centroid_only
from dreem_trainer.tracking.window import TrackWindow, WindowInstance


@dataclass(frozen=True)
class Detections:
    """The instances of one frame, as the tracker takes them."""

    frame_idx: int
    features: torch.Tensor
    """(n, d) visual features."""
    boxes: torch.Tensor
    """(n, A, 4) y1, x1, y2, x2 in pixels."""
    true_tracks: torch.Tensor
    """(n,) the labels' track index, -1 when untracked: the ids a video's first frame keeps."""
    image_size: tuple[int, int]
    """(height, width) of the frame in pixels."""
    points: npt.NDArray[np.floating] | None = None
    """(n, n_nodes, 2) keypoints x, y (NaN hidden), for body axes."""
    crops: torch.Tensor | None = None
    """(n, C, H, W) uint8 crops, for the body axes of centroid-only skeletons."""
    positions: torch.Tensor | None = None
    """(n, d_model) the model's positional embeddings (`Embed`), which the window keeps with each instance."""

    @property
    def count(self) -> int:
        return int(self.features.shape[0])


Associate = Callable[[Sequence[WindowInstance], Detections], torch.Tensor]
"""The model's part: (Q, R) last-layer logits of the query frame's instances against the window's instances
(columns in window order, the query's own columns left out)."""

Embed = Callable[[Detections], torch.Tensor | None]
"""The model's per-instance part: (n, d_model) positional embeddings of a frame's instances, None for none."""


@dataclass(frozen=True)
class FrameTracks:
    tracks: torch.Tensor
    """(n,) track ids, -1 untracked."""
    scores: torch.Tensor
    """(n,) tracking_score; -1 where the instance did not join an existing track."""
    low_confidence: bool = False


@dataclass(frozen=True)
class ClipTracks:
    tracks: torch.Tensor
    """(N,) per instance of the clip."""
    scores: torch.Tensor
    """(N,) tracking_score per instance."""
    low_confidence: torch.Tensor
    """(T,) bool per frame of the clip: flagged for review."""


def model_associate(model: GlobalTrackingTransformer) -> Associate:
    """Logits from a GlobalTrackingTransformer: the window and the query frame are one set of references,
    the query frame's instances the queries. Times are frame numbers relative to the window's first frame.

    Visual features and positional embeddings are the ones kept with each instance (`model_embed`); what
    the transformer computes from them (encoder self-attention over every instance, decoder and head) is
    recomputed for each frame: every output depends on the whole window, and so does the temporal
    embedding (frames relative to the window's first, which moves as the window slides)."""

    def associate(window: Sequence[WindowInstance], query: Detections) -> torch.Tensor:
        references, device = len(window), query.features.device
        features = torch.cat([torch.stack([kept.features for kept in window]).to(device), query.features])
        boxes = torch.cat([torch.stack([kept.box for kept in window]), query.boxes.cpu()])
        kept_positions = [kept.position for kept in window if kept.position is not None]
        positions = None  # the model computes them from the boxes when the window does not hold them all
        if query.positions is not None and len(kept_positions) == references:
            positions = torch.cat([torch.stack(kept_positions).to(device), query.positions.to(device)])
        frames = torch.tensor([kept.frame_idx for kept in window] + [query.frame_idx] * query.count, device=device)
        output = model.associate(
            features,
            boxes,
            frames - frames.min(),
            torch.tensor(query.image_size, device=device),
            query_index=torch.arange(references, references + query.count, device=device),
            positions=positions,
        )
        logits: torch.Tensor = output.matrices[-1][:, :references]
        return logits

    return associate


def model_embed(model: GlobalTrackingTransformer) -> Embed:
    """The positional embeddings of a frame's instances, on the features' device."""

    def embed(frame: Detections) -> torch.Tensor | None:
        device = frame.features.device
        return model.transformer.embed_positions(frame.boxes.to(device), torch.tensor(frame.image_size, device=device))

    return embed


class Tracker:
    """Tracks the frames of one video in order; call `reset` before the next video.

    `single_detection_defect` reproduces a DREEM 0.5.1 defect, for DREEM's own models: when a frame holds
    exactly one detection and every instance of the window has been through the model before, DREEM's
    feature extraction writes that detection's features over those of the oldest instance in the window,
    which keeps them from then on. (DREEM keeps crops, and so escapes the defect, for centroid-only
    skeletons: the caller decides.)
    """

    def __init__(
        self,
        associate: Associate,
        config: TrackerConfig,
        node_names: Sequence[str] = (),
        single_detection_defect: bool = False,
        embed: Embed | None = None,
    ) -> None:
        self.associate = associate
        self.embed = embed
        self.config = config
        self.node_names = tuple(node_names)
        self.single_detection_defect = single_detection_defect
        self.window = TrackWindow(config.window_size, config.max_gap)
        self._window_seen_by_model = False
        """False while the window holds only a first frame's instances, which DREEM has not yet encoded."""

    @classmethod
    def for_model(
        cls, model: GlobalTrackingTransformer, config: TrackerConfig, node_names: Sequence[str] = ()
    ) -> Tracker:
        """A tracker for our network; one that reads its embeddings as DREEM did (a DREEM checkpoint, or one
        fine-tuned from it) also tracks as DREEM did, its single-detection defect included."""
        dreems = model.config.embedding_meta.semantics == DREEM_SEMANTICS
        return cls(model_associate(model), config, node_names, single_detection_defect=dreems, embed=model_embed(model))

    def reset(self, node_names: Sequence[str] | None = None) -> None:
        self.window.reset()
        self._window_seen_by_model = False
        if node_names is not None:
            self.node_names = tuple(node_names)

    def _reproduces_defect(self) -> bool:
        # DREEM keeps the crops of centroid-only skeletons (for their body axes), which spares them the defect.
        return self.single_detection_defect and not centroid_only(self.node_names)

    @property
    def uses_angles(self) -> bool:
        return bool(self.config.max_angle_diff)

    @torch.no_grad()
    def track_clip(self, clip: Clip, features: torch.Tensor) -> ClipTracks:
        """Track ids for the instances of a clip (continuing the tracks of earlier clips), given their
        visual features (N, d) on the model's device. The results are on the CPU."""
        tracks = torch.full((clip.num_instances,), -1, dtype=torch.long)
        scores = torch.full((clip.num_instances,), NO_SCORE)
        flagged = torch.zeros(clip.num_frames, dtype=torch.bool)
        image_size = (int(clip.image_size[0]), int(clip.image_size[1]))
        frame_ids, boxes, true_tracks = clip.frame_ids.cpu(), clip.boxes.cpu(), clip.track_ids.cpu()
        points = None if clip.points is None else clip.points.cpu().numpy()
        for frame_id in range(clip.num_frames):
            rows = (frame_ids == frame_id).nonzero().flatten()
            detections = Detections(
                frame_idx=int(clip.frame_indices[frame_id]),
                features=features[rows.to(features.device)],
                boxes=boxes[rows],
                true_tracks=true_tracks[rows],
                image_size=image_size,
                points=None if points is None else points[rows.numpy()],
                crops=clip.crops[rows.to(clip.crops.device)].cpu() if self.uses_angles else None,
            )
            result = self.step(detections)
            tracks[rows], scores[rows] = result.tracks, result.scores
            flagged[frame_id] = result.low_confidence
        return ClipTracks(tracks, scores, flagged)

    @torch.no_grad()
    def step(self, frame: Detections) -> FrameTracks:
        """Track one frame's instances."""
        if frame.count == 0:
            self.window.skip_frame()
            return FrameTracks(torch.zeros(0, dtype=torch.long), torch.zeros(0))
        with _one_thread():
            return self._step(frame)

    def _step(self, frame: Detections) -> FrameTracks:
        if self.embed is not None and frame.positions is None:
            frame = replace(frame, positions=self.embed(frame))
        axes = self._axes(frame)
        if len(self.window) == 0:
            self._window_seen_by_model = False
            if self.window.ids_ever:  # every track has ended: these are new tracks, numbered on
                start = self.window.next_new_id()
                tracks = torch.arange(start, start + frame.count)
            else:  # the video's first frame: the labels' identities, where they have them
                tracks = first_frame_tracks(frame.true_tracks.cpu())
            result = FrameTracks(tracks, torch.full((frame.count,), NO_SCORE))
        else:
            window = self.window.instances()
            if self._reproduces_defect() and frame.count == 1 and self._window_seen_by_model:
                self.window.replace_features(window[0], frame.features[0])
                window = self.window.instances()
            self._window_seen_by_model = True
            logits = self.associate(window, frame).float().cpu()
            assignment = self._assign(logits, frame, window, axes)
            result = FrameTracks(assignment.tracks, assignment.scores, assignment.low_confidence)
        positions = frame.positions
        self.window.add_frame(
            [
                WindowInstance(
                    frame.frame_idx,
                    int(track),
                    frame.features[i],
                    frame.boxes[i],
                    axes[i],
                    None if positions is None else positions[i],
                )
                for i, track in enumerate(result.tracks.tolist())
            ]
        )
        return result

    def _assign(
        self, logits: torch.Tensor, frame: Detections, window: list[WindowInstance], axes: list[torch.Tensor | None]
    ) -> Assignment:
        matrix = AssociationMatrix(
            logits,
            frames=torch.tensor([kept.frame_idx for kept in window]),
            tracks=torch.tensor([kept.track for kept in window]),
        )
        scores = self._score(matrix.track_scores(), frame, window, axes)
        return assign(scores, self.config, self.window.live_tracks, self.window.next_new_id())

    def _score(
        self, scores: TrackScores, frame: Detections, window: list[WindowInstance], axes: list[torch.Tensor | None]
    ) -> TrackScores:
        """The spatial rules, in DREEM's order: box overlap, centre distance, body angle."""
        config = self.config
        last = [window[int(column)] for column in scores.last]
        boxes = frame.boxes.float().cpu()
        last_boxes = torch.stack([kept.box for kept in last]).float().cpu()
        values = weigh_by_iou(scores.scores, box_iou(boxes, last_boxes), config.iou)
        if config.max_center_dist:
            excess = center_distance_excess(boxes, last_boxes, config.max_center_dist, frame.image_size)
            values = row_scaled_penalty(values, excess, config.distance_penalty_multiplier)
        last_axes = [kept.axis for kept in last]
        if self.uses_angles and all(axis is not None for axis in [*axes, *last_axes]):
            excess = angle_excess(
                torch.stack(axes),  # type: ignore[arg-type]
                torch.stack(last_axes),  # type: ignore[arg-type]
                config.max_angle_diff if config.max_angle_diff is not None else float("inf"),
            )
            values = row_scaled_penalty(values, excess, config.angle_diff_penalty_multiplier)
        return scores.with_scores(values)

    def _axes(self, frame: Detections) -> list[torch.Tensor | None]:
        if not self.uses_angles:
            return [None] * frame.count
        return [
            body_axis(
                frame.points[i] if frame.points is not None else np.full((len(self.node_names), 2), np.nan),
                self.node_names,
                self.config.front_nodes,
                self.config.back_nodes,
                frame.crops[i].cpu() if frame.crops is not None else None,
            )
            for i in range(frame.count)
        ]


@contextmanager
def _one_thread() -> Iterator[None]:
    """Associate, score and assign on one thread: a window's transformer pass and its scores hold a few
    thousand numbers, and torch's thread pool only adds a hand-off to each operation, which on a busy
    machine waits for a time slice (a 2x3 softmax: 36 ms with two threads on the loaded 2-core CI machine,
    4 us with one; a whole frame's association went from ~24 ms to ~1 ms). On a GPU the pool is idle anyway."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
