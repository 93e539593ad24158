"""Assembles the Lightning Trainer, data loaders, callbacks and logger from a resolved configuration."""

from __future__ import annotations

import logging
import netrc
import os
import shutil
import sys
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlparse

import lightning.pytorch as pl
import torch
from lightning.fabric.utilities.exceptions import MisconfigurationException
from lightning.pytorch.callbacks import Callback, EarlyStopping, RichProgressBar
from lightning.pytorch.callbacks import Checkpoint as CheckpointCallback
from lightning.pytorch.loggers import CSVLogger, Logger, TensorBoardLogger, WandbLogger
from lightning.pytorch.strategies import DDPStrategy, Strategy
from lightning.pytorch.utilities import rank_zero_only
from torch.utils.data import DataLoader, Dataset

from dreem_trainer.cluster import job_from_environment, progress_interval
from dreem_trainer.config import ConfigError, ConfigIssue, DreemConfig, dump_yaml
from dreem_trainer.config.data import DataLoaderSplitConfig, DatasetSplitConfig
from dreem_trainer.config.issues import did_you_mean, first_few
from dreem_trainer.config.model import ModelConfig
from dreem_trainer.config.paths import S3Uri, is_s3
from dreem_trainer.config.run import Accelerator
from dreem_trainer.data.augment import albumentations_transforms
from dreem_trainer.data.cache import ByteBudgetCache, frame_cache_bytes
from dreem_trainer.data.clip import Clip, collate_clips
from dreem_trainer.data.dataset import ClipDataset, SourceReads, reseed_worker
from dreem_trainer.data.records import UNTRACKED
from dreem_trainer.data.sources import DataError
from dreem_trainer.hardware import (
    Hardware,
    available_cpus,
    ddp_backend,
    model_threads,
    resolve_precision,
    uses_gpu,
)
from dreem_trainer.models.checkpoint import Checkpoint, load_weights, read_checkpoint
from dreem_trainer.models.hub import fetch_checkpoint, is_hub
from dreem_trainer.storage.earlier import keep_earlier_checkpoints, keep_earlier_stored_checkpoints, stamped_name
from dreem_trainer.storage.staging import RUN_CONFIG, resumes, stage
from dreem_trainer.tracking.metrics import (
    LOSS,
    effective_early_stopping,
    split_of,
)
from dreem_trainer.training.callbacks import (
    EpochLines,
    LatestCheckpoint,
    PreciseBatchNorm,
    ProgressReporter,
    StorageSync,
)
from dreem_trainer.training.checkpoint_io import AtomicCheckpointIO
from dreem_trainer.training.module import DreemModule, epoch_value_name
from dreem_trainer.training.preflight import configuration_issues, metric_mode, missing_inputs
from dreem_trainer.training.termination import (
    CheckpointGate,
    GracefulTermination,
    TrainingInterrupted,
    interruption_advice,
)

log = logging.getLogger(__name__)


def data_loader(
    split: DatasetSplitConfig,
    loader: DataLoaderSplitConfig,
    seed: int | None,
    pin_memory: bool = False,
    cache: ByteBudgetCache | None = None,
    sources: SourceReads | None = None,
) -> DataLoader[Clip]:
    """Decoding, augmentation and cropping happen in `ClipDataset.__getitem__`, so with `num_workers` > 0 the
    loader's worker processes prepare the next clips while the model trains on this one. `pin_memory` (for a
    GPU) puts each clip in page-locked memory so its copy to the device runs without blocking.

    The loaders of one run share `cache`, so the process that loads with `num_workers` 0 holds one frame-cache
    budget for training and validation together; each worker holds its own copy of it, so the cache's share of
    memory is at most max(1, num_workers) budgets per loader. They share `sources` too, so files that several
    splits name are read once."""
    dataset = ClipDataset(split, seed=seed, cache=cache, sources=sources)
    settings: dict[str, Any] = {
        "batch_size": 1,
        "persistent_workers": loader.num_workers > 0,
        "pin_memory": pin_memory,
    } | loader.kwargs()
    return DataLoader(dataset, collate_fn=collate_clips, worker_init_fn=reseed_worker, **settings)


def monitored(metric: str, has_validation: bool, key: str) -> str:
    """Without a validation split, val_* metrics do not exist: `key` watches the training loss instead."""
    if has_validation or split_of(metric) != "val":
        return metric
    watched = epoch_value_name(LOSS, "train")
    log.warning("%s: no validation, so %s is watched instead of %s", key, watched, metric)
    return watched


