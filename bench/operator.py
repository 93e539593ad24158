"""Operator figures on the API emulator, each through the real operator processes over HTTP:

- create to pods: from a DreemTrainingJob's creation to the creation of its last pod, for 1 job at a time
  and for N jobs created at once (p50, p95, max), and the API requests the operator made per job;
- failover: two replicas with the chart's default leader election (lease 15 s, renew deadline 10 s, retry
  2 s); the leader is killed (SIGKILL, a lost node) or stopped (SIGTERM, a rolling update) and a job is
  created at once: the time until the other replica has created its pods;
- memory: the operator's RSS while it runs jobs, with no other pods in its namespace and again after
  10,000 foreign pods appeared there and each changed once (a busy cluster's churn).

Run: `.venv/bin/python -m bench.operator [--jobs 200] [--failovers 3] [--foreign-pods 10000] [--profile DIR]`.
With --profile (needs `pip install py-spy`), py-spy samples the benchmark process (which serves the
emulator) and the operator during the N-job burst, and the summary says how busy each one's threads were
and where they spent it: whether the emulator or the operator is the limit.

The emulator records when each object was created, so latencies are the operator's reaction (watch, read,
decide, create), not the client's. There is no reference figure: the reference implementation has no
operator. Timings depend on what else the machine runs: say so beside them.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from tests.k8s.emulator import EmulatedCluster
from tests.k8s.harness import Kubectl, cluster_with_crd, job_manifest, minimal_spec
from tests.k8s.operator_process import OperatorProcess

NODES = 2
CHART_LEASE = {"lease_duration_seconds": "15", "renew_deadline_seconds": "10", "retry_period_seconds": "2"}
"""The chart's default leader-election timing (values.yaml leaderElection)."""


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def summary(latencies: list[float]) -> dict[str, float]:
    return {
        "p50_s": round(statistics.median(latencies), 3),
        "p95_s": round(percentile(latencies, 0.95), 3),
        "max_s": round(max(latencies), 3),
    }


def memory_gib(pid: int) -> dict[str, float]:
    """The process's resident set now (VmRSS) and at its peak so far (VmHWM), in GiB."""
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return {key: round(int(fields[key].split()[0]) / 2**20, 3) for key in ("VmRSS", "VmHWM")}


