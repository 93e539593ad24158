"""Buckets on the moto S3 server for tests: a fresh one per test, optionally holding the two-fly clip."""

from __future__ import annotations

import threading
import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

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


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    """Path-style: /bucket/key, unquoted."""
    query: str
    range: str | None
    agent: str


class RecordingS3:
    """A moto S3 server of its own that logs every request it serves: what the code under test really asked
    the store for (the downloads it made, the listings it ran), not what it reports about itself."""

    def __init__(self) -> None:
        from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
        from werkzeug.serving import make_server

        self.requests: list[Request] = []
        moto = DomainDispatcherApplication(create_backend_app)

        def app(environ: dict[str, Any], start_response: Any) -> Any:
            self.requests.append(
                Request(
                    environ["REQUEST_METHOD"],
                    unquote(environ.get("PATH_INFO", "")),
                    environ.get("QUERY_STRING", ""),
                    environ.get("HTTP_RANGE"),
                    environ.get("HTTP_USER_AGENT", ""),
                )
            )
            return moto(environ, start_response)

        self.server = make_server("127.0.0.1", 0, app, threaded=True, request_handler=MotoRequestHandler)
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.thread.join()

    def gets(self, bucket: str, key: str) -> list[Request]:
        """The object reads of s3://bucket/key (downloads, whole or by range)."""
        return [r for r in self.requests if r.method == "GET" and r.path == f"/{bucket}/{key}" and not r.query]

    def made_by(self, app_id: str) -> list[Request]:
        """The requests of the processes whose boto3 clients name this app (AWS_SDK_UA_APP_ID)."""
        return [r for r in self.requests if f"app/{app_id}" in r.agent.split()]
