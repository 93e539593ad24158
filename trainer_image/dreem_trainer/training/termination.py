"""SIGTERM (a pod deleted, suspended or preempted) stops training without losing what was written: the
checkpoints already on disk finish uploading, then the process exits 143 (128 + SIGTERM), which Kubernetes
and the operator read as killed, never as finished.

The work happens in a thread of its own, not by unwinding the training loop: in a DDP gang every rank gets
SIGTERM at once, and a rank unwinding through teardown can wait on a peer that is already gone until
Kubernetes' SIGKILL. Lightning's own SIGTERM handler is replaced for the same reason: it broadcasts over
the process group from inside the signal handler, which blocks when the peers are stopping too.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Callable
from types import FrameType

import lightning.pytorch as pl

TERMINATED_EXIT = 128 + signal.SIGTERM
MESSAGE = "stopped: received SIGTERM; uploading the checkpoints written so far"


class GracefulTermination(pl.Callback):
    """Installed at train start, after Lightning registers its signal handlers (it restores the previous
    ones at teardown). `flush` uploads what was written, within the pod's grace period."""

    def __init__(self, flush: Callable[[], None] | None = None) -> None:
        self.flush = flush
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
            if self.flush is not None:
                self.flush()
        except BaseException as error:  # report and still exit: the pod is going away regardless
            print(f"stopped: the upload did not finish: {error}", file=sys.stderr, flush=True)
        finally:
            os._exit(TERMINATED_EXIT)
