"""Database URLs from AWS Secrets Manager (RDS secret JSON), cached across warm invocations.

A secret holds either the full RDS JSON (`host`, `port`, `username`, `password`, `dbname`) or
only `username`/`password` (an RDS-managed master secret); then host, port and database name
come from the caller (the `<PREFIX>_DB_HOST/_PORT/_NAME` settings).
"""

from __future__ import annotations

import json
from urllib.parse import quote

from dbsync.errors import DbSyncError

# Warm Lambdas reuse a fetched secret for this long; a rotation is caught earlier by the
# re-fetch after an authentication failure (see `dbsync.settings.DatabaseSettings.connect`).
SECRET_MAX_AGE_SECONDS = 300


# The AWS libraries are the `aws` extra: `pip install .` alone brings the engine without them.
NEEDS_AWS_EXTRA = "pip install 'book-collection-dbsync[aws]' (with pipx: pipx install '.[aws]')"


def fetch_secret(secret_arn: str, *, force_fetch: bool = False) -> str:
    try:
        from aws_lambda_powertools.utilities import parameters
        from botocore.exceptions import BotoCoreError, ClientError
    except ImportError:
        raise DbSyncError(f"reading secret {secret_arn} needs the AWS libraries, not installed: {NEEDS_AWS_EXTRA}"
                          ) from None

    try:
        return parameters.get_secret(secret_arn, max_age=SECRET_MAX_AGE_SECONDS, force_fetch=force_fetch)
    except (parameters.exceptions.GetParameterError, ClientError, BotoCoreError) as exc:
        # The ARN names the secret, not its value: safe to show.
        raise DbSyncError(f"cannot read secret {secret_arn}: {str(exc).splitlines()[0]}") from None


def url_from_secret_json(text: str, *, host: str | None = None, port: str | int | None = None,
                         dbname: str | None = None, what: str = "secret") -> str:
    try:
        data = json.loads(text)
    except ValueError:
        raise DbSyncError(f"{what} is not JSON with username and password") from None
    if not isinstance(data, dict) or not data.get("username") or "password" not in data:
        raise DbSyncError(f"{what} has no username/password")
    host = data.get("host") or host
    port = data.get("port") or port or 5432
    dbname = data.get("dbname") or data.get("database") or dbname
    missing = [k for k, v in (("host", host), ("dbname", dbname)) if not v]
    if missing:
        raise DbSyncError(f"{what} has no {' or '.join(missing)}, and no *_DB_HOST / *_DB_NAME setting supplies it")
    return (f"postgresql://{quote(str(data['username']), safe='')}:{quote(str(data['password']), safe='')}"
            f"@{host}:{port}/{quote(str(dbname), safe='')}")


def database_url_from_secret(secret_arn: str, *, host: str | None = None, port: str | int | None = None,
                             dbname: str | None = None, force_fetch: bool = False) -> str:
    """A libpq URL built from the secret; force_fetch bypasses the cache (after a rotation)."""
    text = fetch_secret(secret_arn, force_fetch=force_fetch)
    return url_from_secret_json(text, host=host, port=port, dbname=dbname, what=f"secret {secret_arn}")
