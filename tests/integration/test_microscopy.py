"""Cells train, track and evaluate like flies: the CTC sequence of ../shared/data end to end, and the same
cells as TrackMate point tracks over a 12-bit TIFF stack."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tifffile

from dreem_trainer.config import validate
from dreem_trainer.data.discovery import discover, pair_directory
from dreem_trainer.data.microscopy import read_lineage
from dreem_trainer.data.point_tracks import write_tracks_csv
from dreem_trainer.inference.run import run_evaluation, run_tracking
from dreem_trainer.training.run import run_training
from tests.microscopy_helpers import CELLS, truth_points, write_stack
from tests.trainer_helpers import tiny_raw

pytestmark = pytest.mark.slow


def cell_config(tmp_path: Path, data: Path, labels_suffix: str, vid_suffix: str) -> dict[str, Any]:
    """The tiny training config, on cells: one `centroid` node per cell, clips of 6 of the 11 frames."""
    split = {
        "dir": {"path": str(data), "labels_suffix": labels_suffix, "vid_suffix": vid_suffix},
        "anchors": "centroid",
        "clip_length": 6,
    }
    return tiny_raw(tmp_path, dataset={"train_dataset": split, "val_dataset": split}, trainer={"max_epochs": 2})


def test_ctc_sequence_trains_tracks_into_ctc_results_and_evaluates(tmp_path: Path) -> None:
    config = validate(cell_config(tmp_path, CELLS, ".csv", ".tif"))
    run_training(config)
    checkpoint = tmp_path / "models" / "last.ckpt"
    assert checkpoint.exists()

    pairs = discover(config.dataset.train_dataset)
    (result,) = run_tracking(config, checkpoint, pairs, tmp_path / "tracked")
    assert result == tmp_path / "tracked" / "test_0_RES"
    truth_masks = sorted((CELLS / "test_0_GT" / "TRA").glob("frame_*.tif"))
    written = sorted(result.glob("mask*.tif"))
    assert [p.name for p in written] == [f"mask{n:03d}.tif" for n in range(11)]
    spans: dict[int, set[int]] = {}
    for frame, (truth_path, result_path) in enumerate(zip(truth_masks, written, strict=True)):
        truth, tracked = tifffile.imread(truth_path), tifffile.imread(result_path)
        assert np.array_equal(truth > 0, tracked > 0), "every cell keeps its pixels, nothing else is labelled"
        pairs_in_frame = {(int(a), int(b)) for a, b in zip(truth[truth > 0], tracked[truth > 0], strict=True)}
        assert len({a for a, _ in pairs_in_frame}) == len(pairs_in_frame), "one track per cell"
        assert len({b for _, b in pairs_in_frame}) == len(pairs_in_frame), "one cell per track in a frame"
        for _, label in pairs_in_frame:
            spans.setdefault(label, set()).add(frame)
    listed = read_lineage(result / "res_track.txt")
    assert {label: (min(frames), max(frames)) for label, frames in spans.items()} == {
        label: (begin, end) for label, [(begin, end, _)] in listed.items()
    }

    # A new sequence with a segmentation only (no identities) tracks the same way.
    fresh = tmp_path / "fresh"
    shutil.copytree(CELLS / "test_0", fresh / "s1")
    shutil.copytree(CELLS / "test_0_GT" / "TRA", fresh / "s1_ERR_SEG", ignore=shutil.ignore_patterns("*.txt"))
    (segmented,) = pair_directory(str(fresh), ".slp", ".mp4", 32)
    (fresh_result,) = run_tracking(config, checkpoint, [segmented], tmp_path / "fresh_out")
    first = tifffile.imread(fresh_result / "mask000.tif")
    assert np.array_equal(first > 0, tifffile.imread(truth_masks[0]) > 0)
    assert len(np.unique(first[first > 0])) == len(np.unique(tifffile.imread(truth_masks[0]))) - 1

    summary = run_evaluation(config, checkpoint, pairs, tmp_path / "eval")
    assert set(summary) >= {"mota", "idf1", "num_switches", "precision", "recall"}
    assert json.loads((tmp_path / "eval" / "metrics.json").read_text()) == summary
    assert summary["recall"] == 1.0  # every cell of the ground truth was tracked


def test_trackmate_points_over_a_tiff_stack_train_and_track_into_a_csv(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    write_stack(data, "cells")
    write_tracks_csv(truth_points(), data / "cells.csv")
    config = validate(cell_config(tmp_path, data, ".csv", ".tif"))
    run_training(config)
    (result,) = run_tracking(
        config, tmp_path / "models" / "last.ckpt", discover(config.dataset.train_dataset), tmp_path / "out"
    )
    assert result == tmp_path / "out" / "cells.dreem_tracks.csv"
    assert result.read_text().splitlines()[0] == "TRACK_ID,FRAME,POSITION_X,POSITION_Y"
    with result.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    # Every cell of the stack, where the input put it: (frame, x, y) as the ground truth has them.
    written = sorted((int(row["FRAME"]), float(row["POSITION_X"]), float(row["POSITION_Y"])) for row in rows)
    truth = sorted((frame, x, y) for _, frame, x, y in truth_points())
    assert len(written) == len(truth)
    assert np.allclose(np.array(written), np.array(truth), atol=1e-3)
    # And a track of its own for each cell of a frame.
    for frame in {row["FRAME"] for row in rows}:
        tracks = [row["TRACK_ID"] for row in rows if row["FRAME"] == frame]
        assert len(set(tracks)) == len(tracks), frame
