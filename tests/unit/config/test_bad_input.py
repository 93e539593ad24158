"""Each class of configuration mistake fails at load time, naming the key path and the bad value."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from dreem_trainer.cli import app
from dreem_trainer.contract import EXIT_USER_ERROR
from tests.conftest import DEMO_DATA

DIR = "dataset:\n  train_dataset:\n    dir:\n      path: /data/train\n"

# (case id, YAML text, key path the message must name, text the message must show)
CASES: list[tuple[str, str, str, str]] = [
    ("unknown top-level section", "modle:\n  d_model: 64\n", "modle", "did you mean 'model'"),
    ("unknown model key", "model:\n  d_modle: 64\n", "model.d_modle", "did you mean 'd_model'"),
    (
        "unknown nested key",
        "model:\n  embedding_meta:\n    pos:\n      n_point: 2\n",
        "model.embedding_meta.pos.n_point",
        "did you mean 'n_points'",
    ),
    ("unknown loss key", "loss:\n  asso_wieght: 2\n", "loss.asso_wieght", "did you mean 'asso_weight'"),
    ("wrong type int", "model:\n  d_model: big\n", "model.d_model", "'big'"),
    ("wrong type bool", "model:\n  norm: maybe\n", "model.norm", "'maybe'"),
    ("wrong type list", "checkpointing:\n  monitor: {a: 1}\n", "checkpointing.monitor", "{'a': 1}"),
    ("negative dropout", "model:\n  dropout: -0.2\n", "model.dropout", "-0.2"),
    ("dropout of one", "model:\n  dropout_attn_head: 1.0\n", "model.dropout_attn_head", "1.0"),
    ("nhead not dividing d_model", "model:\n  d_model: 100\n  nhead: 3\n", "model.nhead", "got 3"),
    ("zero d_model", "model:\n  d_model: 0\n", "model.d_model", "got 0"),
    (
        "n_points without mlp_cfg",
        "model:\n  embedding_meta:\n    pos:\n      n_points: 4\n",
        "model.embedding_meta.pos.n_points",
        "got 4",
    ),
    (
        "fixed points without a projecting layer",
        "model:\n  embedding_meta:\n    pos:\n      mode: fixed\n      n_points: 2\n      mlp_cfg: {num_layers: 0}\n",
        "model.embedding_meta.pos.mlp_cfg.num_layers",
        "got 0",
    ),
    (
        "negative node dropout count",
        "dataset:\n  train_dataset:\n    augmentations:\n      NodeDropout: {p: 0.5, n: -3}\n",
        "dataset.train_dataset.augmentations.NodeDropout.n",
        "got -3",
    ),
    (
        "instance dropout probability above one",
        "dataset:\n  train_dataset:\n    augmentations:\n      InstanceDropout: {p: 1.5}\n",
        "dataset.train_dataset.augmentations.InstanceDropout.p",
        "got 1.5",
    ),
    (
        "boolean for a number",
        "dataset:\n  train_dataset:\n    crop_size: true\n",
        "dataset.train_dataset.crop_size",
        "got True",
    ),
    (
        "n_chunks fraction above one",
        "dataset:\n  train_dataset:\n    n_chunks: 2.0\n",
        "dataset.train_dataset.n_chunks",
        "write 2",
    ),
    ("bad activation", "model:\n  activation: tanh\n", "model.activation", "'tanh'"),
    (
        "bad embedding mode",
        "model:\n  embedding_meta:\n    temp:\n      mode: rotary\n",
        "model.embedding_meta.temp.mode",
        "'rotary'",
    ),
    (
        "unknown backbone",
        "model:\n  encoder_cfg:\n    model_name: resnet19\n",
        "model.encoder_cfg.model_name",
        "resnet19",
    ),
    (
        "torchvision non-resnet",
        "model:\n  encoder_cfg:\n    backend: torchvision\n    model_name: vit_b_16\n",
        "model.encoder_cfg.model_name",
        "vit_b_16",
    ),
    ("bad backend", "model:\n  encoder_cfg:\n    backend: keras\n", "model.encoder_cfg.backend", "'keras'"),
    (
        "in_chans against anchors",
        "model:\n  encoder_cfg:\n    in_chans: 3\ndataset:\n  train_dataset:\n    anchors: [head, thorax]\n",
        "model.encoder_cfg.in_chans",
        "got 3",
    ),
    ("unknown optimizer", "optimizer:\n  name: Adamm\n", "optimizer.name", "did you mean 'Adam'"),
    ("lowercase optimizer", "optimizer:\n  name: adam\n", "optimizer.name", "'adam'"),
    (
        "optimizer kwarg it lacks",
        "optimizer:\n  name: SGD\n  betas: [0.9, 0.99]\n",
        "optimizer.betas",
        "SGD takes no argument 'betas'",
    ),
    (
        "optimizer kwarg typo",
        "optimizer:\n  momentun: 0.9\n  name: SGD\n",
        "optimizer.momentun",
        "did you mean 'momentum'",
    ),
    ("negative lr", "optimizer:\n  lr: -1\n", "optimizer.lr", "got -1"),
    ("unknown scheduler", "scheduler:\n  name: CosineLR\n", "scheduler.name", "'CosineLR'"),
    ("scheduler kwarg typo", "scheduler:\n  patiense: 3\n", "scheduler.patiense", "did you mean 'patience'"),
    ("scheduler bad mode", "scheduler:\n  mode: lowest\n", "scheduler.mode", "'lowest'"),
    (
        "unknown augmentation",
        DIR + "    augmentations:\n      Rotatee: {limit: 3}\n",
        "dataset.train_dataset.augmentations.Rotatee",
        "did you mean 'Rotate'",
    ),
    (
        "augmentation kwarg",
        DIR + "    augmentations:\n      Rotate: {limitt: 3}\n",
        "dataset.train_dataset.augmentations.Rotate.limitt",
        "got 3",
    ),
    (
        "crop_size list length",
        "dataset:\n  train_dataset:\n    crop_size: [64, 96]\n    dir:\n      path: /data/a\n",
        "dataset.train_dataset.crop_size",
        "[64, 96]",
    ),
    (
        "negative crop size",
        "dataset:\n  train_dataset:\n    crop_size: -5\n",
        "dataset.train_dataset.crop_size",
        "got -5",
    ),
    ("zero anchors", "dataset:\n  train_dataset:\n    anchors: 0\n", "dataset.train_dataset.anchors", "got 0"),
    (
        "bad handle_missing",
        "dataset:\n  train_dataset:\n    handle_missing: skip\n",
        "dataset.train_dataset.handle_missing",
        "'skip'",
    ),
    (
        "clip_length zero",
        "dataset:\n  train_dataset:\n    clip_length: 0\n",
        "dataset.train_dataset.clip_length",
        "got 0",
    ),
    (
        "slp without videos",
        "dataset:\n  train_dataset:\n    slp_files: [a.slp, b.slp]\n    video_files: [a.mp4]\n",
        "dataset.train_dataset.video_files",
        "['a.mp4']",
    ),
    (
        "unknown dir key",
        "dataset:\n  train_dataset:\n    dir:\n      path: /x\n      label_suffix: .slp\n",
        "dataset.train_dataset.dir.label_suffix",
        "did you mean 'labels_suffix'",
    ),
    (
        "dataloader kwarg typo",
        "dataloader:\n  train_dataloader:\n    pin_memroy: true\n",
        "dataloader.train_dataloader.pin_memroy",
        "did you mean 'pin_memory'",
    ),
    (
        "dataloader negative workers",
        "dataloader:\n  val_dataloader:\n    num_workers: -1\n",
        "dataloader.val_dataloader.num_workers",
        "got -1",
    ),
    ("logger type", "logging:\n  logger_type: MLFlowLogger\n", "logging.logger_type", "'MLFlowLogger'"),
    (
        "logger kwarg",
        "logging:\n  logger_type: CSVLogger\n  flush_every: 3\n",
        "logging.flush_every",
        "CSVLogger takes no argument",
    ),
    ("early stopping kwarg", "early_stopping:\n  patiance: 3\n", "early_stopping.patiance", "did you mean 'patience'"),
    ("early stopping mode", "early_stopping:\n  mode: up\n", "early_stopping.mode", "'up'"),
    ("checkpoint top k", "checkpointing:\n  save_top_k: -3\n", "checkpointing.save_top_k", "got -3"),
    ("trainer accelerator", "trainer:\n  accelerator: npu\n", "trainer.accelerator", "'npu'"),
    ("trainer devices", "trainer:\n  devices: many\n", "trainer.devices", "'many'"),
    ("trainer kwarg typo", "trainer:\n  precison: 16\n", "trainer.precison", "did you mean 'precision'"),
    ("min over max epochs", "trainer:\n  max_epochs: 2\n  min_epochs: 5\n", "trainer.min_epochs", "got 5"),
    ("fraction over one", "trainer:\n  limit_val_batches: 1.5\n", "trainer.limit_val_batches", "1.5"),
    ("tracker window", "tracker:\n  window_size: 0\n", "tracker.window_size", "got 0"),
    ("section not a mapping", "model: 5\n", "model", "got 5"),
    (
        "bad bucket name",
        "checkpointing:\n  dirpath: s3://My_Bucket/models\n",
        "checkpointing.dirpath",
        "not a valid bucket name",
    ),
    ("dot-dot in s3 key", "logging:\n  save_dir: s3://lab-logs/a/../b\n", "logging.save_dir", "may not contain"),
    (
        "s3 data path",
        "dataset:\n  train_dataset:\n    dir:\n      path: s3://x\n",
        "dataset.train_dataset.dir.path",
        "'x' is not a valid bucket",
    ),
    ("s3 checkpoint", "model:\n  ckpt_path: s3://ab\n", "model.ckpt_path", "'ab' is not a valid bucket"),
    (
        "mistyped s3 scheme",
        "checkpointing:\n  dirpath: s3:/lab/models\n",
        "checkpointing.dirpath",
        "looks like an S3 location",
    ),
    ("storage addressing", "storage:\n  addressing_style: dns\n", "storage.addressing_style", "'dns'"),
    ("storage retry mode", "storage:\n  retry_mode: legacy\n", "storage.retry_mode", "'legacy'"),
]


@pytest.mark.parametrize(("text", "path", "shown"), [case[1:] for case in CASES], ids=[case[0] for case in CASES])
def test_mistake_names_key_path_and_value(write_yaml: Any, text: str, path: str, shown: str) -> None:
    result = CliRunner().invoke(app, ["config", "validate", str(write_yaml(text))])
    assert result.exit_code == EXIT_USER_ERROR, result.output
    lines = [line for line in result.output.splitlines() if line.strip().startswith(f"- {path}:")]
    assert lines, f"no problem reported at {path}:\n{result.output}"
    assert shown in lines[0], lines[0]


def test_all_problems_in_a_file_are_reported_together(write_yaml: Any) -> None:
    text = (
        "model:\n  d_model: 100\n  nhead: 3\n  dropout: -1\n"
        "optimizer:\n  name: Adamm\n"
        "trainer:\n  max_epochs: ten\n  precison: 16\n"
        "dataset:\n  train_dataset:\n    crop_size: [1, 2]\n    dir:\n      path: /x\n"
    )
    result = CliRunner().invoke(app, ["config", "validate", str(write_yaml(text))])
    assert result.exit_code == EXIT_USER_ERROR
    for path in (
        "model.nhead",
        "model.dropout",
        "optimizer.name",
        "trainer.max_epochs",
        "trainer.precison",
        "dataset.train_dataset.crop_size",
    ):
        assert f"- {path}:" in result.output, path
    assert "(6 problems)" in result.output


def test_validate_refuses_what_train_would_refuse_without_reading_data(write_yaml: Any) -> None:
    text = (
        "checkpointing:\n  monitor: [val_los]\n"
        "early_stopping:\n  monitor: val_idf\n"
        "dataset:\n  train_dataset:\n    dir:\n      path: /no/such/flies\n"
    )
    result = CliRunner().invoke(app, ["config", "validate", str(write_yaml(text))])
    assert result.exit_code == EXIT_USER_ERROR, result.output
    assert "- checkpointing.monitor[0]: dreem logs no such metric" in result.output
    assert "- early_stopping.monitor: dreem logs no such metric" in result.output


def test_validate_warns_of_inputs_missing_here_but_passes(write_yaml: Any) -> None:
    """A configuration written for a cluster names its pods' paths: validating it on a laptop is no error."""
    text = "dataset:\n  train_dataset:\n    dir:\n      path: [/no/such/flies, /tmp, flies/day1]\n"
    result = CliRunner().invoke(app, ["config", "validate", str(write_yaml(text))])
    assert result.exit_code == 0, result.output
    assert "warning: dataset.train_dataset.dir.path[0]: no such folder on this machine (got" in result.output
    assert "dir.path[1]" not in result.output
    # A relative path is read from where the command runs, which the warning says.
    assert f"dir.path[2]: no such folder on this machine (a relative path: from {Path.cwd()})" in result.output


