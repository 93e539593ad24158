"""Training on the real two-fly recording: loss goes down, and each run-control key changes behaviour."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from lightning.pytorch.callbacks import Callback, EarlyStopping, ModelCheckpoint

from dreem_trainer import hardware
from dreem_trainer.training.module import DreemModule
from dreem_trainer.training.run import run_training
from tests.trainer_helpers import tiny_config

pytestmark = pytest.mark.slow


def metrics_rows(logs: Path) -> list[dict[str, str]]:
    (path,) = logs.glob("*/version_*/metrics.csv")
    with path.open() as handle:
        return list(csv.DictReader(handle))


def epoch_values(rows: list[dict[str, str]], key: str) -> list[float]:
    return [float(row[key]) for row in rows if row.get(key)]


def test_short_run_lowers_the_loss_and_logs_tracking_metrics(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tiny_config(tmp_path, trainer={"max_epochs": 4}, optimizer={"lr": 0.003})
    run_training(config)
    rows = metrics_rows(tmp_path / "logs")
    losses = epoch_values(rows, "train_loss_epoch")
    assert len(losses) == 4 and losses[-1] < losses[0]
    for key in ("val_loss", "val_idf1", "val_mota", "val_num_switches", "val_precision", "val_recall"):
        assert len(epoch_values(rows, key)) == 4, key
    # Not a terminal: one plain line per epoch instead of a progress bar.
    printed = capsys.readouterr().out
    assert "epoch 1/4: train_loss" in printed and "epoch 4/4:" in printed


def test_validation_metrics_are_those_of_tracking_the_validation_clips(tmp_path: Path) -> None:
    """Validation encodes each clip once for its loss and its tracking: the metrics it logs must be those of
    tracking the same clips with the trained network, each encoded on its own as `dreem track` does."""
    import torch

    from dreem_trainer.tracking.metrics import TRACKING_METRICS, TrackingCounts, tracking_counts
    from dreem_trainer.tracking.tracker import Tracker

    config = tiny_config(tmp_path, trainer={"max_epochs": 1}, optimizer={"lr": 0.003})
    trainer = run_training(config)
    module = trainer.lightning_module
    loader = trainer.val_dataloaders
    assert isinstance(module, DreemModule) and loader is not None
    counts = TrackingCounts()
    module.eval()
    with torch.no_grad():
        for batch in loader:
            for clip in batch:
                tracker = Tracker.for_model(module.model, config.tracker)
                predicted = tracker.track_clip(clip, module.model.visual_encoder(clip.crops)).tracks
                counts += tracking_counts(clip.frame_ids, clip.track_ids, predicted)
    scores = counts.scores()
    (logged,) = [row for row in metrics_rows(tmp_path / "logs") if row.get("val_mota")]
    for metric in TRACKING_METRICS:
        assert float(logged[metric.logged("val")]) == pytest.approx(scores[metric.name], abs=1e-6), metric.name
    # And one encoder pass per validation batch (its clips share a crop shape), where there were two.
    passes = []
    hook = module.model.visual_encoder.register_forward_hook(lambda *_: passes.append(1))
    try:
        trainer.validate(module, loader, verbose=False)
    finally:
        hook.remove()
    assert len(passes) == len(loader)


def test_optimizer_and_scheduler_by_name(tmp_path: Path) -> None:
    trainer = run_training(
        tiny_config(
            tmp_path,
            optimizer={"name": "SGD", "lr": 0.01, "momentum": 0.5},
            scheduler={"name": "StepLR", "step_size": 3, "gamma": 0.5},
        )
    )
    optimizer = trainer.optimizers[0]
    assert isinstance(optimizer, torch.optim.SGD) and optimizer.defaults["momentum"] == 0.5
    assert optimizer.defaults["weight_decay"] == 0  # Adam's documented 0.01 is not SGD's: PyTorch's default
    scheduler = trainer.lr_scheduler_configs[0].scheduler
    assert isinstance(scheduler, torch.optim.lr_scheduler.StepLR) and scheduler.step_size == 3
    plateau = run_training(tiny_config(tmp_path / "p")).lr_scheduler_configs[0]
    assert isinstance(plateau.scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau) and plateau.monitor == "val_loss"
    # scheduler: null is DREEM's fallback, a plateau scheduler with patience 10.
    fallback = run_training(tiny_config(tmp_path / "none", scheduler=None)).lr_scheduler_configs[0].scheduler
    assert isinstance(fallback, torch.optim.lr_scheduler.ReduceLROnPlateau) and fallback.patience == 10


def test_a_plateau_scheduler_steps_when_validation_runs(tmp_path: Path) -> None:
    # Validating every other epoch: the scheduler watching val_loss steps after each validation, and is never
    # asked for a val_loss the epochs between have not logged.
    trainer = run_training(tiny_config(tmp_path, trainer={"max_epochs": 4, "check_val_every_n_epoch": 2}))
    (config,) = trainer.lr_scheduler_configs
    assert isinstance(config.scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau)
    assert trainer.current_epoch == 4 and config.frequency == 2
    assert config.scheduler.last_epoch == 2  # one step per validation


def test_epochs_without_validation_are_checkpointed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Validating every other epoch of three: last.ckpt must hold the third epoch, which has no validation
    (checkpoints were written at validation only, so a resume lost it), and its line shows no stale val_loss."""
    run_training(tiny_config(tmp_path, trainer={"max_epochs": 3, "check_val_every_n_epoch": 2}))
    last = torch.load(tmp_path / "models" / "last.ckpt", map_location="cpu", weights_only=False)
    assert (last["epoch"], last["global_step"]) == (2, 6)  # two clips a epoch
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("epoch ")]
    assert [("val_loss" in line) for line in lines] == [False, True, False], lines


