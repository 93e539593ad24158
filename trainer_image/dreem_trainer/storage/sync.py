"""Mirrors a local directory (checkpoints, logs) to an S3 prefix from a background thread.

Uploads read each file through one open handle, so a file replaced while it uploads (checkpoints are
written by rename, see training.checkpoint_io) still goes up whole; an S3 object appears only once its
upload completes, so an object under the prefix is always a complete file. A link (last.ckpt pointing
at a best checkpoint) becomes a server-side copy, not a second upload. Failed uploads are retried with
backoff while training goes on. With an AttemptFence, every transfer is checked against it first, and a
fenced-out sync transfers nothing more (see storage.fence). With `cache`, each file uploaded becomes the
download cache's copy of its object (storage.download.register), so a resume on this node reads it there.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, BinaryIO

from dreem_trainer.config.paths import S3Uri
from dreem_trainer.config.run import StorageConfig
from dreem_trainer.storage.client import StorageError, error_code, explain, http_status, refused, s3_client
from dreem_trainer.storage.download import forget, register, register_copy
from dreem_trainer.storage.fence import AttemptFence, StaleAttempt

log = logging.getLogger(__name__)

MULTIPART_THRESHOLD = 64 * 2**20
PART_BYTES = 16 * 2**20
Signature = tuple[str, int, int] | tuple[str, str]


def transfer_config() -> Any:
    from boto3.s3.transfer import TransferConfig

    return TransferConfig(multipart_threshold=MULTIPART_THRESHOLD, multipart_chunksize=PART_BYTES, use_threads=False)


class DirectorySync:
    """Call `sync()` whenever the directory may have changed; `wait()` before the process exits."""

    def __init__(
        self,
        storage: StorageConfig,
        local: Path,
        remote: S3Uri,
        retry_for_s: float = 900.0,
        fence: AttemptFence | None = None,
        cache: bool = False,
    ) -> None:
        self.storage = storage
        self.local = local
        self.remote = remote
        self.retry_for_s = retry_for_s
        self.fence = fence
        self.cache = cache
        """Register every upload in the download cache: for files only ever replaced whole (checkpoints),
        never for files appended in place (logs)."""
        self.fenced: StaleAttempt | None = None
        """Set once a newer attempt has claimed the output: nothing more is transferred."""
        self.mirrored: dict[str, Signature] = {}
        self.pending: list[Future[None]] = []
        self.failures: dict[str, str] = {}
        self.outage_since: float | None = None
        """When the store last stopped answering, until a transfer goes through again."""
        self.refused: StorageError | None = None
        """The first transfer the store refused outright (access denied, no such bucket): retrying will not
        help, and training on would store nothing, so the run stops at its next checkpointing hook."""
        self.on_remote: set[str] = set()
        """Names whose latest upload finished: the only valid sources of a server-side copy."""
        self.etags: dict[str, str] = {}
        """The ETag of each file's latest upload: what a copy of it is registered against."""
        self.lock = threading.Lock()
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="dreem-sync")

    def scan(self) -> dict[str, Signature]:
        found: dict[str, Signature] = {}
        if not self.local.is_dir():
            return found
        for path in sorted(self.local.rglob("*")):
            relative = path.relative_to(self.local).as_posix()
            if path.name.startswith(".") or path.name.endswith(".tmp"):
                continue
            if path.is_symlink():
                target = path.resolve()
                if target.is_file() and target.is_relative_to(self.local.resolve()):
                    found[relative] = ("link", target.relative_to(self.local.resolve()).as_posix())
            elif path.is_file():
                stat = path.stat()
                found[relative] = ("file", stat.st_size, stat.st_mtime_ns)
        return found

    def sync(self) -> None:
        """Queue uploads for new and changed files, then copies for links, then deletions."""
        current = self.scan()
        changed = [name for name, signature in current.items() if self.mirrored.get(name) != signature]
        files = [name for name in changed if current[name][0] == "file"]
        links = [name for name in changed if current[name][0] == "link"]
        removed = [name for name in self.mirrored if name not in current]
        with self.lock:
            for name in files:
                self._queue(self._upload, name)
            for name in links:
                self._queue(self._copy, str(current[name][1]), name)
            for name in removed:
                self._queue(self._delete, name)
        self.mirrored = current

    def delete_remote(self, name: str) -> None:
        """Queue the deletion of a file this sync never had locally (a checkpoint kept from before a resume,
        pruned now); one that is here again is left alone."""
        if not (self.local / name).exists():
            with self.lock:
                self._queue(self._delete, name)

    def _queue(self, action: Any, *args: str) -> None:
        """Queue a transfer (the caller holds `lock`); the one worker runs them in the order queued."""
        self.pending.append(self.executor.submit(self._retrying, action, *args))

    def wait(self, timeout_s: float | None = None) -> None:
        """Block until every queued transfer is done; raise if any failed for good."""
        with self.lock:
            pending, self.pending = self.pending, []
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        for future in pending:
            future.result(timeout=None if deadline is None else max(0.0, deadline - time.monotonic()))
        if self.fenced is not None:
            raise self.fenced
        # A file that failed but is gone locally (a pruned checkpoint) was superseded: not a loss.
        lost = [message for name, message in self.failures.items() if name in self.mirrored]
        if lost:
            raise StorageError("; ".join(lost))

    def _retrying(self, action: Any, *args: str) -> None:
        """Run a transfer, retrying transient failures (an outage) with backoff for up to `retry_for_s` from the
        outage's start: the transfers queued behind the first share its wait, rather than each waiting as long
        again (ten queued files would hold the end of a run for ten times the window)."""
        name = args[-1]
        delay = 1.0
        while self.fenced is None:
            try:
                self._check_fence()
                action(*args)
                self.failures.pop(name, None)
                self.outage_since = None
                return
            except FileNotFoundError:
                return  # replaced or pruned locally since it was queued: a later sync handles it
            except StaleAttempt as error:
                self.fenced = error
                log.error("%s", error)
                return
            except Exception as error:
                if transient(error) and self.outage_since is None:
                    self.outage_since = time.monotonic()
                deadline = (self.outage_since or time.monotonic()) + self.retry_for_s
                if not transient(error) or time.monotonic() + delay > deadline:
                    self.failures[name] = f"{self.remote.join(name)}: {explain(error)}"
                    log.error("could not store %s: %s", self.remote.join(name), explain(error))
                    # The store refuses this run's writes (credentials, bucket policy, a bucket gone): training
                    # on would store nothing. A refused deletion is not that (check_write lets a run without
                    # DeleteObject go on).
                    if action != self._delete and refused(error) and self.refused is None:
                        self.refused = StorageError(f"{self.failures[name]} (the store refused it; training stops)")
                    return
                log.warning("storage unavailable (%s); retrying %s in %.0f s", explain(error), name, delay)
                time.sleep(delay)
                delay = min(delay * 2, 30.0)

    def _check_fence(self) -> None:
        if self.fence is not None:
            self.fence.check()

    def _upload(self, name: str) -> None:
        self.on_remote.discard(name)
        target = self.remote.join(name)
        with (self.local / name).open("rb") as handle:
            etag = upload_parts(s3_client(self.storage), handle, target, before_commit=self._check_fence)
            if self.cache:
                register(self.storage, target, self.local / name, handle.fileno(), etag)
        self.etags[name] = etag
        self.on_remote.add(name)

    def _copy(self, source: str, name: str) -> None:
        """A link as a server-side copy of its target, or, if the target never made it up, as an upload."""
        if source not in self.on_remote:
            self._upload(name)
            return
        client = s3_client(self.storage)
        origin = self.remote.join(source)
        target = self.remote.join(name)
        client.copy({"Bucket": origin.bucket, "Key": origin.key}, target.bucket, target.key, Config=transfer_config())
        if self.cache and source in self.etags:
            # A copy's ETag is not always its source's (a multipart copy gets its own): ask the store.
            etag = str(client.head_object(Bucket=target.bucket, Key=target.key)["ETag"])
            register_copy(self.storage, origin, self.etags[source], target, etag)
        self.on_remote.add(name)

    def _delete(self, name: str) -> None:
        self.on_remote.discard(name)
        self.etags.pop(name, None)
        target = self.remote.join(name)
        s3_client(self.storage).delete_object(Bucket=target.bucket, Key=target.key)
        if self.cache:
            forget(self.storage, target)


