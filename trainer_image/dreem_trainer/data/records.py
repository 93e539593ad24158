"""The domain records read from labels: an Instance in a Frame of a video."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

UNTRACKED = -1
"""Track id of an instance the labels give no identity."""

Points = npt.NDArray[np.float64]
"""(n_nodes, 2) keypoints as x, y in pixels; NaN where a node is not visible."""


@dataclass(frozen=True)
class Instance:
    """One labelled animal or cell in one frame."""

    points: Points
    track: int = UNTRACKED
    index_in_frame: int = 0
    bbox: tuple[float, float, float, float] | None = None
    """(x0, y0, x1, y1) in pixels, for sources that outline instances (cell masks)."""
    score: float = 1.0
    """The detector's confidence in a predicted instance; 1 for one a person labelled."""

    @property
    def centroid(self) -> npt.NDArray[np.float64] | None:
        """Mean of the visible keypoints as (x, y), or None when no keypoint is visible."""
        visible = self.points[~np.isnan(self.points).any(axis=1)]
        return visible.mean(axis=0) if len(visible) else None


@dataclass(frozen=True)
class Frame:
    """The labelled instances of one video frame."""

    frame_idx: int
    instances: tuple[Instance, ...]


@dataclass(frozen=True)
class LabelledVideo:
    """A video and its labelled frames, in frame order, as read by a source."""

    name: str
    labels_path: str
    video_path: str
    node_names: tuple[str, ...]
    frames: tuple[Frame, ...]
    track_names: tuple[str, ...] = field(default=())
    parents: tuple[tuple[int, int], ...] = ()
    """(track, parent track) for tracks that began by division of another (cell lineage)."""
    edges: tuple[tuple[int, int], ...] = ()
    """The skeleton's edges as pairs of node indices (drawn by `dreem render`); none for point sources."""
