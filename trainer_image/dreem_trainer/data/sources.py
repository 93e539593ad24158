"""Readers: a labels file and its video into a LabelledVideo, and frames decoded on demand."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from dreem_trainer.contract import UserError
from dreem_trainer.data.records import UNTRACKED, Frame, Instance, LabelledVideo

Images = npt.NDArray[np.uint8]
"""(T, H, W, C) decoded frames."""


class DataError(UserError, ValueError):
    """A data file that cannot be used, with the path and the reason."""


class VideoReader(Protocol):
    def read(self, frame_indices: list[int]) -> Images: ...


class MediaReader:
    """Decodes frames through sleap-io, opened lazily in each process (decoders do not survive fork)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._video: Any = None
        self._pid = -1

    def _open(self) -> Any:
        if self._video is None or self._pid != os.getpid():
            import sleap_io as sio

            self._video = sio.load_video(self.path)
            self._pid = os.getpid()
        return self._video

    def read(self, frame_indices: list[int]) -> Images:
        video = self._open()
        if frame_indices == list(range(frame_indices[0], frame_indices[-1] + 1)):
            images = video[frame_indices[0] : frame_indices[-1] + 1]
        else:
            images = np.stack([video[i] for i in frame_indices])
        images = np.asarray(images)
        return images if images.ndim == 4 else images[None]

    def __getstate__(self) -> dict[str, Any]:
        return {"path": self.path, "_video": None, "_pid": -1}


def read_sleap(labels_path: str, video_path: str) -> LabelledVideo:
    """Read a SLEAP labels file, keeping the frames of the video that `video_path` names."""
    import sleap_io as sio

    try:
        labels = sio.load_slp(labels_path, open_videos=False)
    except Exception as error:
        raise DataError(f"{labels_path}: cannot read SLEAP labels ({error})") from error
    video = _matching_video(labels, labels_path, video_path)
    tracks = list(labels.tracks)
    frames = []
    for labelled_frame in sorted(labels.find(video), key=lambda lf: lf.frame_idx):
        chosen = labelled_frame.user_instances or labelled_frame.predicted_instances
        instances = tuple(
            Instance(
                points=np.asarray(instance.numpy(), dtype=np.float64)[:, :2],
                track=tracks.index(instance.track) if instance.track is not None else UNTRACKED,
                index_in_frame=index,
            )
            for index, instance in enumerate(chosen)
        )
        frames.append(Frame(frame_idx=int(labelled_frame.frame_idx), instances=instances))
    try:
        shape = sio.load_video(video_path).shape
    except Exception as error:
        raise DataError(f"{video_path}: cannot open video ({error})") from error
    if shape is None:
        raise DataError(f"{video_path}: cannot read the video's frame size")
    return LabelledVideo(
        name=Path(video_path).stem,
        labels_path=labels_path,
        video_path=video_path,
        node_names=tuple(labels.skeletons[0].node_names) if labels.skeletons else (),
        edges=tuple((int(a), int(b)) for a, b in labels.skeletons[0].edge_inds) if labels.skeletons else (),
        frames=tuple(frames),
        track_names=tuple(track.name for track in tracks),
        image_shape=(int(shape[1]), int(shape[2]), int(shape[3])),
    )


def _matching_video(labels: Any, labels_path: str, video_path: str) -> Any:
    if len(labels.videos) == 1:
        return labels.videos[0]
    stem = Path(video_path).stem
    named = [video for video in labels.videos if Path(str(video.filename)).stem == stem]
    if len(named) != 1:
        listed = ", ".join(Path(str(video.filename)).name for video in labels.videos)
        raise DataError(
            f"{labels_path}: holds {len(labels.videos)} videos ({listed}) and none is named like {video_path}"
        )
    return named[0]
