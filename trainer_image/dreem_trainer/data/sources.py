"""Frames decoded on demand from a video, and the error every reader raises for data it cannot use."""

from __future__ import annotations

import os
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from dreem_trainer.contract import UserError

Images = npt.NDArray[np.uint8]
"""(T, H, W, C) decoded frames."""


class DataError(UserError, ValueError):
    """A data file that cannot be used, with the path and the reason."""


class VideoReader(Protocol):
    def read(self, frame_indices: list[int]) -> Images: ...


_INHERITED: list[Any] = []


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

            if self._video is not None:
                # The parent's decoder, copied by fork without its threads: freeing it here could wait on
                # them forever, so this process keeps it, unused.
                _INHERITED.append(self._video)

            self._video = sio.load_video(self.path)
            self._pid = os.getpid()
        return self._video

    def read(self, frame_indices: list[int]) -> Images:
        """Frame by frame: sleap-io seeks a frame only when the decoder is not already at it, so the clips of
        a video read in order decode straight through. (Its read of a range seeks to the range's start every
        time, even where the decoder stands: 3x the decoding time of two_flies, for the same pixels.)"""
        video = self._open()
        images = np.stack([np.asarray(video[index]) for index in frame_indices])
        return images if images.ndim == 4 else images[..., None]

    def __getstate__(self) -> dict[str, Any]:
        return {"path": self.path, "_video": None, "_pid": -1}
