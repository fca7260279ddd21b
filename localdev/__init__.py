"""Local development kit: an embedded PostgreSQL, the book-collection sample data and an
emulation of the old, broken sync. Used by the tests, `make demo` and `make bench`; never
deployed (the Lambda artifact is `backend/` only)."""
