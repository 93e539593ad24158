"""Schema defaults < config file < --set < flags the user typed; a flag left out overrides nothing."""

from __future__ import annotations

import re
from typing import Any

import pytest
import typer
import yaml
from typer.testing import CliRunner

from dreem_trainer.cli import app


def show(*args: str) -> dict[str, Any]:
    result = CliRunner().invoke(app, ["config", "show", *args])
    assert result.exit_code == 0, result.output
    shown = yaml.safe_load(result.output)
    assert isinstance(shown, dict)
    return shown


def test_file_value_survives_when_the_flag_is_left_out(write_yaml: Any) -> None:
    config = write_yaml("model:\n  d_model: 256\n")
    assert show("--config", str(config))["model"]["d_model"] == 256
    assert "d_model: 256" in CliRunner().invoke(app, ["config", "show", "--config", str(config)]).output


def test_typed_flag_beats_the_file(write_yaml: Any) -> None:
    config = write_yaml("model:\n  d_model: 256\n")
    assert show("--config", str(config), "--d-model", "64")["model"]["d_model"] == 64


def test_set_beats_the_file_and_typed_flag_beats_set(write_yaml: Any) -> None:
    config = write_yaml("optimizer:\n  lr: 0.1\n")
    assert show("--config", str(config), "--set", "optimizer.lr=0.01")["optimizer"]["lr"] == 0.01
    assert show("--config", str(config), "--set", "optimizer.lr=0.01", "--lr", "0.5")["optimizer"]["lr"] == 0.5


def test_schema_default_when_nothing_is_given() -> None:
    shown = show()
    assert shown["model"]["d_model"] == 128 and shown["trainer"]["max_epochs"] == 20


@pytest.mark.parametrize(
    ("flag", "value", "path", "expected"),
    [
        ("--epochs", "3", ("trainer", "max_epochs"), 3),
        ("--lr", "0.002", ("optimizer", "lr"), 0.002),
        ("--nhead", "4", ("model", "nhead"), 4),
        ("--encoder-layers", "3", ("model", "num_encoder_layers"), 3),
        ("--decoder-layers", "2", ("model", "num_decoder_layers"), 2),
        ("--crop-size", "96", ("dataset", "train_dataset", "crop_size"), 96),
        ("--anchor", "thorax", ("dataset", "train_dataset", "anchors"), "thorax"),
        ("--clip-length", "8", ("dataset", "train_dataset", "clip_length"), 8),
        ("--val-dir", "/data/val", ("dataset", "val_dataset", "dir", "path"), "/data/val"),
        ("--resume", "never", ("checkpointing", "resume"), "never"),
        # DREEM's short names and its other train options.
        ("-e", "4", ("trainer", "max_epochs"), 4),
        ("-cs", "80", ("dataset", "train_dataset", "crop_size"), 80),
        ("-a", "head", ("dataset", "train_dataset", "anchors"), "head"),
        ("-cl", "12", ("dataset", "train_dataset", "clip_length"), 12),
        ("-vd", "/data/v", ("dataset", "val_dataset", "dir", "path"), "/data/v"),
        ("-vt", "avi", ("dataset", "train_dataset", "dir", "vid_suffix"), ".avi"),
        ("-vt", "tif", ("dataset", "train_dataset", "dir", "labels_suffix"), ".tif"),
        ("--no-gpu", None, ("trainer", "accelerator"), "cpu"),
        ("-g", None, ("trainer", "accelerator"), "gpu"),
        ("-l", "TensorBoardLogger", ("logging", "logger_type"), "TensorBoardLogger"),
        ("-rn", "flies", ("logging", "name"), "flies"),
        ("-s", "optimizer.lr=0.003", ("optimizer", "lr"), 0.003),
    ],
)
def test_each_flag_lands_on_its_key(
    write_yaml: Any, flag: str, value: str | None, path: tuple[str, ...], expected: Any
) -> None:
    base = write_yaml("model:\n  d_model: 128\n  nhead: 2\n  num_encoder_layers: 1\n  num_decoder_layers: 1\n")
    node: Any = show("--config", str(base), flag, *([value] if value is not None else []))
    for key in path:
        node = node[key]
    assert node == expected


