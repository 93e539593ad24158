"""Each run-control key lands on the Lightning object it configures (built, not trained)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint
from lightning.pytorch.loggers import WandbLogger
from torch.utils.data import DataLoader, RandomSampler, SequentialSampler

from dreem_trainer.cluster.job_status import JobStatus
from dreem_trainer.config import ConfigError, ConfigIssue
from dreem_trainer.training.callbacks import ProgressReporter
from dreem_trainer.training.run import build_trainer, data_loader, run_training
from tests.trainer_helpers import tiny_config


def test_early_stopping_keys(tmp_path: Path) -> None:
    keys = {
        "monitor": "val_idf1",
        "mode": "max",
        "patience": 3,
        "min_delta": 0.05,
        "check_finite": False,
        "stopping_threshold": 0.99,
        "divergence_threshold": 0.1,
        "verbose": True,
    }
    trainer = build_trainer(tiny_config(tmp_path, early_stopping=keys), has_validation=True, interactive=False)
    (stopper,) = [c for c in trainer.callbacks if isinstance(c, EarlyStopping)]  # type: ignore[attr-defined]
    assert (stopper.monitor, stopper.mode, stopper.patience, stopper.check_finite) == ("val_idf1", "max", 3, False)
    assert (stopper.stopping_threshold, stopper.divergence_threshold, stopper.verbose) == (0.99, 0.1, True)
    assert abs(stopper.min_delta) == 0.05


def test_checkpoint_modes_come_from_the_metric_table(tmp_path: Path) -> None:
    monitor = ["val_loss", "val_idf1", "val_num_switches", "val_recall", "train_loss_epoch"]
    config = tiny_config(tmp_path, checkpointing={"monitor": monitor})
    trainer = build_trainer(config, has_validation=True, interactive=False)
    checkpoints = [c for c in trainer.callbacks if isinstance(c, ModelCheckpoint)]  # type: ignore[attr-defined]
    assert [(c.monitor, c.mode) for c in checkpoints] == [
        ("val_loss", "min"),
        ("val_idf1", "max"),
        ("val_num_switches", "min"),
        ("val_recall", "max"),
        ("train_loss_epoch", "min"),
    ]


def test_a_metric_dreem_does_not_log_is_refused_before_training(tmp_path: Path) -> None:
    config = tiny_config(tmp_path, checkpointing={"monitor": ["val_loss", "val_idf"]})
    with pytest.raises(ConfigError) as raised:
        build_trainer(config, has_validation=True, interactive=False)
    (issue,) = raised.value.issues
    assert issue.path == "checkpointing.monitor[1]" and issue.value == "val_idf" and "val_idf1" in issue.message


def test_early_stopping_without_a_mode_takes_the_metrics(tmp_path: Path) -> None:
    config = tiny_config(tmp_path, early_stopping={"monitor": "val_idf1"})
    trainer = build_trainer(config, has_validation=True, interactive=False)
    (stopper,) = [c for c in trainer.callbacks if isinstance(c, EarlyStopping)]  # type: ignore[attr-defined]
    # IDF1 is maximised, and DREEM's stopping threshold (1e-8, for its val_loss) would stop it at once.
    assert (stopper.monitor, stopper.mode, stopper.stopping_threshold) == ("val_idf1", "max", None)
    loss = build_trainer(tiny_config(tmp_path, early_stopping={}), has_validation=True, interactive=False)
    (stopper,) = [c for c in loss.callbacks if isinstance(c, EarlyStopping)]  # type: ignore[attr-defined]
    assert (stopper.monitor, stopper.mode, stopper.stopping_threshold) == ("val_loss", "min", 1e-8)


def test_early_stopping_without_validation_minimises_the_training_loss(tmp_path: Path) -> None:
    config = tiny_config(tmp_path, early_stopping={"monitor": "val_idf1", "mode": "max"})
    trainer = build_trainer(config, has_validation=False, interactive=False)
    (stopper,) = [c for c in trainer.callbacks if isinstance(c, EarlyStopping)]  # type: ignore[attr-defined]
    # The configured "max" was for val_idf1; the stand-in is a loss.
    assert (stopper.monitor, stopper.mode) == ("train_loss_epoch", "min")


def test_trainer_keys(tmp_path: Path) -> None:
    keys = {
        "max_epochs": 9,
        "min_epochs": 2,
        "check_val_every_n_epoch": 3,
        "log_every_n_steps": 7,
        "limit_val_batches": 0.5,
    }
    trainer = build_trainer(tiny_config(tmp_path, trainer=keys), has_validation=True, interactive=False)
    assert (trainer.max_epochs, trainer.min_epochs, trainer.check_val_every_n_epoch) == (9, 2, 3)
    assert (getattr(trainer, "log_every_n_steps"), trainer.limit_val_batches) == (7, 0.5)  # noqa: B009 - set at runtime
    off = build_trainer(
        tiny_config(tmp_path, trainer={"enable_checkpointing": False}), has_validation=True, interactive=False
    )
    assert not [c for c in off.callbacks if isinstance(c, ModelCheckpoint)]  # type: ignore[attr-defined]


def test_shuffle_and_loader_kwargs(tmp_path: Path) -> None:
    config = tiny_config(tmp_path)
    split = config.dataset.train_dataset
    shuffled = data_loader(split, config.dataloader.train_dataloader.model_copy(update={"shuffle": True}), 0)
    ordered = data_loader(split, config.dataloader.train_dataloader.model_copy(update={"shuffle": False}), 0)
    assert isinstance(shuffled.sampler, RandomSampler) and isinstance(ordered.sampler, SequentialSampler)
    extra = tiny_config(tmp_path, dataloader={"train_dataloader": {"num_workers": 1, "timeout": 30}})
    loader = data_loader(split, extra.dataloader.train_dataloader, 0)
    assert loader.num_workers == 1 and loader.timeout == 30 and loader.persistent_workers


def test_each_loader_worker_draws_its_own_augmentations(tmp_path: Path) -> None:
    """Workers start with copies of the dataset's generators: the same clip, loaded by two workers, must not be
    augmented the same way (four loads of clip 0 gave two identical pairs), nor, with workers started again
    each epoch, the same way every epoch."""
    rotate = {"Rotate": {"limit": 180, "p": 1.0}}
    config = tiny_config(tmp_path, dataset={"train_dataset": {"augmentations": rotate}})
    loader = data_loader(config.dataset.train_dataset, config.dataloader.train_dataloader, seed=0)
    clip_zero_four_times = DataLoader(
        loader.dataset,
        sampler=[0, 0, 0, 0],
        num_workers=2,
        collate_fn=loader.collate_fn,
        worker_init_fn=loader.worker_init_fn,
    )
    epochs = [[batch[0].crops for batch in clip_zero_four_times] for _ in range(2)]
    loads = [crops for epoch in epochs for crops in epoch]
    assert all(not torch.equal(a, b) for i, a in enumerate(loads) for b in loads[i + 1 :])


def test_wandb_keys_go_offline_without_a_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
    keys = {
        "logger_type": "WandbLogger",
        "project": "flies",
        "entity": "lab",
        "group": "g1",
        "notes": "n",
        "name": "run7",
    }
    trainer = build_trainer(tiny_config(tmp_path, logging=keys), has_validation=True, interactive=False)
    logger = trainer.logger
    assert isinstance(logger, WandbLogger)
    init = logger._wandb_init
    assert (init["project"], init["entity"], init["group"], init["notes"], init["name"]) == (
        "flies",
        "lab",
        "g1",
        "n",
        "run7",
    )
    assert logger._offline


@pytest.mark.parametrize("auto_insert", [False, True])
def test_checkpoint_names_are_the_same_whoever_inserts_the_metric_names(tmp_path: Path, auto_insert: bool) -> None:
    # DREEM's configs say auto_insert_metric_name: true; Lightning then writes "epoch=" and "val_loss=" itself.
    config = tiny_config(tmp_path, checkpointing={"monitor": ["val_loss"], "auto_insert_metric_name": auto_insert})
    trainer = build_trainer(config, has_validation=True, interactive=False)
    (checkpoint,) = [c for c in trainer.callbacks if isinstance(c, ModelCheckpoint)]  # type: ignore[attr-defined]
    name = checkpoint.format_checkpoint_name({"epoch": torch.tensor(3), "val_loss": torch.tensor(0.25)})
    assert Path(name).name == "epoch=3-best_val_loss=0.2500.ckpt"


def test_checkpointing_off_in_a_cluster_job_writes_no_checkpoint(tmp_path: Path) -> None:
    # A job's progress report (and the S3 mirror) are Lightning Checkpoint callbacks, which Lightning refuses
    # when checkpointing is off; they stay, and no ModelCheckpoint is added.
    config = tiny_config(tmp_path, trainer={"enable_checkpointing": False})
    reporter = ProgressReporter(JobStatus("lab", "flies"), [])
    trainer = build_trainer(config, has_validation=True, interactive=False, callbacks=[reporter])
    assert trainer.checkpoint_callbacks == [reporter]
    assert not [c for c in trainer.callbacks if isinstance(c, ModelCheckpoint)]  # type: ignore[attr-defined]


def issue_at(error: ConfigError, key: str) -> ConfigIssue:
    """The one issue about `key`. The missing data folder ("nowhere") is listed beside it: every problem at
    once, and none of them found by reading data."""
    assert "dataset.train_dataset.dir.path" in [issue.path for issue in error.issues]
    (issue,) = [issue for issue in error.issues if issue.path == key]
    return issue


def test_an_unknown_monitor_fails_before_any_data_is_read(tmp_path: Path) -> None:
    nowhere = {"dir": {"path": str(tmp_path / "nowhere")}}  # reading it would fail with a data error instead
    config = tiny_config(tmp_path, scheduler={"monitor": "val_los"}, dataset={"train_dataset": nowhere})
    with pytest.raises(ConfigError) as raised:
        run_training(config)
    issue = issue_at(raised.value, "scheduler.monitor")
    assert issue.value == "val_los" and "val_loss" in issue.message


def test_an_augmentation_value_albumentations_refuses_fails_before_any_data_is_read(tmp_path: Path) -> None:
    nowhere = {"dir": {"path": str(tmp_path / "nowhere")}, "augmentations": {"Rotate": {"limit": 10, "p": 5}}}
    with pytest.raises(ConfigError) as raised:
        run_training(tiny_config(tmp_path, dataset={"train_dataset": nowhere}))
    assert issue_at(raised.value, "dataset.train_dataset.augmentations.Rotate.p").value == 5


@pytest.mark.parametrize(
    ("strategy", "said"),
    [("dpp", "not a Lightning strategy; did you mean 'ddp'"), ("deepspeed", "you must have DeepSpeed installed")],
)
def test_a_strategy_lightning_cannot_run_fails_before_any_data_is_read(
    tmp_path: Path, strategy: str, said: str
) -> None:
    # Lightning refuses it only when the Trainer is built, after staging, as an error the operator retries.
    nowhere = {"dir": {"path": str(tmp_path / "nowhere")}}
    with pytest.raises(ConfigError) as raised:
        run_training(tiny_config(tmp_path, trainer={"strategy": strategy}, dataset={"train_dataset": nowhere}))
    issue = issue_at(raised.value, "trainer.strategy")
    assert issue.value == strategy and said in issue.message


def test_an_output_folder_that_is_a_file_is_named_before_training(tmp_path: Path) -> None:
    taken = tmp_path / "models"
    taken.write_text("a file the user keeps")
    with pytest.raises(ConfigError) as raised:
        run_training(tiny_config(tmp_path, checkpointing={"dirpath": str(taken)}))
    (issue,) = raised.value.issues
    assert issue.path == "checkpointing.dirpath" and issue.value == str(taken)
    assert taken.read_text() == "a file the user keeps"


def test_an_earlier_runs_configuration_in_the_same_folder_is_kept(tmp_path: Path) -> None:
    from dreem_trainer.training.run import write_run_config

    target = tmp_path / "config.yaml"
    write_run_config(target, "model:\n  d_model: 64\n")
    write_run_config(target, "model:\n  d_model: 64\n")  # a resumed run: the same text, nothing kept aside
    assert [p.name for p in tmp_path.iterdir()] == ["config.yaml"]
    write_run_config(target, "model:\n  d_model: 128\n")
    (kept,) = [p for p in tmp_path.iterdir() if p.name != "config.yaml"]
    assert kept.name.startswith("config.") and kept.read_text() == "model:\n  d_model: 64\n"
    assert target.read_text() == "model:\n  d_model: 128\n"


def test_wandb_login_credentials_keep_runs_online(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # `wandb login` writes ~/.netrc, not WANDB_API_KEY; such a user's runs are sent, not kept offline.
    from dreem_trainer.training.run import wandb_logged_in

    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("WANDB_BASE_URL", raising=False)
    netrc_file = tmp_path / "netrc"
    netrc_file.write_text("machine api.wandb.ai\n  login user\n  password 0123456789abcdef\n")
    netrc_file.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc_file))
    assert wandb_logged_in()
    logging = {"logger_type": "WandbLogger", "project": "flies"}
    logger = build_trainer(tiny_config(tmp_path, logging=logging), has_validation=True, interactive=False).logger
    assert isinstance(logger, WandbLogger) and not logger._offline
    monkeypatch.setenv("WANDB_BASE_URL", "https://wandb.lab.org")  # a W&B server of the lab's own
    assert not wandb_logged_in()


@pytest.mark.parametrize(
    ("sections", "key", "words"),
    [
        ({"optimizer": {"betas": [1.5, 0.999]}}, "optimizer", "Invalid beta parameter at index 0"),
        ({"scheduler": {"name": "StepLR"}}, "scheduler", "step_size"),
    ],
)
def test_optimizer_and_scheduler_values_torch_refuses_fail_before_any_data_is_read(
    tmp_path: Path, sections: dict[str, Any], key: str, words: str
) -> None:
    nowhere = {"dir": {"path": str(tmp_path / "nowhere")}}
    with pytest.raises(ConfigError) as raised:
        run_training(tiny_config(tmp_path, dataset={"train_dataset": nowhere}, **sections))
    assert words in issue_at(raised.value, key).message


def test_only_a_plateau_scheduler_waits_for_validation(tmp_path: Path) -> None:
    from dreem_trainer.training.module import DreemModule

    def frequency(**sections: Any) -> int:
        config = tiny_config(tmp_path, trainer={"check_val_every_n_epoch": 3}, **sections)
        return int(DreemModule(config.model_dump(mode="json")).configure_optimizers()["lr_scheduler"]["frequency"])

    assert frequency() == 3  # ReduceLROnPlateau on val_loss steps after each validation
    assert frequency(scheduler={"name": "StepLR", "step_size": 10}) == 1  # a StepLR decays on its own count


def test_wandb_login_with_a_port_and_a_readable_netrc(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from dreem_trainer.training.run import wandb_logged_in

    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("WANDB_BASE_URL", "http://localhost:8080")  # `wandb login --host` writes the port too
    netrc_file = tmp_path / "netrc"
    netrc_file.write_text("machine localhost:8080\n  login user\n  password 0123456789abcdef\n")
    netrc_file.chmod(0o644)
    monkeypatch.setenv("NETRC", str(netrc_file))
    assert wandb_logged_in()
