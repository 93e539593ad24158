"""Before training: check every s3:// location, download inputs into the cache, give outputs a local
staging folder that is mirrored back, claim the output for this gang (in a cluster job), and find the
checkpoint to resume from.

On a node with several DDP processes only local rank 0 does this; the others take what it staged (the same
local files, the same checkpoint) without asking the store anything (see storage.node)."""

from __future__ import annotations

import logging
import os
import re
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from dreem_trainer.config import DreemConfig
from dreem_trainer.config.data import DatasetSplitConfig
from dreem_trainer.config.paths import S3Uri, is_s3
from dreem_trainer.config.run import LoggingConfig, StorageConfig
from dreem_trainer.contract import ENV_ATTEMPT
from dreem_trainer.storage.client import StorageError, check_access, check_write, explain, not_found, s3_client
from dreem_trainer.storage.download import cache_root, download
from dreem_trainer.storage.fence import AttemptFence
from dreem_trainer.storage.node import NodeStaging, StagedFiles
from dreem_trainer.storage.sync import newest_checkpoint

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MirroredOutput:
    """A local folder the trainer writes, mirrored to an S3 prefix."""

    local: Path
    remote: S3Uri
    cached: bool = False
    """Its uploads become the download cache's copies (checkpoints: a resume on this node reads them there)."""


@dataclass
class StagedRun:
    config: DreemConfig
    """The configuration with every s3:// path replaced by a local one."""
    outputs: list[MirroredOutput] = field(default_factory=list)
    resumed_from: str | None = None
    staging: Path | None = None
    """This process's local folder for mirrored outputs: a cache, removed once everything is uploaded."""
    fence: AttemptFence | None = None
    """In a cluster job with its checkpoints on S3: the claim every upload of this gang is checked against."""


def _s3_paths(config: DreemConfig) -> list[str]:
    paths: list[str] = []
    for split in (config.dataset.train_dataset, config.dataset.val_dataset, config.dataset.test_dataset):
        if split is not None:
            paths += split.dir.paths if split.dir else []
            paths += [*(split.slp_files or []), *(split.video_files or [])]
    paths += [config.model.ckpt_path or "", config.checkpointing.dirpath or ""]
    paths += [config.logging.save_dir] if config.logging else []
    return [path for path in paths if is_s3(path)]


def stage_split(storage: StorageConfig, split: DatasetSplitConfig) -> DatasetSplitConfig:
    """The split with its s3:// data downloaded into the cache and read from there; `dreem train` stages
    every split this way, `dreem track` and `eval` the one they read."""
    return _localise(split, lambda path: str(download(storage, path)))


Localise = Callable[[str], str]
"""An s3:// path to the local path it was staged to."""


def _localise(split: DatasetSplitConfig, localise: Localise) -> DatasetSplitConfig:
    def local(path: str) -> str:
        return localise(path) if is_s3(path) else path

    update: dict[str, object] = {}
    if split.dir is not None and any(is_s3(p) for p in split.dir.paths):
        paths = [local(p) for p in split.dir.paths]
        update["dir"] = split.dir.model_copy(update={"path": paths if isinstance(split.dir.path, list) else paths[0]})
    if split.slp_files:
        update["slp_files"] = [local(p) for p in split.slp_files]
        if split.video_files is not None:
            update["video_files"] = [local(p) for p in split.video_files]
    return split.model_copy(update=update) if update else split


def stage(config: DreemConfig) -> StagedRun:
    """Everything storage needs before the Trainer starts; storage problems fail here, before training.

    Local rank 0 stages and records what it staged; the node's other processes wait for that record and
    build the same local configuration from it."""
    if not _s3_paths(config):
        return _stage(config, StagedFiles())  # the store is not asked anything: nothing to share
    node, leads = NodeStaging.from_environment(cache_root(config.storage))
    if node is not None and not leads:
        staged = node.wait()
        return _assemble(config, lambda path: _staged(staged, path), staged.resumed_from, None)
    if node is None:
        log.info("no stage id shared with local rank 0: staging on this process's own")
        return _stage(config, StagedFiles())
    with node.lead() as staged:
        return _stage(config, staged)


