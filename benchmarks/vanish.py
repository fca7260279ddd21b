"""What ends a backend whose client vanished: `python -m benchmarks.vanish` (or `python -m benchmarks --only vanish`).

The claim (docs/sync.md, "A runner that vanishes"): no lock or snapshot outlives its runner by more
than about a minute, on either database. A runner that vanishes closes nothing: its host is gone,
so no FIN or RST ever reaches the server and nothing answers the server's probes. This builds
exactly that on one machine, touching no address but loopback inside a namespace of its own:

* `unshare --net` gives a helper process (this module, `--inside`) a private network namespace with
  its own `lo`; there it starts a LocalServer listening on that namespace's 127.0.0.1, and one client
  process per case, which connects over TCP to 127.0.0.1 and puts its backend into a state;
* once pg_stat_activity shows every backend in its state, every packet on that `lo` is dropped
  silently — `tc qdisc add dev lo root netem loss 100%` where the kernel has netem, otherwise an
  ingress qdisc on `lo` with a BPF filter that drops every packet (the sender's transmit succeeds,
  nothing arrives: no ACK, no answer to a keepalive probe, no RST) — and every client is SIGKILLed;
* an observer on the server's Unix socket (not TCP, so untouched) polls pg_stat_activity and pg_locks
  until each backend and its locks are gone, or the window ends; the server log says what ended it.

Every case runs at the same time on one server, so the run lasts about the window (90 s by default).
Settings: `sync` is what the sync uses, imported from dbsync.sessions — LIBPQ_KEEPALIVES as
libpq connection parameters, SERVER_KEEPALIVES applied with SET in the session; `none` is the
server's and the kernel's defaults (keepalives after net.ipv4.tcp_keepalive_time, 7200 s here).
The same run takes tcp_user_timeout or client_connection_check_interval away from the sync's
values, one at a time, to show which setting ends which state. A control run in a second namespace
(nothing dropped, nothing killed) shows what the same values end while the client is alive: a
client that stops reading a COPY, a target backend that stops reading one.

The CPU-bound statement counts a cross join of two small series rather than generate_series(1, 1e9):
a function scan materializes its whole result first, which for 1e9 rows means gigabytes of temp files.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import select
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Scenario:
    kind: str  # copy_in, statement, idle_tx, copy_out, copy_in_stall
    title: str
    statement: str | None = None


STALL = 45  # seconds the slow target's backend stops reading

SCENARIOS = {
    "copy_in": Scenario("copy_in", "target: COPY … FROM STDIN waiting for data (ClientRead), after TRUNCATE"),
    "cpu": Scenario("statement", "a long statement of its own, CPU-bound (count(*) of a 200k × 200k cross join)",
                    "SELECT count(*) FROM generate_series(1, 200000) a CROSS JOIN generate_series(1, 200000) b"),
    "sleep": Scenario("statement", "a long statement of its own, waiting (pg_sleep(3600))",
                      "SELECT pg_sleep(3600)"),
    "idle_tx": Scenario("idle_tx", "source: idle in transaction, REPEATABLE READ snapshot held"),
    "copy_out": Scenario("copy_out", "source: COPY … TO STDOUT, blocked sending (ClientWrite)"),
    # Live clients only (spec "vanish": false): a target that stops reading its COPY data for a while.
    "slow_target": Scenario("copy_in_stall", f"target: COPY … FROM STDIN whose backend stops reading for"
                            f" {STALL} s (a BEFORE trigger's pg_sleep on the first row) while the client sends"),
}
BENCH_SCENARIOS = ("copy_in", "cpu", "sleep", "idle_tx", "copy_out")
LIVE_SCENARIOS = ("copy_out", "slow_target")


def sync_settings() -> tuple[dict, list[list[str]]]:
    """The sync's own values: (libpq connection parameters, server settings to SET)."""
    from dbsync.sessions import LIBPQ_KEEPALIVES, SERVER_KEEPALIVES

    return dict(LIBPQ_KEEPALIVES), [[k, v] for k, v in SERVER_KEEPALIVES]


def case(label: str, scenario: str, settings: str, libpq: dict | None = None,
         server: list | None = None) -> dict:
    """One backend to vanish: `settings` names the configuration; libpq/server are its values."""
    return {"label": label, "scenario": scenario, "settings": settings, "libpq": dict(libpq or {}),
            "server": [list(s) for s in server or ()]}


