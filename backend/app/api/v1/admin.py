"""TEMPORARY: `POST /api/v1/admin/reset-sequences`, the key-protected repair of a staging database
whose sequences and `nextval` defaults the old db_sync lost.

Everything about the route lives in this file (its settings, STAGE among them, models, key check
and audit log), so that removing it once the db_sync fix is verified is: delete this file and its
marked import and mount lines in `app/api/main.py`. Without ADMIN_API_KEY or
ADMIN_API_KEY_SECRET_ARN the route is not mounted at all (404, absent from the OpenAPI document):
it can never be open.

Checks, in this order, before the request body is even read: the key (401, the same answer for a
missing and a wrong one), the stage (403 on prod or an unset STAGE unless ADMIN_ALLOW_PROD), then
the body (422). The route declares no body parameter on purpose: FastAPI would decode and validate
a declared body before any dependency runs, answering 422 to a caller without the key.
"""

from __future__ import annotations

import secrets
from collections import Counter
from functools import lru_cache
from typing import Annotated, Any

import psycopg2
from fastapi import APIRouter, Depends, HTTPException, Request, Security, status
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.security import APIKeyHeader
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator, model_validator

from app.api.deps import DatabaseDep
from app.core.log import logger
from app.models.errors import ErrorBody
from dbsync.errors import LOCK_NOT_AVAILABLE, DbSyncError, pg_message
from dbsync.results import ACTIONS, SequenceResult
from dbsync.secrets import fetch_secret
from dbsync.sequences import reset_sequences
from dbsync.settings import EnvSettings, only_one

UNAUTHORIZED = "missing or invalid API key"
PROD_STAGES = frozenset({"prod", "production"})


class AdminSettings(EnvSettings):
    """ADMIN_API_KEY or ADMIN_API_KEY_SECRET_ARN (neither: the route does not exist),
    ADMIN_ALLOW_PROD, and STAGE, which only this route reads."""

    admin_api_key: SecretStr | None = None
    admin_api_key_secret_arn: str | None = None
    admin_allow_prod: bool = False
    stage: str | None = None

    @field_validator("stage")
    @classmethod
    def _lower_case_stage(cls, value: str | None) -> str | None:
        return value.lower() if value is not None else None

    @model_validator(mode="after")
    def _one_key(self) -> AdminSettings:
        only_one("ADMIN_API_KEY", self.admin_api_key, "ADMIN_API_KEY_SECRET_ARN", self.admin_api_key_secret_arn)
        return self

    @property
    def configured(self) -> bool:
        return self.admin_api_key is not None or self.admin_api_key_secret_arn is not None

    @property
    def is_production(self) -> bool:
        """Unset counts as production: a guard that depends on it must fail closed."""
        return self.stage is None or self.stage in PROD_STAGES

    def key(self) -> bytes:
        """The key as bytes (UTF-8): ADMIN_API_KEY, else the secret (the settings refuse both at
        once, as they refuse DATABASE_URL with DB_SECRET_ARN). Surrounding whitespace is dropped:
        HTTP strips it from header values too, and a secret written from a file often ends in a
        newline. Raises DbSyncError when the secret cannot be read or is empty."""
        if self.admin_api_key is not None:
            return self.admin_api_key.get_secret_value().encode()
        text = fetch_secret(self.admin_api_key_secret_arn or "").strip()
        if not text:
            raise DbSyncError(f"secret {self.admin_api_key_secret_arn} is empty")
        return text.encode()


@lru_cache
def get_admin_settings() -> AdminSettings:
    return AdminSettings.load()


AdminSettingsDep = Annotated[AdminSettings, Depends(get_admin_settings)]


class ResetSequencesRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    dry_run: bool = Field(default=False, description="report what would change, change nothing")
    schemas: list[str] | None = Field(default=None, min_length=1,
                                      description="only these schemas (default: every user schema)")
    create_missing: bool | None = Field(default=None, description=(
        "create a sequence for an integer primary key nothing feeds: null (default) only where such keys"
        " outnumber the fed columns (the old sync's signature), else they are reported as `unverifiable`;"
        " true always; false never"))


class ResetCounts(BaseModel):
    reset: int
    unchanged: int
    default_restored: int
    sequence_created: int
    unverifiable: int = 0  # integer keys nothing feeds, reported and left alone
    error: int


class ResetSequencesResponse(BaseModel):
    dry_run: bool
    counts: ResetCounts
    # The engine's own result type (dbsync.results), so the schema and the JSON follow the engine.
    sequences: list[SequenceResult] = Field(description=(
        "one entry per sequence-fed column: `value` is what the next INSERT gets, `previous` what it "
        "would have got before (null: it would have failed), `action` what the repair did"))


# auto_error=False: this module answers a missing key itself, with the same 401 as a wrong one
# (FastAPI's own answer changed from 403 to 401 in 0.122; see pyproject's pinned range).
api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False,
                              description="the admin key (ADMIN_API_KEY or the ADMIN_API_KEY_SECRET_ARN secret)")


def caller_ip(request: Request) -> str | None:
    """The client address API Gateway saw (Mangum passes the event through), else the socket's."""
    context = (request.scope.get("aws.event") or {}).get("requestContext") or {}
    ip = (context.get("http") or {}).get("sourceIp") or (context.get("identity") or {}).get("sourceIp")
    return ip or (request.client.host if request.client else None)


