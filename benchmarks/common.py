"""Helpers shared by the benchmarks: databases, timing, child-process peak memory, tables."""

from __future__ import annotations

import os
import statistics
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import psycopg2
from psycopg2 import sql

from localdev.pgserver import admin_execute


class BenchUnavailable(Exception):
    """A component the benchmark measures is not there (yet): report it, never invent a figure."""


def create_database(server, name: str, template: str | None = None) -> str:
    """(Re)create database `name` on `server` and return its DSN (Unix socket, superuser)."""
    admin = server.dsn("postgres")
    admin_execute(admin, sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
    if template:
        # FILE_COPY copies the template's files: far faster than replaying 10,000 CREATE TABLEs.
        stmt = sql.SQL("CREATE DATABASE {} TEMPLATE {} STRATEGY FILE_COPY").format(
            sql.Identifier(name), sql.Identifier(template))
    else:
        stmt = sql.SQL("CREATE DATABASE {} TEMPLATE template0").format(sql.Identifier(name))
    admin_execute(admin, stmt)
    return server.dsn(name)


def drop_database(server, name: str) -> None:
    admin_execute(server.dsn("postgres"),
                  sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def connect(dsn: str, autocommit: bool = False):
    conn = psycopg2.connect(dsn)
    conn.autocommit = autocommit
    return conn


def timed(fn: Callable[[], object]) -> tuple[float, object]:
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


@dataclass
class ChildRun:
    """One child process: wall time, exit status, peak resident memory, its output."""

    seconds: float
    returncode: int
    maxrss_mb: float
    stdout: str = ""
    stderr: str = ""


# GNU time reports the peak RSS of the command alone. wait4()'s ru_maxrss cannot: a child forked
# (or vforked) from this process starts with its memory, so it never reports less than this
# process's own RSS — a floor of ~25 MB here, more once this process has grown.
GNU_TIME = "/usr/bin/time"


class _Measured:
    """A command started under GNU time (exact peak RSS), or else polled with psutil."""

    def __init__(self, args: Sequence[str], **popen):
        import tempfile

        self.rss_file = tempfile.NamedTemporaryFile(prefix="bench-rss-", delete=False)
        self.rss_file.close()
        self.use_time = os.access(GNU_TIME, os.X_OK)
        argv = [GNU_TIME, "-q", "-f", "%M", "-o", self.rss_file.name, *args] if self.use_time else list(args)
        self.proc = subprocess.Popen(argv, **popen)
        self.peak_kb = 0
        if not self.use_time:
            import threading

            import psutil

            p = psutil.Process(self.proc.pid)

            def poll() -> None:
                while self.proc.poll() is None:
                    try:
                        self.peak_kb = max(self.peak_kb, p.memory_info().rss // 1024)
                    except psutil.Error:
                        return
                    time.sleep(0.01)

            self.poller = threading.Thread(target=poll, daemon=True)
            self.poller.start()

    def wait(self) -> tuple[int, float]:
        code = self.proc.wait()
        if self.use_time:
            with open(self.rss_file.name) as f:
                lines = [ln for ln in f.read().splitlines() if ln.strip()]
            # GNU time writes "Command exited with non-zero status N" before the figure.
            self.peak_kb = int(lines[-1]) if lines and lines[-1].strip().isdigit() else 0
        else:
            self.poller.join()
        os.unlink(self.rss_file.name)
        return code, self.peak_kb / 1024


def run_child(args: Sequence[str], env: dict[str, str] | None = None) -> ChildRun:
    """Run a command; its wall time, exit code, peak RSS and output."""
    import tempfile

    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        t0 = time.perf_counter()
        m = _Measured(args, stdout=out, stderr=err, stdin=subprocess.DEVNULL, env=env)
        code, rss = m.wait()
        seconds = time.perf_counter() - t0
        out.seek(0)
        err.seek(0)
        return ChildRun(seconds, code, rss, out.read().decode(errors="replace"), err.read().decode(errors="replace"))


def run_pipeline(producer: Sequence[str], consumer: Sequence[str]) -> tuple[ChildRun, ChildRun, float]:
    """`producer | consumer` without a shell (so both exit codes count); returns both runs and the
    wall time of the whole pipeline."""
    import tempfile

    with tempfile.TemporaryFile() as perr, tempfile.TemporaryFile() as cout, tempfile.TemporaryFile() as cerr:
        t0 = time.perf_counter()
        p = _Measured(producer, stdout=subprocess.PIPE, stderr=perr, stdin=subprocess.DEVNULL)
        c = _Measured(consumer, stdin=p.proc.stdout, stdout=cout, stderr=cerr)
        p.proc.stdout.close()  # the consumer holds the only read end: a dead consumer stops the producer
        ccode, crss = c.wait()
        pcode, prss = p.wait()
        wall = time.perf_counter() - t0
        for f in (perr, cout, cerr):
            f.seek(0)
        prun = ChildRun(wall, pcode, prss, stderr=perr.read().decode(errors="replace"))
        crun = ChildRun(wall, ccode, crss, stdout=cout.read().decode(errors="replace"),
                        stderr=cerr.read().decode(errors="replace"))
        return prun, crun, wall


@dataclass
class Table:
    """A plain-text results table."""

    title: str
    headers: list[str]
    rows: list[list[str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, *cells: object) -> None:
        self.rows.append([str(c) for c in cells])

    def render(self) -> str:
        widths = [max(len(h), *(len(r[i]) for r in self.rows)) if self.rows else len(h)
                  for i, h in enumerate(self.headers)]
        line = "  ".join("-" * w for w in widths)
        out = [self.title, "=" * len(self.title),
               "  ".join(h.ljust(w) for h, w in zip(self.headers, widths, strict=True)), line]
        for r in self.rows:
            out.append("  ".join(c.rjust(w) if _numeric(c) else c.ljust(w)
                                 for c, w in zip(r, widths, strict=True)))
        out += [f"  {n}" for n in self.notes]
        return "\n".join(out)


def _numeric(cell: str) -> bool:
    return bool(cell) and (cell[0].isdigit() or cell[0] in "-.") and not cell.startswith("--")


def fmt_s(seconds: float) -> str:
    return f"{seconds:.3f} s" if seconds < 10 else f"{seconds:.1f} s"


def fmt_ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}x" if b else "n/a"
