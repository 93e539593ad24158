"""Checkpoints written by rename, so no reader (an upload, a resuming process) ever sees half a file, and written
in the background, so training waits only for the state to be copied off the model, not for the disk."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from concurrent import futures
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import torch
from lightning.fabric.utilities.types import _PATH
from lightning.pytorch.plugins.io import TorchCheckpointIO
from lightning_utilities.core.apply_func import apply_to_collection

from dreem_trainer.training.termination import CheckpointGate


def _snapshot(tensor: torch.Tensor) -> torch.Tensor:
    """A copy in host memory: the next optimizer step changes the original in place."""
    return tensor.detach().to("cpu", copy=True)


class AtomicCheckpointIO(TorchCheckpointIO):
    """Writes go to a `.tmp` file beside the target (uploads skip those), then replace it in one rename.

    With `background=True` a single writer thread does the writing, in the order asked: a removal or link
    asked after a write waits for that write. `gate` decides at the rename: once SIGTERM shut it, a
    write still queued is dropped, so what is uploaded is what the run leaves behind.
    """

    def __init__(self, gate: CheckpointGate | None = None, background: bool = False) -> None:
        super().__init__()
        self.gate = gate or CheckpointGate()
        self.background = background
        self._executor: ThreadPoolExecutor | None = None
        self._pending: list[Future[None]] = []
        self.removed_elsewhere: list[str] = []
        """Checkpoints Lightning pruned that were not on this disk: kept files of the run from before a resume,
        whose only copies are in the S3 output (StorageSync deletes them there, as a local prune would)."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: _PATH, storage_options: Any | None = None) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options: it writes local files only")
        final = os.fspath(path)
        if not self.background:
            self._write(checkpoint, final)
            return
        snapshot = apply_to_collection(checkpoint, torch.Tensor, _snapshot)
        self._submit(lambda: self._write(snapshot, final))  # takes the gate at its rename

    def _write(self, checkpoint: dict[str, Any], final: str) -> None:
        partial = f"{final}.{os.getpid()}.tmp"
        self._serialize(checkpoint, partial)
        # In the foreground the caller holds the gate already; in the background only the rename takes it,
        # so a SIGTERM never waits for a whole write.
        if self.background:
            with self.gate.open() as allowed:
                if allowed:
                    self._replace(partial, final)
                    return
            os.unlink(partial)
        else:
            self._replace(partial, final)

    @staticmethod
    def _serialize(checkpoint: dict[str, Any], partial: str) -> None:
        """Stream the checkpoint into `partial` and make it durable before any rename can publish it.

        Lightning's own save serialises the whole checkpoint into memory first and stages it in the system
        temporary folder, which doubles the host memory of a write and can fill a pod's small /tmp; the
        `.tmp` file beside the target already gives the atomicity that staging was for. The fsync keeps a node
        that loses power after the rename from leaving an empty file under the checkpoint's name.
        """
        os.makedirs(os.path.dirname(partial) or ".", exist_ok=True)
        try:
            with open(partial, "wb") as file:
                torch.save(checkpoint, file)
                file.flush()
                os.fsync(file.fileno())
        except BaseException:
            # A full disk or a bad object: leave no half file behind (a kill, which runs no handler, still may).
            with contextlib.suppress(FileNotFoundError):
                os.unlink(partial)
            raise

    @staticmethod
    def _replace(partial: str, final: str) -> None:
        if os.path.islink(final):
            os.unlink(final)
        os.replace(partial, final)

    def remove_checkpoint(self, path: _PATH) -> None:
        def remove() -> None:
            if os.path.lexists(path):
                super(AtomicCheckpointIO, self).remove_checkpoint(path)
            else:
                self.removed_elsewhere.append(os.fspath(path))

        self.after_writes(remove)

    def link(self, target: str, path: str) -> None:
        """Make `path` a relative symlink to `target` once `target` is written (rank 0 calls this)."""

        def make_link() -> None:
            if os.path.lexists(path):
                os.unlink(path)
            os.symlink(os.path.relpath(target, os.path.dirname(path)), path)

        self.after_writes(make_link)

    def after_writes(self, action: Callable[[], None]) -> None:
        """Run `action` once every write asked so far is on disk: at once in the foreground (the caller holds
        the gate), in the writer thread under the gate in the background (skipped once it is shut)."""
        if not self.background:
            action()
            return
        self._submit(lambda: self._gated(action))

    def _gated(self, action: Callable[[], None]) -> None:
        with self.gate.open() as allowed:
            if allowed:
                action()

    def _submit(self, action: Callable[[], None]) -> None:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="dreem-checkpoint")
        self._raise_failures(wait=False)
        self._pending.append(self._executor.submit(action))

    def take_removed_elsewhere(self) -> list[str]:
        """The pruned checkpoints that were not on this disk, once each (the writer thread may add more)."""
        taken, self.removed_elsewhere = self.removed_elsewhere, []
        return taken

    def settle(self, timeout_s: float) -> None:
        """Wait up to `timeout_s` for the writes (and the changes queued behind them) asked so far; raises
        nothing, for the SIGTERM path, which uploads whatever is complete then."""
        futures.wait(list(self._pending), timeout=timeout_s)

    def wait(self) -> None:
        """Block until every queued write is on disk; raise the first that failed."""
        self._raise_failures(wait=True)

    def _raise_failures(self, wait: bool) -> None:
        done = [future for future in self._pending if wait or future.done()]
        self._pending = [future for future in self._pending if future not in done]
        for future in done:
            future.result()

    def teardown(self) -> None:
        try:
            self.wait()
        finally:
            if self._executor is not None:
                self._executor.shutdown(wait=True)
                self._executor = None
