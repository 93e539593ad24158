"""One staging per node: local rank 0 downloads and decides, the node's other processes wait and reuse it.

Lightning's `prepare_data` cannot do this here: staging has to finish before the Trainer exists (the checkpoint
to resume from decides the network the module is built with, and the fence must be claimed before it is
chosen). So the processes of one start on one node meet in the cache directory they share, under a stage id:

- Local rank 0 (no LOCAL_RANK, or 0) makes a new id for each start and puts it in its own environment
  (DREEM_STAGED_BY, prefixed with its pid), which Lightning copies into the processes it starts for the
  node's other devices; those accept it only from their parent, so an id leaked into an unrelated process is
  never mistaken for its own. A launcher that starts every process itself may give them DREEM_STAGE_ID
  instead, unique to the start. Rank 0 holds an exclusive lock on `staged/ID.lock` while it stages, then
  writes `staged/ID.json` (what it staged), or `staged/ID.failed` (why it could not).
- Every other local process reads that result instead of touching storage. It waits while rank 0 holds the
  lock; a rank 0 that failed, or died without a word (the kernel drops its lock), makes it fail at once,
  naming the cause. Only a rank 0 that never starts is waited for with a timeout.

A launcher that starts every local process itself (torchrun: LOCAL_RANK set in each) and gives no
DREEM_STAGE_ID leaves them nothing in common to meet by: each then stages on its own, and the per-object
lock in storage.download still downloads each object once per node.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import time
import uuid
from collections.abc import Iterator, MutableMapping
from pathlib import Path

from pydantic import BaseModel

from dreem_trainer.storage.client import StorageError

ENV_STAGE_ID = "DREEM_STAGE_ID"
"""Given by a launcher that starts every local process itself: the id its processes of one start share."""
ENV_STAGED_BY = "DREEM_STAGED_BY"
"""Set by local rank 0 for the processes Lightning starts from it: its pid, a dash, a new id."""
ENV_LOCAL_RANK = "LOCAL_RANK"
"""Set by Lightning in the processes it starts (and by torchrun in all of them); absent in the first one."""

START_TIMEOUT_S = 600.0
"""How long a waiting process gives local rank 0 to begin staging (it starts with the others, or before them)."""
KEEP_RESULTS_S = 7 * 24 * 3600.0
"""Results older than this are removed when a new one is written: no process still waits for them."""


def _valid(stage_id: str) -> bool:
    """A stage id names files: nothing that could reach outside the folder."""
    return re.fullmatch(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}", stage_id) is not None


class StagedFiles(BaseModel):
    """What local rank 0 staged, for the node's other processes: enough to rebuild the same local
    configuration without asking the store anything."""

    local: dict[str, str] = {}
    """Each s3:// path downloaded, and the local path it was downloaded to."""
    resumed_from: str | None = None
    """The checkpoint rank 0 chose to resume from (its s3:// path), if any."""


class NodeStaging:
    """Where the processes of one start on one node meet: `lead` for local rank 0, `wait` for the others."""

    def __init__(self, root: Path, stage_id: str, poll_s: float = 0.2, start_timeout_s: float = START_TIMEOUT_S):
        self.folder = root / "staged"
        self.stage_id = stage_id
        self.poll_s = poll_s
        self.start_timeout_s = start_timeout_s

    @staticmethod
    def from_environment(
        root: Path, environ: MutableMapping[str, str] | None = None
    ) -> tuple[NodeStaging | None, bool]:
        """This start's meeting place and whether this process leads it; (None, False) for a process that is
        not local rank 0 and has no stage id to meet by: it stages on its own."""
        environ = os.environ if environ is None else environ
        leads = int(environ.get(ENV_LOCAL_RANK, "0") or "0") == 0
        given = environ.get(ENV_STAGE_ID, "").strip()
        if given:
            if not _valid(given):
                raise StorageError(f"{ENV_STAGE_ID}={given!r}: use letters, digits, '.', '_' and '-' only")
            return NodeStaging(root, given), leads
        if leads:
            made = environ[ENV_STAGED_BY] = f"{os.getpid()}-{uuid.uuid4().hex}"
            return NodeStaging(root, made), True
        made = environ.get(ENV_STAGED_BY, "")
        if _valid(made) and made.partition("-")[0] == str(os.getppid()):
            return NodeStaging(root, made), False
        return None, False

    def _path(self, suffix: str) -> Path:
        return self.folder / f"{self.stage_id}{suffix}"

    @contextlib.contextmanager
    def lead(self) -> Iterator[StagedFiles]:
        """Stage under the lock; what the block records in the StagedFiles is published when it ends, and an
        error it raises is published as the reason the others fail with."""
        self.folder.mkdir(parents=True, exist_ok=True)
        self._prune()
        for earlier in (".json", ".failed"):  # a launcher's id given again: never an earlier start's result
            self._path(earlier).unlink(missing_ok=True)
        # Locked under a temporary name and then renamed, so no waiter ever sees the lock file unlocked
        # before rank 0 has finished.
        claim = self._path(f".{os.getpid()}.claim")
        with claim.open("w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            os.replace(claim, self._path(".lock"))
            staged = StagedFiles()
            try:
                yield staged
            except BaseException as error:
                self._publish(".failed", f"{type(error).__name__}: {error}")
                raise
            self._publish(".json", staged.model_dump_json())

    def wait(self) -> StagedFiles:
        """Local rank 0's result, once it is there; a StorageError if rank 0 failed, died or never began."""
        deadline = time.monotonic() + self.start_timeout_s
        while True:
            found = self._result()
            if found is not None:
                return found
            if self._path(".lock").is_file():
                if not self._held():
                    # Rank 0 finished between the two looks, or died without writing a result.
                    found = self._result()
                    if found is not None:
                        return found
                    raise StorageError(
                        f"local rank 0 stopped staging this node's data without a result ({self._path('.lock')}); "
                        "see its log"
                    )
            elif time.monotonic() > deadline:
                raise StorageError(
                    f"local rank 0 did not begin staging this node's data within {self.start_timeout_s:.0f} s "
                    f"(no {self._path('.lock')})"
                )
            time.sleep(self.poll_s)

    def _result(self) -> StagedFiles | None:
        failed = self._path(".failed")
        if failed.is_file():
            raise StorageError(f"local rank 0 could not stage this node's data: {failed.read_text()}")
        done = self._path(".json")
        return StagedFiles.model_validate_json(done.read_text()) if done.is_file() else None

    def _held(self) -> bool:
        with self._path(".lock").open("a") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                return True
            return False

    def _publish(self, suffix: str, text: str) -> None:
        """Written whole under a temporary name, then renamed: a reader never sees half of it."""
        partial = self._path(f"{suffix}.{os.getpid()}.partial")
        partial.write_text(text)
        os.replace(partial, self._path(suffix))

    def _prune(self) -> None:
        cutoff = time.time() - KEEP_RESULTS_S
        for old in self.folder.iterdir():
            with contextlib.suppress(OSError):
                if old.stat().st_mtime < cutoff:
                    old.unlink()
