"""Request and response bodies of the books API."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

# books.id is a PostgreSQL `integer`; a larger id can name no book.
MAX_ID = 2**31 - 1


class BookFields(BaseModel):
    # Unknown fields (an `id`, a typo) are refused rather than silently dropped.
    model_config = ConfigDict(extra="forbid")

    isbn: str | None = Field(default=None, min_length=1, max_length=64)
    published_year: int | None = Field(default=None, ge=-5000, le=9999)
    owner_id: int | None = Field(default=None, ge=1, le=2**63 - 1, description="a users.id")


class BookCreate(BookFields):
    title: str = Field(min_length=1, max_length=500)
    metadata: dict[str, Any] = Field(default_factory=dict)


class BookUpdate(BookFields):
    """A partial update: only the fields sent change; `null` clears an optional field."""

    title: str | None = Field(default=None, min_length=1, max_length=500)
    metadata: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _required_fields_not_cleared(self) -> BookUpdate:
        for name in ("title", "metadata"):
            if name in self.model_fields_set and getattr(self, name) is None:
                raise ValueError(f"{name} cannot be null")
        return self


class Book(BaseModel):
    id: int
    title: str
    isbn: str | None
    published_year: int | None
    metadata: dict[str, Any]
    owner_id: int | None
    created_at: datetime


class BookPage(BaseModel):
    items: list[Book]
    total: int = Field(description="books in the collection")
    limit: int
    offset: int