def test_duplicate_key_names_the_key_and_line(write_yaml: Any) -> None:
    result = CliRunner().invoke(app, ["config", "validate", str(write_yaml("model:\n  d_model: 1\n  d_model: 2\n"))])
    assert result.exit_code == EXIT_USER_ERROR
    assert "'d_model' given twice" in result.output and "line 3" in result.output


def test_missing_file_and_broken_yaml_name_the_file(tmp_path: Path, write_yaml: Any) -> None:
    missing = tmp_path / "nope.yaml"
    result = CliRunner().invoke(app, ["config", "validate", str(missing)])
    assert result.exit_code == EXIT_USER_ERROR and f"{missing}: no such config file" in result.output
    broken = write_yaml("model: [unclosed\n")
    result = CliRunner().invoke(app, ["config", "validate", str(broken)])
    assert result.exit_code == EXIT_USER_ERROR and f"{broken}: not valid YAML" in result.output


def test_a_file_that_is_not_utf8_text_is_named(tmp_path: Path) -> None:
    latin1 = tmp_path / "train.yaml"
    latin1.write_bytes("# Müller lab\nmodel:\n  d_model: 64\n".encode("latin-1"))
    result = CliRunner().invoke(app, ["config", "validate", str(latin1)])
    assert result.exit_code == EXIT_USER_ERROR and f"{latin1}: not a UTF-8 text YAML file" in result.output
    checkpoint = tmp_path / "model.ckpt"
    checkpoint.write_bytes(b"PK\x03\x04\x80\x02binary")
    result = CliRunner().invoke(app, ["config", "show", "-c", str(checkpoint)])
    assert result.exit_code == EXIT_USER_ERROR and "give it with --checkpoint" in result.output


