"""The tracker's memory, as DREEM keeps it: per track, its last `window_size` instances, however long ago
they were seen, so a track that was absent for a while can still be re-joined; a track ends only after
`max_gap` processed frames without it."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, replace

import torch


@dataclass(frozen=True)
class WindowInstance:
    """A tracked instance kept for association with later frames."""

    frame_idx: int
    track: int
    features: torch.Tensor
    """(d,) visual features."""
    box: torch.Tensor
    """(A, 4) y1, x1, y2, x2 in pixels."""
    axis: torch.Tensor | None = None
    """(2,) body axis, when the tracker compares angles and one could be found."""
    position: torch.Tensor | None = None
    """(d_model,) the model's positional embedding of the instance, computed once, when its frame was the
    query, and reused by every later association (it depends on the instance's box alone)."""


class TrackWindow:
    """Per-track queues of the latest instances, with the gap since each track was last seen."""

    def __init__(self, window_size: int, max_gap: int | None) -> None:
        self.window_size = window_size
        # A track must be able to fill its window before it may end (DREEM raises max_gap to window_size).
        self.max_gap = None if max_gap is None else max(max_gap, window_size)
        self.reset()

    def reset(self) -> None:
        self.queues: dict[int, deque[WindowInstance]] = {}
        self.gaps: dict[int, int] = {}
        self.ids_ever: set[int] = set()
        """Every id a track has had since the reset, ended tracks included, so a new id is never reused."""

    def __len__(self) -> int:
        return sum(len(queue) for queue in self.queues.values())

    @property
    def live_tracks(self) -> int:
        return len(self.queues)

    def next_new_id(self) -> int:
        """The id a new track gets: one more than any id seen since the reset."""
        return max(self.ids_ever) + 1 if self.ids_ever else 0

    def instances(self) -> list[WindowInstance]:
        """Every kept instance, grouped by frame, oldest frame first; within a frame, tracks in the order they
        were created. This is the column order of the association matrix."""
        by_frame: dict[int, list[WindowInstance]] = {}
        for queue in self.queues.values():
            for instance in queue:
                by_frame.setdefault(instance.frame_idx, []).append(instance)
        return [instance for frame in sorted(by_frame) for instance in by_frame[frame]]

    def add_frame(self, instances: list[WindowInstance]) -> None:
        """Queue a processed frame's tracked instances (untracked ones, track -1, are not kept), then age the
        tracks it did not contain."""
        present = []
        for instance in instances:
            if instance.track < 0:
                continue
            present.append(instance.track)
            queue = self.queues.setdefault(instance.track, deque())
            self.ids_ever.add(instance.track)
            queue.append(instance)
            if len(queue) > self.window_size:
                queue.popleft()
        self._age(present)

    def skip_frame(self) -> None:
        """A processed frame without instances: every track was absent from it."""
        self._age([])

    def replace_features(self, instance: WindowInstance, features: torch.Tensor) -> None:
        """Give one kept instance other visual features (see `Tracker`: DREEM's single-detection frames)."""
        queue = self.queues[instance.track]
        position = next(i for i, kept in enumerate(queue) if kept is instance)
        queue[position] = replace(instance, features=features)

    def _age(self, present: list[int]) -> None:
        for track in present:
            self.gaps.setdefault(track, 0)
        for track in list(self.gaps):
            self.gaps[track] = 0 if track in present else self.gaps[track] + 1
            if self.max_gap is not None and self.gaps[track] >= self.max_gap:
                del self.gaps[track]
                self.queues.pop(track, None)
