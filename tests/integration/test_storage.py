"""S3-compatible storage against moto's S3 server over HTTP: data in, checkpoints and logs out, errors."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import boto3
import lightning.pytorch as pl
import pytest
import torch
import yaml

from dreem_trainer.config.paths import S3Uri
from dreem_trainer.config.run import StorageConfig
from dreem_trainer.data.discovery import discover
from dreem_trainer.storage.client import StorageError, check_access
from dreem_trainer.storage.client import _client as s3_client_cache
from dreem_trainer.storage.download import DownloadReport, download, local_path
from dreem_trainer.storage.staging import stage_split
from dreem_trainer.training.run import run_training
from tests.conftest import DEMO_DATA, S3_ENV, free_port, wait_for_port
from tests.s3_helpers import bucket, keys
from tests.trainer_helpers import tiny_config

pytestmark = pytest.mark.slow


def storage(endpoint: str, tmp_path: Path) -> dict[str, Any]:
    return {"endpoint_url": endpoint, "addressing_style": "path", "cache_dir": str(tmp_path / "cache")}


def on_s3(endpoint: str, tmp_path: Path, data: str, models: str) -> dict[str, Any]:
    """Config sections that train on the flies in bucket `data` and write checkpoints to `models`."""
    split = {"dir": {"path": f"s3://{data}/flies"}}
    return {
        "storage": storage(endpoint, tmp_path),
        "dataset": {"train_dataset": split, "val_dataset": split},
        "checkpointing": {"dirpath": models},
    }


def test_data_on_s3_train_then_checkpoints_logs_and_config_on_s3(s3_endpoint: str, tmp_path: Path) -> None:
    data, out = bucket(s3_endpoint, with_flies=True), bucket(s3_endpoint)
    config = tiny_config(
        tmp_path,
        **on_s3(s3_endpoint, tmp_path, data, f"s3://{out}/run/models"),
        logging={"save_dir": f"s3://{out}/run/logs", "logger_type": "TensorBoardLogger"},
        trainer={"max_epochs": 2},
    )
    run_training(config)
    stored = keys(s3_endpoint, out)
    assert "run/models/config.yaml" in stored and "run/models/last.ckpt" in stored
    assert any(k.startswith("run/models/epoch=") for k in stored)
    assert any(k.startswith("run/logs/tiny/version_0/events.out.tfevents") for k in stored)
    client = boto3.client("s3", endpoint_url=s3_endpoint)
    for key in (k for k in stored if k.endswith(".ckpt")):
        state = torch.load(io.BytesIO(client.get_object(Bucket=out, Key=key)["Body"].read()), weights_only=False)
        assert state["epoch"] in (0, 1) and "state_dict" in state
    last = torch.load(
        io.BytesIO(client.get_object(Bucket=out, Key="run/models/last.ckpt")["Body"].read()), weights_only=False
    )
    assert last["epoch"] == 1
    config_text = client.get_object(Bucket=out, Key="run/models/config.yaml")["Body"].read().decode()
    assert f"s3://{data}/flies" in config_text and "testing-secret" not in config_text
    # TensorBoard reads the logs straight from the bucket (in its own process, as `tensorboard --logdir`).
    reader = (
        "import sys\n"
        "from tensorboard.backend.event_processing.event_accumulator import EventAccumulator\n"
        "events = EventAccumulator(sys.argv[1]); events.Reload()\n"
        "print(sorted(events.Tags()['scalars']), len(events.Scalars('val_loss')))"
    )
    shown = subprocess.run(
        [sys.executable, "-c", reader, f"s3://{out}/run/logs/tiny/version_0"],
        env={**os.environ, "S3_ENDPOINT": s3_endpoint},
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "'train_loss_epoch'" in shown and "'val_idf1'" in shown and shown.strip().endswith(" 2")


def test_dreem_track_takes_a_checkpoint_on_s3(s3_endpoint: str, tmp_path: Path) -> None:
    """A cluster job's checkpoint is in the bucket: `dreem track --checkpoint s3://...` downloads it (it
    answered 's3:/b/last.ckpt: no such checkpoint', the URI cut as a local path)."""
    from typer.testing import CliRunner

    from dreem_trainer.cli import app

    run_training(tiny_config(tmp_path))
    out = bucket(s3_endpoint)
    boto3.client("s3", endpoint_url=s3_endpoint).upload_file(
        str((tmp_path / "models" / "last.ckpt").resolve()), out, "run/last.ckpt"
    )
    settings = storage(s3_endpoint, tmp_path)
    sets = [f"--set=storage.{key}={value}" for key, value in settings.items()]
    tracked = tmp_path / "tracked"
    result = CliRunner().invoke(
        app, ["track", str(DEMO_DATA), "--checkpoint", f"s3://{out}/run/last.ckpt", "--output", str(tracked), *sets]
    )
    assert result.exit_code == 0, result.output
    assert (tracked / "two_flies.dreem_track.slp").exists()


def test_track_inputs_on_s3_are_staged_like_training_data(s3_endpoint: str, tmp_path: Path) -> None:
    data = bucket(s3_endpoint, with_flies=True)
    config = tiny_config(tmp_path, storage=storage(s3_endpoint, tmp_path))
    cache = tmp_path / "cache" / "s3" / data / "flies"
    test_split = config.dataset.test_split()
    files = test_split.reading(
        slp_files=[f"s3://{data}/flies/two_flies.slp"], video_files=[f"s3://{data}/flies/two_flies.mp4"]
    )
    for split in (files, test_split.reading(f"s3://{data}/flies")):
        (pair,) = discover(stage_split(config.storage, split))
        assert (pair.labels_path, pair.video_path) == (str(cache / "two_flies.slp"), str(cache / "two_flies.mp4"))
        assert Path(pair.video_path).read_bytes() == (DEMO_DATA / "two_flies.mp4").read_bytes()


def test_a_finished_run_resumes_without_training_again(s3_endpoint: str, tmp_path: Path) -> None:
    data, out = bucket(s3_endpoint, with_flies=True), bucket(s3_endpoint)
    sections = on_s3(s3_endpoint, tmp_path, data, f"s3://{out}/models") | {"logging": None}
    first = run_training(tiny_config(tmp_path, trainer={"max_epochs": 1}, **sections))
    assert first.global_step == 2
    more = run_training(tiny_config(tmp_path, trainer={"max_epochs": 2}, **sections))
    assert more.global_step == 4 and more.current_epoch == 2  # resumed: one more epoch, not two
    again = run_training(tiny_config(tmp_path, trainer={"max_epochs": 2}, **sections))
    assert again.global_step == 4  # finished: nothing trained
    fresh = run_training(
        tiny_config(
            tmp_path,
            trainer={"max_epochs": 1},
            checkpointing={"dirpath": f"s3://{out}/models", "resume": "never"},
            **{k: v for k, v in sections.items() if k != "checkpointing"},
        )
    )
    assert fresh.global_step == 2


def test_a_fresh_run_keeps_another_runs_checkpoints_on_s3(s3_endpoint: str, tmp_path: Path) -> None:
    """resume: never into an S3 prefix holding another run's checkpoints wrote over its last.ckpt and its best
    files of the same names, where a local folder kept them in earlier-<time>/: the prefix keeps them so too."""
    out = bucket(s3_endpoint)
    client = boto3.client("s3", endpoint_url=s3_endpoint)

    def config(epochs: int, lr: float, **checkpointing: Any) -> Any:
        return tiny_config(
            tmp_path,
            logging=None,
            trainer={"max_epochs": epochs},
            optimizer={"lr": lr},
            storage=storage(s3_endpoint, tmp_path),
            checkpointing={"dirpath": f"s3://{out}/models"} | checkpointing,
        )

    def stored(prefix: str) -> dict[str, bytes]:
        """The objects directly under `prefix`, by name."""
        names = [key.removeprefix(prefix) for key in keys(s3_endpoint, out, prefix)]
        return {
            name: client.get_object(Bucket=out, Key=prefix + name)["Body"].read() for name in names if "/" not in name
        }

    run_training(config(2, 0.001))
    first = {name: body for name, body in stored("models/").items() if name.endswith(".ckpt")}
    assert "last.ckpt" in first and len(first) > 1
    run_training(config(1, 0.01, resume="never"))
    (kept,) = {key.split("/")[1] for key in keys(s3_endpoint, out, "models/earlier-")}
    earlier = stored(f"models/{kept}/")
    assert {name: body for name, body in earlier.items() if name != "config.yaml"} == first
    # With the configuration they were trained with; the prefix's own is the second run's.
    assert yaml.safe_load(earlier["config.yaml"])["optimizer"]["lr"] == 0.001
    now = stored("models/")
    assert yaml.safe_load(now["config.yaml"])["optimizer"]["lr"] == 0.01
    assert [name for name in now if not name.endswith(".ckpt")] == ["config.yaml"]
    assert torch.load(io.BytesIO(now["last.ckpt"]), weights_only=False)["epoch"] == 0  # the second run's own
    # Resuming moves nothing: the prefix's checkpoints are the run's own.
    assert run_training(config(2, 0.01)).current_epoch == 2
    assert {key.split("/")[1] for key in keys(s3_endpoint, out, "models/earlier-")} == {kept}


def test_download_cache_skips_unchanged_and_refetches_changed(s3_endpoint: str, tmp_path: Path) -> None:
    data = bucket(s3_endpoint, with_flies=True)
    settings = StorageConfig.model_validate(storage(s3_endpoint, tmp_path))
    first, second = DownloadReport(), DownloadReport()
    local = download(settings, f"s3://{data}/flies", first)
    assert (first.fetched, first.skipped) == (2, 0)
    assert (local / "two_flies.slp").read_bytes() == (DEMO_DATA / "two_flies.slp").read_bytes()
    download(settings, f"s3://{data}/flies", second)
    assert (second.fetched, second.skipped) == (0, 2)
    # A truncated file (a killed copy) or a changed object is fetched again.
    (local / "two_flies.slp").write_bytes(b"half")
    boto3.client("s3", endpoint_url=s3_endpoint).put_object(Bucket=data, Key="flies/two_flies.mp4", Body=b"new video")
    third = DownloadReport()
    download(settings, f"s3://{data}/flies", third)
    assert (third.fetched, third.skipped) == (2, 0)
    assert (local / "two_flies.mp4").read_bytes() == b"new video"
    assert not list(local.glob("*.partial")) and not list(local.glob(".*.partial"))


def test_a_prefix_download_follows_the_bucket_and_skips_folder_markers(s3_endpoint: str, tmp_path: Path) -> None:
    data = bucket(s3_endpoint, with_flies=True)
    client = boto3.client("s3", endpoint_url=s3_endpoint)
    client.put_object(Bucket=data, Key="flies/", Body=b"")  # the S3 console's "Create folder"
    client.put_object(Bucket=data, Key="flies/takes/", Body=b"")
    client.upload_file(str(DEMO_DATA / "two_flies.slp"), data, "flies/takes/bad_take.slp")
    settings = StorageConfig.model_validate(storage(s3_endpoint, tmp_path))
    local = download(settings, f"s3://{data}/flies")
    assert sorted(p.relative_to(local).as_posix() for p in local.rglob("*") if not p.name.startswith(".")) == [
        "takes",
        "takes/bad_take.slp",
        "two_flies.mp4",
        "two_flies.slp",
    ]
    # A take deleted from the bucket since is not trained on from the cache.
    client.delete_object(Bucket=data, Key="flies/takes/bad_take.slp")
    download(settings, f"s3://{data}/flies")
    assert not (local / "takes" / "bad_take.slp").exists()
    assert (local / "two_flies.slp").read_bytes() == (DEMO_DATA / "two_flies.slp").read_bytes()


def test_keys_outside_the_cache_are_refused(tmp_path: Path) -> None:
    with pytest.raises(StorageError, match="outside the cache directory"):
        local_path(tmp_path, S3Uri("bucket", "../../etc/passwd"))
    with pytest.raises(StorageError, match="outside the cache directory"):
        local_path(tmp_path, S3Uri("bucket", "/abs/key"))
    with pytest.raises(ValueError, match="may not contain"):
        S3Uri.parse("s3://bucket/a/../../b")


def test_missing_bucket_and_unreachable_endpoint_fail_before_training(s3_endpoint: str, tmp_path: Path) -> None:
    settings = StorageConfig.model_validate(storage(s3_endpoint, tmp_path))
    with pytest.raises(StorageError, match=r"s3://no-such-bucket-here/x: the bucket does not exist"):
        check_access(settings, S3Uri.parse("s3://no-such-bucket-here/x"))
    down = StorageConfig.model_validate({"endpoint_url": "http://127.0.0.1:9", "max_attempts": 1})
    with pytest.raises(StorageError, match=r"s3://some-bucket/data: cannot reach the endpoint"):
        check_access(down, S3Uri.parse("s3://some-bucket/data"))
    config = tiny_config(
        tmp_path, storage=storage(s3_endpoint, tmp_path), checkpointing={"dirpath": "s3://no-such-bucket-here/m"}
    )
    with pytest.raises(StorageError, match="no-such-bucket-here"):
        run_training(config)
    assert not (tmp_path / "logs").exists()  # nothing trained, nothing logged


def test_wrong_credentials_are_named_without_the_secret(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A second moto server, in its own process, that checks credentials like a real endpoint."""
    port = free_port()
    script = (
        "from moto.server import ThreadedMotoServer; import time\n"
        f"ThreadedMotoServer(ip_address='127.0.0.1', port={port}, verbose=False).start(); time.sleep(120)"
    )
    server = subprocess.Popen([sys.executable, "-c", script], env={**os.environ, "INITIAL_NO_AUTH_ACTION_COUNT": "0"})
    try:
        wait_for_port(port)
        for key, value in S3_ENV.items():
            monkeypatch.setenv(key, value)
        settings = StorageConfig.model_validate(
            {"endpoint_url": f"http://127.0.0.1:{port}", "addressing_style": "path"}
        )
        with pytest.raises(StorageError) as raised:
            check_access(settings, S3Uri.parse("s3://lab-data/flies"))
        message = str(raised.value)
        assert message.startswith("s3://lab-data/flies: access denied: check the credentials")
        assert os.environ["AWS_SECRET_ACCESS_KEY"] not in message and os.environ["AWS_ACCESS_KEY_ID"] not in message
    finally:
        server.kill()
        server.wait()


