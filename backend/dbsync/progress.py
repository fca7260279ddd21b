"""What `db-sync sync` shows while it runs and when it is done, from the run's events
(dbsync.sync.run.SyncRun.notify): on a terminal, a live line per table — rows and bytes so far,
percent of the planner's estimate, rate, ETA — then each phase after the copy by name; off a
terminal (Lambda, Fargate, CI logs) a plain line every few seconds instead of redrawing; and a
closing summary, one row per table.

The redrawing is tqdm's (imported only when a terminal is there to draw on): it measures the
terminal, redraws in place and computes rates and ETAs, and has no dependencies of its own,
which matters for a package the Lambda artifact carries too.
"""

from __future__ import annotations

import shutil
import threading
import time
from typing import TextIO

PLAIN_EVERY = 5.0  # seconds between two plain lines off a terminal
TICK = 1.0  # seconds between two redraws while nothing reports (an index rebuild, a foreign key)
MB = 2**20


class _State:
    """Where the run is: a table being copied, or a phase."""

    def __init__(self) -> None:
        self.started = time.perf_counter()
        self.table: dict | None = None  # the table_start event, with rows, bytes and since
        self.phase: tuple[str, float] | None = None  # (what the run is doing, since)

    def line(self) -> str:
        now = time.perf_counter()
        t = self.table
        if t is not None:
            elapsed = max(now - t["since"], 1e-9)
            est = t.get("estimate")
            done = "" if not est or t["rows"] > est else f" of ~{est:,} ({t['rows'] / est:.0%})"
            eta = ""
            if done and t["rows"]:
                eta = f", ETA {(est - t['rows']) / (t['rows'] / elapsed):.0f} s"
            what = " (rebuilding its indexes)" if t.get("indexes") else ""
            return (f"[{t['index']}/{t['count']}] {t['table']}{what}: {t['rows']:,} rows{done},"
                    f" {t['bytes'] / MB:.1f} MB, {t['bytes'] / MB / elapsed:.1f} MB/s{eta}")
        if self.phase is not None:
            doing, since = self.phase
            return f"{doing} ({now - since:.0f} s)"
        return f"starting ({now - self.started:.0f} s)"

    def hear(self, event: dict) -> None:
        kind, now = event.get("event"), time.perf_counter()
        if kind == "phase_start":
            self.phase = (event["doing"], now)
        elif kind == "phase_done":
            self.phase = None
            self.table = None
        elif kind == "table_start":
            self.table = dict(event, rows=0, bytes=0, since=now)
        elif kind == "table_progress" and self.table is not None:
            self.table.update(rows=event["rows"], bytes=event["bytes"])
        elif kind == "table_indexes" and self.table is not None:
            self.table["indexes"] = True
        elif kind == "table_done":
            self.table = None


class _Ticker:
    """Calls `tick` every `every` seconds from a daemon thread until stopped: what keeps the
    display alive through a long statement that reports nothing."""

    def __init__(self, tick, every: float) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(tick, every), name="dbsync-progress", daemon=True)
        self._thread.start()

    def _run(self, tick, every: float) -> None:
        while not self._stop.wait(every):
            tick()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)


class PlainProgress:
    """Off a terminal: the state as one line every `every` seconds, nothing for a short run."""

    def __init__(self, stream: TextIO, every: float | None = None) -> None:
        self.stream, self.every = stream, PLAIN_EVERY if every is None else every
        self.state = _State()
        self._lock = threading.Lock()
        self._last = time.perf_counter()
        self._ticker = _Ticker(self._maybe_print, min(self.every, TICK))

    def __call__(self, event: dict) -> None:
        with self._lock:
            self.state.hear(event)
        self._maybe_print()

    def _maybe_print(self) -> None:
        with self._lock:
            now = time.perf_counter()
            if now - self._last < self.every:
                return
            self._last = now
            print(f"db-sync: {self.state.line()}", file=self.stream, flush=True)

    def close(self) -> None:
        self._ticker.stop()


# tqdm's line for a table: against the planner's estimate (percent, ETA), or counting without one.
# {postfix} is tqdm's, starting with ", ": the bytes so far and their rate.
AGAINST_ESTIMATE = ("{desc}: {percentage:3.0f}%|{bar:16}| {n_fmt}/{total_fmt} rows{postfix}"
                    " [{elapsed}<{remaining}, {rate_fmt}]")
COUNTING = "{desc}: {n_fmt} rows{postfix} [{elapsed}, {rate_fmt}]"

# The phases whose names a terminal keeps once done, when they took a while: the ones after the copy.
AFTER_COPY = ("constraints", "triggers", "validate", "sequences", "commit")
KEEP_SECONDS = 1.0


