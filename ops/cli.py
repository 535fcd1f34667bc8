"""`tuneflow ops apply`: its options, and the call into ops.apply (imported only when run: it imports Prefect)."""

from __future__ import annotations

import argparse
import os
import sys


def command_ops(options: argparse.Namespace) -> int:
    from tuneflow.ops.apply import apply_ops

    pools = tuple(name.strip() for name in options.pools.split(",") if name.strip()) if options.pools else None
    try:
        report = apply_ops(options.alert_url or None, pools, options.alert_block or None)
    except ValueError as error:
        print(f"tuneflow ops apply: {error}", file=sys.stderr)
        return 2
    return 1 if report.not_applied and options.strict else 0


def add_ops_parser(commands) -> None:
    ops = commands.add_parser(
        "ops",
        help="apply ops/ to a Prefect server: work pools, the alert webhook and the automations",
        description="Create or update, on the server of PREFECT_API_URL, the work pools of ops/work-pools (with "
        "their base job templates), the `tuneflow-alerts` notification block for the alert webhook and every "
        "automation of ops/automations. Run it again after changing any of them; `make stack` runs it on start.",
    )
    ops.add_argument("action", choices=("apply",), help="apply (the only action)")
    ops.add_argument("--alert-url", default=os.environ.get("TUNEFLOW_ALERT_URL", ""),
                     help="the webhook alerts are posted to as Slack JSON ({\"text\": ...}): a Slack incoming webhook "
                     "or any HTTP(S) endpoint. Default: $TUNEFLOW_ALERT_URL; unset, the server's block is kept.")
    ops.add_argument("--alert-block", default="", metavar="SLUG/NAME",
                     help="send the alerts through a notification block already on the server instead, e.g. "
                     "sendgrid-email/ops-mail (email) or ms-teams-webhook/ops")
    ops.add_argument("--pools", default="",
                     help="comma-separated work pools of ops/work-pools/pools.yaml to apply. Default: gpu,cpu.")
    ops.add_argument("--strict", action="store_true", help="exit 1 when anything could not be applied")
    ops.set_defaults(handler=command_ops)