def check_optimization(config: DreemConfig) -> None:
    """The optimizer and scheduler, built once on a stand-in parameter: torch checks their values (betas
    below 1, a StepLR's step_size given) only when they are made, which is otherwise after the data is read."""
    optimizer_config, scheduler_config = config.optimizer, config.scheduler
    parameter = torch.nn.Parameter(torch.zeros(1))
    optimizer = _made(
        "optimizer",
        optimizer_config.name,
        lambda: getattr(torch.optim, optimizer_config.name)([parameter], **optimizer_config.kwargs()),
    )
    _made(
        "scheduler",
        scheduler_config.name,
        lambda: getattr(torch.optim.lr_scheduler, scheduler_config.name)(optimizer, **scheduler_config.kwargs()),
    )


def _made(key: str, name: str, make: Callable[[], Any]) -> Any:
    try:
        return make()
    except (TypeError, ValueError) as error:
        raise ConfigError([ConfigIssue(key, f"torch's {name} refuses it: {error}", has_value=False)]) from error


def check_before_data(config: DreemConfig) -> None:
    """What the schema cannot check, checked before any data is downloaded or read rather than once the
    loaders are built, every problem listed at once: the preflight's checks (watched metrics, output folders),
    what needs the training stack (albumentations takes the augmentations' values, torch the optimizer's and
    scheduler's, Lightning the strategy), and local inputs that are not there."""
    issues = configuration_issues(config)
    augmentations = config.dataset.train_dataset.augmentations
    checks: list[Callable[[], object]] = [
        lambda: albumentations_transforms(augmentations) if augmentations else None,
        lambda: check_optimization(config),
        lambda: check_strategy(config.trainer.strategy),
    ]
    for check in checks:
        try:
            check()
        except ConfigError as error:
            issues += error.issues
    issues += missing_inputs(config)
    if issues:
        raise ConfigError(issues)


def check_strategy(name: str | None) -> None:
    """`trainer.strategy` names a Lightning strategy that this installation can run (deepspeed and xla need
    packages of their own). Lightning would say so only when the Trainer is built, after the data is staged,
    and as an error that is not the user's to the operator, which would retry it."""
    from lightning.pytorch.strategies import StrategyRegistry

    if name is None or name == "auto":
        return
    names = set(StrategyRegistry.available_strategies())
    if name not in names:
        problem = f"not a Lightning strategy{did_you_mean(name, names)} (auto, ddp, fsdp, deepspeed, ...)"
        raise ConfigError([ConfigIssue("trainer.strategy", problem, name)])
    try:
        StrategyRegistry.get(name)
    except (ImportError, MisconfigurationException) as error:
        raise ConfigError([ConfigIssue("trainer.strategy", str(error).splitlines()[0], name)]) from None


def build_callbacks(
    config: DreemConfig,
    has_validation: bool,
    interactive: bool,
    gate: CheckpointGate | None = None,
    restaged: bool = False,
) -> list[Callback]:
    """`restaged`: checkpoints go to a local staging of an S3 output, a new folder on every start."""
    # PreciseBatchNorm comes first: checkpoints written at the same hook must hold its statistics.
    callbacks: list[Callback] = [PreciseBatchNorm(), RichProgressBar() if interactive else EpochLines()]
    checkpointing = config.checkpointing
    if config.trainer.enable_checkpointing:
        directory = config.checkpoint_dir()
        passed = checkpointing.kwargs()
        # DREEM's configs pass auto_insert_metric_name: true; Lightning then writes the names itself.
        named_by_lightning = bool(passed.get("auto_insert_metric_name", False))
        for index, metric in enumerate(checkpointing.monitor):
            watched = monitored(metric, has_validation, f"checkpointing.monitor[{index}]")
            filename = (
                f"{{epoch}}-best_{{{watched}:.4f}}"
                if named_by_lightning
                else f"epoch={{epoch}}-best_{watched}={{{watched}:.4f}}"
            )
            settings: dict[str, Any] = {
                "dirpath": directory,
                "filename": filename,
                "auto_insert_metric_name": False,
                "monitor": watched,
                "mode": metric_mode(watched, f"checkpointing.monitor[{index}]"),
                # One last.ckpt, always the newest state, never a second full copy of a best one: kept by the
                # last monitor's callback, which runs after the others and links to any file they just wrote.
                "save_last": checkpointing.save_last and index == len(checkpointing.monitor) - 1,
            }
            # The section's other ModelCheckpoint arguments pass through and win over dreem's choices.
            callbacks.append(LatestCheckpoint(gate=gate, restaged=restaged, **(settings | passed)))
    if config.early_stopping is not None:
        watched = monitored(config.early_stopping.monitor, has_validation, "early_stopping.monitor")
        metric_mode(watched, "early_stopping.monitor")  # an unknown name fails here, before training
        # A mode left out, or the training loss standing in for a val_ metric, follows the metric table.
        stopping = effective_early_stopping(config.early_stopping, watched)
        callbacks.append(EarlyStopping(**stopping.kwargs() | {"monitor": watched}))
    return callbacks