def test_endpoint_from_aws_endpoint_url(s3_endpoint: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without storage.endpoint_url, boto3's standard AWS_ENDPOINT_URL variable names the endpoint."""
    data = bucket(s3_endpoint, with_flies=True)
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_endpoint)
    # A region no other test uses, so the cached client is built with this environment.
    settings = StorageConfig.model_validate(
        {"region": "eu-west-3", "addressing_style": "path", "cache_dir": str(tmp_path)}
    )
    check_access(settings, S3Uri.parse(f"s3://{data}/flies"))
    assert (download(settings, f"s3://{data}/flies/two_flies.slp")).read_bytes() == (
        DEMO_DATA / "two_flies.slp"
    ).read_bytes()


def test_logs_on_s3_hold_every_epoch(s3_endpoint: str, tmp_path: Path) -> None:
    """The final flush of the logger must reach the bucket too."""
    data, out = bucket(s3_endpoint, with_flies=True), bucket(s3_endpoint)
    run_training(
        tiny_config(
            tmp_path,
            **on_s3(s3_endpoint, tmp_path, data, f"s3://{out}/models"),
            logging={"save_dir": f"s3://{out}/logs", "logger_type": "CSVLogger"},
            trainer={"max_epochs": 3},
        )
    )
    client = boto3.client("s3", endpoint_url=s3_endpoint)
    text = client.get_object(Bucket=out, Key="logs/tiny/version_0/metrics.csv")["Body"].read().decode()
    rows = list(csv.DictReader(io.StringIO(text)))
    assert sorted({row["epoch"] for row in rows if row.get("val_loss")}) == ["0", "1", "2"]
    assert not list((tmp_path / "cache" / "outputs").glob("*/*")), "staged outputs left in the cache after upload"