def audit(request: Request, outcome: str, http_status: int, **fields: Any) -> None:
    """The one audit line per call. Never pass the key or the request headers here."""
    logger.info("admin reset-sequences", extra={
        "audit": "admin.reset_sequences", "outcome": outcome, "status": http_status,
        "caller_ip": caller_ip(request), **fields,
    })


async def require_admin(request: Request, api_key: Annotated[str | None, Security(api_key_header)],
                        admin: AdminSettingsDep) -> None:
    """The key check, then the stage check; both answer before the body is read."""
    try:
        expected = await run_in_threadpool(admin.key)
    except DbSyncError as exc:
        logger.error("admin key unavailable", extra={"error": str(exc)})
        audit(request, "key_unavailable", 503)
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, "the admin key could not be read") from None
    # Starlette decodes header bytes as latin-1, so encoding back gives the bytes sent; comparing
    # bytes also keeps compare_digest from raising on a non-ASCII str.
    given = (api_key or "").encode("latin-1")
    if not secrets.compare_digest(given, expected):
        audit(request, "unauthorized", 401, key_sent=api_key is not None)
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, UNAUTHORIZED, headers={"WWW-Authenticate": "APIKey"})
    if admin.is_production and not admin.admin_allow_prod:
        stage = f"STAGE={admin.stage!r}" if admin.stage else "STAGE is not set"
        audit(request, "forbidden", 403, stage=admin.stage)
        raise HTTPException(status.HTTP_403_FORBIDDEN,
                            f"{stage}: reset-sequences runs only on a non-production stage "
                            "(set ADMIN_ALLOW_PROD=true to override)")


# The router app.api.main mounts at /api/v1/admin when a key is configured; every route on it
# passes require_admin first.
router = APIRouter(dependencies=[Depends(require_admin)])


async def read_body(request: Request) -> ResetSequencesRequest:
    """The optional JSON body, validated here because the route declares none (see above)."""
    raw = await request.body()
    if not raw.strip():
        return ResetSequencesRequest()
    try:
        return ResetSequencesRequest.model_validate_json(raw)
    except ValidationError as exc:
        raise RequestValidationError(
            [{**e, "loc": ("body", *e["loc"])} for e in exc.errors(include_url=False, include_context=False)]
        ) from None


def _summary(body: ResetSequencesRequest, results: list[SequenceResult]) -> ResetSequencesResponse:
    counts = Counter(r["action"] for r in results)
    return ResetSequencesResponse(
        dry_run=body.dry_run,
        counts=ResetCounts(**{a: counts.get(a, 0) for a in ACTIONS}),
        sequences=results,
    )


@router.post(
    "/reset-sequences", response_model=ResetSequencesResponse,
    summary="Repair sequence positions and nextval defaults on this (non-production) database",
    responses={
        401: {"model": ErrorBody, "description": "missing or invalid X-API-Key"},
        403: {"model": ErrorBody, "description": "STAGE is prod or unset (see ADMIN_ALLOW_PROD)"},
        422: {"description": "malformed body (only after the key and stage checks)"},
        503: {"model": ErrorBody, "description": "database unreachable, a lock timeout, or no admin key"},
    },
    openapi_extra={"requestBody": {
        "required": False,
        "content": {"application/json": {"schema": ResetSequencesRequest.model_json_schema()}},
    }},
)
async def reset_sequences_route(request: Request, db: DatabaseDep) -> ResetSequencesResponse:
    try:
        body = await read_body(request)
    except RequestValidationError:
        audit(request, "invalid_body", 422)
        raise

    def work(conn):
        # The cached connection is idle, so the engine runs standalone and commits itself.
        return reset_sequences(conn, dry_run=body.dry_run, schemas=body.schemas,
                               create_missing=body.create_missing)

    try:
        results = await run_in_threadpool(db.run, work)
    except psycopg2.errors.LockNotAvailable:
        raise _unavailable(request, body, f"lock timeout: a table or sequence is busy "
                                          f"(LOCK_TIMEOUT={db.settings.lock_timeout}); try again") from None
    except DbSyncError as exc:
        raise _unavailable(request, body, str(exc)) from None
    except psycopg2.Error as exc:
        raise _unavailable(request, body, f"database error: {pg_message(exc)}") from None
    except Exception:
        audit(request, "error", 500, dry_run=body.dry_run)
        raise
    summary = _summary(body, results)
    counts = summary.counts.model_dump()
    # The engine reports a lock timeout on one column and goes on with the others. Busy is
    # transient, so the caller gets a 503 to retry on, which says what did get done.
    locked = [r for r in summary.sequences if r["action"] == "error" and r.get("error_code") == LOCK_NOT_AVAILABLE]
    if locked:
        done = len(summary.sequences) - counts["error"]
        raise _unavailable(request, body, f"{locked[0]['error']}; {len(locked)} column(s) locked, {done} handled"
                                          f"{' (dry run)' if body.dry_run else ''}: call again once the lock "
                                          "is released", counts=counts)
    audit(request, "ok" if not counts["error"] else "partial", 200, dry_run=body.dry_run,
          schemas=body.schemas, create_missing=body.create_missing, counts=counts)
    return summary


def _unavailable(request: Request, body: ResetSequencesRequest, message: str, **fields: Any) -> HTTPException:
    audit(request, "database_error", 503, dry_run=body.dry_run, error=message, **fields)
    return HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, message)