LOGGED = ("train_loss_epoch", "val_loss")
"""Metrics of the one-epoch run each logger must have written, with the values the trainer computed."""


def csv_scalars(logs: Path, trainer: Any) -> dict[str, list[float]]:
    rows = metrics_rows(logs)
    return {key: epoch_values(rows, key) for key in LOGGED}


def tensorboard_scalars(logs: Path, trainer: Any) -> dict[str, list[float]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    (folder,) = {path.parent for path in logs.glob("tiny/version_0/events.out.tfevents.*")}
    events = EventAccumulator(str(folder))
    events.Reload()
    return {key: [event.value for event in events.Scalars(key)] for key in LOGGED}


WANDB_BLOCK = 32768
"""W&B's run file is LevelDB's log format after a 7-byte W&B header: 32 KiB blocks of chunks, each with a
7-byte header (checksum, little-endian length, type). A record longer than a block's rest spans chunks."""


def wandb_records(run_file: Path) -> list[Any]:
    from wandb.proto import wandb_internal_pb2

    proto: Any = wandb_internal_pb2  # its names come by a star import for the installed protobuf: untyped
    data = run_file.read_bytes()
    assert data[:4] == b":W&B", f"{run_file} is not a W&B run file"
    records, pending, position = [], b"", 7
    while position + 7 <= len(data):
        if WANDB_BLOCK - position % WANDB_BLOCK < 7:  # a block's tail too short for a header is padding
            position += WANDB_BLOCK - position % WANDB_BLOCK
            continue
        length, kind = int.from_bytes(data[position + 4 : position + 6], "little"), data[position + 6]
        chunk, position = data[position + 7 : position + 7 + length], position + 7 + length
        pending = chunk if kind in (1, 2) else pending + chunk  # 1 full, 2 first, 3 middle, 4 last
        if kind in (1, 4):
            record = proto.Record()
            record.ParseFromString(pending)
            records.append(record)
    return records


def wandb_scalars(logs: Path, trainer: Any) -> dict[str, list[float]]:
    """The history the offline run's file holds, read record by record. The run is finished and W&B torn down
    first, as the process's exit does (its atexit hook), so that its service has written and closed the file."""
    import wandb

    trainer.logger.experiment.finish()
    wandb.teardown()
    (run,) = logs.glob("wandb/offline-run-*/run-*.wandb")
    found: dict[str, list[float]] = {}
    for record in wandb_records(run):
        for item in record.history.item if record.HasField("history") else ():
            key = item.key or "/".join(item.nested_key)  # W&B 0.31 writes every key as a nested one
            if key in LOGGED:
                found.setdefault(key, []).append(json.loads(item.value_json) if item.value_json else item.number)
    return found


READ_BACK = {"CSVLogger": csv_scalars, "TensorBoardLogger": tensorboard_scalars, "WandbLogger": wandb_scalars}


@pytest.mark.parametrize("logger_type", READ_BACK)
def test_logger_types(tmp_path: Path, logger_type: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / "wandb-settings"))  # no settings of this machine's user
    trainer = run_training(tiny_config(tmp_path, logging={"logger_type": logger_type, "project": "tests"}))
    logged = READ_BACK[logger_type](tmp_path / "logs", trainer)
    # One epoch: one value of each, the one the trainer computed (TensorBoard stores float32).
    assert logged == {key: [pytest.approx(float(trainer.callback_metrics[key]), rel=1e-6)] for key in LOGGED}


