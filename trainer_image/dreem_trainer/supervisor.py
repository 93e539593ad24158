"""`dreem` as a container's first process: it runs the command as its child and only waits, forwards signals
and reports the exit status.

The kernel ignores a signal a container's PID 1 has no handler for, SIGKILL sent from inside the container
included. Lightning's DDP launcher ends the main rank with SIGKILL when another local rank fails; as PID 1
the main rank lived on, blocked in a collective until the process group's timeout (30 min), with every GPU
of the gang held, and a SIGTERM before training started waited for the pod's whole grace period. Run as a
child, the main rank gets the default actions, and the exit status of a rank that failed with a user or a
storage error (which Lightning's SIGKILL would hide) still reaches the operator through EXIT_RECORD.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from dreem_trainer.contract import EXIT_STORAGE_ERROR, EXIT_USER_ERROR

ENV_SUPERVISED = "DREEM_SUPERVISED"
"""Set in the child's environment: the child (and the ranks it starts) never supervise again."""
ENV_EXIT_RECORD = "DREEM_EXIT_RECORD"
"""A file each process of the command appends its user or storage exit status to (`record_exit`)."""
RECORDED_EXITS = (EXIT_USER_ERROR, EXIT_STORAGE_ERROR)
FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2)


def needs_supervisor(pid: int | None = None) -> bool:
    """Whether this process is a container's first (PID 1) and no supervisor runs it already."""
    return (os.getpid() if pid is None else pid) == 1 and ENV_SUPERVISED not in os.environ


def record_exit(status: int) -> None:
    """Note a user or storage exit status for the supervisor, when one runs this process."""
    path = os.environ.get(ENV_EXIT_RECORD)
    if path and status in RECORDED_EXITS:
        try:
            with open(path, "a") as record:
                record.write(f"{status}\n")
        except OSError:
            pass  # the supervisor then reports the main rank's own status


def supervise(command: Sequence[str]) -> int:
    """Run `command` as a child, passing it the signals this process gets, and return its exit status as a
    shell reports it (128 + N when killed by signal N); a user or storage error a process of the command
    recorded wins over a status of the main rank that says nothing (killed, or a plain failure)."""
    forwarding = _Forwarding()
    previous = {number: signal.signal(number, forwarding.received) for number in FORWARDED}
    try:
        with tempfile.TemporaryDirectory(prefix="dreem-supervisor-") as folder:
            record = Path(folder) / "exits"
            child = subprocess.Popen(
                list(command), env=os.environ | {ENV_SUPERVISED: "1", ENV_EXIT_RECORD: str(record)}
            )
            forwarding.started(child.pid)
            returned = _reap_until(child.pid, forwarding)
            recorded = [int(line) for line in record.read_text().split()] if record.exists() else []
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
    if returned not in (0, *RECORDED_EXITS) and recorded:
        return recorded[0]
    return returned


class _Forwarding:
    """Signals to the child: held until it exists (one may come while it starts), never sent once it is
    reaped (its PID may be another process's by then)."""

    def __init__(self) -> None:
        self.pid: int | None = None
        self.held: list[int] = []
        self.reaped = False

    def received(self, number: int, _frame: object) -> None:
        if self.pid is None:
            self.held.append(number)
        elif not self.reaped:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, number)

    def started(self, pid: int) -> None:
        self.pid = pid
        for number in self.held:
            self.received(number, None)
        self.held.clear()


def _reap_until(pid: int, forwarding: _Forwarding) -> int:
    """Wait for `pid`, reaping the orphans a first process inherits (a rank's loader workers) meanwhile."""
    while True:
        try:
            found, status = os.waitpid(-1, 0)
        except InterruptedError:
            continue
        except ChildProcessError:
            return 1  # nothing left to wait for: cannot happen while `pid` is our child
        if found == pid:
            forwarding.reaped = True
            return os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else 128 + os.WTERMSIG(status)


def main() -> None:
    """The supervised command: this same `dreem`, with the same arguments, as a child."""
    sys.exit(supervise([sys.executable, "-m", "dreem_trainer", *sys.argv[1:]]))
