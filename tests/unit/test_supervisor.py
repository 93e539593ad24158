"""`dreem` as a container's PID 1 runs the command as its child (dreem_trainer.supervisor): signals reach it,
its exit status comes back as a shell reports it, and a user or storage error of any of its processes is not
hidden by the SIGKILL Lightning's launcher sends the main rank when another rank fails."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from importlib.metadata import entry_points
from pathlib import Path

import pytest

from dreem_trainer.contract import EXIT_STORAGE_ERROR, EXIT_USER_ERROR
from dreem_trainer.supervisor import ENV_SUPERVISED, needs_supervisor, supervise
from tests.conftest import REPO_ROOT

PYTHON = sys.executable
ENV = os.environ | {"PYTHONPATH": str(REPO_ROOT / "trainer_image")}
SUPERVISE = "import sys; from dreem_trainer.supervisor import supervise; sys.exit(supervise(sys.argv[1:]))"
"""A supervisor in a process of its own, running the command its arguments give."""
FAILING_RANK = (
    "import sys; from dreem_trainer.supervisor import record_exit; record_exit(int(sys.argv[1])); "
    "sys.exit(int(sys.argv[1]))"
)
MAIN_RANK = (
    "import os, signal, subprocess, sys\n"
    f"subprocess.run([sys.executable, '-c', {FAILING_RANK!r}, sys.argv[1]], check=False)\n"
    "os.kill(os.getpid(), signal.SIGKILL)\n"
)
"""A main rank whose other local rank fails with status argv[1]; Lightning's launcher then SIGKILLs it."""


def test_only_a_first_process_not_already_supervised_needs_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV_SUPERVISED, raising=False)
    assert needs_supervisor(pid=1) and not needs_supervisor(pid=4242) and not needs_supervisor()
    monkeypatch.setenv(ENV_SUPERVISED, "1")
    assert not needs_supervisor(pid=1)  # the child, and the ranks it starts


@pytest.mark.parametrize(
    ("code", "status"),
    [
        ("raise SystemExit(0)", 0),
        ("raise SystemExit(3)", 3),
        ("import os, signal; os.kill(os.getpid(), signal.SIGKILL)", 137),
    ],
)
def test_the_childs_exit_status_as_a_shell_reports_it(code: str, status: int) -> None:
    assert supervise([PYTHON, "-c", code]) == status


def test_a_rank_s_user_error_is_not_hidden_by_the_sigkill_of_the_main_rank() -> None:
    """A rank fails on its shard's bad video (exit 2) and Lightning SIGKILLs the main rank: the pod must still
    exit 2, on which the operator fails the job rather than retry it (and 3, a storage error, likewise)."""
    for status in (EXIT_USER_ERROR, EXIT_STORAGE_ERROR):
        outcome = subprocess.run([PYTHON, "-c", SUPERVISE, PYTHON, "-c", MAIN_RANK, str(status)], env=ENV, check=False)
        assert outcome.returncode == status
    # Without a recorded error, the main rank's own status stands.
    assert supervise([PYTHON, "-c", "import os, signal; os.kill(os.getpid(), signal.SIGKILL)"]) == 137


def test_sigterm_reaches_the_child(tmp_path: Path) -> None:
    ready, stopped = tmp_path / "ready", tmp_path / "stopped"
    child = (
        "import pathlib, signal, sys, time\n"
        f"signal.signal(signal.SIGTERM, lambda *_: (pathlib.Path({str(stopped)!r}).touch(), sys.exit(143)))\n"
        f"pathlib.Path({str(ready)!r}).touch()\n"
        "time.sleep(60)\n"
    )
    supervisor = subprocess.Popen([PYTHON, "-c", SUPERVISE, PYTHON, "-c", child], env=ENV)
    deadline = time.monotonic() + 30
    while not ready.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    supervisor.send_signal(signal.SIGTERM)
    assert supervisor.wait(timeout=30) == 143
    assert stopped.exists()


def test_the_console_script_supervises_before_importing_the_cli() -> None:
    """The kernel drops a signal sent to PID 1 before it has a handler: `dreem` must reach the supervisor on the
    standard library alone, not after the CLI's imports (typer, pydantic, YAML), or a pod deleted while it starts
    waits out its whole grace period."""
    (script,) = entry_points(group="console_scripts", name="dreem")
    probe = f"import sys; before = set(sys.modules); import {script.module}; print(' '.join(set(sys.modules) - before))"
    loaded = subprocess.run([PYTHON, "-c", probe], env=ENV, capture_output=True, text=True, check=True).stdout.split()
    assert callable(script.load())
    loaded = [name for name in loaded if name.partition(".")[0] not in sys.stdlib_module_names]
    stdlib_only = [script.module, "dreem_trainer", "dreem_trainer.supervisor", "dreem_trainer.contract"]
    assert sorted(loaded) == sorted(stdlib_only)
