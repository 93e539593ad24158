"""What this process uploaded becomes the download cache's copy of the object (storage.download.register), but
only the very bytes uploaded: the cache never pairs an ETag with other content."""

from __future__ import annotations

import os
from pathlib import Path

from dreem_trainer.config.paths import S3Uri
from dreem_trainer.config.run import StorageConfig
from dreem_trainer.storage.download import ETAG_SUFFIX, cache_root, forget, local_path, register, register_copy


def replace(path: Path, content: bytes) -> None:
    """As the trainer writes a checkpoint: a new file renamed over the old one."""
    written = path.with_name(f"{path.name}.tmp")
    written.write_bytes(content)
    os.replace(written, path)


def cached(storage: StorageConfig, uri: S3Uri) -> tuple[bytes, str] | None:
    path = local_path(cache_root(storage), uri)
    sidecar = path.with_name(f".{path.name}{ETAG_SUFFIX}")
    # The sidecar's first line is the ETag (the second the file's modification time when it was cached).
    return (path.read_bytes(), sidecar.read_text().splitlines()[0]) if path.is_file() and sidecar.is_file() else None


def test_an_upload_is_registered_only_if_the_file_is_still_the_one_uploaded(tmp_path: Path) -> None:
    storage = StorageConfig(cache_dir=str(tmp_path / "cache"))
    staging = tmp_path / "cache" / "outputs" / "run"
    staging.mkdir(parents=True)
    checkpoint, uri = staging / "last.ckpt", S3Uri("out", "models/last.ckpt")
    checkpoint.write_bytes(b"epoch 1")
    with checkpoint.open("rb") as handle:
        assert register(storage, uri, checkpoint, handle.fileno(), '"etag-1"')
    assert cached(storage, uri) == (b"epoch 1", '"etag-1"')

    # The next checkpoint replaces the file (by rename) while its predecessor is still being uploaded: the
    # file now at the path is not what went up under that ETag, so nothing is registered.
    replace(checkpoint, b"epoch 2")
    with checkpoint.open("rb") as handle:
        replace(checkpoint, b"epoch 3")
        assert not register(storage, uri, checkpoint, handle.fileno(), '"etag-2"')
    assert cached(storage, uri) == (b"epoch 1", '"etag-1"')

    # A server-side copy of a registered object is registered too, with the copy's own ETag; a copy of an
    # object whose cached bytes are not the uploaded ones is not.
    best = S3Uri("out", "models/best.ckpt")
    assert register_copy(storage, uri, '"etag-1"', best, '"etag-copy"')
    assert cached(storage, best) == (b"epoch 1", '"etag-copy"')
    assert not register_copy(storage, uri, '"etag-2"', S3Uri("out", "models/other.ckpt"), '"x"')
    assert cached(storage, S3Uri("out", "models/other.ckpt")) is None

    # A deleted (pruned) object leaves the cache.
    forget(storage, best)
    assert cached(storage, best) is None and not local_path(cache_root(storage), best).exists()
