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
    """Opens its video on the first read in each process and keeps it open until `close`."""

    open_bytes: int
    """About what holding the video open costs in memory."""

    def read(self, frame_indices: list[int]) -> Images: ...

    def close(self) -> None: ...


DECODER_BYTES_PER_PIXEL = 24
"""What an open video costs per pixel of its frames: the decoder's reference and threading frames. Opening
two_flies (1024x1024, h264) through sleap-io's opencv raised RSS by 19 MiB on 2 cores; more cores, more threads."""


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
            self._known = self._known_to(probe)
            probe.close()
        except Exception as error:
            raise DataError(f"{path}: cannot open video ({error})") from error
        if shape is None:
            raise DataError(f"{path}: cannot read the video's frame size")
        self.open_bytes = int(shape[1]) * int(shape[2]) * DECODER_BYTES_PER_PIXEL

    def _open(self) -> Any:
        if self._video is None or self._pid != os.getpid():
            import sleap_io as sio

            if self._video is not None:
                # The parent's decoder, copied by fork without its threads: freeing it here could wait on
                # them forever, so this process keeps it, unused.
                _INHERITED.append(self._video)

            self._video = sio.load_video(self.path, **self._known)
            self._pid = os.getpid()
        return self._video

    @staticmethod
    def _known_to(probe: Any) -> dict[str, Any]:
        """What the probe learnt that sleap-io would otherwise work out again at every open: the plugin (it
        opens the file with PyAV to choose one, 10 ms on two_flies) and the colour (it compares the channels
        of the first frame read). A video reopened for each clip, or in each loader worker, skips both."""
        backend = probe.backend
        known = {"grayscale": backend.grayscale, "plugin": getattr(backend, "plugin", None)}
        return {key: value for key, value in known.items() if value is not None}

    def read(self, frame_indices: list[int]) -> Images:
        """Frame by frame: sleap-io seeks a frame only when the decoder is not already at it, so the clips of
        a video read in order decode straight through. (Its read of a range seeks to the range's start every
        time, even where the decoder stands: 3x the decoding time of two_flies, for the same pixels.)"""
        video = self._open()
        images = np.stack([np.asarray(video[index]) for index in frame_indices])
        return images if images.ndim == 4 else images[..., None]

    def close(self) -> None:
        if self._video is not None and self._pid == os.getpid():
            self._video.close()
        self._video = None  # one a parent process opened is its own to close

    def __getstate__(self) -> dict[str, Any]:
        return self.__dict__ | {"_video": None, "_pid": -1}
