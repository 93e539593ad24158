"""`dreem`: train, track and evaluate DREEM trackers from one YAML configuration.

Every command resolves its configuration through `dreem_trainer.config.load_config`, so defaults,
the config file, `--set` and typed flags combine the same way everywhere. The heavy stack (torch,
Lightning) is imported only by the commands that need it, so `dreem config ...` answers at once.
"""

from __future__ import annotations

import inspect
import logging
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Annotated, Any, Literal, NoReturn, get_type_hints

import typer

from dreem_trainer import __version__
from dreem_trainer.config import EVERY_SPLIT, ConfigError, ConfigIssue, DreemConfig, dump_yaml, load_config
from dreem_trainer.config.data import DatasetSplitConfig
from dreem_trainer.config.loader import Implied, KeyPath, resolve_raw, section_at
from dreem_trainer.contract import EXIT_STORAGE_ERROR, EXIT_USER_ERROR, UserError
from dreem_trainer.data.discovery import SourcePair
from dreem_trainer.inference.render_options import CLI, RenderOptions
from dreem_trainer.supervisor import record_exit

app = typer.Typer(
    name="dreem",
    help="Train, track and evaluate DREEM global tracking transformers.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    rich_markup_mode=None,
)
config_app = typer.Typer(
    help="Check and print training configurations without training.", no_args_is_help=True, rich_markup_mode=None
)
app.add_typer(config_app, name="config")


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


def _fail(error: Exception) -> NoReturn:
    """The one place a user's error becomes EXIT_USER_ERROR, on which the operator fails the job at once."""
    # A ConfigError heads its list of problems itself; any other error is one line.
    typer.echo(str(error) if isinstance(error, ConfigError) else f"error: {error}", err=True)
    record_exit(EXIT_USER_ERROR)
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
        record_exit(EXIT_STORAGE_ERROR)
        raise typer.Exit(EXIT_STORAGE_ERROR) from None


@dataclass(frozen=True)
class ConfigOption:
    """A command-line option that sets one key of the configuration, when the user types it."""

    flag: str
    """`--d-model`, `--gpu/--no-gpu`, or a positional argument's name (`train_dir`)."""
    key: KeyPath
    kind: Any
    help: str
    shown_default: str | None = None
    """What --help shows; by default the schema's default, which --config may change."""
    short: str | None = None
    """DREEM's short name for the option (`-cs`); click matches multi-letter short names whole."""
    settings: Callable[[Any], list[tuple[KeyPath, Any]]] | None = None
    """The keys a value sets, where it is not just `key` set to the value typed."""

    @property
    def name(self) -> str:
        """The command's parameter."""
        return self.flag.split("/")[0].removeprefix("--").replace("-", "_")

    def parameter(self) -> inspect.Parameter:
        shown = self.shown_default or f"from --config, else {_schema_default(self.key)}"
        names = [self.flag, *([self.short] if self.short else [])]
        info = (
            typer.Option(*names, help=self.help, show_default=shown)
            if self.flag.startswith("--")
            else typer.Argument(help=self.help, show_default=shown)
        )
        return inspect.Parameter(
            self.name, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=Annotated[self.kind | None, info]
        )

    def typed(self, value: Any) -> list[tuple[KeyPath, Any]]:
        """The (key, value) pairs for a value the user typed."""
        return self.settings(value) if self.settings is not None else [(self.key, value)]


def _video_type(value: str) -> list[tuple[KeyPath, Any]]:
    suffix = f".{value.lstrip('.')}"
    keys: list[tuple[KeyPath, Any]] = [(("dataset", EVERY_SPLIT, "dir", "vid_suffix"), suffix)]
    if "tif" in suffix:  # DREEM's rule: a TIFF video comes with Cell Tracking Challenge labels
        keys.append((("dataset", EVERY_SPLIT, "dir", "labels_suffix"), Implied(suffix)))
    return keys


def _accelerator(gpu: bool) -> list[tuple[KeyPath, Any]]:
    return [(("trainer", "accelerator"), "gpu" if gpu else "cpu")]