def test_bad_set_override_is_named(write_yaml: Any) -> None:
    result = CliRunner().invoke(app, ["config", "show", "--set", "model.d_model"])
    assert result.exit_code == EXIT_USER_ERROR and "--set: expected key.path=value" in result.output
    result = CliRunner().invoke(app, ["config", "show", "--set", "model.d_model.x=3"])
    assert result.exit_code == EXIT_USER_ERROR and "model.d_model: Input should be a valid integer" in result.output


def test_train_without_data_says_what_is_missing() -> None:
    result = CliRunner().invoke(app, ["train"])
    assert result.exit_code == EXIT_USER_ERROR
    assert "dataset.train_dataset.dir.path: no training data" in result.output


def test_a_validation_split_without_data_is_refused_before_training() -> None:
    config = DEMO_DATA.parent / "train.yaml"  # its val_dataset names no data: make demo gives it with --set
    result = CliRunner().invoke(app, ["train", str(DEMO_DATA), "--config", str(config)])
    assert result.exit_code == EXIT_USER_ERROR
    assert "dataset.val_dataset.dir.path: no validation data" in result.output
    assert "dataset.train_dataset" not in result.output  # TRAIN_DIR gave the training data


def test_valid_file_exits_zero(write_yaml: Any) -> None:
    result = CliRunner().invoke(app, ["config", "validate", str(write_yaml(DIR))])
    assert result.exit_code == 0 and "valid" in result.output


def test_tracking_inputs_given_two_ways_or_unpaired_are_named() -> None:
    slp, mp4 = str(DEMO_DATA / "two_flies.slp"), str(DEMO_DATA / "two_flies.mp4")
    unpaired = CliRunner().invoke(app, ["track", "-slp", slp, "-slp", slp, "-vid", mp4, "--checkpoint", "model.ckpt"])
    assert unpaired.exit_code == EXIT_USER_ERROR
    assert "--slp-file: one --video-file per --slp-file, in order, or none for the videos each names; got 2" in (
        unpaired.output
    )
    both = CliRunner().invoke(app, ["track", str(DEMO_DATA), "-slp", slp, "-vid", mp4, "--checkpoint", "model.ckpt"])
    assert both.exit_code == EXIT_USER_ERROR and "INPUT_DIR: give INPUT_DIR or --slp-file/--video-file" in both.output
