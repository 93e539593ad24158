"""`LabelTable`: a video's labels as a few flat arrays, so a dataset of many videos holds no object per instance.

A LabelledVideo holds a Python object (and a small array) per instance: hundreds of bytes each, and in a forked
loader worker every one of them is copied as soon as it is touched, since touching a Python object writes its
reference count. The table keeps the same facts in seven arrays that workers share untouched, and gives back the
Frames of one clip, or the whole LabelledVideo, only when asked.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from dreem_trainer.data.records import Frame, Instance, LabelledVideo


@dataclass(frozen=True)
class LabelTable:
    """Row i of the per-instance arrays is one instance; frame f holds rows `frame_rows[f]:frame_rows[f + 1]`,
    and instance i's keypoints are `points[point_rows[i]:point_rows[i + 1]]` (instances of a file may differ in
    their number of nodes)."""

    name: str
    labels_path: str
    video_path: str
    node_names: tuple[str, ...]
    track_names: tuple[str, ...]
    parents: tuple[tuple[int, int], ...]
    edges: tuple[tuple[int, int], ...]
    frame_indices: npt.NDArray[np.int64]
    frame_rows: npt.NDArray[np.int64]
    point_rows: npt.NDArray[np.int64]
    points: npt.NDArray[np.float64]
    tracks: npt.NDArray[np.int64]
    index_in_frame: npt.NDArray[np.int64]
    scores: npt.NDArray[np.float64]
    bboxes: npt.NDArray[np.float64]
    """(I, 4); a NaN row is an instance without a box."""

    @classmethod
    def of(cls, video: LabelledVideo) -> LabelTable:
        instances = [instance for frame in video.frames for instance in frame.instances]
        return cls(
            name=video.name,
            labels_path=video.labels_path,
            video_path=video.video_path,
            node_names=video.node_names,
            track_names=video.track_names,
            parents=video.parents,
            edges=video.edges,
            frame_indices=np.array([frame.frame_idx for frame in video.frames], dtype=np.int64),
            frame_rows=_offsets([len(frame.instances) for frame in video.frames]),
            point_rows=_offsets([len(instance.points) for instance in instances]),
            points=np.concatenate([i.points for i in instances]).astype(np.float64) if instances else np.zeros((0, 2)),
            tracks=np.array([i.track for i in instances], dtype=np.int64),
            index_in_frame=np.array([i.index_in_frame for i in instances], dtype=np.int64),
            scores=np.array([i.score for i in instances], dtype=np.float64),
            bboxes=np.array([i.bbox if i.bbox is not None else (np.nan,) * 4 for i in instances], dtype=np.float64)
            if instances
            else np.zeros((0, 4)),
        )

    def __len__(self) -> int:
        """The number of labelled frames."""
        return len(self.frame_indices)

    @property
    def nbytes(self) -> int:
        arrays = (self.frame_indices, self.frame_rows, self.point_rows, self.points, self.tracks)
        return sum(a.nbytes for a in (*arrays, self.index_in_frame, self.scores, self.bboxes))

    def frames(self, start: int, stop: int) -> tuple[Frame, ...]:
        """Labelled frames `start` to `stop` (positions among the labelled frames, not frame numbers)."""
        return tuple(
            Frame(
                frame_idx=int(self.frame_indices[f]),
                instances=tuple(self._instance(i) for i in range(self.frame_rows[f], self.frame_rows[f + 1])),
            )
            for f in range(start, min(stop, len(self)))
        )

    def video(self) -> LabelledVideo:
        """The whole LabelledVideo again, as the labels' reader made it (for writing tracks back)."""
        return LabelledVideo(
            name=self.name,
            labels_path=self.labels_path,
            video_path=self.video_path,
            node_names=self.node_names,
            frames=self.frames(0, len(self)),
            track_names=self.track_names,
            parents=self.parents,
            edges=self.edges,
        )

    def _instance(self, row: int) -> Instance:
        box = self.bboxes[row]
        return Instance(
            points=self.points[self.point_rows[row] : self.point_rows[row + 1]].copy(),
            track=int(self.tracks[row]),
            index_in_frame=int(self.index_in_frame[row]),
            bbox=None if np.isnan(box).all() else (float(box[0]), float(box[1]), float(box[2]), float(box[3])),
            score=float(self.scores[row]),
        )


def _offsets(counts: list[int]) -> npt.NDArray[np.int64]:
    return np.concatenate([[0], np.cumsum(counts, dtype=np.int64)]).astype(np.int64)