def wandb_logged_in() -> bool:
    """Whether W&B has credentials: WANDB_API_KEY, or the ~/.netrc entry `wandb login` writes for its host
    (WANDB_BASE_URL's, api.wandb.ai by default). Without them W&B runs offline rather than prompt for a key
    (a cluster pod has no one to answer)."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    # `wandb login` writes the base URL's host with its port, and W&B reads the file by its path (which skips
    # Python's permission check of ~/.netrc): so do we.
    machine = urlparse(os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai")).netloc or "api.wandb.ai"
    path = os.environ.get("NETRC") or os.path.expanduser("~/.netrc")
    try:
        return netrc.netrc(path).authenticators(machine) is not None
    except (OSError, netrc.NetrcParseError):
        return False


def build_logger(config: DreemConfig) -> Logger | bool:
    logging_config = config.logging
    if logging_config is None or logging_config.logger_type is None:
        return False
    extra = logging_config.kwargs()
    if logging_config.logger_type == "CSVLogger":
        return CSVLogger(save_dir=logging_config.save_dir, name=logging_config.name, **extra)
    if logging_config.logger_type == "TensorBoardLogger":
        return TensorBoardLogger(save_dir=logging_config.save_dir, name=logging_config.name, **extra)
    offline = not wandb_logged_in() and os.environ.get("WANDB_MODE") != "online"
    # Lightning's True logs the checkpoints kept (the best ones) when training ends: the spec's "best".
    log_model: bool | Literal["all"] = "all" if logging_config.log_model == "all" else bool(logging_config.log_model)
    if offline and log_model:
        log.warning("logging.log_model: not logged in to W&B, so it runs offline and cannot upload checkpoints")
        log_model = False
    return WandbLogger(
        name=logging_config.name,
        project=logging_config.project,
        entity=logging_config.entity,
        save_dir=logging_config.save_dir,
        log_model=log_model,
        group=logging_config.group,
        notes=logging_config.notes,
        offline=offline,
        **extra,
    )


def build_trainer(
    config: DreemConfig,
    has_validation: bool,
    interactive: bool | None = None,
    callbacks: Sequence[Callback] = (),
    gate: CheckpointGate | None = None,
    hardware: Hardware | None = None,
    writer: AtomicCheckpointIO | None = None,
    restaged: bool = False,
) -> pl.Trainer:
    interactive = sys.stdout.isatty() if interactive is None else interactive
    trainer_config = config.trainer
    hardware = hardware or Hardware.detect()
    if uses_gpu(trainer_config.accelerator, hardware):
        # fp32 matrix products on TF32 tensor cores: the reference does the same ("medium" even).
        torch.set_float32_matmul_precision("high")
    settings: dict[str, Any] = {
        "callbacks": [*build_callbacks(config, has_validation, interactive, gate, restaged), *callbacks],
        "logger": build_logger(config),
        "enable_progress_bar": interactive,
        "enable_model_summary": interactive,
        # The sanity check validates two batches before training (5 s here, more on big clips): every
        # restart of a cluster job would pay it. Validation errors then surface after the first epoch.
        "num_sanity_val_steps": 0,
        "plugins": [writer or AtomicCheckpointIO(gate, background=True)],
    }
    # The section's lightning.Trainer arguments, its extra keys included, win over dreem's choices above.
    section = trainer_config.kwargs() | {
        "strategy": build_strategy(trainer_config.strategy, trainer_config.accelerator, hardware),
        "precision": resolve_precision(trainer_config.precision, trainer_config.accelerator, hardware),
        "limit_val_batches": trainer_config.limit_val_batches if has_validation else 0,
    }
    mirrors = any(isinstance(callback, CheckpointCallback) for callback in settings["callbacks"])
    if not trainer_config.enable_checkpointing and mirrors:
        # Lightning refuses every Checkpoint callback when checkpointing is off, and the S3 mirror and the
        # progress report are Checkpoints only to run after the checkpoints of their hook. They write none
        # themselves, and with them present Lightning adds no ModelCheckpoint of its own: none is written.
        section["enable_checkpointing"] = True
    try:
        return pl.Trainer(**(settings | section))
    except MisconfigurationException as error:  # an accelerator the machine lacks, devices: 0, ...
        raise ConfigError([ConfigIssue("trainer", str(error), has_value=False)]) from None


def build_strategy(strategy: str | None, accelerator: Accelerator, hardware: Hardware) -> Strategy | str:
    """`ddp` gets its process-group backend from the accelerator (NCCL on GPUs, gloo on CPU); any other
    strategy name goes to Lightning as written."""
    if strategy == "ddp":
        return DDPStrategy(process_group_backend=ddp_backend(accelerator, hardware))
    return strategy or "auto"


@dataclass(frozen=True)
class Start:
    """Where training starts: from scratch, resuming one of our checkpoints, or fine-tuning DREEM's weights."""

    config: DreemConfig
    resume_from: str | None = None
    """Our checkpoint: weights, optimizer, schedule, epoch and callbacks carry on."""
    fine_tune: Checkpoint | None = None
    """DREEM's checkpoint: its weights (and its network's configuration); everything else starts afresh."""


