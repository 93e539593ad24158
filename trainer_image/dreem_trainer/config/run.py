"""The run-control sections: `logging`, `early_stopping`, `checkpointing`, `trainer` and `tracker`."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field, field_validator, model_validator

from dreem_trainer.config.base import LibraryCallSection, Section
from dreem_trainer.config.issues import key_error
from dreem_trainer.config.library_names import CallSignature, library_names
from dreem_trainer.config.notices import no_effect
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
    mode: Literal["min", "max"] | None = Field(
        None,
        description='One of "min" or "max". In min mode, stops when quantity stops decreasing (default: the '
        "monitored metric's own: min for losses and switch counts, max for idf1, mota, precision, recall).",
    )
    patience: int = Field(10, ge=0, description="Number of checks with no improvement before stopping (default: 10).")
    min_delta: float = Field(0.1, ge=0, description="Minimum change to qualify as improvement (default: 0.1).")
    check_finite: bool = Field(True, description="Stop training when monitor becomes NaN or infinite (default: true).")
    stopping_threshold: float | None = Field(
        None,
        description="Stop immediately when monitor reaches this threshold (default: 1e-8, DREEM's, for a metric "
        "that is minimised; none for one that is maximised).",
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
Precision = Literal["64-true", "32-true", "16-mixed", "bf16-mixed", "16-true", "bf16-true"]
# Lightning's older spellings, accepted so configurations written for it still load.
PRECISION_ALIASES: dict[str, Precision] = {
    "64": "64-true",
    "32": "32-true",
    "16": "16-mixed",
    "bf16": "bf16-mixed",
}


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
    precision: Precision | None = Field(
        None,
        description='Numeric precision: "32-true", "bf16-mixed", "16-mixed", "64-true", "bf16-true" or "16-true". '
        'Default: "bf16-mixed" on a GPU that supports bf16, "32-true" otherwise (CPU).',
    )

    @field_validator("precision", mode="before")
    @classmethod
    def _precision_alias(cls, precision: object) -> object:
        return PRECISION_ALIASES.get(str(precision), precision) if precision is not None else None

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
    """How `dreem track`, `dreem eval` and validation link association scores into tracks.

    Every key means what it means in DREEM 0.5.1's tracker, with DREEM's tracking defaults
    (its `defaults/track.yaml` and `Tracker` signature), so a tuned DREEM tracking config tracks the same here.
    """

    window_size: int = Field(
        8,
        ge=1,
        description="Instances each track keeps to be associated against: its last window_size appearances, "
        "however long ago (default: 8).",
    )
    overlap_thresh: float = Field(
        0.01,
        ge=0,
        description="A match joins its track only when its score is above this (times the track's instances in the "
        "window with mult_thresh); otherwise the instance starts a new track (default: 0.01).",
    )
    mult_thresh: bool = Field(
        True,
        description="Multiply overlap_thresh by the number of the track's instances in the window (default: true).",
    )
    iou: Literal["mult", "max"] | None = Field(
        "mult",
        description="How the overlap (IoU) of an instance's box with the track's last box enters the score: \"mult\" "
        'adds |IoU - score| * IoU, "max" keeps the larger of score and IoU, null ignores it (default: "mult").',
    )
    max_center_dist: float | None = Field(
        None,
        ge=0,
        description="Pixels a centre may move from the track's last box before the score is penalised, in proportion "
        "to the excess (optional; null or 0: no penalty).",
    )
    distance_penalty_multiplier: float = Field(1.0, description="Weight of the max_center_dist penalty (default: 1.0).")
    max_gap: int | None = Field(
        None,
        ge=0,
        description="Processed frames a track may be missing before it ends; at least window_size (default: null, "
        "tracks never end).",
    )
    max_tracks: int | None = Field(
        None,
        ge=1,
        description="Most live tracks: once reached, every match is kept whatever its score and extra detections "
        "stay untracked (default: null, no limit).",
    )
    confidence_threshold: float = Field(
        0.0,
        ge=0,
        le=1,
        description="Flag a frame for review when an instance's normalised assignment entropy exceeds "
        "1 - confidence_threshold; flagged frames become suggestions in the output (default: 0, off).",
    )
    temperature: float = Field(
        0.1, gt=0, description="Softmax temperature of the track scores written as tracking_score (default: 0.1)."
    )
    max_angle_diff: float | None = Field(
        0.0,
        ge=0,
        description="Degrees the body axis may turn from the track's last instance before the score is penalised "
        "(default: 0, off).",
    )
    front_nodes: list[str] | None = Field(
        None, description="Nodes marking the front of the body axis, first visible one used (optional)."
    )
    back_nodes: list[str] | None = Field(
        None, description="Nodes marking the back of the body axis, first visible one used (optional)."
    )
    angle_diff_penalty_multiplier: float = Field(
        1.0, description="Weight of the max_angle_diff penalty (default: 1.0)."
    )
    decay_time: float | None = Field(
        None,
        description="Accepted for DREEM configs; no effect, as in DREEM 0.5.1.",
        exclude=True,
        json_schema_extra=no_effect(
            "DREEM 0.5.1 stores it but never reads it (releases before 0.3.2 discounted older frames with it)"
        ),
    )
    use_vis_feats: bool = Field(
        True,
        description="Accepted for DREEM configs; no effect: visual features are always used.",
        exclude=True,
        json_schema_extra=no_effect("DREEM 0.5.1 stores it but never reads it; visual features are always used"),
    )
    verbose: bool = Field(
        False,
        description="Accepted for DREEM configs; no effect on tracks.",
        exclude=True,
        json_schema_extra=no_effect("it only turned on DREEM's debug log lines"),
    )

    @field_validator("iou", mode="before")
    @classmethod
    def _iou_mode(cls, iou: object) -> object:
        if iou == "":
            return None  # DREEM reads an empty string as "off"
        if isinstance(iou, str) and iou.lower() == "add":
            raise ValueError('"add" is documented by DREEM but not implemented there; use "mult", "max" or null')
        return iou.lower() if isinstance(iou, str) else iou

    @field_validator("max_gap", "max_tracks", mode="before")
    @classmethod
    def _infinity_is_no_limit(cls, value: object) -> object:
        return None if value == float("inf") else value

    @field_validator("front_nodes", "back_nodes", mode="before")
    @classmethod
    def _one_node_is_a_list(cls, nodes: object) -> object:
        return [nodes] if isinstance(nodes, str) else nodes