def _staged(staged: StagedFiles, path: str) -> str:
    if path not in staged.local:
        raise StorageError(
            f"{path}: local rank 0 staged no such path; were this node's processes given different configurations?"
        )
    return staged.local[path]


def _stage(config: DreemConfig, staged: StagedFiles) -> StagedRun:
    """Check access, claim the output, choose the checkpoint and download; record it all in `staged`."""
    checked: set[tuple[str, str]] = set()
    for path in _s3_paths(config):
        uri = S3Uri.parse(path)
        if (uri.bucket, uri.key) not in checked:
            check_access(config.storage, uri)
            checked.add((uri.bucket, uri.key))
    for output in {config.checkpointing.dirpath, config.logging.save_dir if config.logging else None}:
        if output is not None and is_s3(output):
            check_write(config.storage, S3Uri.parse(output))

    def fetch(path: str) -> str:
        if path not in staged.local:  # a path two splits share is listed and checked once
            staged.local[path] = str(download(config.storage, path))
        return staged.local[path]

    fence = _claim(config)
    # A run that already wrote checkpoints carries on from its newest, even when it started from
    # model.ckpt_path (a restarted fine-tuning job must not start over from the weights it began with).
    staged.resumed_from = _newest(config) if resumes(config) else None
    if staged.resumed_from is not None:
        log.info("resuming from %s", staged.resumed_from)
    return _continued(_assemble(config, fetch, staged.resumed_from, fence))


def _continued(run: StagedRun) -> StagedRun:
    """The run's outputs carrying on from what their S3 prefixes hold of earlier runs (local rank 0 only: the
    configuration and the logs are written by global rank 0, itself a local rank 0)."""
    storage = run.config.storage
    for output in run.outputs:
        if output.cached:  # the checkpoints
            _earlier_run_config(storage, output)
        elif run.config.logging is not None:
            logging_config = _next_log_version(storage, run.config.logging, output.remote)
            run.config = run.config.model_copy(update={"logging": logging_config})
    return run


def _assemble(
    config: DreemConfig, localise: Localise, resumed_from: str | None, fence: AttemptFence | None
) -> StagedRun:
    """The StagedRun: every s3:// input read through `localise` (the data, then the checkpoint), and the
    outputs given a staging folder of this process."""
    splits = {
        "train_dataset": config.dataset.train_dataset,
        "val_dataset": config.dataset.val_dataset,
        "test_dataset": config.dataset.test_dataset,
    }
    dataset = config.dataset.model_copy(
        update={name: _localise(split, localise) for name, split in splits.items() if split is not None}
    )
    run = StagedRun(config.model_copy(update={"dataset": dataset}), fence=fence)
    checkpointing, logging_config = run.config.checkpointing, run.config.logging
    mirrored = is_s3(checkpointing.dirpath) or (logging_config is not None and is_s3(logging_config.save_dir))
    run.staging = staging = _staging_folder(config.storage) if mirrored else None
    if staging is not None and is_s3(checkpointing.dirpath):
        assert checkpointing.dirpath is not None
        output = MirroredOutput(staging / "checkpoints", S3Uri.parse(checkpointing.dirpath), cached=True)
        run.outputs.append(output)
        checkpointing = checkpointing.model_copy(update={"dirpath": str(output.local)})
    if staging is not None and logging_config is not None and is_s3(logging_config.save_dir):
        output = MirroredOutput(staging / "logs", S3Uri.parse(logging_config.save_dir))
        run.outputs.append(output)
        logging_config = logging_config.model_copy(update={"save_dir": str(output.local)})
    run.config = run.config.model_copy(update={"checkpointing": checkpointing, "logging": logging_config})

    model = run.config.model
    ckpt_path = model.ckpt_path
    if resumed_from is not None:
        ckpt_path = run.resumed_from = resumed_from
    if ckpt_path is not None and is_s3(ckpt_path):
        ckpt_path = localise(ckpt_path)
    run.config = run.config.model_copy(update={"model": model.model_copy(update={"ckpt_path": ckpt_path})})
    return run


