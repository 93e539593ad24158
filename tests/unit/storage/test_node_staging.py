"""One staging per node (storage.node): local rank 0 stages, the node's other processes wait for its result and
fail, naming the cause, when it fails or dies, instead of waiting forever."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from dreem_trainer.storage.client import StorageError
from dreem_trainer.storage.node import ENV_STAGE_ID, ENV_STAGED_BY, NodeStaging, StagedFiles


def test_waiters_get_what_rank_zero_staged(tmp_path: Path) -> None:
    with NodeStaging(tmp_path, "start-1").lead() as staged:
        staged.local["s3://b/flies"] = str(tmp_path / "s3" / "b" / "flies")
        staged.resumed_from = "s3://b/models/last.ckpt"
    assert NodeStaging(tmp_path, "start-1").wait() == staged
    # Another start's waiter does not take it.
    with pytest.raises(StorageError, match="did not begin staging"):
        NodeStaging(tmp_path, "start-2", poll_s=0.01, start_timeout_s=0.05).wait()


def test_a_failed_rank_zero_fails_its_waiters_with_its_reason(tmp_path: Path) -> None:
    with pytest.raises(StorageError), NodeStaging(tmp_path, "start").lead():
        raise StorageError("s3://nowhere/flies: the bucket does not exist")
    with pytest.raises(StorageError, match=r"local rank 0 could not stage .*s3://nowhere/flies: the bucket does not"):
        NodeStaging(tmp_path, "start").wait()


def test_waiters_fail_at_once_when_rank_zero_dies_while_staging(tmp_path: Path) -> None:
    leader = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from pathlib import Path; from dreem_trainer.storage.node import NodeStaging\n"
            "with NodeStaging(Path(sys.argv[1]), 'start').lead():\n    print('staging', flush=True); time.sleep(600)",
            str(tmp_path),
        ],
        stdout=subprocess.PIPE,
        text=True,
        env=os.environ | {"PYTHONPATH": os.pathsep.join(sys.path)},
    )
    try:
        assert leader.stdout is not None and leader.stdout.readline() == "staging\n"
        errors: list[BaseException] = []
        result: list[StagedFiles] = []

        def wait() -> None:
            try:
                result.append(NodeStaging(tmp_path, "start", poll_s=0.02).wait())
            except BaseException as error:
                errors.append(error)

        waiter = threading.Thread(target=wait)
        waiter.start()
        time.sleep(0.2)  # not a timing assertion: only so the waiter is waiting, not yet started, when rank 0 dies
        assert waiter.is_alive(), (errors, result)  # rank 0 holds the lock: the waiter waits
        leader.send_signal(signal.SIGKILL)
        waiter.join(timeout=60)
        assert not waiter.is_alive()
        assert not result and len(errors) == 1
        assert isinstance(errors[0], StorageError) and "stopped staging this node's data without a result" in str(
            errors[0]
        )
    finally:
        leader.kill()
        leader.wait()


def test_the_stage_id_is_made_by_rank_zero_and_taken_only_from_the_parent() -> None:
    root = Path("/nonexistent")
    rank0: dict[str, str] = {}
    node, leads = NodeStaging.from_environment(root, rank0)
    assert leads and node is not None and rank0[ENV_STAGED_BY] == node.stage_id
    assert node.stage_id.startswith(f"{os.getpid()}-")
    again, _ = NodeStaging.from_environment(root, rank0)
    assert again is not None and again.stage_id != node.stage_id  # each start its own id, never a leftover one

    # The processes Lightning starts inherit the id; they take it only from their parent.
    from_parent = {"LOCAL_RANK": "1", ENV_STAGED_BY: f"{os.getppid()}-abc"}
    child, leads = NodeStaging.from_environment(root, from_parent)
    assert not leads and child is not None and child.stage_id == f"{os.getppid()}-abc"
    leaked = {"LOCAL_RANK": "1", ENV_STAGED_BY: f"{os.getpid()}-abc"}
    assert NodeStaging.from_environment(root, leaked) == (None, False)

    # A launcher's id, shared by the processes it starts.
    given, leads = NodeStaging.from_environment(root, {"LOCAL_RANK": "3", ENV_STAGE_ID: "job-7_a"})
    assert not leads and given is not None and given.stage_id == "job-7_a"
    with pytest.raises(StorageError, match=re.escape("DREEM_STAGE_ID='../up'")):
        NodeStaging.from_environment(root, {ENV_STAGE_ID: "../up"})


def test_a_stage_id_given_again_never_hands_waiters_the_earlier_result(tmp_path: Path) -> None:
    with NodeStaging(tmp_path, "given").lead() as earlier:
        earlier.resumed_from = "s3://b/models/epoch=1.ckpt"
    got: list[StagedFiles] = []
    with NodeStaging(tmp_path, "given").lead() as now:
        waiter = threading.Thread(target=lambda: got.append(NodeStaging(tmp_path, "given", poll_s=0.02).wait()))
        waiter.start()
        time.sleep(0.2)  # not a timing assertion: only so the waiter looks while rank 0 is still staging
        assert not got
        now.resumed_from = "s3://b/models/epoch=2.ckpt"
    waiter.join(timeout=60)
    assert [staged.resumed_from for staged in got] == ["s3://b/models/epoch=2.ckpt"]
