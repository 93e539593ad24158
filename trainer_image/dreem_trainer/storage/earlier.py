"""A run that starts afresh in a checkpoint folder holding another run's checkpoints keeps them: it moves
dreem's own (last.ckpt and the best files) into `earlier-<time>/` there, with the configuration they were
trained with, rather than let Lightning write over files of the same names. The same for a local folder and
for an S3 prefix (where a move is a copy, then a deletion of the original)."""

from __future__ import annotations

import contextlib
import itertools
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from dreem_trainer.config.paths import S3Uri, is_s3
from dreem_trainer.config.run import StorageConfig
from dreem_trainer.storage.client import StorageError, explain, s3_client
from dreem_trainer.storage.download import forget
from dreem_trainer.storage.staging import RUN_CONFIG
from dreem_trainer.storage.sync import transfer_config

log = logging.getLogger(__name__)

EARLIER = "earlier-"
ADVICE = "to continue that run instead, move them back and train with --resume auto"


def is_run_checkpoint(name: str) -> bool:
    """dreem's own checkpoints: last.ckpt and the best files. Other files in the folder are the user's."""
    return name == "last.ckpt" or (name.endswith(".ckpt") and "-best_" in name)


def stamped_name(prefix: str, written: float, taken: Callable[[str], bool], suffix: str = "") -> str:
    """A name for what an earlier run left, by the time it was written: `<prefix><time><suffix>`, with
    `-1`, `-2`... when that is taken."""
    stamp = datetime.fromtimestamp(written).strftime("%Y%m%d-%H%M%S")
    names = (f"{prefix}{stamp}{f'-{n}' if n else ''}{suffix}" for n in itertools.count())
    return next(name for name in names if not taken(name))


def keep_earlier_checkpoints(folder: Path, reading: str | None) -> Path | None:
    """Move another run's checkpoints in `folder` into `earlier-<time>/` and return that folder; nothing when
    there are none, or when the run fine-tunes from one of them (`reading`, model.ckpt_path): it reads it.
    A file another process moved first is left to it."""
    if not folder.is_dir():
        return None
    found = [
        path for path in folder.iterdir() if is_run_checkpoint(path.name) and (path.is_symlink() or path.is_file())
    ]
    if not found or (reading is not None and any(path.resolve() == Path(reading).resolve() for path in found)):
        return None
    written = max(path.lstat().st_mtime for path in found)
    while True:
        kept = folder / stamped_name(EARLIER, written, lambda name: (folder / name).exists())
        with contextlib.suppress(FileExistsError):  # another process took that name since
            kept.mkdir()
            break
    for path in [*found, folder / RUN_CONFIG]:
        with contextlib.suppress(FileNotFoundError):
            path.rename(kept / path.name)  # last.ckpt's link is relative: it still points at its best file
    print(f"{folder}: another run's checkpoints are kept in {kept.name}/ ({ADVICE})", flush=True)
    return kept


@dataclass(frozen=True)
class StoredObject:
    written: datetime
    etag: str


def keep_earlier_stored_checkpoints(storage: StorageConfig, remote: S3Uri, reading: str | None) -> S3Uri | None:
    """The same for an S3 prefix: every checkpoint and the configuration are copied into `earlier-<time>/`
    first (each copy only of the version listed: CopySourceIfMatch), and only then are the originals deleted,
    each only while it is still that version, so a run stopped half-way, or a writer racing it, loses nothing.
    A copy that fails takes the copies made before it away again. A store that refuses the deletions keeps
    both (the copies are then the earlier run's only safe ones)."""
    client = s3_client(storage)
    objects: dict[str, StoredObject] = {}
    folders: set[str] = set()
    try:
        pages = client.get_paginator("list_objects_v2").paginate(
            Bucket=remote.bucket, Prefix=remote.prefix, Delimiter="/"
        )
        for page in pages:
            for item in page.get("Contents", []):
                objects[str(item["Key"])[len(remote.prefix) :]] = StoredObject(item["LastModified"], str(item["ETag"]))
            for entry in page.get("CommonPrefixes", []):
                folders.add(str(entry["Prefix"])[len(remote.prefix) :].rstrip("/"))
    except Exception as error:
        raise StorageError(f"{remote}: {explain(error)}") from None
    found = sorted(name for name in objects if is_run_checkpoint(name))
    read_here = reading is not None and is_s3(reading) and S3Uri.parse(reading) in {remote.join(n) for n in found}
    if not found or read_here:
        return None
    written = max(objects[name].written for name in found).timestamp()
    kept = remote.join(stamped_name(EARLIER, written, folders.__contains__))
    moved = [*found, *([RUN_CONFIG] if RUN_CONFIG in objects else [])]
    copied: list[S3Uri] = []
    for name in moved:
        origin, copy = remote.join(name), kept.join(name)
        try:
            client.copy(
                {"Bucket": origin.bucket, "Key": origin.key},
                copy.bucket,
                copy.key,
                ExtraArgs={"CopySourceIfMatch": objects[name].etag},
                Config=transfer_config(),
            )
        except Exception as error:
            for made in copied:  # no half-kept folder: the next start keeps them whole, under the same name
                with contextlib.suppress(Exception):
                    client.delete_object(Bucket=made.bucket, Key=made.key)
            raise StorageError(f"{origin}: could not keep it in {kept}/ before training: {explain(error)}") from None
        copied.append(copy)
    for name in moved:
        origin = remote.join(name)
        try:
            if str(client.head_object(Bucket=origin.bucket, Key=origin.key)["ETag"]) != objects[name].etag:
                log.warning("%s: written again since it was kept in %s/; left where it is", origin, kept)
                continue
            client.delete_object(Bucket=origin.bucket, Key=origin.key)
        except Exception as error:
            log.warning("%s: kept a copy in %s/ but could not delete it (%s)", origin, kept, explain(error))
            continue
        forget(storage, origin)
    print(f"{remote}: another run's checkpoints are kept in {kept}/ ({ADVICE})", flush=True)
    return kept
