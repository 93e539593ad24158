"""Staging once per node, and resuming without downloading back what this node uploaded: against moto's S3
server over HTTP, counting the requests it really served."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import boto3
import pytest
import torch
import yaml

from dreem_trainer.config.paths import S3Uri
from dreem_trainer.config.run import StorageConfig
from dreem_trainer.storage.download import cache_root
from dreem_trainer.storage.node import ENV_STAGE_ID, ENV_STAGED_BY
from dreem_trainer.storage.staging import stage
from dreem_trainer.storage.sync import PART_BYTES, DirectorySync
from tests.conftest import free_port, outputs_of, start_training
from tests.s3_helpers import RecordingS3, bucket, keys
from tests.trainer_helpers import tiny_config, tiny_raw

pytestmark = pytest.mark.slow

STAGE = """
import json, sys
from dreem_trainer.config import validate
from dreem_trainer.storage.staging import stage
run = stage(validate(json.loads(open(sys.argv[1]).read())))
split = run.config.dataset.train_dataset
print(json.dumps({"data": split.dir.path, "checkpoint": run.config.model.ckpt_path, "resumed": run.resumed_from}))
"""


def on_s3(endpoint: str, tmp_path: Path, data: str, out: str, chunks: int = 2) -> dict[str, Any]:
    """Config sections that train on the flies in bucket `data`, with checkpoints in bucket `out`."""
    split = {"dir": {"path": f"s3://{data}/flies"}, "n_chunks": chunks}
    return {
        "storage": {"endpoint_url": endpoint, "addressing_style": "path", "cache_dir": str(tmp_path / "cache")},
        "dataset": {"train_dataset": split, "val_dataset": split},
        "checkpointing": {"dirpath": f"s3://{out}/models"},
        "logging": None,
    }


def repeated(s3: RecordingS3, name: str) -> list[tuple[str, str, str, str | None]]:
    """Requests about bucket `name` that were made more than once: the same listing, HEAD or (ranged) GET."""
    seen = Counter((r.method, r.path, r.query, r.range) for r in s3.requests if r.path.split("/")[1] == name)
    return [request for request, count in seen.items() if count > 1]


def clean_env(**values: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key not in ("LOCAL_RANK", ENV_STAGE_ID, ENV_STAGED_BY)}
    return env | {"PYTHONPATH": os.pathsep.join(sys.path)} | values


def test_two_processes_on_one_node_stage_once_and_train_on_the_same_files(
    recording_s3: RecordingS3, tmp_path: Path
) -> None:
    """As the operator runs a pod with two GPUs: one `dreem train`, whose Trainer starts the second process."""
    s3 = recording_s3
    data, out = bucket(s3.endpoint, with_flies=True), bucket(s3.endpoint)
    trainer = {"strategy": "ddp", "num_nodes": 1, "devices": 2, "max_epochs": 1}
    raw = tiny_raw(tmp_path, **on_s3(s3.endpoint, tmp_path, data, out, chunks=4), trainer=trainer)
    config = tmp_path / "train.yaml"
    config.write_text(yaml.safe_dump(raw))
    env = clean_env(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(free_port()), PL_TORCH_DISTRIBUTED_BACKEND="gloo")
    process = start_training(config, tmp_path, env)
    ((output, _),) = outputs_of([process], timeout=300)
    assert process.returncode == 0, output[-3000:]

    # Both ranks trained: four clips over two ranks, two steps each.
    client = boto3.client("s3", endpoint_url=s3.endpoint)
    last = client.get_object(Bucket=out, Key="models/last.ckpt")["Body"].read()
    assert torch.load(io.BytesIO(last), map_location="cpu", weights_only=False)["global_step"] == 2
    # Each object was downloaded once, and nothing about the data was asked twice: the second rank took the
    # files local rank 0 had staged, without a listing, a HEAD or a GET of its own.
    for key in keys(s3.endpoint, data):
        assert len(s3.gets(data, key)) == 1, key
    assert repeated(s3, data) == []
    cached = tmp_path / "cache" / "s3" / data / "flies"
    assert sorted(p.name for p in cached.iterdir() if not p.name.startswith(".")) == ["two_flies.mp4", "two_flies.slp"]


def test_the_other_processes_wait_for_local_rank_zero_and_fail_with_it(
    recording_s3: RecordingS3, tmp_path: Path
) -> None:
    """As a launcher that starts every process itself (torchrun) runs them, sharing a DREEM_STAGE_ID: here the
    second process starts first and waits."""
    s3 = recording_s3
    data, out = bucket(s3.endpoint, with_flies=True), bucket(s3.endpoint)
    boto3.client("s3", endpoint_url=s3.endpoint).put_object(Bucket=out, Key="models/last.ckpt", Body=b"epoch 3")
    config = tmp_path / "config.json"
    config.write_text(json.dumps(tiny_raw(tmp_path, **on_s3(s3.endpoint, tmp_path, data, out))))

    def start(rank: int, stage_id: str) -> subprocess.Popen[str]:
        # Each process names itself in its requests' User-Agent, so the server's log tells them apart.
        env = clean_env(LOCAL_RANK=str(rank), AWS_SDK_UA_APP_ID=f"rank{rank}", **{ENV_STAGE_ID: stage_id})
        command = [sys.executable, "-c", STAGE, str(config)]
        return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    ranks = [start(1, "start-1"), start(0, "start-1")]
    results = outputs_of(ranks, timeout=120)
    for process, (_, errors) in zip(ranks, results, strict=True):
        assert process.returncode == 0, errors[-3000:]
    staged = [json.loads(stdout) for stdout, _ in results]
    assert staged[0] == staged[1]
    assert staged[0]["resumed"] == f"s3://{out}/models/last.ckpt"
    assert Path(staged[0]["checkpoint"]).read_bytes() == b"epoch 3"
    assert (Path(staged[0]["data"]) / "two_flies.slp").is_file()
    # Rank 0 downloaded each object once; rank 1 asked the store nothing at all.
    for name, key in [(out, "models/last.ckpt"), *((data, key) for key in keys(s3.endpoint, data))]:
        assert len(s3.gets(name, key)) == 1, key
    assert s3.made_by("rank0") and not s3.made_by("rank1")

    # Local rank 0 cannot stage (its data bucket is gone): the waiting process fails too, with rank 0's reason.
    boto3.resource("s3", endpoint_url=s3.endpoint).Bucket(data).objects.all().delete()
    boto3.client("s3", endpoint_url=s3.endpoint).delete_bucket(Bucket=data)
    ranks = [start(1, "start-2"), start(0, "start-2")]
    results = outputs_of(ranks, timeout=120)
    assert ranks[0].returncode != 0 and ranks[1].returncode != 0
    assert f"s3://{data}/flies: the bucket does not exist" in results[1][1]
    assert f"local rank 0 could not stage this node's data: StorageError: s3://{data}/flies" in results[0][1]
    assert not s3.made_by("rank1")


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


def test_runs_sharing_a_cache_stage_their_outputs_in_folders_of_their_own(s3_endpoint: str, tmp_path: Path) -> None:
    """Pods mounting one cache volume are all PID 1 and may start in the same second: two stagings in one
    process within a second, as theirs would be, must not share the folder their checkpoints are mirrored from."""
    data, out = bucket(s3_endpoint, with_flies=True), bucket(s3_endpoint)
    config = tiny_config(tmp_path, **on_s3(s3_endpoint, tmp_path, data, out))
    first, second = stage(config), stage(config)
    assert first.staging is not None and second.staging is not None
    assert first.staging != second.staging and first.staging.is_dir() and second.staging.is_dir()
    assert first.config.checkpointing.dirpath != second.config.checkpointing.dirpath
    local = tiny_config(tmp_path, logging=None)
    assert stage(local).staging is None  # nothing mirrored, no folder made
