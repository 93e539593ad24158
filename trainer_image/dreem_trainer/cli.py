"""`dreem`: train, track and evaluate DREEM trackers from one YAML configuration.

Every command resolves its configuration through `dreem_trainer.config.load_config`, so defaults,
the config file, `--set` and typed flags combine the same way everywhere. The heavy stack (torch,
Lightning) is imported only by the commands that need it, so `dreem config ...` answers at once.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer

from dreem_trainer import __version__
from dreem_trainer.config import EVERY_SPLIT, ConfigError, ConfigIssue, DreemConfig, dump_yaml, load_config
from dreem_trainer.config.data import DatasetSplitConfig, DirConfig
from dreem_trainer.config.loader import KeyPath
from dreem_trainer.config.model import ModelConfig
from dreem_trainer.config.optimization import OptimizerConfig
from dreem_trainer.config.paths import is_s3
from dreem_trainer.config.run import TrainerConfig
from dreem_trainer.contract import EXIT_STORAGE_ERROR, EXIT_USER_ERROR, UserError
from dreem_trainer.data.discovery import SourcePair

app = typer.Typer(
    name="dreem",
    help="Train, track and evaluate DREEM global tracking transformers.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
config_app = typer.Typer(help="Check and print training configurations without training.", no_args_is_help=True)
app.add_typer(config_app, name="config")


def _default(model: type[Any], key: str) -> str:
    return f"from --config, else {model.model_fields[key].default}"


ConfigFile = Annotated[
    Path | None,
    typer.Option(
        "--config", "-c", help="Training YAML (the format of the training-configuration document).", show_default="none"
    ),
]
SetOverrides = Annotated[
    list[str] | None,
    typer.Option(
        "--set",
        "-s",
        help="Override one key, e.g. --set model.d_model=256 (repeatable; value read as YAML).",
        show_default="none",
    ),
]
TrainDir = Annotated[
    str | None,
    typer.Argument(help="Training data directory (sets dataset.train_dataset.dir.path).", show_default="from --config"),
]
ValDir = Annotated[
    str | None,
    typer.Option(
        "--val-dir",
        "-vd",
        help="Validation data directory (sets dataset.val_dataset.dir.path).",
        show_default="from --config",
    ),
]
CropSize = Annotated[
    int | None,
    typer.Option(
        "--crop-size",
        "-cs",
        help="Crop size in pixels around each instance, every split.",
        show_default=_default(DatasetSplitConfig, "crop_size"),
    ),
]
Epochs = Annotated[
    int | None,
    typer.Option(
        "--epochs",
        "-e",
        help="Maximum epochs (trainer.max_epochs; -1 for no limit).",
        show_default=_default(TrainerConfig, "max_epochs"),
    ),
]
LearningRate = Annotated[
    float | None,
    typer.Option("--lr", help="Learning rate (optimizer.lr).", show_default=_default(OptimizerConfig, "lr")),
]
DModel = Annotated[
    int | None,
    typer.Option(
        "--d-model", help="Transformer embedding size (model.d_model).", show_default=_default(ModelConfig, "d_model")
    ),
]
NHead = Annotated[
    int | None,
    typer.Option("--nhead", help="Attention heads (model.nhead).", show_default=_default(ModelConfig, "nhead")),
]
EncoderLayers = Annotated[
    int | None,
    typer.Option(
        "--encoder-layers",
        help="Transformer encoder layers (model.num_encoder_layers).",
        show_default=_default(ModelConfig, "num_encoder_layers"),
    ),
]
DecoderLayers = Annotated[
    int | None,
    typer.Option(
        "--decoder-layers",
        help="Transformer decoder layers (model.num_decoder_layers).",
        show_default=_default(ModelConfig, "num_decoder_layers"),
    ),
]
Anchor = Annotated[
    str | None,
    typer.Option(
        "--anchor",
        "-a",
        help="Node to centre crops on (dataset.*.anchors), every split.",
        show_default=_default(DatasetSplitConfig, "anchors"),
    ),
]
Resume = Annotated[
    str | None,
    typer.Option(
        "--resume",
        help="auto: continue from the newest checkpoint in checkpointing.dirpath; never: start afresh.",
        show_default="auto when checkpointing.dirpath is on S3, else never",
    ),
]
VideoType = Annotated[
    str | None,
    typer.Option(
        "--video-type",
        "-vt",
        help="Video suffix without the dot, every split (dir.vid_suffix); tif/tiff also reads tif labels "
        "(dir.labels_suffix), as in DREEM.",
        show_default="from --config, else mp4",
    ),
]
Gpu = Annotated[
    bool | None,
    typer.Option(
        "--gpu/--no-gpu",
        "-g",
        help="Run on a CUDA GPU (trainer.accelerator gpu) or on the CPU (cpu).",
        show_default="from --config, else a GPU when there is one",
    ),
]
Quiet = Annotated[
    bool,
    typer.Option("--quiet", "-q", help="Only warnings and errors from dreem's log; track and eval print no progress."),
]
Verbose = Annotated[bool, typer.Option("--verbose", help="Also print dreem's informational log lines.")]
Logger = Annotated[
    str | None,
    typer.Option(
        "--logger", "-l", help="Experiment logger (logging.logger_type).", show_default="from --config, else CSVLogger"
    ),
]
RunName = Annotated[
    str | None,
    typer.Option(
        "--run-name",
        "-rn",
        help="Run name (logging.name; checkpoints go to ./models/<name>).",
        show_default="from --config, else dreem_train",
    ),
]
ClipLength = Annotated[
    int | None,
    typer.Option(
        "--clip-length",
        "-cl",
        help="Frames per clip (dataset.*.clip_length), every split.",
        show_default=_default(DatasetSplitConfig, "clip_length"),
    ),
]


@dataclass(frozen=True)
class TrainFlags:
    """The `dreem train` flags a user typed; each maps to one key path of the configuration."""

    train_dir: str | None = None
    val_dir: str | None = None
    crop_size: int | None = None
    epochs: int | None = None
    lr: float | None = None
    d_model: int | None = None
    nhead: int | None = None
    encoder_layers: int | None = None
    decoder_layers: int | None = None
    anchor: str | None = None
    clip_length: int | None = None
    resume: str | None = None
    video_type: str | None = None
    gpu: bool | None = None
    logger: str | None = None
    run_name: str | None = None

    def overrides(self) -> list[tuple[KeyPath, Any]]:
        """Key paths for the flags given; directories first, so dataset-wide flags reach a new val split."""
        targets: list[tuple[KeyPath, Any]] = [
            (("dataset", "train_dataset", "dir", "path"), self.train_dir),
            (("dataset", "val_dataset", "dir", "path"), self.val_dir),
            (("dataset", EVERY_SPLIT, "crop_size"), self.crop_size),
            (("dataset", EVERY_SPLIT, "anchors"), self.anchor),
            (("dataset", EVERY_SPLIT, "clip_length"), self.clip_length),
            (("trainer", "max_epochs"), self.epochs),
            (("optimizer", "lr"), self.lr),
            (("model", "d_model"), self.d_model),
            (("model", "nhead"), self.nhead),
            (("model", "num_encoder_layers"), self.encoder_layers),
            (("model", "num_decoder_layers"), self.decoder_layers),
            (("checkpointing", "resume"), self.resume),
            (("logging", "logger_type"), self.logger),
            (("logging", "name"), self.run_name),
        ]
        if self.video_type is not None:
            suffix = f".{self.video_type.lstrip('.')}"
            targets.append((("dataset", EVERY_SPLIT, "dir", "vid_suffix"), suffix))
            if "tif" in suffix:  # DREEM's rule: TIFF video means Cell Tracking Challenge labels
                targets.append((("dataset", EVERY_SPLIT, "dir", "labels_suffix"), suffix))
        if self.gpu is not None:
            targets.append((("trainer", "accelerator"), "gpu" if self.gpu else "cpu"))
        return [(path, value) for path, value in targets if value is not None]


def _fail(error: Exception) -> NoReturn:
    """The one place a user's error becomes EXIT_USER_ERROR, on which the operator fails the job at once."""
    # A ConfigError heads its list of problems itself; any other error is one line.
    typer.echo(str(error) if isinstance(error, ConfigError) else f"error: {error}", err=True)
    raise typer.Exit(EXIT_USER_ERROR) from None


