"""A run killed mid-epoch resumes from its last uploaded checkpoint; a storage outage loses nothing."""

from __future__ import annotations

import io
import os
import re
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import boto3
import pytest
import torch
import yaml

from tests.conftest import DEMO_DATA, S3_ENV, free_port, outputs_of, start_training
from tests.trainer_helpers import tiny_raw

pytestmark = pytest.mark.slow


def new_buckets(endpoint: str) -> tuple[str, str]:
    client = boto3.client("s3", endpoint_url=endpoint)
    data, out = f"data-{uuid.uuid4().hex[:10]}", f"out-{uuid.uuid4().hex[:10]}"
    for name in (data, out):
        client.create_bucket(Bucket=name)
    for suffix in (".slp", ".mp4"):
        client.upload_file(str(DEMO_DATA / f"two_flies{suffix}"), data, f"flies/two_flies{suffix}")
    return data, out


def write_config(tmp_path: Path, endpoint: str, data: str, out: str, epochs: int, save_top_k: int = 1) -> Path:
    raw: dict[str, Any] = tiny_raw(tmp_path, trainer={"max_epochs": epochs}, logging=None)
    for split in ("train_dataset", "val_dataset"):
        raw["dataset"][split]["dir"]["path"] = f"s3://{data}/flies"
        raw["dataset"][split]["n_chunks"] = 4
    raw["checkpointing"] = {"dirpath": f"s3://{out}/models", "save_top_k": save_top_k}
    raw["storage"] = {"endpoint_url": endpoint, "addressing_style": "path", "cache_dir": str(tmp_path / "cache")}
    path = tmp_path / "train.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def train_with_s3_env(config: Path, cwd: Path) -> subprocess.Popen[str]:
    return start_training(config, cwd, {**os.environ, **S3_ENV})


def wait_for_key(endpoint: str, bucket: str, key: str, process: subprocess.Popen[str], timeout: float = 180) -> None:
    client = boto3.client("s3", endpoint_url=endpoint)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()[0][-3000:]
        listed = client.list_objects_v2(Bucket=bucket, Prefix=key).get("Contents", [])
        if listed:
            return
        time.sleep(0.2)
    process.kill()  # it would train on for the rest of the suite
    process.wait()
    raise AssertionError(f"{key} never appeared")


def load(endpoint: str, bucket: str, key: str) -> dict[str, Any]:
    body = boto3.client("s3", endpoint_url=endpoint).get_object(Bucket=bucket, Key=key)["Body"].read()
    state = torch.load(io.BytesIO(body), map_location="cpu", weights_only=False)
    assert isinstance(state, dict)
    return state


def test_killed_mid_epoch_resumes_from_the_last_uploaded_checkpoint(s3_endpoint: str, tmp_path: Path) -> None:
    data, out = new_buckets(s3_endpoint)
    config = write_config(tmp_path, s3_endpoint, data, out, epochs=3)
    first = train_with_s3_env(config, tmp_path)
    wait_for_key(s3_endpoint, out, "models/last.ckpt", first)
    first.kill()  # SIGKILL in the second epoch: no chance to clean up
    first.wait()
    assert load(s3_endpoint, out, "models/last.ckpt")["epoch"] < 2

    second = train_with_s3_env(config, tmp_path)
    ((output, _),) = outputs_of([second], timeout=300)
    assert second.returncode == 0, output[-3000:]
    assert f"resuming from s3://{out}/models/" in output
    final = load(s3_endpoint, out, "models/last.ckpt")
    # Three epochs of four clips: the same end as an uninterrupted run, no epoch trained twice from 0.
    assert final["epoch"] == 2 and final["global_step"] == 12
    assert "epoch 1/3:" not in output


def test_storage_outage_during_training_loses_no_checkpoint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from moto.server import ThreadedMotoServer

    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        for name, value in S3_ENV.items():
            monkeypatch.setenv(name, value)
        data, out = new_buckets(endpoint)
        # Every epoch's checkpoint kept (save_top_k -1), so each one written during the outage must arrive.
        config = write_config(tmp_path, endpoint, data, out, epochs=4, save_top_k=-1)
        training = train_with_s3_env(config, tmp_path)
        wait_for_key(endpoint, out, "models/last.ckpt", training)
        server.stop()
        time.sleep(20)  # storage gone for 20 s while training goes on
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
        server.start()
        ((output, _),) = outputs_of([training], timeout=400)
        assert training.returncode == 0, output[-3000:]
        assert "epoch 4/4:" in output
        stored = [
            item["Key"] for item in boto3.client("s3", endpoint_url=endpoint).list_objects_v2(Bucket=out)["Contents"]
        ]
        best = sorted(key for key in stored if key.startswith("models/epoch="))
        assert [int(key.removeprefix("models/epoch=").split("-")[0]) for key in best] == [0, 1, 2, 3], stored
        for key in best:
            assert f"epoch={load(endpoint, out, key)['epoch']}-" in key  # each file holds the state it names
        assert load(endpoint, out, "models/last.ckpt")["epoch"] == 3
    finally:
        server.stop()


def test_sigterm_stops_training_after_uploading_what_it_wrote(s3_endpoint: str, tmp_path: Path) -> None:
    """A deleted, suspended or preempted pod gets SIGTERM: no checkpoint written may be lost, and the exit
    status must say "killed" (143), never "finished"."""
    data, out = new_buckets(s3_endpoint)
    config = write_config(tmp_path, s3_endpoint, data, out, epochs=50)
    process = train_with_s3_env(config, tmp_path)
    wait_for_key(s3_endpoint, out, "models/last.ckpt", process)
    time.sleep(1.0)
    process.terminate()
    ((output, _),) = outputs_of([process], timeout=120)
    assert process.returncode == 143, output[-3000:]
    assert "stopped: received SIGTERM; uploading the checkpoints written so far" in output
    finished = [int(n) for n in re.findall(r"^epoch (\d+)/50:", output, re.MULTILINE)]
    assert finished and finished[-1] < 50

    # The bucket holds exactly the checkpoints the run left on disk: none written is lost, none is stale.
    (staged,) = (tmp_path / "cache" / "outputs").glob("*/checkpoints")
    left = {path.name: torch.load(path, map_location="cpu", weights_only=False) for path in staged.glob("*.ckpt")}
    listed = boto3.client("s3", endpoint_url=s3_endpoint).list_objects_v2(Bucket=out, Prefix="models/")["Contents"]
    stored = {
        str(item["Key"]).removeprefix("models/"): load(s3_endpoint, out, str(item["Key"]))
        for item in listed
        if str(item["Key"]).endswith(".ckpt")
    }
    assert "last.ckpt" in left and sorted(stored) == sorted(left)
    for name, state in left.items():
        assert (stored[name]["epoch"], stored[name]["global_step"]) == (state["epoch"], state["global_step"]), name
    # The epoch line is printed just before that epoch's checkpoint is written, so at most the epoch the
    # signal interrupted there lacks one (epochs count from 0 in checkpoints).
    assert stored["last.ckpt"]["epoch"] + 1 >= finished[-1] - 1