def cpu_seconds(pid: int) -> float:
    """CPU time (user and system) the process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def pods_of(cluster: EmulatedCluster, prefix: str) -> dict[str, float]:
    """When the last pod of each job named `prefix-*` was created."""
    last: dict[str, float] = {}
    for when, plural, _, name in list(cluster.emulator.created_at):
        if plural == "pods" and name.startswith(f"{prefix}-"):
            job = name.rsplit("-", 2)[0]
            last[job] = max(last.get(job, 0.0), when)
    return last


def wait_for_pods(cluster: EmulatedCluster, prefix: str, jobs: int, timeout: float = 600) -> dict[str, float]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done = pods_of(cluster, prefix)
        pods = sum(
            1
            for _, plural, _, name in list(cluster.emulator.created_at)
            if plural == "pods" and name.startswith(f"{prefix}-")
        )
        if len(done) >= jobs and pods >= jobs * NODES:
            return done
        time.sleep(0.05)
    raise TimeoutError(f"{prefix}: not all pods were created")


def create_to_pods(cluster: EmulatedCluster, kubectl: Kubectl, prefix: str, count: int) -> list[float]:
    names = [f"{prefix}-{index}" for index in range(count)]
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(kubectl.apply_job, (job_manifest(name, minimal_spec(name, NODES)) for name in names)))
    last_pod = wait_for_pods(cluster, prefix, count)
    created = {name: when for when, plural, _, name in cluster.emulator.created_at if plural == "dreemtrainingjobs"}
    return [last_pod[name] - created[name] for name in names]


class Profile:
    """py-spy sampling one process's threads while they run (not while they wait), until stopped."""

    RATE = 100

    def __init__(self, pid: int, out: Path) -> None:
        spy = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or shutil.which("py-spy")
        if spy is None:
            raise SystemExit("--profile needs py-spy: .venv/bin/pip install py-spy")
        self.out, self.started = out, time.monotonic()
        record = ["record", "-p", str(pid), "-r", str(self.RATE), "-f", "raw", "-o", str(out), "--threads"]
        self.process = subprocess.Popen(
            [spy, *record, "--nonblocking"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )

    def stop(self) -> dict[str, Any]:
        seconds = time.monotonic() - self.started
        self.process.send_signal(signal.SIGINT)
        self.process.wait(60)
        return profile_summary(self.out, seconds * self.RATE)


def profile_summary(raw: Path, possible: float, top: int = 6) -> dict[str, Any]:
    """Per kind of thread: how many of them py-spy found active on average (1.0 = one thread all the time,
    which for the emulator's single event loop means saturated) and the functions they were in most.
    py-spy counts a thread blocked reading a socket as active: `SocketIO.readinto` is an operator thread
    waiting for the API server's answer, and `_SelectorSocketTransport.write` an event loop that sent an
    answer and waits to be scheduled again."""
    frames_by_role: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    for line in raw.read_text().splitlines():
        sample = re.fullmatch(r"(.*?);? (\d+)", line)
        if sample is None:
            continue  # a thread caught with no Python frame
        frames = sample[1].split(";")
        frames_by_role[thread_role(frames)][frames[-1]] += int(sample[2])
    return {
        role: {
            "threads_active": round(sum(frames.values()) / possible, 2),
            "top_frames": {frame: round(n / possible, 3) for frame, n in frames.most_common(top)},
        }
        for role, frames in sorted(frames_by_role.items(), key=lambda item: -sum(item[1].values()))
    }


def thread_role(frames: list[str]) -> str:
    text = ";".join(frames)
    for marker, role in (
        ("EmulatedCluster._serve", "emulator event loop"),
        ("Reconciler.", "operator reconcile workers"),
        ("LeaderElector._run", "operator leader election"),
        ("kopf", "operator kopf event loop"),
        ("bench/operator.py", "benchmark client"),
    ):
        if marker in text:
            return role
    return "other"


def chart_operator(cluster: EmulatedCluster, workdir: Path, identity: str = "operator-0") -> OperatorProcess:
    """An operator process as the chart runs it (its lease timing), resyncing seldom so that only the watch
    events the benchmark causes make it work."""
    return OperatorProcess(
        cluster.kubeconfig, workdir / f"{identity}.log", identity=identity, resync_seconds="30", **CHART_LEASE
    )


def burst(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    with cluster_with_crd(workdir) as cluster:
        operator = chart_operator(cluster, workdir).start()
        kubectl = Kubectl(cluster.kubeconfig)
        try:
            singles = [create_to_pods(cluster, kubectl, f"one{index}", 1)[0] for index in range(args.singles)]
            served_before = collections.Counter(cluster.emulator.served)
            assert operator.process is not None
            profiles = [
                Profile(pid, Path(args.profile) / f"{name}.txt")
                for name, pid in (("benchmark-and-emulator", os.getpid()), ("operator", operator.process.pid))
                if args.profile
            ]
            pids = {"benchmark_and_emulator": os.getpid(), "operator": operator.process.pid}
            cpu_before = {name: cpu_seconds(pid) for name, pid in pids.items()}
            started = time.monotonic()
            latencies = create_to_pods(cluster, kubectl, "many", args.jobs)
            wall = time.monotonic() - started
            cpu = {name: round(cpu_seconds(pid) - cpu_before[name], 2) for name, pid in pids.items()}
            profile = {profiler.out.stem: profiler.stop() for profiler in profiles}
            served = collections.Counter(cluster.emulator.served)
            served.subtract(served_before)
        finally:
            operator.stop()
    # What the operator asked for during the burst: all but the client's creation of the jobs.
    by_operator = {
        key: count for key, count in served.items() if count and not key.startswith("CREATE dreemtrainingjobs")
    }
    result: dict[str, Any] = {
        "one_job": summary(singles) | {"runs": args.singles},
        # CPU seconds each process used during the burst: what the burst costs, whatever else the machine runs.
        f"{args.jobs}_jobs": summary(latencies) | {"wall_s": round(wall, 2), "cpu_s": cpu},
        "operator_requests_per_job": round(
            sum(count for key, count in by_operator.items() if "leases" not in key) / args.jobs, 2
        ),
        "operator_requests": dict(sorted(by_operator.items())),
    }
    if profile:
        result["profile"] = profile
    return result


def leading(operator: OperatorProcess) -> bool:
    try:
        return bool(re.search(r"^dreem_leader 1\.0$", operator.metrics(), re.MULTILINE))
    except OSError:
        return False


def wait_until(check: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError("timed out")
        time.sleep(0.05)


def failovers(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    """Alternating leaders: each run ends the leader one way, times the takeover, and restarts the ended
    replica as the new standby."""
    times: dict[str, list[float]] = {"killed": [], "stopped": []}
    with cluster_with_crd(workdir) as cluster:
        replicas = [chart_operator(cluster, workdir, name) for name in ("operator-a", "operator-b")]
        kubectl = Kubectl(cluster.kubeconfig)
        try:
            replicas[0].start()
            wait_until(lambda: leading(replicas[0]), timeout=60)
            replicas[1].start()
            for run, how in enumerate(["killed"] * args.failovers + ["stopped"] * args.failovers):
                leader, standby = (replicas[0], replicas[1]) if leading(replicas[0]) else (replicas[1], replicas[0])
                time.sleep(5)  # the standby has read the Lease and seen it renewed, as in a long-running cluster
                ended = time.monotonic()
                if how == "killed":
                    leader.kill()
                else:
                    leader.stop()
                name = f"failover{run}"
                kubectl.apply_job(job_manifest(name, minimal_spec(name, NODES)))
                wait_for_pods(cluster, name, 1, timeout=120)
                times[how].append(pods_of(cluster, name)[name] - ended)
                assert leading(standby)
                leader.start()  # the ended replica comes back as the standby
        finally:
            for replica in replicas:
                replica.stop()
    lease = {key.removesuffix("_seconds"): float(value) for key, value in CHART_LEASE.items()}
    return {
        "lease_timing_s": lease,
        "leader_killed_s": [round(t, 2) for t in times["killed"]],
        "leader_stopped_s": [round(t, 2) for t in times["stopped"]],
    }


def foreign_pod(index: int) -> dict[str, Any]:
    """A pod of some other workload: labelled, with a spec and status of a plausible size."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": f"web-{index}",
            "namespace": "default",
            "labels": {"app": "web", "pod-template-hash": "5d8f7c9b4"},
            "annotations": {"checksum/config": "0" * 64},
        },
        "spec": {
            "containers": [
                {
                    "name": "web",
                    "image": "nginx:1.27",
                    "ports": [{"containerPort": 80}],
                    "resources": {"requests": {"cpu": "10m"}},
                }
            ],
            "nodeName": f"node-{index % 50}",
        },
        "status": {"phase": "Running", "podIP": f"10.0.{index // 250}.{index % 250}"},
    }


def memory(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    with cluster_with_crd(workdir) as cluster:
        operator = chart_operator(cluster, workdir).start()
        kubectl = Kubectl(cluster.kubeconfig)
        try:
            assert operator.process is not None
            create_to_pods(cluster, kubectl, "before", 20)
            time.sleep(2)
            quiet = memory_gib(operator.process.pid)

            def in_loop(coroutine: Any) -> None:
                asyncio.run_coroutine_threadsafe(coroutine, cluster.loop).result(600)

            for start in range(0, args.foreign_pods, 500):
                in_loop(
                    cluster.emulator.seed(
                        "v1/pods", [foreign_pod(i) for i in range(start, min(start + 500, args.foreign_pods))]
                    )
                )
            change = {"status": {"phase": "Running", "hostIP": "10.1.0.1"}}  # as a kubelet's status update would
            for start in range(0, args.foreign_pods, 500):
                names = [f"web-{i}" for i in range(start, min(start + 500, args.foreign_pods))]
                in_loop(cluster.emulator.touch("v1/pods", "default", names, change))
            time.sleep(5)
            create_to_pods(cluster, kubectl, "after", 20)
            time.sleep(2)
            busy = memory_gib(operator.process.pid)
        finally:
            operator.stop()
    return {
        "foreign_pods": args.foreign_pods,
        "operator_rss_gib_without_foreign_pods": quiet["VmRSS"],
        "operator_rss_gib_with_foreign_pods": busy["VmRSS"],
        "operator_peak_rss_gib": busy["VmHWM"],
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--singles", type=int, default=10, help="1-job runs, one after another")
    parser.add_argument("--failovers", type=int, default=3, help="runs of each kind of failover (0: none)")
    parser.add_argument("--foreign-pods", type=int, default=10_000, help="other pods for the memory figure (0: none)")
    parser.add_argument("--profile", default="", help="folder for py-spy profiles of the N-job burst")
    args = parser.parse_args()
    if args.profile:
        Path(args.profile).mkdir(parents=True, exist_ok=True)
    result: dict[str, Any] = {"nodes_per_job": NODES}
    with tempfile.TemporaryDirectory() as workdir:
        for part in ("burst", "failover", "memory"):
            (Path(workdir) / part).mkdir()
        result |= burst(args, Path(workdir) / "burst")
        if args.failovers:
            result["failover"] = failovers(args, Path(workdir) / "failover")
        if args.foreign_pods:
            result["memory"] = memory(args, Path(workdir) / "memory")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
