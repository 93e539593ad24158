"""Checks of a training configuration that need neither the training stack nor the data: `dreem config validate`
runs them without importing torch, and `dreem train` before it downloads or reads anything."""

from __future__ import annotations

from pathlib import Path

from dreem_trainer.config import ConfigError, ConfigIssue, DreemConfig
from dreem_trainer.config.paths import is_s3
from dreem_trainer.tracking.metrics import Mode, logged_names, metric_logged_as

TRAINING_SPLITS = ("train_dataset", "val_dataset")
"""The splits `dreem train` reads (the test split is tracking's)."""
ALL_SPLITS = (*TRAINING_SPLITS, "test_dataset")


def metric_mode(watched: str, key: str) -> Mode:
    """Whether the watched metric is better low or high, from the table; a name dreem does not log is a
    configuration error now rather than a crash after the first epoch."""
    metric = metric_logged_as(watched)
    if metric is None:
        raise ConfigError([_unknown_metric(watched, key)])
    return metric.mode


def _unknown_metric(watched: str, key: str) -> ConfigIssue:
    return ConfigIssue(key, f"dreem logs no such metric; choose one of {', '.join(logged_names())}", watched)


def configuration_issues(config: DreemConfig) -> list[ConfigIssue]:
    """What fails `dreem train` wherever it runs: a watched metric that dreem does not log, an output folder
    that is a file."""
    watched: list[tuple[str, str]] = []
    if config.trainer.enable_checkpointing:
        watched += [(metric, f"checkpointing.monitor[{i}]") for i, metric in enumerate(config.checkpointing.monitor)]
    if config.early_stopping is not None:
        watched.append((config.early_stopping.monitor, "early_stopping.monitor"))
    if config.scheduler.name == "ReduceLROnPlateau":
        watched.append((config.scheduler.monitor, "scheduler.monitor"))
    issues = [_unknown_metric(metric, key) for metric, key in watched if metric_logged_as(metric) is None]
    outputs = {"checkpointing.dirpath": config.checkpointing.dirpath}
    if config.logging is not None and config.logging.logger_type is not None:
        outputs["logging.save_dir"] = config.logging.save_dir
    for key, folder in outputs.items():
        if folder is not None and not is_s3(folder) and Path(folder).exists() and not Path(folder).is_dir():
            issues.append(ConfigIssue(key, "is a file; this is the folder the run writes into", folder))
    return issues


def missing_inputs(config: DreemConfig, splits: tuple[str, ...] = TRAINING_SPLITS) -> list[ConfigIssue]:
    """Local data paths of `splits` that are not on this machine (s3:// ones are fetched when training starts).
    An error for `dreem train`; only a warning for `dreem config validate`, since a configuration written for
    a cluster may name the paths of its pods."""
    issues = []
    for name in splits:
        split = getattr(config.dataset, name)
        if split is None:
            continue
        if split.reads_files:
            listed = [("slp_files", split.slp_files or [], True), ("video_files", split.video_files or [], True)]
        else:
            given = split.dir.path if split.dir is not None else None
            listed = [("dir.path", split.dir.paths if split.dir is not None else [], isinstance(given, list))]
        for key, paths, numbered in listed:
            for index, path in enumerate(paths):
                if is_s3(path) or Path(path).exists():
                    continue
                where = f"dataset.{name}.{key}" + (f"[{index}]" if numbered else "")
                kind = "folder" if key == "dir.path" else "file"
                relative = "" if Path(path).is_absolute() else f" (a relative path: from {Path.cwd()})"
                issues.append(ConfigIssue(where, f"no such {kind} on this machine{relative}", path))
    return issues
