"""An outage is waited out once: the transfers queued behind the first share its retry window (against an
endpoint that refuses connections, as a storage server down does)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from dreem_trainer.config.paths import S3Uri
from dreem_trainer.config.run import StorageConfig
from dreem_trainer.storage.client import StorageError
from dreem_trainer.storage.sync import DirectorySync
from tests.conftest import S3_ENV


def test_files_queued_in_an_outage_give_up_together_after_one_window(
    tmp_path: Path, refused_port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key, value in S3_ENV.items():
        monkeypatch.setenv(key, value)
    storage = StorageConfig(endpoint_url=f"http://127.0.0.1:{refused_port}", max_attempts=1)
    local = tmp_path / "checkpoints"
    local.mkdir()
    for epoch in range(12):
        (local / f"epoch={epoch}.ckpt").write_bytes(b"weights")
    sync = DirectorySync(storage, local, S3Uri("lab", "runs/flies/models"), retry_for_s=3.0)
    started = time.monotonic()
    sync.sync()
    with pytest.raises(StorageError) as raised:
        sync.wait()
    waited = time.monotonic() - started
    assert all(f"epoch={epoch}.ckpt: cannot reach the endpoint" in str(raised.value) for epoch in range(12))
    # One window (3 s, with its last backoff), not a window for each file (13.4 s when each had its own).
    assert 2.0 < waited < 8.0, waited
