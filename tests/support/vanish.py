"""The fast settings and scenarios of the vanished-runner tests (benchmarks/vanish.py runs the real ones)."""

FAST_LIBPQ = {"keepalives": 1, "keepalives_idle": 1, "keepalives_interval": 1, "keepalives_count": 2,
              "tcp_user_timeout": 2000}
FAST_SERVER = [("tcp_keepalives_idle", "1"), ("tcp_keepalives_interval", "1"), ("tcp_keepalives_count", "2"),
               ("tcp_user_timeout", "2000"), ("client_connection_check_interval", "1s")]
WINDOW = 6.0  # the fast cases end in about 2-3 s; the others must still be there after this
ENDS_WITHIN = 5.0
SCENARIOS = ("copy_in", "cpu", "idle_tx")  # ClientRead; a long statement of its own; a held snapshot
