"""`dreem`: train, track and evaluate DREEM trackers from one YAML configuration.

Every command resolves its configuration through `dreem_trainer.config.load_config`, so defaults,
the config file, `--set` and typed flags combine the same way everywhere. The heavy stack (torch,
Lightning) is imported only by the commands that need it, so `dreem config ...` answers at once.
"""

from __future__ import annotations

import inspect
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer

from dreem_trainer import __version__
from dreem_trainer.config import EVERY_SPLIT, ConfigError, ConfigIssue, DreemConfig, dump_yaml, load_config
from dreem_trainer.config.loader import KeyPath, section_at
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
        help="Override one key, e.g. --set model.d_model=256 (repeatable; value read as YAML).",
        show_default="none",
    ),
]


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


@dataclass(frozen=True)
class ConfigOption:
    """A command-line option that sets one key of the configuration, when the user types it."""

    flag: str
    """`--d-model`, or a positional argument's name (`train_dir`)."""
    key: KeyPath
    kind: type
    help: str
    shown_default: str | None = None
    """What --help shows; by default the schema's default, which --config may change."""

    @property
    def name(self) -> str:
        """The command's parameter."""
        return self.flag.removeprefix("--").replace("-", "_")

    def parameter(self) -> inspect.Parameter:
        shown = self.shown_default or f"from --config, else {_schema_default(self.key)}"
        info = (
            typer.Option(self.flag, help=self.help, show_default=shown)
            if self.flag.startswith("--")
            else typer.Argument(help=self.help, show_default=shown)
        )
        return inspect.Parameter(
            self.name, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=Annotated[self.kind | None, info]
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
    ),
    ConfigOption(
        "--crop-size",
        ("dataset", EVERY_SPLIT, "crop_size"),
        int,
        "Crop size in pixels around each instance, every split.",
    ),
    ConfigOption("--epochs", ("trainer", "max_epochs"), int, "Maximum epochs (trainer.max_epochs; -1 for no limit)."),
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
    ),
    ConfigOption(
        "--clip-length",
        ("dataset", EVERY_SPLIT, "clip_length"),
        int,
        "Frames per clip (dataset.*.clip_length), every split.",
    ),
    ConfigOption(
        "--resume",
        ("checkpointing", "resume"),
        str,
        "auto: continue from the newest checkpoint in checkpointing.dirpath; never: start afresh.",
        "auto when checkpointing.dirpath is on S3, else never",
    ),
)
"""Every option `dreem train` takes, in the order --help lists them and their values apply: directories
first, so that the options for every split reach a validation split the command line adds."""

CROP_OPTIONS = tuple(option for option in CONFIG_OPTIONS if option.key[:2] == ("dataset", EVERY_SPLIT))
"""The options `dreem track` and `dreem eval` take: how crops are cut, in every split."""


@dataclass(frozen=True)
class ConfigSources:
    """Where a command's configuration comes from, in increasing precedence: [a checkpoint's <] the --config
    file < --set < the options typed. An option left out is not here, so it cannot override the file."""

    file: Path | None
    sets: list[str]
    typed: list[tuple[KeyPath, Any]]

    def load(self, base: dict[str, Any] | None = None) -> DreemConfig:
        return load_config(self.file, self.sets, self.typed, base=base)


def _command(summary: str, options: Sequence[ConfigOption], act: Callable[..., None]) -> Callable[..., None]:
    """A command taking `act`'s own parameters, then `options`, then --config and --set.

    `act` gets the ConfigSources first, then its own parameters by name.
    """
    own = list(inspect.signature(act, eval_str=True).parameters.values())[1:]

    def command(**values: Any) -> None:
        typed = [(option.key, values.pop(option.name)) for option in options]
        sources = ConfigSources(
            values.pop("config_file"),
            values.pop("set_") or [],
            [(key, value) for key, value in typed if value is not None],
        )
        act(sources, **values)

    parameters = [*own, *(option.parameter() for option in options), *_SOURCE_PARAMETERS]
    command.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        [parameter.replace(kind=inspect.Parameter.KEYWORD_ONLY) for parameter in parameters]
    )
    command.__doc__ = summary
    return command


_SOURCE_PARAMETERS = (
    inspect.Parameter("config_file", inspect.Parameter.KEYWORD_ONLY, default=None, annotation=ConfigFile),
    inspect.Parameter("set_", inspect.Parameter.KEYWORD_ONLY, default=None, annotation=SetOverrides),
)
"""--config and --set, which every command that loads a configuration takes last."""