def test_a_resume_on_s3_adds_to_the_logs_and_configurations_of_the_run_before(s3_endpoint: str, tmp_path: Path) -> None:
    """A resumed run starts from a fresh local staging folder; what the bucket holds of the run before (its
    metrics.csv, its config.yaml) must not be replaced by the resumed run's."""
    data, out = bucket(s3_endpoint, with_flies=True), bucket(s3_endpoint)

    def config(epochs: int, lr: float) -> Any:
        return tiny_config(
            tmp_path,
            **on_s3(s3_endpoint, tmp_path, data, f"s3://{out}/models"),
            logging={"save_dir": f"s3://{out}/logs", "logger_type": "CSVLogger"},
            optimizer={"lr": lr},
            trainer={"max_epochs": epochs},
        )

    client = boto3.client("s3", endpoint_url=s3_endpoint)

    def text(key: str) -> str:
        return str(client.get_object(Bucket=out, Key=key)["Body"].read().decode())

    def epochs(version: int) -> list[str]:
        rows = csv.DictReader(io.StringIO(text(f"logs/tiny/version_{version}/metrics.csv")))
        return sorted({row["epoch"] for row in rows if row.get("val_loss")})

    run_training(config(2, 0.001))
    run_training(config(3, 0.002))  # resumed, with a changed learning rate
    assert epochs(0) == ["0", "1"] and epochs(1) == ["2"]
    (kept,) = [key for key in keys(s3_endpoint, out, "models/config.") if key != "models/config.yaml"]
    assert "lr: 0.002" in text("models/config.yaml") and "lr: 0.001" in text(kept)


