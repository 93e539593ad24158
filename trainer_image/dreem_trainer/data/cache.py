"""One byte budget per process for what data loading keeps: decoded frames, built clips and open videos.

Whatever the number of videos, a process holds at most the budget (`DREEM_FRAME_CACHE_MB`), plus the one video
it is reading. Keeping videos open is worth bytes too: reopening one costs about a fifth of decoding a clip of 8
frames, so with room to spare a run over many videos keeps them all open, and with none it reopens them.
"""

from __future__ import annotations

import ctypes
import functools
import os
from collections import OrderedDict
from collections.abc import Callable, Sequence

from dreem_trainer.data.clip import Clip
from dreem_trainer.data.sources import Images, VideoReader

DEFAULT_FRAME_CACHE_MB = 1024

CLIP, FRAMES, READER = 0, 1, 2
SHARED = -1
"""The owner of entries no one dataset owns: open videos, which datasets may share."""
CacheKey = tuple[int, int, int] | tuple[int, str, tuple[int, ...]]
"""(owner, CLIP, clip index) or (SHARED, READER, the reader's id) or (FRAMES, video path, frame numbers): the
datasets of a process share its cache, and read each other's decoded frames."""
Cached = Clip | Images | VideoReader


class ByteBudgetCache:
    """Least-recently-used entries, bounded in bytes, so epochs after the first skip decoding.

    Datasets can share one (a run's training and validation do), so that a process holds one budget whatever
    the number of datasets and videos; a DataLoader worker gets its own copy, and holds at most one budget."""

    TRIM_EVERY = 16
    """The budget's fraction (1/16) evicted between two returns of freed memory to the system."""

    def __init__(self, budget_bytes: int) -> None:
        self.budget = budget_bytes
        self.used = 0
        self.entries: OrderedDict[CacheKey, tuple[Cached, int, Callable[[], None] | None]] = OrderedDict()
        self.evicted_since_trim = 0

    def get(self, key: CacheKey) -> Cached | None:
        entry = self.entries.get(key)
        if entry is None:
            return None
        self.entries.move_to_end(key)
        return entry[0]

    def put(self, key: CacheKey, value: Cached, nbytes: int, on_evict: Callable[[], None] | None = None) -> bool:
        """Whether the value is kept; `on_evict` runs when the budget pushes it out (an open video closes)."""
        if nbytes > self.budget:
            return False
        replaced = self.entries.pop(key, None)
        if replaced is not None:
            self.used -= replaced[1]
        self.entries[key] = (value, nbytes, on_evict)
        self.used += nbytes
        while self.used > self.budget:
            _, (_, evicted, release) = self.entries.popitem(last=False)
            self.used -= evicted
            self.evicted_since_trim += evicted
            if release is not None:
                release()
        if self.evicted_since_trim * self.TRIM_EVERY > self.budget:
            return_freed_memory()
            self.evicted_since_trim = 0
        return True


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    try:
        return ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):  # not glibc: its allocator returns memory its own way
        return None


def return_freed_memory() -> None:
    """Give the system back the pages of freed frames. Frames are freed in the cache's order, not the order
    they were allocated in, so glibc's heap keeps holes it would reuse only for arrays that fit them: over an
    epoch of 32 videos that kept 25% more than the budget resident. Trimming after each 1/16 of the budget
    is evicted bounds that to about 1/16; the time per clip did not change beyond the noise of its
    measurement (32 copies of two_flies: 0.104-0.106 s against 0.097-0.105 s). Trimming after every clip cost
    12%."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


def frame_cache_bytes(frame_cache_mb: int | None = None) -> int:
    """The cache's budget: `frame_cache_mb`, else DREEM_FRAME_CACHE_MB, else 1024 MiB, per process."""
    megabytes = (
        frame_cache_mb
        if frame_cache_mb is not None
        else int(os.environ.get("DREEM_FRAME_CACHE_MB", DEFAULT_FRAME_CACHE_MB))
    )
    return megabytes * 2**20


class ReaderPool:
    """One reader per video. A video stays open while the cache's budget allows, each open one charged its
    reader's `open_bytes` and closed when the budget pushes it out, least recently read first. The one being read
    stays open even when it alone exceeds the budget, so a budget of 0 keeps one video open at a time."""

    def __init__(self, readers: Sequence[VideoReader], cache: ByteBudgetCache) -> None:
        self.readers = list(readers)
        self.cache = cache
        self._outside_budget: int | None = None

    def read(self, video_index: int, frame_indices: list[int]) -> Images:
        reader = self.readers[video_index]
        # Keyed by the reader, not by this pool: datasets that share a reader (a run's splits naming the same
        # video) share its one entry, so it is charged once and closed once. The entry holds the reader, so
        # its id is not reused while the entry lives.
        key = (SHARED, READER, id(reader))
        if self.cache.get(key) is None and not self.cache.put(key, reader, reader.open_bytes, reader.close):
            if self._outside_budget not in (None, video_index):
                self.readers[self._outside_budget].close()
            self._outside_budget = video_index
        return reader.read(frame_indices)
