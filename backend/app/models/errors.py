"""The error body every route answers with (FastAPI's `{"detail": ...}`)."""

from __future__ import annotations

from pydantic import BaseModel


class ErrorBody(BaseModel):
    detail: str
