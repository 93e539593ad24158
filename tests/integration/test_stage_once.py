"""Resuming without downloading back what this node uploaded: against moto's S3 server over HTTP, counting
the requests it really served."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import boto3
import pytest

from dreem_trainer.config.paths import S3Uri
from dreem_trainer.config.run import StorageConfig
from dreem_trainer.storage.download import cache_root
from dreem_trainer.storage.staging import stage
from dreem_trainer.storage.sync import PART_BYTES, DirectorySync
from tests.s3_helpers import RecordingS3, bucket
from tests.trainer_helpers import tiny_config

pytestmark = pytest.mark.slow


def on_s3(endpoint: str, tmp_path: Path, data: str, out: str, chunks: int = 2) -> dict[str, Any]:
    """Config sections that train on the flies in bucket `data`, with checkpoints in bucket `out`."""
    split = {"dir": {"path": f"s3://{data}/flies"}, "n_chunks": chunks}
    return {
        "storage": {"endpoint_url": endpoint, "addressing_style": "path", "cache_dir": str(tmp_path / "cache")},
        "dataset": {"train_dataset": split, "val_dataset": split},
        "checkpointing": {"dirpath": f"s3://{out}/models"},
        "logging": None,
    }


def test_a_resume_reads_what_this_node_uploaded_from_the_cache_but_never_a_stale_copy(
    recording_s3: RecordingS3, tmp_path: Path
) -> None:
    s3 = recording_s3
    data, out = bucket(s3.endpoint, with_flies=True), bucket(s3.endpoint)
    config = tiny_config(tmp_path, **on_s3(s3.endpoint, tmp_path, data, out))
    storage = StorageConfig.model_validate(config.storage.model_dump())
    # The checkpoints of a run, uploaded the way StorageSync uploads them: last.ckpt is a link to the newest
    # checkpoint, so it goes up as a server-side copy.
    local = cache_root(storage) / "outputs" / "earlier-run" / "checkpoints"
    local.mkdir(parents=True)
    weights = b"epoch 0 weights" + bytes(PART_BYTES)  # over one part: a multipart upload, with its own kind of ETag
    (local / "epoch=0.ckpt").write_bytes(weights)
    (local / "last.ckpt").symlink_to("epoch=0.ckpt")
    sync = DirectorySync(storage, local, S3Uri(out, "models"), cache=True)
    sync.sync()
    sync.wait()
    assert not s3.gets(out, "models/last.ckpt")

    run = stage(config)
    assert run.resumed_from == f"s3://{out}/models/last.ckpt"
    assert run.config.model.ckpt_path is not None and Path(run.config.model.ckpt_path).read_bytes() == weights
    assert not s3.gets(out, "models/last.ckpt") and not s3.gets(out, "models/epoch=0.ckpt")

    # Another node replaced it since: this node's copy is stale, and the resume downloads the new one, once.
    boto3.client("s3", endpoint_url=s3.endpoint).put_object(Bucket=out, Key="models/last.ckpt", Body=b"epoch 1!")
    run = stage(config)
    assert run.config.model.ckpt_path is not None and Path(run.config.model.ckpt_path).read_bytes() == b"epoch 1!"
    assert len(s3.gets(out, "models/last.ckpt")) == 1
