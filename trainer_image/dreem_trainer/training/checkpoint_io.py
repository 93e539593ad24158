"""Checkpoints written by rename, so no reader (an upload, a resuming process) ever sees half a file."""

from __future__ import annotations

import os
from typing import Any

from lightning.fabric.utilities.types import _PATH
from lightning.pytorch.plugins.io import TorchCheckpointIO


class AtomicCheckpointIO(TorchCheckpointIO):
    def save_checkpoint(self, checkpoint: dict[str, Any], path: _PATH, storage_options: Any | None = None) -> None:
        final = os.fspath(path)
        partial = f"{final}.{os.getpid()}.tmp"
        super().save_checkpoint(checkpoint, partial, storage_options)
        if os.path.islink(final):
            os.unlink(final)
        os.replace(partial, final)