def test_logging_null_writes_no_logs(tmp_path: Path) -> None:
    run_training(tiny_config(tmp_path, logging=None))
    assert not (tmp_path / "logs").exists()


def test_checkpointing_keys(tmp_path: Path) -> None:
    trainer = run_training(
        tiny_config(
            tmp_path,
            trainer={"max_epochs": 4},
            checkpointing={
                "monitor": ["val_loss", "val_idf1"],
                "save_top_k": 1,
                "every_n_epochs": 2,
                "save_last": True,
            },
        )
    )
    callbacks = [c for c in trainer.callbacks if isinstance(c, ModelCheckpoint)]  # type: ignore[attr-defined]
    assert [c.monitor for c in callbacks] == ["val_loss", "val_idf1"]
    # every_n_epochs=2: only the 2nd and 4th epochs (0-based 1 and 3) save; save_top_k=1 keeps the better of the
    # two for each metric, by the values logged (a tie keeps the first: only a strictly better one replaces it).
    logged = {int(row["epoch"]): row for row in metrics_rows(tmp_path / "logs") if row.get("val_loss")}
    best_loss_epoch = min((1, 3), key=lambda epoch: float(logged[epoch]["val_loss"]))
    best_idf1_epoch = max((1, 3), key=lambda epoch: float(logged[epoch]["val_idf1"]))
    models = tmp_path / "models"

    def epochs_of(pattern: str) -> list[int]:
        return [int(p.name.split("-")[0].removeprefix("epoch=")) for p in models.glob(pattern)]

    assert epochs_of("*best_val_loss*.ckpt") == [best_loss_epoch]
    assert epochs_of("*best_val_idf1*.ckpt") == [best_idf1_epoch]
    last = models / "last.ckpt"
    assert torch.load(last, map_location="cpu", weights_only=False)["epoch"] == 3
    # Each state is stored once: last.ckpt (kept by the first monitor's callback) links to that callback's file
    # when it wrote one at the final epoch, and holds the full state otherwise.
    (best_loss,) = models.glob("*best_val_loss*.ckpt")
    if best_loss_epoch == 3:
        assert last.is_symlink() and last.resolve() == best_loss.resolve()
    else:
        assert not last.is_symlink() and best_idf1_epoch != 3
    assert (models / "config.yaml").is_file()


def test_save_last_false_and_top_k_all(tmp_path: Path) -> None:
    run_training(tiny_config(tmp_path, trainer={"max_epochs": 2}, checkpointing={"save_last": False, "save_top_k": -1}))
    assert not (tmp_path / "models" / "last.ckpt").exists()
    assert len(list((tmp_path / "models").glob("epoch=*.ckpt"))) == 2