@contextmanager
def _reported(*also: type[Exception]) -> Iterator[None]:
    """Problems the user has to act on become one message and an exit status, never a traceback.

    `also` names more exception types to report as user errors where a command expects them.
    """
    from dreem_trainer.storage.client import StorageError

    user_errors: tuple[type[Exception], ...] = (UserError, *also)
    try:
        yield
    except user_errors as error:
        _fail(error)
    except StorageError as error:
        typer.echo(f"storage error: {error}", err=True)
        raise typer.Exit(EXIT_STORAGE_ERROR) from None


def _log_level(quiet: bool, verbose: bool) -> None:
    """DREEM's --quiet and --verbose: only warnings and errors, or dreem's informational lines as well."""
    import logging

    if quiet or verbose:
        logging.basicConfig(format="%(message)s")
        logging.getLogger("dreem_trainer").setLevel(logging.WARNING if quiet else logging.INFO)


def resolve(config: Path | None, overrides: list[str] | None, flags: TrainFlags) -> DreemConfig:
    try:
        return load_config(config, overrides or (), flags.overrides())
    except ConfigError as error:
        _fail(error)


def _train_command(act: Callable[[DreemConfig, Path | None], None], summary: str) -> Callable[..., None]:
    """`dreem train` and `dreem config show` take the same options, so what show prints is what train runs.

    `act` gets the resolved configuration and the --config file it came from.
    """

    def command(
        train_dir: TrainDir = None,
        val_dir: ValDir = None,
        crop_size: CropSize = None,
        epochs: Epochs = None,
        lr: LearningRate = None,
        d_model: DModel = None,
        nhead: NHead = None,
        encoder_layers: EncoderLayers = None,
        decoder_layers: DecoderLayers = None,
        anchor: Anchor = None,
        clip_length: ClipLength = None,
        resume: Resume = None,
        video_type: VideoType = None,
        gpu: Gpu = None,
        logger: Logger = None,
        run_name: RunName = None,
        config: ConfigFile = None,
        set_: SetOverrides = None,
        quiet: Quiet = False,
        verbose: Verbose = False,
    ) -> None:
        _log_level(quiet, verbose)
        flags = TrainFlags(
            train_dir,
            val_dir,
            crop_size,
            epochs,
            lr,
            d_model,
            nhead,
            encoder_layers,
            decoder_layers,
            anchor,
            clip_length,
            resume,
            video_type,
            gpu,
            logger,
            run_name,
        )
        act(resolve(config, set_, flags), config)

    command.__doc__ = summary
    return command


