"""Buckets on the moto S3 server for tests: a fresh one per test, optionally holding the two-fly clip."""

from __future__ import annotations

import uuid

import boto3

from tests.conftest import DEMO_DATA


def bucket(endpoint: str, with_flies: bool = False) -> str:
    name = f"b-{uuid.uuid4().hex[:12]}"
    client = boto3.client("s3", endpoint_url=endpoint)
    client.create_bucket(Bucket=name)
    if with_flies:
        for suffix in (".slp", ".mp4"):
            client.upload_file(str(DEMO_DATA / f"two_flies{suffix}"), name, f"flies/two_flies{suffix}")
    return name


def keys(endpoint: str, name: str, prefix: str = "") -> list[str]:
    client = boto3.client("s3", endpoint_url=endpoint)
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=name, Prefix=prefix)
    return sorted(item["Key"] for page in pages for item in page.get("Contents", []))
