"""`python -m dreem_operator` / `dreem-operator`: run the operator with the settings from the environment."""

from __future__ import annotations

import argparse

import kopf

import dreem_operator.handlers  # noqa: F401  (registers the handlers)
from dreem_operator.settings import RuntimeSettings


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="dreem-operator",
        description="Reconcile DreemTrainingJobs into gang-scheduled training pods. Settings not given here come "
        "from DREEM_OPERATOR_* environment variables.",
    )
    parser.add_argument(
        "--namespace",
        action="append",
        default=None,
        help="Watch this namespace (repeatable); default: DREEM_OPERATOR_NAMESPACES, else all namespaces.",
    )
    parser.add_argument("--verbose", action="store_true", help="Log every API call kopf makes.")
    args = parser.parse_args(argv)
    runtime = RuntimeSettings.from_env()
    if args.namespace:
        runtime = runtime.model_copy(update={"namespaces": args.namespace})
    kopf.configure(verbose=args.verbose)
    kopf.run(
        # Replicas elect a leader on a Lease (dreem_operator.election), which, unlike kopf's peering, settles
        # races with resourceVersion checks and fences a leader that cannot renew: no kopf peering.
        standalone=True,
        clusterwide=not runtime.namespaces,
        namespaces=runtime.namespaces,
        liveness_endpoint=f"http://0.0.0.0:{runtime.liveness_port}/healthz" if runtime.liveness_port else None,
        memo=kopf.Memo(runtime=runtime),
    )


if __name__ == "__main__":
    main()