def plan_start(config: DreemConfig, key: str = "model.ckpt_path") -> Start:
    """Read `model.ckpt_path` (a path or hf://) and decide how training starts from it.

    Either way the checkpoint's network is trained on: its model section replaces the configuration's, and
    the model keys that this overrides are named. `key` is what a problem with the checkpoint is reported
    against: the one the user set (`checkpointing.resume` when resuming found it).
    """
    path = config.model.ckpt_path
    if path is None:
        return Start(config)
    try:
        local = str(fetch_checkpoint(path, key)) if is_hub(path) else path
        checkpoint = read_checkpoint(local)
        model = checkpoint.model_config()
    except (FileNotFoundError, ValueError) as error:
        raise ConfigError([ConfigIssue(key, str(error), path)]) from None
    if checkpoint.written_by_dreem:
        print(
            f"fine-tuning from DREEM checkpoint {path}: its weights and network (embeddings read as DREEM 0.5 "
            "read them); optimizer, learning-rate schedule and epochs start afresh",
            flush=True,
        )
    for name, value in _ignored_model_keys(config, model).items():
        kept = "in the configuration is ignored; the checkpoint's network is kept"
        print(f"  model.{name}: {value!r} {kept}", flush=True)
    start = config.model_copy(update={"model": model})
    if checkpoint.written_by_dreem:
        return Start(start, fine_tune=checkpoint)
    return Start(start, resume_from=local)


def _ignored_model_keys(config: DreemConfig, model: ModelConfig) -> dict[str, Any]:
    """The model keys the user wrote whose value the checkpoint's network overrides."""
    given, ours, kept = config.model.explicit(), config.model.model_dump(), model.model_dump()
    return {key: given[key] for key in sorted(given) if key != "ckpt_path" and ours[key] != kept[key]}


def interruption(config: DreemConfig, written: Path) -> str:
    """The advice after Ctrl-C, from what the run left in `written` (its local checkpoint folder): `resume:
    auto` takes last.ckpt from a local folder, the newest checkpoint from an S3 one (already uploaded)."""
    remote = is_s3(config.checkpointing.dirpath)
    resumable = any(written.glob("*.ckpt")) if remote else (written / "last.ckpt").is_file()
    shown = str(config.checkpointing.dirpath) if remote else str(written)
    return interruption_advice(shown, resumable, resumes(config))


LIBRARY_NOTICES = (
    # We decide what an earlier run's checkpoints mean (moved aside, or resumed on purpose): Lightning's
    # warning about a folder that is not empty would be said on every resume and after config.yaml is written.
    (UserWarning, r"Checkpoint directory .* exists and is not empty"),
    # Said by our own line, with the key it changes (see `monitored`), when the run has no validation.
    (UserWarning, r"You defined a `validation_step` but have no `val_dataloader`"),
    # Lightning 2.6 on torch 2.14: about Lightning's own code, nothing a user can act on.
    (FutureWarning, r"`isinstance\(treespec, LeafSpec\)` is deprecated"),
)