VIDEO_TYPE = ConfigOption(
    "--video-type",
    ("dataset", EVERY_SPLIT, "dir", "vid_suffix"),
    str,
    "Video suffix without the dot, every split (dir.vid_suffix); tif/tiff also reads CTC labels "
    "(dir.labels_suffix), as in DREEM, unless the config or --set names a labels_suffix.",
    "from --config, else mp4",
    "-vt",
    _video_type,
)
GPU = ConfigOption(
    "--gpu/--no-gpu",
    ("trainer", "accelerator"),
    bool,
    "Run on a CUDA GPU (trainer.accelerator gpu) or on the CPU (cpu).",
    "from --config, else a GPU when the machine has one",
    "-g",
    _accelerator,
)


def _schema_default(key: KeyPath) -> Any:
    section = section_at(tuple("train_dataset" if part == EVERY_SPLIT else part for part in key[:-1]))
    assert section is not None, key
    return section.model_fields[str(key[-1])].default


CONFIG_OPTIONS = (
    ConfigOption(
        "train_dir",
        ("dataset", "train_dataset", "dir", "path"),
        str,
        "Training data directory (sets dataset.train_dataset.dir.path).",
        "from --config",
    ),
    ConfigOption(
        "--val-dir",
        ("dataset", "val_dataset", "dir", "path"),
        str,
        "Validation data directory (sets dataset.val_dataset.dir.path).",
        "from --config",
        "-vd",
    ),
    ConfigOption(
        "--crop-size",
        ("dataset", EVERY_SPLIT, "crop_size"),
        int,
        "Crop size in pixels around each instance, every split.",
        short="-cs",
    ),
    ConfigOption(
        "--epochs", ("trainer", "max_epochs"), int, "Maximum epochs (trainer.max_epochs; -1 for no limit).", short="-e"
    ),
    ConfigOption("--lr", ("optimizer", "lr"), float, "Learning rate (optimizer.lr)."),
    ConfigOption("--d-model", ("model", "d_model"), int, "Transformer embedding size (model.d_model)."),
    ConfigOption("--nhead", ("model", "nhead"), int, "Attention heads (model.nhead)."),
    ConfigOption(
        "--encoder-layers",
        ("model", "num_encoder_layers"),
        int,
        "Transformer encoder layers (model.num_encoder_layers).",
    ),
    ConfigOption(
        "--decoder-layers",
        ("model", "num_decoder_layers"),
        int,
        "Transformer decoder layers (model.num_decoder_layers).",
    ),
    ConfigOption(
        "--anchor",
        ("dataset", EVERY_SPLIT, "anchors"),
        str,
        "Node to centre crops on (dataset.*.anchors), every split.",
        short="-a",
    ),
    ConfigOption(
        "--clip-length",
        ("dataset", EVERY_SPLIT, "clip_length"),
        int,
        "Frames per clip (dataset.*.clip_length), every split.",
        short="-cl",
    ),
    VIDEO_TYPE,
    ConfigOption(
        "--resume",
        ("checkpointing", "resume"),
        str,
        "auto: continue from the newest checkpoint in checkpointing.dirpath; never: start afresh.",
        "auto when checkpointing.dirpath is on S3, else never",
    ),
    GPU,
    ConfigOption("--logger", ("logging", "logger_type"), str, "Experiment logger (logging.logger_type).", short="-l"),
    ConfigOption(
        "--run-name",
        ("logging", "name"),
        str,
        "Run name (logging.name; checkpoints go to ./models/<name>).",
        short="-rn",
    ),
)
"""Every option `dreem train` takes, in the order --help lists them and their values apply: directories
first, so that the options for every split reach a validation split the command line adds."""

CROP_OPTIONS = tuple(option for option in CONFIG_OPTIONS if option.key[:2] == ("dataset", EVERY_SPLIT))
"""The options of `dreem train` that `dreem track` and `dreem eval` take too: how crops are cut, in every split."""


