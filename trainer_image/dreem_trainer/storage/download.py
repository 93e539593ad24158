"""Downloads into a local cache: unchanged files (same size and ETag) are never fetched twice, and a
killed download never leaves a file that looks complete.

Processes sharing the cache (a node's DDP ranks, jobs sharing a volume) take a lock per object before
fetching it, so each object is downloaded once however many of them ask at the same moment. A file this
process uploaded can be registered as the cached copy of its object (see `register`), so a resume on
the same node does not download its own checkpoint back.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dreem_trainer.config.paths import S3Uri
from dreem_trainer.config.run import StorageConfig
from dreem_trainer.contract import ENV_CACHE_DIR
from dreem_trainer.storage.client import StorageError, explain, not_found, s3_client

log = logging.getLogger(__name__)

ETAG_SUFFIX = ".dreem-etag"
LOCK_SUFFIX = ".dreem-lock"


def cache_root(storage: StorageConfig) -> Path:
    configured = storage.cache_dir or os.environ.get(ENV_CACHE_DIR)
    return Path(configured) if configured else Path.home() / ".cache" / "dreem"


def local_path(root: Path, uri: S3Uri) -> Path:
    """Where an object is cached; a key that would land outside the cache is refused."""
    target = (root / "s3" / uri.bucket / uri.key).resolve()
    base = (root / "s3" / uri.bucket).resolve()
    if uri.key.startswith("/") or not target.is_relative_to(base) or target == base:
        raise StorageError(f"{uri}: the object key would resolve outside the cache directory {base}")
    return target


@dataclass
class DownloadReport:
    fetched: int = 0
    skipped: int = 0
    bytes_fetched: int = 0


def _sidecar(path: Path) -> Path:
    return path.with_name(f".{path.name}{ETAG_SUFFIX}")


def _description(path: Path, etag: str) -> str:
    """What a sidecar holds: the object's ETag, and the file's modification time when it was cached. A cached
    file changed in place since (a registered upload is a hard link to the trainer's file) no longer matches."""
    return f"{etag}\n{path.stat().st_mtime_ns}"


def _describe(path: Path, etag: str) -> None:
    _sidecar(path).write_text(_description(path, etag))


def _fresh(path: Path, size: int | None, etag: str) -> bool:
    """Whether `path` holds the object of this ETag (and size, if known): never fetched again."""
    sidecar = _sidecar(path)
    if not (path.is_file() and sidecar.is_file()) or (size is not None and path.stat().st_size != size):
        return False
    return sidecar.read_text() == _description(path, etag)


@contextlib.contextmanager
def _locked(target: Path) -> Iterator[None]:
    """Held while `target` and its sidecar change. The kernel releases the lock when its holder dies, so a
    killed download never blocks the others."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with target.with_name(f".{target.name}{LOCK_SUFFIX}").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _fetch(client: Any, uri: S3Uri, target: Path, size: int, etag: str, report: DownloadReport) -> None:
    if _fresh(target, size, etag):
        report.skipped += 1
        return
    with _locked(target):
        if _fresh(target, size, etag):  # fetched by another process while this one waited
            report.skipped += 1
            return
        partial = target.with_name(f".{target.name}.{os.getpid()}.partial")
        try:
            client.download_file(uri.bucket, uri.key, str(partial))
            _sidecar(target).unlink(missing_ok=True)
            os.replace(partial, target)
        except Exception as error:
            partial.unlink(missing_ok=True)
            raise StorageError(f"{uri}: download failed: {explain(error)}") from None
        _describe(target, etag)
    report.fetched += 1
    report.bytes_fetched += size


def register(storage: StorageConfig, uri: S3Uri, uploaded: Path, handle: int, etag: str) -> bool:
    """Make the file just uploaded to `uri` its cached copy (a hard link, not a second copy of the bytes),
    with the ETag the store returned for that upload; true if it was registered.

    `handle` is the open file descriptor the upload read. The file at `uploaded` may have been replaced
    since (checkpoints are written by rename), so the link is kept only when it is that very file: the
    cache never pairs an ETag with other bytes. A file that cannot be linked (another filesystem) is not
    registered, and a resume downloads it, as before.
    """
    target = local_path(cache_root(storage), uri)
    target.parent.mkdir(parents=True, exist_ok=True)

    def link(linked: Path) -> bool:
        os.link(uploaded, linked)
        return os.path.samestat(os.stat(linked), os.fstat(handle))

    return _register_link(uri, target, etag, link)


def register_copy(storage: StorageConfig, source: S3Uri, source_etag: str, uri: S3Uri, etag: str) -> bool:
    """After a server-side copy of `source` (whose ETag was `source_etag`) to `uri`: the cached copy of the
    source, if it holds those very bytes, becomes the cached copy of `uri` too."""
    cached, target = local_path(cache_root(storage), source), local_path(cache_root(storage), uri)

    def link(linked: Path) -> bool:
        with _locked(cached):
            if not _fresh(cached, None, source_etag):
                return False
            target.parent.mkdir(parents=True, exist_ok=True)
            os.link(cached, linked)
        return True

    return _register_link(uri, target, etag, link)


def _register_link(uri: S3Uri, target: Path, etag: str, link: Callable[[Path], bool]) -> bool:
    """Install as `target`'s cached copy, under `etag`, the hard link `link` makes at the name it is given
    (false when it declines); the link's temporary name never outlives the call. A filesystem that refuses
    the link leaves the object unregistered, and a resume downloads it, as before."""
    linked = _linked_name(target)
    try:
        if not link(linked):
            return False
        _install(target, linked, etag)
        return True
    except OSError as error:
        log.info("%s not registered in the download cache: %s", uri, error)
        return False
    finally:
        linked.unlink(missing_ok=True)


def forget(storage: StorageConfig, uri: S3Uri) -> None:
    """Drop the cached copy of an object this process deleted (a pruned checkpoint), so the cache does not
    keep every checkpoint a run ever wrote."""
    target = local_path(cache_root(storage), uri)
    if target.is_file():
        _drop(target)


def _drop(target: Path) -> None:
    """A cached file and its sidecar, under its lock: a download of it at the time finishes first."""
    with _locked(target):
        _sidecar(target).unlink(missing_ok=True)
        target.unlink(missing_ok=True)


def _linked_name(target: Path) -> Path:
    return target.with_name(f".{target.name}.{os.getpid()}-{threading.get_ident()}.partial")


def _install(target: Path, linked: Path, etag: str) -> None:
    """`linked` becomes the cached `target`, described by `etag`; never a moment where the sidecar
    describes other bytes."""
    with _locked(target):
        _sidecar(target).unlink(missing_ok=True)
        os.replace(linked, target)
        _describe(target, etag)


def download(storage: StorageConfig, text: str, report: DownloadReport | None = None) -> Path:
    """Mirror an object, or every object under a prefix, into the cache; returns the local path."""
    uri = S3Uri.parse(text)
    report = report if report is not None else DownloadReport()
    client = s3_client(storage)
    root = cache_root(storage)
    try:
        head = client.head_object(Bucket=uri.bucket, Key=uri.key) if uri.key else None
    except Exception as error:
        if not not_found(error):
            raise StorageError(f"{uri}: {explain(error)}") from None
        head = None
    if head is not None:
        target = local_path(root, uri)
        _fetch(client, uri, target, int(head["ContentLength"]), str(head["ETag"]), report)
        return target
    listed: set[Path] = set()
    try:
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=uri.bucket, Prefix=uri.prefix):
            for item in page.get("Contents", []):
                if item["Key"].endswith("/"):
                    continue  # a folder marker (the S3 console's "Create folder"), not a file
                child = S3Uri(uri.bucket, item["Key"])
                listed.add(local_path(root, child))
                _fetch(client, child, local_path(root, child), int(item["Size"]), str(item["ETag"]), report)
    except StorageError:
        raise
    except Exception as error:
        raise StorageError(f"{uri}: {explain(error)}") from None
    if not listed:
        raise StorageError(f"{uri}: no such object or prefix")
    folder = local_path(root, uri) if uri.key else (root / "s3" / uri.bucket).resolve()
    _drop_unlisted(folder, listed)
    return folder


def _drop_unlisted(folder: Path, listed: set[Path]) -> None:
    """Forget the cached files under a prefix whose objects are no longer in it: deleted or renamed in the
    bucket since, they must not be read as data. (Names starting with a dot are the cache's own.)"""
    for path in [p for p in folder.rglob("*") if p.is_file() and not p.name.startswith(".") and p not in listed]:
        _drop(path)
