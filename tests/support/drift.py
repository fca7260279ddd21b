"""Staging ahead of prod by a migration, prod with a table and a column of its own: the state the
drift policy's tests start from (tests/dbsync/test_sync_drift.py, the Lambda's tests)."""

from __future__ import annotations

from tests.support.db import execute

SHARED = (
    "CREATE TABLE customers (id int PRIMARY KEY, name text NOT NULL, phone text)",
    "CREATE TABLE orders (id int PRIMARY KEY, customer_id int REFERENCES customers, total numeric(10, 2))",
)
PROD_OWN = (
    "CREATE TABLE audit_log (id int PRIMARY KEY, what text)",
    "ALTER TABLE customers ADD COLUMN hotfix text",
)
# Staging ahead by one migration: a table with keys into synced tables (one SET NULL, one NO
# ACTION), a nullable column with values, a NOT NULL column with a constant default and an index.
STAGING_OWN = (
    "CREATE TABLE wishlists (id int PRIMARY KEY, customer_id int REFERENCES customers ON DELETE SET NULL,"
    " order_id int REFERENCES orders, note text)",
    "ALTER TABLE customers ADD COLUMN nickname text",
    "ALTER TABLE customers ADD COLUMN tier text NOT NULL DEFAULT 'basic'",
    "CREATE INDEX customers_tier ON customers (tier)",
)
# Prod: customers 1–40 and one new since (41); orders 1–60, one of them without a customer.
PROD_ROWS = (
    "INSERT INTO customers (id, name, phone, hotfix)"
    " SELECT i, 'c' || i, '555-' || i, 'h' FROM generate_series(1, 41) i",
    "INSERT INTO orders SELECT i, CASE WHEN i = 60 THEN NULL ELSE 1 + i % 40 END, i FROM generate_series(1, 60) i",
    "INSERT INTO audit_log VALUES (1, 'prod only')",
)
# Staging as last night left it: also customer 42 and order 61, which prod has since deleted.
STAGING_ROWS = (
    "INSERT INTO customers (id, name, phone) SELECT i, 'c' || i, '555-' || i FROM generate_series(1, 40) i",
    "INSERT INTO customers (id, name) VALUES (42, 'gone on prod')",
    "INSERT INTO orders SELECT i, CASE WHEN i = 60 THEN NULL ELSE 1 + i % 40 END, i FROM generate_series(1, 60) i",
    "INSERT INTO orders VALUES (61, 42, 1)",
    "UPDATE customers SET nickname = 'nick ' || id WHERE id IN (1, 2, 42)",
    "UPDATE customers SET tier = 'gold' WHERE id = 2",
    "UPDATE customers SET name = 'renamed on staging' WHERE id = 3",
    "INSERT INTO wishlists VALUES (1, 42, 1, 'its customer goes: SET NULL'), (2, 1, 61, 'its order goes: NO ACTION'),"
    " (3, 2, 2, 'all there'), (4, NULL, NULL, 'references nothing')",
)


def ahead(make_db, *, orphan: bool = True) -> tuple[str, str]:
    prod, staging = make_db("prod"), make_db("staging")
    execute(prod, *SHARED, *PROD_OWN, *PROD_ROWS)
    execute(staging, *SHARED, *STAGING_OWN, *STAGING_ROWS)
    if not orphan:
        execute(staging, "DELETE FROM wishlists WHERE id = 2")
    return prod, staging