class _NoAdvertisement(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("💡 Tip")


@contextmanager
def quiet_library_notices() -> Iterator[None]:
    """Lightning's notices that say nothing about this run (LIBRARY_NOTICES, its advertisement for its
    cloud logger) are left out of the output a user reads; every other warning stays."""
    rank_zero = logging.getLogger("lightning.pytorch.utilities.rank_zero")
    advertisement = _NoAdvertisement()
    rank_zero.addFilter(advertisement)
    try:
        with warnings.catch_warnings():
            for category, message in LIBRARY_NOTICES:
                warnings.filterwarnings("ignore", message=message, category=category)
            yield
    finally:
        rank_zero.removeFilter(advertisement)


TERMINATION_UPLOAD_S = 24.0
"""How long a SIGTERM'd run may upload before it exits. With the wait for a checkpoint write in progress
(termination.WAIT_FOR_WRITE_S) it stays inside Kubernetes' default 30 s grace period."""


@contextmanager
def threads_within_cpu_share(training_processes: int) -> Iterator[None]:
    """torch's thread pool sized by `model_threads` (never larger than torch made it) while the run trains,
    then as it was: in a pod with a CPU limit, torch would otherwise start a thread per core of the node and
    have them throttled. OMP_NUM_THREADS, when set, wins: the user chose, or Lightning's launcher did for a DDP
    process that this run's parent sized. Setting it too makes Lightning's launcher keep the size, and its DDP
    processes inherit it."""
    if "OMP_NUM_THREADS" in os.environ:
        yield
        return
    threads = torch.get_num_threads()
    chosen = min(threads, model_threads(available_cpus(), training_processes))
    torch.set_num_threads(chosen)
    os.environ["OMP_NUM_THREADS"] = str(chosen)
    try:
        yield
    finally:
        os.environ.pop("OMP_NUM_THREADS", None)
        torch.set_num_threads(threads)


def write_run_config(target: Path, text: str) -> None:
    """The run's configuration beside its checkpoints. An earlier run's that differs (another run trained into
    the same folder; a resumed run writes the same text again) is kept under the time it was written."""
    if target.exists() and target.read_text() != text:
        written = target.stat().st_mtime
        kept = target.parent / stamped_name(
            f"{target.stem}.", written, lambda n: (target.parent / n).exists(), target.suffix
        )
        target.replace(kept)
        print(f"{target}: the earlier run's configuration is kept as {kept.name}", flush=True)
    target.write_text(text)


@rank_zero_only
def say_what_trains(splits: dict[str, Dataset[Clip]]) -> None:
    """One line naming what each split reads: a folder holding more (or other) files than the user thought
    shows here, not as an epoch that takes twice as long."""
    described = []
    for name, dataset in splits.items():
        if isinstance(dataset, ClipDataset):
            videos = [Path(pair.video_path).name for pair in dataset.pairs]
            count = f"{len(videos)} video{'s' if len(videos) != 1 else ''}"
            described.append(f"{name} on {count} ({first_few(videos)}), {len(dataset)} clips")
    if described:
        print(f"data: {'; '.join(described)}", flush=True)


def check_learnable(dataset: Dataset[Clip], key: str) -> None:
    """A split to train or validate on has clips, and identities in them, before the first step: DREEM learns
    to associate instances by their tracks. Labels without any trained a whole epoch at loss 0 and then
    failed on a metric never logged; labels without frames failed in the sampler."""
    if not isinstance(dataset, ClipDataset):
        return
    files = first_few([pair.labels_path for pair in dataset.pairs])
    if len(dataset) == 0:
        raise DataError(f"{key}: {files}: no labelled frames to make clips of")
    if not any((table.tracks != UNTRACKED).any() for table in dataset.labels):
        raise DataError(
            f"{key}: {files}: no instance has a track (an identity), and DREEM learns from identities: proofread "
            "the tracks in SLEAP first (dreem track tracks untracked labels with a trained model)"
        )


def run_training(config: DreemConfig, callbacks: Sequence[Callback] = ()) -> pl.Trainer:
    """Train as configured; returns the finished Trainer (its callbacks hold the checkpoint paths).

    `config` is the resolved configuration, s3:// paths and all. s3:// inputs are downloaded and s3:// outputs
    mirrored (see storage.staging): training reads and writes `local`, its copy with every s3:// path
    replaced by a local one.
    `callbacks` are added to the configured ones (benchmarks use it).
    """
    check_before_data(config)
    staged = stage(config)
    if staged.resumed_from:
        print(f"resuming from {staged.resumed_from}", flush=True)
    start = plan_start(staged.config, "checkpointing.resume" if staged.resumed_from else "model.ckpt_path")
    local = start.config
    gate = CheckpointGate()
    writer = AtomicCheckpointIO(gate, background=True)
    sync = (
        StorageSync(local.storage, staged.outputs, gate, fence=staged.fence, writer=writer) if staged.outputs else None
    )
    if sync is not None:
        callbacks = [*callbacks, sync]
    flush = (lambda: sync.flush(timeout_s=TERMINATION_UPLOAD_S)) if sync is not None else None
    callbacks = [*callbacks, GracefulTermination(gate, flush, writes=writer.settle)]
    job = job_from_environment()
    if job is not None:
        callbacks = [*callbacks, ProgressReporter(job, staged.outputs, every_seconds=progress_interval())]
    if local.seed is not None:
        pl.seed_everything(local.seed, workers=True, verbose=False)
    dataset, loaders = local.dataset, local.dataloader
    pin = uses_gpu(local.trainer.accelerator, Hardware.detect())
    cache, sources = ByteBudgetCache(frame_cache_bytes()), SourceReads()
    train_loader = data_loader(dataset.train_dataset, loaders.train_dataloader, local.seed, pin, cache, sources)
    val_loader = (
        data_loader(dataset.val_dataset, loaders.val_dataloader, local.seed, pin, cache, sources)
        if dataset.val_dataset
        else None
    )
    has_validation = val_loader is not None and local.trainer.limit_val_batches != 0
    check_learnable(train_loader.dataset, "dataset.train_dataset")
    splits = {"train": train_loader.dataset}
    if val_loader is not None and has_validation:
        check_learnable(val_loader.dataset, "dataset.val_dataset")
        splits["validate"] = val_loader.dataset
    say_what_trains(splits)
    # The top-k record is adopted only from this output's own last checkpoint, never from another run's.
    checkpoints_on_s3 = is_s3(config.checkpointing.dirpath)
    restaged = staged.resumed_from is not None and checkpoints_on_s3
    with quiet_library_notices():
        trainer = build_trainer(
            local, has_validation=has_validation, callbacks=callbacks, gate=gate, writer=writer, restaged=restaged
        )
    monitor = monitored(local.scheduler.monitor, has_validation, "scheduler.monitor")
    module = DreemModule(local.model_dump(mode="json"), scheduler_monitor=monitor)
    if start.fine_tune is not None:
        load_weights(module.model, start.fine_tune)
    if trainer.is_global_zero:
        directory = local.checkpoint_dir()
        # A run carries on here when it resumes from this folder's own checkpoints (or the prefix's, on S3);
        # any other start (afresh, fine-tuning, resuming another folder's run) would write over what is here.
        continues_here = staged.resumed_from is not None or (
            start.resume_from is not None and Path(start.resume_from).resolve().parent == directory.resolve()
        )
        reading = config.model.ckpt_path  # what the user named: kept in place if it is one of these files
        if not continues_here and local.trainer.enable_checkpointing:  # every check has passed: training starts
            if checkpoints_on_s3:
                assert config.checkpointing.dirpath is not None
                remote = S3Uri.parse(config.checkpointing.dirpath)
                if keep_earlier_stored_checkpoints(config.storage, remote, reading):
                    (directory / RUN_CONFIG).unlink(missing_ok=True)  # staged from the prefix, and moved there
            else:
                keep_earlier_checkpoints(directory, reading)
        directory.mkdir(parents=True, exist_ok=True)
        # The configuration as given (s3:// paths, not the local cache they were staged to).
        write_run_config(directory / RUN_CONFIG, dump_yaml(config))
    with threads_within_cpu_share(trainer.num_devices), quiet_library_notices():
        try:
            trainer.fit(module, train_loader, val_loader, ckpt_path=start.resume_from)
        except SystemExit:
            if trainer.interrupted:  # Ctrl-C: Lightning has shut the run down and exits 1
                raise TrainingInterrupted(interruption(config, local.checkpoint_dir())) from None
            raise
    if staged.outputs and staged.staging is not None:
        # StorageSync waited for every upload at the end of fit (it raises otherwise): the copies are in S3.
        shutil.rmtree(staged.staging, ignore_errors=True)
    return trainer
