"""A stale gang can never overwrite a newer gang's checkpoints: uploads are fenced by attempt (storage.fence),
against moto's S3 server over HTTP, with the resume-from-newest semantics kept."""

from __future__ import annotations

import os
import subprocess
import threading
import time
from pathlib import Path

import boto3
import pytest

from dreem_trainer.config.paths import S3Uri
from dreem_trainer.config.run import StorageConfig
from dreem_trainer.contract import ENV_ATTEMPT, EXIT_STORAGE_ERROR
from dreem_trainer.storage.fence import FENCE_NAME, AttemptFence, StaleAttempt
from dreem_trainer.storage.sync import DirectorySync, newest_checkpoint
from tests.conftest import S3_ENV, dreem_executable
from tests.integration.test_storage_failures import new_buckets, write_config
from tests.s3_helpers import bucket

pytestmark = pytest.mark.slow


def settings(endpoint: str) -> StorageConfig:
    return StorageConfig(endpoint_url=endpoint, addressing_style="path")


def body(endpoint: str, name: str, key: str) -> bytes:
    data: bytes = boto3.client("s3", endpoint_url=endpoint).get_object(Bucket=name, Key=key)["Body"].read()
    return data


def gang(endpoint: str, remote: S3Uri, attempt: int, folder: Path) -> DirectorySync:
    folder.mkdir(parents=True, exist_ok=True)
    fence = AttemptFence(settings(endpoint), remote, attempt)
    fence.claim()
    return DirectorySync(settings(endpoint), folder, remote, retry_for_s=5, fence=fence)


def test_a_newer_attempt_fences_out_an_older_ones_uploads(s3_endpoint: str, tmp_path: Path) -> None:
    name = bucket(s3_endpoint)
    remote = S3Uri(name, "runs/flies/models")
    old = gang(s3_endpoint, remote, 1, tmp_path / "old")
    (old.local / "last.ckpt").write_bytes(b"attempt 1, epoch 3")
    (old.local / "epoch=3.ckpt").write_bytes(b"attempt 1, epoch 3")
    old.sync()
    old.wait()

    # The next gang claims the output, then finds what to resume from: the old gang's newest upload.
    new = gang(s3_endpoint, remote, 2, tmp_path / "new")
    assert newest_checkpoint(settings(s3_endpoint), remote) == remote.join("last.ckpt")
    (new.local / "last.ckpt").write_bytes(b"attempt 2, epoch 4")
    new.sync()
    new.wait()

    # The old gang, still running on a lost node, writes on: a newer checkpoint, a replaced last.ckpt, a pruned
    # best one. None of it reaches the bucket, and it is told why.
    (old.local / "last.ckpt").write_bytes(b"attempt 1, epoch 5")
    (old.local / "epoch=5.ckpt").write_bytes(b"attempt 1, epoch 5")
    (old.local / "epoch=3.ckpt").unlink()
    old.sync()
    with pytest.raises(StaleAttempt, match="attempt 2 of this job has taken over the output; attempt 1 stops"):
        old.wait()
    assert body(s3_endpoint, name, "runs/flies/models/last.ckpt") == b"attempt 2, epoch 4"
    assert body(s3_endpoint, name, "runs/flies/models/epoch=3.ckpt") == b"attempt 1, epoch 3"
    listed = boto3.client("s3", endpoint_url=s3_endpoint).list_objects_v2(Bucket=name)["Contents"]
    assert "runs/flies/models/epoch=5.ckpt" not in {item["Key"] for item in listed}
    assert body(s3_endpoint, name, f"runs/flies/models/{FENCE_NAME}") == b"2"
    with pytest.raises(StaleAttempt):
        AttemptFence(settings(s3_endpoint), remote, 1).claim()

    # The newer gang is not held back by the older one, and resuming still takes the newest checkpoint.
    (new.local / "epoch=6.ckpt").write_bytes(b"attempt 2, epoch 6")
    new.sync()
    new.wait()
    newest = newest_checkpoint(settings(s3_endpoint), remote)
    assert newest is not None and body(s3_endpoint, name, newest.key).startswith(b"attempt 2")


def test_claims_only_move_forward(s3_endpoint: str) -> None:
    remote = S3Uri(bucket(s3_endpoint), "models")
    attempts = [5, 12, 3, 9, 1, 11, 7, 2, 10, 4, 8, 6]  # racing in no particular order
    outcomes: dict[int, str] = {}

    def claim(attempt: int) -> None:
        try:
            AttemptFence(settings(s3_endpoint), remote, attempt).claim()
            outcomes[attempt] = "claimed"
        except StaleAttempt:
            outcomes[attempt] = "stale"

    threads = [threading.Thread(target=claim, args=(attempt,)) for attempt in attempts]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert AttemptFence(settings(s3_endpoint), remote, 0).holder()[0] == 12
    assert outcomes[12] == "claimed" and len(outcomes) == 12


def test_a_fenced_out_trainer_stops_with_the_reason_and_writes_nothing_more(s3_endpoint: str, tmp_path: Path) -> None:
    data, out = new_buckets(s3_endpoint)
    config = write_config(tmp_path, s3_endpoint, data, out, epochs=40)
    log = tmp_path / "attempt-1.log"
    with log.open("w") as handle:
        training = subprocess.Popen(
            [dreem_executable(), "train", "--config", str(config)],
            cwd=tmp_path,
            env={**os.environ, **S3_ENV, ENV_ATTEMPT: "1"},
            stdout=handle,
            stderr=subprocess.STDOUT,
            text=True,
        )
    try:
        client = boto3.client("s3", endpoint_url=s3_endpoint)
        deadline = time.monotonic() + 180
        # The resolved config goes up as training starts, after the gang's claim.
        while not client.list_objects_v2(Bucket=out, Prefix="models/config.yaml").get("Contents"):
            assert training.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.2)
        assert body(s3_endpoint, out, f"models/{FENCE_NAME}") == b"1"
        # A newer gang claims the output (its own training is not needed to show what the old one does). The old
        # gang's first checkpoint, written at the end of its first epoch, never lands.
        AttemptFence(settings(s3_endpoint), S3Uri(out, "models"), 2).claim()
        while "has taken over the output" not in log.read_text():
            assert training.poll() is None or "taken over" in log.read_text(), log.read_text()[-3000:]
            time.sleep(0.1)
        # Transfers run one at a time: once the refusal is logged, nothing the old gang queued can land.
        before = {item["Key"]: item["ETag"] for item in client.list_objects_v2(Bucket=out)["Contents"]}
        assert training.wait(120) == EXIT_STORAGE_ERROR, log.read_text()[-3000:]
    finally:
        if training.poll() is None:
            training.kill()
    after = {item["Key"]: item["ETag"] for item in client.list_objects_v2(Bucket=out)["Contents"]}
    assert after == before
    output = log.read_text()
    assert "storage error:" in output and "attempt 2 of this job has taken over the output" in output, output[-3000:]
    assert "epoch 2/40" not in output and not [key for key in after if key.endswith(".ckpt")]