def _train(sources: ConfigSources) -> None:
    with _reported():
        config = sources.load()
    if not config.dataset.train_dataset.has_source:
        missing = ConfigIssue(
            "dataset.train_dataset.dir.path",
            "no training data: give TRAIN_DIR, dir.path or slp_files/video_files",
            has_value=False,
        )
        _fail(ConfigError([missing], str(sources.file) if sources.file else None))
    from dreem_trainer.training.run import run_training

    with _reported():
        run_training(config)


app.command("train")(
    _command(
        "Train a tracker. Precedence: schema defaults < --config < --set < flags you type.", CONFIG_OPTIONS, _train
    )
)


CheckpointOption = Annotated[
    str,
    typer.Option(
        "--checkpoint",
        help="Trained checkpoint: a .ckpt (ours or DREEM's) or hf://owner/repo, hf://owner/repo/FILE; "
        "its configuration is the base.",
        show_default=False,
    ),
]
GpuOption = Annotated[
    bool | None,
    typer.Option(
        "--gpu/--no-gpu",
        help="Track on a CUDA GPU (trainer.accelerator gpu) or on the CPU (cpu).",
        show_default="a GPU when the machine has one",
    ),
]
InputDir = Annotated[
    str | None,
    typer.Argument(help="Directory of labels and videos, paired by name.", show_default="from --slp-file/--video-file"),
]
SlpFiles = Annotated[
    list[str] | None,
    typer.Option("--slp-file", help="A labels file (repeatable, one per --video-file).", show_default="none"),
]
VideoFiles = Annotated[
    list[str] | None,
    typer.Option("--video-file", help="The video of the matching --slp-file (repeatable).", show_default="none"),
]
OutputDir = Annotated[
    Path, typer.Option("--output", "-o", help="Directory for tracked labels and metrics.", show_default=False)
]

InferenceRun = Callable[[DreemConfig, Path, list[SourcePair], Path], None]
"""`dreem track` or `dreem eval` once its inputs are known: configuration, checkpoint, pairs, output."""


def _inference_command(run: InferenceRun, summary: str) -> Callable[..., None]:
    """`dreem track` and `dreem eval` take the same options and differ only in what runs."""

    def act(
        sources: ConfigSources,
        checkpoint: CheckpointOption,
        output: OutputDir,
        input_dir: InputDir = None,
        slp_file: SlpFiles = None,
        video_file: VideoFiles = None,
        gpu: GpuOption = None,
    ) -> None:
        if gpu is not None:
            sources = replace(sources, typed=[*sources.typed, (("trainer", "accelerator"), "gpu" if gpu else "cpu")])
        with _reported():
            local = _local_checkpoint(checkpoint)
        config, pairs = _inference_inputs(sources, local, input_dir, slp_file, video_file)
        with _reported():
            run(config, local, pairs, output)

    return _command(summary, CROP_OPTIONS, act)


def _local_checkpoint(checkpoint: str) -> Path:
    """The checkpoint file; one named hf://... comes from the Hugging Face cache, downloaded if need be."""
    from dreem_trainer.models.hub import fetch_checkpoint, is_hub

    return fetch_checkpoint(checkpoint, "--checkpoint") if is_hub(checkpoint) else Path(checkpoint)


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

    with _reported(FileNotFoundError, ValueError):
        config = sources.load(base=tracking_base(checkpoint))
        split = config.dataset.test_split()
        if input_dir is not None or slp_files or video_files:
            split = split.reading(input_dir, slp_files or None, video_files or None)
        if not split.has_source:
            nothing = "nothing to track: give INPUT_DIR or --slp-file/--video-file"
            raise ConfigError([ConfigIssue("INPUT_DIR", nothing, has_value=False)])
        split = stage_split(config.storage, split)
        config = config.model_copy(update={"dataset": config.dataset.model_copy(update={"test_dataset": split})})
        pairs = discover(split)
    return config, pairs


def _track(config: DreemConfig, checkpoint: Path, pairs: list[SourcePair], output: Path) -> None:
    from dreem_trainer.inference.run import run_tracking

    run_tracking(config, checkpoint, pairs, output)


def _evaluate(config: DreemConfig, checkpoint: Path, pairs: list[SourcePair], output: Path) -> None:
    from dreem_trainer.inference.run import run_evaluation

    run_evaluation(config, checkpoint, pairs, output)


app.command("track")(
    _inference_command(_track, "Track videos with a trained model; writes <output>/<video>.dreem_track.slp per video.")
)
app.command("eval")(
    _inference_command(
        _evaluate,
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


def _show(sources: ConfigSources) -> None:
    with _reported():
        config = sources.load()
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
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """Train, track and evaluate DREEM global tracking transformers."""


def entry_point() -> None:
    sys.exit(app())
