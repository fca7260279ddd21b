"""The API's structured (JSON) logger: one per process, shared by every module of the app."""

from __future__ import annotations

import os

from aws_lambda_powertools import Logger

logger = Logger(service=os.environ.get("POWERTOOLS_SERVICE_NAME") or "book-api")
