"""The API's structured (JSON) logger: one per process, shared by every module of the app."""

from __future__ import annotations

from aws_lambda_powertools import Logger

# Level from POWERTOOLS_LOG_LEVEL / AWS_LAMBDA_LOG_LEVEL (Powertools reads them itself), INFO by default.
logger = Logger(service="book-api")
