"""Frames decoded on demand from a video, and the error every reader raises for data it cannot use."""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from dreem_trainer.contract import UserError

Images = npt.NDArray[np.uint8]
"""(T, H, W, C) decoded frames."""


class DataError(UserError, ValueError):
    """A data file that cannot be used, with the path and the reason."""


class VideoReader(Protocol):
    """Opens its video on the first read in each process and keeps it open until `close`."""

    def read(self, frame_indices: list[int]) -> Images: ...

    def close(self) -> None: ...


MAX_OPEN_READERS = 2
"""Videos a dataset keeps open at once in a process. An open decoder holds tens of megabytes (about 20 for a
1024x1024 mp4), more for larger frames. Clips read in order need one; clips shuffled over many videos rarely
find theirs open however many are kept, and reopening costs a tenth of decoding a clip of 8 frames (about 20
ms against 160, mostly the seek every clip pays anyway)."""


class ReaderPool:
    """One reader per video, at most `max_open` of them open in this process: the least recently read is closed
    when another opens, so a dataset of thousands of videos holds as many decoders as one of `max_open`."""

    def __init__(self, readers: Sequence[VideoReader], max_open: int = MAX_OPEN_READERS) -> None:
        self.readers = list(readers)
        self.max_open = max_open
        self._open: OrderedDict[int, None] = OrderedDict()
        self._pid = os.getpid()

    def read(self, video_index: int, frame_indices: list[int]) -> Images:
        if self._pid != os.getpid():
            self._open.clear()  # a forked worker: its readers reopen on their own; count only what it opens
            self._pid = os.getpid()
        self._open[video_index] = None
        self._open.move_to_end(video_index)
        while len(self._open) > self.max_open:
            evicted, _ = self._open.popitem(last=False)
            self.readers[evicted].close()
        return self.readers[video_index].read(frame_indices)

    @property
    def open_count(self) -> int:
        return len(self._open)


class MediaReader:
    """Decodes frames through sleap-io, opened lazily in each process (decoders do not survive fork).

    The video is opened once on creation, and closed again, so that one that cannot be decoded is an
    error naming it before training starts.
    """

    def __init__(self, path: str) -> None:
        import sleap_io as sio

        self.path = path
        self._video: Any = None
        self._pid = -1
        try:
            probe = sio.load_video(path)
            shape = probe.shape
            probe.close()
        except Exception as error:
            raise DataError(f"{path}: cannot open video ({error})") from error
        if shape is None:
            raise DataError(f"{path}: cannot read the video's frame size")

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

    def close(self) -> None:
        if self._video is not None and self._pid == os.getpid():
            self._video.close()
        self._video = None  # one a parent process opened is its own to close

    def __getstate__(self) -> dict[str, Any]:
        return {"path": self.path, "_video": None, "_pid": -1}
