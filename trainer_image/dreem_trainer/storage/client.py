"""The one S3 client factory, and the start-up check that storage is usable at all."""

from __future__ import annotations

import logging
import uuid
from functools import cache
from typing import Any

from dreem_trainer.config.paths import S3Uri
from dreem_trainer.config.run import StorageConfig
from dreem_trainer.contract import UserError

log = logging.getLogger(__name__)


class StorageError(RuntimeError):
    """Storage that cannot be used: the URI and the cause, never the credentials."""


@cache
def _client(
    endpoint_url: str | None, region: str | None, addressing_style: str, retry_mode: str, max_attempts: int
) -> Any:
    import boto3
    from botocore.config import Config

    settings = Config(
        region_name=region,
        retries={"mode": retry_mode, "max_attempts": max_attempts},
        # Over plain HTTP (in-cluster MinIO) botocore would SHA-256 every uploaded byte to sign it: about
        # a second of CPU per checkpoint, taken from training. The CRC32 checksum botocore sends with
        # each upload still guards integrity, as it does over HTTPS where S3 skips body signing anyway.
        s3={"addressing_style": addressing_style, "payload_signing_enabled": False},
        connect_timeout=10,
        read_timeout=60,
    )
    # endpoint_url=None lets boto3 take AWS_ENDPOINT_URL / AWS_ENDPOINT_URL_S3, then AWS itself.
    return boto3.session.Session().client("s3", endpoint_url=endpoint_url, config=settings)


def s3_client(storage: StorageConfig) -> Any:
    """A boto3 S3 client for these settings (cached: boto3 clients are thread-safe). An endpoint botocore
    cannot use is the user's to fix: named, as storage.endpoint_url or the variable it came from."""
    try:
        return _client(
            storage.endpoint_url, storage.region, storage.addressing_style, storage.retry_mode, storage.max_attempts
        )
    except ValueError as error:  # botocore: "Invalid endpoint: ..."
        where = "storage.endpoint_url" if storage.endpoint_url else "AWS_ENDPOINT_URL (the environment)"
        raise UserError(f"{where}: {error}; an endpoint is a URL such as http://minio.minio:9000") from None


def error_code(error: BaseException) -> str:
    """The store's code for a failed request ("NoSuchKey", "AccessDenied", "404"); "" for any other error."""
    response = getattr(error, "response", None) or {}
    return str(response.get("Error", {}).get("Code", ""))


def http_status(error: BaseException) -> int:
    """The HTTP status of a failed request to the store; 0 for any other error."""
    response = getattr(error, "response", None) or {}
    return int(response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))


def not_found(error: BaseException) -> bool:
    """The object (or key) asked for does not exist."""
    return error_code(error) in ("404", "NoSuchKey", "NotFound")


REFUSAL_MEANINGS = {
    "NoSuchBucket": "the bucket does not exist",
    "403": "access denied: check the credentials and the bucket policy",
    "AccessDenied": "access denied: check the credentials and the bucket policy",
    "InvalidAccessKeyId": "the access key is not known to this endpoint",
    "SignatureDoesNotMatch": "the secret key is wrong",
}
"""Error codes of a store that will not take this run's requests, however often they are tried, in words."""


def refused(error: BaseException) -> bool:
    """The store refuses this run (credentials, bucket policy, a bucket gone): trying again cannot help."""
    return error_code(error) in REFUSAL_MEANINGS


def explain(error: Exception) -> str:
    """The cause of a botocore error in words, without request details that could hold secrets."""
    from botocore.exceptions import ClientError, EndpointConnectionError, NoCredentialsError

    if isinstance(error, ClientError):
        code = error_code(error) or "?"
        meanings = REFUSAL_MEANINGS | {"404": "the bucket does not exist"}  # from head_bucket
        return meanings.get(code, f"{code}: {error.response.get('Error', {}).get('Message', '')}".strip())
    if isinstance(error, EndpointConnectionError):
        return f"cannot reach the endpoint ({error.kwargs.get('endpoint_url', '?')})"
    if isinstance(error, NoCredentialsError):
        return "no credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or a profile)"
    return f"{type(error).__name__}: {error}"


def check_access(storage: StorageConfig, uri: S3Uri) -> None:
    """Fail fast, before any training, when the bucket is missing, unreachable or not ours."""
    client = s3_client(storage)
    try:
        client.head_bucket(Bucket=uri.bucket)
        client.list_objects_v2(Bucket=uri.bucket, Prefix=uri.prefix, MaxKeys=1)
    except Exception as error:
        raise StorageError(f"{uri}: {explain(error)}") from None


def check_write(storage: StorageConfig, uri: S3Uri) -> None:
    """Fail fast, before any training, when outputs could not be stored under `uri`: credentials that may
    read and list but not write would otherwise train for hours with nothing stored. Writes and deletes an
    empty marker object; a refused delete only warns (pruned checkpoints then stay in the bucket)."""
    client = s3_client(storage)
    marker = uri.join(f".dreem-write-check-{uuid.uuid4().hex}")
    try:
        client.put_object(Bucket=marker.bucket, Key=marker.key, Body=b"")
    except Exception as error:
        raise StorageError(f"{uri}: cannot store outputs there ({explain(error)})") from None
    try:
        client.delete_object(Bucket=marker.bucket, Key=marker.key)
    except Exception as error:
        log.warning(
            "%s: cannot delete there (%s): checkpoints save_top_k prunes stay in the bucket", uri, explain(error)
        )