def _save_meta(save: bool) -> list[tuple[KeyPath, Any]]:
    return [(("save_frame_meta",), True)] if save else []


TRACKING_OPTIONS = (
    *CROP_OPTIONS,
    ConfigOption(
        "--max-detection-overlap",
        ("dataset", EVERY_SPLIT, "max_detection_overlap"),
        float,
        "Of two detections overlapping more than this, drop the worse-posed (dataset.*.max_detection_overlap).",
        short="-di",
    ),
    ConfigOption(
        "--dilation-radius",
        ("dataset", EVERY_SPLIT, "dilation_radius_px"),
        int,
        "Mask crops outside this many pixels of a keypoint (dataset.*.dilation_radius_px).",
        short="-dr",
    ),
    ConfigOption(
        "--confidence-threshold",
        ("tracker", "confidence_threshold"),
        float,
        "Flag frames whose assignment is less certain than this for review (tracker.confidence_threshold).",
        short="-conf",
    ),
    ConfigOption(
        "--iou-mode",
        ("tracker", "iou"),
        str,
        "How box overlap enters the score: mult or max (tracker.iou).",
        short="-iou",
    ),
    ConfigOption(
        "--max-dist",
        ("tracker", "max_center_dist"),
        float,
        "Pixels a centre may move before it is penalised (tracker.max_center_dist).",
        short="-md",
    ),
    ConfigOption(
        "--max-dist-multiplier",
        ("tracker", "distance_penalty_multiplier"),
        float,
        "Weight of that penalty (tracker.distance_penalty_multiplier).",
        short="-mdm",
    ),
    ConfigOption(
        "--max-gap",
        ("tracker", "max_gap"),
        int,
        "Frames a track may be missing before it ends (tracker.max_gap).",
        short="-mg",
    ),
    ConfigOption(
        "--overlap-thresh",
        ("tracker", "overlap_thresh"),
        float,
        "Score a match must exceed to join a track (tracker.overlap_thresh).",
        short="-ot",
    ),
    ConfigOption(
        "--mult-thresh/--no-mult-thresh",
        ("tracker", "mult_thresh"),
        bool,
        "Multiply overlap_thresh by the track's instances in the window (tracker.mult_thresh).",
        short="-mt",
    ),
    ConfigOption(
        "--max-angle",
        ("tracker", "max_angle_diff"),
        float,
        "Degrees a body may turn before it is penalised (tracker.max_angle_diff).",
        short="-ma",
    ),
    ConfigOption(
        "--max-tracks", ("tracker", "max_tracks"), int, "Most tracks at once (tracker.max_tracks).", short="-mx"
    ),
    ConfigOption(
        "--front-node",
        ("tracker", "front_nodes"),
        list[str],
        "Node at the front of the body (repeatable; tracker.front_nodes).",
        short="-fn",
    ),
    ConfigOption(
        "--back-node",
        ("tracker", "back_nodes"),
        list[str],
        "Node at the back of the body (repeatable; tracker.back_nodes).",
        short="-bn",
    ),
    ConfigOption(
        "--save-meta",
        ("save_frame_meta",),
        bool,
        "DREEM's frame-metadata file (save_frame_meta): dreem does not write it, so this is refused.",
        "false",
        "-sm",
        _save_meta,
    ),
    GPU,
)
"""The options `dreem track` and `dreem eval` take: DREEM's, each setting keys of the configuration."""


@dataclass(frozen=True)
class ConfigSources:
    """Where a command's configuration comes from, in increasing precedence: [a checkpoint's <] the --config
    file < --set < the options typed. An option left out is not here, so it cannot override the file."""

    file: Path | None
    sets: list[str]
    typed: list[tuple[KeyPath, Any]]
    quiet: bool = False
    """--quiet: only warnings and errors; the command prints no progress."""

    def load(self, base: dict[str, Any] | None = None) -> DreemConfig:
        return load_config(self.file, self.sets, self.typed, base=base)


