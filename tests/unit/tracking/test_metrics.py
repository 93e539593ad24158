"""Tracking metrics against hand-countable cases, and the one table of metric names and directions."""

from __future__ import annotations

from dreem_trainer.config import DreemConfig
from dreem_trainer.config.optimization import SchedulerConfig
from dreem_trainer.config.run import EarlyStoppingConfig
from dreem_trainer.tracking.metrics import LOSS, TRACKING_METRICS, TrackingCounts, metric_logged_as, tracking_counts


def test_perfect_tracks() -> None:
    counts = tracking_counts([0, 0, 1, 1, 2, 2], [0, 1, 0, 1, 0, 1], [5, 7, 5, 7, 5, 7])
    assert counts.num_switches == 0 and counts.mota == 1.0 and counts.idf1 == 1.0


def test_one_swap_is_two_switches() -> None:
    # Identities swap from frame 2 on: each true track changes its predicted id once.
    counts = tracking_counts([0, 0, 1, 1, 2, 2], [0, 1, 0, 1, 0, 1], [5, 7, 5, 7, 7, 5])
    assert counts.num_switches == 2
    assert counts.mota == 1 - 2 / 6
    assert counts.idf1 == 4 / 6


def test_counts_add_before_ratios() -> None:
    a = TrackingCounts(num_objects=10, num_switches=1, idtp=9, idfp=1, idfn=1)
    b = TrackingCounts(num_objects=30, num_switches=0, idtp=30)
    total = a + b
    assert total.num_objects == 40 and total.mota == 1 - 1 / 40
    assert total.idf1 == 2 * 39 / (2 * 39 + 2)


def test_summary_holds_every_tracking_metric_then_the_remaining_counts() -> None:
    counts = TrackingCounts(num_objects=10, num_misses=1, num_false_positives=2, num_switches=1, idtp=8, idfp=2, idfn=2)
    summary = counts.summary()
    assert list(summary) == [
        "mota", "idf1", "num_switches", "precision", "recall", "num_objects",
        "num_misses", "num_false_positives", "idtp", "idfp", "idfn",
    ]  # fmt: skip
    assert [metric.name for metric in TRACKING_METRICS] == list(summary)[:6]
    # 1 miss + 2 false positives + 1 switch over 10 objects; 9 matched of 11 detections.
    assert summary["mota"] == 1 - 4 / 10 and summary["idf1"] == 16 / 20
    assert summary["precision"] == 9 / 11 and summary["recall"] == 9 / 10
    assert summary["num_misses"] == 1.0 and summary["idfn"] == 2.0


def test_misses_and_false_positives_are_counted_by_name() -> None:
    # Frame 1 loses track 1 (a miss); frame 2 predicts an instance with no true track, which is not scored.
    counts = tracking_counts([0, 0, 1, 1, 2, 2], [0, 1, 0, 1, 0, -1], [5, 7, 5, -1, 5, 9])
    assert (counts.num_objects, counts.num_misses, counts.num_false_positives) == (5, 1, 0)


def test_one_track_labelled_twice_in_a_frame_is_two_objects() -> None:
    """A labelling slip gives two instances of a frame one track (and the tracker, from the labels, one id):
    each counts as an object of its own, so IDF1 stays a fraction (repeated ids made it 1.08)."""
    counts = tracking_counts([0, 0, 0, 1, 1, 1], [0, 0, 1, 0, 0, 1], [0, 0, 1, 0, 2, 1])
    # Truth: track 0, its repeat and track 1, each in both frames. The repeat is predicted as another id in
    # each frame, so one of its two instances matches: 5 of 6 instances keep their identity.
    assert (counts.num_objects, counts.idtp, counts.idfp, counts.idfn) == (6, 5, 1, 1)
    assert counts.idf1 == 10 / 12


def test_logged_names_find_their_row() -> None:
    assert metric_logged_as("train_loss_epoch") is LOSS and metric_logged_as("train_loss_step") is LOSS
    assert metric_logged_as("val_loss") is LOSS and LOSS.mode == "min"
    found = {name: metric_logged_as(f"val_{name}") for name in ("idf1", "mota", "num_switches", "recall")}
    assert {name: metric.mode if metric else None for name, metric in found.items()} == {
        "idf1": "max",
        "mota": "max",
        "num_switches": "min",
        "recall": "max",
    }
    # Identities exist only where labels are scored, so training logs no tracking metric.
    assert metric_logged_as("train_idf1") is None and metric_logged_as("val_idf") is None


def test_the_schema_defaults_monitor_logged_metrics() -> None:
    # The config schema sits below the table and spells its defaults out; they must name rows of it.
    config = DreemConfig()
    defaults = [*config.checkpointing.monitor, EarlyStoppingConfig().monitor, SchedulerConfig().monitor]
    assert [metric_logged_as(name) for name in defaults] == [LOSS, LOSS, LOSS]
