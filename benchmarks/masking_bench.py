"""The masked sync against the same sync without rules, in the same run, on the benchmark database.

Per pair, in turn: `db-sync sync --json` with no rules, then `db-sync sync --rules
backend/sync-rules.yaml --json` (the users' email and display name, every review's body, the
masking key from SYNC_MASKING_KEY), onto the same target. Each masked run is checked: row counts
equal the source's, no source email reached the target, and binary COPY was kept for the masked
tables. The goal (issue: masking) is masked/plain <= 1.15.
"""

from __future__ import annotations

import json
import os

from benchmarks.common import Table, connect, drop_database, fmt_ratio, fmt_s, median, run_child
from benchmarks.sync_bench import DST, SRC, db_sync_command, prepare, state

RULES = os.path.join(os.path.dirname(__file__), "..", "backend", "sync-rules.yaml")
MASKED_TABLES = ("public.users", "public.reviews")


def _sync(src: str, dst: str, *, masked: bool):
    env = {k: v for k, v in os.environ.items() if k not in ("SYNC_TARGET_ALLOWLIST", "SYNC_RULES_FILE")}
    cmd = [db_sync_command(), "sync", "--source", src, "--target", dst, "--json"]
    if masked:
        env["SYNC_MASKING_KEY"] = "benchmark key, at least 32 characters long"
        cmd += ["--rules", RULES]
    r = run_child(cmd, env=env)
    if r.returncode != 0:
        raise RuntimeError(f"db-sync sync failed ({r.returncode}): {(r.stderr or r.stdout).strip()[-2000:]}")
    return r, json.loads(r.stdout)


def _emails(dsn: str) -> set[str]:
    conn = connect(dsn)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT email FROM users")
            return {e for (e,) in cur.fetchall()}
    finally:
        conn.close()


def run(server, *, scale: float = 1.0, pairs: int = 3, log=print) -> tuple[Table, dict]:
    log(f"masked sync at scale {scale:g} ({pairs} pairs, A = with the shipped rules, B = without rules)")
    src, dst, counts, size = prepare(server, scale, log)
    try:
        expected = {k: v for k, v in state(src).items()}
        prod_emails = _emails(src)
        _sync(src, dst, masked=False)  # untimed: fills the target and warms the caches
        plain_t, masked_t = [], []
        for i in range(pairs):
            r, _ = _sync(src, dst, masked=False)
            plain_t.append(r.seconds)
            r, result = _sync(src, dst, masked=True)
            masked_t.append(r.seconds)
            got = state(dst)
            if got != expected:
                raise RuntimeError(f"the masked sync's row counts or sequences differ: {got} != {expected}")
            if _emails(dst) & prod_emails:
                raise RuntimeError("a prod email reached the target through the masked sync")
            formats = {t["table"]: t["format"] for t in result["tables"]}
            if any(formats[t] != "binary" for t in MASKED_TABLES):
                raise RuntimeError(f"masked tables lost binary COPY: {formats}")
            log(f"  pair {i + 1}: plain {fmt_s(plain_t[-1])}  masked {fmt_s(masked_t[-1])}")
    finally:
        drop_database(server, DST)
        drop_database(server, SRC)
    table = Table("Masked sync: db-sync sync --rules backend/sync-rules.yaml vs without rules (same run)",
                  ["scale", "size", "pairs", "without rules", "masked", "masked/plain"])
    table.add(f"{scale:g}", f"{size:.0f} MB", pairs, fmt_s(median(plain_t)), fmt_s(median(masked_t)),
              fmt_ratio(median(masked_t), median(plain_t)))
    table.notes.append(f"masked: users.email (email), users.display_name (name), reviews.body (redact);"
                       f" {counts.get('users')} users, {counts.get('reviews')} reviews; binary COPY kept")
    table.notes.append("goal: masked/plain <= 1.15")
    return table, {"scale": scale, "plain_s": plain_t, "masked_s": masked_t}
