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

    def frame_size(self) -> tuple[int, int]:
        """(height, width) of the frames, known without decoding one."""
        ...

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
        self.frame_shape = (int(shape[1]), int(shape[2]), int(shape[3]))
        self.open_bytes = self.frame_shape[0] * self.frame_shape[1] * DECODER_BYTES_PER_PIXEL

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
        opens the file with PyAV to choose one, 10 ms on two_flies). A video reopened for each clip, or in
        each loader worker, skips it. The colour is known too (sleap-io compares the channels of the first
        frame read), but the reader is opened in colour whatever it is: see `read`."""
        plugin = getattr(probe.backend, "plugin", None)
        return {"grayscale": False} | ({"plugin": plugin} if plugin is not None else {})

    def frame_size(self) -> tuple[int, int]:
        return self.frame_shape[0], self.frame_shape[1]

    def read(self, frame_indices: list[int]) -> Images:
        """Frame by frame: sleap-io seeks a frame only when the decoder is not already at it, so the clips of
        a video read in order decode straight through. (Its read of a range seeks to the range's start every
        time, even where the decoder stands: 3x the decoding time of two_flies, for the same pixels.)

        Each frame is copied once, straight into the clip's array, and a grey video keeps the channel
        sleap-io's grey reader keeps (its first, red). sleap-io's own grey frames cost a gather (a list index
        on a reversed view of the decoder's BGR), then stacking them a second copy: on ten_zfish's 13.8 Mpx
        frames those took 1.5 s and 1.2 s of 3.8 s for 32 frames under cProfile, the decoding itself 1.1 s."""
        video = self._open()
        height, width, channels = self.frame_shape
        images: Images | None = None
        for position, index in enumerate(frame_indices):
            try:
                frame = np.asarray(video[index])
            except IndexError as error:  # sleap-io's "Frame index N out of range."
                raise DataError(
                    f"{self.path}: its labels have frame {index}, but the video has no such frame ({error}); "
                    "are these the labels of another video?"
                ) from error
            if frame.shape[:2] != (height, width):
                raise DataError(
                    f"{self.path}: frame {index} is {frame.shape[1]}x{frame.shape[0]}, "
                    f"the video's first frame {width}x{height}"
                )
            if images is None:  # the clip takes its frames' type (uint8 from a media file)
                images = np.empty((len(frame_indices), height, width, channels), dtype=frame.dtype)
            images[position] = frame[..., :channels] if frame.ndim == 3 else frame[..., None]
        return images if images is not None else np.empty((0, height, width, channels), dtype=np.uint8)

    def close(self) -> None:
        if self._video is not None and self._pid == os.getpid():
            self._video.close()
        self._video = None  # one a parent process opened is its own to close

    def __getstate__(self) -> dict[str, Any]:
        return self.__dict__ | {"_video": None, "_pid": -1}
