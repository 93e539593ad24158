"""SIGTERM (a pod deleted, suspended or preempted) stops training without losing what was written: the
checkpoints already on disk finish uploading, then the process exits 143 (128 + SIGTERM), which Kubernetes
and the operator read as killed, never as finished.

The work happens in a thread of its own, not by unwinding the training loop: in a DDP gang every rank gets
SIGTERM at once, and a rank unwinding through teardown can wait on a peer that is already gone until
Kubernetes' SIGKILL. Lightning's own SIGTERM handler is replaced for the same reason: it broadcasts over
the process group from inside the signal handler, which blocks when the peers are stopping too.

Training goes on in the main thread meanwhile, so the checkpoint files must hold still while that thread
uploads them: a `CheckpointGate` lets the write in progress finish, then stops every later one.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType

import lightning.pytorch as pl

TERMINATED_EXIT = 128 + signal.SIGTERM
INTERRUPTED_EXIT = 128 + signal.SIGINT
MESSAGE = "stopped: received SIGTERM; uploading the checkpoints written so far"
WAIT_FOR_WRITE_S = 5.0
"""How long the final upload waits for a checkpoint write in progress. In a DDP gang a write can block on
a peer that is already gone (Lightning saves behind a barrier); the upload then goes ahead without it."""


class TrainingInterrupted(Exception):
    """Ctrl-C stopped training. Lightning has already shut the run down (the S3 mirror uploads what was
    written) and would exit 1; the command says instead where the checkpoints are and how to go on, and exits
    INTERRUPTED_EXIT as shells expect of an interrupted command."""


def interruption_advice(checkpoints: str, resumable: bool, resumes_by_itself: bool) -> str:
    """What a user who pressed Ctrl-C needs next: whether anything was saved, and the command that goes on."""
    if not resumable:
        return f"training interrupted before a checkpoint it could resume from was written in {checkpoints}"
    how = "run the same command again" if resumes_by_itself else "run the same command with --resume auto"
    return f"training interrupted; its checkpoints are in {checkpoints}. To go on from the newest, {how}"


class CheckpointGate:
    """Checkpoint files change (written, linked, pruned, scanned for upload) only inside `open()`.

    Without it the SIGTERM upload would race the training loop: it could upload a best checkpoint but not
    the last.ckpt written a moment later, or scan while last.ckpt is being replaced and delete its copy in
    S3. `close()` waits for the change in progress and keeps the gate shut, so the files uploaded are
    exactly the files the run leaves behind, and the main thread stops at its next checkpoint.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.closed = False

    @contextmanager
    def open(self) -> Iterator[bool]:
        """Hold while changing checkpoint files; yields False once closed (then change nothing)."""
        with self._lock:
            yield not self.closed

    def close(self, timeout_s: float = WAIT_FOR_WRITE_S) -> None:
        """Shut the gate for good: the lock is never given back, since the process exits right after."""
        self._lock.acquire(timeout=timeout_s)
        self.closed = True


class GracefulTermination(pl.Callback):
    """Installed at train start, after Lightning registers its signal handlers (it restores the previous
    ones at teardown). `flush` uploads what was written, within the pod's grace period, once `gate` is shut."""

    def __init__(
        self,
        gate: CheckpointGate,
        flush: Callable[[], None] | None = None,
        writes: Callable[[float], None] | None = None,
    ) -> None:
        """`writes(timeout_s)` waits for the checkpoints being written in the background: their write takes
        the gate only at its final rename, so shutting the gate at once would throw a nearly written
        checkpoint away (the restart then resumes an interval earlier)."""
        self.gate = gate
        self.flush = flush
        self.writes = writes
        self.trainer: pl.Trainer | None = None

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if threading.current_thread() is threading.main_thread():
            self.trainer = trainer
            signal.signal(signal.SIGTERM, self._handle)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        launcher = self.trainer.strategy.launcher if self.trainer is not None else None
        if launcher is not None:
            launcher.kill(signum)  # local ranks this process started, when one pod trains on several GPUs
        threading.Thread(target=self._stop, name="dreem-sigterm", daemon=True).start()

    def _stop(self) -> None:
        print(MESSAGE, file=sys.stderr, flush=True)
        try:
            # One wait for the write under way, its rename and the change in progress together: the upload's
            # budget (TERMINATION_UPLOAD_S) leaves WAIT_FOR_WRITE_S of the grace period for all of them.
            deadline = time.monotonic() + WAIT_FOR_WRITE_S
            if self.writes is not None:
                self.writes(WAIT_FOR_WRITE_S)
            self.gate.close(max(0.0, deadline - time.monotonic()))
            if self.flush is not None:
                self.flush()
        except BaseException as error:  # report and still exit: the pod is going away regardless
            print(f"stopped: the upload did not finish: {error}", file=sys.stderr, flush=True)
        finally:
            os._exit(TERMINATED_EXIT)
