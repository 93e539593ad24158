"""SIGTERM (a pod deleted, suspended or preempted) stops training gracefully: the exception below unwinds
Lightning's fit loop, whose `on_exception` hooks let StorageSync finish uploading the checkpoints already
written, and the process then exits 143 (128 + SIGTERM), which Kubernetes and the operator read as killed,
never as finished."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

TERMINATED_EXIT = 128 + signal.SIGTERM


class Terminated(BaseException):
    """Raised in the training thread on SIGTERM. A BaseException, so no `except Exception` swallows it."""


def _raise(signum: int, frame: FrameType | None) -> None:
    raise Terminated(f"received signal {signal.Signals(signum).name}")


@contextmanager
def graceful_termination() -> Iterator[None]:
    """Turn SIGTERM into `Terminated` while training (main thread only; elsewhere a no-op)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
