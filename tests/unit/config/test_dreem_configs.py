"""DREEM 0.5.1's configurations load unchanged; its keys that do nothing are accepted with one warning each.

The YAML files in tests/data/dreem/configs are DREEM's own (shipped in its wheel, used by its test suite, or
written by its CLI beside a run); tests/data/dreem/README.md says where each comes from.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
import yaml

from dreem_trainer.config import ConfigError, DreemConfig, dump_yaml, load_config

CONFIGS = Path(__file__).parents[2] / "data" / "dreem" / "configs"
DREEM_CONFIGS = sorted(path.name for path in CONFIGS.glob("*.yaml"))


@pytest.mark.parametrize("name", DREEM_CONFIGS)
def test_dreems_configs_load_unchanged(name: str) -> None:
    config = load_config(CONFIGS / name)
    # What was loaded is a complete configuration of ours: it loads again as it prints.
    assert dump_yaml(load_config(base=yaml.safe_load(dump_yaml(config)))) == dump_yaml(config)


def test_dreems_inference_keys_mean_what_they_mean_there() -> None:
    config = load_config(CONFIGS / "written_track.yaml")
    assert (config.ckpt_path, config.outdir) == ("models/dreem.ckpt", "results")
    assert config.dataset.test_dataset is not None and config.dataset.test_dataset.anchors == "thorax"
    tracker = load_config(CONFIGS / "tests_inference.yaml").tracker
    assert (tracker.iou, tracker.max_center_dist, tracker.overlap_thresh) == ("mult", 1.0, 0.01)


def warnings_of(caplog: pytest.LogCaptureFixture, text: str, base: dict[str, Any] | None = None) -> list[str]:
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="dreem_trainer.config"):
        load_config(base=base, overrides=[line for line in text.splitlines() if line])
    return [record.getMessage() for record in caplog.records]


def test_each_key_without_effect_draws_one_warning_naming_it(caplog: pytest.LogCaptureFixture) -> None:
    lines = warnings_of(
        caplog,
        "tracker.decay_time=0.9\ntracker.use_vis_feats=false\ntracker.verbose=true\n"
        "view_batch.enable=false\nrunner.test_save_path=x.h5\ntracker.window_size=4",
    )
    named = ["tracker.decay_time", "tracker.use_vis_feats", "tracker.verbose", "runner", "view_batch"]
    assert len(lines) == len(named)
    for key, line in zip(named, lines, strict=True):
        assert line.startswith(f"warning: {key}: ") and "no effect" in line


def test_keys_without_effect_are_not_carried_into_resolved_configs(caplog: pytest.LogCaptureFixture) -> None:
    config = load_config(overrides=["tracker.decay_time=0.9", "view_batch.enable=false"])
    resolved = yaml.safe_load(dump_yaml(config))
    assert "decay_time" not in resolved["tracker"] and "view_batch" not in resolved
    # A checkpoint's stored configuration is a base, not the user's words: it draws no warning.
    assert warnings_of(caplog, "tracker.window_size=4", base={"tracker": {"decay_time": 0.5}}) == []
    # Written null, as DREEM's own track.yaml writes decay_time, it has no value to lack an effect.
    assert warnings_of(caplog, "tracker.decay_time=null\ntracker.use_vis_feats=false") == [
        warnings_of(caplog, "tracker.use_vis_feats=false")[0]
    ]


@pytest.mark.parametrize(
    ("override", "key", "says"),
    [
        ("tracker.iou=add", "tracker.iou", "not implemented there"),
        ("tracker.iou=sum", "tracker.iou", "'sum'"),
        ("tracker.mult_tresh=true", "tracker.mult_tresh", "did you mean 'mult_thresh'"),
        ("save_frame_meta=true", "save_frame_meta", "does not write"),
        ("metrics.test=sw_cnt", "metrics.test", "motmetrics"),
        ("tracker.confidence_threshold=2", "tracker.confidence_threshold", "1"),
    ],
)
def test_what_dreem_cannot_do_is_refused_at_load_time(override: str, key: str, says: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(overrides=[override])
    message = str(caught.value)
    assert f"{key}:" in message and says in message


def test_dreem_spellings_of_tracker_values() -> None:
    tracker = load_config(overrides=["tracker.iou=''", "tracker.max_gap=.inf", "tracker.front_nodes=head"]).tracker
    assert tracker.iou is None and tracker.max_gap is None and tracker.front_nodes == ["head"]
    assert load_config(overrides=["tracker.iou=MAX"]).tracker.iou == "max"


def test_tracker_defaults_are_dreems() -> None:
    tracker = DreemConfig().tracker
    assert (tracker.iou, tracker.overlap_thresh, tracker.window_size, tracker.mult_thresh) == ("mult", 0.01, 8, True)
    assert (tracker.max_gap, tracker.max_tracks, tracker.max_center_dist, tracker.confidence_threshold) == (
        None,
        None,
        None,
        0.0,
    )
    assert (tracker.temperature, tracker.max_angle_diff, tracker.distance_penalty_multiplier) == (0.1, 0.0, 1.0)


def test_params_config_is_merged_over_everything(tmp_path: Path) -> None:
    params = tmp_path / "params.yaml"
    params.write_text("model:\n  d_model: 64\ntracker:\n  window_size: 3\n")
    config = load_config(overrides=[f"params_config={params}", "tracker.window_size=5", "tracker.max_gap=9"])
    assert (config.model.d_model, config.tracker.window_size, config.tracker.max_gap) == (64, 3, 9)
    with pytest.raises(ConfigError, match="params_config: no such config file"):
        load_config(overrides=[f"params_config={tmp_path / 'missing.yaml'}"])


def test_training_takes_dreems_defaults_for_what_the_user_leaves_out() -> None:
    config = DreemConfig()
    assert config.dataloader.train_dataloader.shuffle is True
    assert set(config.dataset.train_dataset.augmentations or {}) == {
        "GaussianBlur",
        "MotionBlur",
        "RandomBrightnessContrast",
        "Rotate",
    }
    # As DREEM merges its defaults file: a training loader or transform given keeps the rest of the defaults.
    given = load_config(
        overrides=["dataloader.train_dataloader.num_workers=0", "dataset.train_dataset.augmentations.Rotate.limit=90"]
    )
    augmentations = given.dataset.train_dataset.augmentations or {}
    assert given.dataloader.train_dataloader.shuffle is True
    assert augmentations["Rotate"] == {"limit": 90, "p": 0.3} and "GaussianBlur" in augmentations
    assert (
        load_config(overrides=["dataset.train_dataset.augmentations=null"]).dataset.train_dataset.augmentations is None
    )
    assert (
        load_config(overrides=["dataloader.train_dataloader.shuffle=false"]).dataloader.train_dataloader.shuffle
        is False
    )


@pytest.mark.parametrize(
    ("monitor", "mode", "threshold"),
    [("val_loss", "min", 1e-8), ("val_idf1", "max", None), ("val_num_switches", "min", 1e-8)],
)
def test_early_stopping_follows_the_metric_it_watches(monitor: str, mode: str, threshold: float | None) -> None:
    from typer.testing import CliRunner

    from dreem_trainer.cli import app

    shown = CliRunner().invoke(app, ["config", "show", "--set", f"early_stopping.monitor={monitor}"])
    assert shown.exit_code == 0, shown.output
    stopping = yaml.safe_load(shown.output)["early_stopping"]
    assert (stopping["mode"], stopping["stopping_threshold"]) == (mode, threshold)
    given = CliRunner().invoke(
        app, ["config", "show", "--set", f"early_stopping.monitor={monitor}", "--set", "early_stopping.mode=max"]
    )
    assert yaml.safe_load(given.output)["early_stopping"]["mode"] == "max"
    off_setting = ["--set", "early_stopping.stopping_threshold=null"]
    off = CliRunner().invoke(app, ["config", "show", "--set", f"early_stopping.monitor={monitor}", *off_setting])
    assert yaml.safe_load(off.output)["early_stopping"]["stopping_threshold"] is None  # null turns it off


def test_a_null_scheduler_is_dreems_fallback_not_a_constant_rate() -> None:
    scheduler = load_config(overrides=["scheduler=null"]).scheduler
    assert scheduler.kwargs() == {
        "mode": "min",
        "factor": 0.5,
        "patience": 10,
        "threshold": 1e-4,
        "threshold_mode": "rel",
    }
    assert scheduler.name == "ReduceLROnPlateau" and scheduler.monitor == "val_loss"


def test_a_section_left_empty_says_that_it_turns_the_feature_off(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """`early_stopping:` with every key under it commented out is YAML null, the spec's "disable": said once,
    while an explicit null, meant, draws nothing."""
    written = tmp_path / "train.yaml"
    written.write_text(
        "early_stopping:\n#  monitor: val_loss\nlogging: null\nscheduler: ~\ntrainer:\n  max_epochs: 2\n"
    )
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="dreem_trainer.config"):
        config = load_config(written)
    assert config.early_stopping is None and config.logging is None
    lines = [record.getMessage() for record in caplog.records]
    assert len(lines) == 1 and lines[0].startswith("warning: early_stopping: written with nothing under it")
    assert "no early stopping" in lines[0] and "`early_stopping: null`" in lines[0]
