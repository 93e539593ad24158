"""`dreem train`, `dreem track` and `dreem eval` from the command line on the two-fly recording."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
import sleap_io as sio
import yaml
from PIL import Image

from dreem_trainer.contract import EXIT_USER_ERROR
from tests.conftest import DEMO_DATA, REPO_ROOT, dreem_executable
from tests.trainer_helpers import TWO_FLIES_MP4, TWO_FLIES_SLP, tiny_raw

pytestmark = pytest.mark.slow


def dreem(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([dreem_executable(), *args], cwd=cwd, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def demo_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo configuration, trained for three epochs."""
    out = tmp_path_factory.mktemp("demo")
    result = dreem(
        "train",
        "--config",
        str(REPO_ROOT / "examples" / "demo" / "train.yaml"),
        "--epochs",
        "3",
        "--set",
        f"dataset.train_dataset.dir.path={DEMO_DATA}",
        "--set",
        f"dataset.val_dataset.dir.path={DEMO_DATA}",
        "--set",
        f"checkpointing.dirpath={out / 'models'}",
        "--set",
        f"logging.save_dir={out / 'logs'}",
        cwd=out,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    return out / "models" / "last.ckpt"


def test_eval_after_a_few_epochs_reaches_idf1(demo_checkpoint: Path, tmp_path: Path) -> None:
    result = dreem(
        "eval", str(DEMO_DATA), "--checkpoint", str(demo_checkpoint), "--output", str(tmp_path), cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["idf1"] >= 0.98, metrics
    assert {"mota", "idf1", "num_switches", "precision", "recall"} <= set(metrics)
    rows = (tmp_path / "metrics_per_video.csv").read_text().splitlines()
    assert rows[0].startswith("video,mota,idf1") and rows[1].startswith("two_flies,")
    assert "Tracking metrics" in result.stdout and "two_flies" in result.stdout
    timeline = Image.open(tmp_path / "two_flies.identity_timeline.png")
    assert timeline.format == "PNG" and timeline.height > 100
    assert Image.open(tmp_path / "metrics_per_video.png").format == "PNG"


def test_track_writes_tracked_labels_per_video(demo_checkpoint: Path, tmp_path: Path) -> None:
    result = dreem(
        "track",
        "--slp-file",
        TWO_FLIES_SLP,
        "--video-file",
        TWO_FLIES_MP4,
        "--checkpoint",
        str(demo_checkpoint),
        "--output",
        str(tmp_path / "out"),
        "--render",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    tracked = sio.load_slp(str(tmp_path / "out" / "two_flies.dreem_track.slp"))
    drawn = sio.load_video(str(tmp_path / "out" / "two_flies.dreem_track.mp4"), grayscale=False)
    assert drawn.shape == (128, 1024, 1024, 3)
    truth = sio.load_slp(TWO_FLIES_SLP)
    assert len(tracked.labeled_frames) == len(truth.labeled_frames)
    assert len(tracked.tracks) >= 2
    for predicted, original in zip(tracked.labeled_frames, truth.labeled_frames, strict=True):
        assert all(instance.track is not None for instance in predicted.instances)
        for mine, theirs in zip(predicted.instances, original.instances, strict=True):
            assert np.allclose(mine.numpy(), theirs.numpy(), equal_nan=True)
    # The input labels are left untouched.
    assert [i.track.name for i in sio.load_slp(TWO_FLIES_SLP).labeled_frames[0].instances] == ["M", "F"]


def test_track_errors_name_the_problem(demo_checkpoint: Path, tmp_path: Path) -> None:
    missing = dreem(
        "track", str(tmp_path / "nope"), "--checkpoint", str(demo_checkpoint), "--output", str(tmp_path), cwd=tmp_path
    )
    assert missing.returncode == EXIT_USER_ERROR and "no such data directory" in missing.stderr
    no_ckpt = dreem(
        "track", str(DEMO_DATA), "--checkpoint", str(tmp_path / "x.ckpt"), "--output", str(tmp_path), cwd=tmp_path
    )
    assert no_ckpt.returncode == EXIT_USER_ERROR and "x.ckpt: no such checkpoint" in no_ckpt.stderr
    no_input = ("--set", "dataset.train_dataset.dir=null")
    nothing = dreem("track", "--checkpoint", str(demo_checkpoint), "--output", str(tmp_path), *no_input, cwd=tmp_path)
    assert nothing.returncode == EXIT_USER_ERROR
    assert "  - INPUT_DIR: nothing to track: give INPUT_DIR or --slp-file/--video-file\n" in nothing.stderr


def test_train_cli_rejects_bad_config_before_reading_data(tmp_path: Path) -> None:
    raw = tiny_raw(tmp_path)
    raw["optimizer"]["name"] = "Adamm"
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(raw))
    result = dreem("train", "--config", str(tmp_path / "bad.yaml"), cwd=tmp_path)
    assert result.returncode == EXIT_USER_ERROR and "optimizer.name: not a torch.optim optimizer" in result.stderr


def test_dreem_s_track_options_and_inference_config(demo_checkpoint: Path, tmp_path: Path) -> None:
    """DREEM's spelling: -ckpt, -o, -conf, -q; and an inference config naming ckpt_path and outdir.
    (What -conf flags and -mx leaves untracked is tested on the tracker and the writer.)"""
    out = tmp_path / "flagged"
    flagged = dreem(
        "track", str(DEMO_DATA), "-ckpt", str(demo_checkpoint), "-o", str(out), "-conf", "0.99", "-q", cwd=tmp_path
    )
    assert flagged.returncode == 0, flagged.stderr[-3000:]
    assert flagged.stdout == ""  # --quiet: no progress
    tracked = sio.load_slp(str(out / "two_flies.dreem_track.slp"))
    assert sorted(int(track.name) for track in tracked.tracks) == [0, 1]  # DREEM's names: the ids, as numbers
    inference = tmp_path / "track.yaml"
    inference.write_text(
        yaml.safe_dump(
            {
                "ckpt_path": str(demo_checkpoint),
                "outdir": str(tmp_path / "from_config"),
                "tracker": {"overlap_thresh": 0.01, "use_vis_feats": True},
                "dataset": {"test_dataset": {"dir": {"path": None}, "anchors": "thorax", "crop_size": 128}},
            }
        )
    )
    evaluated = dreem("eval", str(DEMO_DATA), "-c", str(inference), cwd=tmp_path)
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    assert "tracker.use_vis_feats" in evaluated.stderr and "no effect" in evaluated.stderr
    # DREEM's tracking padding (5) widens the crops the model was trained on a little.
    assert json.loads((tmp_path / "from_config" / "metrics.json").read_text())["idf1"] >= 0.9
