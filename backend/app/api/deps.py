"""What the routes depend on, as `Annotated` aliases: a route takes `db: DatabaseDep`."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from app.core.db import Database


def get_database(request: Request) -> Database:
    """The app's Database (the app built by `create_app` owns it)."""
    return request.app.state.db


DatabaseDep = Annotated[Database, Depends(get_database)]