def _train(resolved: DreemConfig, config: Path | None) -> None:
    if not resolved.dataset.train_dataset.has_source:
        missing = ConfigIssue(
            "dataset.train_dataset.dir.path",
            "no training data: give TRAIN_DIR, dir.path or slp_files/video_files",
            has_value=False,
        )
        _fail(ConfigError([missing], str(config) if config else None))
    from dreem_trainer.training.run import run_training

    with _reported():
        run_training(resolved)


app.command("train")(
    _train_command(_train, "Train a tracker. Precedence: schema defaults < --config < --set < flags you type.")
)


CheckpointOption = Annotated[
    Path | None,
    typer.Option(
        "--checkpoint",
        "-ckpt",
        help="Trained checkpoint (.ckpt; dreem's or DREEM's); its configuration is the base.",
        show_default="ckpt_path from --config",
    ),
]
InputDir = Annotated[
    str | None,
    typer.Argument(help="Directory of labels and videos, paired by name.", show_default="from --slp-file/--video-file"),
]
SlpFiles = Annotated[
    list[str] | None,
    typer.Option("--slp-file", "-slp", help="A labels file (repeatable, one per --video-file).", show_default="none"),
]
VideoFiles = Annotated[
    list[str] | None,
    typer.Option(
        "--video-file", "-vid", help="The video of the matching --slp-file (repeatable).", show_default="none"
    ),
]
OutputDir = Annotated[
    Path | None,
    typer.Option(
        "--output",
        "-o",
        help="Directory for tracked labels and metrics.",
        show_default="outdir from --config, else ./results",
    ),
]


