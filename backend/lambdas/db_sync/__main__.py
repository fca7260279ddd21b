"""Run the db_sync handler on this machine, as the schedule invokes it on AWS:

    python -m lambdas.db_sync                                  # the EventBridge schedule's event
    python -m lambdas.db_sync '{"action": "check-sequences"}'  # any other event, as JSON
    python -m lambdas.db_sync --timeout 300                    # the function's timeout (default 900 s)

The settings come from the environment, as in the Lambda (SOURCE_*, TARGET_*, SYNC_*: see
docs/configuration.md); the context is a local one whose remaining time counts down from
--timeout, so the sync's time budget behaves as it does there. Prints the handler's result as
JSON (after the handler's own log lines); a failure is one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import uuid
from datetime import UTC, datetime

from dbsync.errors import DbSyncError


class LocalContext:
    """What the handler and powertools read of a Lambda context."""

    def __init__(self, timeout: float, function_name: str = "db_sync") -> None:
        self.function_name = function_name
        self.function_version = "$LATEST"
        self.memory_limit_in_mb = 1024
        self.invoked_function_arn = f"arn:aws:lambda:local:000000000000:function:{function_name}"
        self.aws_request_id = str(uuid.uuid4())
        self.log_group_name = f"/aws/lambda/{function_name}"
        self.log_stream_name = "local"
        self._deadline = time.monotonic() + timeout

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


def scheduled_event() -> dict:
    """The event an EventBridge schedule sends."""
    return {"version": "0", "id": str(uuid.uuid4()), "detail-type": "Scheduled Event", "source": "aws.events",
            "account": "000000000000", "time": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "region": "local", "resources": ["arn:aws:events:local:000000000000:rule/db-sync-nightly"],
            "detail": {}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lambdas.db_sync", description=__doc__.split("\n\n")[0])
    parser.add_argument("event", nargs="?", help="the event as JSON (default: the schedule's)")
    parser.add_argument("--timeout", type=float, default=900.0, metavar="SECONDS",
                        help="the function's timeout: the context's remaining time starts there (default: 900)")
    args = parser.parse_args(argv)
    try:
        event = scheduled_event() if args.event is None else json.loads(args.event)
    except ValueError as exc:
        parser.error(f"the event is not JSON: {exc}")
    from lambdas.db_sync.handler import lambda_handler

    try:
        result = lambda_handler(event, LocalContext(args.timeout))
    except DbSyncError as exc:
        print(f"db_sync: error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(result, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