def test_default_checkpoint_dir_uses_group_and_name_and_auto_resume_finds_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    config = tiny_config(tmp_path, checkpointing={"dirpath": None}, logging={"group": "sweep", "name": "runA"})
    run_training(config)
    last = tmp_path / "models" / "sweep" / "runA" / "last.ckpt"
    assert last.is_file()
    # The run restarted with resume: auto carries on from that folder's last.ckpt rather than starting over
    # (and writing over its checkpoints).
    again = run_training(
        tiny_config(
            tmp_path,
            checkpointing={"dirpath": None, "resume": "auto"},
            logging={"group": "sweep", "name": "runA"},
            trainer={"max_epochs": 2},
        )
    )
    assert again.ckpt_path is not None and Path(again.ckpt_path).resolve() == last.resolve()
    assert again.current_epoch == 2


def test_early_stopping_stops(tmp_path: Path) -> None:
    trainer = run_training(
        tiny_config(
            tmp_path, trainer={"max_epochs": 6}, early_stopping={"monitor": "val_loss", "stopping_threshold": 100.0}
        )
    )
    stopper = next(c for c in trainer.callbacks if isinstance(c, EarlyStopping))  # type: ignore[attr-defined]
    assert stopper.stopped_epoch == 0 and trainer.current_epoch == 1


def gradient_norm(module: torch.nn.Module) -> float:
    """The total 2-norm of the parameters' gradients, as gradient clipping by norm measures it."""
    grads = [p.grad.detach().flatten() for p in module.parameters() if p.grad is not None]
    return float(torch.linalg.vector_norm(torch.cat(grads)))


class StepsSeen(Callback):
    """Each training batch's (epoch, batch index), and the gradients' norm before clipping and at the end of
    the step (the optimizer has stepped with them; the next step's closure zeroes them)."""

    def __init__(self) -> None:
        self.batches: list[tuple[int, int]] = []
        self.before_clipping: list[float] = []
        self.stepped_with: list[float] = []

    def on_train_batch_start(self, trainer: Any, pl_module: Any, batch: Any, batch_idx: int) -> None:
        self.batches.append((trainer.current_epoch, batch_idx))

    def on_before_optimizer_step(self, trainer: Any, pl_module: Any, optimizer: Any) -> None:
        self.before_clipping.append(gradient_norm(pl_module))  # Lightning clips right after this hook

    def on_train_batch_end(self, trainer: Any, pl_module: Any, *args: Any) -> None:
        self.stepped_with.append(gradient_norm(pl_module))


def test_trainer_keys_pass_through(tmp_path: Path) -> None:
    seen = StepsSeen()
    trainer = run_training(
        tiny_config(
            tmp_path, trainer={"max_epochs": 3, "limit_train_batches": 1, "max_steps": 2, "gradient_clip_val": 0.1}
        ),
        callbacks=[seen],
    )
    # Two clips an epoch, one of them trained on (limit_train_batches), two steps in all (max_steps).
    assert seen.batches == [(0, 0), (1, 0)]
    assert trainer.global_step == 2
    # Each step's gradients were larger than 0.1 and were scaled down to norm 0.1 before the optimizer used them.
    assert len(seen.before_clipping) == len(seen.stepped_with) == 2
    assert all(norm > 0.1 for norm in seen.before_clipping), seen.before_clipping
    assert seen.stepped_with == pytest.approx([0.1, 0.1], rel=1e-4)


def test_batch_size_and_workers(tmp_path: Path) -> None:
    trainer = run_training(tiny_config(tmp_path, dataloader={"train_dataloader": {"batch_size": 2, "num_workers": 1}}))
    assert trainer.global_step == 1  # two clips in one batch
    loader = trainer.train_dataloader
    assert isinstance(loader, torch.utils.data.DataLoader)
    assert (loader.batch_size, loader.num_workers) == (2, 1)


