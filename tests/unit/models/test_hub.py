"""hf://owner/repo[/file] checkpoints come from the Hugging Face cache, or fail at once naming the key."""

from __future__ import annotations

import os
import time
from pathlib import Path

import huggingface_hub.constants as hub
import pytest

from dreem_trainer.models.hub import CheckpointUnavailableError, fetch_checkpoint
from tests.conftest import TEST_DATA

CHECKPOINT = TEST_DATA / "dreem" / "dreem_two_flies.ckpt"
REVISION = "0123456789abcdef0123456789abcdef01234567"


def cache_repo(cache: Path, repo: str, files: dict[str, Path]) -> None:
    """A repository as the hub client caches it: refs/main names a snapshot holding the files."""
    folder = cache / f"models--{repo.replace('/', '--')}"
    (folder / "refs").mkdir(parents=True)
    (folder / "refs" / "main").write_text(REVISION)
    snapshot = folder / "snapshots" / REVISION
    snapshot.mkdir(parents=True)
    for name, source in files.items():
        os.symlink(source, snapshot / name)


@pytest.fixture
def hub_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    cache = tmp_path / "hub"
    cache.mkdir()
    monkeypatch.setattr(hub, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(hub, "HF_HUB_OFFLINE", True)
    return cache


def test_a_cached_checkpoint_is_found_offline(hub_cache: Path) -> None:
    cache_repo(hub_cache, "lab/flies", {"model.ckpt": CHECKPOINT, "README.md": CHECKPOINT})
    found = fetch_checkpoint("hf://lab/flies", "model.ckpt_path")
    assert found.name == "model.ckpt" and found.resolve() == CHECKPOINT.resolve()
    assert fetch_checkpoint("hf://lab/flies/model.ckpt", "model.ckpt_path").name == "model.ckpt"


def test_a_repo_with_several_checkpoints_needs_the_file_named(hub_cache: Path) -> None:
    cache_repo(hub_cache, "lab/two", {"a.ckpt": CHECKPOINT, "b.ckpt": CHECKPOINT})
    with pytest.raises(CheckpointUnavailableError, match=r"model.ckpt_path: hf://lab/two holds 2 .ckpt files \(a.ckpt"):
        fetch_checkpoint("hf://lab/two", "model.ckpt_path")
    assert fetch_checkpoint("hf://lab/two/b.ckpt", "model.ckpt_path").name == "b.ckpt"


def test_offline_without_the_file_fails_naming_the_key(hub_cache: Path) -> None:
    with pytest.raises(CheckpointUnavailableError, match=r"model.ckpt_path: hf://lab/absent .*HF_HUB_OFFLINE is set"):
        fetch_checkpoint("hf://lab/absent", "model.ckpt_path")


def test_an_unreachable_hub_fails_within_seconds(
    hub_cache: Path, monkeypatch: pytest.MonkeyPatch, refused_port: int
) -> None:
    monkeypatch.setattr(hub, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(hub, "ENDPOINT", f"http://127.0.0.1:{refused_port}")
    started = time.monotonic()
    with pytest.raises(
        CheckpointUnavailableError, match=r"model.ckpt_path: hf://lab/absent/x.ckpt .*cannot be reached"
    ):
        fetch_checkpoint("hf://lab/absent/x.ckpt", "model.ckpt_path")
    # The issue asks for a failure within seconds: a hub client left to retry takes about a minute.
    assert time.monotonic() - started < 30


def test_a_dataset_uri_is_refused(hub_cache: Path) -> None:
    with pytest.raises(CheckpointUnavailableError, match="names a dataset"):
        fetch_checkpoint("hf://datasets/lab/flies/x.ckpt", "model.ckpt_path")