@dataclass(frozen=True)
class TrackerFlags:
    """DREEM's tracking options for `dreem track` and `dreem eval`, each a key of the configuration."""

    max_detection_overlap: float | None = None
    dilation_radius: int | None = None
    confidence_threshold: float | None = None
    iou_mode: str | None = None
    max_dist: float | None = None
    max_dist_multiplier: float | None = None
    max_gap: int | None = None
    overlap_thresh: float | None = None
    mult_thresh: bool | None = None
    max_angle: float | None = None
    max_tracks: int | None = None
    front_node: list[str] | None = None
    back_node: list[str] | None = None
    save_meta: bool | None = None

    def overrides(self) -> list[tuple[KeyPath, Any]]:
        targets: list[tuple[KeyPath, Any]] = [
            (("dataset", EVERY_SPLIT, "max_detection_overlap"), self.max_detection_overlap),
            (("dataset", EVERY_SPLIT, "dilation_radius_px"), self.dilation_radius),
            (("tracker", "confidence_threshold"), self.confidence_threshold),
            (("tracker", "iou"), self.iou_mode),
            (("tracker", "max_center_dist"), self.max_dist),
            (("tracker", "distance_penalty_multiplier"), self.max_dist_multiplier),
            (("tracker", "max_gap"), self.max_gap),
            (("tracker", "overlap_thresh"), self.overlap_thresh),
            (("tracker", "mult_thresh"), self.mult_thresh),
            (("tracker", "max_angle_diff"), self.max_angle),
            (("tracker", "max_tracks"), self.max_tracks),
            (("tracker", "front_nodes"), self.front_node or None),
            (("tracker", "back_nodes"), self.back_node or None),
            (("save_frame_meta",), self.save_meta or None),
        ]
        return [(path, value) for path, value in targets if value is not None]


def _tracker_option(flags: tuple[str, ...], help_text: str, key: str) -> Any:
    return typer.Option(*flags, help=f"{help_text} ({key}).", show_default="from --config")