# -- the outer side: is it possible here, and run the helper in its namespace ---------------------

def unavailable() -> str | None:
    """Why a private network namespace cannot be made here, or None."""
    if os.geteuid() != 0:
        return "needs root (unshare --net, tc)"
    for name in ("unshare", "ip", "tc"):
        if shutil.which(name) is None:
            return f"`{name}` is not installed"
    probe = subprocess.run(["unshare", "--net", "--", "ip", "link", "set", "lo", "up"],
                           capture_output=True, text=True)
    if probe.returncode != 0:
        return f"`unshare --net` failed: {(probe.stderr or probe.stdout).strip()}"
    return None


def run_cases(cases: list[dict], *, window: float, vanish: bool = True, poll: float = 0.1,
              ready_timeout: float = 30.0, quiet: bool = False) -> dict:
    """Run `cases` in one fresh namespace with one server; returns the helper's report:
    {"unavailable": why}, {"error": …} or {"method", "server", "window", "results": [...]}
    (+ "stderr" when quiet). `vanish=False`: the clients stay (a control: what the settings end
    while the client is alive); the clock starts when every backend is in its state."""
    spec = {"cases": cases, "window": window, "vanish": vanish, "poll": poll, "ready_timeout": ready_timeout}
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "backend")])}
    proc = subprocess.Popen(["unshare", "--net", "--", sys.executable, "-m", "benchmarks.vanish", "--inside"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE if quiet else None, cwd=ROOT, env=env, text=True)
    try:
        out, err = proc.communicate(json.dumps(spec), timeout=window + ready_timeout + 120)
    except subprocess.TimeoutExpired:
        proc.terminate()  # the helper unwinds on SIGTERM: clients killed, server stopped
        try:
            out, err = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
        return {"error": "the helper did not finish in time", "stderr": err or ""}
    lines = [ln for ln in (out or "").splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        return {"error": f"the helper exited {proc.returncode}", "stderr": err or "", "stdout": out or ""}
    report = json.loads(lines[-1])
    if quiet:
        report["stderr"] = err or ""
    return report


# -- inside the namespace: the helper --------------------------------------------------------------

def _log(msg: str) -> None:
    print(f"[vanish] {msg}", file=sys.stderr, flush=True)


def _sh(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(list(args), capture_output=True, text=True)


# Classic BPF, one instruction: `ret #2`, TC_ACT_SHOT in direct-action mode: drop every packet.
_DROP_ALL_BPF = "1,6 0 0 2,"
_BLACKHOLES = {
    "netem": (("tc", "qdisc", "add", "dev", "lo", "root", "netem", "loss", "100%"),
              ("tc", "qdisc", "del", "dev", "lo", "root")),
    "ingress-bpf-drop": (("sh", "-c", "tc qdisc add dev lo ingress && "
                          f"tc filter add dev lo parent ffff: bpf da bytecode '{_DROP_ALL_BPF}'"),
                         ("tc", "qdisc", "del", "dev", "lo", "ingress")),
}
_BLACKHOLE_TEXT = {
    "netem": "tc qdisc add dev lo root netem loss 100%",
    "ingress-bpf-drop": f"tc qdisc add dev lo ingress; tc filter add dev lo parent ffff: bpf da bytecode"
                        f" '{_DROP_ALL_BPF}' (drops every packet arriving on lo; netem is not in this kernel)",
}


def _pick_blackhole() -> tuple[str | None, str]:
    """The first way to drop every packet on lo that works here (tried, then removed again)."""
    errors = []
    for name, (add, delete) in _BLACKHOLES.items():
        r = _sh(*add)
        if r.returncode == 0:
            _sh(*delete)
            return name, ""
        errors.append(f"{name}: {(r.stderr or r.stdout).strip()}")
    return None, "; ".join(errors)


def _ready(scenario: Scenario, row: tuple) -> bool:
    _pid, state, wait_event, has_xmin, query = row
    if scenario.kind == "copy_in":
        return state == "active" and wait_event == "ClientRead" and query.lstrip().upper().startswith("COPY")
    if scenario.kind == "statement":
        return state == "active" and query.strip() == scenario.statement
    if scenario.kind == "idle_tx":
        return state == "idle in transaction" and has_xmin
    if scenario.kind == "copy_in_stall":
        return state == "active" and wait_event == "PgSleep"
    return state == "active" and wait_event == "ClientWrite"


def _ended_by(log_text: str, pid: int) -> str | None:
    prefix = f"pid={pid}:"
    lines = [ln[len(prefix):].strip() for ln in log_text.splitlines() if ln.startswith(prefix)]
    lines = [ln for ln in lines if not ln.startswith("STATEMENT:") and "terminating connection because of crash"
             not in ln]
    return " / ".join(lines[:2]) if lines else None


def _said(proc: subprocess.Popen) -> str | None:
    """What a client printed after its pid (how its own statement ended), without waiting."""
    os.set_blocking(proc.stdout.fileno(), False)
    try:
        text = (proc.stdout.read() or b"").decode(errors="replace").strip()
    except OSError:
        text = ""
    return text or None


def inside(spec: dict) -> dict:
    import psycopg2
    from psycopg2 import sql

    from localdev.pgserver import LocalServer, exit_on_sigterm

    exit_on_sigterm()
    up = _sh("ip", "link", "set", "lo", "up")
    if up.returncode != 0:
        return {"unavailable": f"cannot bring lo up in the namespace: {up.stderr.strip()}"}
    method, why = _pick_blackhole()
    if method is None:
        return {"unavailable": f"no way to drop the namespace's packets here ({why})"}
    cases = spec["cases"]
    window, poll = float(spec["window"]), float(spec["poll"])
    server = LocalServer(settings={"log_line_prefix": "pid=%p:", "max_connections": "50"})
    clients: list[subprocess.Popen] = []
    try:
        server.start()
        obs = psycopg2.connect(server.dsn("postgres"))
        obs.autocommit = True
        cur = obs.cursor()
        cur.execute("SELECT 'PostgreSQL ' || current_setting('server_version')")
        version = cur.fetchone()[0]
        tables = [f"vanish_{i}" for i in range(len(cases))]
        cur.execute("CREATE FUNCTION vanish_stall() RETURNS trigger LANGUAGE plpgsql AS"
                    " $$BEGIN IF NEW.id = 1 THEN PERFORM pg_sleep(%s); END IF; RETURN NEW; END$$", (STALL,))
        for t, c in zip(tables, cases, strict=True):
            cur.execute(sql.SQL("CREATE TABLE {} (id int, v text)").format(sql.Identifier(t)))
            cur.execute(sql.SQL("INSERT INTO {} SELECT g, 'x' FROM generate_series(1, 1000) g").format(
                sql.Identifier(t)))
            if SCENARIOS[c["scenario"]].kind == "copy_in_stall":
                cur.execute(sql.SQL("CREATE TRIGGER vanish_stall BEFORE INSERT ON {} FOR EACH ROW"
                                    " EXECUTE FUNCTION vanish_stall()").format(sql.Identifier(t)))
        tcp_dsn = server.dsn("postgres", via="127.0.0.1")
        for c, t in zip(cases, tables, strict=True):
            sc = SCENARIOS[c["scenario"]]
            cspec = {**c, "dsn": tcp_dsn, "table": t, "kind": sc.kind, "statement": sc.statement}
            clients.append(subprocess.Popen([sys.executable, "-m", "benchmarks.vanish", "--client", json.dumps(cspec)],
                                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=ROOT))
        pids = []
        deadline = time.monotonic() + float(spec["ready_timeout"])
        for p, c in zip(clients, cases, strict=True):
            ready, _, _ = select.select([p.stdout], [], [], max(0.1, deadline - time.monotonic()))
            line = p.stdout.readline() if ready else b""
            if not line.strip().isdigit():
                raise RuntimeError(f"client {c['label']} did not connect (exit {p.poll()})")
            pids.append(int(line))
        by_pid = dict(zip(pids, cases, strict=True))
        ready_at: dict[int, float] = {}
        while len(ready_at) < len(pids) and time.monotonic() < deadline:
            cur.execute("SELECT pid, state, wait_event, backend_xmin IS NOT NULL, query FROM pg_stat_activity"
                        " WHERE pid = ANY(%s)", (pids,))
            for row in cur.fetchall():
                if row[0] not in ready_at and _ready(SCENARIOS[by_pid[row[0]]["scenario"]], row):
                    ready_at[row[0]] = time.monotonic()
            time.sleep(0.05)
        missing = [by_pid[p]["label"] for p in pids if p not in ready_at]
        if missing:
            raise RuntimeError(f"not in their state after {spec['ready_timeout']} s: {', '.join(missing)}")
        cur.execute("SELECT l.pid, string_agg(DISTINCT l.mode || ' on ' || l.relation::regclass::text, ', ')"
                    " FROM pg_locks l WHERE l.pid = ANY(%s) AND l.locktype = 'relation'"
                    " AND l.relation::regclass::text LIKE 'vanish%%' GROUP BY l.pid", (pids,))
        holding = dict(cur.fetchall())
        cur.execute("SELECT pid, backend_xmin::text FROM pg_stat_activity WHERE pid = ANY(%s)", (pids,))
        xmins = dict(cur.fetchall())

        if spec.get("vanish", True):
            # The vanishing: nothing on lo gets through any more, then the clients die without a word.
            add, _ = _BLACKHOLES[method]
            r = _sh(*add)
            if r.returncode != 0:
                raise RuntimeError(f"{' '.join(add)}: {r.stderr.strip()}")
            for p in clients:
                p.kill()
            vanished = time.monotonic()
            for p in clients:
                p.wait()
            _log(f"{len(pids)} clients vanished ({method}); watching for up to {window:.0f} s")
        else:
            vanished = time.monotonic()
            _log(f"{len(pids)} live clients; watching for up to {window:.0f} s")

        gone: dict[int, float] = {}
        locks_gone: dict[int, float] = {}
        while time.monotonic() - vanished < window and (len(gone) < len(pids) or len(locks_gone) < len(pids)):
            cur.execute("SELECT (SELECT array_agg(pid) FROM pg_stat_activity WHERE pid = ANY(%s)),"
                        " (SELECT array_agg(DISTINCT pid) FROM pg_locks WHERE pid = ANY(%s))", (pids, pids))
            at = time.monotonic() - vanished
            active, locked = (set(x or ()) for x in cur.fetchone())
            for p in pids:
                if p not in active and p not in gone:
                    gone[p] = at
                    _log(f"{by_pid[p]['label']}: backend gone after {at:.1f} s")
                if p not in locked and p not in locks_gone:
                    locks_gone[p] = at
            time.sleep(poll)
        obs.close()
        said = {p: _said(proc) for p, proc in zip(pids, clients, strict=True)}
        log_text = (server.root / "server.log").read_text(errors="replace")
        results = []
        for p in pids:
            c = by_pid[p]
            # Vanished: seconds from the SIGKILL. Live: from the moment the backend was in its state.
            since = 0.0 if spec.get("vanish", True) else vanished - ready_at[p]
            results.append({"label": c["label"], "scenario": c["scenario"], "settings": c["settings"],
                             "pid": p, "quiet_before": round(vanished - ready_at[p], 2),
                             "holding": holding.get(p), "backend_xmin": xmins.get(p),
                             "gone_after": None if p not in gone else round(gone[p] + since, 2),
                             "locks_gone_after": None if p not in locks_gone else round(locks_gone[p] + since, 2),
                             "ended_by": _ended_by(log_text, p) if p in gone else None,
                             "client_said": said[p]})
        return {"method": method, "method_text": _BLACKHOLE_TEXT[method], "server": version,
                "kernel": platform.release(), "window": window, "vanish": spec.get("vanish", True),
                "results": results}
    finally:
        for p in clients:
            if p.poll() is None:
                p.kill()
                p.wait()
        server.stop()


# -- a client: connect over TCP, get into the state, say the backend's pid, then wait to be killed ---

class _StallingWriter:
    """COPY TO's output file: takes the first chunks, then blocks for good (a reader that stopped)."""

    def __init__(self) -> None:
        self.n = 0

    def write(self, data) -> None:
        self.n += len(data)
        if self.n > 1_000_000:
            threading.Event().wait()


def client(spec: dict) -> None:
    import psycopg2
    from psycopg2 import sql

    conn = psycopg2.connect(spec["dsn"], application_name=spec["label"], **spec["libpq"])
    table = sql.Identifier(spec["table"])
    with conn.cursor() as cur:
        for name, value in spec["server"]:
            cur.execute(sql.SQL("SET {} = {}").format(sql.Identifier(name), sql.Literal(value)))
        cur.execute("SET max_parallel_workers_per_gather = 0")
        cur.execute("SELECT pg_backend_pid()")
        pid = cur.fetchone()[0]
    conn.commit()
    print(pid, flush=True)
    kind = spec["kind"]
    if kind == "idle_tx":
        conn.set_session(isolation_level="REPEATABLE READ")
    started = time.monotonic()
    try:
        _enter(conn, kind, table, spec["statement"])
        print(f"its statement finished after {time.monotonic() - started:.1f} s", flush=True)
    except psycopg2.Error as exc:
        msg = " ".join(str(exc).split())
        print(f"its statement failed after {time.monotonic() - started:.1f} s: {msg}", flush=True)
    while True:
        signal.pause()


class _Rows:
    """COPY FROM's input: text rows (id, 1 kB), id 1 first, about 100 MB in all."""

    def __init__(self) -> None:
        self.batch = 0

    def read(self, size: int = -1) -> bytes:
        if self.batch >= 100:
            return b""
        first = self.batch * 1000 + 1
        self.batch += 1
        return "".join(f"{n}\t{'x' * 1000}\n" for n in range(first, first + 1000)).encode()


def _enter(conn, kind: str, table, statement: str | None) -> None:
    from psycopg2 import sql

    with conn.cursor() as cur:
        if kind == "copy_in":
            cur.execute(sql.SQL("TRUNCATE {}").format(table))  # ACCESS EXCLUSIVE, as the target's load takes
            cur.copy_expert(sql.SQL("COPY {} FROM STDIN").format(table), sys.stdin.buffer)  # never a byte
        elif kind == "statement":
            cur.execute(sql.SQL("LOCK TABLE {} IN SHARE MODE").format(table))  # as CREATE INDEX takes
            cur.execute(statement)
        elif kind == "idle_tx":
            cur.execute(sql.SQL("SELECT count(*) FROM {}").format(table))  # the snapshot is taken
            cur.fetchall()
        elif kind == "copy_in_stall":
            cur.copy_expert(sql.SQL("COPY {} FROM STDIN").format(table), _Rows())
        else:
            cur.execute(sql.SQL("SELECT count(*) FROM {}").format(table))
            cur.copy_expert("COPY (SELECT repeat('x', 1000) FROM generate_series(1, 300000)) TO STDOUT",
                            _StallingWriter())


# -- the benchmark ------------------------------------------------------------------------------------

def _without(libpq: dict, server: list, name: str) -> tuple[dict, list]:
    return {k: v for k, v in libpq.items() if k != name}, [kv for kv in server if kv[0] != name]


def bench_cases(scenarios=BENCH_SCENARIOS) -> list[dict]:
    """Every scenario with no settings and with the sync's; and, to show which setting does the
    work, the sync's without tcp_user_timeout (ClientRead, ClientWrite) or without
    client_connection_check_interval (the long statement)."""
    libpq, server = sync_settings()
    out = []
    for s in scenarios:
        out.append(case(f"{s}-none", s, "none"))
        out.append(case(f"{s}-sync", s, "sync", libpq, server))
        if s in ("copy_in", "copy_out"):
            out.append(case(f"{s}-sync-no-user-timeout", s, "sync − tcp_user_timeout",
                            *_without(libpq, server, "tcp_user_timeout")))
        if s == "cpu":
            out.append(case(f"{s}-sync-no-check", s, "sync − client_connection_check_interval",
                            *_without(libpq, server, "client_connection_check_interval")))
    return out


def live_cases(scenarios=LIVE_SCENARIOS) -> list[dict]:
    """The control: live clients that merely stop reading (copy_out) or whose server stops reading
    (slow_target), with and without the sync's settings."""
    libpq, server = sync_settings()
    return [c for s in scenarios for c in (case(f"live-{s}-none", s, "none"),
                                           case(f"live-{s}-sync", s, "sync", libpq, server))]


def _fmt(seconds: float | None, window: float) -> str:
    return f"still there after {window:.0f} s" if seconds is None else f"{seconds:.1f} s"


def tables(report: dict, live: dict | None = None) -> list:
    from benchmarks.common import Table

    window = report["window"]
    t = Table("A client that vanishes: seconds from its SIGKILL until its backend is gone (its locks with it)",
              ["scenario", "settings", "gone after", "quiet before", "holding", "ended by (server log)"])
    for r in report["results"]:
        gone = _fmt(r["gone_after"], window)
        if r["locks_gone_after"] is not None and r["gone_after"] is not None \
                and r["locks_gone_after"] > r["gone_after"] + 0.5:
            gone += f" (locks {r['locks_gone_after']:.1f} s)"
        held = (r["holding"] or "").replace(" on vanish_", " #")
        if r["scenario"] == "idle_tx" and r["backend_xmin"]:
            held = f"snapshot (xmin {r['backend_xmin']}), {held}"
        t.add(r["scenario"], r["settings"], gone, f"{r['quiet_before']:.1f} s", held, r["ended_by"] or "")
    libpq, server = sync_settings()
    t.notes += [
        "scenarios: " + "; ".join(f"{k}: {SCENARIOS[k].title}" for k in BENCH_SCENARIOS),
        "sync: libpq " + ", ".join(f"{k}={v}" for k, v in libpq.items()) + "; SET "
        + ", ".join(f"{k}={v}" for k, v in server) + " (dbsync.sessions)",
        "none: no keepalive settings (server and kernel defaults)",
        f"vanish: private netns (unshare --net), {report['method_text']}, then SIGKILL of every client;"
        f" observed over the server's Unix socket every 0.1 s, for {window:.0f} s",
        "quiet before: how long the backend had been in its state (no traffic) when its client vanished",
        f"{report['server']}, Linux {report['kernel']}",
    ]
    out = [t]
    if live and "results" in live:
        lt = Table("Control: live clients (nothing dropped, nothing killed): what the same settings end",
                   ["scenario", "settings", "backend gone after", "ended by (server log)", "the client"])
        for r in live["results"]:
            lt.add(r["scenario"], r["settings"], _fmt(r["gone_after"], live["window"]), r["ended_by"] or "",
                   r["client_said"] or "")
        lt.notes += [
            "copy_out: the client reads 1 MB of a COPY … TO STDOUT, then stops reading (alive, connected);"
            " slow_target: " + SCENARIOS["slow_target"].title.split(": ", 1)[1],
            "the clock starts when the backend is in ClientWrite (copy_out) or in the trigger's pg_sleep",
        ]
        out.append(lt)
    elif live:
        out.append(f"(control with live clients not measured: {live.get('error') or live.get('unavailable')})")
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.vanish", description=__doc__.splitlines()[0])
    p.add_argument("--window", type=float, default=90.0, help="seconds to watch each backend (90)")
    p.add_argument("--only", nargs="+", choices=BENCH_SCENARIOS, help="vanish scenarios (default: all)")
    p.add_argument("--no-control", action="store_true", help="skip the control run with live clients")
    p.add_argument("--json", metavar="PATH", help="also write the raw reports to PATH")
    args = p.parse_args(argv)
    why = unavailable()
    if why:
        print(f"vanish benchmark not run: {why}. It needs a private network namespace (root, unshare, ip, tc);"
              " the mechanism and the settings are described in benchmarks/vanish.py and docs/sync.md.")
        return 0
    started = time.perf_counter()
    live: dict | None = None
    control = None
    if not args.no_control:  # in a namespace of its own, at the same time
        holder: dict = {}
        control = threading.Thread(target=lambda: holder.update(
            report=run_cases(live_cases(), window=args.window, vanish=False)), daemon=True)
        control.start()
    report = run_cases(bench_cases(args.only or BENCH_SCENARIOS), window=args.window)
    if control is not None:
        control.join()
        live = holder.get("report") or {"error": "the control run did not report"}
    if "unavailable" in report:
        print(f"vanish benchmark not run: {report['unavailable']}")
        return 0
    if "error" in report:
        print(f"vanish benchmark failed: {report['error']}\n{report.get('stderr', '')}", file=sys.stderr)
        return 1
    if args.json:
        Path(args.json).write_text(json.dumps({"vanish": report, "live": live}, indent=2))
    for t in tables(report, live):
        print()
        print(t if isinstance(t, str) else t.render())
    print(f"\ntotal {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    if len(sys.argv) >= 2 and sys.argv[1] == "--inside":
        try:
            print(json.dumps(inside(json.load(sys.stdin))), flush=True)
        except Exception as exc:  # the report names it; the traceback goes to stderr
            import traceback

            traceback.print_exc()
            print(json.dumps({"error": f"{type(exc).__name__}: {exc}"}), flush=True)
    elif len(sys.argv) == 3 and sys.argv[1] == "--client":
        client(json.loads(sys.argv[2]))
    else:
        sys.exit(main())