def test_outputs_the_store_refuses_stop_the_run_at_start_and_as_soon_as_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A moto server enforcing IAM policies: credentials that may read but not write fail before training;
    ones allowed only the start-up check's marker (a bucket policy changed since) stop at the first
    checkpoint the store refuses, not hours later at the end of the run."""
    port = free_port()
    script = (
        "from moto.server import ThreadedMotoServer; import time\n"
        f"ThreadedMotoServer(ip_address='127.0.0.1', port={port}, verbose=False).start(); time.sleep(300)"
    )
    server = subprocess.Popen([sys.executable, "-c", script], env={**os.environ, "INITIAL_NO_AUTH_ACTION_COUNT": "10"})
    endpoint = f"http://127.0.0.1:{port}"
    try:
        wait_for_port(port)
        admin = {
            "endpoint_url": endpoint,
            "region_name": "us-east-1",
            "aws_access_key_id": S3_ENV["AWS_ACCESS_KEY_ID"],
            "aws_secret_access_key": S3_ENV["AWS_SECRET_ACCESS_KEY"],
        }
        boto3.client("s3", **admin).create_bucket(Bucket="out")
        iam = boto3.client("iam", **admin)

        def user(name: str, statements: list[dict[str, Any]]) -> dict[str, str]:
            iam.create_user(UserName=name)
            iam.put_user_policy(
                UserName=name,
                PolicyName="p",
                PolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": statements}),
            )
            key = iam.create_access_key(UserName=name)["AccessKey"]
            return {"AWS_ACCESS_KEY_ID": key["AccessKeyId"], "AWS_SECRET_ACCESS_KEY": key["SecretAccessKey"]}

        # (moto names HEAD of a bucket s3:HeadBucket; AWS checks s3:ListBucket)
        read = {"Effect": "Allow", "Action": ["s3:GetObject", "s3:ListBucket", "s3:HeadBucket"], "Resource": "*"}
        marker = {
            "Effect": "Allow",
            "Action": ["s3:PutObject", "s3:DeleteObject"],
            "Resource": "arn:aws:s3:::out/models/.dreem-write-check-*",
        }
        reader, checked = user("reader", [read]), user("checked", [read, marker])
        puts = {"Effect": "Allow", "Action": ["s3:PutObject"], "Resource": "*"}
        writer = user("writer", [read, puts])  # no DeleteObject: what save_top_k prunes stays in the bucket
        settings = {"endpoint_url": endpoint, "addressing_style": "path", "cache_dir": str(tmp_path / "cache")}

        def train(credentials: dict[str, str], refused: bool = True) -> tuple[str, int]:
            for key, value in credentials.items():
                monkeypatch.setenv(key, value)
            s3_client_cache.cache_clear()  # a process reads its credentials once; here one process plays two
            epochs = Epochs()
            config = tiny_config(
                tmp_path,
                logging=None,
                trainer={"max_epochs": 3},
                storage=settings | {"max_attempts": 1},
                checkpointing={"dirpath": "s3://out/models", "save_top_k": 1},
            )
            if not refused:
                run_training(config, callbacks=[epochs])
                return "", epochs.started
            with pytest.raises(StorageError) as raised:
                run_training(config, callbacks=[epochs])
            return str(raised.value), epochs.started

        message, epochs = train(reader)
        assert message.startswith("s3://out/models: cannot store outputs there (access denied") and epochs == 0
        message, epochs = train(checked)
        # The first upload refused is the run's config.yaml, at start; the run stops at the end of its first
        # epoch's validation, the first checkpointing hook after.
        assert message.startswith("s3://out/models/config.yaml: access denied") and epochs == 1
        # A store that takes the uploads but refuses deletions keeps the checkpoints top-1 prunes: the run goes on.
        assert train(writer, refused=False)[1] == 3
        listing = boto3.client(
            "s3",
            endpoint_url=endpoint,
            region_name="us-east-1",
            aws_access_key_id=writer["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=writer["AWS_SECRET_ACCESS_KEY"],
        ).list_objects_v2(Bucket="out", Prefix="models/epoch=")
        assert len(listing["Contents"]) == 3
    finally:
        server.kill()


class Epochs(pl.Callback):
    def __init__(self) -> None:
        self.started = 0

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.started += 1


def test_a_checkpoint_written_within_an_epoch_is_stored_before_the_epoch_ends(s3_endpoint: str, tmp_path: Path) -> None:
    """every_n_train_steps checkpoints of a long epoch: a node lost later in the epoch must not lose them."""
    out = bucket(s3_endpoint)
    seen = StoredWithinEpoch(s3_endpoint, out)
    split = {"n_chunks": 4}
    config = tiny_config(
        tmp_path,
        logging=None,
        trainer={"max_epochs": 2},
        dataset={"train_dataset": split, "val_dataset": split},
        storage=storage(s3_endpoint, tmp_path),
        checkpointing={"dirpath": f"s3://{out}/models", "every_n_train_steps": 1, "every_n_epochs": 0},
    )
    run_training(config, callbacks=[seen])
    assert seen.stored and all(name.startswith("models/epoch=1-") for name in seen.stored), seen.stored


class StoredWithinEpoch(pl.Callback):
    """At the third batch of the second epoch, the checkpoints of that epoch already in the bucket (waiting up
    to 15 s for uploads under way)."""

    def __init__(self, endpoint: str, name: str) -> None:
        self.endpoint, self.name = endpoint, name
        self.stored: list[str] = []

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, index: int) -> None:
        if trainer.current_epoch != 1 or index != 2:
            return
        deadline = time.monotonic() + 15
        while not self.stored and time.monotonic() < deadline:
            self.stored = [key for key in keys(self.endpoint, self.name, "models/epoch=1-") if key.endswith(".ckpt")]
            time.sleep(0.2)


def test_a_resume_on_s3_keeps_the_best_checkpoints_of_the_run_before(s3_endpoint: str, tmp_path: Path) -> None:
    """Each start stages the S3 output in a new local folder, and Lightning forgets the top-k record of a
    state written in another folder: the first checkpoint after a resume became the best, however bad."""
    out = bucket(s3_endpoint)

    def config(epochs: int) -> Any:
        return tiny_config(
            tmp_path,
            logging=None,
            trainer={"max_epochs": epochs},
            storage=storage(s3_endpoint, tmp_path),
            checkpointing={"dirpath": f"s3://{out}/models", "save_top_k": 1},
        )

    def stored() -> list[str]:
        return [key for key in keys(s3_endpoint, out, "models/epoch=") if key.endswith(".ckpt")]

    def best_so_far_scored(score: float) -> None:
        """Rewrite the S3 last.ckpt's top-k record as if its best had scored `score`."""
        client = boto3.client("s3", endpoint_url=s3_endpoint)
        state = torch.load(io.BytesIO(client.get_object(Bucket=out, Key="models/last.ckpt")["Body"].read()))
        (record,) = [value for value in state["callbacks"].values() if "best_k_models" in value]
        record["best_k_models"] = {path: torch.tensor(score) for path in record["best_k_models"]}
        record["best_model_score"] = record["kth_value"] = torch.tensor(score)
        written = io.BytesIO()
        torch.save(state, written)
        client.put_object(Bucket=out, Key="models/last.ckpt", Body=written.getvalue())

    run_training(config(2))
    (best,) = stored()
    # The best so far scored better than any epoch to come (a val_loss of 0), as a resumed run's best often
    # has when training is about to overfit: the next epoch is no new best.
    best_so_far_scored(0.0)
    trainer = run_training(config(3))
    assert stored() == [best]
    callback = trainer.checkpoint_callback
    assert callback is not None and float(callback.best_model_score) == 0.0  # type: ignore[attr-defined]
    assert Path(callback.best_model_path).name == best.removeprefix("models/")  # type: ignore[attr-defined]
    # Scored worse than the next epoch, the earlier best is pruned, from the bucket where its only copy is.
    best_so_far_scored(100.0)
    run_training(config(4))
    (newest,) = stored()
    assert newest.startswith("models/epoch=3-")


