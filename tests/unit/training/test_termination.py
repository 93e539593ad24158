"""The gate between checkpoint writes and the SIGTERM upload."""

from __future__ import annotations

import threading
import time

from dreem_trainer.training.termination import CheckpointGate


def test_closing_waits_for_the_write_in_progress_and_stops_later_ones() -> None:
    gate = CheckpointGate()
    written: list[str] = []
    inside = threading.Event()

    def write(name: str, hold_s: float) -> None:
        with gate.open() as allowed:
            inside.set()
            if allowed:
                time.sleep(hold_s)
                written.append(name)

    first = threading.Thread(target=write, args=("epoch=3", 0.3))
    first.start()
    inside.wait()
    gate.close(timeout_s=5.0)
    assert written == ["epoch=3"]  # the upload that follows sees the finished file

    later = threading.Thread(target=write, args=("epoch=4", 0.0), daemon=True)
    later.start()
    later.join(timeout=0.5)
    assert later.is_alive() and written == ["epoch=3"]  # held at the gate until the process exits
    first.join()


def test_a_write_stuck_past_the_wait_is_not_waited_for_and_nothing_after_it_is_written() -> None:
    gate = CheckpointGate()
    release = threading.Event()
    entered = threading.Event()
    outcome: list[bool] = []

    def stuck_write() -> None:  # a DDP save waiting on a peer that is gone
        with gate.open() as allowed:
            entered.set()
            outcome.append(allowed)
            release.wait()

    writer = threading.Thread(target=stuck_write)
    writer.start()
    entered.wait()
    started = time.monotonic()
    gate.close(timeout_s=0.2)
    assert 0.2 <= time.monotonic() - started < 2.0
    release.set()
    writer.join()
    with gate.open() as allowed:
        outcome.append(allowed)
    assert outcome == [True, False]