class ThreadsWhileTraining(Callback):
    def __init__(self) -> None:
        self.seen: list[int] = []

    def on_train_batch_start(self, *args: Any) -> None:
        self.seen.append(torch.get_num_threads())


def test_a_cpu_limit_sizes_the_thread_pool_while_training(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A pod limited to one CPU sees it only in its cgroup's cpu.max (the kernel's file, written here): training
    # runs on one thread, and the pool is as it was afterwards.
    cpu_max = tmp_path / "cpu.max"
    cpu_max.write_text("100000 100000\n")
    monkeypatch.setattr(hardware, "CGROUP_V2_CPU_MAX", cpu_max)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    before = torch.get_num_threads()
    torch.set_num_threads(2)  # more than the limit, whatever this machine has
    try:
        threads = ThreadsWhileTraining()
        run_training(tiny_config(tmp_path, trainer={"limit_val_batches": 0}), callbacks=[threads])
        assert threads.seen and set(threads.seen) == {1}
        assert torch.get_num_threads() == 2
        assert "OMP_NUM_THREADS" not in os.environ
    finally:
        torch.set_num_threads(before)


def final_weights(trainer: Any) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in trainer.lightning_module.parameters()])


def test_seed_makes_runs_repeatable(tmp_path: Path) -> None:
    shuffle = {"train_dataloader": {"shuffle": True}}
    first = final_weights(run_training(tiny_config(tmp_path / "a", seed=3, dataloader=shuffle)))
    second = final_weights(run_training(tiny_config(tmp_path / "b", seed=3, dataloader=shuffle)))
    other = final_weights(run_training(tiny_config(tmp_path / "c", seed=4, dataloader=shuffle)))
    assert torch.equal(first, second)
    assert not torch.equal(first, other)


def test_ckpt_path_resumes(tmp_path: Path) -> None:
    run_training(tiny_config(tmp_path, trainer={"max_epochs": 1}))
    resumed = run_training(
        tiny_config(
            tmp_path / "again", model={"ckpt_path": str(tmp_path / "models" / "last.ckpt")}, trainer={"max_epochs": 2}
        )
    )
    # Two clips per epoch: the resumed run starts at step 2 and trains one more epoch only.
    assert resumed.global_step == 4 and resumed.current_epoch == 2


@pytest.mark.parametrize(
    "sections",
    [{"trainer": {"limit_val_batches": 0}}, {"dataset": {"val_dataset": None}}],
    ids=["no-val-batches", "no-val-split"],
)
def test_without_validation_monitors_fall_back_to_the_training_loss(tmp_path: Path, sections: dict[str, Any]) -> None:
    raw_sections: dict[str, Any] = {"trainer": {"max_epochs": 2}, "early_stopping": {"monitor": "val_loss"}} | sections
    if "trainer" in sections:
        raw_sections["trainer"] = {"max_epochs": 2} | sections["trainer"]
    trainer = run_training(tiny_config(tmp_path, **raw_sections))
    assert trainer.current_epoch == 2
    assert trainer.lr_scheduler_configs[0].monitor == "train_loss_epoch"
    assert list((tmp_path / "models").glob("*best_train_loss_epoch*.ckpt"))


def test_last_checkpoint_is_always_the_newest_state(tmp_path: Path) -> None:
    # The monitored metric never improves after the first epoch (a threshold it cannot cross):
    # last.ckpt must still move on to the newest epoch, and the best file must stay intact.
    trainer = run_training(
        tiny_config(
            tmp_path, trainer={"max_epochs": 3}, checkpointing={"monitor": ["val_loss"], "save_top_k": 1, "mode": "max"}
        )
    )
    models = tmp_path / "models"
    (best,) = models.glob("epoch=*.ckpt")
    last = torch.load(models / "last.ckpt", map_location="cpu", weights_only=False)
    assert last["epoch"] == trainer.current_epoch - 1 == 2
    assert torch.load(best, map_location="cpu", weights_only=False)["epoch"] < 2
    assert not (models / "last.ckpt").is_symlink()


