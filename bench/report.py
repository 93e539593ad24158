"""`make bench`: every benchmark's figures, beside their references and bounds, in one JSON document.

Runs each script (each prints one JSON document) and gathers them under its name, with the load average
before and after each, since the figures are only as quiet as the machine. A script that fails is reported
with its error rather than ending the report.
Usage: python -m bench.report [NAME...]   (default: all)
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

from bench.common import REPO

SCRIPTS = (
    "machine",  # first: the yardstick (sgemm GFLOP/s) the bounds below are read against
    "train_throughput",
    "zfish_train",
    "scale",
    "track_throughput",
    "storage",
    "operator",
    "microscopy",
    "render",
    "startup",
)


def run(name: str) -> dict[str, Any]:
    before = os.getloadavg()[0]
    result = subprocess.run(
        [sys.executable, "-m", f"bench.{name}"], cwd=REPO, capture_output=True, text=True, check=False
    )
    after = os.getloadavg()[0]
    load = {"load_average_1min_before": before, "load_average_1min_after": after}
    if result.returncode != 0:
        return {"error": result.stderr.strip()[-2000:], **load}
    try:
        figures: dict[str, Any] = json.loads(result.stdout[result.stdout.index("{") :])
    except ValueError:
        return {"error": f"no JSON in the output: {result.stdout[-500:]}", **load}
    return figures | load


def main(names: list[str]) -> None:
    report = {"cpus": os.cpu_count(), **{name: run(name) for name in names or SCRIPTS}}
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main(sys.argv[1:])
