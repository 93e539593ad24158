"""What S3 storage costs a training run, against moto's S3 server over HTTP on this machine.

Prints JSON: seconds per epoch with checkpoints and logs going to S3 versus to a local folder (same
workload, background uploads; the target is under 5% of epoch time), and the seconds from process
start to the first optimizer step when a killed run restarts with its data already in the cache and
resumes from the checkpoint in the bucket.

The server stands in for remote storage, so it runs in its own process at the lowest CPU priority:
on a 2-core machine its request handling would otherwise be billed to the trainer. Epoch times
compare epochs 2 and 3 (the first one decodes the video).
Usage: python -m bench.storage
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from typing import Any

from bench.common import DEMO_DATA, REPO, median, run_child


def main() -> None:
    import boto3

    os.environ.update(
        {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench-secret", "AWS_DEFAULT_REGION": "us-east-1"}
    )
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    script = (
        "import os, time; os.nice(19)\n"
        "from moto.server import ThreadedMotoServer\n"
        f"ThreadedMotoServer(ip_address='127.0.0.1', port={port}, verbose=False).start(); time.sleep(3600)"
    )
    server = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                break
        time.sleep(0.2)
    client = boto3.client("s3", endpoint_url=endpoint)
    bucket = f"bench-{uuid.uuid4().hex[:8]}"
    client.create_bucket(Bucket=bucket)
    for suffix in (".slp", ".mp4"):
        client.upload_file(str(DEMO_DATA / f"two_flies{suffix}"), bucket, f"data/two_flies{suffix}")
    try:
        with tempfile.TemporaryDirectory() as tmp:
            three = {"trainer": {"max_epochs": 3}}
            local, _ = run_child(["-m", "bench.train_worker", f"{tmp}/local", json.dumps(three)])
            storage = {"endpoint_url": endpoint, "addressing_style": "path", "cache_dir": f"{tmp}/cache"}
            split = {"dir": {"path": f"s3://{bucket}/data"}}
            s3: dict[str, Any] = three | {
                "storage": storage,
                "dataset": {"train_dataset": split, "val_dataset": split},
                "checkpointing": {"dirpath": f"s3://{bucket}/run/models"},
                "logging": {"save_dir": f"s3://{bucket}/run/logs"},
            }
            remote, _ = run_child(["-m", "bench.train_worker", f"{tmp}/s3", json.dumps(s3)])
            # A restart of the same job: data cached, resume from the bucket's last.ckpt, one more epoch.
            more = s3 | {"trainer": {"max_epochs": 4}}
            restart, _ = run_child(["-m", "bench.train_worker", f"{tmp}/s3", json.dumps(more)])
        local_epoch, remote_epoch = median(local["epoch_seconds"][1:]), median(remote["epoch_seconds"][1:])
        print(
            json.dumps(
                {
                    "workload": "two_flies, crop 128, clip 32, resnet18, d_model 128, 1+1 layers, 3 epochs, CPU",
                    "epoch_seconds_local_output": local["epoch_seconds"],
                    "epoch_seconds_s3_output": remote["epoch_seconds"],
                    "upload_seconds_per_epoch_median": remote_epoch - local_epoch,
                    "upload_share_of_epoch": (remote_epoch - local_epoch) / local_epoch,
                    "restart_to_first_step_s_warm_cache": restart["startup_to_first_step_s"],
                    "cold_start_to_first_step_s_s3": remote["startup_to_first_step_s"],
                    "cold_start_to_first_step_s_local": local["startup_to_first_step_s"],
                },
                indent=2,
            )
        )
    finally:
        server.kill()


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    main()