def upload_parts(client: Any, handle: BinaryIO, target: S3Uri, before_commit: Callable[[], None] | None = None) -> str:
    """Upload from one open handle, in 16 MiB parts given to the HTTP layer as bytes; returns the object's ETag.

    s3transfer passes parts as file objects, which http.client sends 16 KiB at a time in a Python loop
    holding the GIL that training needs; a bytes body goes out in one C-level sendall. The object
    appears only when the upload completes, and an abandoned upload is aborted. `before_commit` runs just
    before a multipart upload is completed (the fence check: a long upload is checked again at its end).
    """
    first = handle.read(PART_BYTES)
    if len(first) < PART_BYTES:
        return str(client.put_object(Bucket=target.bucket, Key=target.key, Body=first)["ETag"])
    upload_id = client.create_multipart_upload(Bucket=target.bucket, Key=target.key)["UploadId"]
    try:
        parts = []
        chunk, number = first, 1
        while chunk:
            etag = client.upload_part(
                Bucket=target.bucket, Key=target.key, UploadId=upload_id, PartNumber=number, Body=chunk
            )["ETag"]
            parts.append({"ETag": etag, "PartNumber": number})
            chunk, number = handle.read(PART_BYTES), number + 1
        if before_commit is not None:
            before_commit()
        completed = client.complete_multipart_upload(
            Bucket=target.bucket, Key=target.key, UploadId=upload_id, MultipartUpload={"Parts": parts}
        )
        return str(completed["ETag"])
    except BaseException:
        with contextlib.suppress(Exception):  # during an outage the abort fails too; the error that matters is above
            client.abort_multipart_upload(Bucket=target.bucket, Key=target.key, UploadId=upload_id)
        raise


def transient(error: Exception) -> bool:
    """Worth retrying: the endpoint unreachable or overloaded, not a request it refused."""
    from botocore.exceptions import ClientError, ConnectionError, HTTPClientError

    if isinstance(error, (ConnectionError, HTTPClientError)):
        return True
    if isinstance(error, ClientError):
        status = http_status(error)
        return status >= 500 or status in (408, 429) or error_code(error) in ("RequestTimeout", "SlowDown")
    return False


def newest_checkpoint(storage: StorageConfig, remote: S3Uri) -> S3Uri | None:
    """The most recently completed checkpoint under a prefix (last.ckpt wins a tie)."""
    client = s3_client(storage)
    candidates: list[tuple[Any, bool, str]] = []
    try:
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=remote.bucket, Prefix=remote.prefix):
            for item in page.get("Contents", []):
                key = str(item["Key"])
                if key.endswith(".ckpt") and "/" not in key[len(remote.prefix) :]:
                    candidates.append((item["LastModified"], os.path.basename(key) == "last.ckpt", key))
    except Exception as error:
        raise StorageError(f"{remote}: {explain(error)}") from None
    return S3Uri(remote.bucket, max(candidates)[2]) if candidates else None