MaxDetectionOverlap = Annotated[
    float | None,
    _tracker_option(
        ("--max-detection-overlap", "-di"),
        "Drop the worse-posed of two detections overlapping more than this",
        "dataset.*.max_detection_overlap",
    ),
]
DilationRadius = Annotated[
    int | None,
    _tracker_option(
        ("--dilation-radius", "-dr"),
        "Mask crops outside this many pixels of a keypoint",
        "dataset.*.dilation_radius_px",
    ),
]
ConfidenceThreshold = Annotated[
    float | None,
    _tracker_option(
        ("--confidence-threshold", "-conf"), "Flag uncertain frames for review", "tracker.confidence_threshold"
    ),
]
IouMode = Annotated[
    str | None, _tracker_option(("--iou-mode", "-iou"), "How box overlap enters the score: mult or max", "tracker.iou")
]
MaxDist = Annotated[
    float | None,
    _tracker_option(
        ("--max-dist", "-md"), "Pixels a centre may move before it is penalised", "tracker.max_center_dist"
    ),
]
MaxDistMultiplier = Annotated[
    float | None,
    _tracker_option(("--max-dist-multiplier", "-mdm"), "Weight of that penalty", "tracker.distance_penalty_multiplier"),
]
MaxGap = Annotated[
    int | None, _tracker_option(("--max-gap", "-mg"), "Frames a track may be missing before it ends", "tracker.max_gap")
]
OverlapThresh = Annotated[
    float | None,
    _tracker_option(("--overlap-thresh", "-ot"), "Score a match must exceed to join a track", "tracker.overlap_thresh"),
]
MultThresh = Annotated[
    bool | None,
    typer.Option(
        "--mult-thresh/--no-mult-thresh",
        "-mt",
        help="Multiply overlap_thresh by the track's instances in the window (tracker.mult_thresh).",
        show_default="from --config",
    ),
]
MaxAngle = Annotated[
    float | None,
    _tracker_option(("--max-angle", "-ma"), "Degrees a body may turn before it is penalised", "tracker.max_angle_diff"),
]
MaxTracks = Annotated[int | None, _tracker_option(("--max-tracks", "-mx"), "Most tracks at once", "tracker.max_tracks")]
FrontNodes = Annotated[
    list[str] | None,
    typer.Option(
        "--front-node",
        "-fn",
        help="Node at the front of the body (repeatable; tracker.front_nodes).",
        show_default="none",
    ),
]
BackNodes = Annotated[
    list[str] | None,
    typer.Option(
        "--back-node", "-bn", help="Node at the back of the body (repeatable; tracker.back_nodes).", show_default="none"
    ),
]
SaveMeta = Annotated[
    bool,
    typer.Option(
        "--save-meta", "-sm", help="DREEM's frame-metadata file (save_frame_meta): not written by dreem, refused."
    ),
]


def _checkpoint_of(checkpoint: Path | None, config: Path | None, set_: list[str] | None) -> Path:
    """--checkpoint, else the configuration's ckpt_path (DREEM's inference configs name it there)."""
    if checkpoint is not None:
        return checkpoint
    from dreem_trainer.config.loader import resolve_raw

    named = resolve_raw(config, set_ or ()).get("ckpt_path")
    if not named:
        raise ConfigError(
            [ConfigIssue("--checkpoint", "no checkpoint: give --checkpoint or ckpt_path", has_value=False)]
        )
    return Path(str(named))


def _inference_setup(
    checkpoint: Path,
    input_dir: str | None,
    slp_files: list[str] | None,
    video_files: list[str] | None,
    config: Path | None,
    set_: list[str] | None,
    flags: list[tuple[KeyPath, Any]],
) -> tuple[DreemConfig, list[SourcePair]]:
    """The checkpoint's configuration refined by the options, and the (labels, video) pairs to track.

    s3:// inputs are downloaded into the cache first.
    """
    from dreem_trainer.data.discovery import discover
    from dreem_trainer.inference.run import test_split, tracking_base
    from dreem_trainer.storage.download import download

    def local(path: str) -> str:
        return str(download(resolved.storage, path)) if is_s3(path) else path

    with _reported(FileNotFoundError, ValueError):
        resolved = load_config(config, set_ or (), flags, base=tracking_base(checkpoint))
        input_dir = local(input_dir) if input_dir else input_dir
        slp_files = [local(p) for p in slp_files or []] or None
        video_files = [local(p) for p in video_files or []] or None
        split = test_split(resolved)
        if input_dir is not None:
            split = split.model_copy(
                update={
                    "dir": DirConfig(
                        path=input_dir,
                        labels_suffix=_suffix(split, "labels_suffix", ".slp"),
                        vid_suffix=_suffix(split, "vid_suffix", ".mp4"),
                    ),
                    "slp_files": None,
                    "video_files": None,
                }
            )
        elif slp_files or video_files:
            split = DatasetSplitConfig.model_validate(
                split.model_dump() | {"dir": None, "slp_files": slp_files, "video_files": video_files}
            )
        if not split.has_source:
            raise ConfigError(
                [
                    ConfigIssue(
                        "INPUT_DIR", "nothing to track: give INPUT_DIR or --slp-file/--video-file", has_value=False
                    )
                ]
            )
        pairs = discover(split)
    return resolved, pairs


