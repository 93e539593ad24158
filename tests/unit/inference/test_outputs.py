"""What `dreem track` and `dreem eval` write is decided before any video is tracked, and never lands on a file
the run reads, on another video's tracks, or on an earlier output without --overwrite."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from dreem_trainer.data.discovery import SourcePair
from dreem_trainer.data.sources import DataError
from dreem_trainer.inference.render import render
from dreem_trainer.inference.render_options import RenderError, RenderOptions
from dreem_trainer.inference.run import check_outputs
from tests.conftest import DEMO_DATA


def pair(folder: Path, stem: str = "cam") -> SourcePair:
    return SourcePair(str(folder / f"{stem}.slp"), str(folder / f"{stem}.mp4"), 128)


def test_videos_of_one_name_in_two_folders_are_refused(tmp_path: Path) -> None:
    day1, day2 = pair(tmp_path / "day1"), pair(tmp_path / "day2")
    with pytest.raises(DataError) as raised:
        check_outputs([day1, day2], tmp_path / "out", render=False, overwrite=True)
    message = str(raised.value)
    assert str(tmp_path / "out" / "cam.dreem_track.slp") in message
    assert day1.labels_path in message and day2.labels_path in message
    check_outputs([day1, pair(tmp_path / "day2", "cam2")], tmp_path / "out", render=False, overwrite=False)


def test_an_input_is_never_an_output(tmp_path: Path) -> None:
    # Re-tracking a proofread output into its own folder would write over the labels being read.
    proofread = SourcePair(str(tmp_path / "cam.dreem_track.slp"), str(tmp_path / "cam.mp4"), 128)
    with pytest.raises(DataError, match="this run reads it"):
        check_outputs([proofread], tmp_path, render=False, overwrite=True)


def test_an_earlier_output_is_replaced_only_with_overwrite(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "cam.dreem_track.slp").write_text("proofread since")
    with pytest.raises(DataError, match="--overwrite"):
        check_outputs([pair(tmp_path)], out, render=False, overwrite=False)
    check_outputs([pair(tmp_path)], out, render=False, overwrite=True)
    (out / "cam.dreem_track.slp").unlink()
    (out / "cam.dreem_track.mp4").write_bytes(b"drawn before")  # what --render would draw
    check_outputs([pair(tmp_path)], out, render=False, overwrite=False)
    with pytest.raises(DataError, match=r"cam\.dreem_track\.mp4: already exists"):
        check_outputs([pair(tmp_path)], out, render=True, overwrite=False)


@pytest.mark.parametrize("earlier", ["metrics.json", "metrics_per_video.csv", "cam.identity_timeline.png"])
def test_an_earlier_evaluation_is_replaced_only_with_overwrite(tmp_path: Path, earlier: str) -> None:
    """A second dreem eval into one folder, on other videos, replaced the first's metrics in silence."""
    out = tmp_path / "out"
    out.mkdir()
    (out / earlier).write_text("an earlier evaluation's results")
    check_outputs([pair(tmp_path)], out, render=False, overwrite=False)  # dreem track writes none of them
    with pytest.raises(DataError, match=rf"{earlier}: already exists \(an earlier evaluation\?\); pass --overwrite"):
        check_outputs([pair(tmp_path)], out, render=False, overwrite=False, evaluation=True)
    check_outputs([pair(tmp_path)], out, render=False, overwrite=True, evaluation=True)


def test_render_never_draws_over_its_own_video(tmp_path: Path) -> None:
    for name in ("two_flies.slp", "two_flies.mp4"):
        shutil.copy(DEMO_DATA / name, tmp_path / name)
    video = tmp_path / "two_flies.mp4"
    before = video.read_bytes()
    with pytest.raises(RenderError, match="this render reads it"):  # --overwrite replaces drawings only
        render(tmp_path / "two_flies.slp", video, str(video), RenderOptions(overwrite=True))
    assert video.read_bytes() == before


def test_eval_refuses_labels_without_identities_before_tracking(tmp_path: Path) -> None:
    import sleap_io as sio

    from dreem_trainer.inference.run import check_ground_truth

    labels = sio.load_slp(str(DEMO_DATA / "two_flies.slp"))
    for instance in (instance for frame in labels.labeled_frames for instance in frame.instances):
        instance.track = None
    labels.tracks = []
    sio.save_slp(labels, str(tmp_path / "untracked.slp"))
    (tmp_path / "untracked.mp4").symlink_to(DEMO_DATA / "two_flies.mp4")
    untracked = SourcePair(str(tmp_path / "untracked.slp"), str(tmp_path / "untracked.mp4"), 128)
    with pytest.raises(DataError, match=r"untracked\.slp: no tracks, so no ground truth"):
        check_ground_truth(
            [SourcePair(str(DEMO_DATA / "two_flies.slp"), str(DEMO_DATA / "two_flies.mp4"), 128), untracked]
        )


def test_an_output_that_is_a_file_is_named(tmp_path: Path) -> None:
    (tmp_path / "results").write_text("notes")
    with pytest.raises(DataError, match=r"results: is a file"):
        check_outputs([pair(tmp_path / "day1")], tmp_path / "results", render=False, overwrite=False)


def test_the_output_folder_is_made_only_when_written_and_named_when_it_cannot_be(tmp_path: Path) -> None:
    from dreem_trainer.inference.run import output_folder

    target = tmp_path / "results" / "day1"
    check_outputs([pair(tmp_path)], target, render=False, overwrite=False)
    assert not target.exists()  # the plan makes nothing: a run that fails leaves no empty folder
    assert output_folder(target).is_dir()
    (tmp_path / "notes").write_text("a file")
    with pytest.raises(DataError, match=r"notes/day1: cannot make the output folder"):
        output_folder(tmp_path / "notes" / "day1")


def test_results_holding_what_the_run_reads_are_never_replaced(tmp_path: Path) -> None:
    # Tracking CTC results (01_RES/res_track.txt) into their own parent would rewrite 01_RES in place.
    results = SourcePair(str(tmp_path / "01_RES" / "res_track.txt"), str(tmp_path / "01"), 32)
    with pytest.raises(DataError, match=r"01_RES: this run reads it"):
        check_outputs([results], tmp_path, render=False, overwrite=True)
