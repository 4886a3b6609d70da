"""``python -m airflow_provider_cm.emulator``: serve the Communications Mining emulator."""

from __future__ import annotations

import argparse
import json
import os
import sys

import uvicorn

from airflow_provider_cm.emulator.app import create_app
from airflow_provider_cm.emulator.fault_injection.rules import FaultError, FaultRule, TokenBucket
from airflow_provider_cm.emulator.state.store import Store


def main(argv: list[str] | None = None) -> int:
    """Parse the command line and serve until interrupted; the exit status."""
    parser = argparse.ArgumentParser(
        prog="python -m airflow_provider_cm.emulator",
        description="Serve a local UiPath Communications Mining API.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="interface to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8765, help="TCP port (default 8765; 0 picks a free one)")
    parser.add_argument(
        "--token",
        default=os.environ.get("CM_EMULATOR_TOKEN"),
        help="the API token to accept (default: $CM_EMULATOR_TOKEN)",
    )
    parser.add_argument(
        "--state",
        help=(
            "JSON file to load data from and keep up to date (with FILE.journal; its folder is created): "
            "acknowledged writes survive a kill"
        ),
    )
    parser.add_argument(
        "--latency", type=float, default=0.0, help="seconds to delay every API response, like a remote tenant"
    )
    parser.add_argument("--client-id", help="an external application's client id to accept (OAuth)")
    parser.add_argument(
        "--client-secret",
        default=os.environ.get("CM_EMULATOR_CLIENT_SECRET"),
        help="its secret (or $CM_EMULATOR_CLIENT_SECRET)",
    )
    parser.add_argument("--token-lifetime", type=float, default=3600.0, help="seconds an issued OAuth token lives")
    parser.add_argument(
        "--fault",
        action="append",
        default=[],
        metavar="JSON",
        help='a fault rule, e.g. \'{"kind": "status", "status": 503, "every": 5}\' (repeatable)',
    )
    parser.add_argument("--rate-limit", type=float, help="requests per second per token (token bucket)")
    parser.add_argument("--log-level", default="warning", help="uvicorn log level (default warning)")
    args = parser.parse_args(argv)
    if not args.token:
        parser.error("--token (or $CM_EMULATOR_TOKEN) is required")
    state = Store(args.state)
    state.knobs.latency = args.latency
    state.knobs.oauth.lifetime = args.token_lifetime
    if args.client_id:
        if not args.client_secret:
            parser.error("--client-id needs --client-secret (or $CM_EMULATOR_CLIENT_SECRET)")
        state.knobs.oauth.clients[args.client_id] = args.client_secret
    try:
        state.knobs.fault_rules = [FaultRule.parse(json.loads(rule), f"--fault {rule}") for rule in args.fault]
        state.knobs.rate_limit = TokenBucket(args.rate_limit) if args.rate_limit else None
    except (FaultError, ValueError) as exc:
        parser.error(f"bad --fault or --rate-limit: {exc}")
    app = create_app(args.token, state)
    # The access log is off: request lines are safe, but nothing about requests needs to be logged.
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level, access_log=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
