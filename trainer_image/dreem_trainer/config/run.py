"""The run-control sections: `logging`, `early_stopping`, `checkpointing`, `trainer` and `tracker`."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field, field_validator, model_validator

from dreem_trainer.config.base import LibraryCallSection, Section
from dreem_trainer.config.issues import key_error
from dreem_trainer.config.library_names import CallSignature, library_names
from dreem_trainer.config.paths import check_path

LoggerType = Literal["CSVLogger", "TensorBoardLogger", "WandbLogger"]


class LoggingConfig(LibraryCallSection):
    """Extra keys go to the Lightning logger class named by `logger_type`.

    The documented keys follow W&B's; `training.run.build_logger` gives each logger those it takes.
    """

    own_keys: ClassVar[frozenset[str]] = frozenset(
        {"logger_type", "name", "project", "entity", "save_dir", "log_model", "group", "notes"}
    )

    logger_type: LoggerType | None = Field(
        "CSVLogger",
        description='Logger to use. Options: "CSVLogger", "TensorBoardLogger", "WandbLogger", or null to disable.',
    )
    name: str = Field("dreem_train", description='Short display name for this run (default: "dreem_train").')
    project: str | None = Field(None, description="Name of the project where runs are sent (WandbLogger).")
    entity: str | None = Field(None, description="Username or team name where runs are sent (WandbLogger).")
    save_dir: str = Field("./logs", description="Directory where logs and metadata are stored (default: ./logs).")
    log_model: bool | Literal["all", "best"] | None = Field(
        None, description='Log checkpoints as W&B artifacts. Options: "all", "best", or null.'
    )
    group: str | None = Field(None, description="Group name to organize runs into larger experiments.")
    notes: str | None = Field(None, description="Longer description of the run.")

    @field_validator("save_dir")
    @classmethod
    def _log_path(cls, path: str) -> str:
        return check_path(path)

    @property
    def signature(self) -> CallSignature | None:
        return library_names().loggers[self.logger_type] if self.logger_type is not None else None


class EarlyStoppingConfig(LibraryCallSection):
    """Extra keys go to lightning.pytorch.callbacks.EarlyStopping."""

    monitor: str = Field("val_loss", description='Quantity to monitor (e.g., "val_loss").')
    mode: Literal["min", "max"] = Field(
        "min", description='One of "min" or "max". In min mode, stops when quantity stops decreasing.'
    )
    patience: int = Field(10, ge=0, description="Number of checks with no improvement before stopping (default: 10).")
    min_delta: float = Field(0.1, ge=0, description="Minimum change to qualify as improvement (default: 0.1).")
    check_finite: bool = Field(True, description="Stop training when monitor becomes NaN or infinite (default: true).")
    stopping_threshold: float | None = Field(
        None, description="Stop immediately when monitor reaches this threshold (optional)."
    )
    divergence_threshold: float | None = Field(
        None, description="Stop when monitor becomes worse than this threshold (optional)."
    )

    @property
    def signature(self) -> CallSignature:
        return library_names().early_stopping


class CheckpointingConfig(LibraryCallSection):
    """Extra keys go to each lightning.pytorch.callbacks.ModelCheckpoint."""

    own_keys: ClassVar[frozenset[str]] = frozenset({"monitor", "dirpath", "save_last", "resume"})
    """dreem makes one ModelCheckpoint per monitored metric, in the resolved folder, the first keeping last.ckpt."""

    monitor: list[str] = Field(
        default_factory=lambda: ["val_loss"],
        description='List of metrics to save best models for. Usually "val_{METRIC}" notation. A separate '
        "ModelCheckpoint is created for each metric.",
    )
    dirpath: str | None = Field(
        None,
        description="Directory to save models. If null, saves to ./models/[GROUP]/[NAME] or ./models/[NAME] "
        "(default: null).",
    )
    save_last: bool = Field(True, description="Save a last.ckpt copy whenever a checkpoint is saved (default: true).")
    save_top_k: int = Field(
        -1, ge=-1, description="Save the best k models. Use -1 to save all, 0 to save none (default: -1)."
    )
    every_n_epochs: int = Field(
        1, ge=0, description="Number of epochs between checkpoints. Set to 0 to disable periodic saves (default: 1)."
    )

    resume: Literal["auto", "never"] | None = Field(
        None,
        description='Resume from the newest checkpoint in dirpath ("auto") or start afresh ("never"); default: '
        "auto when dirpath is on S3, never otherwise.",
    )

    @field_validator("dirpath")
    @classmethod
    def _output_path(cls, path: str | None) -> str | None:
        return check_path(path) if path else path

    @field_validator("monitor", mode="before")
    @classmethod
    def _one_metric_is_a_list(cls, monitor: object) -> object:
        return [monitor] if isinstance(monitor, str) else monitor

    @property
    def signature(self) -> CallSignature:
        return library_names().model_checkpoint


Accelerator = Literal["cpu", "gpu", "cuda", "tpu", "ipu", "hpu", "mps", "auto"]


class TrainerConfig(LibraryCallSection):
    """Extra keys go to lightning.Trainer."""

    accelerator: Accelerator = Field(
        "auto", description='Device type. Options: "cpu", "gpu", "cuda", "tpu", "ipu", "hpu", "mps", "auto".'
    )
    strategy: str | None = Field(None, description='Training strategy (e.g., "ddp", "deepspeed"). Optional.')
    devices: list[int] | int | str = Field(
        "auto",
        description='Device indices to use. Can be a number, list, -1 for all devices, or "auto".',
    )
    num_nodes: int = Field(1, ge=1, description="Number of machines taking part in distributed training (default: 1).")
    max_epochs: int = Field(
        20, ge=-1, description="Stop training after this many epochs. Use -1 for infinite training (default: 20)."
    )
    min_epochs: int = Field(1, ge=0, description="Force training for at least this many epochs (default: 1).")
    check_val_every_n_epoch: int = Field(
        1, ge=1, description="Perform validation loop every N training epochs (default: 1)."
    )
    enable_checkpointing: bool = Field(True, description="Enable checkpointing (default: true).")
    gradient_clip_val: float | None = Field(None, ge=0, description="Value at which to clip gradients (optional).")
    limit_train_batches: int | float = Field(
        1.0, ge=0, description="Fraction or number of training batches to process (default: 1.0)."
    )
    limit_val_batches: int | float = Field(
        1.0, ge=0, description="Fraction or number of validation batches to process (default: 1.0)."
    )
    log_every_n_steps: int = Field(1, ge=1, description="How often to log within steps (default: 1).")

    @field_validator("devices")
    @classmethod
    def _device_spec(cls, devices: list[int] | int | str) -> list[int] | int | str:
        if isinstance(devices, str) and devices != "auto" and not devices.lstrip("-").replace(",", "").isdigit():
            raise ValueError('must be a number, a list of indices, -1 or "auto"')
        if isinstance(devices, int) and devices < -1:
            raise ValueError("must be -1 (all devices) or a non-negative number")
        return devices

    @property
    def signature(self) -> CallSignature:
        return library_names().trainer

    @model_validator(mode="after")
    def _coherent(self) -> TrainerConfig:
        if self.max_epochs != -1 and self.min_epochs > self.max_epochs:
            raise key_error("min_epochs", f"min_epochs exceeds max_epochs ({self.max_epochs})", self.min_epochs)
        for key in ("limit_train_batches", "limit_val_batches"):
            value = getattr(self, key)
            if isinstance(value, float) and value > 1.0:
                raise key_error(key, "a fraction must lie in [0, 1]; use an integer for a number of batches", value)
        return self


class StorageConfig(Section):
    """How to reach S3-compatible storage for s3:// paths. Credentials never go here: boto3 reads them
    from the environment (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY), a profile or an instance role."""

    endpoint_url: str | None = Field(
        None, description="S3 endpoint, e.g. http://minio:9000 (default: AWS_ENDPOINT_URL, else AWS itself)."
    )
    region: str | None = Field(None, description="Region name (default: AWS_DEFAULT_REGION, else us-east-1).")
    addressing_style: Literal["auto", "path", "virtual"] = Field(
        "auto", description='Bucket addressing; MinIO and Ceph usually need "path" (default: "auto").'
    )
    retry_mode: Literal["standard", "adaptive"] = Field(
        "standard", description="botocore retry mode (default: standard)."
    )
    max_attempts: int = Field(10, ge=1, description="Attempts per request before an error (default: 10).")
    cache_dir: str | None = Field(
        None, description="Local cache for downloaded data (default: DREEM_CACHE_DIR, else ~/.cache/dreem)."
    )


class TrackerConfig(Section):
    """How `dreem track`, `dreem eval` and validation link association scores into tracks."""

    window_size: int = Field(8, ge=1, description="Number of past frames the tracker associates against.")
    overlap_thresh: float = Field(
        0.01, ge=0, le=1, description="Minimum association score to join an existing track; lower starts a new track."
    )
    iou: Literal["mult", "max"] | None = Field(
        None,
        description='How IoU with the track\'s last box enters the score: "mult" multiplies, "max" keeps the larger, '
        "null ignores it.",
    )
    max_center_dist: float | None = Field(
        None,
        gt=0,
        description="Pixels a centre may move between frames before the association is forbidden (optional).",
    )
    decay_time: float | None = Field(
        None, gt=0, le=1, description="Per-frame decay of older frames' association scores (optional)."
    )
    max_tracks: int | None = Field(None, ge=1, description="Upper bound on simultaneous tracks (optional).")
