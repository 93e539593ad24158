"""Two-process DDP on CPU (gloo): two `dreem train` processes, one per node, with the env the operator sets."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import pytest
import torch
import yaml

from tests.conftest import free_port, outputs_of, start_training
from tests.trainer_helpers import tiny_raw

pytestmark = pytest.mark.slow


def test_two_nodes_split_the_clips_and_only_rank_zero_writes(tmp_path: Path) -> None:
    raw = tiny_raw(tmp_path, trainer={"strategy": "ddp", "num_nodes": 2, "devices": 1, "max_epochs": 1})
    raw["dataset"]["train_dataset"]["n_chunks"] = 4
    raw["dataset"]["val_dataset"]["n_chunks"] = 4
    config = tmp_path / "train.yaml"
    config.write_text(yaml.safe_dump(raw))
    port = free_port()
    processes = []
    for rank in (0, 1):
        workdir = tmp_path / f"node{rank}"
        workdir.mkdir()
        env = os.environ | {
            "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": str(port),
            "NODE_RANK": str(rank),
            "WORLD_SIZE": "2",
            "PL_TORCH_DISTRIBUTED_BACKEND": "gloo",
        }
        env.pop("LOCAL_RANK", None)
        processes.append(start_training(config, workdir, env))
    outputs = [stdout for stdout, _ in outputs_of(processes, timeout=300)]
    for process, output in zip(processes, outputs, strict=True):
        assert process.returncode == 0, output[-3000:]

    checkpoint = torch.load(tmp_path / "models" / "last.ckpt", map_location="cpu", weights_only=False)
    # Four training clips over two ranks: two steps per rank, not four.
    assert checkpoint["global_step"] == 2
    versions = list((tmp_path / "logs" / "tiny").glob("version_*"))
    assert len(versions) == 1, versions
    with (versions[0] / "metrics.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    evaluated = [float(row["val_num_objects"]) for row in rows if row.get("val_num_objects")]
    # Each rank tracks two of the four validation clips (32 instances); the logged count covers all 64.
    assert evaluated == [64.0]
    assert "epoch 1/1:" in outputs[0] and "epoch 1/1:" not in outputs[1]