def _suffix(split: DatasetSplitConfig, key: str, default: str) -> str:
    return str(getattr(split.dir, key)) if split.dir is not None else default


def _inference_command(runner: str, summary: str) -> Callable[..., None]:
    """`dreem track` and `dreem eval` take the same options and differ only in what runs."""

    def command(
        input_dir: InputDir = None,
        checkpoint: CheckpointOption = None,
        output: OutputDir = None,
        slp_file: SlpFiles = None,
        video_file: VideoFiles = None,
        crop_size: CropSize = None,
        video_type: VideoType = None,
        anchor: Anchor = None,
        clip_length: ClipLength = None,
        max_detection_overlap: MaxDetectionOverlap = None,
        dilation_radius: DilationRadius = None,
        confidence_threshold: ConfidenceThreshold = None,
        iou_mode: IouMode = None,
        max_dist: MaxDist = None,
        max_dist_multiplier: MaxDistMultiplier = None,
        max_gap: MaxGap = None,
        overlap_thresh: OverlapThresh = None,
        mult_thresh: MultThresh = None,
        max_angle: MaxAngle = None,
        max_tracks: MaxTracks = None,
        front_node: FrontNodes = None,
        back_node: BackNodes = None,
        save_meta: SaveMeta = False,
        gpu: Gpu = None,
        config: ConfigFile = None,
        set_: SetOverrides = None,
        quiet: Quiet = False,
        verbose: Verbose = False,
    ) -> None:
        from dreem_trainer.inference import run

        _log_level(quiet, verbose)
        flags = TrainFlags(crop_size=crop_size, anchor=anchor, clip_length=clip_length, video_type=video_type, gpu=gpu)
        tracking = TrackerFlags(
            max_detection_overlap,
            dilation_radius,
            confidence_threshold,
            iou_mode,
            max_dist,
            max_dist_multiplier,
            max_gap,
            overlap_thresh,
            mult_thresh,
            max_angle,
            max_tracks,
            front_node,
            back_node,
            save_meta,
        )
        with _reported(FileNotFoundError, ValueError):
            checkpoint = _checkpoint_of(checkpoint, config, set_)
        resolved, pairs = _inference_setup(
            checkpoint, input_dir, slp_file, video_file, config, set_, [*flags.overrides(), *tracking.overrides()]
        )
        target = output or Path(resolved.outdir or "./results")
        getattr(run, runner)(resolved, checkpoint, pairs, target, quiet=quiet)

    command.__doc__ = summary
    return command


app.command("track")(
    _inference_command(
        "run_tracking", "Track videos with a trained model; writes <output>/<video>.dreem_track.slp per video."
    )
)
app.command("eval")(
    _inference_command(
        "run_evaluation",
        "Track labelled videos and score the tracks against their identities (metrics.json, per-video CSV).",
    )
)


@config_app.command("validate")
def config_validate(
    file: Annotated[Path, typer.Argument(help="Training YAML to check.", show_default=False)],
) -> None:
    """Check a training YAML: exit 0 when valid, 2 with every problem listed when not."""
    try:
        load_config(file)
    except ConfigError as error:
        _fail(error)
    typer.echo(f"{file}: valid")


def _show(resolved: DreemConfig, config: Path | None) -> None:
    from dreem_trainer.tracking.metrics import effective_early_stopping

    if resolved.early_stopping is not None:  # what the metric table fills in, shown as training will use it
        resolved = resolved.model_copy(update={"early_stopping": effective_early_stopping(resolved.early_stopping)})
    typer.echo(dump_yaml(resolved), nl=False)


config_app.command("show")(
    _train_command(_show, "Print the fully resolved configuration `dreem train` would use with the same options.")
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"dreem {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """Train, track and evaluate DREEM global tracking transformers."""


def entry_point() -> None:
    sys.exit(app())
