"""`python -m benchmarks [--only sequences|sync] [--scale X] [--tables N]` (what `make bench` runs).

Starts one embedded PostgreSQL 18 for the whole run. Its settings are the server defaults for
everything the claims depend on (max_locks_per_transaction 64, max_connections 100); durability
is off (fsync, synchronous_commit, full_page_writes) for every side alike, as in the tests.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
import traceback

from benchmarks import incremental_bench, masking_bench, sequences_bench, sync_bench
from benchmarks.common import Table

# The "1M-book benchmark database" of the incremental and verify goals: 639 MB on disk, which this
# generator reaches at 4.25 (with 660,000 books: its rows per book differ from the database the goals
# were first measured on).
BOOKS_1M = 4.25


def _factors(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a comma-separated list of numbers: {text!r}") from None


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    p.add_argument("--only", choices=["sequences", "sync", "masking", "incremental", "vanish"],
                   help="run one benchmark (default: all but vanish, which runs only when named)")
    p.add_argument("--tables", type=int, default=10_000, help="tables for the engine's scale run (10000)")
    p.add_argument("--naive-tables", type=int, default=3_000,
                   help="tables on which the engine and the naive loop are compared (3000)")
    p.add_argument("--runs", type=int, default=3, help="timed runs per sequence case; the median counts (3)")
    p.add_argument("--scale", type=float, default=1.0, help="sync data scale; 1 is about 150 MB (1)")
    p.add_argument("--pairs", type=int, default=3, help="sync/stock pairs at --scale; the medians count (3)")
    p.add_argument("--incremental-scale", type=float, default=BOOKS_1M,
                   help=f"scale of the incremental and verify benchmark ({BOOKS_1M:g}: the 639 MB database the"
                        " incremental and verify goals are set on)")
    p.add_argument("--nights", type=int, default=5,
                   help="rounds of ~1%% changes in the incremental benchmark, the first night after a full sync"
                        " and then later nights, whose median counts (5: the machine varies run to run)")
    p.add_argument("--size-factors", type=_factors, default=(0.25, 2.0),
                   help="extra sync sizes as multiples of --scale, min(2, --pairs) pairs each, to show"
                        " memory vs size (0.25,2; '' for none)")
    p.add_argument("--json", metavar="PATH", help="also write every raw figure to PATH")
    args = p.parse_args(argv)
    if (args.tables < 1 or args.naive_tables < 1 or args.runs < 1 or args.pairs < 1 or args.nights < 2
            or args.scale <= 0 or args.incremental_scale <= 0):
        p.error("--tables, --naive-tables, --runs, --pairs must be >= 1, --nights >= 2 and --scale,"
                " --incremental-scale > 0")
    return args


def machine() -> str:
    try:
        with open("/proc/meminfo") as f:
            mem = int(f.readline().split()[1]) / 2**20
        mem_text = f", {mem:.0f} GB RAM"
    except (OSError, ValueError, IndexError):
        mem_text = ""
    return f"{platform.machine()}, {os.cpu_count()} cores{mem_text}, Linux {platform.release()}"


def compile_backend() -> None:
    """Byte-compile backend/ before any timed process: an installed db-sync runs from bytecode
    (pip compiles what it installs), but an editable checkout run with PYTHONDONTWRITEBYTECODE set
    would compile every module again in every timed process (about 0.05 s of start-up)."""
    import compileall
    from pathlib import Path

    compileall.compile_dir(Path(__file__).resolve().parent.parent / "backend", quiet=1)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    compile_backend()
    if args.only == "vanish":  # servers of its own, each in a network namespace of its own
        from benchmarks import vanish

        return vanish.main([])
    from localdev.pgserver import LocalServer, exit_on_sigterm

    exit_on_sigterm()

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    server = LocalServer()
    tables: list[Table] = []
    raw: dict[str, object] = {"machine": machine()}
    failed = False
    started = time.perf_counter()
    try:
        server.start()
        version = _server_version(server)
        raw["server"] = version
        log(f"bench server: {version}; {machine()}")
        if args.only in (None, "sequences"):
            log(f"sequence engine: {args.tables} tables, naive comparison on {min(args.naive_tables, args.tables)}")
            try:
                t = sequences_bench.run(server, tables=args.tables, naive_tables=args.naive_tables,
                                        runs=args.runs, log=log)
                tables.append(t)
                failed |= any("NOT AVAILABLE" in c for r in t.rows for c in r)
            except Exception:
                failed = True
                log("sequence benchmark failed:\n" + traceback.format_exc())
        if args.only in (None, "sync"):
            try:
                t, results = sync_bench.run(server, scale=args.scale, pairs=args.pairs,
                                            size_factors=args.size_factors, log=log)
                tables.append(t)
                raw["sync"] = results
                failed |= any(r["sync_error"] for r in results)
            except Exception:
                failed = True
                log("sync benchmark failed:\n" + traceback.format_exc())
        # The sync's variants, each against the plain sync of the same database in the same run.
        for name, bench in (("masking", masking_bench), ("incremental", incremental_bench)):
            if args.only not in (None, name):
                continue
            try:
                scale, rounds = (args.incremental_scale, args.nights) if name == "incremental" else (args.scale,
                                                                                                   args.pairs)
                t, raw[name] = bench.run(server, scale=scale, pairs=rounds, log=log)
                tables.append(t)
            except Exception:
                failed = True
                log(f"{name} benchmark failed:\n" + traceback.format_exc())
    finally:
        server.stop()
    print()
    print(f"machine: {machine()}; server: {raw.get('server', '?')}; total {time.perf_counter() - started:.0f} s")
    for t in tables:
        print()
        print(t.render())
        raw.setdefault("tables", []).append({"title": t.title, "headers": t.headers, "rows": t.rows,
                                             "notes": t.notes})
    if args.json:
        with open(args.json, "w") as f:
            json.dump(raw, f, indent=2, default=str)
    if failed:
        print("\nsome figures are missing (see above): exit 1", file=sys.stderr)
    return 1 if failed else 0


def _server_version(server) -> str:
    from benchmarks.common import connect

    conn = connect(server.dsn("postgres"))
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT 'PostgreSQL ' || current_setting('server_version')"
                        " || ', max_locks_per_transaction ' || current_setting('max_locks_per_transaction')"
                        " || ', max_connections ' || current_setting('max_connections')")
            return cur.fetchone()[0]
    finally:
        conn.close()


if __name__ == "__main__":
    sys.exit(main())
