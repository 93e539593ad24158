"""Fences a cluster job's uploads by attempt, so a stale gang can never overwrite a newer one's checkpoints.

A DreemTrainingJob's gangs are numbered (the operator's status.attempt, in the pods' DREEM_ATTEMPT). A new gang
normally starts only once the previous one has stopped, but a pod on a lost node (NotReady or partitioned
from the API server) may still be running, and still reach the bucket, after the operator has given up on
it and started the next gang. Each gang's rank 0 therefore *claims* the output before it looks for the
checkpoint to resume from: it writes its attempt into a small fence object beside the checkpoints, and
before every transfer (upload, copy, delete, and before completing a multipart upload) each gang reads the
fence again. A gang that finds a newer attempt there stops writing for good and fails with StaleAttempt.

Claims only move forward: each is a conditional write on the fence's ETag (If-Match, or If-None-Match for
the first), so of two gangs claiming at once the older cannot have the last word. What remains is a
transfer a stale gang began, after its last check, before the newer gang claimed: it lands at most once,
and the newer gang writes every checkpoint it makes after its claim, so that stale object is replaced by
the newer gang's next upload of the same name.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from dreem_trainer.config.paths import S3Uri
from dreem_trainer.config.run import StorageConfig
from dreem_trainer.storage.client import StorageError, explain, http_status, s3_client

log = logging.getLogger(__name__)

FENCE_NAME = ".dreem-attempt"
"""The fence object, beside the checkpoints (a dot-name: no checkpoint scan or mirror ever takes it)."""


class StaleAttempt(StorageError):
    """A newer gang of the same job has claimed the output: this gang must stop writing to it."""


@dataclass(frozen=True)
class AttemptFence:
    storage: StorageConfig
    output: S3Uri
    """The prefix fenced: the checkpoint directory (the fence object lies in it)."""
    attempt: int

    @property
    def uri(self) -> S3Uri:
        return self.output.join(FENCE_NAME)

    def holder(self) -> tuple[int | None, str | None]:
        """The attempt that has claimed the output, and the fence object's ETag; (None, None) before any claim.

        The store's own errors pass through, so the uploader can tell an outage (retried) from a refusal."""
        client = s3_client(self.storage)
        try:
            found = client.get_object(Bucket=self.uri.bucket, Key=self.uri.key)
        except Exception as error:
            if http_status(error) == 404:
                return None, None
            raise
        text = found["Body"].read().decode(errors="replace").strip()
        try:
            return int(text), str(found["ETag"])
        except ValueError:
            raise StorageError(f"{self.uri}: not an attempt number (got {text[:40]!r}); delete it to go on") from None

    def _stale(self, holder: int) -> StaleAttempt:
        return StaleAttempt(
            f"{self.output}: attempt {holder} of this job has taken over the output; attempt {self.attempt} stops "
            "writing to it (its pods outlived the operator's wait, e.g. on a lost node)"
        )

    def claim(self) -> None:
        """Make the output this attempt's, unless a newer attempt holds it (StaleAttempt)."""
        client = s3_client(self.storage)
        while True:
            try:
                holder, etag = self.holder()
            except StorageError:
                raise
            except Exception as error:
                raise StorageError(f"{self.uri}: {explain(error)}") from None
            if holder is not None and holder > self.attempt:
                raise self._stale(holder)
            if holder == self.attempt:
                return
            condition: dict[str, Any] = {"IfMatch": etag} if etag else {"IfNoneMatch": "*"}
            try:
                client.put_object(
                    Bucket=self.uri.bucket, Key=self.uri.key, Body=str(self.attempt).encode(), **condition
                )
                log.info("attempt %d claimed %s", self.attempt, self.output)
                return
            except Exception as error:
                status = http_status(error)
                if status in (409, 412):
                    continue  # claimed by someone else meanwhile: read again
                if status != 501:
                    raise StorageError(f"{self.uri}: {explain(error)}") from None
            # A store without conditional writes: claims still only move forward, by the read above.
            client.put_object(Bucket=self.uri.bucket, Key=self.uri.key, Body=str(self.attempt).encode())
            return

    def check(self) -> None:
        """Raise StaleAttempt when a newer attempt has claimed the output."""
        holder, _ = self.holder()
        if holder is not None and holder > self.attempt:
            raise self._stale(holder)