@pytest.mark.parametrize("monitors", [["val_idf1", "val_loss"], ["val_loss", "val_idf1"]])
def test_with_two_monitors_every_state_is_stored_once(tmp_path: Path, monitors: list[str]) -> None:
    """On these clips val_idf1 is 1 from the first epoch (a tie is no improvement) while val_loss improves every
    epoch: the final state is val_loss's best, and last.ckpt links to it whichever monitor is listed first."""
    checkpointing = {"monitor": monitors, "save_top_k": 1}
    trainer = run_training(tiny_config(tmp_path, seed=0, trainer={"max_epochs": 3}, checkpointing=checkpointing))
    models = tmp_path / "models"
    files = [path for path in models.glob("*.ckpt") if not path.is_symlink()]
    states = [
        (c["epoch"], c["global_step"]) for c in (torch.load(p, map_location="cpu", weights_only=False) for p in files)
    ]
    assert len(states) == len(set(states)) == 2, sorted(zip(states, [p.name for p in files], strict=True))
    last = torch.load(models / "last.ckpt", map_location="cpu", weights_only=False)
    assert last["epoch"] == trainer.current_epoch - 1 == 2 and (models / "last.ckpt").is_symlink()


def test_a_fresh_run_keeps_another_runs_checkpoints_in_its_folder(tmp_path: Path) -> None:
    """A second `dreem train` into one checkpoint folder (resume never) wrote over the first run's last.ckpt
    and its best files of the same names: the first run's are moved into earlier-<time>/ instead."""
    run_training(tiny_config(tmp_path, trainer={"max_epochs": 2}))
    models = tmp_path / "models"
    first = {path.name: path.resolve().read_bytes() for path in models.glob("*.ckpt")}
    run_training(tiny_config(tmp_path, optimizer={"lr": 0.01}))
    (kept,) = models.glob("earlier-*")
    assert {path.name: path.resolve().read_bytes() for path in kept.glob("*.ckpt")} == first
    # With the configuration they were trained with; the folder's own is the second run's.
    assert yaml.safe_load((kept / "config.yaml").read_text())["optimizer"]["lr"] == 0.001
    assert yaml.safe_load((models / "config.yaml").read_text())["optimizer"]["lr"] == 0.01
    assert not list(models.glob("config.*.yaml"))
    last = torch.load(models / "last.ckpt", map_location="cpu", weights_only=False)
    assert last["epoch"] == 0  # the second run's own
    resumed = run_training(
        tiny_config(tmp_path, model={"ckpt_path": str(models / "last.ckpt")}, trainer={"max_epochs": 2})
    )
    assert resumed.current_epoch == 2 and len(list(models.glob("earlier-*"))) == 1  # continuing moves nothing


def test_a_run_resumed_from_another_folder_keeps_the_checkpoints_of_this_one(tmp_path: Path) -> None:
    """model.ckpt_path naming another folder's checkpoint carries that run on here: what this folder holds is a
    third run's, which Lightning's last.ckpt and best files would write over. It is moved aside; resuming this
    folder's own last.ckpt moves nothing."""
    run_training(tiny_config(tmp_path / "a"))
    run_training(tiny_config(tmp_path / "b"))
    here = tmp_path / "b" / "models"
    before = {path.name: path.resolve().read_bytes() for path in here.glob("*.ckpt")}
    elsewhere = str(tmp_path / "a" / "models" / "last.ckpt")
    carried = run_training(tiny_config(tmp_path / "b", model={"ckpt_path": elsewhere}, trainer={"max_epochs": 2}))
    assert carried.current_epoch == 2
    (kept,) = here.glob("earlier-*")
    assert {path.name: path.resolve().read_bytes() for path in kept.glob("*.ckpt")} == before
    again = run_training(
        tiny_config(tmp_path / "b", model={"ckpt_path": str(here / "last.ckpt")}, trainer={"max_epochs": 3})
    )
    assert again.current_epoch == 3 and list(here.glob("earlier-*")) == [kept]