RUN_CONFIG = "config.yaml"
"""The run's configuration, beside its checkpoints."""
VERSIONED_LOGGERS = ("CSVLogger", "TensorBoardLogger")
"""Loggers writing <save_dir>/<name>/version_<n>/, a new n for each run (W&B resumes its own runs)."""
_VERSION = re.compile(r"version_(\d+)/$")


def _earlier_run_config(storage: StorageConfig, output: MirroredOutput) -> None:
    """The output's config.yaml, as an earlier run stored it, into the fresh staging folder: a resumed run
    with a changed configuration then keeps the earlier one beside it, as it would in a local folder."""
    remote = output.remote.join(RUN_CONFIG)
    try:
        stored = s3_client(storage).get_object(Bucket=remote.bucket, Key=remote.key)
        text = stored["Body"].read()
    except Exception as error:
        if not_found(error):
            return
        raise StorageError(f"{remote}: {explain(error)}") from None
    output.local.mkdir(parents=True, exist_ok=True)
    target = output.local / RUN_CONFIG
    target.write_bytes(text)
    written = stored["LastModified"].timestamp()
    os.utime(target, (written, written))  # the earlier copy is named after the time it was written


def _next_log_version(storage: StorageConfig, logging_config: LoggingConfig, remote: S3Uri) -> LoggingConfig:
    """The logger's version after those the S3 output holds: a fresh staging folder holds none, and the
    logger would write version_0 again, over the earlier run's logs (a resume's metrics.csv replacing the
    epochs before it). A version the user chose stays."""
    if logging_config.logger_type not in VERSIONED_LOGGERS or "version" in logging_config.extra():
        return logging_config
    folder = remote.join(logging_config.name)
    try:
        pages = (
            s3_client(storage)
            .get_paginator("list_objects_v2")
            .paginate(Bucket=folder.bucket, Prefix=folder.prefix, Delimiter="/")
        )
        found = [
            int(match.group(1))
            for page in pages
            for prefix in page.get("CommonPrefixes", [])
            if (match := _VERSION.search(prefix["Prefix"]))
        ]
    except Exception as error:
        raise StorageError(f"{folder}: {explain(error)}") from None
    if not found:
        return logging_config
    written = logging_config.model_dump(exclude_unset=True) | {"version": max(found) + 1}
    return LoggingConfig.model_validate(written)


def _staging_folder(storage: StorageConfig) -> Path:
    """A folder of this process's own for the outputs it mirrors to S3. Made here, under a name no other
    process gets: pods sharing a cache volume are all PID 1, and may start in the same second."""
    outputs = cache_root(storage) / "outputs"
    outputs.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f"{os.getpid()}-", dir=outputs))


def _claim(config: DreemConfig) -> AttemptFence | None:
    """A cluster job's gang claims its checkpoint prefix before it looks for the checkpoint to resume from, so
    no older gang writes there once the newer one has chosen what to resume (see storage.fence)."""
    attempt = os.environ.get(ENV_ATTEMPT, "").strip()
    dirpath = config.checkpointing.dirpath
    if not attempt or not is_s3(dirpath):
        return None
    assert dirpath is not None
    fence = AttemptFence(config.storage, S3Uri.parse(dirpath), int(attempt))
    fence.claim()
    return fence


def resumes(config: DreemConfig) -> bool:
    """`checkpointing.resume`, by default auto when the output is on S3."""
    mode = config.checkpointing.resume
    return mode == "auto" if mode is not None else is_s3(config.checkpointing.dirpath)


def _newest(config: DreemConfig) -> str | None:
    dirpath = config.checkpointing.dirpath
    if is_s3(dirpath):
        assert dirpath is not None
        found = newest_checkpoint(config.storage, S3Uri.parse(dirpath))
        return str(found) if found else None
    last = config.checkpoint_dir() / "last.ckpt"  # the default folder too: ./models/[group]/[name]
    return str(last) if last.is_file() else None