def test_dataset_wide_flags_reach_train_and_val(write_yaml: Any) -> None:
    config = write_yaml(
        "dataset:\n  train_dataset:\n    crop_size: 64\n  val_dataset:\n    crop_size: 64\n    dir: {path: /v}\n"
    )
    shown = show("--config", str(config), "/data/train", "--crop-size", "96", "--anchor", "thorax")
    for split in ("train_dataset", "val_dataset"):
        assert shown["dataset"][split]["crop_size"] == 96
        assert shown["dataset"][split]["anchors"] == "thorax"
    assert shown["dataset"]["train_dataset"]["dir"]["path"] == "/data/train"
    assert shown["dataset"]["test_dataset"] is None


def test_a_tiff_video_type_implies_ctc_labels_only_where_the_user_chose_none(write_yaml: Any) -> None:
    """DREEM's `-vt tif` reads CTC labels; a TrackMate CSV beside its TIFF stack keeps the suffix the user set,
    in the file or with --set (a flag would otherwise win over both)."""
    plain = write_yaml("dataset:\n  train_dataset:\n    dir: {path: /d}\n", "plain.yaml")
    assert show("--config", str(plain), "-vt", "tif")["dataset"]["train_dataset"]["dir"]["labels_suffix"] == ".tif"
    chosen = write_yaml("dataset:\n  train_dataset:\n    dir: {path: /d, labels_suffix: .csv}\n", "chosen.yaml")
    shown = show("--config", str(chosen), "-vt", "tif")["dataset"]["train_dataset"]["dir"]
    assert (shown["labels_suffix"], shown["vid_suffix"]) == (".csv", ".tif")
    shown = show("--config", str(plain), "--set", "dataset.train_dataset.dir.labels_suffix=.xml", "-vt", "tif")
    assert shown["dataset"]["train_dataset"]["dir"]["labels_suffix"] == ".xml"


def test_set_reads_values_as_yaml() -> None:
    shown = show(
        "--set", "optimizer.betas=[0.8, 0.9]", "--set", "logging=null", "--set", "checkpointing.monitor=val_idf1"
    )
    assert shown["optimizer"]["betas"] == [0.8, 0.9]
    assert shown["logging"] is None
    assert shown["checkpointing"]["monitor"] == ["val_idf1"]


def _commands(group: Any, prefix: str = "") -> list[tuple[str, Any]]:
    found: list[tuple[str, Any]] = []
    for name, command in group.commands.items():
        full = f"{prefix} {name}".strip()
        found.append((full, command))
        if hasattr(command, "commands"):
            found.extend(_commands(command, full))
    return found


def test_train_and_config_show_take_the_same_options() -> None:
    commands = dict(_commands(typer.main.get_command(app)))
    options = {name: {p.name for p in commands[name].params} for name in ("train", "config show")}
    assert options["train"] == options["config show"]
    assert {"resume", "epochs", "d_model", "set_"} <= options["train"]


def test_help_lists_every_option_with_meaning_and_default() -> None:
    commands = _commands(typer.main.get_command(app))
    assert {"train", "config validate", "config show"} <= {name for name, _ in commands}
    for name, command in commands:
        result = CliRunner().invoke(app, [*name.split(), "--help"], env={"COLUMNS": "200"})
        assert result.exit_code == 0, name
        for param in command.params:
            if param.name == "help":
                continue
            shown = param.opts[0] if param.param_type_name == "option" else param.name
            assert shown is not None and shown in result.output, f"{name}: {shown} missing from --help"
            assert getattr(param, "help", None), f"{name}: {shown} has no help"
            if param.param_type_name == "option" and not param.is_flag:
                option_help = re.split(r"\n\W*-", result.output.split(shown + " ", 1)[1], maxsplit=1)[0]
                assert "default" in option_help or "required" in option_help, f"{name}: {shown} shows no default"


def test_tracking_options_name_keys_of_the_schema() -> None:
    """Every option of dreem track and eval sets a key the schema has, so none fails only when typed."""
    from dreem_trainer.cli import TRACKING_OPTIONS
    from dreem_trainer.config.loader import section_at

    for option in TRACKING_OPTIONS:
        section = section_at(tuple("test_dataset" if part == "*" else part for part in option.key[:-1]))
        assert section is not None and option.key[-1] in section.model_fields, option.flag