def _command(summary: str, options: Sequence[ConfigOption], act: Callable[..., None]) -> Callable[..., None]:
    """A command taking `act`'s own parameters, then `options`, then --config and --set.

    `act` gets the ConfigSources first, then its own parameters by name.
    """

    def sources(values: dict[str, Any]) -> ConfigSources:
        typed = [(option, values.pop(option.name)) for option in options]
        quiet = values.pop("quiet")
        _log_level(quiet, values.pop("verbose"))
        return ConfigSources(
            values.pop("config_file"),
            values.pop("set_") or [],
            # An empty repeatable option (--front-node given never) is left out like any other.
            [setting for option, value in typed if value not in (None, []) for setting in option.typed(value)],
            quiet,
        )

    return _assembled(summary, act, [*(option.parameter() for option in options), *_SOURCE_PARAMETERS], sources)


def _assembled(
    summary: str, act: Callable[..., None], options: list[inspect.Parameter], gather: Callable[[dict[str, Any]], Any]
) -> Callable[..., None]:
    """A command taking `act`'s own parameters after its first, then `options`. `gather` takes the options'
    values out of what the command was given and makes `act`'s first argument of them."""
    own = list(inspect.signature(act, eval_str=True).parameters.values())[1:]

    def command(**values: Any) -> None:
        first = gather(values)
        act(first, **values)

    command.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        [parameter.replace(kind=inspect.Parameter.KEYWORD_ONLY) for parameter in [*own, *options]]
    )
    command.__doc__ = summary
    return command


Quiet = Annotated[
    bool,
    typer.Option("--quiet", "-q", help="Only warnings and errors from dreem's log; track and eval print no progress."),
]
Verbose = Annotated[bool, typer.Option("--verbose", help="Also print dreem's informational log lines.")]

_SOURCE_PARAMETERS = (
    inspect.Parameter("config_file", inspect.Parameter.KEYWORD_ONLY, default=None, annotation=ConfigFile),
    inspect.Parameter("set_", inspect.Parameter.KEYWORD_ONLY, default=None, annotation=SetOverrides),
    inspect.Parameter("quiet", inspect.Parameter.KEYWORD_ONLY, default=False, annotation=Quiet),
    inspect.Parameter("verbose", inspect.Parameter.KEYWORD_ONLY, default=False, annotation=Verbose),
)
"""--config and --set, which every command that loads a configuration takes last, and DREEM's --quiet and
--verbose."""

_LOG = logging.getLogger("dreem_trainer")


def _log_level(quiet: bool, verbose: bool) -> None:
    """DREEM's --quiet and --verbose: only warnings and errors, or dreem's informational lines as well."""
    if quiet or verbose:
        if not _LOG.handlers:
            handler = logging.StreamHandler()
            handler.setFormatter(logging.Formatter("%(message)s"))
            _LOG.addHandler(handler)
            # dreem's own lines only: through the root logger, Lightning's (which have their handler) came twice.
            _LOG.propagate = False
        _LOG.setLevel(logging.WARNING if quiet else logging.INFO)


def _train(sources: ConfigSources) -> None:
    with _reported():
        config = sources.load()
    missing = []
    if not config.dataset.train_dataset.has_source:
        missing.append(
            ConfigIssue(
                "dataset.train_dataset.dir.path",
                "no training data: give TRAIN_DIR, dir.path or slp_files/video_files",
                has_value=False,
            )
        )
    if config.dataset.val_dataset is not None and not config.dataset.val_dataset.has_source:
        # An empty validation split would train on, then fail at the first metric it was to compute.
        missing.append(
            ConfigIssue(
                "dataset.val_dataset.dir.path",
                "no validation data: give --val-dir, dir.path or slp_files/video_files, "
                "or val_dataset: null to train without validation",
                has_value=False,
            )
        )
    if missing:
        _fail(ConfigError(missing, str(sources.file) if sources.file else None))
    from dreem_trainer.training.run import run_training
    from dreem_trainer.training.termination import INTERRUPTED_EXIT, TrainingInterrupted

    with _reported():
        try:
            run_training(config)
        except TrainingInterrupted as interrupted:
            typer.echo(str(interrupted), err=True)
            raise typer.Exit(INTERRUPTED_EXIT) from None


