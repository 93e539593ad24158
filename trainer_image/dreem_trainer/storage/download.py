"""Downloads into a local cache: unchanged files (same size and ETag) are never fetched twice, and a
killed download never leaves a file that looks complete."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dreem_trainer.config.paths import S3Uri
from dreem_trainer.config.run import StorageConfig
from dreem_trainer.contract import ENV_CACHE_DIR
from dreem_trainer.storage.client import StorageError, explain, s3_client

ETAG_SUFFIX = ".dreem-etag"


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


def _fresh(path: Path, size: int, etag: str) -> bool:
    sidecar = _sidecar(path)
    return path.is_file() and path.stat().st_size == size and sidecar.is_file() and sidecar.read_text() == etag


def _fetch(client: Any, uri: S3Uri, target: Path, size: int, etag: str, report: DownloadReport) -> None:
    if _fresh(target, size, etag):
        report.skipped += 1
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.{os.getpid()}.partial")
    try:
        client.download_file(uri.bucket, uri.key, str(partial))
        os.replace(partial, target)
    except Exception as error:
        partial.unlink(missing_ok=True)
        raise StorageError(f"{uri}: download failed: {explain(error)}") from None
    _sidecar(target).write_text(etag)
    report.fetched += 1
    report.bytes_fetched += size


def download(storage: StorageConfig, text: str, report: DownloadReport | None = None) -> Path:
    """Mirror an object, or every object under a prefix, into the cache; returns the local path."""
    uri = S3Uri.parse(text)
    report = report if report is not None else DownloadReport()
    client = s3_client(storage)
    root = cache_root(storage)
    try:
        head = client.head_object(Bucket=uri.bucket, Key=uri.key) if uri.key else None
    except Exception as error:
        code = getattr(error, "response", {}).get("Error", {}).get("Code")
        if code not in ("404", "NoSuchKey", "NotFound"):
            raise StorageError(f"{uri}: {explain(error)}") from None
        head = None
    if head is not None:
        target = local_path(root, uri)
        _fetch(client, uri, target, int(head["ContentLength"]), str(head["ETag"]), report)
        return target
    found = False
    try:
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=uri.bucket, Prefix=uri.prefix):
            for item in page.get("Contents", []):
                found = True
                child = S3Uri(uri.bucket, item["Key"])
                _fetch(client, child, local_path(root, child), int(item["Size"]), str(item["ETag"]), report)
    except StorageError:
        raise
    except Exception as error:
        raise StorageError(f"{uri}: {explain(error)}") from None
    if not found:
        raise StorageError(f"{uri}: no such object or prefix")
    return local_path(root, uri) if uri.key else root / "s3" / uri.bucket