def test_a_run_started_from_another_runs_checkpoint_keeps_no_record_of_its_best(
    s3_endpoint: str, tmp_path: Path
) -> None:
    """model.ckpt_path naming another run's checkpoint starts a new run from its state: that run's best files
    are not this run's, and must not be counted (nor pruned) in this run's folder."""
    out = bucket(s3_endpoint)

    def config(name: str, epochs: int, **checkpointing: Any) -> Any:
        return tiny_config(
            tmp_path / name,
            logging=None,
            trainer={"max_epochs": epochs},
            storage=storage(s3_endpoint, tmp_path),
            checkpointing={"dirpath": f"s3://{out}/{name}", "save_top_k": 2} | checkpointing,
        )

    run_training(config("first", 2))
    started = config("second", 3).model_copy(deep=True)
    started.model.ckpt_path = f"s3://{out}/first/last.ckpt"
    trainer = run_training(started)
    callback = trainer.checkpoint_callback
    assert callback is not None
    kept = {Path(path).name for path in callback.best_k_models}  # type: ignore[attr-defined]
    stored = {key.removeprefix("second/") for key in keys(s3_endpoint, out, "second/epoch=")}
    assert kept and kept <= stored, (kept, stored)


def test_keeping_another_runs_checkpoints_on_s3_never_loses_a_version_written_meanwhile(
    s3_endpoint: str, tmp_path: Path
) -> None:
    """Another writer (an older gang's last upload or pruning) may change a file while it is being kept: a failed
    copy takes the earlier copies away again, and an original written again since its copy is left in place.
    Driven through botocore's own request events. (Each copy is also made only of the version listed,
    CopySourceIfMatch, which S3 and MinIO honour and moto's server ignores.)"""
    from dreem_trainer.storage.client import s3_client
    from dreem_trainer.storage.earlier import keep_earlier_stored_checkpoints

    out = bucket(s3_endpoint)
    client = boto3.client("s3", endpoint_url=s3_endpoint)
    names = ("epoch=0-best_val_loss=0.5.ckpt", "last.ckpt")
    for name in names:
        client.put_object(Bucket=out, Key=f"models/{name}", Body=b"first run")
    config = StorageConfig.model_validate(storage(s3_endpoint, tmp_path))
    remote = S3Uri(out, "models")
    ours = s3_client(config)

    def rewrite_last(body: bytes) -> None:
        client.put_object(Bucket=out, Key="models/last.ckpt", Body=body)

    # The second copy's source goes under it: the first copy is taken away again, nothing else deleted.
    copies: list[str] = []

    def rewrite_before_second_copy(params: Any, **_: Any) -> None:
        copies.append(str(params["CopySource"]))
        if len(copies) == 2:
            client.delete_object(Bucket=out, Key="models/last.ckpt")

    ours.meta.events.register("before-parameter-build.s3.CopyObject", rewrite_before_second_copy)
    try:
        with pytest.raises(StorageError, match=r"models/last\.ckpt: could not keep it in .*earlier-"):
            keep_earlier_stored_checkpoints(config, remote, None)
    finally:
        ours.meta.events.unregister("before-parameter-build.s3.CopyObject", rewrite_before_second_copy)
    assert len(copies) == 2 and keys(s3_endpoint, out) == [f"models/{names[0]}"]
    rewrite_last(b"written meanwhile")

    # An original written again between its copy and its deletion stays where it is: the check before each
    # deletion (a HEAD after the copies, whose own HEADs of their sources come first) sees it changed.
    copied: list[str] = []

    def count_copy(params: Any, **_: Any) -> None:
        copied.append(str(params["Key"]))

    def rewrite_on_check(**_: Any) -> None:
        if len(copied) == len(names) and not rewritten:
            rewritten.append(True)
            rewrite_last(b"written again")

    rewritten: list[bool] = []
    ours.meta.events.register("before-parameter-build.s3.CopyObject", count_copy)
    ours.meta.events.register("before-parameter-build.s3.HeadObject", rewrite_on_check)
    try:
        kept = keep_earlier_stored_checkpoints(config, remote, None)
    finally:
        ours.meta.events.unregister("before-parameter-build.s3.CopyObject", count_copy)
        ours.meta.events.unregister("before-parameter-build.s3.HeadObject", rewrite_on_check)
    assert kept is not None
    stored = {key: client.get_object(Bucket=out, Key=key)["Body"].read() for key in keys(s3_endpoint, out)}
    assert stored == {
        f"{kept.key}/{names[0]}": b"first run",
        f"{kept.key}/last.ckpt": b"written meanwhile",
        "models/last.ckpt": b"written again",
    }