app.command("train")(
    _command(
        "Train a tracker. Precedence: schema defaults < --config < --set < flags you type.", CONFIG_OPTIONS, _train
    )
)


CheckpointOption = Annotated[
    str | None,
    typer.Option(
        "--checkpoint",
        "-ckpt",
        help="Trained checkpoint: a .ckpt (ours or DREEM's) or hf://owner/repo, hf://owner/repo/FILE; "
        "its configuration is the base.",
        show_default="ckpt_path from --config",
    ),
]
InputDir = Annotated[
    str | None,
    typer.Argument(help="Directory of labels and videos, paired by name.", show_default="from --slp-file/--video-file"),
]
SlpFiles = Annotated[
    list[str] | None,
    typer.Option(
        "--slp-file",
        "-slp",
        help="A labels file (repeatable): with --video-file, one each in order; without, the videos it names.",
        show_default="none",
    ),
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
RenderFlag = Annotated[
    bool,
    typer.Option("--render", help="Also draw each tracked file over its video, as <tracked file>.mp4 beside it."),
]
OverwriteFlag = Annotated[
    bool,
    typer.Option("--overwrite", help="Replace tracked files (and drawings) an earlier run wrote to --output."),
]

InferenceRun = Callable[[DreemConfig, Path, list[SourcePair], Path, bool, bool, bool], None]
"""`dreem track` or `dreem eval` once its inputs are known: configuration, checkpoint, pairs, output, whether
to render each tracked file over its video, to print no progress (--quiet), and to replace earlier outputs."""


def _inference_command(run: InferenceRun, summary: str) -> Callable[..., None]:
    """`dreem track` and `dreem eval` take the same options and differ only in what runs."""

    def act(
        sources: ConfigSources,
        input_dir: InputDir = None,
        checkpoint: CheckpointOption = None,
        output: OutputDir = None,
        slp_file: SlpFiles = None,
        video_file: VideoFiles = None,
        render: RenderFlag = False,
        overwrite: OverwriteFlag = False,
    ) -> None:
        with _reported(FileNotFoundError, ValueError):
            local = _local_checkpoint(*_checkpoint_named(checkpoint, sources), sources)
        config, pairs = _inference_inputs(sources, local, input_dir, slp_file, video_file)
        target = output or Path(config.outdir or "./results")
        # Reading the videos and tracking them meets the data: a DataError there is the user's to fix.
        with _reported():
            run(config, local, pairs, target, render, sources.quiet, overwrite)

    return _command(summary, TRACKING_OPTIONS, act)


def _checkpoint_named(checkpoint: str | None, sources: ConfigSources) -> tuple[str, str]:
    """The checkpoint and the option or key naming it: --checkpoint, else ckpt_path of the configuration
    (where DREEM's inference configs name it)."""
    if checkpoint is not None:
        return checkpoint, "--checkpoint"
    named = resolve_raw(sources.file, sources.sets).get("ckpt_path")
    if not named:
        raise ConfigError(
            [ConfigIssue("--checkpoint", "no checkpoint: give --checkpoint or ckpt_path", has_value=False)]
        )
    return str(named), "ckpt_path"


def _local_checkpoint(checkpoint: str, key: str, sources: ConfigSources) -> Path:
    """The checkpoint file; one named hf://... comes from the Hugging Face cache, and one named s3://... (a
    cluster job's) from the download cache, with the options' storage settings, downloaded if need be."""
    from dreem_trainer.config.paths import is_s3
    from dreem_trainer.models.hub import fetch_checkpoint, is_hub

    if is_s3(checkpoint):
        from dreem_trainer.config.loader import validate
        from dreem_trainer.storage.download import download

        # Only the storage section, before the checkpoint's configuration is the base of the rest: reading
        # all of it here would read it twice (and print its notices twice).
        storage = resolve_raw(sources.file, sources.sets, sources.typed).get("storage") or {}
        return download(validate({"storage": storage}, str(sources.file) if sources.file else None).storage, checkpoint)
    return fetch_checkpoint(checkpoint, key) if is_hub(checkpoint) else Path(checkpoint)


def _inference_inputs(
    sources: ConfigSources,
    checkpoint: Path,
    input_dir: str | None,
    slp_files: list[str] | None,
    video_files: list[str] | None,
) -> tuple[DreemConfig, list[SourcePair]]:
    """The checkpoint's configuration refined by the options, its test split reading the inputs given
    (downloaded first when on S3), and the (labels, video) pairs to track."""
    from dreem_trainer.data.discovery import discover
    from dreem_trainer.inference.run import tracking_base
    from dreem_trainer.storage.staging import stage_split

    given = {"--slp-file": len(slp_files or []), "--video-file": len(video_files or [])}
    if input_dir is not None and any(given.values()):
        both = "give INPUT_DIR or --slp-file/--video-file, not both (the files would not be tracked)"
        _fail(ConfigError([ConfigIssue("INPUT_DIR", both, input_dir)]))
    if given["--video-file"] and given["--slp-file"] != given["--video-file"]:
        counts = f"got {given['--slp-file']} --slp-file and {given['--video-file']} --video-file"
        unpaired = ConfigIssue(
            "--slp-file",
            f"one --video-file per --slp-file, in order, or none for the videos each names; {counts}",
            has_value=False,
        )
        _fail(ConfigError([unpaired]))
    with _reported(FileNotFoundError, ValueError):
        base = tracking_base(checkpoint)
        config = sources.load(base=base)
        split = config.dataset.test_split()
        if "dataset" not in base:  # DREEM's checkpoints keep their network's section only
            _say_assumed_crops(sources, split)
        if input_dir is not None or slp_files or video_files:
            split = split.reading(input_dir, slp_files or None, video_files or None)
        if not split.has_source:
            nothing = "nothing to track: give INPUT_DIR or --slp-file/--video-file"
            raise ConfigError([ConfigIssue("INPUT_DIR", nothing, has_value=False)])
        split = stage_split(config.storage, split)
        config = config.model_copy(update={"dataset": config.dataset.model_copy(update={"test_dataset": split})})
        pairs = discover(split)
    return config, pairs


def _say_assumed_crops(sources: ConfigSources, split: DatasetSplitConfig) -> None:
    """A checkpoint that does not say how its crops were made (DREEM's) tracks with the defaults unless told:
    a model trained on other crops tracks worse, without a word."""
    dataset = resolve_raw(sources.file, sources.sets, sources.typed).get("dataset") or {}
    given = {key for section in dataset.values() if isinstance(section, dict) for key in section}
    assumed = [f"{key} {getattr(split, key)!r}" for key in ("crop_size", "anchors") if key not in given]
    if assumed:
        _LOG.warning(
            "warning: the checkpoint does not store how its crops were made; tracking with %s: give "
            "--crop-size and --anchor as the model was trained",
            " and ".join(assumed),
        )


def _inference_run(name: Literal["run_tracking", "run_evaluation"]) -> InferenceRun:
    """`dreem track` (run_tracking) or `dreem eval` (run_evaluation), imported only when it runs: torch
    comes with it, and `--help` must not wait for torch."""

    def run(
        config: DreemConfig,
        checkpoint: Path,
        pairs: list[SourcePair],
        output: Path,
        render: bool,
        quiet: bool,
        overwrite: bool,
    ) -> None:
        from dreem_trainer.inference import run as inference

        getattr(inference, name)(config, checkpoint, pairs, output, render, quiet, overwrite)

    return run


app.command("track")(
    _inference_command(
        _inference_run("run_tracking"),
        "Track videos with a trained model; writes <output>/<video>.dreem_track.slp per video.",
    )
)
app.command("eval")(
    _inference_command(
        _inference_run("run_evaluation"),
        "Track labelled videos and score the tracks against their identities (metrics.json, per-video CSV).",
    )
)


def _render_options() -> list[inspect.Parameter]:
    """RenderOptions' command-line fields as options. One left out keeps RenderOptions' default."""
    hints = get_type_hints(RenderOptions)
    parameters = []
    for field in fields(RenderOptions):
        if CLI not in field.metadata:
            continue
        flag, settings = field.metadata[CLI]
        kind = hints[field.name]
        shown = False if kind is bool else str(field.default)
        info = typer.Option(flag, **{"show_default": shown, **settings})
        parameters.append(
            inspect.Parameter(
                field.name, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=Annotated[kind | None, info]
            )
        )
    return parameters


def _typed_render_options(values: dict[str, Any]) -> RenderOptions:
    typed = {field.name: values.pop(field.name) for field in fields(RenderOptions) if CLI in field.metadata}
    with _reported():
        return RenderOptions(**{name: value for name, value in typed.items() if value is not None})


def _render(
    options: RenderOptions,
    tracked: Annotated[
        Path,
        typer.Argument(
            help="What dreem track wrote: a .slp, CTC results (<seq>_RES/) or a tracks CSV.", show_default=False
        ),
    ],
    output: Annotated[
        Path, typer.Option("--output", "-o", help="Video to write (.mp4), or one frame as .png.", show_default=False)
    ],
    video: Annotated[
        str | None,
        typer.Option(
            "--video",
            help="The video (or TIFF frames) the tracks belong to.",
            show_default="the one the .slp names; <seq>/ beside <seq>_RES; the .tif named like the CSV",
        ),
    ] = None,
) -> None:
    from dreem_trainer.inference.render import render

    with _reported():
        result = render(tracked, output, video, options)
    if result.frames < result.requested:
        typer.echo(
            f"warning: {result.frames} of the {result.requested} frames asked for could be decoded: the video ends "
            "early, or has damaged frames, which are skipped (each frame after one is then drawn with the tracks "
            "of the frame before it)",
            err=True,
        )
    typer.echo(
        f"{result.output}: {result.frames} frame{'s' if result.frames != 1 else ''}, {result.width}x{result.height}, "
        f"{result.tracks} tracks, "
        f"{result.frames / result.seconds:.1f} frames/s"
    )


app.command("render")(
    _assembled(
        "Draw tracks over their video: each track in its own colour with its name, skeleton or point.",
        _render,
        _render_options(),
        _typed_render_options,
    )
)


@config_app.command("validate")
def config_validate(
    file: Annotated[Path, typer.Argument(help="Training YAML to check.", show_default=False)],
) -> None:
    """Check a training YAML: exit 0 when valid, 2 with every problem listed when not."""
    from dreem_trainer.training.preflight import ALL_SPLITS, configuration_issues, missing_inputs

    try:
        config = load_config(file)
    except ConfigError as error:
        _fail(error)
    issues = configuration_issues(config)
    if issues:
        _fail(ConfigError(issues, str(file)))
    # Not an error here: a configuration written for a cluster names the paths of its pods.
    for issue in missing_inputs(config, ALL_SPLITS):
        typer.echo(f"warning: {issue}", err=True)
    typer.echo(f"{file}: valid")


def _show(sources: ConfigSources) -> None:
    from dreem_trainer.tracking.metrics import effective_early_stopping

    with _reported():
        config = sources.load()
    if config.early_stopping is not None:  # what the metric table fills in, shown as training will use it
        config = config.model_copy(update={"early_stopping": effective_early_stopping(config.early_stopping)})
    typer.echo(dump_yaml(config), nl=False)


config_app.command("show")(
    _command(
        "Print the fully resolved configuration `dreem train` would use with the same options.", CONFIG_OPTIONS, _show
    )
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"dreem {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[
        bool, typer.Option("--version", "-v", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """Train, track and evaluate DREEM global tracking transformers."""


def entry_point() -> None:
    sys.exit(app())
