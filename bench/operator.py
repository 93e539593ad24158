"""Operator latency and memory on the API emulator: from a DreemTrainingJob's creation to the creation of
its last pod, for 1 job and for 200 jobs created at once, and the operator's peak RSS.

Run: `.venv/bin/python -m bench.operator [--jobs 200]`. The emulator records when each object was created,
so the figure is the operator's reaction (watch, read, decide, create) and not the client's. There is no
reference figure: the reference implementation has no operator.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from tests.k8s.emulator import EmulatedCluster
from tests.k8s.harness import Kubectl, cluster_with_crd, job_manifest, minimal_spec
from tests.k8s.operator_process import OperatorProcess

NODES = 2


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def peak_rss_gib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 2**20
    return float("nan")


def create_to_pods(cluster: EmulatedCluster, kubectl: Kubectl, prefix: str, count: int) -> list[float]:
    names = [f"{prefix}-{index}" for index in range(count)]
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(kubectl.apply_job, (job_manifest(name, minimal_spec(name, NODES)) for name in names)))
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        pods = [entry for entry in cluster.emulator.created_at if entry[1] == "pods" and entry[3].startswith(prefix)]
        if len(pods) >= count * NODES:
            break
        time.sleep(0.1)
    else:
        raise TimeoutError(f"{prefix}: not all pods were created")
    created = {name: when for when, plural, _, name in cluster.emulator.created_at if plural == "dreemtrainingjobs"}
    last_pod: dict[str, float] = {}
    for when, plural, _, name in cluster.emulator.created_at:
        if plural == "pods" and name.startswith(prefix):
            job = name.rsplit("-", 2)[0]
            last_pod[job] = max(last_pod.get(job, 0.0), when)
    return [last_pod[name] - created[name] for name in names]


def summary(latencies: list[float]) -> dict[str, float]:
    return {
        "p50_s": round(statistics.median(latencies), 3),
        "p95_s": round(percentile(latencies, 0.95), 3),
        "max_s": round(max(latencies), 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--singles", type=int, default=10, help="1-job runs, one after another")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as workdir, cluster_with_crd(Path(workdir)) as cluster:
        operator = OperatorProcess(cluster.kubeconfig, Path(workdir) / "operator.log", resync_seconds="30").start()
        kubectl = Kubectl(cluster.kubeconfig)
        try:
            singles = [create_to_pods(cluster, kubectl, f"one{index}", 1)[0] for index in range(args.singles)]
            burst = create_to_pods(cluster, kubectl, "many", args.jobs)
            assert operator.process is not None
            rss = peak_rss_gib(operator.process.pid)
        finally:
            operator.stop()
    print(
        json.dumps(
            {
                "one_job": summary(singles) | {"runs": args.singles},
                f"{args.jobs}_jobs": summary(burst),
                "operator_peak_rss_gib": round(rss, 3),
                "nodes_per_job": NODES,
            }
        )
    )


if __name__ == "__main__":
    main()