class TerminalProgress:
    """On a terminal: a tqdm line per table, redrawn as its rows arrive; a line for each phase
    while it runs."""

    def __init__(self, stream: TextIO) -> None:
        from tqdm import tqdm

        self._tqdm, self.stream = tqdm, stream
        self._lock = threading.Lock()
        self._bar = None  # the table's, or the phase's
        self._phase: str | None = None
        self._ticker = _Ticker(self._refresh, TICK)

    def _new(self, desc: str, total: int | None, status: bool = False):
        fmt = "{desc}: {elapsed}" if status else COUNTING if not total else AGAINST_ESTIMATE
        # The size each time a line starts, $COLUMNS/$LINES first: a pseudo-terminal nobody sized says 0 x 0,
        # which tqdm would take literally (and draw nothing).
        size = shutil.get_terminal_size()
        return self._tqdm(total=total, desc=desc, file=self.stream, bar_format=fmt, unit=" rows",
                          ncols=size.columns, nrows=size.lines, leave=True, mininterval=0.1)

    def __call__(self, event: dict) -> None:
        with self._lock:
            getattr(self, "_" + str(event.get("event")), lambda _e: None)(event)

    def _phase_start(self, event: dict) -> None:
        if event["phase"] != "copy":
            self._close()
            self._phase, self._bar = event["phase"], self._new(event["doing"], None, status=True)

    def _phase_done(self, event: dict) -> None:
        if self._bar is not None and self._phase == event["phase"]:
            self._bar.leave = event["phase"] in AFTER_COPY and event["seconds"] >= KEEP_SECONDS
            self._close()

    def _table_start(self, event: dict) -> None:
        self._close()
        self._phase = None
        self._bar = self._new(f"[{event['index']}/{event['count']}] {event['table']}", event.get("estimate") or None)
        self._bar.set_postfix_str("0.0 MB", refresh=False)
        self._bar.refresh()

    def _table_progress(self, event: dict) -> None:
        bar = self._bar
        if bar is None:
            return
        if bar.total and event["rows"] > bar.total:  # the estimate was low: no percent rather than a wrong one
            bar.total, bar.bar_format = None, COUNTING
        elapsed = max(bar.format_dict["elapsed"], 1e-9)
        bar.set_postfix_str(f"{event['bytes'] / MB:.1f} MB, {event['bytes'] / MB / elapsed:.1f} MB/s", refresh=False)
        bar.update(event["rows"] - bar.n)

    def _table_indexes(self, event: dict) -> None:
        if self._bar is not None:
            self._bar.set_postfix_str(f"{self._bar.postfix}, rebuilding indexes", refresh=True)

    def _table_done(self, event: dict) -> None:
        bar = self._bar
        if bar is None:
            return
        bar.total, bar.bar_format = event["rows"] or None, (
            "{desc}: {n_fmt} rows{postfix} [{elapsed}]" if not event["rows"] else
            "{desc}: {percentage:3.0f}%|{bar:16}| {n_fmt}/{total_fmt} rows{postfix} [{elapsed}]")
        mb = event["bytes"] / MB
        bar.set_postfix_str(f"{mb:.1f} MB, {mb / max(event['seconds'], 1e-9):.1f} MB/s", refresh=False)
        bar.update(event["rows"] - bar.n)
        self._close()

    def _refresh(self) -> None:
        with self._lock:
            if self._bar is not None:
                self._bar.refresh()

    def _close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def close(self) -> None:
        self._ticker.stop()
        with self._lock:
            self._close()


def reporter(stream: TextIO, *, quiet: bool = False):
    """The progress listener for a sync writing to `stream` (stderr): None with `quiet`."""
    if quiet:
        return None
    return TerminalProgress(stream) if stream.isatty() else PlainProgress(stream)


# -- the closing summary --------------------------------------------------------------------------

def summary_rows(result: dict) -> list[dict]:
    """One row per table of a sync's result — mode (full, delta, unchanged, or skipped: its rules
    say `rows: none`), rows copied and deleted, MB, masked columns, seconds — then the totals."""
    masking = result.get("masking") or {}
    masked, empty = masking.get("masked_columns") or [], set(masking.get("empty_tables") or [])
    rows = []
    for t in result["tables"]:
        mode = t.get("mode", "full")
        prefix = t["table"] + "."
        rows.append({"table": t["table"], "mode": "skipped" if t["table"] in empty else mode,
                     "copied": t.get("rows_copied", t["rows"] if mode == "full" else 0),
                     "deleted": t.get("rows_deleted", 0), "mb": t["bytes"] / MB,
                     "masked": ", ".join(c[len(prefix):] for c in masked if c.startswith(prefix)),
                     "seconds": t["seconds"]})
    rows.append({"table": f"total ({len(rows)} tables)", "mode": "",
                 "copied": sum(r["copied"] for r in rows), "deleted": sum(r["deleted"] for r in rows),
                 "mb": sum(r["mb"] for r in rows), "masked": str(sum(len(masked_of(r)) for r in rows)) + " columns",
                 "seconds": (result.get("timings") or {}).get("total", sum(r["seconds"] for r in rows))})
    return rows


def masked_of(row: dict) -> list[str]:
    return [c for c in row["masked"].split(", ") if c]


def summary(result: dict) -> str:
    """summary_rows as an aligned text table, the totals under a rule."""
    heads = ("table", "mode", "rows copied", "deleted", "MB", "masked columns", "seconds")
    cells = [[r["table"], r["mode"], f"{r['copied']:,}", f"{r['deleted']:,}", f"{r['mb']:.1f}", r["masked"] or "-",
              f"{r['seconds']:.1f}"] for r in summary_rows(result)]
    widths = [max(len(c[i]) for c in [list(heads), *cells]) for i in range(len(heads))]
    right = {2, 3, 4, 6}

    def fmt(row):
        return "  ".join(c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths,
                                                                                                  strict=True))).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([fmt(heads), rule, *map(fmt, cells[:-1]), rule, fmt(cells[-1])])
