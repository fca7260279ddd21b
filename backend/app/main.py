"""The book-collection API: a FastAPI app, run on AWS Lambda through Mangum.

`create_app()` builds an app from a `Settings` (the environment's by default), so tests can build
one per configuration; the module-level `app` is the one Lambda and `uvicorn app.main:app` serve.
"""

from __future__ import annotations

import psycopg2
from fastapi import FastAPI, Request, status
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from mangum import Mangum

from app.api.main import build_api_router
from app.core.db import Database
from app.core.log import logger
from app.core.settings import Settings, get_settings
from app.models.errors import ErrorBody
from dbsync.errors import DbSyncError, pg_message

DB_UNAVAILABLE = "the database is unreachable or busy; try again"


def _unavailable(request: Request, exc: Exception) -> JSONResponse:
    # The log gets the one-line cause (host and user, never a password); the caller a short text.
    logger.error("database unavailable", extra={"path": request.url.path, "error": pg_message(exc)})
    return JSONResponse({"detail": DB_UNAVAILABLE}, status_code=status.HTTP_503_SERVICE_UNAVAILABLE)


def _database_error(request: Request, exc: Exception) -> JSONResponse:
    # Such as the not-null failure on `books.id` of a staging whose defaults the old sync lost:
    # a fault of the server's data, not of the request, and the driver's text stays in the log.
    logger.error("database error", extra={"path": request.url.path, "error": pg_message(exc),
                                          "sqlstate": getattr(exc, "pgcode", None)})
    return JSONResponse({"detail": "the database refused the request; see the API's logs"},
                        status_code=status.HTTP_500_INTERNAL_SERVER_ERROR)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    app = FastAPI(title="Book collection API", version="1.0.0")
    app.state.settings = settings
    app.state.db = Database(settings)
    app.include_router(build_api_router())
    # OperationalError covers a lost connection, a lock timeout and a cancelled statement.
    app.add_exception_handler(DbSyncError, _unavailable)
    app.add_exception_handler(psycopg2.OperationalError, _unavailable)
    app.add_exception_handler(psycopg2.InterfaceError, _unavailable)
    app.add_exception_handler(psycopg2.Error, _database_error)

    @app.get("/health", tags=["health"], responses={503: {"model": ErrorBody}})
    async def health() -> dict[str, str]:
        """Up, and the database answers."""

        def ping(conn):
            with conn.cursor() as cur:
                cur.execute("SELECT 1")

        await run_in_threadpool(app.state.db.run, ping)
        return {"status": "ok", "database": "ok"}

    return app


app = create_app()
handler = Mangum(app, lifespan="off")
