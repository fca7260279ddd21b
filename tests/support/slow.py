"""A deliberately slow source for the time-budget tests."""

from __future__ import annotations

# A source COPY that takes about 1.5 s: each row's expression sleeps (a rule's sql: evaluated on
# the source), so the copy is slow however fast the machine is. Declared IMMUTABLE, as every
# function a rule calls must be (its result is; only its time is not), and needed on the target
# too, where the sync checks that; two statements, so that the server never inlines it.
SLOW = ("CREATE FUNCTION slow(t text) RETURNS text LANGUAGE sql IMMUTABLE AS $$ SELECT pg_sleep(0.005); SELECT t $$",
        "CREATE TABLE notes (id int PRIMARY KEY, body text)",
        "INSERT INTO notes SELECT g, 'note ' || g FROM generate_series(1, 300) g")
