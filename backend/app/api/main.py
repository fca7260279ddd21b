"""The API's routers, gathered under one: each included here with its prefix and tags.

A router that exists only under a setting is mounted behind a condition, read when the app is
built (without it: 404, absent from the OpenAPI document).
"""

from __future__ import annotations

from fastapi import APIRouter

from app.api.v1 import (
    admin,  # admin-route
    books,
)


def build_api_router() -> APIRouter:
    """Built per app (tests build one per configuration), so the mount condition is read then."""
    api_router = APIRouter(prefix="/api/v1")
    api_router.include_router(books.router, prefix="/books", tags=["books"])
    if admin.get_admin_settings().configured:  # admin-route
        api_router.include_router(admin.router, prefix="/admin", tags=["admin (temporary)"])  # admin-route
    return api_router
