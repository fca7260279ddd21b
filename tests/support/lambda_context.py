"""A Lambda context as the runtime passes it, as far as the handlers and powertools'
`Logger.inject_lambda_context` read it."""

from __future__ import annotations

import time
import uuid


class FakeLambdaContext:
    """`function_name`, `memory_limit_in_mb`, `invoked_function_arn`, `aws_request_id`, and a
    clock: `get_remaining_time_in_millis()` counts down from `remaining_seconds`."""

    def __init__(self, function_name: str = "db_sync", *, remaining_seconds: float = 900.0,
                 memory_limit_in_mb: int = 1024, aws_request_id: str | None = None):
        self.function_name = function_name
        self.function_version = "$LATEST"
        self.memory_limit_in_mb = memory_limit_in_mb
        self.invoked_function_arn = f"arn:aws:lambda:eu-west-1:123456789012:function:{function_name}"
        self.aws_request_id = aws_request_id or uuid.uuid4().hex
        self.log_group_name = f"/aws/lambda/{function_name}"
        self._deadline = time.monotonic() + remaining_seconds

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))
