"""Paths and helpers shared by every test."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from tests.s3_helpers import RecordingS3

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED = REPO_ROOT.parent / "shared"
SPEC_DOCUMENT = SHARED / "spec" / "training-configuration.md"
DEMO_DATA = REPO_ROOT / "examples" / "demo" / "data"
TEST_DATA = Path(__file__).resolve().parent / "data"


@pytest.fixture
def write_yaml(tmp_path: Path):  # type: ignore[no-untyped-def]
    """Write a YAML text to a fresh file and return its path."""

    def write(text: str, name: str = "config.yaml") -> Path:
        path = tmp_path / name
        path.write_text(text)
        return path

    return write


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """moto's S3 server over real HTTP on 127.0.0.1, with throwaway credentials in the environment."""
    from moto.server import ThreadedMotoServer

    saved = {key: os.environ.get(key) for key in S3_ENV}
    os.environ.update(S3_ENV)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture
def recording_s3(s3_endpoint: str) -> Iterator[RecordingS3]:
    """A moto S3 server of this test's own that logs the requests it serves (the credentials are s3_endpoint's)."""
    from tests.s3_helpers import RecordingS3

    server = RecordingS3()
    yield server
    server.stop()


S3_ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing-secret", "AWS_DEFAULT_REGION": "us-east-1"}


def free_port() -> int:
    """A port free now, for a server the test is about to start (another process could take it first)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="session")
def refused_port() -> Iterator[int]:
    """A port where nothing listens, for the whole session: bound and never listening, so every connection is
    refused and no other process can start listening there, as it could on a port `free_port` let go."""
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        yield int(held.getsockname()[1])


def wait_for_port(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout} s")


def dreem_executable() -> str:
    """The `dreem` console script of the environment running the tests."""
    found = shutil.which("dreem", path=str(Path(sys.executable).parent))
    assert found is not None, "dreem is not installed in this environment"
    return found


def outputs_of(processes: list[subprocess.Popen[str]], timeout: float) -> list[tuple[str, str]]:
    """Each process's (stdout, stderr) once it has ended ("" for a stream not piped). If one does not end
    within `timeout` seconds, all are killed: a DDP rank left waiting on a dead peer would otherwise hold a
    core for the rest of the suite."""
    try:
        ended = [process.communicate(timeout=timeout) for process in processes]
        return [(stdout or "", stderr or "") for stdout, stderr in ended]
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()


def start_training(config: Path, cwd: Path, env: dict[str, str]) -> subprocess.Popen[str]:
    """`dreem train --config CONFIG` as its own process, stdout and stderr together in `.stdout`."""
    return subprocess.Popen(
        [dreem_executable(), "train", "--config", str(config)],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
