"""The operator as its own process (`python -m dreem_operator`), pointed at the emulated cluster."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from tests.conftest import free_port


class OperatorProcess:
    def __init__(self, kubeconfig: Path, log: Path, **settings: str) -> None:
        self.kubeconfig, self.log = kubeconfig, log
        self.metrics_port, self.liveness_port = free_port(), free_port()
        self.settings = {
            "DREEM_OPERATOR_METRICS_PORT": str(self.metrics_port),
            "DREEM_OPERATOR_LIVENESS_PORT": str(self.liveness_port),
            "DREEM_OPERATOR_RESYNC_SECONDS": "1",
        } | {f"DREEM_OPERATOR_{key.upper()}": value for key, value in settings.items()}
        self.process: subprocess.Popen[bytes] | None = None

    def command(self, *args: str) -> tuple[list[str], dict[str, str]]:
        """What to start, and its environment: the operator of the Python running the tests."""
        env = {key: value for key, value in os.environ.items() if not key.startswith("DREEM_OPERATOR_")}
        env |= self.settings | {"KUBECONFIG": str(self.kubeconfig)}
        return [sys.executable, "-m", "dreem_operator", *args], env

    def start(self, *args: str) -> OperatorProcess:
        command, env = self.command(*args)
        with self.log.open("ab") as handle:
            self.process = subprocess.Popen(command, env=env, stdout=handle, stderr=subprocess.STDOUT)
        self.wait_healthy()
        return self

    def wait_healthy(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process is not None and self.process.poll() is None, self.log.read_text()[-3000:]
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.liveness_port}/healthz", timeout=2) as reply:
                    if reply.status == 200:
                        return
            except OSError:
                time.sleep(0.2)
        raise TimeoutError(f"the operator did not become healthy:\n{self.log.read_text()[-3000:]}")

    def metrics(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5) as reply:
            return str(reply.read().decode())

    def kill(self) -> None:
        """SIGKILL: no cleanup handlers, as when a node dies under the operator."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(30)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.kill()
